#!/usr/bin/env bash
# demo.sh: the whole booking system on this machine, a booking storm and a checked summary.
# Installs what is missing (scripts/deps.sh), builds the Release tree in build/ (unless
# DEMO_BIN is set), then starts on free 127.0.0.1 ports, in one temp dir: PostgreSQL 15 (as `postgres`, fsync on),
# 3 Redis masters, 2 lockd, fakepay (5% declines) and 3 reserved (lock mode lockd). It makes
# an admin (reserved --add-admin, password on stdin) and logs it in; through the API, with
# the admin's token, it creates a 200-seat venue (40 VIP), a hot performance and 5 other
# performances; 100 buyers sign up with a password and log in, a token each. Then
# bookbench runs a booking storm on the hot performance from 128 concurrent clients spread
# over the 3 reserved, each booking with its buyer's token, until it is sold out or 20 s
# pass. The summary (from
# PostgreSQL, fakepay, bookbench and reserved's /metrics) shows seats, sold, remaining,
# rejections by reason, oversold (must be 0), approved payments against confirmed
# reservations, throughput and latency, each reserved's share of the hot bookings, the
# group-booking batch sizes, then one OK or FAILED per check. Every server logs at info to its own file in
# <temp dir>/logs. At the end (also on Ctrl-C or a failure) everything started is stopped
# by PID, one line each. Exit 0 when every check holds and everything stopped cleanly,
# 1 otherwise, 130 when interrupted before the summary.
#
# usage: bash scripts/demo.sh [--keep] [--keep-logs]
#        bash scripts/demo.sh --locks [--keep] [--keep-logs]
#   --keep       after the summary, keep everything running and print the environment to
#                paste (also written to DEMO_ENV_FILE: `source build/demo.env` in a second
#                terminal), an nc line for lockd, the metrics addresses, the logs and curl
#                examples. lockd's session timeout is 60 s here: a session typed by hand
#                must send something (PING) within 60 s or it expires with its locks.
#                Ctrl-C or SIGTERM then stops everything, one line per process, and
#                exits 0 (1 if a check failed).
#   --keep-logs  keep the logs after the end (the rest of the temp dir is removed) and
#                print where they are
#   --locks      the lockd-only walkthrough: lockctl workers contending for one lock
#                through 2 lockd, a paused holder fenced off, lockd's INFO and metrics
#   -h, --help   this text
# environment:
#   BUILD_DIR      the build dir to build and run (build)
#   DEMO_BIN       run the programs of this bin dir (e.g. build-test/bin) and build nothing
#   CLIENTS        bookbench clients (128)
#   DURATION       the storm's time limit in seconds (20)
#   SEED           seed of bookbench and fakepay (1)
#   DEMO_ENV_FILE  the file --keep writes the environment to (build/demo.env); removed
#                  when the demo stops
#   BK_KEEP_TMP=1  keep the whole temp dir (data, configs, logs) after the end
#   TMPDIR         where the temp dir is made (/tmp)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# DEMO_BIN and DEMO_ENV_FILE are paths as the caller typed them: relative to where the
# demo was started from (BUILD_DIR stays relative to the top of the clone).
abspath() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
[[ -n ${DEMO_BIN:-} ]] && DEMO_BIN=$(abspath "$DEMO_BIN")
[[ -n ${DEMO_ENV_FILE:-} ]] && DEMO_ENV_FILE=$(abspath "$DEMO_ENV_FILE")
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
CLIENTS=${CLIENTS:-128}
DURATION=${DURATION:-20}
SEED=${SEED:-1}
DEMO_ENV_FILE=${DEMO_ENV_FILE:-$ROOT/build/demo.env}
KEEP=0
LOCKS=0
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    --keep-logs) export BK_KEEP_LOGS=1 ;;
    --locks) LOCKS=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo.sh: unknown argument '$arg'" >&2
        echo "usage: $0 [--keep] [--keep-logs] [--locks] [--help]" >&2
        exit 2
        ;;
    esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# What the servers of the demo do differently from the tests' (scripts/lib/booking.sh):
# logs at info; a lockd session timeout a person typing into nc can live with; servers in
# their own session, so a Ctrl-C reaches this script only and it stops them in order.
export BK_LOG_LEVEL=info BK_LOCKD_SESSION_MS=60000 BK_DETACH=1 BK_STOP_VERBOSE=1

