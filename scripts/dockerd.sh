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

SERVICE=dockerd
# shellcheck source=scripts/lib/service.sh
source scripts/lib/service.sh

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

docker_import() { docker import "$@" >/dev/null; }

build_image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 || service_import_busybox "$IMAGE" docker_import
}

start() {
  if answers; then
    service_log "a Docker daemon already answers on $SOCK"
    build_image
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd.sh start must run as root" >&2
    return 2
  fi
  command -v dockerd >/dev/null || { echo "dockerd not installed (apt-get install docker.io)" >&2; return 2; }
  service_start dockerd --iptables=false --ip6tables=false --bridge=none \
    --pidfile "$STATE_DIR/dockerd.self.pid"
  service_log "dockerd $(docker version --format '{{.Server.Version}}') answers on $SOCK"
  build_image
}

case "${1:-}" in
  start) start ;;
  stop) service_stop ;;
  status) answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
