# shellcheck shell=bash
# shellcheck disable=SC2034 # F_TARGET, F_NOTE, F_BREAKS: set here, read by chaos/run
# clock.sh (sourced by chaos/run after faults.sh): the clock-jump faults of issue 15 §1.
# A process started with the environment that cx_clock_prepare puts in CX_ENV[NAME] runs
# under libcx_clock.so (chaos/cx_clockshim.c): its wall clock (CLOCK_REALTIME,
# gettimeofday, time) is the real one plus the milliseconds in its offset file; its
# monotonic clock is untouched. cx_clock_set rewrites that file IN PLACE (a truncated
# file makes the readers, which map it, SIGBUS) and the process sees the new offset on
# its next clock read.
#
# Faults: clock_jump_redis (one master's clock jumps forward past the lease: its keys
# expire early, a minority, Redlock stays safe), clock_jump_redis_majority (3 of 5 at
# once: Redlock's timing assumption broken on purpose, F_BREAKS=1) and clock_jump_lockd
# (a lockd's wall clock jumps forward, then back, then home: nothing may break).
#
# After a Redis jump the offset STAYS forward (offsets only grow, cumulative over the
# run): Redis stores absolute expiry times, so a jump back would make every key written
# during the jump outlive its lease by the jump (a Redlock key that outlives its holder:
# an unavailability nobody injected on purpose). Forward only, the fault is the early
# expiry and nothing else; a later SET PX on that master lasts what it asks, relative to
# its (shifted) clock, and a restart of that master (kill_redis_minority) keeps the same
# offset, so its AOF's absolute expiries stay meaningful. A lockd's offset goes back to 0
# after its fault: lockd must not care either way, and its waiters' arrival stamps are
# compared with the other lockd's (fairness only).
#
# Needs: CX_WORK, CX_BIN (or CX_CLOCK_LIB: the shim's path), CX_PID (proc.sh), cx_hold
# and cx_fault_begin (faults.sh); CX_ENV is the interface with proc.sh's cx_spawn.

CX_ALL_FAULTS+=" clock_jump_redis clock_jump_redis_majority clock_jump_lockd"

declare -p CX_ENV >/dev/null 2>&1 || declare -gA CX_ENV=()
declare -gA CX_CLOCK_FILE_OF=() # name -> its offset file (the file holds the offset)

CX_CLOCK_LEASE_MS=${CX_CLOCK_LEASE_MS:-3000} # chaos lockd's watchdog.lease_ms

# cx_clock_lib: the shim's path (CX_CLOCK_LIB, else <build>/lib/libcx_clock.so).
cx_clock_lib() {
    echo "${CX_CLOCK_LIB:-${CX_BIN%/bin}/lib/libcx_clock.so}"
}

# cx_clock_prepare NAME: an offset file for NAME (offset 0) and the environment that
# preloads the shim into NAME when it is (re)spawned. lockd's test build links ASan
# dynamically, which refuses to start unless its runtime comes first in the library list:
# verify_asan_link_order=0 lets the shim go first (it calls nothing ASan intercepts).
cx_clock_prepare() {
    local name=$1 file="$CX_WORK/clock-$1.ms" lib
    lib=$(cx_clock_lib)
    [ -f "$lib" ] || {
        echo "chaos/run: $lib missing: $name runs without the clock shim" >&2
        return 1
    }
    CX_CLOCK_FILE_OF[$name]=$file
    printf '%-20s\n' 0 >"$file" # created here, before any reader maps it
    CX_ENV[$name]="LD_PRELOAD=$lib CX_CLOCK_FILE=$file"
    CX_ENV[$name]+=" ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
}

# cx_clock_set NAME MS: NAME's wall clock is the real one + MS from its next read on.
# The file is rewritten in place (1<>: no truncation), one fixed-width write.
cx_clock_set() {
    local file=${CX_CLOCK_FILE_OF[$1]:-}
    [ -n "$file" ] || return 1
    [[ $2 =~ ^-?[0-9]+$ ]] || return 1
    printf '%-20s\n' "$2" 1<>"$file"
}

