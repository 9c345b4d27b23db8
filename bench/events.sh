#!/usr/bin/env bash
# bench/events.sh: the seat-event benchmark (SPEC §8, issue 14 §1). Starts PostgreSQL 15
# (fsync on) and two reserved (db lock mode, payment off) on one database, a performance
# of SEATS seats, and runs build/bin/eventbench:
# 1. latency: STREAMS (1) streams on reserved B while BOOKINGS (300) single-seat bookings
#    go through reserved A one after another (RATE per second, 0: as fast as answered);
#    prints commit -> first stream, commit -> every stream and 201 -> first stream,
#    p50/p99/max (the commit time is seat_events.created_at, taken at COMMIT; one machine,
#    one clock);
# 2. idle streams: for each N of IDLE (2000 10000), a fresh reserved B holds N streams:
#    its RSS before and with them (KiB a stream), and 20 bookings fanned out to all N
#    (commit -> every stream).
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/events.sh
#   BUILD=build-rel BOOKINGS=1000 RATE=200 IDLE="2000 10000 20000" bench/events.sh
# Environment: BUILD (build; built with Release when a binary is missing), SEATS (2000),
# BOOKINGS (300), RATE (0), STREAMS (1), IDLE ("2000 10000").
set -euo pipefail
case "${1:-}" in
'') ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "${0##*/}: unknown argument '$1' (the settings are environment variables: --help)" >&2
    exit 2
    ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
SEATS=${SEATS:-2000}
BOOKINGS=${BOOKINGS:-300}
RATE=${RATE:-0}
STREAMS=${STREAMS:-1}
IDLE=${IDLE:-2000 10000}

if [[ ! -x $BUILD/bin/reserved || ! -x $BUILD/bin/eventbench ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target reserved eventbench >/dev/null
fi
BK_BIN=$(cd "$BUILD/bin" && pwd)
# shellcheck source=../scripts/lib/booking.sh
source scripts/lib/booking.sh
trap bk_cleanup EXIT
trap 'exit 130' INT TERM
bk_init events-bench

max=0
for n in $IDLE; do ((n > max)) && max=$n; done
ulimit -n $((2 * max + 4096)) 2>/dev/null || {
    echo "events.sh: cannot raise the open-files limit to $((2 * max + 4096)) (ulimit -n)" >&2
    exit 1
}

bk_start_pg
# B holds up to max streams: connections and subscribers above the defaults
EXTRA="events: {max_subscribers: $((max + 100))}"
bk_start_reserved 2 db "" "$EXTRA"
sed -i "s/^limits: {/limits: {max_connections: $((max + 1000)), /" "$BK_TMP"/reserved*.yaml
# the first start read the old limits: start B again with the new file
restart_b() {
    kill -TERM "${BK_RESERVED_PIDS[1]}"
    wait "${BK_RESERVED_PIDS[1]}" 2>/dev/null || true
    bk_untrack "${BK_RESERVED_PIDS[1]}"
    bk_spawn "reserved 2" "$BK_BIN/reserved" --config "$BK_TMP/reserved2.yaml" \
        >>"$BK_LOGS/reserved2.log" 2>&1
    BK_RESERVED_PIDS[1]=$BK_LAST_PID
    local port=${BK_RESERVED[1]##*:}
    for _ in $(seq 200); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]] &&
            return 0
        sleep 0.05
    done
    echo "events.sh: reserved 2 did not come back" >&2
    return 1
}
restart_b

venue=$(bk_create_venue Hall "$SEATS" 100 50)
perf=$(bk_create_perf "$venue" Live 7)
bk_create_users 1
user=$BK_USERS_FIRST
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the start"
echo
echo "== latency: $STREAMS stream(s) on reserved B, $BOOKINGS bookings through reserved A" \
    "(rate ${RATE:-0}/s, 0: closed loop)"
"$BK_BIN/eventbench" --sub "${BK_RESERVED[1]}" --book "${BK_RESERVED[0]}" --perf "$perf" \
    --streams "$STREAMS" --bookings "$BOOKINGS" --rate "$RATE" --token "$BK_ADMIN_TOKEN" \
    --user "$user" --database "$BK_PG_CONNINFO"
for n in $IDLE; do
    echo
    echo "== $n idle streams on a fresh reserved B, then 20 bookings fanned out to all"
    restart_b
    "$BK_BIN/eventbench" --sub "${BK_RESERVED[1]}" --book "${BK_RESERVED[0]}" --perf "$perf" \
        --streams "$n" --bookings 20 --rate 10 --token "$BK_ADMIN_TOKEN" --user "$user" \
        --database "$BK_PG_CONNINFO" --rss-pid "${BK_RESERVED_PIDS[1]}"
done
