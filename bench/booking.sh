#!/usr/bin/env bash
# bench/booking.sh: the booking benchmark, lockd mode against db mode in one run
# on this machine. Starts PostgreSQL 15 (fsync on), 3 Redis masters and LOCKDS lockd on free
# loopback ports in one temp dir; then for each mode starts 3 reserved (payment off, so the
# database and the lock are what is measured), creates a fresh hot performance on a
# 20000-seat venue and 50 background performances on a 1000-seat venue, and runs
# build/bin/bookbench over the 3 reserved, in one of two shapes:
# - split (default, BG_CLIENTS > 0): CLIENTS closed-loop clients book the hot performance
#   (1-3 seats) while BG_CLIENTS other clients, at the same time, send background traffic
#   at a fixed offered rate (BG_RATE requests/s, bookbench --rate): half bookings on the 50
#   other performances, half seat-map reads (of any of the 51). Two bookbench processes, so
#   the hot clients' rate is set by the hot path, not by the share of hot requests in a
#   mix, and both modes get the same background work (a closed background loop would send
#   more where it is answered faster and take the CPU from the hot path);
# - mixed (BG_CLIENTS=0): one bookbench, each of the CLIENTS picks every request at random:
#   BG_SHARE background bookings, READS_SHARE reads, the rest hot bookings. On a CPU-bound
#   machine the closed-loop mix pins the hot rate to its share of the total, whatever the
#   lock mode does.
# Prints each run, a comparison table (hot bookings/s, hot p50/p99, background p99, reads
# p99, and the lockd/db ratios) and one RESULT line per run.
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/booking.sh
#   CLIENTS=64 POOL=8 LOCKDS=1 bench/booking.sh
#   BG_CLIENTS=0 bench/booking.sh                 # the mixed shape
#   BUILD=build-rel MODES="db lockd" bench/booking.sh
# The defaults (128 hot clients, 32 connections per reserved: 96 in all) are the situation
# the lock service exists for: more buyers of one performance than database connections,
# so that in db mode every waiting buyer holds a connection. docs/performance.md has the
# figures of other shapes (64 clients; pools of 8, 16, 32).
# Environment: BUILD (build; built with Release when a binary is missing), CLIENTS (128),
# BG_CLIENTS (16), BG_RATE (80), DURATION (10 s: at ~700 hot bookings/s of 2 seats the
# 20000-seat hot performance lasts ~14 s; a run that sold it out says so), MODES
# ("lockd db"), LOCKDS (2), ROUNDS (1; each round runs every mode once, the comparison
# takes the means), SEED (1), POOL (32: db_pool_size of each reserved), HISTORY (40000),
# BG_SHARE and READS_SHARE (mixed shape: 0.25 each; 0 and 0: hot bookings only).
set -euo pipefail
# Arguments: none but --help (the knobs are environment variables, above).
case "${1:-}" in
'') ;;
-h | --help)
    sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'
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
CLIENTS=${CLIENTS:-128}
BG_CLIENTS=${BG_CLIENTS:-16}
BG_RATE=${BG_RATE:-80}
DURATION=${DURATION:-10}
MODES=${MODES:-lockd db}
LOCKDS=${LOCKDS:-2}
ROUNDS=${ROUNDS:-1}
BG_SHARE=${BG_SHARE:-0.25}
READS_SHARE=${READS_SHARE:-0.25}
SEED=${SEED:-1}
export BK_DB_POOL=${POOL:-32}

for t in lockd reserved bookbench; do
    if [[ ! -x "$BUILD/bin/$t" ]]; then
        echo "== building lockd, reserved, bookbench (Release) in $BUILD"
        cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" -j2 --target lockd reserved bookbench >/dev/null
        break
    fi
done
BK_BIN=$(cd "$BUILD/bin" && pwd)

# shellcheck source=../scripts/lib/booking.sh
source scripts/lib/booking.sh
trap bk_cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
bk_init booking-bench
bk_start_pg
bk_start_redis 3
bk_start_lockd "$LOCKDS"
echo "== PostgreSQL $BK_PG_CONNINFO (fsync on); redis $BK_REDIS_LIST; lockd ${BK_LOCKD[*]}"

