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
declare -gA CX_PID=() CX_ENV=() CX_REDIS_PORT=()
CX_REAL0=${EPOCHREALTIME/[.,]/}
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

rcli() { # NAME ARGS...
    redis-cli -p "${CX_REDIS_PORT[$1]}" "${@:2}"
}
