#!/usr/bin/env bash
# pg.sh: a throwaway PostgreSQL 15 for the demo and chaos scripts (the test harness has
# the same in C: th_pg_start). PostgreSQL refuses to run as root, so as root everything
# runs as the `postgres` account (setpriv execs in place: the PID in postmaster.pid is
# the postmaster we started).
#   pg.sh start DIR PORT   initdb DIR/data on first use (-A trust), start the postmaster
#                          (fsync on, 127.0.0.1:PORT, unix socket in DIR), create role and
#                          database `booking`, print the conninfo on stdout.
#   pg.sh stop DIR [fast|immediate]
#                          stop by the PID in DIR/data/postmaster.pid (default fast =
#                          SIGINT; immediate = SIGQUIT, like a crash) and wait for it.
# Logs go to DIR/postgres.log, or to the file PG_LOG names. PG_EXTRA_OPTS adds server
# options (split on spaces), e.g. "-c shared_preload_libraries=pg_stat_statements" to see
# where a benchmark's time goes.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

# The PID on the first line of postmaster.pid, if that process is alive.
pm_pid() {
    local f="$1/data/postmaster.pid" pid
    [ -f "$f" ] || return 1
    pid=$(head -n 1 "$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    local dir port pid
    dir=$(mkdir -p "$1" && cd "$1" && pwd)
    port=$2
    local log=${PG_LOG:-$dir/postgres.log}
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        chmod 0755 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C \
            --no-sync >>"$log" 2>&1
    fi
    if pid=$(pm_pid "$dir"); then
        echo "pg.sh: already running (pid $pid)" >&2
    else
        # setsid: the postmaster must outlive this script and not share its terminal.
        setsid bash -c 'exec "$@"' _ bash -c '
            if [ "$(id -u)" -eq 0 ]; then
                exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
            fi
            exec "$@"' _ \
            "$PGBIN/postgres" -D "$dir/data" -p "$port" -c "unix_socket_directories=$dir" \
            -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300 \
            ${PG_EXTRA_OPTS:-} </dev/null >>"$log" 2>&1 &
        local bg=$! deadline=$((SECONDS + 30))
        until [ "$(sed -n 8p "$dir/data/postmaster.pid" 2>/dev/null | tr -d " ")" = ready ]; do
            if [ $SECONDS -ge $deadline ] || ! kill -0 "$bg" 2>/dev/null; then
                echo "pg.sh: postgres did not start (see $log)" >&2
                exit 1
            fi
            sleep 0.05
        done
    fi
    local psql=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres)
    if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'booking'")" != 1 ]; then
        "${psql[@]}" -d postgres -c "CREATE ROLE booking LOGIN" >/dev/null
    fi
    if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'booking'")" != 1 ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE booking OWNER booking" >/dev/null
    fi
    echo "host=$dir port=$port dbname=booking user=booking"
}

stop() {
    local dir=$1 mode=${2:-fast} pid sig=INT
    [ "$mode" = immediate ] && sig=QUIT
    pid=$(pm_pid "$dir") || return 0
    kill -"$sig" "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -QUIT "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
        fi
        sleep 0.05
    done
}

case "${1:-}" in
start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
stop) [ $# -ge 2 ] && [ $# -le 3 ] || usage; stop "$2" "${3:-fast}" ;;
*) usage ;;
esac
