#!/usr/bin/env bash
# The balancer's figures for docs/SCALING.md, in one run: echo-bench's echo
# and resume scenarios (--target) straight to one server, through HAProxy to
# one server, and through HAProxy to three, all on one PostgreSQL.
#
#   scripts/bench-balancer.sh [echo-bench options]   # default: --reps 3
#
# Runs scripts/cluster.sh (three servers behind HAProxy) and, inside it, a
# second HAProxy whose three entries are all server 1, and a fourth server
# that takes clients directly (no PROXY header).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != --inside ]; then
    cargo build -q --release -p echo-server -p echo-bench
    config=$(mktemp)
    trap 'rm -f "$config"' EXIT
    cat >"$config" <<'TOML'
# Every load connection comes from 127.0.0.1: limits per address raised.
max_connections = 20000
max_connections_per_ip = 20000
max_handshakes_per_ip = 20000
auth_attempts_per_minute = 100000000
TOML
    export ECHO_BENCH_ARGS="${*:---reps 3}" ECHO_BENCH_SERVER_CONFIG=$config
    ECHO_MODE=auth ECHO_SERVER_BIN=target/release/echo-server ECHO_SERVER_CONFIG=$config \
        ECHO_CLUSTER_THEN='scripts/bench-balancer.sh --inside' scripts/cluster.sh
    exit
fi

# Inside the cluster: ECHO_LB_PORT, ECHO_S1_PORT.., ECHO_STORE_URL are set.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# HAProxy with one server: the same config, every entry server 1.
one=$(free_port)
ECHO_LB_PORT=$one ECHO_LB_STATS_PORT=$(free_port) \
    ECHO_S2_PORT=$ECHO_S1_PORT ECHO_S3_PORT=$ECHO_S1_PORT \
    ECHO_S2_HEALTH=$ECHO_S1_HEALTH ECHO_S3_HEALTH=$ECHO_S1_HEALTH \
    haproxy -f config/haproxy.cfg </dev/null >"$work/haproxy-one.log" 2>&1 &
pids+=($!)

# A server clients reach directly.
"$ECHO_SERVER_BIN" --mode auth --port 0 --store "$ECHO_STORE_URL" --config "$ECHO_BENCH_SERVER_CONFIG" \
    --data-dir "$work/direct/data" --log-dir "$work/direct/logs" </dev/null >"$work/direct.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/direct.out" && break
    sleep 0.1
done
direct=$(sed -n 's/^listening on [^ ]*:\([0-9]*\).*/\1/p' "$work/direct.out" | head -n 1)
sleep 3 # HAProxy's health checks: two in a row before a server is up

for target in "direct 127.0.0.1:$direct" "haproxy-1 127.0.0.1:$one" "haproxy-3 127.0.0.1:$ECHO_LB_PORT"; do
    set -- $target
    echo "== $1 ($2)"
    # shellcheck disable=SC2086
    target/release/echo-bench --scenario echo,resume --mode auth --target "$2" \
        --store "$ECHO_STORE_URL" --connections 1,50 --payload 64 --depth 1 \
        $ECHO_BENCH_ARGS 2>/dev/null | grep -v '^machine' || echo "(failed)"
done
