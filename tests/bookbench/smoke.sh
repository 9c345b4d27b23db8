#!/usr/bin/env bash
# tests/bookbench/smoke.sh: bookbench against 1 real reserved (lock mode db, no payment) on a
# real PostgreSQL (scripts/pg.sh, fsync on): a venue of 2000 seats, a hot performance, 3
# background performances, 20 users; ~3 s of 16 clients mixing hot bookings, background
# bookings and seat-map reads. Checks the RESULT line (--result-line: requests in every
# class, successes, no "other" answers, no missing answers), that the human table has a row
# per class and no RESULT line without the flag, and that the database agrees (201 answers
# = confirmed reservations, remaining = total - sold, no seat sold twice). Then the
# conflict-free shape over 2 reserved: 8 clients with --hot-partition, hot bookings only
# (background performances given, share 0), on a fresh 200-seat hot performance, until
# every client has used up its slice of 25 seats: no SEAT_TAKEN at all, every seat sold,
# not one background booking (a client out of hot seats stops), the RESULT's per-server
# counts add up to the hot bookings, and the shares line is printed. Everything started is
# stopped by PID (trap), also on failure. Every request carries a bearer token (SPEC §6a,
# bookbench --tokens): each buyer's own in the first two runs, the admin's (booking for
# the users) in the distinct run.
#   BK_BIN=build/bin bash tests/bookbench/smoke.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BK_BIN:?set BK_BIN to the bin dir of a build}"
# shellcheck source=../../scripts/lib/booking.sh
source "$ROOT/scripts/lib/booking.sh"
bk_test_init bookbench-smoke
bk_start_pg
bk_start_reserved 2 db ""
VENUE=$(bk_create_venue "Smoke hall" 2000 200 50)
HOT=$(bk_create_perf "$VENUE" "Smoke hot" 10)
BG=$(for d in 11 12 13; do bk_create_perf "$VENUE" "Smoke bg $d" "$d"; done | paste -sd, -)
bk_create_users 20

OUT="$BK_TMP/bookbench.out"
"$BK_BIN/bookbench" --servers "${BK_RESERVED[0]}" --clients 16 --duration 3 --hot-perf "$HOT" \
    --background-perfs "$BG" --background-share 0.3 --reads-share 0.2 \
    --users "$BK_USERS_FIRST:20" --tokens "$BK_TOKENS_FILE" --seed 7 --timeout-ms 5000 \
    --json "$BK_TMP/bb.json" --result-line | tee "$OUT"
RESULT=$(grep '^RESULT ' "$OUT") || bk_fail "no RESULT line"
res() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$RESULT"; }

for k in requests hot_req bg_req read_req hot_ok bg_ok read_ok; do
    [[ $(res "$k") -gt 0 ]] || bk_fail "$k = $(res "$k"), want > 0"
done
for k in hot_other bg_other read_other hot_noanswer bg_noanswer read_noanswer; do
    [[ $(res "$k") -eq 0 ]] || bk_fail "$k = $(res "$k"), want 0"
done
ELAPSED=$(res elapsed_s)
awk -v e="$ELAPSED" 'BEGIN { exit !(e >= 2.5 && e < 15) }' || bk_fail "elapsed_s $ELAPSED, want about 3"
grep -q '"hot"' "$BK_TMP/bb.json" || bk_fail "--json wrote no per-class report"
for row in "hot bookings" "background bookings" "seat-map reads"; do
    grep -q "^$row " "$OUT" || bk_fail "no table row '$row'"
done

# The human form alone: 40 seat-map reads only. One row (reads), one outcome column (ok),
# the outcomes that never happened named on one line, no RESULT line.
OUT2="$BK_TMP/bookbench-reads.out"
"$BK_BIN/bookbench" --servers "$(bk_servers)" --clients 4 --requests 40 --hot-perf "$HOT" \
    --background-share 0 --reads-share 1 --users "$BK_USERS_FIRST:20" --tokens "$BK_TOKENS_FILE" |
    tee "$OUT2"
grep -q '^seat-map reads ' "$OUT2" || bk_fail "reads run: no row 'seat-map reads'"
! grep -Eq '^(hot|background) bookings ' "$OUT2" || bk_fail "reads run: a row of a class that sent nothing"
! grep -q '^RESULT' "$OUT2" || bk_fail "RESULT line without --result-line"
grep -q '^class  *requests  *ok  *req/s ' "$OUT2" || bk_fail "reads run: columns of outcomes that never happened"
grep -q '^none: .*409 SEAT_TAKEN.*unanswered$' "$OUT2" || bk_fail "reads run: no 'none: ...' line"

