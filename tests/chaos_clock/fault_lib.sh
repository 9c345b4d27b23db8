# shellcheck shell=bash
# fault_lib.sh: what the fault tests of tests/chaos_clock share. Sources chaos/lib's
# faults.sh and clock.sh as chaos/run does, with the few pieces of chaos/run they need
# (cx_now, CX_WORK, CX_BIN), and starts servers under the shim with the environment
# cx_clock_prepare leaves in CX_ENV (as proc.sh's cx_spawn does), remembering each PID;
# every PID is stopped on exit, also on failure or a signal, and each server gets
# PR_SET_PDEATHSIG (setpriv) so that not even a SIGKILLed test leaves one behind.
# Usage: . fault_lib.sh BUILD_DIR
set -euo pipefail

CT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CX_BIN=$(cd "${1:?build dir}/bin" && pwd) # clock.sh finds the shim beside it
export CX_BIN
CX_WORK=$(mktemp -d "${TMPDIR:-/tmp}/chaos_clock.XXXXXX")
mkdir -p "$CX_WORK/logs"
# shellcheck source=chaos/lib/proc.sh
. "$CT_ROOT/chaos/lib/proc.sh" # CX_PID, CX_ENV, cx_host
declare -gA CX_REDIS_PORT=() CX_LOCKD_PORT=()
# the run's clock as chaos/run has it: CLOCK_MONOTONIC ms at EPOCH = this moment
EPOCH=$("$CX_BIN/chaos_load" --now-ms 2>/dev/null) || EPOCH=0
CX_REAL0=${EPOCHREALTIME/[.,]/}
CX_OUT=$CX_WORK # the probe's history: $CX_OUT/locks-clock.jsonl
cx_now() {
    local now=${EPOCHREALTIME/[.,]/}
    echo $(((now - CX_REAL0) / 1000))
}
# shellcheck source=chaos/lib/faults.sh
. "$CT_ROOT/chaos/lib/faults.sh"
# shellcheck source=chaos/lib/clock.sh
. "$CT_ROOT/chaos/lib/clock.sh"

