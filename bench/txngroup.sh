#!/usr/bin/env bash
# bench/txngroup.sh: what a booking costs PostgreSQL alone and in a group, in two forms.
# Starts PostgreSQL 15 (fsync on) and one reserved (to migrate the schema), makes
# performances on one hall (enough seats that none runs out), and runs pgbench
# (PostgreSQL 15's) with lockd mode's statements without a gateway, growing fences, on
# performances that nobody else books, G bookings of 2 seats per transaction for each G
# of SIZES ("1 2 4"):
#   perfs  one transaction across G performances: BEGIN; G x rs_book_read (what reserved
#          sends for a booking alone under its lock) on G different performances; COMMIT.
#          Client c books its own K performances in turn (K the largest of SIZES).
#   batch  group booking's statement: BEGIN; rs_book_batch_read of G requests on one
#          performance (what reserved sends for a batch of G); COMMIT. Client c books its
#          own performance, apart from the perfs form's.
#   multi  a PROTOTYPE, not in reserved: BEGIN; ONE set-based statement booking G
#          requests on G different performances (bench/txngroup_multi.sql, each with its
#          own fence); COMMIT. The perfs form's performances, seats and fences.
# FORMS ("perfs") picks them. Each with CLIENTS (8) clients (the machine full) and with 1
# client (one after another); each run starts after VACUUM ANALYZE and CHECKPOINT, and
# after it the bookings in the database must be G x the transactions pgbench counted (a
# batch's refused request would not fail the statement), and their seats 2 x the
# bookings. ROUNDS (2) rounds, the first of which also warms the plans. Prints bookings/s for each run and, per form and G, the
# mean over the rounds after the first and its ratio to the first form's first G (perfs
# G=1: a booking alone).
# Everything started is stopped by PID at the end, also on failure or Ctrl-C.
#   bench/txngroup.sh
#   FORMS="perfs batch" SIZES="1 4" bench/txngroup.sh
#   BUILD=build-rel SIZES="1 4 8" CLIENTS=4 SECONDS_RUN=10 bench/txngroup.sh
# Environment: BUILD (build; built with Release when a binary is missing), FORMS
# ("perfs"), SIZES ("1 2 4"), CLIENTS (8), ROUNDS (2), SECONDS_RUN (8); for the script's
# test, TXNGROUP_PLANT_REFUSAL=1 makes the first request of each batch and multi statement
# ask a seat that does not exist, and TXNGROUP_PLANT_ONE_SEAT=1 the first of each multi
# statement its first seat twice (one seat booked): the checks above must fail the run.
set -euo pipefail
# shellcheck source=../scripts/lib/benchargs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/benchargs.sh"
bench_args "$0" "$@"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
read -ra GROUP_LIST <<<"${SIZES:-1 2 4}"
read -ra FORM_LIST <<<"${FORMS:-perfs}"
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
if ((${#FORM_LIST[@]} == 0)); then
    echo "txngroup.sh: FORMS is empty" >&2
    exit 2
fi
for F in "${FORM_LIST[@]}"; do
    if [[ $F != perfs && $F != batch && $F != multi ]]; then
        echo "txngroup.sh: FORMS entry '$F': want perfs, batch or multi" >&2
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
if [[ " ${FORM_LIST[*]} " == *" multi "* ]]; then
    bk_psql "$(cat bench/txngroup_multi.sql)" >/dev/null
fi
K=$(printf '%s\n' "${GROUP_LIST[@]}" | sort -n | tail -1)
GSUM=$(printf '%s\n' "${GROUP_LIST[@]}" | awk '{ s += $1 } END { print s }')
# the perfs form's K per client, then the batch form's one per client; 3,000 seats a
# second for each booking a transaction makes
NP=$((CLIENTS * (K + 1))) SEATS=$((ROUNDS * GSUM * 2 * SECONDS_RUN * 3000))
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

# perfs, booking f+I of client c: performance p0 + c*K + (f+I)%K, seats s0 + ((f+I)/K)*2
# and the next, fence f+I+1: each performance gets growing fences and seats nobody took,
# and no two clients share a performance (no lock, no wait: as under lockd).
# multi: the perfs form's performances, seats and fences, in one statement.
# batch, transaction f of client c: performance p0 + CLIENTS*K + c, fence f+1, request m
# the seats sb + (f-f0)*2G + 2m and the next, from sb past every seat an earlier run of
# the batch form booked (runs of another G book at another pace).
RUNS=()
for F in "${FORM_LIST[@]}"; do
    for G in "${GROUP_LIST[@]}"; do
        RUNS+=("$F:$G")
        {
            echo "BEGIN;"
            if [[ $F == perfs ]]; then
                for ((i = 0; i < G; i++)); do
                    echo "SELECT * FROM rs_book_read((:p0 + :client_id * $K + (:f + $i) % $K)::bigint, :user::bigint, ARRAY[(:s0 + ((:f + $i) / $K) * 2)::bigint, (:s0 + ((:f + $i) / $K) * 2 + 1)::bigint], (:f + $i + 1)::numeric, false, 'group-' || :client_id || '-' || (:f + $i));"
                done
                echo "\\set f :f + $G"
            elif [[ $F == multi ]]; then
                pf="" fe="" u="" st="" rf=""
                for ((i = 0; i < G; i++)); do
                    first="(:s0 + ((:f + $i) / $K) * 2)" second="(:s0 + ((:f + $i) / $K) * 2 + 1)"
                    [[ ${TXNGROUP_PLANT_REFUSAL:-0} == 1 && $i == 0 ]] && first=0
                    [[ ${TXNGROUP_PLANT_ONE_SEAT:-0} == 1 && $i == 0 ]] && second=$first
                    pf+="${pf:+, }(:p0 + :client_id * $K + (:f + $i) % $K)::bigint"
                    fe+="${fe:+, }(:f + $i + 1)::numeric"
                    u+="${u:+, }:user::bigint"
                    st+="${st:+, }'{' || $first || ',' || $second || '}'"
                    rf+="${rf:+, }'multi-' || :client_id || '-' || (:f + $i)"
                done
                echo "SELECT * FROM rs_book_multi_proto(ARRAY[$pf], ARRAY[$fe], ARRAY[$u], ARRAY[$st], ARRAY[$rf]);"
                echo "\\set f :f + $G"
            else
                u="" st="" rf="" ky=""
                for ((m = 0; m < G; m++)); do
                    u+="${u:+, }:user::bigint"
                    first="(:sb::bigint + (:f::bigint - :f0::bigint) * $((2 * G)) + $((2 * m)))"
                    [[ ${TXNGROUP_PLANT_REFUSAL:-0} == 1 && $m == 0 ]] && first=0
                    st+="${st:+, }'{' || $first || ',' || (:sb::bigint + (:f::bigint - :f0::bigint) * $((2 * G)) + $((2 * m + 1))) || '}'"
                    rf+="${rf:+, }'batch-' || :client_id || '-' || :f || '-$m'"
                    ky+="${ky:+, }''"
                done
                echo "SELECT * FROM rs_book_batch_read((:p0::bigint + $((CLIENTS * K)) + :client_id::bigint)::bigint, (:f::bigint + 1)::numeric, ARRAY[$u], ARRAY[$st], ARRAY[$rf], ARRAY[$ky]);"
                echo "\\set f :f + 1"
            fi
            echo "COMMIT;"
        } >"$BK_TMP/$F-$G.sql"
    done
done

declare -A SUM=() N=()
for ((round = 1; round <= ROUNDS; round++)); do
    for run in "${RUNS[@]}"; do
        F=${run%%:*} G=${run#*:}
        for c in "$CLIENTS" 1; do
            BK_PSQL_USER=postgres bk_psql "VACUUM (ANALYZE)" >/dev/null
            BK_PSQL_USER=postgres bk_psql "CHECKPOINT" >/dev/null
            # fences and seats after every earlier run's
            if [[ $F != batch ]]; then
                fmax=$(bk_psql "SELECT coalesce(max(last_fence), 0)::bigint FROM performances WHERE id >= $p0 AND id < $p0 + $((CLIENTS * K))")
                f0=$((fmax + K))
            else
                fmax=$(bk_psql "SELECT coalesce(max(last_fence), 0)::bigint FROM performances WHERE id >= $p0 + $((CLIENTS * K))")
                f0=$((fmax + 1))
            fi
            sb=$(bk_psql "SELECT coalesce(max(seat_id) + 1, $s0) FROM reservation_seats WHERE performance_id >= $p0 + $((CLIENTS * K))")
            read -r before seats_before < <(bk_psql "SELECT (SELECT count(*) FROM reservations), (SELECT count(*) FROM reservation_seats)" | tr '|' ' ')
            cmd=("$PGBIN/pgbench" -n -M prepared -c "$c" -j "$((c < 2 ? 1 : 2))" -T "$SECONDS_RUN"
                -f "$BK_TMP/$F-$G.sql" -D "p0=$p0" -D "s0=$s0" -D "user=$user" -D "f=$f0" -D "f0=$f0" -D "sb=$sb"
                -h "$BK_PG_DIR" -p "$BK_PG_PORT" -U booking booking)
            out=$(PGOPTIONS='-c random_page_cost=1.1' "${cmd[@]}" 2>&1) || {
                echo "txngroup.sh: pgbench failed ($F G=$G, $c clients):" >&2
                tail -5 <<<"$out" >&2
                exit 1
            }
            tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
            done_=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
            read -r booked seats < <(bk_psql "SELECT (SELECT count(*) FROM reservations) - $before, (SELECT count(*) FROM reservation_seats) - $seats_before" | tr '|' ' ')
            if ((booked != done_ * G)); then
                echo "txngroup.sh: $F G=$G, $c clients: $booked bookings for $done_ transactions of $G" >&2
                exit 1
            fi
            if ((seats != 2 * booked)); then
                echo "txngroup.sh: $F G=$G, $c clients: $seats seats for $booked bookings of 2" >&2
                exit 1
            fi
            per=$(awk -v t="$tps" -v g="$G" 'BEGIN { printf "%.1f", t * g }')
            printf 'round %d  %-5s G=%-3s clients=%-3s transactions/s %8.1f  bookings/s %8.1f\n' \
                "$round" "$F" "$G" "$c" "$tps" "$per"
            if ((round > 1 || ROUNDS == 1)); then
                SUM[$run-$c]=$(awk -v a="${SUM[$run-$c]:-0}" -v b="$per" 'BEGIN { print a + b }')
                N[$run-$c]=$((${N[$run-$c]:-0} + 1))
            fi
        done
    done
done
echo
echo "== means (rounds after the first; bookings/s, and against ${RUNS[0]/:/ G=})"
for c in "$CLIENTS" 1; do
    base=""
    for run in "${RUNS[@]}"; do
        mean=$(awk -v s="${SUM[$run-$c]}" -v n="${N[$run-$c]}" 'BEGIN { printf "%.1f", s / n }')
        [[ -z $base ]] && base=$mean
        printf 'clients=%-3s %-5s G=%-3s bookings/s %8.1f  %.2fx\n' "$c" "${run%%:*}" "${run#*:}" \
            "$mean" "$(awk -v a="$mean" -v b="$base" 'BEGIN { print a / b }')"
    done
done
