#!/usr/bin/env bash
# bench/txngroup.sh: what one transaction across several performances would save. Starts
# PostgreSQL 15 (fsync on) and one reserved (to migrate the schema), makes K x CLIENTS
# performances (K the largest of SIZES) on one hall (3,000 seats for each second of
# pgbench: no performance runs out), and runs pgbench (PostgreSQL 15's) with lockd mode's
# booking statement (rs_book_read of 2 seats with a growing fence, payment off: what
# reserved sends for a booking alone under its lock) on performances that nobody else
# books: client c books its own K performances in turn, G bookings per transaction
# (BEGIN; G x rs_book_read on G different performances; COMMIT), for each G of SIZES
# ("1 2 4"), with CLIENTS (8) clients (the machine full) and with 1 client (one after
# another). Each run starts after VACUUM ANALYZE and CHECKPOINT; ROUNDS (2) rounds, the
# first of which also warms the plans. Prints bookings/s for each run and, per G, the mean
# over the rounds after the first and its ratio to the first G.
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/txngroup.sh
#   BUILD=build-rel SIZES="1 4 8" CLIENTS=4 SECONDS_RUN=10 bench/txngroup.sh
# Environment: BUILD (build; built with Release when a binary is missing), SIZES
# ("1 2 4"), CLIENTS (8), ROUNDS (2), SECONDS_RUN (8).
set -euo pipefail
# shellcheck source=../scripts/lib/benchargs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/benchargs.sh"
bench_args "$0" "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
read -ra GROUP_LIST <<<"${SIZES:-1 2 4}"
CLIENTS=${CLIENTS:-8}
ROUNDS=${ROUNDS:-2}
SECONDS_RUN=${SECONDS_RUN:-8}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
for v in CLIENTS ROUNDS SECONDS_RUN; do
    if [[ ! ${!v} =~ ^[1-9][0-9]{0,2}$ ]]; then
        echo "txngroup.sh: $v must be a whole number from 1 to 999 (got '${!v}')" >&2
        exit 2
    fi
