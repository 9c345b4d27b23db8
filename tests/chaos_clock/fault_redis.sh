#!/usr/bin/env bash
# chaos_clock_fault_redis: chaos/lib/clock.sh's fault_clock_jump_redis and
# fault_clock_jump_redis_majority, called by name against 5 real redis-servers under the
# shim. Injected: a key's PTTL on the picked master(s) jumps (the key, set PX 4500, less
# than any jump, is gone within the fault) and on the others it does not; F_TARGET, F_BREAKS (0 for one
# master, 1 for a majority) and F_NOTE say so. Recovered: after the fault the next SET PX
# on a jumped master lasts what it asks and its clock runs at the normal rate (offsets stay
# forward, cumulative). The probe (two lock sessions on two lockds over these masters,
# recorded in locks-clock.jsonl): after one master's jump the second session is refused and
# the holder keeps its lock; after a majority's jump the second session is granted with a
# greater fence while the holder's deadline runs, and the holder is told LOST after that:
# the overlap the lock-history checker must find. Usage: fault_redis.sh BUILD_DIR
# shellcheck source=tests/chaos_clock/fault_lib.sh
. "$(dirname "$0")/fault_lib.sh" "$1"

for i in 1 2 3 4 5; do ct_redis "redis$i"; done
for i in 1 2 3 4 5; do ct_wait_port "${CX_REDIS_PORT[redis$i]}" "redis$i"; done
for i in 1 2 3 4 5; do cx_clock_loaded "redis$i" || fail "redis$i: shim not mapped"; done
# the probe's two lockds, as in chaos/run (without the shim)
for l in lockd1 lockd2; do ct_lockd "$l" redis1 redis2 redis3 redis4 redis5; done
for l in lockd1 lockd2; do ct_wait_port "${CX_LOCKD_PORT[$l]}" "$l"; done
for l in lockd1 lockd2; do ct_masters_up "$l" 5; done


# pttl_between NAME KEY LO HI
pttl_between() {
    local t
    t=$(rcli "$1" PTTL "$2")
    if [ "$t" -lt "$3" ] || [ "$t" -gt "$4" ]; then fail "$1 PTTL $2 = $t, want $3..$4"; fi
}

# clock_is NAME MS: NAME's clock (Redis TIME) is the real one + MS, within the time the
# call took (+-20 ms): read twice, 0.5 s apart, it also runs at the normal rate.
clock_is() {
    local before after sec usec got
    before=$(($(date +%s%3N) - 20))
    { read -r sec && read -r usec; } < <(rcli "$1" TIME)
    after=$(($(date +%s%3N) + 20))
    got=$((sec * 1000 + usec / 1000 - $2))
    if [ "$got" -lt "$before" ] || [ "$got" -gt "$after" ]; then
        fail "$1's clock minus $2 ms is $got, the real one was $before..$after"
    fi
}

# run_fault KIND PICK HOLD EXPECT_GONE...: sets k on every master, runs fault_KIND in the
# background and, while it holds, checks that k goes on exactly the expected masters.
run_fault() {
    local kind=$1 hold=$3 i gone deadline
    # shellcheck disable=SC2034 # read by the fault functions
    F_PICK=$2
    shift 3
    local -a expect=("$@")
    for i in 1 2 3 4 5; do rcli "redis$i" SET k v PX 4500 >/dev/null; done
    (
        # shellcheck disable=SC2034 # set by the fault function
        F_TARGET="" F_NOTE="" F_BREAKS=0
        "fault_$kind" "$hold"
        printf '%s\n%s\n%s\n' "$F_TARGET" "$F_BREAKS" "$F_NOTE" >"$CX_WORK/fault.out"
    ) &
    local fpid=$!
    deadline=$((SECONDS + 2))
    for i in "${expect[@]}"; do # gone within 1 s of the start (2 s with the fork)
        until [ "$(rcli "$i" PTTL k)" = -2 ]; do
            [ $SECONDS -lt $deadline ] || fail "$kind: k still on $i"
            sleep 0.02
        done
    done
    for i in 1 2 3 4 5; do
        gone=0
        [[ " ${expect[*]} " == *" redis$i "* ]] && gone=1
        [ $gone = 1 ] || pttl_between "redis$i" k 1 4500
    done
    wait "$fpid" || fail "fault_$kind failed"
    mapfile -t FAULT_OUT <"$CX_WORK/fault.out"
    echo "$kind: target ${FAULT_OUT[0]} breaks ${FAULT_OUT[1]}: ${FAULT_OUT[2]}"
}

# One master: F_PICK 7 -> redis3, jump 5000 + 7 % 5001 = 5007 ms.
run_fault clock_jump_redis 7 1200 redis3
[ "${FAULT_OUT[0]}" = redis3 ] || fail "target '${FAULT_OUT[0]}', want redis3"
[ "${FAULT_OUT[1]}" = 0 ] || fail "one master: F_BREAKS=${FAULT_OUT[1]}, want 0"
[[ ${FAULT_OUT[2]} == *"+5007 ms"* ]] || fail "note '${FAULT_OUT[2]}'"
probe_check "$(probe_resources | sed -n 1p)" 0
# recovered: a new key lasts what it asks on the jumped master, and its clock runs at the
# normal rate (Redis TIME); the offset stayed forward (its file says 5007)
rcli redis3 SET k2 v PX 10000 >/dev/null
pttl_between redis3 k2 9000 10000
clock_is redis3 5007
sleep 0.5
clock_is redis3 5007
read -r off <"$CX_WORK/clock-redis3.ms"
[ "$off" = 5007 ] || fail "redis3's offset after the fault: '$off', want 5007 (stays forward)"

# A majority: F_PICK 1 -> redis2, redis3, redis4 (cx_redis_pick 3), jump 5001 ms.
run_fault clock_jump_redis_majority 1 1200 redis2 redis3 redis4
[ "${FAULT_OUT[0]}" = redis2,redis3,redis4 ] || fail "target '${FAULT_OUT[0]}'"
[ "${FAULT_OUT[1]}" = 1 ] || fail "majority: F_BREAKS=${FAULT_OUT[1]}, want 1"
probe_check "$(probe_resources | sed -n 2p)" 1
read -r off <"$CX_WORK/clock-redis3.ms"
[ "$off" = 10008 ] || fail "redis3's offset: '$off', want 10008 (cumulative)"
for i in 2 3 4; do
    rcli "redis$i" SET k3 v PX 10000 >/dev/null
    pttl_between "redis$i" k3 9000 10000
done
clock_is redis1 0 # untouched masters keep their clocks
clock_is redis3 10008
echo "PASS"
