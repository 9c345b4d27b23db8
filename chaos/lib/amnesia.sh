# shellcheck shell=bash
# shellcheck disable=SC2034 # F_TARGET, F_NOTE, F_BREAKS: set here, read by chaos/run
# amnesia.sh (sourced by chaos/run after faults.sh): the fault kinds of a Redis master that
# forgets (issue 15 §1-2). The master is SIGKILLed and restarted EMPTY at once on its port:
# a fresh data directory and no AOF, so it has lost every lock and fence counter and lockd
# can tell (INFO: a new run_id, aof_enabled:0). lockd's guard (redlock.quarantine) keeps it
# out of every quorum for the longest lease and until its fences are raised to the other
# masters'; the fault waits for both lockds to count it again before it ends.
#   redis_amnesia           one master (a minority; F_PICK picks it, so over a run different
#                           masters forget). F_BREAKS=0: with the guard Redlock stays safe.
#   redis_amnesia_majority  3 of 5 at once (F_BREAKS=1: beyond what Redlock assumes). With the
#                           guard all three are quarantined: no quorum (503s) until the longest
#                           lease has passed, unavailability rather than overlap; fences held
#                           by those three alone are lost (the database's fence check stays).
# Afterwards each master is made durable again while it runs (CONFIG SET appendonly yes, the
# AOF rewritten from what it holds now, then appendfsync always) and its saved command line
# (CX_CMD) keeps the new directory with --appendonly yes, so a later kill_redis_minority or
# redis_majority_down restarts it on its AOF as those faults assume; forgetting stays this
# fault's doing. Needs proc.sh (CX_CMD, cx_kill9, cx_respawn, cx_wait_up, cx_host), faults.sh
# (cx_fault_begin, cx_hold, cx_redis_pick), net.sh (cx_tcp, cx_lockd_held) and chaos/run's
# CX_REDIS_PORT, CX_LOCKD_PORT, CX_WORK.

CX_ALL_FAULTS+=" redis_amnesia redis_amnesia_majority"
CX_AMNESIA_N=0 # amnesias so far in this run: each gets its own empty directory

# cx_amnesia_cmd NAME AOF DIR: NAME's saved command line with --appendonly AOF and --dir DIR
# (printf %q-quoted like CX_CMD); the other arguments stay as they were.
cx_amnesia_cmd() {
    local name=$1 aof=$2 dir=$3 next="" a
    local -a out=()
    eval "set -- ${CX_CMD[$name]}"
    for a in "$@"; do
        case $next in aof) a=$aof ;; dir) a=$dir ;; esac
        next=""
        case $a in --appendonly) next=aof ;; --dir) next=dir ;; esac
        out+=("$a")
    done
    printf '%q ' "${out[@]}"
}

# cx_redis_cli NAME ARGS...: one command to the master NAME (its own port, not the proxy).
cx_redis_cli() {
    redis-cli -h "$(cx_host "$1")" -p "${CX_REDIS_PORT[$1]}" "${@:2}"
}

# cx_lockd_info_field NAME KEY: KEY's value in lockd NAME's INFO ("?" without an answer).
cx_lockd_info_field() {
    local fd line=""
    exec {fd}<>"$(cx_tcp "$(cx_host "$1"):${CX_LOCKD_PORT[$1]}")" 2>/dev/null || {
        echo "?"
        return 0
    }
    printf 'a INFO\n' 1>&"$fd" 2>/dev/null || true
    read -r -t 1 -u "$fd" line || true
    exec {fd}>&-
    if [[ $line =~ \ $2=([^ ]*) ]]; then echo "${BASH_REMATCH[1]}"; else echo "?"; fi
}