# cx_clock_get NAME: NAME's offset now, ms (from its file: also right after a fault that
# ran in a subshell).
cx_clock_get() {
    local ms=0
    read -r ms <"${CX_CLOCK_FILE_OF[$1]}" 2>/dev/null || true
    [[ $ms =~ ^-?[0-9]+$ ]] || ms=0
    echo "$ms"
}

# cx_clock_loaded NAME: NAME's live process has the shim mapped.
cx_clock_loaded() {
    local pid=${CX_PID[$1]:-}
    [ -n "$pid" ] && grep -q libcx_clock "/proc/$pid/maps" 2>/dev/null
}

# cx_clock_jump_ms: the forward jump of a Redis fault, from the pick: 5..10 s, past the
# 3 s watchdog lease (plus its 1% drift allowance) whatever the pick.
cx_clock_jump_ms() {
    echo $((CX_CLOCK_LEASE_MS + 2000 + F_PICK % 5001))
}

# cx_clock_jump_redis HOLD_MS K: K masters from the pick (cx_redis_pick) jump forward by
# the same amount at once, and stay there (see the header).
cx_clock_jump_redis() {
    local hold=$1 jump r missing=""
    local -a rs
    read -r -a rs <<<"$(cx_redis_pick "$2")"
    F_TARGET=$(IFS=,; echo "${rs[*]}")
    jump=$(cx_clock_jump_ms)
    for r in "${rs[@]}"; do
        cx_clock_loaded "$r" || missing+=" $r"
    done
    if [ -n "$missing" ]; then
        F_NOTE="no clock shim in$missing: nothing injected"
        cx_fault_begin
        cx_hold "$hold"
        return 0
    fi
    for r in "${rs[@]}"; do cx_clock_set "$r" $(($(cx_clock_get "$r") + jump)); done
    cx_fault_begin
    F_NOTE="wall clock +$jump ms (lease $CX_CLOCK_LEASE_MS ms): keys expire early; now ahead"
    for r in "${rs[@]}"; do F_NOTE+=" $r=$(cx_clock_get "$r")"; done
    F_NOTE+=" ms; stays forward"
    cx_hold "$hold"
}

# One master (a minority): its keys expire early, the lock lives on the other four.
fault_clock_jump_redis() {
    cx_clock_jump_redis "$1" 1
}

# A majority (3 of 5) jumps at once: every lock's keys vanish on a quorum, another client
# can be granted while the holder still believes in its validity. Redlock's timing
# assumption is broken BY DESIGN (F_BREAKS=1): overlaps are expected (and reported), the
# fence must keep the bookings safe.
fault_clock_jump_redis_majority() {
    F_BREAKS=1
    cx_clock_jump_redis "$1" 3
}

# A lockd's wall clock jumps forward by far more than any lease (1..10 min) for half the
# hold, then back by twice that (to as far behind) for the rest, then home (0). lockd's
# leases, renewals, session timeouts and waits run on the monotonic clock: nothing may
# break, no LOST, no early grant.
fault_clock_jump_lockd() {
    local l="lockd$((F_PICK % 2 + 1))" jump=$((60000 + (F_PICK % 541) * 1000))
    F_TARGET=$l
    if ! cx_clock_loaded "$l"; then
        F_NOTE="no clock shim in $l: nothing injected"
        cx_fault_begin
        cx_hold "$1"
        return 0
    fi
    cx_clock_set "$l" "$jump"
    cx_fault_begin
    F_NOTE="wall clock +$jump ms for $(($1 / 2)) ms, then -$jump ms, then 0"
    cx_hold $(($1 / 2))
    cx_clock_set "$l" "-$jump"
    cx_hold $(($1 - $1 / 2))
    cx_clock_set "$l" 0
}
