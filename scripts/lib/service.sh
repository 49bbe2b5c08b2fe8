# shellcheck shell=bash
# What scripts/dockerd.sh and scripts/podman.sh (and etcd-cluster.sh's members) share: start a
# daemon in the background under a pid file, wait until it answers, stop only what we started,
# and build the tiny busybox test image. Source it; it defines functions and runs nothing.
#
# The sourcing script sets SERVICE (a name for messages), STATE_DIR, PIDFILE, LOG and
# WAIT_SECONDS, and defines `answers` (exit 0 when the service responds).

service_log() { printf '[%s] %s\n' "$SERVICE" "$*"; }

# A live process: not gone, and not a zombie that an init which does not reap keeps around.
service_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

# The pid in pid file $1 (default $PIDFILE) when that process is alive; else fail.
service_pid() {
  local file=${1:-$PIDFILE} pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && service_alive "$pid" && echo "$pid"
}

# Send signal $2 (default TERM) to pid $1, wait up to $3 tenths of a second (default 300)
# for it to go, then SIGKILL it.
service_terminate() {
  local pid=$1 signal=${2:-TERM} tenths=${3:-300} n
  kill "-$signal" "$pid" 2>/dev/null || true
  for ((n = 0; n < tenths; n++)); do
    service_alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Start "$@" (the daemon's command line) unless our pid file names a live one, then wait until
# `answers`; fails with 3 when the daemon exits or does not answer within $WAIT_SECONDS.
service_start() {
  mkdir -p "$STATE_DIR"
  if ! service_pid >/dev/null; then
    service_log "starting $SERVICE (log: $LOG)"
    # setsid: the daemon outlives this script and ignores its terminal's signals.
    setsid "$@" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
  fi
  local waited=0
  until answers; do
    if ! service_pid >/dev/null; then
      echo "$SERVICE exited; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      return 3
    fi
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      echo "$SERVICE did not answer within ${WAIT_SECONDS}s; see $LOG" >&2
      return 3
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# Stop the daemon our pid file names (never another one); a no-op when none runs.
service_stop() {
  local pid
  if ! pid=$(service_pid); then
    rm -f "$PIDFILE"
    service_log "no $SERVICE started by this script is running"
    return 0
  fi
  service_log "stopping $SERVICE (pid $pid)"
  service_terminate "$pid" TERM 300
  rm -f "$PIDFILE"
}

# Build image $1 from busybox-static with the import command "${@:2}" (which reads a tar on
# stdin and names the image): one link per applet (sh, ls, sleep...), no registry, no network.
service_import_busybox() {
  local image=$1
  shift
  # busybox-static's /bin/busybox: statically linked, so it runs in an image without libc.
  local busybox=/bin/busybox
  if [ ! -x "$busybox" ]; then
    echo "$busybox missing: apt-get install busybox-static" >&2
    return 2
  fi
  local root applet
  root=$(mktemp -d) && [ -n "$root" ] || return 2
  mkdir -p "$root/bin" "$root/tmp" "$root/data" "$root/etc"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  local status=0
  tar -C "$root" -cf - . | "$@" --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$image" ||
    status=$?
  rm -rf "$root"
  [ "$status" -eq 0 ] && service_log "built image $image"
  return "$status"
}
