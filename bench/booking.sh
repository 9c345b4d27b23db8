#!/usr/bin/env bash
# bench/booking.sh: the booking benchmark, lockd mode against db mode in one run
# on this machine. Starts PostgreSQL 15 (fsync on), 3 Redis masters and LOCKDS lockd on free
# loopback ports in one temp dir; then for each mode starts 3 reserved (payment off unless
# PAYMENT=1, so the database and the lock are what is measured), creates a fresh hot
# performance on a HOT_SEATS-seat venue and 50 background performances on a 1000-seat
# venue, and runs
# build/bin/bookbench over the 3 reserved, in one of three shapes (SHAPE):
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
#   lock mode does;
# - distinct (SHAPE=distinct): a sale without conflicts. One bookbench, CLIENTS clients,
#   hot bookings only, no background traffic (no background performances either); the hot seats are cut into one slice per
#   client (bookbench --hot-partition), so no two buyers ever ask for the same seat and
#   every booking can succeed. The hot hall has HOT_SEATS seats (120000 here: a client
#   uses up its slice of 1/CLIENTS of them).
# The serial ceiling, in the same run (CEILING=1): after the modes of each round, pgbench
# (PostgreSQL 15's) runs the booking transaction of lockd mode from ONE client for
# CEILING_DURATION s on a fresh performance of its own: BEGIN; SELECT * FROM
# rs_book_read(perf, user, 1-3 seats, fence, false, reference) (the fence update on the
# hot row, the reservation and its seats, the capacity: what reserved sends with payment
# off); COMMIT. One commit per booking, nothing else on the machine: the rate one hot
# performance allows when bookings are made one after another.
# PAYMENT=1: fakepay in the path (reserved payment.url; --latency-ms PAY_LATENCY_MS, no
# declines), in both modes. The ceiling above stays without payment; a second pgbench
# run adds the payment's time to each serial booking (\sleep PAY_LATENCY_MS ms inside
# the transaction, where reserved pays: fakepay's own latency, without its HTTP round
# trip), the serial ceiling with payment ("ceil+pay", lockd_ceiling_pay).
# Prints each run (with each reserved's share of the hot bookings, "shares: r1 x% r2 y%
# r3 z% (each within 0.5x-1.5x of an equal share: yes|no ...)", and in lockd mode the
# group-booking batch sizes of the timed run from reserved's /metrics (less a snapshot
# taken after the warm-up), "batch sizes: mean n (...), p50 <= a, p99 <= b" or "n/a"), a
# comparison table (hot bookings/s, hot p50/p99, background
# p99, reads p99, batch mean, min-max share against an equal one; the ceiling; the
# lockd/db and lockd/ceiling ratios), one RESULT line per run and one SUMMARY line.
# SHAPES="split distinct:64:16 split+pay ..." (or ALL=1: every shape of the docs table)
# runs this script once per shape, NAME[:CLIENTS:POOL][+pay], and prints one table of
# their SUMMARY lines; each shape takes about 2 x (DURATION + 15) + CEILING_DURATION + 25
# s (printed before it starts).
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/booking.sh
#   CLIENTS=64 POOL=8 LOCKDS=1 bench/booking.sh
#   BG_CLIENTS=0 bench/booking.sh                 # the mixed shape
#   SHAPE=distinct bench/booking.sh               # no two buyers want the same seat
#   PAYMENT=1 SHAPE=distinct bench/booking.sh     # fakepay with 5 ms in the path
#   ALL=1 BUILD=build-rel bench/booking.sh        # every shape, one table
#   BUILD=build-rel MODES="db lockd" bench/booking.sh
# The defaults (128 hot clients, 32 connections per reserved: 96 in all) are the situation
# the lock service exists for: more buyers of one performance than database connections,
# so that in db mode every waiting buyer holds a connection. docs/performance.md has the
# figures of other shapes (64 clients; pools of 8, 16, 32).
# Environment: BUILD (build; built with Release when a binary is missing), SHAPE (split;
# mixed when BG_CLIENTS=0; or distinct), CLIENTS (128), BG_CLIENTS (16), BG_RATE (80),
# DURATION (10 s: the 40000-seat hot performance lasts ~16 s at ~1,250 hot bookings/s of 2
# seats, as in mixed; the split shapes, at 2,000-4,000/s, sell it out in 5-9 s, which the
# run says, and their figures cover that time), HOT_SEATS (40000; 120000 in distinct),
# MODES ("lockd db"), LOCKDS (2), ROUNDS (1; each round runs every mode once, the
# comparison takes the means), SEED (1), POOL (32: db_pool_size of each reserved),
# HISTORY (40000), BG_SHARE and READS_SHARE (mixed shape: 0.25 each; 0 and 0: hot
# bookings only), CEILING (1; 0: no pgbench), CEILING_DURATION (5 s), PAYMENT (0),
# PAY_LATENCY_MS (5), SHAPES and ALL (above); BK_LOCK_EXTRA (more keys of reserved's
# `lock:` mapping, e.g. "batch_max: 1"); WARM (1: every seat map read once through every
# reserved before the timed run, as on a server that has been up; 0: cold caches, no
# warm-up bookings), WARM_S (3: seconds of bookings of the run's shape on a performance of
# their own before the timed run, so that every connection has planned its statements;
# 0: none).
set -euo pipefail
# Arguments: none but --help (the knobs are environment variables, above).
# shellcheck source=../scripts/lib/benchargs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/benchargs.sh"
bench_args "$0" "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# ---- SHAPES / ALL: this script once per shape, then one table of their SUMMARY lines.
if [[ ${ALL:-0} == 1 && -z ${SHAPES:-} ]]; then
    SHAPES="split split:64:16 split:64:32 split:128:8 split:64:8 mixed distinct distinct:64:16 split+pay distinct+pay"