done
if ((${#GROUP_LIST[@]} == 0)); then
    echo "txngroup.sh: SIZES is empty" >&2
    exit 2
fi
for G in "${GROUP_LIST[@]}"; do
    if [[ ! $G =~ ^[1-9][0-9]?$ ]]; then
        echo "txngroup.sh: SIZES entry '$G': want a whole number from 1 to 99" >&2
        exit 2
    fi
done
if [[ ! -x $PGBIN/pgbench ]]; then
    echo "txngroup.sh: no $PGBIN/pgbench (package postgresql-15; scripts/deps.sh installs it)" >&2
    exit 2
fi
if [[ ! -x $BUILD/bin/reserved ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target reserved >/dev/null
fi
BK_BIN=$(cd "$BUILD/bin" && pwd)
# shellcheck source=../scripts/lib/booking.sh
source scripts/lib/booking.sh
trap bk_cleanup EXIT
trap 'exit 130' INT TERM
bk_init txngroup-bench

echo "== machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
bk_start_pg
bk_start_reserved 1 db ""
K=$(printf '%s\n' "${GROUP_LIST[@]}" | sort -n | tail -1)
NP=$((CLIENTS * K)) SEATS=$((ROUNDS * ${#GROUP_LIST[@]} * 2 * SECONDS_RUN * 3000))
venue=$(BK_PSQL_USER=postgres bk_psql "
    WITH v AS (INSERT INTO venues (name) VALUES ('Group hall') RETURNING id),
         s AS (INSERT INTO venue_seats (venue_id, row_label, number, type)
               SELECT v.id, 'R' || (g / 100 + 1), g % 100 + 1,
                      CASE WHEN g < 1000 THEN 'VIP' ELSE 'NORMAL' END
                 FROM v, generate_series(0, $SEATS - 1) g)
    SELECT id FROM v")
read -r p0 s0 < <(BK_PSQL_USER=postgres bk_psql "
    WITH p AS (INSERT INTO performances (venue_id, title, starts_at, normal_price, vip_price,
                                         total_capacity, remaining_capacity)
               SELECT $venue, 'Group ' || g, now() + interval '60 days', 50000, 120000,
                      $SEATS, $SEATS
                 FROM generate_series(1, $NP) g RETURNING id)
    SELECT min(p.id), (SELECT min(id) FROM venue_seats WHERE venue_id = $venue) FROM p" | tr '|' ' ')
user=$BK_ADMIN_ID
echo "== $NP performances from id $p0 on hall $venue (seat ids from $s0), booked as user $user"

# Booking f+I of client c: performance p0 + c*K + (f+I)%K, seats s0 + ((f+I)/K)*2 and the
# next, fence f+I+1: each performance gets growing fences and seats nobody took, and no
# two clients share a performance (no lock, no wait: as under lockd).
for G in "${GROUP_LIST[@]}"; do
    {
        echo "BEGIN;"
        for ((i = 0; i < G; i++)); do
            echo "SELECT * FROM rs_book_read((:p0 + :client_id * $K + (:f + $i) % $K)::bigint, :user::bigint, ARRAY[(:s0 + ((:f + $i) / $K) * 2)::bigint, (:s0 + ((:f + $i) / $K) * 2 + 1)::bigint], (:f + $i + 1)::numeric, false, 'group-' || :client_id || '-' || (:f + $i));"
        done
        echo "COMMIT;"
        echo "\\set f :f + $G"
    } >"$BK_TMP/g$G.sql"
done

declare -A SUM=() N=()
for ((round = 1; round <= ROUNDS; round++)); do
    for G in "${GROUP_LIST[@]}"; do
        for c in "$CLIENTS" 1; do
            BK_PSQL_USER=postgres bk_psql "VACUUM (ANALYZE)" >/dev/null
            BK_PSQL_USER=postgres bk_psql "CHECKPOINT" >/dev/null
            # fences and seats after every earlier run's
            fmax=$(bk_psql "SELECT coalesce(max(last_fence), 0)::bigint FROM performances WHERE id >= $p0")
            cmd=("$PGBIN/pgbench" -n -M prepared -c "$c" -j "$((c < 2 ? 1 : 2))" -T "$SECONDS_RUN"
                -f "$BK_TMP/g$G.sql" -D "p0=$p0" -D "s0=$s0" -D "user=$user" -D "f=$((fmax + K))"
                -h "$BK_PG_DIR" -p "$BK_PG_PORT" -U booking booking)
            out=$(PGOPTIONS='-c random_page_cost=1.1' "${cmd[@]}" 2>&1) || {
                echo "txngroup.sh: pgbench failed (G=$G, $c clients):" >&2
                tail -5 <<<"$out" >&2
                exit 1
            }
            tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
            per=$(awk -v t="$tps" -v g="$G" 'BEGIN { printf "%.1f", t * g }')
            printf 'round %d  G=%-3s clients=%-3s transactions/s %8.1f  bookings/s %8.1f\n' \
                "$round" "$G" "$c" "$tps" "$per"
            if ((round > 1 || ROUNDS == 1)); then
                SUM[$G-$c]=$(awk -v a="${SUM[$G-$c]:-0}" -v b="$per" 'BEGIN { print a + b }')
                N[$G-$c]=$((${N[$G-$c]:-0} + 1))
            fi
        done
    done
done
echo
echo "== means (rounds after the first; bookings/s, and against G=${GROUP_LIST[0]})"
for c in "$CLIENTS" 1; do
    base=""
    for G in "${GROUP_LIST[@]}"; do
        mean=$(awk -v s="${SUM[$G-$c]}" -v n="${N[$G-$c]}" 'BEGIN { printf "%.1f", s / n }')
        [[ -z $base ]] && base=$mean
        printf 'clients=%-3s G=%-3s bookings/s %8.1f  %.2fx\n' "$c" "$G" "$mean" \
            "$(awk -v a="$mean" -v b="$base" 'BEGIN { print a / b }')"
    done
done