NUSERS=200
SUMMARY=() # "mode round RESULT ..."
HISTORY=${HISTORY:-40000}
# A booking database in use is not empty: HISTORY past reservations of 2 seats (400 per
# performance of a 1000-seat hall) are loaded once, before the first run, and analyzed.
# PostgreSQL caches a generic plan per statement after a few executions; a plan made on
# empty tables (sequential scans) stays cached while the tables grow by thousands of rows
# in a run, and slows whichever mode runs first.
bk_seed_history() {
    local perfs=$(((HISTORY + 399) / 400)) t0=$SECONDS
    BK_PSQL_USER=postgres bk_psql "
        CREATE TEMP TABLE hv AS WITH v AS (INSERT INTO venues (name) VALUES ('History hall')
                                           RETURNING id) SELECT id FROM v;
        INSERT INTO venue_seats (venue_id, row_label, number, type)
            SELECT hv.id, 'R' || (g / 50 + 1), g % 50 + 1,
                   CASE WHEN g < 100 THEN 'VIP' ELSE 'NORMAL' END
              FROM hv, generate_series(0, 999) g;
        CREATE TEMP TABLE hs AS SELECT vs.id, vs.type, row_number() OVER (ORDER BY vs.id) AS n
            FROM venue_seats vs JOIN hv ON vs.venue_id = hv.id;
        CREATE TEMP TABLE hu AS WITH u AS (INSERT INTO users (name, email)
            SELECT 'past user ' || g, 'past' || g || '.' || txid_current() || '@history.test'
              FROM generate_series(1, 1000) g RETURNING id)
            SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM u;
        CREATE TEMP TABLE hp AS WITH p AS (INSERT INTO performances (venue_id, title, starts_at,
            normal_price, vip_price, total_capacity, remaining_capacity)
            SELECT hv.id, 'Past show ' || g, now() - g * interval '1 day', 50000, 120000, 1000, 200
              FROM hv, generate_series(1, $perfs) g RETURNING id) SELECT id FROM p;
        CREATE TEMP TABLE hr AS WITH r AS (INSERT INTO reservations (user_id, performance_id,
            status, normal_price, vip_price, total_amount)
            SELECT hu.id, hp.id, 'CONFIRMED', 50000, 120000, 100000
              FROM hp CROSS JOIN generate_series(1, 400) k JOIN hu ON hu.n = (hp.id * 7 + k) % 1000
             ORDER BY hp.id, k RETURNING id, performance_id)
            SELECT id, performance_id, row_number() OVER (PARTITION BY performance_id ORDER BY id) AS k
              FROM r;
        INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type, price)
            SELECT hr.id, hr.performance_id, hs.id, hs.type,
                   CASE WHEN hs.type = 'VIP' THEN 120000 ELSE 50000 END
              FROM hr JOIN hs ON hs.n IN (2 * hr.k - 1, 2 * hr.k);" >/dev/null
    echo "== history: $((perfs * 400)) past reservations on $perfs performances ($((SECONDS - t0)) s)"
}
run_mode() { # run_mode MODE ROUND
    local mode=$1 round=$2 tag="$1-$2" d
    echo
    echo "== round $round, mode $mode: 3 reserved, payment off; load $(cut -d' ' -f1-3 /proc/loadavg)"
    bk_start_reserved 3 "$mode" ""
    if [[ -z ${HISTORY_DONE:-} && $HISTORY -gt 0 ]]; then
        bk_seed_history
        HISTORY_DONE=1
    fi
    # The API takes at most 10000 seats in one venue body; the hot hall is twice that, so
    # lockd mode does not sell it out within a run. Same layout: 100 a row, the first 1000 VIP.
    HOT_VENUE=$(BK_PSQL_USER=postgres bk_psql "
        WITH v AS (INSERT INTO venues (name) VALUES ('Bench hot hall ($tag)') RETURNING id),
             s AS (INSERT INTO venue_seats (venue_id, row_label, number, type)
                   SELECT v.id, 'R' || (g / 100 + 1), g % 100 + 1,
                          CASE WHEN g < 1000 THEN 'VIP' ELSE 'NORMAL' END
                     FROM v, generate_series(0, 19999) g)
        SELECT id FROM v")
    BG_VENUE=$(bk_create_venue "Bench hall ($tag)" 1000 100 50)
    HOT=$(bk_create_perf "$HOT_VENUE" "Hot ($tag)" 40)
    BG=()
    for ((d = 1; d <= 50; d++)); do
        BG+=("$(bk_create_perf "$BG_VENUE" "Background $d ($tag)" $((40 + d)))")
    done
    bk_create_users "$NUSERS"
    # Same start for every run: the last run's dead row versions (a hot performance row is
    # updated once or twice per booking) vacuumed, statistics fresh, dirty pages flushed.
    BK_PSQL_USER=postgres bk_psql "VACUUM (ANALYZE)" >/dev/null
    BK_PSQL_USER=postgres bk_psql "CHECKPOINT" >/dev/null
    BG_LIST=$(
        IFS=,
        echo "${BG[*]}"
    )
    local common=(--servers "$(bk_servers)" --duration "$DURATION" --hot-perf "$HOT"
        --background-perfs "$BG_LIST" --users "$BK_USERS_FIRST:$NUSERS" --seats-min 1
        --seats-max 3 --result-line)
    echo "   (reserved configs: lock.mode $mode, payment.url \"\", db_pool_size $BK_DB_POOL, lock.wait_ms 5000)"
    if ((BG_CLIENTS > 0)); then
        CMD=("$BK_BIN/bookbench" "${common[@]}" --clients "$CLIENTS" --background-share 0
            --reads-share 0 --seed "$SEED" --json "$BK_TMP/bookbench-$tag-hot.json")
        local bg_cmd=("$BK_BIN/bookbench" "${common[@]}" --clients "$BG_CLIENTS"
            --background-share 0.5 --reads-share 0.5 --rate "$BG_RATE" --seed "$((SEED + 1))"
            --json "$BK_TMP/bookbench-$tag-bg.json")
        echo "\$ ${CMD[*]} &"
        echo "\$ ${bg_cmd[*]}"
        "${bg_cmd[@]}" >"$BK_TMP/bookbench-$tag-bg.out" &
        BK_PIDS+=($!)
        "${CMD[@]}" >"$BK_TMP/bookbench-$tag-hot.out"
        wait "${BK_PIDS[-1]}"
        echo "-- hot clients"
        grep -v '^RESULT' "$BK_TMP/bookbench-$tag-hot.out"
        echo "-- background clients"
        grep -v '^RESULT' "$BK_TMP/bookbench-$tag-bg.out"
        # One RESULT: the hot_* fields of the hot clients, the others of the background ones.
        {
            printf 'RESULT clients=%s bg_clients=%s' "$CLIENTS" "$BG_CLIENTS"
            grep '^RESULT' "$BK_TMP/bookbench-$tag-hot.out" | tr ' ' '\n' | grep '^hot_' | tr '\n' ' ' |
                sed 's/^/ /; s/ $//'
            grep '^RESULT' "$BK_TMP/bookbench-$tag-bg.out" | tr ' ' '\n' |
                grep -E '^(bg|read)_' | tr '\n' ' ' | sed 's/^/ /; s/ $//'
            echo
        } >"$BK_TMP/bookbench-$tag.out"
        cat "$BK_TMP/bookbench-$tag.out"
    else
        CMD=("$BK_BIN/bookbench" "${common[@]}" --clients "$CLIENTS" --background-share "$BG_SHARE"
            --reads-share "$READS_SHARE" --seed "$SEED" --json "$BK_TMP/bookbench-$tag.json")
        echo "\$ ${CMD[*]}"
        "${CMD[@]}" | tee "$BK_TMP/bookbench-$tag.out"
    fi
    echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg); performances table: $(bk_psql \
        "SELECT n_dead_tup || ' dead row versions, ' || pg_relation_size('performances') / 8192 ||
                ' pages' FROM pg_stat_user_tables WHERE relname = 'performances'")"
    echo "   peak RSS (MiB): reserved $(bk_peak_rss "${BK_RESERVED_PIDS[@]}"); lockd $(bk_peak_rss \
        "${BK_LOCKD_PIDS[@]}") (since its start, all runs so far)"
    SUMMARY+=("$mode $round $(grep '^RESULT ' "$BK_TMP/bookbench-$tag.out")")
    if grep -q ' hot_all_sold=1' "$BK_TMP/bookbench-$tag.out"; then
        echo "   WARNING: the hot performance sold out during the run: hot figures are understated"
    fi
    bk_stop_reserved
}
# Rounds alternate the modes, so a load that drifts (a shared machine) hits both alike.
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do run_mode "$mode" "$round"; done
done

get() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
echo
if ((BG_CLIENTS > 0)); then
    SHAPE="split: $CLIENTS hot clients + $BG_CLIENTS background clients at $BG_RATE req/s"
else
    SHAPE="mixed: $CLIENTS clients, background share $BG_SHARE, reads share $READS_SHARE"
fi
echo "== comparison ($SHAPE, $DURATION s, 3 reserved, $LOCKDS lockd, $(nproc) cores)"
printf '%-6s %5s %10s %10s %10s %10s %10s %10s %10s\n' mode round "hot 201/s" "hot p50ms" \
    "hot p99ms" "bg 201/s" "bg p99ms" "read/s" "read p99ms"
TABLE=""
for line in "${SUMMARY[@]}"; do
    read -r mode round _ <<<"$line"
    row=$(printf '%-6s %5s %10s %10s %10s %10s %10s %10s %10s' "$mode" "$round" \
        "$(get "$line" hot_ok_per_s)" "$(get "$line" hot_p50_ms)" "$(get "$line" hot_p99_ms)" \
        "$(get "$line" bg_ok_per_s)" "$(get "$line" bg_p99_ms)" "$(get "$line" read_ok_per_s)" \
        "$(get "$line" read_p99_ms)")
    echo "$row"
    TABLE+="$row"$'\n'
done
# Means over the rounds, and the ratios the issue asks about.
awk '$1 != "" { n[$1]++; hot[$1] += $3; bg[$1] += $7 }
     END {
         for (m in n) printf "mean %-6s hot 201/s %.1f, background p99 %.1f ms (%d rounds)\n",
                             m, hot[m] / n[m], bg[m] / n[m], n[m]
         if (n["lockd"] && n["db"] && hot["db"] > 0)
             printf "hot bookings/s lockd/db = %.2fx\n",
                    (hot["lockd"] / n["lockd"]) / (hot["db"] / n["db"])
         if (n["lockd"] && n["db"] && bg["lockd"] > 0)
             printf "background p99 db/lockd = %.2fx\n",
                    (bg["db"] / n["db"]) / (bg["lockd"] / n["lockd"])
     }' <<<"$TABLE"
for line in "${SUMMARY[@]}"; do
    read -r mode round _ <<<"$line"
    echo "RESULT mode=$mode round=$round ${line#* RESULT }"
done