say "dependencies"
bash scripts/deps.sh

if [[ -n ${DEMO_BIN:-} ]]; then
    say "programs from $DEMO_BIN (DEMO_BIN: no build)"
    for t in lockd lockctl reserved fakepay bookbench; do
        if [[ ! -x "$DEMO_BIN/$t" ]]; then
            echo "demo: DEMO_BIN=$DEMO_BIN has no program $t (want lockd, lockctl, reserved, fakepay, bookbench)" >&2
            exit 2
        fi
    done
    BK_BIN=$(cd "$DEMO_BIN" && pwd)
else
    say "build ($BUILD_DIR, Release)"
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)" \
        --target lockd lockctl reserved fakepay bookbench | tail -n 1
    BK_BIN=$(cd "$BUILD_DIR/bin" && pwd)
fi

# shellcheck source=lib/booking.sh
source scripts/lib/booking.sh

ENV_WRITTEN=0
# The EXIT trap: stops everything (one line each), removes the env file if it is still
# ours, says where kept logs are. A clean stop keeps the exit status; an unclean one
# turns 0 into 1. Signals are ignored meanwhile, so a second Ctrl-C cannot cut it short.
demo_exit() {
    local rc=$?
    trap '' INT TERM HUP
    if [[ ${#BK_PIDS[@]} -gt 0 || -n $BK_PG_DIR ]]; then
        say "stopping everything${DEMO_STOP_WHY:+ ($DEMO_STOP_WHY)}"
    fi
    if ! bk_cleanup; then
        echo "demo: not everything stopped cleanly" >&2
        [[ $rc -eq 0 ]] && rc=1
    fi
    if [[ $ENV_WRITTEN -eq 1 ]] && head -n 1 "$DEMO_ENV_FILE" 2>/dev/null | grep -q "(pid $$)"; then
        rm -f "$DEMO_ENV_FILE"
        echo "removed $DEMO_ENV_FILE"
    fi
    if [[ -n $BK_TMP && -d $BK_TMP ]]; then
        if [[ ${BK_KEEP_TMP:-0} == 1 ]]; then
            echo "temp dir kept (BK_KEEP_TMP=1): $BK_TMP (logs in $BK_LOGS)"
        elif [[ ${BK_KEEP_LOGS:-0} == 1 ]]; then
            echo "logs kept (--keep-logs): $BK_LOGS"
        fi
    fi
    exit "$rc"
}
trap demo_exit EXIT
trap 'DEMO_STOP_WHY=interrupted; exit 130' INT TERM HUP

# Waits for Ctrl-C, SIGTERM or SIGHUP (a sleep we wait on: the trap runs at once), then
# returns; the caller exits and demo_exit stops everything.
DEMO_STOP_WHY=""
demo_keep_wait() {
    trap 'DEMO_STOP_WHY=SIGINT' INT
    trap 'DEMO_STOP_WHY=SIGTERM' TERM
    trap 'DEMO_STOP_WHY=SIGHUP' HUP
    sleep infinity &
    local sleeper=$!
    bk_track "$sleeper" -
    while [[ -z $DEMO_STOP_WHY ]]; do
        wait "$sleeper" || true
        kill -0 "$sleeper" 2>/dev/null || break
    done
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
echo "lockd: ${BK_LOCKD[*]} (session.timeout_ms $BK_LOCKD_SESSION_MS)"
echo "fakepay: $BK_PAY_URL"

say "3 reserved (lock mode lockd, payment on; configs $BK_TMP/reserved{1,2,3}.yaml)"
bk_start_reserved 3 lockd "$BK_PAY_URL"
echo "reserved: ${BK_RESERVED[*]}"
echo "logs (info): $BK_LOGS"

say "an admin (reserved --add-admin $BK_ADMIN_EMAIL, logged in); the catalogue through the API (curl, admin token)"
VENUE=$(bk_create_venue "Seoul Arts Center" 200 40)
HOT=$(bk_create_perf "$VENUE" "Hot show (premiere)" 30)
OTHERS=()
for d in 31 32 33 34 35; do OTHERS+=("$(bk_create_perf "$VENUE" "Matinee day $d" "$d")"); done
NUSERS=100
bk_create_users "$NUSERS"
echo "venue $VENUE: 200 seats (40 VIP); hot performance $HOT; others ${OTHERS[*]};" \
    "users $BK_USERS_FIRST..$((BK_USERS_FIRST + NUSERS - 1)) (signed up and logged in: one token each)"
bk_api GET "/performances/$HOT"

say "booking storm: $CLIENTS clients on 3 reserved, 1-3 random seats each, until sold out or ${DURATION} s"
BB_OUT="$BK_LOGS/bookbench.out"
BB_CMD=("$BK_BIN/bookbench" --servers "$(bk_servers)" --clients "$CLIENTS" --duration "$DURATION"
    --hot-perf "$HOT" --users "$BK_USERS_FIRST:$NUSERS" --tokens "$BK_TOKENS_FILE" --seats-min 1 --seats-max 3
    --seed "$SEED" --json "$BK_LOGS/bookbench.json" --result-line)
echo "\$ ${BB_CMD[*]}"
bb_rc=0
"${BB_CMD[@]}" >"$BB_OUT" || bb_rc=$?
grep -v '^RESULT ' "$BB_OUT" || true
[[ $bb_rc -eq 0 ]] || exit "$bb_rc"
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
# Which reserved made the hot bookings (bookbench's clients are dealt round robin over
# them, so equal service gives equal shares), and the group-booking batch sizes from
# their /metrics ("n/a" when reserved does not count batches).
BY_SERVER=$(res hot_ok_by_server)
SHARES=$(bk_hot_shares "$BY_SERVER")
BATCHES=$(bk_batch_sizes "${BK_RESERVED[@]}")
GUARDS=0
mapfile -t AUTH < <(bk_auth_args) # /metrics on the API port is the admin's
for addr in "${BK_RESERVED[@]}"; do
    g=$(curl -s "${AUTH[@]}" "http://$addr/metrics" | awk '/^reserved_guard_firings_total/ {s += $2} END {print s + 0}')
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
printf '  %-44s %s\n' "201 created by reserved r1 / r2 / r3" "${BY_SERVER//,/ / }"
printf '  %-44s %s\n' "shares of the hot bookings" "${SHARES#shares: }"
printf '  %-44s %s\n' "batch sizes (bookings per transaction)" "$BATCHES"
echo
check "oversold = 0" "$(yn test "$OVERSOLD" -eq 0)"
check "remaining = seats - sold ($TOTAL - $SOLD)" "$(yn test "$REMAINING" -eq $((TOTAL - SOLD)))"
check "201 answers = confirmed reservations" "$(yn test "$(res hot_ok)" -eq "$CONFIRMED")"
check "approved payments = confirmed reservations" "$(yn test "$APPROVED" -eq "$CONFIRMED")"
check "seat flags agree with reservation status" "$(yn test "$FLAG_MISMATCH" -eq 0)"
check "no database guard fired" "$(yn test "$GUARDS" -eq 0)"
check "no unexpected answers" "$(yn test "$(res hot_other)" -eq 0)"

# 'VALUE' for a shell: single quotes, an inner ' as '\''.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# The environment of a kept demo, for `source` in another terminal: written to a temp
# file beside DEMO_ENV_FILE and renamed, so a reader waiting for the file never sees half.
write_env() {
    local lh=${BK_LOCKD[0]%:*} lp=${BK_LOCKD[0]##*:} tmp
    mkdir -p "$(dirname "$DEMO_ENV_FILE")"
    tmp="$DEMO_ENV_FILE.tmp.$$"
    {
        echo "# the booking demo (scripts/demo.sh --keep) (pid $$); removed when it stops"
        echo "export API=http://${BK_RESERVED[0]}"
        echo "export API2=http://${BK_RESERVED[1]}"
        echo "export API3=http://${BK_RESERVED[2]}"
        echo "export LOCKD_SERVER=${BK_LOCKD[0]},${BK_LOCKD[1]}"
        echo "export LOCKD_HOST=$lh"
        echo "export LOCKD_PORT=$lp"
        echo "export LOCKD_METRICS=http://${BK_LOCKD_METRICS[0]}"
        echo "export LOCKD2_METRICS=http://${BK_LOCKD_METRICS[1]}"
        echo "export PAY=$BK_PAY_URL"
        echo "export PGCONN=$(sq "$BK_PG_CONNINFO")"
        echo "export DEMO_LOGS=$(sq "$BK_LOGS")"
        echo "export PERF=${OTHERS[0]}"
        echo "export USER_ID=$BK_USERS_FIRST"
        echo "export TOKEN=$(head -n 1 "$BK_TOKENS_FILE")"
        echo "export ADMIN_TOKEN=$BK_ADMIN_TOKEN"
        echo "export VENUE=$VENUE"
        echo "export DEMO_BIN=$(sq "$BK_BIN")"
    } >"$tmp"
    mv -f "$tmp" "$DEMO_ENV_FILE"
    ENV_WRITTEN=1
}

if [[ $KEEP -eq 1 ]]; then
    write_env
    R=${BK_RESERVED[0]}
    SEAT=$(curl -s "http://$R/performances/${OTHERS[0]}/seats" |
        jq '[.seats[] | select(.available)][0].id')
    say "running until Ctrl-C (or: kill $$)"
    echo "the web app (seat map, live updates, holds): open in a browser"
    echo "  http://$R/?performance=${OTHERS[0]}   (every reserved serves it: http://${BK_RESERVED[1]}/ ...)"
    echo "  sign up there, or log in as u1.$BK_USERS_TAG@example.test with password ${BK_USER_PASSWORD:-buyer-password-1}"
    echo
    if [[ $DEMO_ENV_FILE == "$ROOT"/* ]]; then
        echo "In a second terminal, from $ROOT:"
        echo "  source ${DEMO_ENV_FILE#"$ROOT"/}"
    else
        echo "In a second terminal:"
        echo "  source $DEMO_ENV_FILE"
    fi
    echo "or paste:"
    grep '^export ' "$DEMO_ENV_FILE" | sed 's/^/  /'
    echo
    echo "lockd by hand: nc ${BK_LOCKD[0]%:*} ${BK_LOCKD[0]##*:}" \
        "(LOCKP: one request a line, <tag> <VERB> [args])"
    echo "  1 HELLO me                   -> 1 OK <session-id> $BK_LOCKD_SESSION_MS"
    echo "  2 ACQUIRE Demo:1 0 5000      -> 2 OK <token> <fence> <validity_ms>"
    echo "  3 PING                       -> 3 OK PONG"
    echo "  4 RELEASE Demo:1 <token>     -> 4 OK"
    echo "  session.timeout_ms is $BK_LOCKD_SESSION_MS: a session that sends nothing for" \
        "$((BK_LOCKD_SESSION_MS / 1000)) s expires"
    echo "  and loses its locks; any request (PING) keeps it alive."
    echo "  lockctl: $BK_BIN/lockctl --server ${BK_LOCKD[0]},${BK_LOCKD[1]} info"
    echo
    echo "metrics: lockd 1 http://${BK_LOCKD_METRICS[0]}/metrics," \
        "lockd 2 http://${BK_LOCKD_METRICS[1]}/metrics"
    echo "         reserved http://$R/metrics (and the same path on the other two; admin only:" \
        "-H \"Authorization: Bearer \$ADMIN_TOKEN\")"
    echo "logs (info, one file per server): $BK_LOGS"
    if [[ ${BK_KEEP_TMP:-0} == 1 || ${BK_KEEP_LOGS:-0} == 1 ]]; then
        echo "  kept after the demo stops"
    else
        echo "  removed when the demo stops (--keep-logs keeps them)"
    fi
    echo
    echo "try (performance ${OTHERS[0]} has free seats; user $BK_USERS_FIRST is logged in as \$TOKEN):"
    echo "  curl -s http://$R/performances/${OTHERS[0]}"
    echo "  curl -s http://$R/performances/${OTHERS[0]}/seats"
    echo "  curl -s -X POST -H 'Content-Type: application/json' -H \"Authorization: Bearer \$TOKEN\" -d '{\"seatIds\": [$SEAT]}' http://$R/performances/${OTHERS[0]}/reservations"
    echo "  curl -s -H \"Authorization: Bearer \$TOKEN\" http://$R/users/$BK_USERS_FIRST/reservations"
    echo "  curl -s $BK_PAY_URL/stats"
    demo_keep_wait
fi
[[ $ok -eq 1 ]]
