#!/usr/bin/env bash
# Three echo-servers on one throwaway PostgreSQL behind HAProxy, in one
# command: the whole scale-out story on one machine.
#
#   scripts/cluster.sh            # then: echo-client --port 13131
#
# Checks that every port it needs is free (by binding it) before starting
# anything; starts PostgreSQL (scripts/throwaway-postgres.sh), three servers
# (--store, --proxy-protocol-from 127.0.0.1/32, --metrics-addr each) and
# HAProxy with config/haproxy.cfg (send-proxy-v2, leastconn, health checks on
# each /healthz); prints where to connect, each server's pid and log, and
# where HAProxy's and PostgreSQL's logs are. When something fails to start,
# the last lines of its log are printed before the cleanup.
#
# It supervises the servers: one that dies is logged (with its exit status),
# HAProxy's health checks take it out, its clients resume on another server,
# and it is started again on the same ports after a back-off (1 s, doubling
# to 30 s; back to 1 s once it has stayed up 60 s). A server upgraded in
# place (`echo-server upgrade`; scripts/rolling-upgrade.sh does each in
# turn) is not restarted: its new process, named by its pid file, is
# watched instead. Only HAProxy or
# PostgreSQL ending stops the cluster (with its last log lines). Ctrl-C stops
# everything it started and removes everything it created.
#
# Environment (all optional), with defaults:
#   ECHO_LB_PORT=13131           where clients connect (HAProxy)
#   ECHO_LB_STATS_PORT=13130     HAProxy's status page, /stats
#   ECHO_S1_HEALTH=19141, ECHO_S2_HEALTH=19142, ECHO_S3_HEALTH=19143
#                                each server's --metrics-addr port (/healthz)
#   ECHO_S1_PORT, ECHO_S2_PORT, ECHO_S3_PORT=0
#                                each server's port; 0: a free one picked at
#                                its first start and kept across restarts
#   ECHO_MODE=auth               auth or ident
#   ECHO_SERVER_BIN=             a built echo-server (empty: cargo build)
#   ECHO_SERVER_CONFIG=          a config file for the servers (none)
#   ECHO_CLUSTER_THEN=           a command to run once the cluster is up,
#                                instead of waiting for Ctrl-C; it sees
#                                ECHO_STORE_URL, ECHO_SERVER_BIN, the ports
#                                above and ECHO_CLUSTER_DIR (the cluster's
#                                directory); the cluster stops when it ends
#                                (scripts/bench-balancer.sh uses it; servers
#                                are still restarted meanwhile, HAProxy and
#                                PostgreSQL not watched)
#   ECHO_PG_HA=                  1: PostgreSQL as a primary and a synchronous
#                                standby (throwaway-postgres.sh standby); the
#                                servers' --store names both, and the primary
#                                ending does not stop the cluster: promote the
#                                standby (the command is printed) and the
#                                servers follow it
#   TMPDIR=/tmp                  where the cluster's directory is made
# Needs Debian's postgresql and haproxy packages, and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly RESTART_FIRST=1 RESTART_MAX=30 STABLE_AFTER=60 LOG_LINES=20

say() { echo "cluster.sh: $*" >&2; }

# show_log WHAT FILE: the last lines of FILE, on standard error.
show_log() {
    if [ -s "$2" ]; then
        say "the last lines of $1's log ($2):"
        tail -n "$LOG_LINES" "$2" | sed 's/^/  | /' >&2
    else
        say "$1's log ($2) is empty"
    fi
}

# nap SECONDS: a pause in a polling loop. Its standard error is the
# shell's own, where bash reports a child killed meanwhile ("Killed ...");
# the script says that in its own words.
nap() { sleep "$1"; } 2>/dev/null

# describe_status STATUS: "status 137 (SIGKILL)", as wait reports it.
describe_status() {
    local name
    if [ "$1" -gt 128 ] && name=$(kill -l "$(($1 - 128))" 2>/dev/null); then
        echo "status $1 (SIG$name)"
    else
        echo "status $1"
    fi
}

need_tools() {
    local tool
    for tool in haproxy python3; do
        command -v "$tool" >/dev/null || { say "$tool is not installed (apt-get install $tool)"; exit 1; }
    done
}