# cx_amnesia_forget NAME...: SIGKILL, and at once the same servers on the same ports from
# new, empty directories without AOF (all killed before any restarts: a majority forgets at
# the same moment). CX_CMD[NAME] keeps that command line until cx_amnesia_durable.
cx_amnesia_forget() {
    local r dir
    CX_AMNESIA_N=$((CX_AMNESIA_N + 1))
    for r in "$@"; do
        dir="$CX_WORK/$r.amnesia$CX_AMNESIA_N"
        mkdir -p "$dir"
        # shellcheck disable=SC2004 # CX_CMD is proc.sh's associative array
        CX_CMD[$r]=$(cx_amnesia_cmd "$r" no "$dir")
    done
    for r in "$@"; do cx_kill9 "$r"; done
    for r in "$@"; do cx_respawn "$r"; done
}

# cx_amnesia_durable NAME: AOF on again while it runs; returns once the rewrite is done and
# appendfsync is always (5 s at most), with CX_CMD[NAME] restarting it on that AOF.
cx_amnesia_durable() {
    local dir i info
    cx_redis_cli "$1" CONFIG SET appendonly yes >/dev/null 2>&1 || return 1
    for ((i = 0; i < 250; i++)); do
        info=$(cx_redis_cli "$1" INFO persistence 2>/dev/null | tr -d '\r')
        [[ $info == *aof_enabled:1* && $info == *aof_rewrite_in_progress:0* &&
            $info == *aof_rewrite_scheduled:0* ]] && break
        sleep 0.02
    done
    cx_redis_cli "$1" CONFIG SET appendfsync always >/dev/null 2>&1 || return 1
    dir="$CX_WORK/$1.amnesia$CX_AMNESIA_N"
    CX_CMD[$1]=$(cx_amnesia_cmd "$1" yes "$dir")
    [[ $info == *aof_enabled:1* ]]
}

# cx_amnesia_wait_counted MS NAME...: until every lockd counts every master again
# (masters_quarantined=0 and all masters up), MS at most; prints how long it took (ms).
cx_amnesia_wait_counted() {
    local t0 l ok
    t0=$(cx_now)
    while :; do
        ok=1
        for l in "${!CX_LOCKD_PORT[@]}"; do
            [ "$(cx_lockd_info_field "$l" masters_quarantined)" = 0 ] &&
                [ "$(cx_lockd_info_field "$l" masters_up)" = 5 ] || ok=0
        done
        [ $ok = 1 ] && break
        [ $(($(cx_now) - t0)) -ge "$1" ] && break
        sleep 0.05
    done
    echo $(($(cx_now) - t0))
}

# cx_amnesia HOLD_MS K: K masters from the pick forget at once, at a moment lockd1's sessions
# hold locks.
cx_amnesia() {
    local hold=$1 k=$2 r held q waited t0
    local -a rs
    read -r -a rs <<<"$(cx_redis_pick "$k")"
    F_TARGET=${rs[*]}
    F_TARGET=${F_TARGET// /,}
    held=$(cx_lockd_held "$(cx_host lockd1):${CX_LOCKD_PORT[lockd1]}" 2000)
    cx_amnesia_forget "${rs[@]}"
    cx_fault_begin
    for r in "${rs[@]}"; do cx_wait_up "$r" "${CX_REDIS_PORT[$r]}" 20 || true; done
    # lockd reconnects (backoff 25-50 ms, then its probe): 2 s at most to see the quarantine
    t0=$(cx_now)
    until q=$(cx_lockd_info_field lockd1 masters_quarantined) && [ "$q" = "$k" ]; do
        [ $(($(cx_now) - t0)) -ge 2000 ] && break
        sleep 0.02
    done
    cx_hold "$hold"
    waited=$(cx_amnesia_wait_counted 15000)
    for r in "${rs[@]}"; do cx_amnesia_durable "$r" || F_NOTE+="$r not durable again! "; done
    F_NOTE+="SIGKILL, restarted empty without AOF with locks_held=$held on lockd1;"
    F_NOTE+=" masters_quarantined=$q on lockd1 after the restart; every master counted again"
    F_NOTE+=" $waited ms after the hold; AOF on again"
}

fault_redis_amnesia() {
    cx_amnesia "$1" 1
}

fault_redis_amnesia_majority() {
    F_BREAKS=1
    cx_amnesia "$1" 3
}
