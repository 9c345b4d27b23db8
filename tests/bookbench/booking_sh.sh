#!/usr/bin/env bash
# tests/bookbench/booking_sh.sh: bench/booking.sh end to end, as short as it goes: the
# distinct shape with payment on (fakepay 5 ms), 2 rounds of lockd mode (db mode is
# today's code path and doubles the time), 1 s each, 8 clients on a 2000-seat hall, the
# pgbench ceiling (1 s) after each round. Checks the exit status and the lines the script
# promises: the payment heading, a shares and a batch-sizes line per run, no SEAT_TAKEN
# in the distinct shape, the seat-map and booking warm-ups (and bad WARM/WARM_S refused; with
# SHAPES, a failing shape reported and the next one run, exit 1), a numeric
# ceiling and ceiling with payment in EVERY round (its bookings need references of their
# own per round), the lockd/ceiling ratios and the SUMMARY line. booking.sh stops everything it started by PID.
#   BK_BIN=build/bin bash tests/bookbench/booking_sh.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BK_BIN:?set BK_BIN to the bin dir of a build}"
OUT=$(mktemp "${TMPDIR:-/tmp}/booking-sh-test.XXXXXX")
trap 'rm -f "$OUT"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# bad knobs are refused before anything starts, with what is wanted
for bad in WARM_S=x WARM_S=-1 WARM=2; do
    rc=0
    err=$(env "$bad" bash "$ROOT/bench/booking.sh" 2>&1 >/dev/null) || rc=$?
    [[ $rc -eq 2 && $err == "booking.sh: ${bad}: want "* ]] || fail "$bad: exit $rc, '$err'"
done

# SHAPES: a shape that fails does not stop the next one; the table names both, exit 1
rc=0
WARM_S=x SHAPES="split mixed" bash "$ROOT/bench/booking.sh" >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 1 ]] || fail "SHAPES with two failing shapes: exit $rc, want 1"
for shape in split mixed; do
    grep -q "^shape $shape FAILED (exit 2)" "$OUT" || fail "SHAPES: no FAILED line of $shape"
    grep -q "^SUMMARY shape=$shape failed=1" "$OUT" || fail "SHAPES: no failed SUMMARY of $shape"
done

rc=0
SHAPE=distinct PAYMENT=1 ROUNDS=2 MODES=lockd DURATION=1 CEILING_DURATION=1 HISTORY=400 WARM_S=1 \
    CLIENTS=8 POOL=2 HOT_SEATS=2000 BUILD="$(dirname "$BK_BIN")" \
    bash "$ROOT/bench/booking.sh" >"$OUT" 2>&1 || rc=$?
cat "$OUT"
[[ $rc -eq 0 ]] || fail "bench/booking.sh exited $rc"
grep -q '^== comparison (distinct: 8 hot clients, each its own slice of 2000 seats, .*payment on (fakepay, 5 ms)' "$OUT" ||
    fail "no comparison heading of the distinct shape with payment on"
[[ $(grep -c '^   shares: r1 [0-9.]*% r2 [0-9.]*% r3 [0-9.]*% (each within 0.5x-1.5x of an equal share: ' "$OUT") -eq 2 ]] ||
    fail "want 2 shares lines (2 rounds)"
[[ $(grep -c '^   batch sizes: ' "$OUT") -eq 2 ]] || fail "want 2 batch-sizes lines (lockd mode)"
for round in 1 2; do
    grep -Eq "^RESULT mode=ceiling round=$round ceiling_per_s=[0-9]+\.[0-9] ceiling_latency_ms=[0-9.]+ ceiling_pay_per_s=[0-9]+\.[0-9]$" "$OUT" ||
        fail "no numeric ceiling (with and without payment) in round $round"
    line=$(grep "^RESULT mode=lockd round=$round " "$OUT") || fail "no RESULT of round $round"
    [[ $line == *' hot_seat_taken=0 '* && $line =~ \ hot_ok=[1-9] ]] ||
        fail "round $round: SEAT_TAKEN or no booking in the distinct shape"
done
[[ $(grep -c '^   warm-up: 1 seat maps read through each of 3 reserved ' "$OUT") -eq 2 ]] ||
    fail "want 2 warm-up lines (the hot performance's map, each round)"
[[ $(grep -Ec '^   warm-up: 1 s of bookings on performance [0-9]+ \(8 clients on 3 servers, [0-9.]+ s, [1-9][0-9]* requests\)$' "$OUT") -eq 2 ]] ||
    fail "want 2 booking warm-up lines (each round, on a performance of its own)"
grep -Eq '^hot bookings/s lockd/ceiling = [0-9.]+x, db/ceiling = n/a$' "$OUT" ||
    fail "no lockd/ceiling ratio"
grep -Eq '^mean serial ceiling with payment [0-9.]+ bookings/s: lockd/ceiling = [0-9.]+x, db/ceiling = n/a$' "$OUT" ||
    fail "no lockd/ceiling ratio with payment"
grep -Eq '^SUMMARY shape=distinct clients=8 conns=6 payment=1 lockd=[0-9.]+ db=0.0 lockd_db=n/a ceiling=[0-9.]+ lockd_ceiling=[0-9.]+ .* ceiling_pay=[0-9.]+ lockd_ceiling_pay=[0-9.]+$' "$OUT" ||
    fail "no SUMMARY line"
echo "PASS"
