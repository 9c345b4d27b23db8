# shellcheck shell=bash
# faults.sh (sourced by chaos/run): one function per fault kind of issue 4 §2. Each
# fault_<kind> HOLD_MS injects, calls cx_fault_begin when the fault is really in place,
# holds it, clears it and leaves a note in F_NOTE; chaos/run writes the record with
# F_START/F_END. Targets come from the seeded schedule (F_PICK: a number the schedule drew).
# Needs the names and ports set up by chaos/run.

CX_ALL_FAULTS="kill_reserved pause_reserved kill_lockd pause_lockd kill_redis_minority pause_redis
redis_majority_down net_lockd_redis net_reserved_lockd pg_restart pay_slow pay_fail
pause_counter_holder"

cx_fault_begin() { F_START=$(cx_now); }
# F_BREAKS=1: the fault breaks Redlock's assumptions by design (chaos/run resets it to 0 before
# each fault and records it as "breaks_redlock"): lock overlaps in its window are expected.
F_BREAKS=0
# cx_hold MS: sleeps MS (nothing when MS <= 0: a fault whose set-up took longer than its
# hold computes a negative rest).
cx_hold() {
    [ "$1" -gt 0 ] || return 0
    sleep "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"
}

# Waits until reservedN is inside a booking transaction (its lock held), 3 s at most.
cx_catch_holder() {
    if cx_wait_in_lock "$1" 3000; then
        F_NOTE="in a booking transaction (lock held)"
    else
        F_NOTE="no open transaction seen within 3 s"
    fi
}

cx_restart_reserved() {
    cx_respawn "$1"
    cx_wait_up "$1" "${CX_RESERVED_PORT[$1]}" 30 || true
}

fault_kill_reserved() {
    local r="reserved$((F_PICK % 3 + 1))"
    F_TARGET=$r
    # Its guard counters die with it: keep them for the report.
    curl -fsS -m 2 "http://$(cx_host "$r"):${CX_RESERVED_METRICS[$r]}/metrics" 2>/dev/null |
        grep '^reserved_guard_' | sed "s/^/$r /" >>"$CX_OUT/guards_killed.txt" || true
    cx_catch_holder "$r"
    cx_kill9 "$r"
    cx_fault_begin
    F_NOTE="SIGKILL $F_NOTE"
    cx_hold "$1"
    cx_restart_reserved "$r"
}

fault_pause_reserved() {
    local r="reserved$((F_PICK % 3 + 1))"
    F_TARGET=$r
    cx_catch_holder "$r"
    cx_signal "$r" STOP
    cx_fault_begin
    F_NOTE="SIGSTOP ${1} ms (lockd session timeout $CX_SESSION_MS ms) $F_NOTE"
    cx_hold "$1"
    cx_signal "$r" CONT
}

fault_kill_lockd() {
    local l="lockd$((F_PICK % 2 + 1))" held
    F_TARGET=$l
    held=$(cx_lockd_held "$(cx_host "$l"):${CX_LOCKD_PORT[$l]}" 3000) # a moment its sessions hold locks
    cx_kill9 "$l"
    cx_fault_begin
    F_NOTE="SIGKILL with locks_held=$held"
    cx_hold "$1"
    cx_respawn "$l"
    cx_wait_up "$l" "${CX_LOCKD_PORT[$l]}" 20 || true
}

fault_pause_lockd() {
    local l="lockd$((F_PICK % 2 + 1))"
    F_TARGET=$l
    cx_signal "$l" STOP
    cx_fault_begin
    F_NOTE="SIGSTOP $1 ms"
    cx_hold "$1"
    cx_signal "$l" CONT
}

# Redis masters i, i+1, ... (k of them), from the pick.
cx_redis_pick() {
    local k=$1 i out=""
    for ((i = 0; i < k; i++)); do out+="redis$(((F_PICK + i) % 5 + 1)) "; done
    echo "$out"
}

cx_redis_down_up() {
    local hold=$1 r
    shift
    for r in "$@"; do cx_kill9 "$r"; done
    cx_fault_begin
    cx_hold "$hold"
    for r in "$@"; do cx_respawn "$r"; done
    for r in "$@"; do cx_wait_up "$r" "${CX_REDIS_PORT[$r]}" 20 || true; done
}

