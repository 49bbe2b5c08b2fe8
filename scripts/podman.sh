#!/usr/bin/env bash
# Start or stop podman's Docker-compatible API service for mcslabel's tests, demo and CI,
# and build the tiny test image `mcslabel-busybox:test` in podman's storage
# (busybox-static, `podman import`: no registry, no network).
#
#   scripts/podman.sh start   start `podman system service` unless the socket answers; build the image
#   scripts/podman.sh stop    stop the service this script started (never another one)
#   scripts/podman.sh status  exit 0 when the socket answers
#   scripts/podman.sh env     print the CONTAINERS_CONF line for a shell that runs podman itself
#
# Idempotent. Run as root. The service and every podman command this project runs use
# scripts/podman-containers.conf (CONTAINERS_CONF): podman 4.3's default ulimits exceed
# this kind of machine's hard limits.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR=${MCSLABEL_PODMAN_STATE:-/run/mcslabel-podman}
PIDFILE=$STATE_DIR/podman.pid
LOG=$STATE_DIR/podman.log
SOCK=${MCSLABEL_PODMAN_SOCK:-/run/podman/podman.sock}
IMAGE=${MCSLABEL_TEST_IMAGE:-mcslabel-busybox:test}
WAIT_SECONDS=${MCSLABEL_PODMAN_WAIT:-60}
CONTAINERS_CONF=$(pwd)/scripts/podman-containers.conf
export CONTAINERS_CONF

log() { printf '[podman] %s\n' "$*"; }

answers() {
  [ -S "$SOCK" ] && timeout 10 podman --remote --url "unix://$SOCK" version >/dev/null 2>&1
}

our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

build_image() {
  if podman image exists "$IMAGE"; then
    return 0
  fi
  local busybox=/bin/busybox
  if [ ! -x "$busybox" ]; then
    echo "$busybox missing: apt-get install busybox-static" >&2
    return 2
  fi
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/data" "$root/etc"
  cp "$busybox" "$root/bin/busybox"
  local applet
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  tar -C "$root" -cf - . | podman import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null 2>&1
  rm -rf "$root"
  log "built image $IMAGE"
}

start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "podman.sh start must run as root" >&2
    return 2
  fi
  command -v podman >/dev/null || { echo "podman not installed (apt-get install podman)" >&2; return 2; }
  build_image
  if answers; then
    log "podman's API already answers on $SOCK"
    return 0
  fi
  mkdir -p "$STATE_DIR" "$(dirname "$SOCK")"
  if ! our_pid >/dev/null; then
    log "starting podman system service (log: $LOG)"
    setsid podman system service --time=0 "unix://$SOCK" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local waited=0
  until answers; do
    if ! our_pid >/dev/null; then
      echo "podman system service exited; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      return 3
    fi
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      echo "podman did not answer on $SOCK within ${WAIT_SECONDS}s; see $LOG" >&2
      return 3
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "podman $(podman version --format '{{.Version}}') answers on $SOCK"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    log "no podman service started by this script is running"
    return 0
  fi
  log "stopping podman system service (pid $pid)"
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
  env) echo "CONTAINERS_CONF=$CONTAINERS_CONF" ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