fi
if [[ -n ${SHAPES:-} ]]; then
    read -ra list <<<"$SHAPES"
    for entry in "${list[@]}"; do
        if [[ ! $entry =~ ^(split|mixed|distinct)(:[0-9]+:[0-9]+)?(\+pay)?$ ]]; then
            echo "booking.sh: SHAPES entry '$entry': want split|mixed|distinct[:CLIENTS:POOL][+pay]" >&2
            exit 2
        fi
    done
    per=$((2 * (${DURATION:-10} + 15) * ${ROUNDS:-1} + ${CEILING_DURATION:-5} * ${ROUNDS:-1} + 25))
    echo "== ${#list[@]} shapes, about $per s each (~$(((per * ${#list[@]} + 59) / 60)) min): ${list[*]}"
    logs=$(mktemp -d "${TMPDIR:-/tmp}/booking-shapes.XXXXXX")
    rows=()
    for entry in "${list[@]}"; do
        base=${entry%%+*} pay=0
        [[ $entry == *+pay ]] && pay=1
        IFS=: read -r name c p <<<"$base"
        env_=(SHAPE="$name" PAYMENT="$pay")
        [[ -n $c ]] && env_+=(CLIENTS="$c")
        [[ -n $p ]] && env_+=(POOL="$p")
        echo
        echo "==== shape $entry: ${env_[*]} bench/booking.sh (log $logs/$entry.log)"
        rc=0
        env -u SHAPES -u ALL "${env_[@]}" bash "$0" >"$logs/$entry.log" 2>&1 || rc=$?
        # (a shape that failed before its comparison prints nothing here: grep's 1 is no failure)
        sed -n '/^== comparison/,/^RESULT/p' "$logs/$entry.log" | grep -v '^RESULT' || true
        if [[ $rc -ne 0 ]]; then
            echo "shape $entry FAILED (exit $rc); the end of its log:"
            tail -n 15 "$logs/$entry.log"
            rows+=("SUMMARY shape=$entry failed=1")
            continue
        fi
        rows+=("$(grep '^SUMMARY ' "$logs/$entry.log" | sed "s/^SUMMARY shape=[^ ]*/SUMMARY shape=$entry/")")
    done
    sget() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
    echo
    echo "== all shapes (DURATION ${DURATION:-10} s, ROUNDS ${ROUNDS:-1}, $(nproc) cores, load now $(cut -d' ' -f1-3 /proc/loadavg)); hot bookings/s and p99 ms"
    printf '%-14s %7s %8s %8s %6s %8s %6s %6s %10s %10s %6s %10s %8s\n' shape "cl/conn" lockd db \
        lockd/db ceiling "l/ceil" "db/ceil" "p99 l/db" "bg99 l/db" batch "shares l" "l/c+pay"
    for r in "${rows[@]}"; do
        if [[ $(sget "$r" failed) == 1 ]]; then
            printf '%-14s FAILED (its log, above)\n' "$(sget "$r" shape)"
            continue
        fi
        printf '%-14s %7s %8s %8s %6s %8s %6s %6s %10s %10s %6s %10s %8s\n' "$(sget "$r" shape)" \
            "$(sget "$r" clients)/$(sget "$r" conns)" "$(sget "$r" lockd)" "$(sget "$r" db)" \
            "$(sget "$r" lockd_db)" "$(sget "$r" ceiling)" "$(sget "$r" lockd_ceiling)" \
            "$(sget "$r" db_ceiling)" "$(sget "$r" p99_lockd)/$(sget "$r" p99_db)" \
            "$(sget "$r" bg_p99_lockd)/$(sget "$r" bg_p99_db)" "$(sget "$r" batch_lockd)" \
            "$(sget "$r" shares_lockd)" "$(sget "$r" lockd_ceiling_pay)"
    done
    printf '%s\n' "${rows[@]}"
    echo "(logs of every shape: $logs)"
    # every shape ran; a shape that failed fails the whole command
    if grep -q ' failed=1' <<<"${rows[*]}"; then exit 1; fi
    exit 0
