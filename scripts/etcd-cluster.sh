#!/usr/bin/env bash
# A 3-member etcd cluster on loopback, for tests, benchmarks and people trying the etcd store.
#
#   scripts/etcd-cluster.sh start  [DIR]      start 3 members, wait until healthy, print endpoints
#   scripts/etcd-cluster.sh stop   [DIR]      stop every member and delete DIR's cluster data
#   scripts/etcd-cluster.sh status [DIR]      show each member (exit 1 unless all are healthy)
#   scripts/etcd-cluster.sh endpoints [DIR]   print "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
#   scripts/etcd-cluster.sh kill-member N [DIR]   SIGKILL member N (0..2), keep its data
#   scripts/etcd-cluster.sh start-member N [DIR]  restart member N on its old ports and data
#
# With ETCD_TLS_DIR=D at start (D holding ca.pem, server.pem, server-key.pem, client.pem,
# client-key.pem), members serve clients over https and require a client certificate signed
# by ca.pem (--client-cert-auth); peers stay on plain http (loopback only).
#
# DIR defaults to $MCSLABEL_ETCD_DIR, else /var/tmp/mcslabel-etcd. Ports are picked from
# 20000-29999 (derived from this shell's PID, then bind-tested) so several clusters can run
# side by side; they are recorded in DIR/cluster.env. Uses Debian's etcd-server 3.4 (/usr/bin/etcd)
# and etcd-client (etcdctl).
set -euo pipefail

MEMBERS=3
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
SERVICE=etcd-cluster
# shellcheck source=scripts/lib/service.sh
source "$(dirname "$0")/lib/service.sh"

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "etcd-cluster: $*" >&2
    exit 1
}

# --- state ------------------------------------------------------------------