fault_kill_redis_minority() {
    local -a rs
    read -r -a rs <<<"$(cx_redis_pick 2)"
    F_TARGET=${rs[*]}
    F_TARGET=${F_TARGET// /,}
    F_NOTE="SIGKILL 2 of 5 masters, restarted on their AOF"
    cx_redis_down_up "$1" "${rs[@]}"
}

fault_redis_majority_down() {
    local -a rs
    read -r -a rs <<<"$(cx_redis_pick 3)"
    F_TARGET=${rs[*]}
    F_TARGET=${F_TARGET// /,}
    F_NOTE="SIGKILL 3 of 5 masters (no quorum: bookings must get 503), restarted on their AOF"
    cx_redis_down_up "$1" "${rs[@]}"
}

fault_pause_redis() {
    local r="redis$((F_PICK % 5 + 1))"
    F_TARGET=$r
    cx_signal "$r" STOP
    cx_fault_begin
    F_NOTE="SIGSTOP $1 ms"
    cx_hold "$1"
    cx_signal "$r" CONT
}

# Latency with jitter on every link of a proxy group, and every connection of two of them
# dropped half way through.
cx_net_fault() {
    local hold=$1 lat=$2 jit=$3 p
    shift 3
    local -a ports=("$@")
    for p in "${ports[@]}"; do cx_proxy_ctl "$p" "latency $lat $jit" || true; done
    cx_fault_begin
    cx_hold $((hold / 2))
    cx_proxy_ctl "${ports[$((F_PICK % ${#ports[@]}))]}" drop || true
    cx_proxy_ctl "${ports[$(((F_PICK + 1) % ${#ports[@]}))]}" drop || true
    cx_hold $((hold - hold / 2))
    for p in "${ports[@]}"; do cx_proxy_ctl "$p" reset || true; done
}

fault_net_lockd_redis() {
    F_TARGET="lockd<->redis"
    F_NOTE="latency 20+-10 ms on every master link, two links dropped"
    cx_net_fault "$1" 20 10 "${CX_REDIS_CTL[@]}"
}

fault_net_reserved_lockd() {
    F_TARGET="reserved<->lockd"
    F_NOTE="latency 60+-30 ms on both lockd links, both dropped"
    cx_net_fault "$1" 60 30 "${CX_LOCKD_CTL[@]}"
}

fault_pg_restart() {
    F_TARGET=postgresql
    F_NOTE="fast shutdown under load, then start"
    cx_fault_begin # the fast shutdown cuts sessions at once, before pg.sh returns
    "$CX_ROOT/scripts/pg.sh" stop "$CX_WORK/pg" fast
    cx_hold "$1"
    cx_pg_start >/dev/null
}

fault_pay_slow() {
    F_TARGET=fakepay
    F_NOTE="latencyMs=1500 (payment timeout 2000 ms)"
    cx_pay_config '{"latencyMs":1500}'
    cx_fault_begin
    cx_hold "$1"
    cx_pay_config "{\"latencyMs\":$CX_PAY_LATENCY}"
}

fault_pay_fail() {
    F_TARGET=fakepay
    F_NOTE="failRate=0.5 declineRate=0.2"
    cx_pay_config '{"failRate":0.5,"declineRate":0.2}'
    cx_fault_begin
    cx_hold "$1"
    cx_pay_config '{"failRate":0,"declineRate":0}'
}

# cx_marker_sleeping: counter clients of the naive counter process holding a lock with
# their write not yet sent, from its --counter-marker file ("sleeping=N held=M").
cx_marker_sleeping() {
    local line=""
    read -r line <"$CX_COUNTER_MARKER" 2>/dev/null || true
    [[ $line =~ sleeping=([0-9]+)\ held=([0-9]+) ]] || { echo "0 0"; return 0; }
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}

# cx_stopped NAME: until the kernel shows NAME stopped (state T), 1 s at most: kill(2)
# returns before the target has left the CPU.
cx_stopped() {
    local pid=${CX_PID[$1]:-} st="" i
    for ((i = 0; i < 200; i++)); do
        read -r _ _ st _ <"/proc/$pid/stat" 2>/dev/null || return 1
        [ "$st" = T ] && return 0
        sleep 0.005
    done
    return 1
}

# The process-pause case for the lock-safety workload: SIGSTOP the naive counter process
# (--counter-ignore-lost) at a moment when one of its clients holds Counter:<id> with the
# read done and the fenced write not yet sent, for longer than lockd's session timeout:
# lockd ends the session and the lock goes to a client of chaos_load with a higher fence
# that claims the counter; after SIGCONT the stale write goes out and the fence must
# reject it. The moment is found from the marker, then checked again once the process is
# really stopped (it cannot change any more); a miss resumes it and tries again.
fault_pause_counter_holder() {
    local try sleeping held deadline=$((SECONDS + 5))
    F_TARGET=counter
    F_NOTE="no holder with a pending write caught within 5 s"
    for ((try = 1; SECONDS < deadline; try++)); do
        read -r sleeping held <<<"$(cx_marker_sleeping)"
        if [ "$sleeping" -eq 0 ]; then
            sleep 0.005
            continue
        fi
        cx_signal counter STOP
        cx_stopped counter || true
        read -r sleeping held <<<"$(cx_marker_sleeping)"
        if [ "$sleeping" -gt 0 ]; then
            cx_fault_begin
            F_NOTE="SIGSTOP $1 ms (lockd session timeout $CX_SESSION_MS ms) with $sleeping"
            F_NOTE+=" holder(s) between read and fenced write, $held lock(s) held, try $try"
            cx_hold "$1"
            cx_signal counter CONT
            return 0
        fi
        cx_signal counter CONT
    done
}