fi

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
if [[ -z ${SHAPE:-} ]]; then
    SHAPE=split
    ((BG_CLIENTS > 0)) || SHAPE=mixed
fi
case $SHAPE in
split) ((BG_CLIENTS > 0)) || BG_CLIENTS=16 ;;
mixed) BG_CLIENTS=0 ;;
distinct) BG_CLIENTS=0 ;;
*)
    echo "booking.sh: SHAPE=$SHAPE: want split, mixed or distinct" >&2
    exit 2
    ;;
esac
if [[ $SHAPE == distinct ]]; then HOT_SEATS=${HOT_SEATS:-120000}; else HOT_SEATS=${HOT_SEATS:-40000}; fi
CEILING=${CEILING:-1}
CEILING_DURATION=${CEILING_DURATION:-5}
PAYMENT=${PAYMENT:-0}
PAY_LATENCY_MS=${PAY_LATENCY_MS:-5}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WARM=${WARM:-1}
WARM_S=${WARM_S:-3}
[[ $WARM_S =~ ^[0-9]+$ ]] || {
    echo "booking.sh: WARM_S=$WARM_S: want whole seconds (0: no warm-up bookings)" >&2
    exit 2
}
[[ $WARM == [01] ]] || {
    echo "booking.sh: WARM=$WARM: want 1 (seat maps read before the run) or 0" >&2
    exit 2
}

for t in lockd reserved bookbench fakepay; do
    if [[ ! -x "$BUILD/bin/$t" ]]; then
        echo "== building lockd, reserved, bookbench, fakepay (Release) in $BUILD"
        cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" -j2 --target lockd reserved bookbench fakepay >/dev/null
        break
    fi
done
BK_BIN=$(cd "$BUILD/bin" && pwd)
if [[ $CEILING == 1 && ! -x $PGBIN/pgbench ]]; then
    echo "booking.sh: no $PGBIN/pgbench (package postgresql-15; scripts/deps.sh installs it): CEILING=0 runs without the ceiling" >&2
    exit 2
fi

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
PAY_URL=""
if [[ $PAYMENT == 1 ]]; then
    bk_start_fakepay --latency-ms "$PAY_LATENCY_MS" --seed "$SEED"
    PAY_URL=$BK_PAY_URL
    echo "== fakepay $PAY_URL (--latency-ms $PAY_LATENCY_MS, no declines)"
fi