set_defaults() {
    export ECHO_LB_PORT=${ECHO_LB_PORT:-13131}
    export ECHO_LB_STATS_PORT=${ECHO_LB_STATS_PORT:-13130}
    export ECHO_S1_HEALTH=${ECHO_S1_HEALTH:-19141}
    export ECHO_S2_HEALTH=${ECHO_S2_HEALTH:-19142}
    export ECHO_S3_HEALTH=${ECHO_S3_HEALTH:-19143}
    export ECHO_S1_PORT=${ECHO_S1_PORT:-0} ECHO_S2_PORT=${ECHO_S2_PORT:-0} ECHO_S3_PORT=${ECHO_S3_PORT:-0}
    mode=${ECHO_MODE:-auth}
}

# check_ports: binds each port the cluster needs on 127.0.0.1 (as HAProxy
# and the servers will, with SO_REUSEADDR) and lets it go; names each one
# that is busy, given twice or not a port, with the variable that moves it.
check_ports() {
    local var args=()
    for var in ECHO_LB_PORT ECHO_LB_STATS_PORT ECHO_S{1,2,3}_HEALTH ECHO_S{1,2,3}_PORT; do
        args+=("$var=${!var}")
    done
    python3 - "${args[@]}" <<'PY'
import errno, socket, sys
seen, bad = {}, False
for arg in sys.argv[1:]:
    var, value = arg.split("=", 1)
    if not value.isdigit() or int(value) > 65535:
        print(f"cluster.sh: {var}={value!r} is not a port number", file=sys.stderr)
        bad = True
        continue
    port = int(value)
    if port == 0:
        continue
    if port in seen:
        print(f"cluster.sh: port {port} is given twice, as {seen[port]} and {var} (set one of them to another port)", file=sys.stderr)
        bad = True
        continue
    seen[port] = var
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
            print(f"cluster.sh: port {port} {why} (set {var} to another port)", file=sys.stderr)
            bad = True
sys.exit(1 if bad else 0)
PY
}

build_server() {
    bin=${ECHO_SERVER_BIN:-}
    if [ -z "$bin" ]; then
        cargo build -q -p echo-server
        bin=target/debug/echo-server
    fi
}

make_workdir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/echo-cluster.XXXXXX")
    # PostgreSQL runs as its own user (as root: postgres) and must get through.
    chmod 0711 "$work"
}

start_postgres() {
    if ! url=$(scripts/throwaway-postgres.sh start "$work/pg"); then
        say "PostgreSQL did not start"
        show_log PostgreSQL "$work/pg/postgres.log"
        exit 1
    fi
    pg_pid=$(head -n 1 "$work/pg/data/postmaster.pid")
    standby_pid=
    if [ "${ECHO_PG_HA:-}" = 1 ]; then
        if ! url=$(scripts/throwaway-postgres.sh standby "$work/pg" "$work/pg2"); then
            say "the PostgreSQL standby did not start"
            show_log "the standby" "$work/pg2/postgres.log"
            exit 1
        fi
        standby_pid=$(head -n 1 "$work/pg2/data/postmaster.pid")
    fi
}

# start_server I PORT: server I on PORT (0: any free port), in the
# background; its pid in server_pid.
start_server() {
    local i=$1 port=$2 health_var=ECHO_S${1}_HEALTH
    mkdir -p "$work/s$i"
    : >"$work/s$i/stdout"
    "$bin" --mode "$mode" --host 127.0.0.1 --port "$port" --store "$url" \
        ${ECHO_SERVER_CONFIG:+--config "$ECHO_SERVER_CONFIG"} \
        --proxy-protocol-from 127.0.0.1/32 --metrics-addr "127.0.0.1:${!health_var}" \
        --data-dir "$work/s$i/data" --log-dir "$work/s$i/logs" \
        --pid-file "$work/s$i/server.pid" \
        </dev/null >"$work/s$i/stdout" 2>&1 &
    server_pid=$!
    adopted=
    echo "$server_pid" >"$work/s$i/pid"
}

