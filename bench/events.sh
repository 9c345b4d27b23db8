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
# 3. the cost on the booking path: pgbench, ONE client, COST_S (5) s of the booking
#    transaction of lockd mode (rs_book_read of one seat with a growing fence, COMMIT:
#    what reserved sends with payment off), on a fresh performance each time, with
#    migration 110's triggers on reservation_seats enabled and disabled, alternating,
#    COST_ROUNDS (3) times each: bookings/s and latency both ways (the reserved processes
#    stay up, polling for the events).
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/events.sh
#   BUILD=build-rel BOOKINGS=1000 RATE=200 IDLE="2000 10000 20000" bench/events.sh
# Environment: BUILD (build; built with Release when a binary is missing), SEATS (2000),
# BOOKINGS (300), RATE (0), STREAMS (1), IDLE ("2000 10000"), COST_ROUNDS (3; 0: skip),
# COST_S (5).
set -euo pipefail
# shellcheck source=../scripts/lib/benchargs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/benchargs.sh"
bench_args "$0" "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
SEATS=${SEATS:-2000}
BOOKINGS=${BOOKINGS:-300}
RATE=${RATE:-0}
STREAMS=${STREAMS:-1}
IDLE=${IDLE:-2000 10000}
COST_ROUNDS=${COST_ROUNDS:-3}
COST_S=${COST_S:-5}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

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
# each process (reserved B, eventbench) holds max sockets and some more
want=$((max + 2048))
hard=$(ulimit -Hn)
[[ $hard != unlimited && $hard -lt $want ]] && want=$hard
ulimit -n "$want" 2>/dev/null || true
if (($(ulimit -n) < max + 512)); then
    echo "events.sh: the open-files limit ($(ulimit -n), hard $hard) is too low for $max streams" >&2
    exit 1
fi

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
    --user "$user" --database "$BK_PG_CONNINFO" || echo "(eventbench exit $?)"
for n in $IDLE; do
    echo
    echo "== $n idle streams on a fresh reserved B, then 20 bookings fanned out to all"
    restart_b
    "$BK_BIN/eventbench" --sub "${BK_RESERVED[1]}" --book "${BK_RESERVED[0]}" --perf "$perf" \
        --streams "$n" --bookings 20 --rate 10 --token "$BK_ADMIN_TOKEN" --user "$user" \
        --database "$BK_PG_CONNINFO" --rss-pid "${BK_RESERVED_PIDS[1]}" || echo "(eventbench exit $?)"
done

# 3. the cost of the triggers on the booking transaction (see the top)
cost_run() { # cost_run ROUND on|off: prints "TPS LATENCY_MS"
    local what=$2 perf first user out
    [[ $what == on ]] && what=ENABLE || what=DISABLE
    BK_PSQL_USER=postgres bk_psql "ALTER TABLE reservation_seats $what TRIGGER reservation_seats_seat_events_ins" >/dev/null
    read -r perf first < <(BK_PSQL_USER=postgres bk_psql "
        WITH p AS (INSERT INTO performances (venue_id, title, starts_at, normal_price, vip_price,
                                             total_capacity, remaining_capacity)
                   VALUES ($cost_venue, 'Cost $1 $2', now() + interval '60 days', 50000, 120000,
                           40000, 40000) RETURNING id)
        SELECT p.id, min(vs.id) FROM p, venue_seats vs WHERE vs.venue_id = $cost_venue
         GROUP BY p.id" | tr '|' ' ')
    user=$(bk_psql "SELECT min(id) FROM users")
    out=$("$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$COST_S" -f "$BK_TMP/cost.sql" \
        -D "perf=$perf" -D "user=$user" -D "s=$first" -D f=0 -h "$BK_PG_DIR" -p "$BK_PG_PORT" \
        -U booking booking 2>&1) || { echo "n/a n/a"; return; }
    printf '%s %s\n' "$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")" \
        "$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")"
}
if ((COST_ROUNDS > 0)); then
    echo
    echo "== the booking transaction with and without migration 110's triggers: pgbench, 1 client," \
        "$COST_S s each, $COST_ROUNDS rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
    cost_venue=$(BK_PSQL_USER=postgres bk_psql "
        WITH v AS (INSERT INTO venues (name) VALUES ('Cost hall') RETURNING id),
             s AS (INSERT INTO venue_seats (venue_id, row_label, number, type)
                   SELECT v.id, 'R' || (n / 100), n % 100 + 1, 'NORMAL'
                     FROM v, generate_series(0, 39999) n)
        SELECT id FROM v")
    cat >"$BK_TMP/cost.sql" <<'EOF'
\set f :f + 1
BEGIN;
SELECT * FROM rs_book_read(:perf::bigint, :user::bigint, ARRAY[:s::bigint], :f::numeric, false, 'cost-' || :perf::text || '-' || :f::text);
COMMIT;
\set s :s + 1
EOF
    declare -A sum_tps=([on]=0 [off]=0) sum_lat=([on]=0 [off]=0)
    for ((round = 1; round <= COST_ROUNDS; round++)); do
        for t in on off; do
            read -r tps lat < <(cost_run "$round" "$t")
            printf 'round %d  triggers %-3s  %8s bookings/s  latency %s ms\n' "$round" "$t" "$tps" "$lat"
            sum_tps[$t]=$(awk -v a="${sum_tps[$t]}" -v b="${tps:-0}" 'BEGIN {print a + b}')
            sum_lat[$t]=$(awk -v a="${sum_lat[$t]}" -v b="${lat:-0}" 'BEGIN {print a + b}')
        done
    done
    BK_PSQL_USER=postgres bk_psql "ALTER TABLE reservation_seats ENABLE TRIGGER reservation_seats_seat_events_ins" >/dev/null
    awk -v n="$COST_ROUNDS" -v ton="${sum_tps[on]}" -v toff="${sum_tps[off]}" \
        -v lon="${sum_lat[on]}" -v loff="${sum_lat[off]}" 'BEGIN {
        printf "mean: triggers on %.1f bookings/s (%.3f ms), off %.1f bookings/s (%.3f ms): %+.3f ms a booking\n",
            ton / n, lon / n, toff / n, loff / n, (lon - loff) / n }'
fi
