#!/usr/bin/env bash
# A throwaway PostgreSQL from the installed binaries, as the tests start one:
# a private directory and socket, a free port on 127.0.0.1, trust auth for a
# superuser `echo`, durable settings (fsync and synchronous_commit on).
#
#   scripts/throwaway-postgres.sh start DIR   # prints postgres://echo@127.0.0.1:PORT/echo?sslmode=disable
#   scripts/throwaway-postgres.sh stop DIR    # stops it and removes DIR
#
# As root it runs as the `postgres` user (initdb refuses root).
# Needs Debian's postgresql package (apt-get install postgresql).
set -euo pipefail

action=${1:?usage: $0 start|stop DIR}
dir=${2:?usage: $0 start|stop DIR}

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

case $action in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        runuser -u postgres -- test -x "$dir" || {
            echo "throwaway-postgres.sh: the postgres user cannot reach $dir (a parent directory is private)" >&2
            exit 1
        }
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U echo --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U echo echo
    echo "$port" >"$dir/port"
    echo "postgres://echo@127.0.0.1:$port/echo?sslmode=disable"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
