#!/usr/bin/env bash
# Three echo-servers on one throwaway PostgreSQL behind HAProxy, in one
# command: the whole scale-out story on one machine.
#
#   scripts/cluster.sh            # then: echo-client --port 13131
#
# Starts PostgreSQL (scripts/throwaway-postgres.sh), three servers
# (--store, --proxy-protocol-from 127.0.0.1/32, --metrics-addr each) and
# HAProxy with config/haproxy.cfg (send-proxy-v2, leastconn, health checks on
# each /healthz); prints where to connect and where the logs are. Ctrl-C
# stops everything it started and removes everything it created.
#
# Environment (all optional): ECHO_LB_PORT (13131), ECHO_LB_STATS_PORT
# (13130), ECHO_S1_HEALTH..ECHO_S3_HEALTH (19141-19143), ECHO_MODE (auth or
# ident), ECHO_SERVER_BIN (a built echo-server; default: cargo build),
# ECHO_SERVER_CONFIG (a config file for the servers), ECHO_CLUSTER_THEN (a
# command to run once the cluster is up, instead of waiting for Ctrl-C; it
# sees ECHO_STORE_URL, ECHO_SERVER_BIN and the ports above; the cluster
# stops when it ends: scripts/bench-balancer.sh uses it).
# Needs Debian's postgresql and haproxy packages.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in haproxy python3; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is not installed (apt-get install haproxy)" >&2; exit 1; }
done

export ECHO_LB_PORT=${ECHO_LB_PORT:-13131}
export ECHO_LB_STATS_PORT=${ECHO_LB_STATS_PORT:-13130}
export ECHO_S1_HEALTH=${ECHO_S1_HEALTH:-19141}
export ECHO_S2_HEALTH=${ECHO_S2_HEALTH:-19142}
export ECHO_S3_HEALTH=${ECHO_S3_HEALTH:-19143}
mode=${ECHO_MODE:-auth}

bin=${ECHO_SERVER_BIN:-}
if [ -z "$bin" ]; then
    cargo build -q -p echo-server
    bin=target/debug/echo-server
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/echo-cluster.XXXXXX")
# PostgreSQL runs as its own user (as root: postgres) and must get through.
chmod 0711 "$work"
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/throwaway-postgres.sh stop "$work/pg" || true
    rm -rf "$work"
    echo "cluster.sh: stopped; removed $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

url=$(scripts/throwaway-postgres.sh start "$work/pg")

# The servers pick free ports (--port 0); HAProxy is told which.
for i in 1 2 3; do
    health_var=ECHO_S${i}_HEALTH
    mkdir -p "$work/s$i"
    "$bin" --mode "$mode" --host 127.0.0.1 --port 0 --store "$url" ${ECHO_SERVER_CONFIG:+--config "$ECHO_SERVER_CONFIG"} \
        --proxy-protocol-from 127.0.0.1/32 --metrics-addr "127.0.0.1:${!health_var}" \
        --data-dir "$work/s$i/data" --log-dir "$work/s$i/logs" \
        </dev/null >"$work/s$i/stdout" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$work/s$i/stdout" && break
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/s$i/stdout" >&2; exit 1; }
        sleep 0.1
    done
    port=$(sed -n 's/^listening on [^ ]*:\([0-9]*\).*/\1/p' "$work/s$i/stdout" | head -n 1)
    [ -n "$port" ] || { echo "cluster.sh: server $i did not start" >&2; cat "$work/s$i/stdout" >&2; exit 1; }
    export "ECHO_S${i}_PORT=$port"
done

haproxy -f config/haproxy.cfg </dev/null >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $ECHO_LB_PORT), 0.2)" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/haproxy.log" >&2; exit 1; }
    sleep 0.1
done

cat <<EOF
cluster up ($mode mode): three echo-servers on one PostgreSQL behind HAProxy
  connect:   echo-client --port $ECHO_LB_PORT
  servers:   127.0.0.1:$ECHO_S1_PORT, :$ECHO_S2_PORT, :$ECHO_S3_PORT (health: /healthz on :$ECHO_S1_HEALTH, :$ECHO_S2_HEALTH, :$ECHO_S3_HEALTH)
  haproxy:   http://127.0.0.1:$ECHO_LB_STATS_PORT/stats, log $work/haproxy.log
  logs:      $work/s1/logs/log_serv.txt, $work/s2/logs/log_serv.txt, $work/s3/logs/log_serv.txt
  database:  $url
  admin:     $bin --store '$url' user list
  pids:      ${pids[*]}
Ctrl-C stops everything and removes $work
EOF

if [ -n "${ECHO_CLUSTER_THEN:-}" ]; then
    export ECHO_STORE_URL=$url ECHO_SERVER_BIN=$bin
    bash -c "$ECHO_CLUSTER_THEN"
    exit
fi

# Until Ctrl-C (or one of them dies).
wait -n "${pids[@]}" || true
echo "cluster.sh: a process ended; stopping the rest" >&2
