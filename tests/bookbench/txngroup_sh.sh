#!/usr/bin/env bash
# tests/bookbench/txngroup_sh.sh: bench/txngroup.sh end to end, as short as it goes: G = 1
# and 2, 2 clients, 1 round of 1 s. Checks bad settings refused before anything starts
# (exit 2, saying what is wanted), then the exit status, a run line for every G and client
# count with transactions and bookings/s above 0 (bookings = G x transactions, so every
# statement of every transaction booked: pgbench fails on the first error), and the means
# with G=1 at 1.00x. txngroup.sh stops everything it started by PID.
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

for bad in "SIZES=1 x|SIZES entry 'x'" "SIZES= |SIZES is empty" "CLIENTS=0|CLIENTS must be" \
    "ROUNDS=-1|ROUNDS must be" "SECONDS_RUN=1.5|SECONDS_RUN must be"; do
    set_=${bad%%|*} want=${bad#*|} rc=0
    err=$(env "$set_" BUILD="$(dirname "$BK_BIN")" bash "$ROOT/bench/txngroup.sh" 2>&1 >/dev/null) || rc=$?
    [[ $rc -eq 2 && $err == "txngroup.sh: $want"* ]] || fail "$set_: exit $rc, '$err'"
done
rc=0
err=$(bash "$ROOT/bench/txngroup.sh" --bogus 2>&1 >/dev/null) || rc=$?
[[ $rc -eq 2 && $err == *"unknown argument '--bogus'"* ]] || fail "--bogus: exit $rc, '$err'"

rc=0
SIZES="1 2" CLIENTS=2 ROUNDS=1 SECONDS_RUN=1 BUILD="$(dirname "$BK_BIN")" \
    bash "$ROOT/bench/txngroup.sh" >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || {
    cat "$OUT" >&2
    fail "txngroup.sh exited $rc"
}
for g in 1 2; do
    for c in 2 1; do
        line=$(grep -E "^round 1  G=$g +clients=$c +transactions/s" "$OUT") ||
            fail "no run line for G=$g, $c clients"
        read -r tps per < <(sed -E 's/.*transactions\/s +([0-9.]+) +bookings\/s +([0-9.]+)$/\1 \2/' <<<"$line")
        awk -v t="$tps" -v p="$per" -v g="$g" 'BEGIN { exit !(t > 0 && p > 0 && (p - t * g) ^ 2 < 0.05) }' ||
            fail "G=$g, $c clients: '$line'"
    done
done
grep -Eq "^clients=2 +G=1 +bookings/s +[0-9.]+ +1\.00x$" "$OUT" || fail "no G=1 mean at 1.00x"
grep -Eq "^clients=1 +G=2 +bookings/s +[0-9.]+ +[0-9.]+x$" "$OUT" || fail "no G=2 mean"
echo "txngroup.sh: ok"
