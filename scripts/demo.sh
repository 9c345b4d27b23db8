#!/usr/bin/env bash
# demo.sh: the README's run command. Installs what is missing (scripts/deps.sh), builds the
# Release tree in build/, then starts the whole booking system on free 127.0.0.1 ports in
# one temp dir: PostgreSQL 15 (as `postgres`, fsync on), 3 Redis masters, 2 lockd, fakepay
# (5% declines), 3 reserved (lock mode lockd, each with its own config file). Through the
# API it creates a 200-seat venue (40 VIP), a hot performance, 5 other performances and
# 100 users; then build/bin/bookbench runs a booking storm on the hot performance from 128
# concurrent clients spread over the 3 reserved, until it is sold out or 20 s pass.
# The summary (from PostgreSQL, fakepay and bookbench) shows seats, sold, remaining,
# rejected by reason, oversold (must be 0), capacity consistency, approved payments vs
# confirmed reservations, throughput and latency. Everything started is stopped by PID at
# the end (also on Ctrl-C or failure). Exit 0 when every check holds, 1 otherwise.
#   bash scripts/demo.sh            the storm and its summary
#   bash scripts/demo.sh --keep     the same, then keeps everything running for curl
#   bash scripts/demo.sh --locks    the lockd-only walkthrough (issue 2)
# Environment: BUILD_DIR (build), CLIENTS (128), DURATION (20 s), SEED (1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
CLIENTS=${CLIENTS:-128}
DURATION=${DURATION:-20}
SEED=${SEED:-1}
KEEP=0
LOCKS=0
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    --locks) LOCKS=1 ;;
    -h | --help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--keep] [--locks]" >&2
        exit 2
        ;;
    esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ts() { date +%H:%M:%S.%3N; }

say "dependencies"
bash scripts/deps.sh

say "build ($BUILD_DIR, Release)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)" \
    --target lockd lockctl reserved fakepay bookbench | tail -n 1
BK_BIN=$(cd "$BUILD_DIR/bin" && pwd)

# shellcheck source=lib/booking.sh
source scripts/lib/booking.sh
trap bk_cleanup EXIT
trap 'exit 130' INT TERM

keep_running() { # keep_running MESSAGE: until Ctrl-C
    say "running; Ctrl-C stops everything"
    echo "$1"
    while :; do sleep 1; done
}

if [[ $LOCKS -eq 1 ]]; then
    # shellcheck source=lib/demo_locks.sh
    source scripts/lib/demo_locks.sh
    demo_locks
    exit 0
fi

bk_init booking-demo
say "PostgreSQL 15 in $BK_TMP/pg (as postgres, fsync on)"
bk_start_pg
echo "conninfo: $BK_PG_CONNINFO"

say "3 Redis masters, 2 lockd, fakepay (decline rate 0.05, seed $SEED)"
bk_start_redis 3
bk_start_lockd 2
bk_start_fakepay --seed "$SEED" --decline-rate 0.05
echo "redis: $BK_REDIS_LIST"
echo "lockd: ${BK_LOCKD[*]}"
echo "fakepay: $BK_PAY_URL"

say "3 reserved (lock mode lockd, payment on; configs $BK_TMP/reserved{1,2,3}.yaml)"
bk_start_reserved 3 lockd "$BK_PAY_URL"
echo "reserved: ${BK_RESERVED[*]}"

say "catalogue through the API (curl)"
VENUE=$(bk_create_venue "Seoul Arts Center" 200 40)
HOT=$(bk_create_perf "$VENUE" "Hot show (premiere)" 30)
OTHERS=()
for d in 31 32 33 34 35; do OTHERS+=("$(bk_create_perf "$VENUE" "Matinee day $d" "$d")"); done
NUSERS=100
bk_create_users "$NUSERS"
echo "venue $VENUE: 200 seats (40 VIP); hot performance $HOT; others ${OTHERS[*]};" \
    "users $BK_USERS_FIRST..$((BK_USERS_FIRST + NUSERS - 1))"
bk_api GET "/performances/$HOT"

say "booking storm: $CLIENTS clients on 3 reserved, 1-3 random seats each, until sold out or ${DURATION} s"
BB_OUT="$BK_TMP/bookbench.out"
BB_CMD=("$BK_BIN/bookbench" --servers "$(bk_servers)" --clients "$CLIENTS" --duration "$DURATION"
    --hot-perf "$HOT" --users "$BK_USERS_FIRST:$NUSERS" --seats-min 1 --seats-max 3
    --seed "$SEED" --json "$BK_TMP/bookbench.json")
echo "\$ ${BB_CMD[*]}"
"${BB_CMD[@]}" | tee "$BB_OUT"
RESULT=$(grep '^RESULT ' "$BB_OUT")
res() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$RESULT"; }

# A payment cancelled by compensation is cancelled before its 4xx/5xx answer goes out,
# but give in-flight cancellations a moment before comparing with fakepay.
approved() { curl -s "$BK_PAY_URL/stats" | grep -o '"APPROVED": *[0-9]*' | grep -o '[0-9]*$'; }
confirmed() { bk_psql "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'"; }
for _ in $(seq 50); do
    [[ $(approved) == "$(confirmed)" ]] && break
    sleep 0.1
done

