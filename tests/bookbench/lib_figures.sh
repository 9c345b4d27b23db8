#!/usr/bin/env bash
# tests/bookbench/lib_figures.sh: the figures bench/booking.sh and the demo print from
# other programs' output, no servers: bk_hot_shares (each reserved's share of the hot
# bookings from bookbench's hot_ok_by_server, and whether each is within 0.5x-1.5x of an
# equal share) and bk_batch_sizes (the group-booking batch sizes from reserved's
# /metrics, summed over the processes: mean, and p50/p99 as the bound of the histogram
# bucket that holds them; "n/a" when the metrics are absent, never a failure). curl is
# replaced by a function that prints canned /metrics pages.
#   bash tests/bookbench/lib_figures.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../scripts/lib/booking.sh
source "$ROOT/scripts/lib/booking.sh"
fails=0
want() { # want WHAT GOT EXPECTED
    if [[ $2 == "$3" ]]; then
        echo "ok: $1"
    else
        echo "FAIL: $1: got '$2', want '$3'"
        fails=$((fails + 1))
    fi
}

want "equal shares" "$(bk_hot_shares 40,45,36)" \
    "shares: r1 33.1% r2 37.2% r3 29.8% (each within 0.5x-1.5x of an equal share: yes)"
want "a starved reserved" "$(bk_hot_shares 162,153,10)" \
    "shares: r1 49.8% r2 47.1% r3 3.1% (each within 0.5x-1.5x of an equal share: no, r3 0.09x)"
want "one above 1.5x" "$(bk_hot_shares 80,10,10)" \
    "shares: r1 80.0% r2 10.0% r3 10.0% (each within 0.5x-1.5x of an equal share: no, r1 2.40x, r2 0.30x, r3 0.30x)"
want "no hot bookings" "$(bk_hot_shares 0,0,0)" "shares: n/a"
want "no field" "$(bk_hot_shares "")" "shares: n/a"

# Two reserved: one with labels on its series and the buckets out of order, one plain.
page() {
    case $1 in
    */r1/metrics)
        cat <<'M'
# HELP reserved_batches_total group bookings
# TYPE reserved_batches_total counter
reserved_batches_total 10
reserved_batch_bookings_total 60
reserved_batch_size_bucket{le="+Inf"} 10
reserved_batch_size_bucket{le="2"} 3
reserved_batch_size_bucket{le="1"} 1
reserved_batch_size_bucket{le="8"} 9
reserved_batch_size_bucket{le="4"} 5
reserved_batch_size_sum 60
reserved_batch_size_count 10
M
        ;;
    */r2/metrics)
        cat <<'M'
reserved_batches_total{} 90
reserved_batch_bookings_total{} 540
reserved_batch_size_bucket{le="1"} 0
reserved_batch_size_bucket{le="2"} 0
reserved_batch_size_bucket{le="4"} 40
reserved_batch_size_bucket{le="8"} 89
reserved_batch_size_bucket{le="+Inf"} 90
M
        ;;
    */old/metrics) echo "reserved_bookings_total 5" ;;
    */nohist/metrics) printf 'reserved_batches_total 4\nreserved_batch_bookings_total 10\n' ;;
    esac
}
curl() { page "${@: -1}"; }
# 100 batches, 600 bookings: mean 6; cumulative by bound 1, 3, 45, 98, 100: p50 in the
# bucket <= 8 (45 < 50 <= 98), p99 past the last finite bound.
want "two reserved summed" "$(bk_batch_sizes r1 r2)" \
    "mean 6.00 (100 batches, 600 bookings), p50 <= 8, p99 > 8"
want "no batch metrics" "$(bk_batch_sizes old)" "n/a"
# Since a snapshot of 4 batches of 2 (8 bookings): 96 batches and 592 bookings in between;
# every cumulative bucket from <= 2 on loses 4 (by bound: 1, -1, 41, 94, 96), so p50 is
# in the bucket <= 8 (41 < 48 <= 94) and p99 past it.
snap=$(mktemp)
printf '%s\n' 'reserved_batches_total 4' 'reserved_batch_bookings_total 8' \
    'reserved_batch_size_bucket{le="1"} 0' 'reserved_batch_size_bucket{le="2"} 4' \
    'reserved_batch_size_bucket{le="4"} 4' 'reserved_batch_size_bucket{le="8"} 4' \
    'reserved_batch_size_bucket{le="+Inf"} 4' >"$snap"
want "since a snapshot" "$(bk_batch_sizes --since "$snap" r1 r2)" \
    "mean 6.17 (96 batches, 592 bookings), p50 <= 8, p99 > 8"
want "bk_metrics of two servers" "$(bk_metrics r1 old | grep -c '^reserved_')" "10"
printf '%s\n' 'reserved_batches_total 100' 'reserved_batch_bookings_total 600' >"$snap"
want "no batch since the snapshot" "$(bk_batch_sizes --since "$snap" r1 r2)" "n/a"
rm -f "$snap"
want "nothing answers" "$(unset -f curl; bk_batch_sizes 127.0.0.1:1)" "n/a"
want "counters without a histogram" "$(bk_batch_sizes nohist)" \
    "mean 2.50 (4 batches, 10 bookings), p50/p99 n/a (no reserved_batch_size histogram)"

[[ $fails -eq 0 ]] || exit 1
echo "PASS"
