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

SERVICE=podman
# shellcheck source=scripts/lib/service.sh
source scripts/lib/service.sh

answers() {
  [ -S "$SOCK" ] && timeout 10 podman --remote --url "unix://$SOCK" version >/dev/null 2>&1
}

podman_import() { podman import "$@" >/dev/null 2>&1; }

build_image() {
  podman image exists "$IMAGE" || service_import_busybox "$IMAGE" podman_import
}

start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "podman.sh start must run as root" >&2
    return 2
  fi
  command -v podman >/dev/null || { echo "podman not installed (apt-get install podman)" >&2; return 2; }
  build_image
  if answers; then
    service_log "podman's API already answers on $SOCK"
    return 0
  fi
  mkdir -p "$(dirname "$SOCK")"
  service_start podman system service --time=0 "unix://$SOCK"
  service_log "podman $(podman version --format '{{.Version}}') answers on $SOCK"
}

case "${1:-}" in
  start) start ;;
  stop) service_stop ;;
  status) answers ;;
  env) echo "CONTAINERS_CONF=$CONTAINERS_CONF" ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
