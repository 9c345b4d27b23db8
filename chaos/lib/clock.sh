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
# (a lockd's wall clock jumps forward, then back, then home: nothing may break). Each one
# runs a probe (two real lock sessions timed to the jump, recorded in locks-clock.jsonl,
# below) so that the run shows what the jump does to a held, contended lock.
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
# Needs: CX_WORK, CX_BIN (or CX_CLOCK_LIB: the shim's path), CX_PID, cx_host (proc.sh),
# cx_hold, cx_fault_begin, cx_redis_pick (faults.sh), cx_now; for the probe CX_LOCKD_PORT,
# EPOCH and CX_REAL0 (chaos/run), CX_OUT (or CX_CLOCK_HISTORY: the probe's history file).
# CX_ENV is the interface with proc.sh's cx_spawn.

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

# ---- the probe: two real lock sessions timed to the fault, their events recorded ----
# Locks of the load live 5-50 ms, so a clock fault rarely lands on a held, contended lock.
# The probe makes that moment: session H takes a fresh resource through one lockd before
# the jump, session C asks for it (one attempt, no wait) through the other lockd after the
# jump, H keeps its session alive to the end of the hold and gives the lock back. Their
# events go to $CX_OUT/locks-clock.jsonl in the lock-history format (chaos_check reads every
# locks-*.jsonl): a majority jump shows the overlap the checker must find (C granted while
# H's deadline runs, H told LOST only at its next renewal), a minority jump or a lockd jump
# shows C refused and H never LOST. Times are CLOCK_MONOTONIC µs, from chaos/run's EPOCH
# and CX_REAL0 (the same mapping as cx_now). Any step that fails is said in the note and
# ends the probe; the fault itself goes on.

declare -gA CX_CLOCK_PROBE=() # the probe's state: fd_H, sess_H, tok_H, fence_H, ...

cx_clock_mono_us() {
    local now=${EPOCHREALTIME/[.,]/}
    echo $((${EPOCH:-0} * 1000 + now - ${CX_REAL0:-$now}))
}

# cx_clock_hist EV SESS FENCE T_US [DEADLINE_US|REASON]: one lock event of the probe.
cx_clock_hist() {
    local file=${CX_CLOCK_HISTORY:-${CX_OUT:-$CX_WORK}/locks-clock.jsonl} extra=""
    case $1 in
    grant | renew) extra=",\"deadline_us\":$5" ;;
    lost) extra=",\"reason\":\"$5\"" ;;
    esac
    printf '{"src":"clock-probe","res":"%s","ev":"%s","sess":"%s","fence":"%s","t_us":%s%s}\n' \
        "${CX_CLOCK_PROBE[res]}" "$1" "$2" "$3" "$4" "$extra" >>"$file"
}