load_state() {
    [[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR (run: $0 start $DIR)"
    # shellcheck disable=SC1091
    source "$DIR/cluster.env"
}

client_port() { echo $((BASE_PORT + 2 * $1)); }
scheme() { if [[ -n "${TLS_DIR:-}" ]]; then echo https; else echo http; fi; }

# etcdctl's TLS flags for this cluster (none without TLS).
ctl_tls() {
    [[ -n "${TLS_DIR:-}" ]] || return 0
    echo "--cacert=$TLS_DIR/ca.pem --cert=$TLS_DIR/client.pem --key=$TLS_DIR/client-key.pem"
}
peer_port() { echo $((BASE_PORT + 2 * $1 + 1)); }

endpoints() {
    local i out=""
    for ((i = 0; i < MEMBERS; i++)); do
        out+="${out:+,}127.0.0.1:$(client_port "$i")"
    done
    echo "$out"
}

member_pid() { service_pid "$DIR/m$1/etcd.pid"; }

# Six consecutive free loopback ports: bind-test them, since `ss` misses ports in TIME_WAIT
# that another test run is about to reuse.
pick_base_port() {
    python3 - "$$" <<'EOF'
import socket, sys
start = 20000 + (int(sys.argv[1]) * 7919) % 9000 // 10 * 10
for attempt in range(900):
    base = 20000 + (start - 20000 + attempt * 10) % 9990
    socks = []
    try:
        for p in range(base, base + 6):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", p))
        print(base)
        break
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
else:
    sys.exit("no free port range")
EOF
}

# --- members ----------------------------------------------------------------

start_member() {
    local i=$1 initial="" j
    for ((j = 0; j < MEMBERS; j++)); do
        initial+="${initial:+,}m$j=http://127.0.0.1:$(peer_port "$j")"
    done
    mkdir -p "$DIR/m$i"
    local tls=()
    if [[ -n "${TLS_DIR:-}" ]]; then
        tls=(--cert-file "$TLS_DIR/server.pem" --key-file "$TLS_DIR/server-key.pem"
            --trusted-ca-file "$TLS_DIR/ca.pem" --client-cert-auth)
    fi
    # setsid: the member must not die with the shell (or pytest) that started it
    setsid "$ETCD" \
        --name "m$i" \
        --data-dir "$DIR/m$i/data" \
        --listen-client-urls "$(scheme)://127.0.0.1:$(client_port "$i")" \
        --advertise-client-urls "$(scheme)://127.0.0.1:$(client_port "$i")" \
        "${tls[@]}" \
        --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
        --initial-cluster "$initial" \
        --initial-cluster-token "mcslabel-$BASE_PORT" \
        --initial-cluster-state new \
        --logger zap --log-level warn --log-outputs stderr \
        >>"$DIR/m$i/etcd.log" 2>&1 </dev/null &
    echo $! >"$DIR/m$i/etcd.pid"
}

wait_healthy() {
    local eps=$1 deadline=$((SECONDS + ${2:-30}))
    # shellcheck disable=SC2046
    until "$ETCDCTL" --endpoints="$eps" --dial-timeout=1s --command-timeout=2s $(ctl_tls) \
        endpoint health >/dev/null 2>&1; do
        ((SECONDS < deadline)) || {
            tail -n 5 "$DIR"/m*/etcd.log >&2 || true
            die "cluster in $DIR not healthy after ${2:-30}s"
        }
        sleep 0.2
    done
}

stop_member() {
    local i=$1 signal=${2:-TERM} pid
    pid=$(member_pid "$i") || return 0
    service_terminate "$pid" "$signal" 50
    rm -f "$DIR/m$i/etcd.pid"
}

# --- commands ---------------------------------------------------------------

cmd_start() {
    mkdir -p "$DIR"
    if [[ -f "$DIR/cluster.env" ]]; then
        load_state
        if member_pid 0 >/dev/null && member_pid 1 >/dev/null && member_pid 2 >/dev/null; then
            wait_healthy "$(endpoints)"
            endpoints
            return 0
        fi
        cmd_stop # stale: start afresh rather than join half-dead members
        mkdir -p "$DIR"
    fi
    command -v "$ETCD" >/dev/null || die "$ETCD not found (apt-get install etcd-server)"
    BASE_PORT=$(pick_base_port)
    TLS_DIR=${ETCD_TLS_DIR:-}
    if [[ -n "$TLS_DIR" ]]; then
        TLS_DIR=$(cd "$TLS_DIR" && pwd)
        local f
        for f in ca.pem server.pem server-key.pem client.pem client-key.pem; do
            [[ -f "$TLS_DIR/$f" ]] || die "ETCD_TLS_DIR=$TLS_DIR lacks $f"
        done
    fi
    printf 'BASE_PORT=%q\nTLS_DIR=%q\n' "$BASE_PORT" "$TLS_DIR" >"$DIR/cluster.env"
    local i
    for ((i = 0; i < MEMBERS; i++)); do
        start_member "$i"
    done
    wait_healthy "$(endpoints)"
    endpoints
}

cmd_stop() {
    [[ -f "$DIR/cluster.env" ]] || return 0
    load_state
    local i
    # SIGKILL: the data is deleted next anyway, and a graceful stop waits seconds for a
    # leader transfer to peers that are stopping too
    for ((i = 0; i < MEMBERS; i++)); do
        stop_member "$i" KILL
    done
    # only what this script created: never rm -rf a DIR someone pointed at by mistake
    for ((i = 0; i < MEMBERS; i++)); do
        rm -rf "$DIR/m$i"
    done
    rm -f "$DIR/cluster.env"
    rmdir "$DIR" 2>/dev/null || true
}

cmd_status() {
    load_state
    local i pid bad=0 ep
    for ((i = 0; i < MEMBERS; i++)); do
        ep="127.0.0.1:$(client_port "$i")"
        if pid=$(member_pid "$i"); then
            # shellcheck disable=SC2046
            if "$ETCDCTL" --endpoints="$ep" --dial-timeout=1s --command-timeout=2s $(ctl_tls) \
                endpoint health >/dev/null 2>&1; then
                echo "m$i $ep pid=$pid healthy"
            else
                echo "m$i $ep pid=$pid unhealthy"
                bad=1
            fi
        else
            echo "m$i $ep down"
            bad=1
        fi
    done
    return $bad
}

member_arg() {
    [[ "${1:-}" =~ ^[0-2]$ ]] || die "member must be 0, 1 or 2, not '${1:-}'"
}

main() {
    local cmd=${1:-}
    [[ -n "$cmd" ]] || usage
    shift
    case "$cmd" in
    kill-member | start-member)
        member_arg "${1:-}"
        local member=$1
        shift
        DIR=${1:-${MCSLABEL_ETCD_DIR:-/var/tmp/mcslabel-etcd}}
        load_state
        if [[ "$cmd" == kill-member ]]; then
            stop_member "$member" KILL
        else
            member_pid "$member" >/dev/null || start_member "$member"
        fi
        ;;
    start | stop | status | endpoints)
        DIR=${1:-${MCSLABEL_ETCD_DIR:-/var/tmp/mcslabel-etcd}}
        case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        endpoints) load_state && endpoints ;;
        esac
        ;;
    *) usage ;;
    esac
}

main "$@"
