#!/usr/bin/env bash
# Start or stop a Docker daemon for mcslabel's tests, demo and CI, and build
# the tiny test image `mcslabel-busybox:test` (busybox-static, `docker import`:
# no registry, no network).
#
#   scripts/dockerd.sh start   start dockerd unless a daemon already answers; build the image
#   scripts/dockerd.sh stop    stop the dockerd this script started (never another one)
#   scripts/dockerd.sh status  exit 0 when a daemon answers
#
# Idempotent: `start` twice starts one daemon; `stop` without a start is a no-op.
# Run as root. The daemon runs with --iptables=false --bridge=none: the tests
# need no network, and this host may have no iptables.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR=${MCSLABEL_DOCKERD_STATE:-/run/mcslabel-dockerd}
PIDFILE=$STATE_DIR/dockerd.pid
LOG=$STATE_DIR/dockerd.log
SOCK=/var/run/docker.sock
IMAGE=${MCSLABEL_TEST_IMAGE:-mcslabel-busybox:test}
WAIT_SECONDS=${MCSLABEL_DOCKERD_WAIT:-120}

log() { printf '[dockerd] %s\n' "$*"; }

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

build_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    return 0
  fi
  # busybox-static's /bin/busybox: statically linked, so it runs in an image without libc.
  local busybox=/bin/busybox
  if [ ! -x "$busybox" ]; then
    echo "$busybox missing: apt-get install busybox-static" >&2
    return 2
  fi
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/data" "$root/etc"
  cp "$busybox" "$root/bin/busybox"
  # One link per applet (sh, ls, sleep, cat, id, ...) so `docker run IMAGE sleep 60` works.
  local applet
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  tar -C "$root" -cf - . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
  rm -rf "$root"
  log "built image $IMAGE"
}

start() {
  if answers; then
    log "a Docker daemon already answers on $SOCK"
    build_image
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd.sh start must run as root" >&2
    return 2
  fi
  command -v dockerd >/dev/null || { echo "dockerd not installed (apt-get install docker.io)" >&2; return 2; }
  mkdir -p "$STATE_DIR"
  if ! our_pid >/dev/null; then
    log "starting dockerd (log: $LOG)"
    # setsid: the daemon outlives this script and ignores its terminal's signals.
    setsid dockerd --iptables=false --ip6tables=false --bridge=none \
      --pidfile "$STATE_DIR/dockerd.self.pid" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local waited=0
  until answers; do
    if ! our_pid >/dev/null; then
      echo "dockerd exited; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      return 3
    fi
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      echo "dockerd did not answer on $SOCK within ${WAIT_SECONDS}s; see $LOG" >&2
      return 3
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "dockerd $(docker version --format '{{.Server.Version}}') answers on $SOCK"
  build_image
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    log "no dockerd started by this script is running"
    return 0
  fi
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 30 ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