# cx_clock_lockp WHO TAG REQUEST: sends it on WHO's session (H or C) and reads up to the
# reply to TAG (2 s), into CX_CLOCK_REPLY; a `* LOST` push on the way is recorded as H's
# lost event at once. False when no reply came.
cx_clock_lockp() {
    local who=$1 tag=$2 fd=${CX_CLOCK_PROBE[fd_$1]} line
    CX_CLOCK_REPLY=""
    # in a subshell: a write to a session lockd closed raises SIGPIPE, which must not end
    # chaos/run
    (printf '%s %s\n' "$tag" "$3" 1>&"$fd") 2>/dev/null || return 1
    while read -r -t 2 -u "$fd" line; do
        line=${line%$'\r'}
        if [[ $line == "$tag "* ]]; then
            CX_CLOCK_REPLY=${line#"$tag "}
            return 0
        fi
        cx_clock_push "$who" "$line"
    done
    return 1
}

# cx_clock_push WHO LINE: a push that came on WHO's session.
cx_clock_push() {
    local -a f
    read -r -a f <<<"$2"
    if [ "${f[0]:-}" = "*" ] && [ "${f[1]:-}" = LOST ] && [ "${f[3]:-}" = "${CX_CLOCK_PROBE[tok_$1]:-}" ] &&
        [ -z "${CX_CLOCK_PROBE[lost_$1]:-}" ]; then
        CX_CLOCK_PROBE[lost_$1]=${f[4]:-unknown}
        cx_clock_hist lost "${CX_CLOCK_PROBE[sess_$1]}" "${CX_CLOCK_PROBE[fence_$1]}" \
            "$(cx_clock_mono_us)" "${CX_CLOCK_PROBE[lost_$1]}"
    fi
}

# cx_clock_session WHO LOCKD: a LOCKP session on that lockd (its own address and port).
cx_clock_session() {
    local fd
    # braces: a bare `exec ... 2>/dev/null` would silence chaos/run's stderr for good
    { exec {fd}<>"/dev/tcp/$(cx_host "$2")/${CX_LOCKD_PORT[$2]}"; } 2>/dev/null || return 1
    CX_CLOCK_PROBE[fd_$1]=$fd
    cx_clock_lockp "$1" h "HELLO clock-probe-$1" && [[ $CX_CLOCK_REPLY == OK\ * ]] || return 1
    local sess timeout
    read -r _ sess timeout _ <<<"$CX_CLOCK_REPLY"
    CX_CLOCK_PROBE[sess_$1]=$sess
    CX_CLOCK_PROBE[timeout_$1]=${timeout:-1500}
}

# cx_clock_bound WHO SENT_US: the latest a lock of WHO's session can live after a request
# sent at SENT_US as far as lockd's session expiry goes: lockd ends a session silent for
# its timeout (counted from a receipt, later than the send) and releases its locks at
# once, so a client's deadline must end before: SENT + timeout, less 5% (<= 50 ms), as the
# client libraries count it.
cx_clock_bound() {
    local to=$((CX_CLOCK_PROBE[timeout_$1] * 1000)) m
    m=$((to / 20))
    [ "$m" -gt 50000 ] && m=50000
    echo $(($2 + to - m))
}

# cx_clock_take WHO WAIT_MS: one ACQUIRE of the probe's resource (watchdog lease); a grant
# is recorded with its deadline (validity from the moment the ACQUIRE was sent).
cx_clock_take() {
    local sent ok tok fence validity
    sent=$(cx_clock_mono_us)
    cx_clock_lockp "$1" a "ACQUIRE ${CX_CLOCK_PROBE[res]} 0 $2" || return 1
    read -r ok tok fence validity <<<"$CX_CLOCK_REPLY"
    [ "$ok" = OK ] || return 1
    CX_CLOCK_PROBE[tok_$1]=$tok CX_CLOCK_PROBE[fence_$1]=$fence
    CX_CLOCK_PROBE[validity_$1]=$validity
    local deadline=$((sent + validity * 1000)) bound
    bound=$(cx_clock_bound "$1" "$sent")
    [ "$bound" -lt "$deadline" ] && deadline=$bound
    CX_CLOCK_PROBE[deadline_$1]=$deadline
    cx_clock_hist grant "${CX_CLOCK_PROBE[sess_$1]}" "$fence" "$(cx_clock_mono_us)" "$deadline"
}

# cx_clock_alive WHO SENT_US: a PING sent at SENT_US was answered: the watchdog lease lives
# on (lockd renews it while the session lives) to SENT + validity / 2, within the session
# bound; a renew event when the deadline moved.
cx_clock_alive() {
    [ -n "${CX_CLOCK_PROBE[tok_$1]:-}" ] && [ -z "${CX_CLOCK_PROBE[lost_$1]:-}" ] || return 0
    local d=$(($2 + CX_CLOCK_PROBE[validity_$1] * 500)) bound
    bound=$(cx_clock_bound "$1" "$2")
    [ "$bound" -lt "$d" ] && d=$bound
    if [ "$d" -gt "${CX_CLOCK_PROBE[deadline_$1]}" ]; then
        CX_CLOCK_PROBE[deadline_$1]=$d
        cx_clock_hist renew "${CX_CLOCK_PROBE[sess_$1]}" "${CX_CLOCK_PROBE[fence_$1]}" \
            "$(cx_clock_mono_us)" "$d"
    fi
}

# cx_clock_probe_start HOLDER_LOCKD: H takes a fresh resource. False (and a note) if not.
cx_clock_probe_start() {
    CX_CLOCK_PROBE=([res]="clock:probe:$(cx_now)") # a fresh resource each time
    CX_CLOCK_PROBE_NOTE=""
    if ! declare -p CX_LOCKD_PORT >/dev/null 2>&1 || [ -z "${CX_LOCKD_PORT[$1]:-}" ]; then
        CX_CLOCK_PROBE_NOTE="probe: no $1"
        return 1
    fi
    # a fresh resource: a wait only rides over an attempt that failed on a slow master
    cx_clock_session H "$1" && cx_clock_take H 1000 && return 0
    CX_CLOCK_PROBE_NOTE="probe: H could not take ${CX_CLOCK_PROBE[res]} on $1 (${CX_CLOCK_REPLY:-no reply})"
    cx_clock_probe_close
    return 1
}

# cx_clock_probe_contend OTHER_LOCKD: C asks for the resource through the other lockd: up
# to 5 single attempts (no wait, 50 ms apart), so that one attempt failing on a slow master
# does not hide the overlap; while H's lock lives on a majority every attempt is refused.
cx_clock_probe_contend() {
    local try=0
    if cx_clock_session C "$1"; then
        while ! cx_clock_take C 0 && [ $((++try)) -lt 5 ]; do sleep 0.05; done
    fi
    if [ -n "${CX_CLOCK_PROBE[tok_C]:-}" ]; then
        CX_CLOCK_PROBE[granted_C]=$(cx_now)
        CX_CLOCK_PROBE_NOTE="probe ${CX_CLOCK_PROBE[res]}: C granted fence ${CX_CLOCK_PROBE[fence_C]} on $1 while H (fence ${CX_CLOCK_PROBE[fence_H]}) held it"
    else
        CX_CLOCK_PROBE_NOTE="probe ${CX_CLOCK_PROBE[res]}: C refused on $1 (${CX_CLOCK_REPLY:-no reply}, $try tries) while H held it"
    fi
}

# cx_clock_awaits_lost NOW: C was granted, H was not told LOST yet, and H's next renewal
# (a third of the lease) has not had 1.5 s since: H's LOST is still to come.
cx_clock_awaits_lost() {
    [ -n "${CX_CLOCK_PROBE[granted_C]:-}" ] && [ -z "${CX_CLOCK_PROBE[lost_H]:-}" ] &&
        [ "$1" -lt $((CX_CLOCK_PROBE[granted_C] + 1500)) ]
}

# cx_clock_probe_finish UNTIL_MS: H (and C if granted) stay (PING every 300 ms, H's pushes
# read) until cx_now reaches UNTIL_MS and, when C was granted, H's LOST came (1.5 s at
# most after C's grant), then both give the lock back (RELEASE recorded when OK) and close.
cx_clock_probe_finish() {
    local line who now sent
    while now=$(cx_now) && { [ "$now" -lt "$1" ] || cx_clock_awaits_lost "$now"; }; do
        sent=$(cx_clock_mono_us)
        cx_clock_lockp H p PING || break
        cx_clock_alive H "$sent"
        if [ -n "${CX_CLOCK_PROBE[tok_C]:-}" ]; then
            sent=$(cx_clock_mono_us)
            cx_clock_lockp C p PING && cx_clock_alive C "$sent"
        fi
        while read -r -t 0.3 -u "${CX_CLOCK_PROBE[fd_H]}" line; do cx_clock_push H "${line%$'\r'}"; done
    done
    for who in C H; do
        [ -n "${CX_CLOCK_PROBE[tok_$who]:-}" ] || continue
        if cx_clock_lockp "$who" r "RELEASE ${CX_CLOCK_PROBE[res]} ${CX_CLOCK_PROBE[tok_$who]}" &&
            [ "$CX_CLOCK_REPLY" = OK ]; then
            cx_clock_hist release "${CX_CLOCK_PROBE[sess_$who]}" "${CX_CLOCK_PROBE[fence_$who]}" \
                "$(cx_clock_mono_us)"
        fi
    done
    [ -n "${CX_CLOCK_PROBE[lost_H]:-}" ] && CX_CLOCK_PROBE_NOTE+="; H got LOST ${CX_CLOCK_PROBE[lost_H]}"
    [ -n "${CX_CLOCK_PROBE[lost_H]:-}" ] || CX_CLOCK_PROBE_NOTE+="; H never LOST"
    cx_clock_probe_close
}

cx_clock_probe_close() {
    local who fd
    for who in H C; do
        fd=${CX_CLOCK_PROBE[fd_$who]:-}
        [ -n "$fd" ] && exec {fd}>&-
    done
    return 0
}

# cx_clock_jump_redis HOLD_MS K: K masters from the pick (cx_redis_pick) jump forward by
# the same amount at once, and stay there (see the header); the probe's H holds through
# lockd1 from before the jump, C asks through lockd2 after it.
cx_clock_jump_redis() {
    local hold=$1 jump r missing="" probe=0 until
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
    cx_clock_probe_start lockd1 && probe=1
    for r in "${rs[@]}"; do cx_clock_set "$r" $(($(cx_clock_get "$r") + jump)); done
    cx_fault_begin
    until=$(($(cx_now) + hold))
    [ $probe = 1 ] && cx_clock_probe_contend lockd2
    F_NOTE="wall clock +$jump ms (lease $CX_CLOCK_LEASE_MS ms): keys expire early; now ahead"
    for r in "${rs[@]}"; do F_NOTE+=" $r=$(cx_clock_get "$r")"; done
    F_NOTE+=" ms; stays forward"
    [ $probe = 1 ] && cx_clock_probe_finish "$until"
    [ -n "$CX_CLOCK_PROBE_NOTE" ] && F_NOTE+="; $CX_CLOCK_PROBE_NOTE"
    [ "$(cx_now)" -lt "$until" ] && cx_hold $((until - $(cx_now)))
    return 0
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
    local l="lockd$((F_PICK % 2 + 1))" jump=$((60000 + (F_PICK % 541) * 1000)) probe=0 half end
    local other="lockd$(((F_PICK + 1) % 2 + 1))"
    F_TARGET=$l
    if ! cx_clock_loaded "$l"; then
        F_NOTE="no clock shim in $l: nothing injected"
        cx_fault_begin
        cx_hold "$1"
        return 0
    fi
    cx_clock_probe_start "$l" && probe=1 # H holds through the jumped lockd
    cx_clock_set "$l" "$jump"
    cx_fault_begin
    half=$(($(cx_now) + $1 / 2)) end=$(($(cx_now) + $1))
    F_NOTE="wall clock +$jump ms for $(($1 / 2)) ms, then -$jump ms, then 0"
    [ $probe = 1 ] && cx_clock_probe_contend "$other"
    [ "$(cx_now)" -lt "$half" ] && cx_hold $((half - $(cx_now)))
    cx_clock_set "$l" "-$jump"
    [ $probe = 1 ] && cx_clock_probe_finish "$end"
    [ "$(cx_now)" -lt "$end" ] && cx_hold $((end - $(cx_now)))
    cx_clock_set "$l" 0
    [ -n "$CX_CLOCK_PROBE_NOTE" ] && F_NOTE+="; $CX_CLOCK_PROBE_NOTE"
    return 0
}