# successor I: the pid in server I's pid file when it is a live process
# other than server_pid: the new process of an upgrade (`echo-server
# upgrade`, scripts/rolling-upgrade.sh), which writes it there once ready.
successor() {
    local pid
    pid=$(cat "$work/s$1/server.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$pid" != "$server_pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# wait_server: until server_pid ends; its exit status when it is this
# supervisor's child, 0 for an upgrade's new process (no child of ours).
wait_server() {
    if [ -z "$adopted" ]; then
        wait "$server_pid" 2>/dev/null
        return
    fi
    while kill -0 "$server_pid" 2>/dev/null; do nap 0.5; done
}

# stop_server: the server this supervisor runs (and its back-off sleep).
stop_server() {
    kill "${pause_pid:-}" "${server_pid:-}" 2>/dev/null || true
    wait "${server_pid:-}" 2>/dev/null || true
    # An upgrade's new process is no child: polled until it is gone (10 s).
    for _ in $(seq 1 100); do
        kill -0 "${server_pid:-}" 2>/dev/null || break
        nap 0.1
    done
}

# launch I PORT: starts server I on PORT and waits (10 s at most) for its
# "listening on" line; its port then in listening_port. Fails when it ends
# first, is silent too long, or moved to another port than PORT (which
# HAProxy would not know).
launch() {
    local i=$1 port=$2 out=$work/s$1/stdout status
    start_server "$i" "$port"
    for _ in $(seq 1 100); do
        listening_port=$(sed -n 's/^listening on [^ ]*:\([0-9]*\).*/\1/p' "$out" | head -n 1)
        if [ -n "$listening_port" ]; then
            if [ "$port" = 0 ] || [ "$listening_port" = "$port" ]; then
                return 0
            fi
            say "server $i came up on port $listening_port, not $port (busy); stopping it"
            stop_server
            return 1
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            status=0
            wait "$server_pid" 2>/dev/null || status=$?
            say "server $i (pid $server_pid) exited with $(describe_status "$status") before listening"
            show_log "server $i" "$out"
            return 1
        fi
        nap 0.1
    done
    say "server $i (pid $server_pid) did not say it was listening within 10 s; stopping it"
    show_log "server $i" "$out"
    stop_server
    return 1
}

# pause SECONDS: a sleep a TERM interrupts.
pause() {
    sleep "$1" &
    pause_pid=$!
    wait "$pause_pid" 2>/dev/null || true
    pause_pid=
}

next_delay() { echo $(($1 * 2 > RESTART_MAX ? RESTART_MAX : $1 * 2)); }

# supervise I PORT: in the background, one per server. Starts server I and
# writes its port to s$I/port (a first start that fails ends the
# supervisor: the cluster does not come up); then, each time the server
# ends, says so and starts it again on the same ports after a back-off.
# TERM stops the server and the supervisor.
supervise() {
    local i=$1 port=$2 delay=$RESTART_FIRST since status
    trap 'stop_server; exit 0' TERM
    launch "$i" "$port" || exit 1
    port=$listening_port
    echo "$port" >"$work/s$i/port"
    while true; do
        since=$SECONDS
        status=0
        wait_server || status=$?
        kill -0 "$$" 2>/dev/null || exit 0 # the script itself is gone
        if next=$(successor "$i"); then
            # An upgrade: the old process drained and left; watch the new.
            say "server $i (pid $server_pid) handed over to pid $next (upgraded)"
            server_pid=$next adopted=1
            echo "$server_pid" >"$work/s$i/pid"
            continue
        fi
        [ $((SECONDS - since)) -lt "$STABLE_AFTER" ] || delay=$RESTART_FIRST
        say "server $i (pid $server_pid) exited with $(describe_status "$status"); restarting it in $delay s"
        pause "$delay"
        until launch "$i" "$port"; do
            delay=$(next_delay "$delay")
            say "server $i did not start again; retrying in $delay s"
            pause "$delay"
        done
        delay=$(next_delay "$delay")
        say "server $i restarted: pid $server_pid on 127.0.0.1:$port, log $work/s$i/logs/log_serv.txt"
    done
}

# start_servers: a supervisor per server, one after the other (so that a
# failure is told once); waits until each server listens (its port exported
# as ECHO_S{i}_PORT, for HAProxy), or exits when one could not start (its
# supervisor said why).
start_servers() {
    local i port_var
    for i in 1 2 3; do
        port_var=ECHO_S${i}_PORT
        supervise "$i" "${!port_var}" &
        supervisors+=($!)
        for _ in $(seq 1 150); do
            [ -s "$work/s$i/port" ] && break
            kill -0 "${supervisors[i - 1]}" 2>/dev/null || { say "server $i did not start"; exit 1; }
            nap 0.1
        done
        [ -s "$work/s$i/port" ] || { say "server $i did not start within 15 s"; exit 1; }
        export "ECHO_S${i}_PORT=$(cat "$work/s$i/port")"
    done
}

# haproxy_up: whether HAProxy's status page shows s1, s2 and s3 UP.
haproxy_up() {
    python3 - "$ECHO_LB_STATS_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
csv = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats;csv", timeout=1).read().decode()
up = [l for l in csv.splitlines() if l.startswith("echo_servers,s") and l.split(",")[17].startswith("UP")]
sys.exit(0 if len(up) == 3 else 1)
PY
}

# start_haproxy: HAProxy with config/haproxy.cfg; waits (15 s at most)
# until its health checks see every server up.
start_haproxy() {
    haproxy -f config/haproxy.cfg </dev/null >"$work/haproxy.log" 2>&1 &
    haproxy_pid=$!
    for _ in $(seq 1 150); do
        kill -0 "$haproxy_pid" 2>/dev/null || ended HAProxy "$haproxy_pid" "$work/haproxy.log"
        haproxy_up && return 0
        nap 0.1
    done
    say "HAProxy's health checks did not see every server up within 15 s"
    show_log HAProxy "$work/haproxy.log"
    exit 1
}

# ended WHAT PID LOG: WHAT has ended; says so (with its exit status when
# it is this script's child) and its last log lines, and exits (the EXIT
# trap stops the rest).
ended() {
    local how=ended status=0
    wait "$2" 2>/dev/null || status=$?
    # 127: not a child of this script (PostgreSQL), no status to tell.
    if [ "$status" != 127 ]; then
        how="exited with $(describe_status "$status")"
    fi
    say "$1 (pid $2) $how; stopping the cluster"
    show_log "$1" "$3"
    exit 1
}

announce() {
    local i
    echo "cluster up ($mode mode): three echo-servers on one PostgreSQL behind HAProxy"
    echo "  connect:   echo-client --port $ECHO_LB_PORT"
    for i in 1 2 3; do
        local port_var=ECHO_S${i}_PORT health_var=ECHO_S${i}_HEALTH
        echo "  server $i:  pid $(cat "$work/s$i/pid"), 127.0.0.1:${!port_var}, /healthz on :${!health_var}, log $work/s$i/logs/log_serv.txt"
    done
    echo "  haproxy:   pid $haproxy_pid, http://127.0.0.1:$ECHO_LB_STATS_PORT/stats, log $work/haproxy.log"
    echo "  database:  $url (pid $pg_pid, log $work/pg/postgres.log)"
    if [ -n "$standby_pid" ]; then
        echo "  standby:   synchronous, pid $standby_pid, log $work/pg2/postgres.log;" \
            "after the primary dies: scripts/throwaway-postgres.sh promote $work/pg2"
    fi
    echo "  admin:     $bin --store '$url' user list"
    echo "A server that dies is restarted (its pid then in $work/sN/pid); HAProxy or PostgreSQL ending stops the cluster."
    echo "Ctrl-C stops everything and removes $work"
}

# watch: until Ctrl-C, or HAProxy or PostgreSQL ending.
watch() {
    while true; do
        kill -0 "$haproxy_pid" 2>/dev/null || ended HAProxy "$haproxy_pid" "$work/haproxy.log"
        if [ -z "$standby_pid" ]; then
            kill -0 "$pg_pid" 2>/dev/null || ended PostgreSQL "$pg_pid" "$work/pg/postgres.log"
        else
            watch_pair
        fi
        nap 0.5
    done
}

# watch_pair: with ECHO_PG_HA=1, the primary ending is said once (the
# servers answer `unavailable` until the standby is promoted); the standby
# ending stops the cluster (writes would wait for it).
watch_pair() {
    if [ -n "$pg_pid" ] && ! kill -0 "$pg_pid" 2>/dev/null; then
        say "the PostgreSQL primary (pid $pg_pid) ended; promote the standby:" \
            "scripts/throwaway-postgres.sh promote $work/pg2"
        show_log "the primary" "$work/pg/postgres.log"
        pg_pid=
    fi
    if ! kill -0 "$standby_pid" 2>/dev/null; then
        ended "the PostgreSQL standby" "$standby_pid" "$work/pg2/postgres.log"
    fi
}

cleanup() {
    trap - EXIT INT TERM
    local pid
    kill "${haproxy_pid:-}" 2>/dev/null || true
    wait "${haproxy_pid:-}" 2>/dev/null || true
    for pid in "${supervisors[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${supervisors[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/throwaway-postgres.sh stop "$work/pg" || true
    if [ -d "$work/pg2" ]; then scripts/throwaway-postgres.sh stop "$work/pg2" || true; fi
    rm -rf "$work"
    echo "cluster.sh: stopped; removed $work"
}

main() {
    need_tools
    set_defaults
    check_ports || exit 1
    build_server
    supervisors=()
    make_workdir
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    start_postgres
    start_servers
    start_haproxy
    announce
    if [ -n "${ECHO_CLUSTER_THEN:-}" ]; then
        export ECHO_STORE_URL=$url ECHO_SERVER_BIN=$bin ECHO_CLUSTER_DIR=$work
        bash -c "$ECHO_CLUSTER_THEN"
        exit
    fi
    watch
}

main "$@"
