#!/usr/bin/env bash
# it_quarantine_amnesia_fault: chaos/lib/amnesia.sh's fault_redis_amnesia and
# fault_redis_amnesia_majority called by name, as chaos/run calls them, against 5 real
# redis-servers (AOF, appendfsync always, like chaos/run's) and 2 real lockds (guard on) while
# a session holds a lock. Injected: the picked master(s) come back EMPTY on the same port with
# a new run_id and AOF off, and lockd quarantines them (masters_quarantined in the note; with 3
# of 5, nobody is granted a lock meanwhile: NOQUORUM, not an overlap). Recovered: the lock key
# back on the forgotten master with the holder's token (a renewal restores it), every master
# counted again, the forgotten one holds the fence counter of the other masters again (the
# restore), it is durable again (appendonly yes, appendfsync always) and a SIGKILL + restart
# through its saved command line brings that counter back from its AOF. Every process is
# stopped by PID on exit, also on failure. Usage: it_quarantine_amnesia_fault.sh BUILD_DIR
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CX_BIN=$(cd "${1:?build dir}/bin" && pwd)
CX_WORK=$(mktemp -d "${TMPDIR:-/tmp}/it_amnesia.XXXXXX")
mkdir -p "$CX_WORK/logs"
CX_REAL0=${EPOCHREALTIME/[.,]/}
cx_now() {
    local now=${EPOCHREALTIME/[.,]/}
    echo $(((now - CX_REAL0) / 1000))
}
# shellcheck source=chaos/lib/proc.sh
. "$ROOT/chaos/lib/proc.sh"
# shellcheck source=chaos/lib/net.sh
. "$ROOT/chaos/lib/net.sh"
# shellcheck source=chaos/lib/faults.sh
. "$ROOT/chaos/lib/faults.sh"
# shellcheck source=chaos/lib/amnesia.sh
. "$ROOT/chaos/lib/amnesia.sh"
declare -A CX_REDIS_PORT=() CX_LOCKD_PORT=()
PINGER=""