ct_cleanup() {
    local rc=$? name
    trap - EXIT
    for name in "${!CX_PID[@]}"; do
        if [ -n "${CX_PID[$name]}" ]; then kill -TERM "${CX_PID[$name]}" 2>/dev/null || true; fi
    done
    for name in "${!CX_PID[@]}"; do
        if [ -n "${CX_PID[$name]}" ]; then wait "${CX_PID[$name]}" 2>/dev/null || true; fi
    done
    if [ "$rc" != 0 ]; then
        for f in "$CX_WORK"/logs/*.log; do
            echo "---- tail of $f ----" >&2
            tail -n 20 "$f" >&2 || true
        done
    fi
    rm -rf "$CX_WORK"
    exit "$rc"
}
trap ct_cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

ct_port() { # a free loopback port
    local p
    while :; do
        p=$((20000 + SRANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

ct_wait_port() { # PORT NAME
    local i
    for ((i = 0; i < 200; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "${CX_PID[$2]}" 2>/dev/null || fail "$2 exited (see its log)"
        sleep 0.05
    done
    fail "$2 not up on $1"
}

# ct_spawn NAME CMD...: CMD under NAME's CX_ENV (setpriv and env exec in place: the PID is
# the server's), killed if this shell dies.
ct_spawn() {
    local name=$1
    local -a env_words=()
    shift
    read -r -a env_words <<<"${CX_ENV[$name]:-}"
    setpriv --pdeathsig KILL env "${env_words[@]}" "$@" </dev/null >>"$CX_WORK/logs/$name.log" 2>&1 &
    CX_PID[$name]=$!
}

# ct_redis NAME: a redis-server under the shim, as chaos/run starts its masters.
ct_redis() {
    local p
    p=$(ct_port)
    CX_REDIS_PORT[$1]=$p
    mkdir -p "$CX_WORK/$1"
    cx_clock_prepare "$1"
    ct_spawn "$1" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync always --dir "$CX_WORK/$1" --daemonize no
}

# ct_lockd NAME REDIS_NAME...: a lockd (without the shim unless prepared) over those
# masters, configured as chaos/run's (watchdog lease 3000 ms, session timeout 1500 ms).
ct_lockd() {
    local name=$1 p r via=""
    shift
    p=$(ct_port)
    CX_LOCKD_PORT[$name]=$p
    for r in "$@"; do via+="${via:+, }127.0.0.1:${CX_REDIS_PORT[$r]}"; done
    cat >"$CX_WORK/$name.yaml" <<YAML
listen: 127.0.0.1:$p
key_prefix: "chaos:"
redis: [$via]
redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}
watchdog: {lease_ms: 3000}
session: {timeout_ms: 1500, lock_delay_ms: 0}
log: {level: debug}
YAML
    ct_spawn "$name" "$CX_BIN/lockd" --config "$CX_WORK/$name.yaml"
}

# ct_masters_up NAME N: until lockd NAME counts N masters up (INFO), 5 s at most.
ct_masters_up() {
    local fd line _try
    exec {fd}<>"/dev/tcp/127.0.0.1/${CX_LOCKD_PORT[$1]}" || fail "$1: no connection"
    for _try in $(seq 100); do
        printf 'i INFO\n' >&"$fd"
        read -r -t 2 -u "$fd" line || break
        [[ "$line " == *" masters_up=$2 "* ]] && { exec {fd}>&-; return 0; }
        sleep 0.05
    done
    fail "$1: not $2 masters up: $line"
}

# probe_events RES: the probe's events of that resource, one "ev sess fence t_us deadline
# reason" line each.
probe_events() {
    jq -r --arg r "$1" 'select(.res == $r) | "\(.ev) \(.sess) \(.fence) \(.t_us) \(.deadline_us // 0) \(.reason // "-")"' \
        "$CX_OUT/locks-clock.jsonl"
}

# probe_check RES GRANTED_C: the probe's history of RES: H granted; C granted (1) with a
# greater fence while H's deadline ran and H told LOST after that, or C never granted (0),
# H never LOST and H's RELEASE recorded.
probe_check() {
    local -a h c lost rel
    read -r -a h <<<"$(probe_events "$1" | awk '$1 == "grant"' | sed -n 1p)"
    read -r -a c <<<"$(probe_events "$1" | awk '$1 == "grant"' | sed -n 2p)"
    read -r -a lost <<<"$(probe_events "$1" | awk '$1 == "lost"')"
    read -r -a rel <<<"$(probe_events "$1" | awk '$1 == "release"' | tail -n 1)"
    [ ${#h[@]} -gt 0 ] || fail "probe $1: H was never granted"
    if [ "$2" = 1 ]; then
        [ ${#c[@]} -gt 0 ] || fail "probe $1: C was not granted (a majority jumped)"
        [ "${c[2]}" -gt "${h[2]}" ] || fail "probe $1: C's fence ${c[2]} <= H's ${h[2]}"
        [ "${c[3]}" -lt "${h[4]}" ] || fail "probe $1: C granted after H's deadline: no overlap"
        if [ ${#lost[@]} -eq 0 ] || [ "${lost[1]}" != "${h[1]}" ]; then fail "probe $1: H never LOST"; fi
        [ "${lost[3]}" -gt "${c[3]}" ] || fail "probe $1: H's LOST came before C's grant"
        echo "probe $1: C granted fence ${c[2]} $(((h[4] - c[3]) / 1000)) ms before H's deadline; H LOST ${lost[5]} $(((lost[3] - c[3]) / 1000)) ms after C's grant"
    else
        [ ${#c[@]} -eq 0 ] || fail "probe $1: C granted fence ${c[2]} while H held it (a minority jumped)"
        [ ${#lost[@]} -eq 0 ] || fail "probe $1: H LOST ${lost[5]}"
        [ "${rel[1]:-}" = "${h[1]}" ] || fail "probe $1: H's RELEASE not OK"
        echo "probe $1: C refused, H kept the lock and released it"
    fi
}

# the probes' resources, in order
probe_resources() {
    jq -r .res "$CX_OUT/locks-clock.jsonl" | awk '!seen[$0]++'
}

rcli() { # NAME ARGS...
    redis-cli -p "${CX_REDIS_PORT[$1]}" "${@:2}"
}
