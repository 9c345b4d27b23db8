#!/usr/bin/env bash
# bench/booking.sh: the booking benchmark (issue 3 §8), lockd mode against db mode in one run
# on this machine. Starts PostgreSQL 15 (fsync on), 3 Redis masters and 2 lockd on free
# loopback ports in one temp dir; then for each mode starts 3 reserved (payment off, so the
# database and the lock are what is measured), creates a fresh hot performance on a
# 10000-seat venue and 50 background performances on a 1000-seat venue, and runs
# build/bin/bookbench: CLIENTS closed-loop clients over the 3 reserved, half the requests
# hot bookings (1-3 seats), a quarter bookings on the 50 other performances, a quarter
# seat-map reads. Prints each run, a comparison table (hot bookings/s, hot p50/p99,
# background p99, reads p99, and the lockd/db ratios) and one RESULT line per mode.
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/booking.sh
#   CLIENTS=128 LOCKDS=1 bench/booking.sh
#   BUILD=build-rel MODES="db lockd" bench/booking.sh
# Environment: BUILD (build; built with Release when a binary is missing), CLIENTS (64),
# DURATION (10 s: at ~400 hot bookings/s of 2 seats a 10000-seat performance lasts ~12 s;
# a run that sold the hot performance out says so), MODES ("lockd db"), LOCKDS (2), SEED (1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10}
MODES=${MODES:-lockd db}
LOCKDS=${LOCKDS:-2}
SEED=${SEED:-1}

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
SUMMARY=()
for mode in $MODES; do
    echo
    echo "== mode $mode: 3 reserved, payment off"
    bk_start_reserved 3 "$mode" ""
    HOT_VENUE=$(bk_create_venue "Bench hot hall ($mode)" 10000 1000 100)
    BG_VENUE=$(bk_create_venue "Bench hall ($mode)" 1000 100 50)
    HOT=$(bk_create_perf "$HOT_VENUE" "Hot ($mode)" 40)
    BG=()
    for ((d = 1; d <= 50; d++)); do BG+=("$(bk_create_perf "$BG_VENUE" "Background $d ($mode)" $((40 + d)))"); done
    bk_create_users "$NUSERS"
    BK_PSQL_USER=postgres bk_psql "CHECKPOINT" >/dev/null
    BG_LIST=$(
        IFS=,
        echo "${BG[*]}"
    )
    CMD=("$BK_BIN/bookbench" --servers "$(bk_servers)" --clients "$CLIENTS" --duration "$DURATION"
        --hot-perf "$HOT" --background-perfs "$BG_LIST" --background-share 0.25
        --reads-share 0.25 --users "$BK_USERS_FIRST:$NUSERS" --seats-min 1 --seats-max 3
        --seed "$SEED" --json "$BK_TMP/bookbench-$mode.json")
    echo "\$ ${CMD[*]}"
    echo "   (reserved configs: lock.mode $mode, payment.url \"\", db_pool_size 8, lock.wait_ms 5000)"
    "${CMD[@]}" | tee "$BK_TMP/bookbench-$mode.out"
    echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    SUMMARY+=("$mode $(grep '^RESULT ' "$BK_TMP/bookbench-$mode.out")")
    if grep -q ' hot_all_sold=1' "$BK_TMP/bookbench-$mode.out"; then
        echo "   WARNING: the hot performance sold out during the run: hot figures are understated"
    fi
    bk_stop_reserved
done

get() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
echo
echo "== comparison ($CLIENTS clients, $DURATION s, 3 reserved, $LOCKDS lockd, $(nproc) cores)"
printf '%-6s %12s %10s %10s %10s %10s %10s %10s\n' mode "hot 201/s" "hot p50ms" "hot p99ms" \
    "bg 201/s" "bg p99ms" "read/s" "read p99ms"
declare -A HOT_OK BG_P99
for line in "${SUMMARY[@]}"; do
    mode=${line%% *}
    HOT_OK[$mode]=$(get "$line" hot_ok_per_s)
    BG_P99[$mode]=$(get "$line" bg_p99_ms)
    printf '%-6s %12s %10s %10s %10s %10s %10s %10s\n' "$mode" "${HOT_OK[$mode]}" \
        "$(get "$line" hot_p50_ms)" "$(get "$line" hot_p99_ms)" "$(get "$line" bg_ok_per_s)" \
        "${BG_P99[$mode]}" "$(get "$line" read_ok_per_s)" "$(get "$line" read_p99_ms)"
done
if [[ -n ${HOT_OK[lockd]:-} && -n ${HOT_OK[db]:-} ]]; then
    awk -v l="${HOT_OK[lockd]}" -v d="${HOT_OK[db]}" -v bl="${BG_P99[lockd]}" -v bd="${BG_P99[db]}" \
        'BEGIN { printf "hot bookings/s lockd/db = %.2fx; background p99 db/lockd = %.2fx\n",
                 (d > 0 ? l / d : 0), (bl > 0 ? bd / bl : 0) }'
fi
for line in "${SUMMARY[@]}"; do echo "RESULT mode=${line%% *} ${line#* RESULT }"; done