NUSERS=200
SUMMARY=() # "mode round RESULT ..."
declare -A BATCH=() # "mode-round" -> mean batch size (lockd mode), or n/a
CEIL=()             # "round per_s latency_ms"
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
# A hall of N seats made by SQL (the API takes at most 10000 seats in one venue body):
# 100 a row, the first 1000 VIP. Prints its id.
hot_hall() { # hot_hall NAME N
    BK_PSQL_USER=postgres bk_psql "
        WITH v AS (INSERT INTO venues (name) VALUES ('$1') RETURNING id),
             s AS (INSERT INTO venue_seats (venue_id, row_label, number, type)
                   SELECT v.id, 'R' || (g / 100 + 1), g % 100 + 1,
                          CASE WHEN g < 1000 THEN 'VIP' ELSE 'NORMAL' END
                     FROM v, generate_series(0, $2 - 1) g)
        SELECT id FROM v"
}
# Same start for every run: the last run's dead row versions (a hot performance row is
# updated once or twice per booking) vacuumed, statistics fresh, dirty pages flushed.
fresh_db() {
    BK_PSQL_USER=postgres bk_psql "VACUUM (ANALYZE)" >/dev/null
    BK_PSQL_USER=postgres bk_psql "CHECKPOINT" >/dev/null
}
# Each reserved's seat-map cache as a server that has been up for a while has it: every
# performance's map read once through every reserved (one keep-alive curl each), so the
# timed run measures the sale and not the first build of 153 maps. Both modes get the
# same warm-up. WARM=0 skips it.
warm_maps() { # warm_maps PERF_ID...
    [[ $WARM == 1 ]] || return 0
    local srv id args codes t0=$SECONDS
    for srv in "${BK_RESERVED[@]}"; do
        args=()
        for id in "$@"; do args+=(-o /dev/null "http://$srv/performances/$id/seats"); done
        codes=$(curl -s -w '%{http_code}\n' "${args[@]}") || bk_fail "warm-up: curl failed on $srv"
        [[ $(grep -vc '^200$' <<<"$codes") == 0 ]] || bk_fail "warm-up: $srv answered $(sort <<<"$codes" | uniq -c | tr '\n' ' ')"
    done
    echo "   warm-up: $# seat maps read through each of ${#BK_RESERVED[@]} reserved ($((SECONDS - t0)) s)"
}
# Bookings as on a server that has been up: WARM_S s of the run's own shape on a
# performance of its own (PERF, on the hot hall) before the timed run. Each
# PostgreSQL connection plans a statement the first times it runs it and after every
# VACUUM or ANALYZE of a table it reads (fresh_db runs one); a plpgsql function plans each
# of its statements per connection. With 96 connections the first bookings after
# fresh_db re-plan every booking statement 96 times, which a server that has been up has
# done long ago. Both modes get the same warm-up; WARM=0 skips it.
warm_bookings() { # warm_bookings TAG PERF ARGS... (bookbench's common arguments but --hot-perf)
    [[ $WARM == 1 && $WARM_S -gt 0 ]] || return 0
    local tag=$1 perf=$2
    shift 2
    local cmd=("$BK_BIN/bookbench" "$@" --duration "$WARM_S" --hot-perf "$perf"
        --clients "$CLIENTS" --seed "$((SEED + 2))")
    if [[ $SHAPE == distinct ]]; then
        cmd+=(--background-share 0 --reads-share 0 --hot-partition)
    else
        cmd+=(--background-share 0.25 --reads-share 0.25)
    fi
    "${cmd[@]}" >"$BK_TMP/warm-$tag.out" || bk_fail "warm-up bookings failed: $(tail -n 3 "$BK_TMP/warm-$tag.out")"
    echo "   warm-up: $WARM_S s of bookings on performance $perf ($(sed -n 's/^bookbench: //p' "$BK_TMP/warm-$tag.out" | head -n 1))"
}
run_mode() { # run_mode MODE ROUND
    local mode=$1 round=$2 tag="$1-$2" d
    echo
    echo "== round $round, mode $mode: 3 reserved, payment $([[ $PAYMENT == 1 ]] && echo "on (fakepay, $PAY_LATENCY_MS ms)" || echo off); load $(cut -d' ' -f1-3 /proc/loadavg)"
    bk_start_reserved 3 "$mode" "$PAY_URL"
    if [[ -z ${HISTORY_DONE:-} && $HISTORY -gt 0 ]]; then
        bk_seed_history
        HISTORY_DONE=1
    fi
    # HOT_SEATS, more than the 10000 a venue body may hold, so that lockd mode does not
    # sell it out within a run.
    HOT_VENUE=$(hot_hall "Bench hot hall ($tag)" "$HOT_SEATS")
    HOT=$(bk_create_perf "$HOT_VENUE" "Hot ($tag)" 40)
    local warm_perf=""
    [[ $WARM == 1 ]] && warm_perf=$(bk_create_perf "$HOT_VENUE" "Warm-up ($tag)" 39)
    BG=()
    if [[ $SHAPE != distinct ]]; then # the distinct shape has no background traffic
        BG_VENUE=$(bk_create_venue "Bench hall ($tag)" 1000 100 50)
        for ((d = 1; d <= 50; d++)); do
            BG+=("$(bk_create_perf "$BG_VENUE" "Background $d ($tag)" $((40 + d)))")
        done
    fi
    bk_create_users "$NUSERS"
    fresh_db
    warm_maps "$HOT" "${BG[@]}"
    BG_LIST=$(
        IFS=,
        echo "${BG[*]}"
    )
    local base=(--servers "$(bk_servers)" --users "$BK_USERS_FIRST:$NUSERS"
        --tokens "$BK_TOKENS_FILE" --seats-min 1 --seats-max 3)
    [[ -n $BG_LIST ]] && base+=(--background-perfs "$BG_LIST")
    warm_bookings "$tag" "$warm_perf" "${base[@]}"
    # the batch sizes of the timed run only, not the warm-up's
    bk_metrics "${BK_RESERVED[@]}" >"$BK_TMP/metrics-$tag.before"
    local common=("${base[@]}" --duration "$DURATION" --hot-perf "$HOT" --result-line)
    echo "   (reserved configs: lock.mode $mode, payment.url \"$PAY_URL\", db_pool_size $BK_DB_POOL, lock.wait_ms 5000;"
    echo "    every request carries its buyer's bearer token; rate limits off, purchase limit ${BK_MAX_SEATS_PER_USER:-100000})"
    if [[ $SHAPE == split ]]; then
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
        if [[ $SHAPE == distinct ]]; then
            CMD=("$BK_BIN/bookbench" "${common[@]}" --clients "$CLIENTS" --background-share 0
                --reads-share 0 --hot-partition --seed "$SEED" --json "$BK_TMP/bookbench-$tag.json")
        else
            CMD=("$BK_BIN/bookbench" "${common[@]}" --clients "$CLIENTS" --background-share "$BG_SHARE"
                --reads-share "$READS_SHARE" --seed "$SEED" --json "$BK_TMP/bookbench-$tag.json")
        fi
        echo "\$ ${CMD[*]}"
        "${CMD[@]}" | tee "$BK_TMP/bookbench-$tag.out"
    fi
    local result
    result=$(grep '^RESULT ' "$BK_TMP/bookbench-$tag.out")
    echo "   $(bk_hot_shares "$(get "$result" hot_ok_by_server)")"
    if [[ $mode == lockd ]]; then
        BATCH[$tag]=$(bk_batch_sizes --since "$BK_TMP/metrics-$tag.before" "${BK_RESERVED[@]}")
        echo "   batch sizes: ${BATCH[$tag]}"
    fi
    echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg); performances table: $(bk_psql \
        "SELECT n_dead_tup || ' dead row versions, ' || pg_relation_size('performances') / 8192 ||
                ' pages' FROM pg_stat_user_tables WHERE relname = 'performances'")"
    echo "   peak RSS (MiB): reserved $(bk_peak_rss "${BK_RESERVED_PIDS[@]}"); lockd $(bk_peak_rss \
        "${BK_LOCKD_PIDS[@]}") (since its start, all runs so far)"
    SUMMARY+=("$mode $round $result")
    if [[ $result == *' hot_all_sold=1'* ]]; then
        echo "   WARNING: the hot performance sold out $(get "$result" hot_all_sold_ms) ms into the run: the hot figures cover that time only (the hot clients stop), the background ones the whole run (HOT_SEATS raises the hall)"
    fi
    if [[ $(get "$result" hot_slices_empty) -gt 0 ]]; then
        echo "   WARNING: $(get "$result" hot_slices_empty) hot clients used up their slice of seats and stopped: fewer clients at the end (HOT_SEATS raises the hall)"
    fi
    bk_stop_reserved
}

