#!/usr/bin/env bash
# chaos_clock_fault_lockd: chaos/lib/clock.sh's fault_clock_jump_lockd, called by name
# against a real lockd under the shim (over a real redis-server). A session holds a lock
# with a watchdog lease (1500 ms, renewed every 500 ms), another waits for it. Injected:
# lockd's wall clock jumps +62 s, then -62 s (its log stamps of two grants made inside the
# fault show both); nothing breaks: no LOST, the lock still held with its fence and a live
# ttl, the waiter not granted; the fault's probe (a holder through lockd1 from before the
# jump, one attempt through a second lockd after it) shows the attempt refused and the
# holder never LOST; recovered: the offset is 0 again, RELEASE is OK and the waiter gets
# the lock with a greater fence. Usage: fault_lockd.sh BUILD_DIR
# shellcheck source=tests/chaos_clock/fault_lib.sh
. "$(dirname "$0")/fault_lib.sh" "$1"

p=$(ct_port) rp=$(ct_port)
CX_REDIS_PORT[redis1]=$rp
CX_LOCKD_PORT[lockd1]=$p
mkdir -p "$CX_WORK/redis1"
ct_spawn redis1 redis-server --port "$rp" --bind 127.0.0.1 --save '' --dir "$CX_WORK/redis1" \
    --daemonize no
cat >"$CX_WORK/lockd1.yaml" <<YAML
listen: 127.0.0.1:$p
key_prefix: "chaos:" # as lockd2 (ct_lockd): the same locks
redis: [127.0.0.1:$rp]
watchdog: {lease_ms: 1500}
session: {timeout_ms: 10000, lock_delay_ms: 0}
log: {level: debug}
YAML
cx_clock_prepare lockd1
ct_wait_port "$rp" redis1
ct_spawn lockd1 "$CX_BIN/lockd" --config "$CX_WORK/lockd1.yaml"
ct_lockd lockd2 redis1 # the probe's other lockd, without the shim
ct_wait_port "$p" lockd1
ct_wait_port "${CX_LOCKD_PORT[lockd2]}" lockd2
ct_masters_up lockd2 1
cx_clock_loaded lockd1 || fail "lockd1: shim not mapped"

# reply FD TAG: prints the reply to TAG (3 s at most), dropping other lines.
reply() {
    local line
    while read -r -t 3 -u "$1" line; do
        [[ $line == "$2 "* ]] && { echo "${line#"$2 "}"; return 0; }
    done
    fail "no reply to '$2'"
}
# lockp FD TAG REQUEST...: sends "<tag> <request>", prints the reply to that tag.
lockp() {
    local fd=$1 tag=$2
    shift 2
    printf '%s %s\n' "$tag" "$*" >&"$fd"
    reply "$fd" "$tag"
}
# pending FD: every line that came on FD and was not read yet (waits 0.2 s).
pending() {
    local line
    while read -r -t 0.2 -u "$1" line; do echo "$line"; done
    return 0
}

exec {holder}<>"/dev/tcp/127.0.0.1/$p" {waiter}<>"/dev/tcp/127.0.0.1/$p" \
    {probe}<>"/dev/tcp/127.0.0.1/$p"
for fd in "$holder" "$waiter" "$probe"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do # lockd takes sessions before its master is connected
        [[ $(lockp "$fd" i INFO) == *" masters_up=1 "* ]] && break
        sleep 0.1
    done
    [[ $(lockp "$fd" h HELLO "client$fd") == OK* ]] || fail "HELLO"
done
read -r ok token fence _ <<<"$(lockp "$holder" a ACQUIRE Clock:w 0 0)"
[ "$ok" = OK ] || fail "ACQUIRE: $ok"
printf 'w ACQUIRE Clock:w 0 8000\n' >&"$waiter"

# F_PICK 2: lockd1 (2 % 2 + 1), jump 60000 + (2 % 541) * 1000 = 62000 ms, held 2000 ms.
(
    # shellcheck disable=SC2034 # read by the fault function
    F_PICK=2 F_TARGET="" F_NOTE="" F_BREAKS=0
    fault_clock_jump_lockd 2000
    printf '%s\n%s\n%s\n' "$F_TARGET" "$F_BREAKS" "$F_NOTE" >"$CX_WORK/fault.out"
) &
fpid=$!
# a grant in each half of the fault, stamped by lockd's (shifted) log clock
declare -A probe_at=()
for half in fwd back; do
    sleep 0.6
    probe_at[$half]=$(date +%s%3N)
    read -r ok ptok _ <<<"$(lockp "$probe" "p$half" ACQUIRE "Clock:probe-$half" 0 0)"
    [ "$ok" = OK ] || fail "probe ACQUIRE in the $half half: $ok"
    [ "$(lockp "$probe" "r$half" RELEASE "Clock:probe-$half" "$ptok")" = OK ] || fail "probe RELEASE"
    sleep 0.4
done
wait "$fpid" || fail "fault_clock_jump_lockd failed"
mapfile -t FAULT_OUT <"$CX_WORK/fault.out"
echo "clock_jump_lockd: target ${FAULT_OUT[0]} breaks ${FAULT_OUT[1]}: ${FAULT_OUT[2]}"
[ "${FAULT_OUT[0]}" = lockd1 ] || fail "target '${FAULT_OUT[0]}', want lockd1"
[ "${FAULT_OUT[1]}" = 0 ] || fail "F_BREAKS=${FAULT_OUT[1]}, want 0"
[ "$(cx_clock_get lockd1)" = 0 ] || fail "lockd1's offset after the fault: $(cx_clock_get lockd1)"

# the probe: H held through lockd1 across both jumps, C was refused through lockd2
probe_check "$(probe_resources | sed -n 1p)" 0

# injected: the grants' log stamps are 62 s ahead, then 62 s behind (within 2 s)
for half in fwd back; do
    want=62000
    [ $half = back ] && want=-62000
    stamp=$(grep "granted Clock:probe-$half " "$CX_WORK/logs/lockd1.log" | head -n 1 | cut -d' ' -f1)
    [ -n "$stamp" ] || fail "no 'granted Clock:probe-$half' in lockd's log"
    got=$(($(date -u -d "$stamp" +%s%3N) - probe_at[$half]))
    echo "grant in the $half half: lockd's log clock $got ms from the real one"
    if [ $((got - want)) -le -2000 ] || [ $((got - want)) -ge 2000 ]; then
        fail "the $half half: lockd's log clock off by $got ms, want ~$want"
    fi
done

# nothing broke: no LOST, the waiter not granted, the lock held with its fence, ttl alive
lines=$(pending "$holder")
[[ $lines != *LOST* ]] || fail "the holder got: $lines"
lines=$(pending "$waiter")
[ -z "$lines" ] || fail "the waiter got: $lines"
show=$(lockp "$probe" s SHOW Clock:w)
if ! [[ $show =~ ^OK\ held=1\ fence=$fence\ ttl_ms=([1-9][0-9]*)\  ]]; then
    fail "SHOW after the fault: $show (fence $fence)"
fi
# recovered: RELEASE is OK and the waiter is granted with a greater fence
[ "$(lockp "$holder" r RELEASE Clock:w "$token")" = OK ] || fail "RELEASE after the fault"
read -r ok _ wfence _ <<<"$(reply "$waiter" w)"
if [ "$ok" != OK ] || [ "$wfence" -le "$fence" ]; then
    fail "the waiter after the RELEASE: $ok fence $wfence"
fi
echo "PASS"