CONFIRMED=$(bk_psql "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'")
OK=$(($(res hot_ok) + $(res bg_ok)))
[[ $CONFIRMED -eq $OK ]] || bk_fail "confirmed reservations $CONFIRMED, bookbench saw $OK created"
BAD=$(bk_psql "SELECT count(*) FROM performances p WHERE p.remaining_capacity <> p.total_capacity -
       (SELECT count(*) FROM reservation_seats s JOIN reservations r ON r.id = s.reservation_id
        WHERE r.performance_id = p.id AND r.status = 'CONFIRMED')")
[[ $BAD -eq 0 ]] || bk_fail "$BAD performances with remaining != total - sold"
TWICE=$(bk_psql "SELECT count(*) FROM (SELECT performance_id, seat_id FROM reservation_seats
         WHERE confirmed GROUP BY 1, 2 HAVING count(*) > 1) t")
[[ $TWICE -eq 0 ]] || bk_fail "$TWICE seats sold twice"

# The conflict-free shape: each client books only its own slice of a fresh hot
# performance's seats, so not one answer may be SEAT_TAKEN (the shared-pick shape above
# collides on 16 clients and 2000 seats within the first second).
SMALL=$(bk_create_venue "Smoke small hall" 200 20 50)
HOT2=$(bk_create_perf "$SMALL" "Smoke distinct" 20)
OUT3="$BK_TMP/bookbench-distinct.out"
printf '%s\n' "$BK_ADMIN_TOKEN" >"$BK_TMP/admin.token"
"$BK_BIN/bookbench" --servers "$(bk_servers)" --clients 8 --duration 20 --hot-perf "$HOT2" \
    --background-perfs "$BG" --background-share 0 --reads-share 0 --hot-partition --users "$BK_USERS_FIRST:20" \
    --tokens "$BK_TMP/admin.token" --seed 3 --timeout-ms 5000 --result-line | tee "$OUT3"
RESULT=$(grep '^RESULT ' "$OUT3") || bk_fail "distinct run: no RESULT line"
[[ $(res hot_ok) -gt 0 ]] || bk_fail "distinct run: hot_ok = $(res hot_ok), want > 0"
[[ $(res hot_all_sold) -eq 1 && $(res hot_slices_empty) -eq 8 ]] ||
    bk_fail "distinct run: hot_all_sold $(res hot_all_sold), hot_slices_empty $(res hot_slices_empty), want 1 and 8"
for k in hot_seat_taken hot_other hot_noanswer bg_req read_req; do
    [[ $(res "$k") -eq 0 ]] || bk_fail "distinct run: $k = $(res "$k"), want 0"
done
BY=$(res hot_ok_by_server)
[[ $BY =~ ^[0-9]+,[0-9]+$ ]] || bk_fail "distinct run: hot_ok_by_server '$BY', want two counts"
[[ $((${BY%,*} + ${BY#*,})) -eq $(res hot_ok) ]] ||
    bk_fail "distinct run: hot_ok_by_server $BY does not add up to hot_ok $(res hot_ok)"
grep -Eq '^hot shares: r1 [0-9.]+% r2 [0-9.]+% \(equal 50\.0%; each within 0\.5x-1\.5x of it: (yes|NO), ' \
    "$OUT3" || bk_fail "distinct run: no 'hot shares:' line"
grep -q '^hot seats in 8 slices of ~25, one per client (--hot-partition): 8 clients used up their slice$' "$OUT3" ||
    bk_fail "distinct run: no slices line"
TWICE=$(bk_psql "SELECT count(*) FROM (SELECT seat_id FROM reservation_seats
         WHERE performance_id = $HOT2 GROUP BY 1 HAVING count(*) > 1) t")
[[ $TWICE -eq 0 ]] || bk_fail "distinct run: $TWICE seats asked for twice"
SOLD2=$(bk_psql "SELECT total_capacity - remaining_capacity FROM performances WHERE id = $HOT2")
[[ $SOLD2 -eq 200 ]] || bk_fail "distinct run: $SOLD2 of 200 seats sold"
echo "PASS: $OK bookings created, database consistent; distinct shape: $(res hot_ok) bookings, no SEAT_TAKEN"