# One pgbench run of a ceiling script on run_ceiling's perf and user (its locals), from
# seat S and fence F: prints the command and pgbench's summary (or its errors, as "LABEL:
# pgbench failed"); sets C_TPS (one decimal; empty when it failed) and C_LAT (ms).
ceiling_pgbench() { # ceiling_pgbench SCRIPT S F LABEL
    local out rc=0 cmd=("$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$CEILING_DURATION" -f "$1"
        -D "perf=$perf" -D "user=$user" -D "s=$2" -D "f=$3" -h "$BK_PG_DIR" -p "$BK_PG_PORT"
        -U booking booking)
    # the planner setting reserved gives its own sessions (rs_db.c), so that pgbench runs
    # the booking transaction with the plans reserved's bookings get
    echo "\$ PGOPTIONS='-c random_page_cost=1.1' ${cmd[*]}"
    out=$(PGOPTIONS='-c random_page_cost=1.1' "${cmd[@]}" 2>&1) || rc=$?
    C_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
    C_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")
    if [[ $rc -ne 0 || -z $C_TPS ]]; then
        echo "   $4: pgbench failed (exit $rc):"
        grep -iE 'error|abort|detail' <<<"$out" | head -n 8 | sed 's/^/   | /'
        C_TPS=""
        return
    fi
    grep -E '^(number of transactions actually processed|latency average|tps)' <<<"$out" | sed 's/^/   /'
    C_TPS=$(printf '%.1f' "$C_TPS")
}

