#!/usr/bin/env bash
# shellcheck disable=SC2034 # F_PICK, CX_NET_MODE: read by the sourced fault functions
# netns_test.sh CASE [BUILD_DIR]: the tests of chaos/lib/netns.sh (issue 15 §1 "partition").
# Each case builds the namespaces the fault needs (chaos/lib/netns.sh's own cx_netns_up, a
# per-run suffix), puts a peer (peer.py: TCP "ok" + UDP log) in each, runs the real fault
# function with a fixed pick in the background, probes while the rule is in place (its
# cx_fault_begin is the signal) and again after it cleared. Stops its peers by PID and
# deletes its namespaces on any exit. Exit 77 (skipped) where namespaces cannot be made.
#   partition_lockd_redis     lockd1 cut from redis1..3 both ways; redis4, lockd2 untouched
#   partition_reserved_pg     reserved1 cut from postgresql; reserved2 not
#   partition_reserved_lockd  reserved1 cut from both lockds, then (another pick) from lockd1 only
#   partition_asymmetric      UDP lockd1 -> redis1 dropped while redis1 -> lockd1 arrives, then
#                             the reverse (another pick: redis2 -> lockd1 dropped)
#   netem_link                latency on lockd1's link (sch_netem), or where the kernel has no
#                             netem the loss the fault falls back to (nft random drop)
#   spawn_env_netns           cx_spawn, cx_respawn and a respawn with a rewritten CX_CMD run inside
#                             the name's namespace with CX_ENV[name] (the interface clock.sh and
#                             amnesia.sh rely on)
#   bad_net                   chaos/run --net bogus exits 2 and says why
#   netns_unavailable         chaos/run --net netns where namespaces cannot be made (run as an
#                             unprivileged user) exits 2 and says why, before starting anything
#   cleanup                   chaos/run --net netns stopped (SIGTERM: the trap of Ctrl-C; a background
#                             job ignores SIGINT) once its servers run leaves no namespace,
#                             veth or bridge of its suffix behind, and none of their processes
set -euo pipefail

