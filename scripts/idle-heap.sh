#!/usr/bin/env bash
# Where an idle session's heap goes, per allocation site (#30, the table
# "Memory per idle session" in docs/BENCHMARKS.md): runs echo-bench's idle
# scenario, attaches heaptrack to its server child as soon as it listens,
# and kills the server (SIGKILL) once all the idle sessions are open and
# the active ones ping-pong among them; what heaptrack then counts as
# "leaked" is what was live at that moment. Prints it per part, per session.
#
#   scripts/idle-heap.sh ECHO_BENCH N [more echo-bench options, e.g. --tls]
#
# Needs heaptrack (and gdb, which it attaches with). N idle sessions, plus
# the 100 active ones and one warm-up session, are live when it is killed.
set -euo pipefail

bench=${1:?usage: $0 ECHO_BENCH N [options]}
n=${2:?usage: $0 ECHO_BENCH N [options]}
shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# A long measured run, so that the sessions sit idle long enough to attach
# and to kill; bounded by `timeout` like every load loop here.
timeout 600 "$bench" --scenario idle --idle-connections "$n" --reps 1 \
    --duration 20 --warmup 0.5 "$@" >"$out/bench.out" 2>&1 &
bench_pid=$!
server=""
for _ in $(seq 1 100); do
    server=$(pgrep -P "$bench_pid" -f "serve" || pgrep -f "$(basename "$bench") serve" || true)
    [ -n "$server" ] && break
    sleep 0.1
done
[ -n "$server" ] || { echo "no server child found" >&2; exit 1; }
server=$(echo "$server" | head -n 1)
(cd "$out" && heaptrack -p "$server" >"$out/heaptrack.log" 2>&1) &
heaptrack_pid=$!
# Wait until the server holds all the idle sessions, then a little more.
for _ in $(seq 1 300); do
    fds=$(ls "/proc/$server/fd" 2>/dev/null | wc -l)
    [ "$fds" -gt "$n" ] && break
    sleep 1
done
sleep 6
echo "server $server: $(ls "/proc/$server/fd" | wc -l) open files, $(grep VmRSS "/proc/$server/status")"
kill -9 "$server"
wait "$heaptrack_pid" || true
kill "$bench_pid" 2>/dev/null || true
file=$(ls "$out"/heaptrack.*.zst | head -n 1)
heaptrack_print -f "$file" --print-leaks 0 --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 -F "$out/stacks.txt" --flamegraph-cost-type leaked >/dev/null
# Live bytes per part: each stack goes to the first part one of its frames
# names (innermost first), divided by the sessions live.
python3 - "$out/stacks.txt" "$((n + 101))" <<'PY'
import sys
parts = [
    ("read buffers (lent per read)", ["spare::take"]),
    ("connection task (its future)", ["task::spawn::spawn"]),
    ("tracing span (logs' conn=...)", ["tracing_subscriber", "sharded_slab", "tracing::span"]),
    ("live-connections registry", ["Clients::register"]),
    ("live-sessions registry", ["LiveSessions::watch"]),
    ("cancellation tokens", ["cancellation_token::tree_node"]),
    ("socket registration (tokio)", ["TcpStream::new_accepted"]),
    ("TLS state (rustls, ring)", ["rustls", "ring::", "transport::tls"]),
    ("buffers, timer, stop future", ["Session$LT$S$C$T$GT$::new", "Wire$LT$T$GT$::new"]),
    ("store (SQLite caches)", ["sqlite", "rusqlite", "store::"]),
]
sessions = int(sys.argv[2])
totals = {}
for line in open(sys.argv[1]):
    stack, _, cost = line.rstrip().rpartition(" ")
    name = "other"
    for frame in stack.split(";")[::-1]:
        hit = next((part for part, keys in parts if any(k in frame for k in keys)), None)
        if hit:
            name = hit
            break
    totals[name] = totals.get(name, 0) + int(cost)
print(f"live heap per session ({sessions} sessions), bytes:")
for name, cost in sorted(totals.items(), key=lambda item: -item[1]):
    print(f"  {name:34} {cost / sessions:8.0f}")
print(f"  {'total':34} {sum(totals.values()) / sessions:8.0f}")
PY