# The serial ceiling: pgbench, ONE client, CEILING_DURATION s of lockd mode's booking
# transaction with payment off (rs_book_read with a growing fence: the fence update and
# the capacity in one new version of the hot row, the reservation, its 1-3 seats, the
# read-back) on a fresh performance whose hall has seats for 4000 bookings/s of 3 seats.
# Appends "ROUND PER_S LATENCY_MS" to CEIL, or "ROUND n/a n/a" when pgbench failed.
run_ceiling() { # run_ceiling ROUND
    local round=$1 seats=$((12000 * CEILING_DURATION)) venue perf first n user
    echo
    echo "== round $round, serial ceiling: pgbench, 1 client, $CEILING_DURATION s, the booking transaction of lockd mode (payment off); load $(cut -d' ' -f1-3 /proc/loadavg)"
    venue=$(hot_hall "Ceiling hall ($round)" "$seats")
    read -r perf first n < <(BK_PSQL_USER=postgres bk_psql "
        WITH p AS (INSERT INTO performances (venue_id, title, starts_at, normal_price, vip_price,
                                             total_capacity, remaining_capacity)
                   VALUES ($venue, 'Ceiling ($round)', now() + interval '60 days', 50000, 120000,
                           $seats, $seats) RETURNING id)
        SELECT p.id, min(vs.id), count(*) FROM p, venue_seats vs WHERE vs.venue_id = $venue
         GROUP BY p.id" | tr '|' ' ')
    user=$(bk_psql "SELECT min(id) FROM users")
    if [[ -z $perf || $n -ne $seats || -n $(bk_psql "SELECT 1 FROM venue_seats WHERE venue_id = $venue
                                                      HAVING max(id) - min(id) + 1 <> count(*)") ]]; then
        echo "   ceiling: the hall's seat ids are not one run of $seats: skipped"
        CEIL+=("$round n/a n/a")
        return
    fi
    fresh_db
    # s: the next free seat id, f: the fence, k: the seats of this booking (1-3, as the
    # hot clients ask). -M prepared: reserved's statements are prepared too.
    cat >"$BK_TMP/ceiling.sql" <<'EOF'
\set k random(1, 3)
\set f :f + 1
\set s2 :s + 1
\set s3 :s + 2
BEGIN;
\if :k = 1
SELECT * FROM rs_book_read(:perf::bigint, :user::bigint, ARRAY[:s::bigint], :f::numeric, false, 'ceiling-' || :perf::text || '-' || :f::text);
\elif :k = 2
SELECT * FROM rs_book_read(:perf::bigint, :user::bigint, ARRAY[:s::bigint, :s2::bigint], :f::numeric, false, 'ceiling-' || :perf::text || '-' || :f::text);
\else
SELECT * FROM rs_book_read(:perf::bigint, :user::bigint, ARRAY[:s::bigint, :s2::bigint, :s3::bigint], :f::numeric, false, 'ceiling-' || :perf::text || '-' || :f::text);
\endif
COMMIT;
\set s :s + :k
EOF
    ceiling_pgbench "$BK_TMP/ceiling.sql" "$first" 0 ceiling
    local tps=$C_TPS lat=$C_LAT booked
    booked=$(bk_psql "SELECT count(*) FROM reservations WHERE performance_id = $perf")
    if [[ -z $tps ]]; then
        CEIL+=("$round n/a n/a")
        return
    fi
    echo "   bookings committed on the ceiling performance: $booked"
    local pay=-
    if [[ $PAYMENT == 1 ]]; then
        # the same bookings with the payment's latency inside each, on the seats and fences
        # after those the first run used
        local next fence
        read -r next fence < <(bk_psql "SELECT (SELECT coalesce(max(seat_id), $first - 1) + 1
            FROM reservation_seats WHERE performance_id = $perf), last_fence::bigint
            FROM performances WHERE id = $perf" | tr '|' ' ')
        sed "s/^COMMIT;\$/\\\\sleep $PAY_LATENCY_MS ms\\nCOMMIT;/" "$BK_TMP/ceiling.sql" >"$BK_TMP/ceiling-pay.sql"
        echo "   with the payment's $PAY_LATENCY_MS ms in each booking (\\sleep before COMMIT):"
        ceiling_pgbench "$BK_TMP/ceiling-pay.sql" "$next" "$fence" "ceiling with payment"
        pay=${C_TPS:--}
    fi
    CEIL+=("$round $tps ${lat:-n/a} $pay")
}

get() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# Rounds alternate the modes, so a load that drifts (a shared machine) hits both alike.
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do run_mode "$mode" "$round"; done
    if [[ $CEILING == 1 ]]; then run_ceiling "$round"; fi
done

echo
case $SHAPE in
split) SHAPE_TXT="split: $CLIENTS hot clients + $BG_CLIENTS background clients at $BG_RATE req/s" ;;
mixed) SHAPE_TXT="mixed: $CLIENTS clients, background share $BG_SHARE, reads share $READS_SHARE" ;;
distinct) SHAPE_TXT="distinct: $CLIENTS hot clients, each its own slice of $HOT_SEATS seats, no background" ;;
esac
PAY_TXT="payment off"
[[ $PAYMENT == 1 ]] && PAY_TXT="payment on (fakepay, $PAY_LATENCY_MS ms)"
echo "== comparison ($SHAPE_TXT, $DURATION s, 3 reserved x $BK_DB_POOL connections, $LOCKDS lockd, $PAY_TXT, $(nproc) cores)"
printf '%-6s %5s %10s %10s %10s %10s %10s %10s %10s %6s %10s\n' mode round "hot 201/s" "hot p50ms" \
    "hot p99ms" "bg 201/s" "bg p99ms" "read/s" "read p99ms" "batch" "share x"
TABLE=""
for line in "${SUMMARY[@]}"; do
    read -r mode round _ <<<"$line"
    batch=-
    [[ $mode == lockd ]] && batch=$(sed -n 's/^mean \([0-9.]*\) .*/\1/p' <<<"${BATCH[$mode-$round]}")
    share="$(get "$line" hot_share_min)-$(get "$line" hot_share_max)"
    row=$(printf '%-6s %5s %10s %10s %10s %10s %10s %10s %10s %6s %10s' "$mode" "$round" \
        "$(get "$line" hot_ok_per_s)" "$(get "$line" hot_p50_ms)" "$(get "$line" hot_p99_ms)" \
        "$(get "$line" bg_ok_per_s)" "$(get "$line" bg_p99_ms)" "$(get "$line" read_ok_per_s)" \
        "$(get "$line" read_p99_ms)" "${batch:-n/a}" "$share")
    echo "$row"
    TABLE+="$row"$'\n'
done
for c in "${CEIL[@]}"; do
    read -r round tps lat pay <<<"$c"
    printf '%-6s %5s %10s   (pgbench, 1 client, %s s: latency average %s ms)\n' ceil "$round" "$tps" \
        "$CEILING_DURATION" "$lat"
    [[ $tps != n/a ]] && TABLE+="ceil $round $tps"$'\n'
    if [[ ${pay:--} != - ]]; then
        printf '%-8s %3s %10s   (the same with \\sleep %s ms before each COMMIT: the payment)\n' \
            ceil+pay "$round" "$pay" "$PAY_LATENCY_MS"
        TABLE+="ceilpay $round $pay"$'\n'
    fi
done
# Means over the rounds, and the ratios the issue asks about; then one SUMMARY line with
# the means (ALL=1 / SHAPES tabulate it).
awk -v shape="$SHAPE" -v clients="$CLIENTS" -v conns="$((3 * BK_DB_POOL))" -v pay="$PAYMENT" '
     $1 != "" { n[$1]++; hot[$1] += $3; p99[$1] += $5; bg[$1] += $7
                if ($10 ~ /^[0-9.]+$/) { nb[$1]++; batch[$1] += $10 }
                if ($11 ~ /^[0-9.]+-[0-9.]+$/) {
                    split($11, s, "-")
                    if (!(($1) in smin) || s[1] < smin[$1]) smin[$1] = s[1]
                    if (!(($1) in smax) || s[2] > smax[$1]) smax[$1] = s[2] } }
     function mean(a, m) { return n[m] ? a[m] / n[m] : 0 }
     function ratio(x, y) { return (y > 0 && x > 0) ? sprintf("%.2f", x / y) : "n/a" }
     function rx(x, y) { return ratio(x, y) == "n/a" ? "n/a" : ratio(x, y) "x" }
     END {
         split("lockd db", order, " ")
         for (i = 1; i <= 2; i++) if ((m = order[i]) in n)
             printf "mean %-6s hot 201/s %.1f, background p99 %.1f ms (%d rounds)\n",
                    m, mean(hot, m), mean(bg, m), n[m]
         if (n["ceil"])
             printf "mean serial ceiling (pgbench, 1 client) %.1f bookings/s (%d rounds)\n",
                    mean(hot, "ceil"), n["ceil"]
         l = mean(hot, "lockd"); d = mean(hot, "db"); c = mean(hot, "ceil")
         if (n["lockd"] && n["db"])
             printf "hot bookings/s lockd/db = %s\n", rx(l, d)
         if (n["ceil"] && (n["lockd"] || n["db"]))
             printf "hot bookings/s lockd/ceiling = %s, db/ceiling = %s\n", rx(l, c), rx(d, c)
         cp = mean(hot, "ceilpay")
         if (n["ceilpay"])
             printf "mean serial ceiling with payment %.1f bookings/s: lockd/ceiling = %s, db/ceiling = %s\n",
                    cp, rx(l, cp), rx(d, cp)
         if (n["lockd"] && n["db"] && bg["lockd"] > 0)
             printf "background p99 db/lockd = %s\n", rx(mean(bg, "db"), mean(bg, "lockd"))
         printf "SUMMARY shape=%s clients=%s conns=%s payment=%s lockd=%.1f db=%.1f lockd_db=%s", \
                shape, clients, conns, pay, l, d, ratio(l, d)
         printf " ceiling=%.1f lockd_ceiling=%s db_ceiling=%s p99_lockd=%.0f p99_db=%.0f", \
                c, ratio(l, c), ratio(d, c), mean(p99, "lockd"), mean(p99, "db")
         printf " bg_p99_lockd=%.0f bg_p99_db=%.0f batch_lockd=%s", mean(bg, "lockd"), \
                mean(bg, "db"), nb["lockd"] ? sprintf("%.2f", batch["lockd"] / nb["lockd"]) : "n/a"
         printf " shares_lockd=%s shares_db=%s", ("lockd" in smin) ? smin["lockd"] "-" smax["lockd"] : "n/a", \
                ("db" in smin) ? smin["db"] "-" smax["db"] : "n/a"
         printf " ceiling_pay=%s lockd_ceiling_pay=%s\n", n["ceilpay"] ? sprintf("%.1f", cp) : "n/a", \
                n["ceilpay"] ? ratio(l, cp) : "n/a"
     }' <<<"$TABLE" >"$BK_TMP/means"
grep -v '^SUMMARY ' "$BK_TMP/means"
for line in "${SUMMARY[@]}"; do
    read -r mode round _ <<<"$line"
    echo "RESULT mode=$mode round=$round ${line#* RESULT }"
done
for c in "${CEIL[@]}"; do
    read -r round tps lat pay <<<"$c"
    echo "RESULT mode=ceiling round=$round ceiling_per_s=$tps ceiling_latency_ms=$lat ceiling_pay_per_s=${pay:--}"
done
grep '^SUMMARY ' "$BK_TMP/means"