CASE=${1:?case}
BUILD=${2:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/chaos_net
PORT=7400
# Debian's interpreter when there is one: a version manager's shim costs a second a start.
PY=$(command -v /usr/bin/python3 || command -v python3)

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# ---- the cases that run chaos/run itself ----
if [ "$CASE" = bad_net ]; then
    rc=0
    out=$(bash "$ROOT/chaos/run" --net bogus --duration 20 2>&1) || rc=$?
    [ $rc = 2 ] || fail "chaos/run --net bogus exited $rc, want 2 ($out)"
    [[ $out == *"--net must be netns, proxy or auto"* ]] || fail "no reason given: $out"
    echo "PASS bad_net: exit 2: $out"
    exit 0
fi

if [ "$CASE" = netns_unavailable ]; then
    # Where namespaces cannot be made (here: an unprivileged user), --net netns refuses.
    [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null || {
        echo "SKIP: needs root and setpriv to run chaos/run unprivileged"
        exit 77
    }
    [ -x "$BUILD/bin/lockd" ] || fail "no build dir given (need $BUILD/bin)"
    rc=0
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups bash "$ROOT/chaos/run" --net netns \
        --duration 20 --build "$BUILD" --out /nonexistent/cxnet 2>&1) || rc=$?
    [ $rc = 2 ] || fail "chaos/run --net netns unprivileged exited $rc, want 2 ($out)"
    [[ $out == *"--net netns is not possible here: not root"* ]] || fail "no reason given: $out"
    echo "PASS netns_unavailable: exit 2: $out"
    exit 0
fi

# shellcheck source=chaos/lib/proc.sh
. "$ROOT/chaos/lib/proc.sh"
# shellcheck source=chaos/lib/net.sh
. "$ROOT/chaos/lib/net.sh"
# shellcheck source=chaos/lib/faults.sh
. "$ROOT/chaos/lib/faults.sh"
# shellcheck source=chaos/lib/netns.sh
. "$ROOT/chaos/lib/netns.sh"

cx_netns_probe || {
    echo "SKIP: $CX_NET_WHY"
    exit 77
}

if [ "$CASE" = cleanup ]; then
    [ -x "$BUILD/bin/lockd" ] || fail "no build dir given (need $BUILD/bin)"
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/cxnet-cleanup.XXXXXX")
    RUN_PID=""
    stop_run() {
        [ -n "$RUN_PID" ] && kill -TERM "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
        RUN_PID=""
        rm -rf "$OUT"
    }
    trap stop_run EXIT
    bash "$ROOT/chaos/run" --net netns --duration 20 --faults none --build "$BUILD" --out "$OUT" \
        >"$OUT/run.log" 2>&1 &
    RUN_PID=$!
    id=""
    for ((i = 0; i < 300; i++)); do # 30 s at most
        id=$(sed -n 's/.*namespaces cx\([0-9a-f]*\)-\* on bridge.*/\1/p' "$OUT/run.log")
        [ -n "$id" ] && break
        kill -0 "$RUN_PID" 2>/dev/null || fail "chaos/run ended before its network was up: $(tail -n 5 "$OUT/run.log")"
        sleep 0.1
    done
    [ -n "$id" ] || fail "no namespaces seen within 30 s"
    n=$(ip netns list | grep -c "^cx$id-" || true)
    [ "$n" -ge 13 ] || fail "want 13 namespaces cx$id-*, see $n"
    # Once PostgreSQL runs inside its namespace, the processes of every namespace.
    for ((i = 0; i < 300; i++)); do
        grep -q 'postgresql up' "$OUT/run.log" && break
        sleep 0.1
    done
    pids=$(for ns in $(ip netns list | awk -v p="^cx$id-" '$1 ~ p { print $1 }'); do ip netns pids "$ns"; done)
    [ -n "$pids" ] || fail "no process inside the namespaces"
    kill -TERM "$RUN_PID"
    rc=0
    wait "$RUN_PID" || rc=$?
    RUN_PID=""
    left=$(
        ip netns list | grep "^cx$id-" || true
        ip -o link show | grep -o "cx${id}[bhn][0-9]*" || true
    )
    [ -z "$left" ] || fail "left behind after SIGTERM (exit $rc): $left"
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive+=" $p"; done
    [ -z "$alive" ] || fail "processes of its namespaces still running after SIGTERM:$alive"
    echo "PASS cleanup: $n namespaces of cx$id with $(echo "$pids" | wc -w) processes existed; none"
    echo "  (nor veth, bridge, process) after SIGTERM (exit $rc)"
    exit 0
fi

# ---- the fault cases: the namespaces, a peer in each ----
CX_WORK=$(mktemp -d "${TMPDIR:-/tmp}/cxnet.XXXXXX")
mkdir -p "$CX_WORK/logs"
NAMES=()
cleanup() {
    local rc=$?
    trap - EXIT
    cx_stop_all
    cx_netns_down
    [ $rc = 0 ] || tail -n 3 "$CX_WORK"/logs/*.log >&2 2>/dev/null || true
    rm -rf "$CX_WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
CX_REAL0=${EPOCHREALTIME/[.,]/}
cx_now() { echo $(((${EPOCHREALTIME/[.,]/} - CX_REAL0) / 1000)); }

case $CASE in
spawn_env_netns) NAMES=(redis1:11) ;;
partition_lockd_redis | partition_asymmetric) NAMES=(lockd1:21 lockd2:22 redis1:11 redis2:12 redis3:13 redis4:14) ;;
partition_reserved_pg) NAMES=(reserved1:31 reserved2:32 postgresql:10) ;;
partition_reserved_lockd) NAMES=(reserved1:31 lockd1:21 lockd2:22) ;;
netem_link) NAMES=(lockd1:21 redis1:11) ;;
*) fail "unknown case $CASE" ;;
esac
CX_NET_MODE=netns # read by the fault functions (cx_netns_skip)
cx_netns_new_id
cx_netns_up "${NAMES[@]}" || fail "cx_netns_up"
for e in "${NAMES[@]}"; do
    n=${e%:*}
    CX_NS["peer_$n"]=${CX_NS[$n]} CX_HOST["peer_$n"]=${CX_HOST[$n]}
    cx_spawn "peer_$n" "$PY" "$HERE/peer.py" serve "$(cx_host "$n")" "$PORT" "$CX_WORK/udp-$n.log"
done
for e in "${NAMES[@]}"; do cx_wait_up "peer_${e%:*}" "$PORT" 10 || fail "peer ${e%:*} not up"; done

# tcp FROM TO: a TCP connection from FROM's namespace to TO's peer gets its "ok" within 1 s.
tcp() {
    ip netns exec "${CX_NS[$1]}" timeout 1 bash -c \
        "exec 3<>/dev/tcp/$(cx_host "$2")/$PORT && read -r -t 1 line <&3 && [ \"\$line\" = ok ]" 2>/dev/null
}
expect_tcp() { # ok|cut FROM TO WHEN
    if tcp "$2" "$3"; then
        [ "$1" = ok ] || fail "$4: $2 -> $3 connected across the cut"
    else
        [ "$1" = cut ] || fail "$4: $2 -> $3 failed"
    fi
}
# expect_cut FROM WHEN TO...: every TO is cut from FROM; the probes run at once (each waits
# out its 1 s timeout).
expect_cut() {
    local from=$1 when=$2 to pids=() bad=""
    shift 2
    for to in "$@"; do
        tcp "$from" "$to" &
        pids+=($!)
    done
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if wait "${pids[$i]}"; then bad+=" ${*:i+1:1}"; fi
    done
    [ -z "$bad" ] || fail "$when: $from connected across the cut to$bad"
}
# udp FROM TO N TAG: datagrams of TAG that TO's peer received of N sent from FROM.
udp() {
    ip netns exec "${CX_NS[$1]}" "$PY" "$HERE/peer.py" send "$(cx_host "$2")" "$PORT" "$3" "$4"
    sleep 0.3
    grep -c "^$4 " "$CX_WORK/udp-$2.log" 2>/dev/null || true
}

# run_fault KIND PICK HOLD_MS: the fault in the background; returns once its rule is in place
# (its cx_fault_begin ran). FAULT_PID: wait for it to have cleared.
run_fault() {
    local marker="$CX_WORK/begun.$1.$2"
    (
        cx_fault_begin() { touch "$marker"; }
        cx_catch_holder() { F_NOTE="(test: no holder)"; }
        F_PICK=$2
        "fault_$1" "$3"
        echo "$1 pick $2: $F_TARGET: $F_NOTE"
    ) &
    FAULT_PID=$!
    for ((i = 0; i < 100; i++)); do
        [ -e "$marker" ] && return 0
        kill -0 "$FAULT_PID" 2>/dev/null || fail "fault_$1 returned without putting its rule in place"
        sleep 0.02
    done
    fail "fault_$1: no cx_fault_begin within 2 s"
}
cleared() {
    wait "$FAULT_PID" || fail "the fault function failed"
    FAULT_PID=""
}

case $CASE in
spawn_env_netns)
    # proc.sh's interface 3: CX_ENV and the namespace apply to the start, to a restart, and to
    # a restart with a rewritten CX_CMD (what amnesia.sh does). The process reports its
    # variable and ip netns identify names its namespace.
    CX_ENV["probe"]="CX_T=first CX_U=2"
    CX_NS["probe"]=${CX_NS[redis1]}
    where() { # the line the probe wrote last, then its namespace by PID
        local pid=${CX_PID["probe"]} i
        for ((i = 0; i < 100; i++)); do
            [ -s "$CX_WORK/logs/probe.log" ] && [ "$(wc -l <"$CX_WORK/logs/probe.log")" -ge "$1" ] && break
            sleep 0.02
        done
        echo "$(tail -n 1 "$CX_WORK/logs/probe.log") $(ip netns identify "$pid")"
    }
    cx_spawn probe sh -c 'echo "start $CX_T $CX_U"; exec sleep 30'
    got=$(where 1)
    [ "$got" = "start first 2 ${CX_NS[redis1]}" ] || fail "spawn: got '$got'"
    cx_kill9 probe
    CX_ENV["probe"]="CX_T=second CX_U=3"
    cx_respawn probe
    got=$(where 2)
    [ "$got" = "start second 3 ${CX_NS[redis1]}" ] || fail "respawn: got '$got'"
    cx_kill9 probe
    CX_CMD["probe"]=$(printf '%q ' sh -c 'echo "rewritten $CX_T"; exec sleep 30')
    cx_respawn probe
    got=$(where 3)
    [ "$got" = "rewritten second ${CX_NS[redis1]}" ] || fail "rewritten CX_CMD: got '$got'"
    echo "spawn, respawn and a rewritten CX_CMD ran in ${CX_NS[redis1]} with CX_ENV"
    ;;
partition_lockd_redis)
    for r in redis1 redis2 redis3 redis4; do expect_tcp ok lockd1 "$r" before; done
    run_fault partition_lockd_redis 0 2500 # pick 0: lockd1, masters redis1..3
    expect_cut lockd1 during redis1 redis2 redis3
    expect_tcp ok lockd1 redis4 "during (not in the majority cut)"
    expect_tcp ok lockd2 redis1 "during (the other lockd)"
    cleared
    for r in redis1 redis2 redis3; do expect_tcp ok lockd1 "$r" after; done
    ;;
partition_reserved_pg)
    expect_tcp ok reserved1 postgresql before
    run_fault partition_reserved_pg 0 2000 # pick 0: reserved1
    expect_tcp cut reserved1 postgresql during
    expect_tcp ok reserved2 postgresql "during (another reserved)"
    cleared
    expect_tcp ok reserved1 postgresql after
    ;;
partition_reserved_lockd)
    run_fault partition_reserved_lockd 0 2000 # pick 0: reserved1 from both
    expect_cut reserved1 "during (both)" lockd1 lockd2
    cleared
    expect_tcp ok reserved1 lockd1 after
    expect_tcp ok reserved1 lockd2 after
    run_fault partition_reserved_lockd 3 1500 # pick 3: reserved1 from lockd1, the one it prefers
    expect_tcp cut reserved1 lockd1 "during (preferred only)"
    expect_tcp ok reserved1 lockd2 "during (preferred only: the other stays)"
    cleared
    expect_tcp ok reserved1 lockd1 after
    ;;
partition_asymmetric)
    # pick 0: lockd1's packets to redis1..3 dropped, theirs to lockd1 still arrive
    run_fault partition_asymmetric 0 2500
    a=$(udp lockd1 redis1 20 out-l2r) b=$(udp redis1 lockd1 20 out-r2l)
    [ "$a" = 0 ] || fail "output rule: $a of 20 lockd1 -> redis1 arrived"
    [ "$b" = 20 ] || fail "output rule: $b of 20 redis1 -> lockd1 arrived, want all"
    expect_tcp cut lockd1 redis1 "during (a TCP exchange needs both ways)"
    cleared
    [ "$(udp lockd1 redis1 20 after1)" = 20 ] || fail "after: lockd1 -> redis1 still dropped"
    # pick 6: lockd1 again (6 % 2), the input rule ((6 / 5) % 2), masters redis2..4: their
    # packets to lockd1 dropped, lockd1's to them still arrive
    run_fault partition_asymmetric 6 2500
    a=$(udp lockd1 redis2 20 in-l2r) b=$(udp redis2 lockd1 20 in-r2l)
    [ "$a" = 20 ] || fail "input rule: $a of 20 lockd1 -> redis2 arrived, want all"
    [ "$b" = 0 ] || fail "input rule: $b of 20 redis2 -> lockd1 arrived"
    cleared
    [ "$(udp redis2 lockd1 20 after2)" = 20 ] || fail "after: redis2 -> lockd1 still dropped"
    ;;
netem_link)
    # pick 175: lockd1 (175 % 10 = 5), delay 50 + 17 % 151 = 67 ms, loss 5 + 25 % 26 = 30 %
    t0=${EPOCHREALTIME/[.,]/}
    expect_tcp ok lockd1 redis1 before
    base=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    run_fault netem_link 175 3000
    if [ "$CX_NET_NETEM" = 1 ]; then
        best=999999
        for i in 1 2 3 4 5; do # the best of 5: a lost SYN costs 1 s, not the delay
            t0=${EPOCHREALTIME/[.,]/}
            tcp lockd1 redis1 || continue
            dt=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
            [ $dt -lt $best ] && best=$dt
        done
        [ $best -ge 67 ] && [ $best -lt 999999 ] || fail "netem: best connect+reply took $best ms, want >= 67 (before: $base ms)"
        what="latency: best connect+reply $best ms with netem (before $base ms)"
    else
        got=$(udp lockd1 redis1 200 lossy)
        [ "$got" -ge 90 ] && [ "$got" -le 180 ] || fail "loss 30%: $got of 200 arrived, want 90..180"
        what="no sch_netem in this kernel: loss fallback: $got of 200 datagrams arrived at 30% loss"
    fi
    cleared
    [ "$(udp lockd1 redis1 200 clean)" = 200 ] || fail "after: the link still loses datagrams"
    echo "$what"
    ;;
esac
echo "PASS $CASE"