cleanup() {
    local rc=$? f
    trap - EXIT
    if [ -n "$PINGER" ]; then
        kill "$PINGER" 2>/dev/null || true
        wait "$PINGER" 2>/dev/null || true
    fi
    cx_stop lockd1 5 # the lockds first: they release their locks while the masters are up
    cx_stop lockd2 5
    cx_stop_all
    if [ "$rc" != 0 ]; then
        for f in "$CX_WORK"/logs/*.log; do
            echo "---- tail of $f ----" >&2
            grep -v ' DEBUG ' "$f" | tail -n 25 >&2 || true
        done
    fi
    if [ -n "${IT_KEEP:-}" ]; then echo "kept $CX_WORK" >&2; else rm -rf "$CX_WORK"; fi
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

rcli() { cx_redis_cli "$@" | tr -d '\r'; }

# ---- 5 masters as chaos/run starts them, 2 lockds with the guard (the default) ----
for i in 1 2 3 4 5; do
    p=$(cx_free_port)
    CX_REDIS_PORT[redis$i]=$p
    mkdir -p "$CX_WORK/redis$i"
    cx_spawn "redis$i" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync always --dir "$CX_WORK/redis$i" --daemonize no
done
for i in 1 2 3 4 5; do cx_wait_up "redis$i" "${CX_REDIS_PORT[redis$i]}" 10; done
REDIS=""
for i in 1 2 3 4 5; do REDIS+="${REDIS:+, }127.0.0.1:${CX_REDIS_PORT[redis$i]}"; done
for i in 1 2; do
    p=$(cx_free_port)
    CX_LOCKD_PORT[lockd$i]=$p
    cat >"$CX_WORK/lockd$i.yaml" <<YAML
listen: 127.0.0.1:$p
key_prefix: "chaos:"
redis: [$REDIS]
redlock: {redis_timeout_ms: 100, retry_delay_ms: 20, clock_drift_factor: 0.01}
watchdog: {lease_ms: 1500}
session: {timeout_ms: 1500, lock_delay_ms: 0}
log: {level: info}
YAML
    cx_spawn "lockd$i" "$CX_BIN/lockd" --config "$CX_WORK/lockd$i.yaml"
done
for i in 1 2; do cx_wait_up "lockd$i" "${CX_LOCKD_PORT[lockd$i]}" 10; done
for ((i = 0; i < 100; i++)); do
    [ "$(cx_lockd_info_field lockd1 masters_up)" = 5 ] &&
        [ "$(cx_lockd_info_field lockd2 masters_up)" = 5 ] && break
    sleep 0.05
done
[ "$(cx_lockd_info_field lockd1 masters_up)" = 5 ] || fail "lockd1 does not count 5 masters"

# ---- a holder on lockd1 (watchdog lease), kept alive by PINGs ----
exec {H}<>"/dev/tcp/127.0.0.1/${CX_LOCKD_PORT[lockd1]}"
printf 'h HELLO holder\n' >&"$H"
read -r -t 2 -u "$H" line
for n in 1 2 3; do # a few grants: the fence counter is 3 on every master
    printf 'a%d ACQUIRE chaos:lk:0 0 0\n' "$n" >&"$H"
    read -r -t 2 -u "$H" line
    [[ $line =~ ^a$n\ OK\ ([0-9a-f]+)\ ([0-9]+) ]] || fail "ACQUIRE: '$line'"
    [ "$n" = 3 ] && break
    printf 'r%d RELEASE chaos:lk:0 %s\n' "$n" "${BASH_REMATCH[1]}" >&"$H"
    read -r -t 2 -u "$H" line
done
TOKEN=${BASH_REMATCH[1]} FENCE=${BASH_REMATCH[2]}
[ "$FENCE" = 3 ] || fail "fence $FENCE, want 3"
(while sleep 0.3; do printf 'p PING\n' >&"$H" || exit 0; done) &
PINGER=$!

# run_fault KIND PICK HOLD: the fault as chaos/run runs it; FAULT_OUT = target, breaks, note.
run_fault() {
    F_PICK=$2 F_TARGET="" F_NOTE="" F_BREAKS=0
    local t0
    t0=$(cx_now)
    "fault_$1" "$3"
    FAULT_OUT=("$F_TARGET" "$F_BREAKS" "$F_NOTE")
    echo "[$(cx_now) ms] $1: target $F_TARGET breaks $F_BREAKS in $(($(cx_now) - t0)) ms: $F_NOTE"
}

echo "[$(cx_now) ms] 5 masters, 2 lockds and a holder (fence $FENCE) up"
# ---- one master forgets: F_PICK 7 -> redis3 ----
RUN_ID=$(rcli redis3 INFO server | sed -n 's/^run_id://p')
[ "$(rcli redis3 GET chaos:fence:chaos:lk:0)" = 3 ] || fail "redis3 has no fence 3 before"
run_fault redis_amnesia 7 500
[ "${FAULT_OUT[0]}" = redis3 ] || fail "target '${FAULT_OUT[0]}', want redis3"
[ "${FAULT_OUT[1]}" = 0 ] || fail "one master: F_BREAKS=${FAULT_OUT[1]}, want 0"
[[ ${FAULT_OUT[2]} == *"locks_held=1 "* ]] || fail "not at a moment a lock was held: ${FAULT_OUT[2]}"
[[ ${FAULT_OUT[2]} == *"masters_quarantined=1 "* ]] || fail "lockd1 did not quarantine it: ${FAULT_OUT[2]}"
[[ ${FAULT_OUT[2]} != *"not durable again"* ]] || fail "${FAULT_OUT[2]}"
# it forgot: a new process; the lock key is back, put there by a watchdog renewal (a key
# missing on a master is restored, not counted: lk_rlcmd's renew script)
# (renewals go every third of the 1500 ms lease, and the first one after the quarantine
# may come up to 500 ms after it ends: wait for it, 2 s at most)
[ "$(rcli redis3 INFO server | sed -n 's/^run_id://p')" != "$RUN_ID" ] || fail "same run_id"
for _ in $(seq 40); do
    [ "$(rcli redis3 GET chaos:lock:chaos:lk:0)" = "$TOKEN" ] && break
    sleep 0.05
done
[ "$(rcli redis3 GET chaos:lock:chaos:lk:0)" = "$TOKEN" ] || fail "redis3 does not hold the holder's token again within 2 s"
# recovered: counted by both lockds, its fence counter restored from the others
for l in lockd1 lockd2; do
    [ "$(cx_lockd_info_field $l masters_up)" = 5 ] || fail "$l: masters_up"
    [ "$(cx_lockd_info_field $l masters_quarantined)" = 0 ] || fail "$l: still quarantined"
done
[ "$(rcli redis3 GET chaos:fence:chaos:lk:0)" = 3 ] || fail "redis3's fence was not restored"
# durable again: AOF on with appendfsync always, and a SIGKILL + restart keeps its data
[ "$(rcli redis3 CONFIG GET appendonly | tail -n 1)" = yes ] || fail "appendonly is not yes"
[ "$(rcli redis3 CONFIG GET appendfsync | tail -n 1)" = always ] || fail "appendfsync not always"
[[ ${CX_CMD[redis3]} == *"--appendonly yes "*redis3.amnesia1* ]] || fail "CX_CMD: ${CX_CMD[redis3]}"
cx_kill9 redis3
cx_respawn redis3
cx_wait_up redis3 "${CX_REDIS_PORT[redis3]}" 10
[ "$(rcli redis3 GET chaos:fence:chaos:lk:0)" = 3 ] || fail "redis3 forgot again after a plain restart"
# the holder kept its lock all along (4 of 5 masters)
printf 'n RENEW chaos:lk:0 x 1000\n' >&"$H" # any reply: the session is alive
(exec 3<>"/dev/tcp/127.0.0.1/${CX_LOCKD_PORT[lockd2]}" && printf 'o HELLO other\nb ACQUIRE chaos:lk:0 1000 0\n' >&3 &&
    read -r -t 2 -u 3 _ && read -r -t 2 -u 3 l2 && echo "$l2") >"$CX_WORK/other.txt"
[[ $(cat "$CX_WORK/other.txt") == "b TIMEOUT"* ]] || fail "another session got: $(cat "$CX_WORK/other.txt")"

echo "[$(cx_now) ms] one master: checked"
# lockd2 grants a 2 s lease (and gives it back): its quarantines then last at least that long
# after each return, so the three overlap there even when they come back spread out
(exec 3<>"/dev/tcp/127.0.0.1/${CX_LOCKD_PORT[lockd2]}" && printf 'o HELLO other\nb ACQUIRE chaos:lk:5 2000 0\n' >&3 &&
    read -r -t 2 -u 3 _ && read -r -t 2 -u 3 l2 && echo "$l2") >"$CX_WORK/lease.txt"
[[ $(cat "$CX_WORK/lease.txt") == "b OK"* ]] || fail "lockd2's 2 s lease: $(cat "$CX_WORK/lease.txt")"
# ---- a majority forgets at once: F_PICK 1 -> redis2, redis3, redis4 (by design) ----
(
    # inside the quarantine (lockd2 without a quorum: the three are back but quarantined):
    # nobody is granted anything
    deadline=$((SECONDS + 10))
    until [ "$(cx_lockd_info_field lockd2 masters_quarantined)" = 3 ]; do
        [ $SECONDS -lt $deadline ] || {
            echo "never saw the three quarantined on lockd2"
            exit 0
        }
        sleep 0.005
    done
    exec 3<>"/dev/tcp/127.0.0.1/${CX_LOCKD_PORT[lockd2]}"
    printf 'o HELLO other\nb ACQUIRE chaos:lk:9 1000 0\n' >&3
    read -r -t 2 -u 3 _ && read -r -t 2 -u 3 l2 && echo "$l2"
) >"$CX_WORK/during.txt" &
DURING=$!
run_fault redis_amnesia_majority 1 500
wait "$DURING" || true
[ "${FAULT_OUT[0]}" = redis2,redis3,redis4 ] || fail "target '${FAULT_OUT[0]}'"
[ "${FAULT_OUT[1]}" = 1 ] || fail "majority: F_BREAKS=${FAULT_OUT[1]}, want 1"
[[ ${FAULT_OUT[2]} == *"masters_quarantined=3 "* ]] || fail "not all three quarantined: ${FAULT_OUT[2]}"
[[ $(cat "$CX_WORK/during.txt") == "b ERR NOQUORUM"* ]] ||
    fail "an acquire during the majority's quarantine got: '$(cat "$CX_WORK/during.txt")'"
for r in redis2 redis3 redis4; do
    [ "$(rcli $r CONFIG GET appendonly | tail -n 1)" = yes ] || fail "$r: appendonly"
done
for l in lockd1 lockd2; do
    [ "$(cx_lockd_info_field $l masters_up)" = 5 ] || fail "$l: masters_up after the majority"
done
echo "PASS"
