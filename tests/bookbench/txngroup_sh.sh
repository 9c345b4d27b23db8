#!/usr/bin/env bash
# tests/bookbench/txngroup_sh.sh: bench/txngroup.sh end to end, as short as it goes: the
# three forms, G = 1 and 2, 2 clients, 1 round of 1 s. Checks bad settings refused before
# anything starts (exit 2, saying what is wanted), then the exit status, a run line for
# every form, G and client count with transactions and bookings/s above 0 (bookings/s =
# G x transactions/s; the script itself fails when the database holds fewer bookings than
# G x the transactions), and the means with perfs G=1 at 1.00x. Then the script's own
# checks: with a request refused in every transaction (TXNGROUP_PLANT_REFUSAL: it asks a
# seat that does not exist), the batch form and the multi form must each fail; with a
# request of one seat in every multi statement (TXNGROUP_PLANT_ONE_SEAT: its seat twice),
# the multi form must fail on the seats. txngroup.sh stops everything it started by PID.
#   BK_BIN=build/bin bash tests/bookbench/txngroup_sh.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BK_BIN:?set BK_BIN to the bin dir of a build}"
OUT=$(mktemp "${TMPDIR:-/tmp}/txngroup-sh-test.XXXXXX")
trap 'rm -f "$OUT"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

for bad in "SIZES=1 x|SIZES entry 'x'" "SIZES= |SIZES is empty" "FORMS= |FORMS is empty" \
    "FORMS=perfs rows|FORMS entry 'rows'" "CLIENTS=0|CLIENTS must be" \
    "ROUNDS=-1|ROUNDS must be" "SECONDS_RUN=1.5|SECONDS_RUN must be"; do
    set_=${bad%%|*} want=${bad#*|} rc=0
    err=$(env "$set_" BUILD="$(dirname "$BK_BIN")" bash "$ROOT/bench/txngroup.sh" 2>&1 >/dev/null) || rc=$?
    [[ $rc -eq 2 && $err == "txngroup.sh: $want"* ]] || fail "$set_: exit $rc, '$err'"
done
rc=0
err=$(bash "$ROOT/bench/txngroup.sh" --bogus 2>&1 >/dev/null) || rc=$?
[[ $rc -eq 2 && $err == *"unknown argument '--bogus'"* ]] || fail "--bogus: exit $rc, '$err'"

rc=0
FORMS="perfs batch multi" SIZES="1 2" CLIENTS=2 ROUNDS=1 SECONDS_RUN=1 BUILD="$(dirname "$BK_BIN")" \
    bash "$ROOT/bench/txngroup.sh" >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || {
    cat "$OUT" >&2
    fail "txngroup.sh exited $rc"
}
for run in perfs:1 perfs:2 batch:1 batch:2 multi:1 multi:2; do
    f=${run%:*} g=${run#*:}
    for c in 2 1; do
        line=$(grep -E "^round 1  $f +G=$g +clients=$c +transactions/s" "$OUT") ||
            fail "no run line for $f G=$g, $c clients"
        read -r tps per < <(sed -E 's/.*transactions\/s +([0-9.]+) +bookings\/s +([0-9.]+)$/\1 \2/' <<<"$line")
        awk -v t="$tps" -v p="$per" -v g="$g" 'BEGIN { exit !(t > 0 && p > 0 && (p - t * g) ^ 2 < 0.05) }' ||
            fail "$f G=$g, $c clients: '$line'"
    done
done
grep -Eq "^clients=2 +perfs +G=1 +bookings/s +[0-9.]+ +1\.00x$" "$OUT" || fail "no perfs G=1 mean at 1.00x"
grep -Eq "^clients=1 +batch +G=2 +bookings/s +[0-9.]+ +[0-9.]+x$" "$OUT" || fail "no batch G=2 mean"
grep -Eq "^clients=1 +multi +G=2 +bookings/s +[0-9.]+ +[0-9.]+x$" "$OUT" || fail "no multi G=2 mean"
echo "txngroup.sh: the three forms ok"

# the planted refusal: every statement of 2 has a request the database refuses
for form in batch multi; do
    rc=0
    TXNGROUP_PLANT_REFUSAL=1 FORMS=$form SIZES=2 CLIENTS=1 ROUNDS=1 SECONDS_RUN=1 \
        BUILD="$(dirname "$BK_BIN")" bash "$ROOT/bench/txngroup.sh" >"$OUT" 2>&1 || rc=$?
    [[ $rc -eq 1 ]] && grep -Eq "^txngroup.sh: $form G=2, 1 clients: [0-9]+ bookings for [0-9]+ transactions of 2$" "$OUT" || {
        cat "$OUT" >&2
        fail "a planted refusal in the $form form was not caught (exit $rc)"
    }
    echo "txngroup.sh: a planted refusal in the $form form is caught"
done

# the planted short booking: every multi statement books a request of one seat
rc=0
TXNGROUP_PLANT_ONE_SEAT=1 FORMS=multi SIZES=2 CLIENTS=1 ROUNDS=1 SECONDS_RUN=1 \
    BUILD="$(dirname "$BK_BIN")" bash "$ROOT/bench/txngroup.sh" >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -Eq "^txngroup.sh: multi G=2, 1 clients: [0-9]+ seats for [0-9]+ bookings of 2$" "$OUT" || {
    cat "$OUT" >&2
    fail "a planted one-seat booking was not caught (exit $rc)"
}
echo "txngroup.sh: a planted one-seat booking is caught"
