#!/usr/bin/env bash
# A throwaway PostgreSQL from the installed binaries, as the tests start one:
# a private directory and socket, a free port on 127.0.0.1, trust auth for a
# superuser `echo`, durable settings (fsync and synchronous_commit on).
#
#   scripts/throwaway-postgres.sh start DIR   # prints postgres://echo@127.0.0.1:PORT/echo?sslmode=disable
#   scripts/throwaway-postgres.sh standby PRIMARY_DIR DIR
#       # a streaming standby of the cluster in PRIMARY_DIR, in DIR: copied
#       # by pg_basebackup -R (which writes its primary_conninfo) with the
#       # replication slot echo_standby, and made synchronous on the primary
#       # (synchronous_standby_names = 'echo_standby', synchronous_commit on:
#       # a commit is answered once the standby has flushed it); prints
#       # postgres://echo@127.0.0.1:P,127.0.0.1:S/echo?sslmode=disable&target_session_attrs=read-write
#   scripts/throwaway-postgres.sh promote DIR # the standby in DIR becomes the primary (pg_ctl promote)
#   scripts/throwaway-postgres.sh stop DIR    # stops it and removes DIR
#
# As root it runs as the `postgres` user (initdb refuses root).
# Needs Debian's postgresql package (apt-get install postgresql).
set -euo pipefail

usage="usage: $0 start|stop|promote DIR, or $0 standby PRIMARY_DIR DIR"
action=${1:?$usage}
dir=${2:?$usage}
readonly slot=echo_standby

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
    bin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
fi
if [ ! -x "$bin/initdb" ]; then
    echo "PostgreSQL is not installed: apt-get install postgresql" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# owned_dir DIR: DIR made, and reachable by the cluster's owner.
owned_dir() {
    mkdir -p "$1"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$1"
        runuser -u postgres -- test -x "$1" || {
            echo "throwaway-postgres.sh: the postgres user cannot reach $1 (a parent directory is private)" >&2
            exit 1
        }
    fi
}

# A port free a moment ago, picked at random below the kernel's ephemeral
# range, so that no outgoing connection takes it before PostgreSQL binds it.
free_port() {
    python3 - <<'PY'
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
top = min(low, 32768)
for _ in range(200):
    port = random.randrange(10000, top) if top > 11000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
PY
}

# start_on_free_port DIR OPTIONS: PostgreSQL of DIR started on a free port
# (written to DIR/port); a port taken meanwhile by someone else is
# replaced by another, five times at most.
start_on_free_port() {
    local dir=$1 options=$2 tries
    for tries in 1 2 3 4 5; do
        port=$(free_port)
        # Only this try's lines, to tell a port taken from another failure.
        [ ! -f "$dir/postgres.log" ] || : >"$dir/postgres.log"
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 $options" \
            start >/dev/null; then
            echo "$port" >"$dir/port"
            return 0
        fi
        grep -q "Address already in use" "$dir/postgres.log" 2>/dev/null || return 1
        echo "throwaway-postgres.sh: port $port was taken meanwhile; trying another" >&2
    done
    return 1
}

# psql_on DIR SQL: SQL run on the cluster in DIR, unaligned.
psql_on() {
    "$bin/psql" -X -A -t -h 127.0.0.1 -p "$(cat "$1/port")" -U echo -d echo -c "$2"
}

case $action in
standby)
    primary=$dir
    dir=${3:?$usage}
    owned_dir "$dir"
    as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U echo \
        -D "$dir/data" -R -C -S "$slot" -X stream -c fast -N
    # -N: the copy is not fsynced (throwaway; the standby's own writes are).
    # cluster_name is the standby's application_name on the primary.
    start_on_free_port "$dir" "-c cluster_name=$slot"
    psql_on "$primary" "ALTER SYSTEM SET synchronous_standby_names = '$slot'" >/dev/null
    psql_on "$primary" "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
        [ "$(psql_on "$primary" "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$slot'")" = sync ] && break
        sleep 0.1
    done
    if [ "$(psql_on "$primary" "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$slot'")" != sync ]; then
        echo "throwaway-postgres.sh: the standby in $dir did not become synchronous" >&2
        exit 1
    fi
    echo "postgres://echo@127.0.0.1:$(cat "$primary/port"),127.0.0.1:$port/echo?sslmode=disable&target_session_attrs=read-write"
    ;;
promote)
    as_owner "$bin/pg_ctl" -D "$dir/data" -w promote >/dev/null
    ;;
start)
    owned_dir "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U echo --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    start_on_free_port "$dir" ""
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U echo echo
    echo "postgres://echo@127.0.0.1:$port/echo?sslmode=disable"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
