#!/usr/bin/env bash
# A rolling upgrade of scripts/cluster.sh's three servers: each in turn is
# upgraded in place (`echo-server upgrade`: the binary at its path started
# as a new process on the same ports, the old one draining its clients with
# `bye {reason: "restart"}`), and the next one only once HAProxy's health
# check sees the new process up and the old one has left. Clients through
# HAProxy resume with their tokens and see no error; the port of each
# server never stops accepting.
#
#   ECHO_CLUSTER_THEN=scripts/rolling-upgrade.sh scripts/cluster.sh
#                                   # up, upgrade each server, down
#   scripts/rolling-upgrade.sh DIR  # a running cluster: DIR is the
#                                   # directory its banner names
#
# To roll a new build out, put it in the place of ECHO_SERVER_BIN first
# (a new file renamed over the old): an upgrade starts the binary at the
# server's path as it is now.
#
# Prints one line per server (`server 1: pid OLD -> pid NEW`); at the first
# failure it says why and exits 1, the servers after it untouched.
# Environment: ECHO_CLUSTER_DIR (or DIR), ECHO_SERVER_BIN, ECHO_LB_STATS_PORT
# (13130), as cluster.sh sets them for ECHO_CLUSTER_THEN.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly WAIT_TENTHS=300 # 30 s for each step

say() { echo "rolling-upgrade.sh: $*" >&2; }

dir=${1:-${ECHO_CLUSTER_DIR:-}}
[ -n "$dir" ] && [ -d "$dir/s1" ] || { say "usage: rolling-upgrade.sh CLUSTER_DIR (or run it as cluster.sh's ECHO_CLUSTER_THEN)"; exit 1; }
bin=${ECHO_SERVER_BIN:-target/debug/echo-server}
stats=${ECHO_LB_STATS_PORT:-13130}

# alive PID: running, and not a zombie left for its parent to reap.
alive() {
    local state
    state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# up_in_haproxy I: whether HAProxy's status page shows server I UP.
up_in_haproxy() {
    python3 - "$stats" "s$1" <<'PY' 2>/dev/null
import sys, urllib.request
csv = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats;csv", timeout=1).read().decode()
sys.exit(0 if any(l.startswith(f"echo_servers,{sys.argv[2]},") and l.split(",")[17].startswith("UP") for l in csv.splitlines()) else 1)
PY
}

# within WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds, for
# 30 s at most; fails saying WHAT did not happen.
within() {
    local what=$1
    shift
    for _ in $(seq 1 "$WAIT_TENTHS"); do
        "$@" && return 0
        sleep 0.1
    done
    say "$what within 30 s"
    return 1
}

gone() { ! alive "$1"; }
adopted() { [ "$(cat "$dir/s$1/pid")" = "$2" ]; }

for i in 1 2 3; do
    old=$(cat "$dir/s$i/pid")
    if ! out=$("$bin" upgrade --data-dir "$dir/s$i/data" 2>&1); then
        say "server $i (pid $old): the upgrade failed, it serves on: $out"
        exit 1
    fi
    new=$(sed -n 's/^upgraded: pid \([0-9]*\) .*/\1/p' <<<"$out")
    [ -n "$new" ] || { say "server $i: echo-server upgrade said: $out"; exit 1; }
    within "server $i's old process (pid $old) did not finish draining" gone "$old"
    within "cluster.sh did not take pid $new on as server $i" adopted "$i" "$new"
    within "HAProxy did not see server $i (pid $new) up" up_in_haproxy "$i"
    echo "server $i: pid $old -> pid $new"
done