TOTAL=$(bk_psql "SELECT total_capacity FROM performances WHERE id = $HOT")
SOLD=$(bk_psql "SELECT count(*) FROM reservation_seats s JOIN reservations r ON r.id = s.reservation_id
                WHERE r.performance_id = $HOT AND r.status = 'CONFIRMED'")
REMAINING=$(bk_psql "SELECT remaining_capacity FROM performances WHERE id = $HOT")
# Seats in more than one CONFIRMED reservation, read from the table the partial unique
# index guards, joined on the reservations' status (so it does not trust the index's own
# `confirmed` flag).
OVERSOLD=$(bk_psql "SELECT count(*) FROM (SELECT s.seat_id FROM reservation_seats s
                    JOIN reservations r ON r.id = s.reservation_id
                    WHERE s.performance_id = $HOT AND r.status = 'CONFIRMED'
                    GROUP BY s.seat_id HAVING count(*) > 1) twice")
FLAG_MISMATCH=$(bk_psql "SELECT count(*) FROM reservation_seats s JOIN reservations r
                         ON r.id = s.reservation_id WHERE s.confirmed <> (r.status = 'CONFIRMED')")
CONFIRMED=$(confirmed)
APPROVED=$(approved)
GUARDS=0
for addr in "${BK_RESERVED[@]}"; do
    g=$(curl -s "http://$addr/metrics" | awk '/^reserved_guard_firings_total/ {s += $2} END {print s + 0}')
    GUARDS=$((GUARDS + g))
done

ok=1
check() { # check NAME CONDITION-RESULT
    if [[ $2 == yes ]]; then
        printf '  %-44s %s\n' "$1" "OK"
    else
        printf '  %-44s %s\n' "$1" "FAILED"
        ok=0
    fi
}
yn() { if "$@"; then echo yes; else echo no; fi; }

say "summary (performance $HOT)"
printf '  %-44s %s\n' "seats" "$TOTAL"
printf '  %-44s %s\n' "sold (seats in CONFIRMED reservations)" "$SOLD"
printf '  %-44s %s\n' "remaining capacity" "$REMAINING"
printf '  %-44s %s\n' "bookings: requests / 201 created" "$(res hot_req) / $(res hot_ok)"
printf '  %-44s %s\n' "rejected: 409 SEAT_TAKEN" "$(res hot_seat_taken)"
printf '  %-44s %s\n' "rejected: 409 SOLD_OUT" "$(res hot_sold_out)"
printf '  %-44s %s\n' "rejected: 402 PAYMENT_DECLINED" "$(res hot_declined)"
printf '  %-44s %s\n' "rejected: 503 BUSY / UNAVAILABLE" "$(res hot_busy) / $(res hot_unavailable)"
printf '  %-44s %s\n' "other answers / no answer" "$(res hot_other) / $(res hot_noanswer)"
printf '  %-44s %s\n' "oversold (seats sold twice)" "$OVERSOLD"
printf '  %-44s %s\n' "database guard firings (all reserved)" "$GUARDS"
printf '  %-44s %s\n' "approved payments at fakepay" "$APPROVED"
printf '  %-44s %s\n' "confirmed reservations" "$CONFIRMED"
printf '  %-44s %s\n' "storm time" "$(res elapsed_s) s$([[ $(res hot_all_sold) == 1 ]] && echo ", sold out after $(res hot_all_sold_ms) ms")"
printf '  %-44s %s\n' "throughput: requests/s, 201/s" "$(res hot_per_s), $(res hot_ok_per_s)"
printf '  %-44s %s\n' "latency p50 / p99 / max (ms)" "$(res hot_p50_ms) / $(res hot_p99_ms) / $(res hot_max_ms)"
echo
check "oversold = 0" "$(yn test "$OVERSOLD" -eq 0)"
check "remaining = seats - sold ($TOTAL - $SOLD)" "$(yn test "$REMAINING" -eq $((TOTAL - SOLD)))"
check "201 answers = confirmed reservations" "$(yn test "$(res hot_ok)" -eq "$CONFIRMED")"
check "approved payments = confirmed reservations" "$(yn test "$APPROVED" -eq "$CONFIRMED")"
check "seat flags agree with reservation status" "$(yn test "$FLAG_MISMATCH" -eq 0)"
check "no database guard fired" "$(yn test "$GUARDS" -eq 0)"
check "no unexpected answers" "$(yn test "$(res hot_other)" -eq 0)"

if [[ $KEEP -eq 1 ]]; then
    R=${BK_RESERVED[0]}
    SEAT=$(curl -s "http://$R/performances/${OTHERS[0]}/seats" | grep -o '"id": *[0-9]*' |
        head -n 1 | grep -o '[0-9]*$')
    keep_running "reserved:   ${BK_RESERVED[*]}
lockd:      ${BK_LOCKD[*]}
redis:      $BK_REDIS_LIST
fakepay:    $BK_PAY_URL
postgresql: psql \"$BK_PG_CONNINFO\"
logs:       $BK_TMP
try:
  curl -s http://$R/performances/$HOT
  curl -s http://$R/performances/${OTHERS[0]}/seats
  curl -s -X POST -H 'Content-Type: application/json' -d '{\"userId\": $BK_USERS_FIRST, \"seatIds\": [$SEAT]}' http://$R/performances/${OTHERS[0]}/reservations
  curl -s http://$R/users/$BK_USERS_FIRST/reservations
  curl -s http://$R/metrics | grep ^reserved_bookings_total
  curl -s $BK_PAY_URL/stats"
fi
say "done: stopping everything"
[[ $ok -eq 1 ]]
