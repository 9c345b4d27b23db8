#!/usr/bin/env bash
# bench/run.sh: lockd vs node-redlock, end to end, on this machine, in one run.
# Starts 3 fresh redis-server masters and lockd on free loopback ports in a temp dir and
# stops everything it started by PID (trap), also on failure or Ctrl-C. Steps:
#  - lockd's memory, and lockbench (C) against lockd in both modes;
#  - for each client count of NODE_CLIENTS: uncontended, lockd driven by the Node LOCKP
#    driver (bench/node-redlock/lockp.js) next to node-redlock (bench.js), both through
#    the same Node load generator (loadgen.js); then contended (CLIENTS, HOLD ms) both;
#    each run prints the CPU time lockd and every Redis spent per cycle (from /proc), and
#    instructions per cycle when `perf stat -e instructions` works here (PERF=1);
#  - with BASE_BUILD=dir, every lockd run again against the lockd of that build (e.g. the
#    commit before, built in a `git worktree`), same masters, back to back;
#  - with FAIR=1, fairness across two lockds: FAIR_CLIENTS sessions on one lockd, then
#    half of them on each of two lockds, one resource, HOLD ms: shares and wait p99.
#   bench/run.sh                       # 64 clients, 10 s, 1 ms hold, Node at 64 and 256
#   CLIENTS=16 DURATION=3 NODE_CLIENTS="16 64" bench/run.sh
#   MEM_SESSIONS=5000 bench/run.sh     # sessions of the memory step (default 2000)
#   LOCKD_EXTRA='redlock: {max_inflight_rounds: 0}' bench/run.sh   # lockd config lines
#   BUILD=build-rel bench/run.sh       # Release build dir to use (built if missing)
#   BASE_BUILD=/tmp/lk-base/build-rel bench/run.sh   # before/after in one run
#   FAIR=1 FAIR_CLIENTS=64 bench/run.sh   # + the two-lockd fairness measurement
#   SKIP_NODE=1 / SKIP_C=1             # leave out the Node or the lockbench steps
#   SHARED_SESSIONS=8 bench/run.sh     # the uncontended lockd runs with the Node clients
#                                      # sharing 8 sessions (default 1; 0: leave them out)
# Uncontended, lockd runs three ways at each client count: a session per client (raw
# LOCKP), the clients sharing SHARED_SESSIONS sessions (raw LOCKP, auto-pipelined), and
# through the project's Node library (clients/node), all callers sharing one Client as an
# application does. node-redlock's clients share one auto-pipelined ioredis connection per
# master: the last two are the like-for-like comparison.
set -euo pipefail
# Arguments: none but --help (the knobs are environment variables, above).
# shellcheck source=../scripts/lib/benchargs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/benchargs.sh"
bench_args "$0" "$@"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10}"
HOLD="${HOLD:-1}"
SKIP_NODE="${SKIP_NODE:-0}"
SKIP_C="${SKIP_C:-0}"
NODE_CLIENTS="${NODE_CLIENTS:-64 256}"
BASE_BUILD="${BASE_BUILD:-}"
case "$BASE_BUILD" in /* | '') ;; *) BASE_BUILD="$ROOT/$BASE_BUILD" ;; esac
FAIR="${FAIR:-0}"
FAIR_CLIENTS="${FAIR_CLIENTS:-64}"
PERF="${PERF:-0}"
SHARED_SESSIONS="${SHARED_SESSIONS:-1}"
[ "$SHARED_SESSIONS" = 0 ] && SHARED_SESSIONS=""
MEM_SESSIONS="${MEM_SESSIONS:-2000}"
LOCKD_EXTRA="${LOCKD_EXTRA:-}" # YAML lines added to lockd's config

PIDS=()
TMP="$(mktemp -d "${TMPDIR:-/tmp}/lockbench.XXXXXX")"
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        port_open "$p" || { echo "$p"; return; }
    done
}
wait_port() {
    for _ in $(seq 1 200); do port_open "$1" && return 0; sleep 0.05; done
    echo "run.sh: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

if [ ! -x "$BUILD/bin/lockd" ] || [ ! -x "$BUILD/bin/lockbench" ]; then
    echo "== building lockd and lockbench (Release) in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target lockd lockbench >/dev/null
fi

echo "== starting 3 redis masters and 1 lockd in $TMP"
REDIS_LIST=""
REDIS_PORTS=()
REDIS_PIDS=()
for i in 1 2 3; do
    mkdir -p "$TMP/redis$i"
    for try in 1 2 3; do # a port taken meanwhile by someone else: another one
        p=$(free_port)
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$TMP/redis$i" --daemonize no >"$TMP/redis$i.log" 2>&1 &
        rpid=$!
        PIDS+=($rpid)
        wait_port "$p" && break
        tail -3 "$TMP/redis$i.log" >&2
        kill "$rpid" 2>/dev/null || true
        [ "$try" = 3 ] && exit 1
    done
    REDIS_PIDS+=($rpid)
    REDIS_PORTS+=("$p")
    REDIS_LIST="${REDIS_LIST:+$REDIS_LIST,}127.0.0.1:$p"
done
# start_lockd NAME BUILD_DIR: a lockd on a free port; sets LOCKD_PORT and LOCKD_PID. A
# port taken meanwhile by someone else's process: tried again on another one.
start_lockd() {
    local try
    for try in 1 2 3; do
        start_lockd_once "$@" && return 0
        echo "run.sh: lockd $1 did not listen on $LOCKD_PORT:" >&2
        tail -3 "$TMP/$1.log" >&2
        kill "$LOCKD_PID" 2>/dev/null || true
    done
    return 1
}
start_lockd_once() {
    LOCKD_PORT=$(free_port)
    cat >"$TMP/$1.yaml" <<EOF
listen: 127.0.0.1:$LOCKD_PORT
redis: [${REDIS_LIST//,/, }]
log: {level: warn}
$LOCKD_EXTRA
EOF
    "$2/bin/lockd" --config "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
    LOCKD_PID=$!
    PIDS+=($!)
    wait_port "$LOCKD_PORT"
}
start_lockd lockd "$BUILD"
AFTER_PORT=$LOCKD_PORT
AFTER_PID=$LOCKD_PID
if [ -n "$BASE_BUILD" ]; then
    [ -x "$BASE_BUILD/bin/lockd" ] || { echo "run.sh: no $BASE_BUILD/bin/lockd" >&2; exit 2; }
    start_lockd lockd-base "$BASE_BUILD"
    BASE_PORT=$LOCKD_PORT
    BASE_PID=$LOCKD_PID
fi

flush() { for p in "${REDIS_PORTS[@]}"; do redis-cli -p "$p" flushall >/dev/null; done; }
RESULTS=()
run() {
    echo
    echo "\$ $*"
    "$@" >"$TMP/run.out" 2>&1 || echo "(exit status $?)" >>"$TMP/run.out"
    cat "$TMP/run.out"
    RESULTS+=("$(grep '^RESULT' "$TMP/run.out" || echo "RESULT missing for: $*")")
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start, $(uname -sr), redis $(redis-server --version | awk '{print $3}' | sed 's/v=//')"
# lockd's memory: resident size idle, then the peak while MEM_SESSIONS sessions each
# acquire and release their own lock for 3 s (needs that many descriptors on both sides).
LOCKD_PID=$AFTER_PID
LOCKD_PORT=$AFTER_PORT
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MEM_SESSIONS=$((MEM_SESSIONS > $(ulimit -n) - 100 ? $(ulimit -n) - 100 : MEM_SESSIONS))
idle_kib=$(rss_kib "$LOCKD_PID" VmRSS)
run "$BUILD/bin/lockbench" --server "127.0.0.1:$LOCKD_PORT" --clients "$MEM_SESSIONS" \
    --duration 3 --mode uncontended
peak_kib=$(rss_kib "$LOCKD_PID" VmHWM)
MEMORY="lockd RSS idle $((idle_kib / 1024)) MiB; peak with $MEM_SESSIONS sessions $((peak_kib / 1024)) MiB ($(((peak_kib - idle_kib) * 1024 / MEM_SESSIONS)) bytes per session)"
echo "$MEMORY"

# CPU per cycle: utime+stime of lockd (the one under test, if any) and of every Redis,
# from /proc before and after a run, over the cycles the run reports. PERF=1 also counts
# instructions with perf stat attached to the same processes (hardware counters are not
# available in every VM: "n/a" then).
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_us() { awk -v t="$TICK_US" '{print ($14 + $15) * t}' "/proc/$1/stat"; }
measure() { # measure LOCKD_PID|- command...: run it, then CPU (and instructions) per cycle
    local lpid=$1 pids=() names=() before=() perfs=() k
    shift
    if [ "$lpid" != - ]; then pids+=("$lpid"); names+=(lockd); fi
    for k in "${!REDIS_PIDS[@]}"; do pids+=("${REDIS_PIDS[$k]}"); names+=("redis$((k + 1))"); done
    for k in "${!pids[@]}"; do before+=("$(cpu_us "${pids[$k]}")"); done
    if [ "$PERF" = 1 ]; then
        for k in "${!pids[@]}"; do
            perf stat -x, -e instructions -p "${pids[$k]}" -o "$TMP/perf.$k" 2>/dev/null &
            perfs+=($!)
        done
    fi
    run "$@"
    for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${perfs[@]}"; do wait "$p" 2>/dev/null || true; done
    local cycles line="" d ins
    cycles=$(grep -o ' cycles=[0-9]*' "$TMP/run.out" | tail -1 | cut -d= -f2 || true)
    if [ -z "$cycles" ] || [ "$cycles" -eq 0 ]; then return 0; fi
    for k in "${!pids[@]}"; do
        d=$(($(cpu_us "${pids[$k]}") - before[k]))
        line+=" ${names[$k]}_cpu_us_per_cycle=$(awk -v d="$d" -v c="$cycles" 'BEGIN {printf "%.2f", d / c}')"
        if [ "$PERF" = 1 ]; then
            ins=$(awk -F, '/instructions/ {print $1}' "$TMP/perf.$k" 2>/dev/null || true)
            case "$ins" in
            '' | *[!0-9]*) line+=" ${names[$k]}_instr_per_cycle=n/a" ;;
            *) line+=" ${names[$k]}_instr_per_cycle=$((ins / cycles))" ;;
            esac
        fi
    done
    echo "CPU$line"
    RESULTS[-1]="${RESULTS[-1]} |$line"
}

if [ "$SKIP_C" != 1 ]; then
    # lockbench against the lockd under test, then (BASE_BUILD) the base one, same masters
    for which in after before; do
        port=$AFTER_PORT
        if [ "$which" = before ]; then
            [ -n "$BASE_BUILD" ] || continue
            port=$BASE_PORT
        fi
        flush
        run "$BUILD/bin/lockbench" --server "127.0.0.1:$port" --clients "$CLIENTS" \
            --duration "$DURATION" --mode uncontended
        RESULTS[-1]="${RESULTS[-1]} (lockbench, lockd $which)"
        flush
        run "$BUILD/bin/lockbench" --server "127.0.0.1:$port" --clients "$CLIENTS" \
            --duration "$DURATION" --mode contended --hold "$HOLD"
        RESULTS[-1]="${RESULTS[-1]} (lockbench, lockd $which)"
    done
fi

NODE_DIR="$ROOT/bench/node-redlock"
# lockd_node NAME PORT PID args...: the Node LOCKP driver against one lockd.
lockd_node() {
    local name=$1 port=$2 pid=$3
    shift 3
    flush
    measure "$pid" node "$NODE_DIR/lockp.js" --server "127.0.0.1:$port" --label "$name" \
        --duration "$DURATION" "$@"
}
# each_lockd SUFFIX args...: lockd_node against the lockd under test (label after$SUFFIX),
# then the base one if any (before$SUFFIX).
each_lockd() {
    local sfx=$1
    shift
    lockd_node "after$sfx" "$AFTER_PORT" "$AFTER_PID" "$@"
    if [ -n "$BASE_BUILD" ]; then lockd_node "before$sfx" "$BASE_PORT" "$BASE_PID" "$@"; fi
}
if [ "$SKIP_NODE" != 1 ]; then
    if [ ! -d "$NODE_DIR/node_modules/redlock" ]; then
        echo "== npm install (redlock 5, ioredis) in $NODE_DIR"
        (cd "$NODE_DIR" && npm install --no-package-lock --no-audit --no-fund >/dev/null)
    fi
    for c in $NODE_CLIENTS; do
        each_lockd "" --clients "$c" --mode uncontended
        if [ -n "$SHARED_SESSIONS" ]; then
            each_lockd "-s$SHARED_SESSIONS" --clients "$c" --mode uncontended \
                --sessions "$SHARED_SESSIONS"
        fi
        each_lockd "-lib" --clients "$c" --mode uncontended --sessions 1 --client lib
        flush
        measure - node "$NODE_DIR/bench.js" --servers "$REDIS_LIST" --clients "$c" \
            --duration "$DURATION" --mode uncontended
    done
    each_lockd "" --clients "$CLIENTS" --mode contended --hold "$HOLD"
    flush
    measure - node "$NODE_DIR/bench.js" --servers "$REDIS_LIST" --clients "$CLIENTS" \
        --duration "$DURATION" --mode contended --hold "$HOLD"
fi

# Fairness across two lockds (issue 11 section 3): FAIR_CLIENTS sessions through one
# lockd, then FAIR_CLIENTS/2 through each of two lockds at once, one resource, HOLD ms.
fair_pair() { # fair_pair PORT_A PORT_B NAME: both drivers at once, shares from their RESULTs
    local half=$((FAIR_CLIENTS / 2)) res="bench:fair:$3" pa ra rb line
    flush
    echo
    echo "\$ two lockds ($3): $half + $half sessions, one resource, hold $HOLD ms"
    node "$NODE_DIR/lockp.js" --server "127.0.0.1:$1" --clients "$half" --mode contended \
        --hold "$HOLD" --duration "$DURATION" --resource "$res" --label "$3-A" \
        >"$TMP/fairA.out" 2>&1 &
    pa=$!
    node "$NODE_DIR/lockp.js" --server "127.0.0.1:$2" --clients "$half" --mode contended \
        --hold "$HOLD" --duration "$DURATION" --resource "$res" --label "$3-B" \
        >"$TMP/fairB.out" 2>&1 || true
    wait "$pa" || true
    cat "$TMP/fairA.out" "$TMP/fairB.out"
    ra=$(grep '^RESULT' "$TMP/fairA.out" || true)
    rb=$(grep '^RESULT' "$TMP/fairB.out" || true)
    # overlaps here are per driver only: the two drivers do not see each other's holds
    line=$(awk -v a="$ra" -v b="$rb" -v n="$3" 'BEGIN {
        na = split(a, x, " "); nb = split(b, y, " ");
        for (i = 1; i <= na; i++) { split(x[i], kv, "="); A[kv[1]] = kv[2] }
        for (i = 1; i <= nb; i++) { split(y[i], kv, "="); B[kv[1]] = kv[2] }
        t = A["cycles"] + B["cycles"]; if (t == 0) t = 1;
        printf "FAIR lockds=2 name=%s cycles_per_s=%.1f share_a=%.3f share_b=%.3f wait_p99_a_ms=%s wait_p99_b_ms=%s wait_max_a_ms=%s wait_max_b_ms=%s",
            n, A["cycles_per_s"] + B["cycles_per_s"], A["cycles"] / t, B["cycles"] / t,
            A["wait_p99_ms"], B["wait_p99_ms"], A["wait_max_ms"], B["wait_max_ms"] }')
    echo "$line"
    RESULTS+=("$line")
}
if [ "$FAIR" = 1 ]; then
    start_lockd lockd2 "$BUILD"
    SECOND_PORT=$LOCKD_PORT
    lockd_node fair-one "$AFTER_PORT" "$AFTER_PID" --clients "$FAIR_CLIENTS" --mode contended \
        --hold "$HOLD"
    fair_pair "$AFTER_PORT" "$SECOND_PORT" after
    if [ -n "$BASE_BUILD" ]; then
        start_lockd lockd2-base "$BASE_BUILD"
        lockd_node fair-one-before "$BASE_PORT" "$BASE_PID" --clients "$FAIR_CLIENTS" \
            --mode contended --hold "$HOLD"
        fair_pair "$BASE_PORT" "$LOCKD_PORT" before
    fi
fi

echo
echo "== summary"
printf '%s\n' "${RESULTS[@]}"
echo "$MEMORY"
# lockd (Node driver) against node-redlock, uncontended, per client count.
for c in $NODE_CLIENTS; do
    l=$(printf '%s\n' "${RESULTS[@]}" | grep "impl=lockd-node label=after mode=uncontended clients=$c " |
        grep -o 'cycles_per_s=[0-9.]*' | head -1 | cut -d= -f2 || true)
    n=$(printf '%s\n' "${RESULTS[@]}" | grep "impl=node-redlock mode=uncontended clients=$c " |
        grep -o 'cycles_per_s=[0-9.]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$l" ] && [ -n "$n" ]; then
        awk -v l="$l" -v n="$n" -v c="$c" 'BEGIN {printf "RATIO uncontended clients=%d lockd=%s node-redlock=%s lockd/node=%.2fx\n", c, l, n, l / n}'
    fi
    s=$(printf '%s\n' "${RESULTS[@]}" | grep "impl=lockd-node label=after-s$SHARED_SESSIONS mode=uncontended clients=$c " |
        grep -o 'cycles_per_s=[0-9.]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$SHARED_SESSIONS" ] && [ -n "$s" ] && [ -n "$n" ]; then
        awk -v l="$s" -v n="$n" -v c="$c" -v k="$SHARED_SESSIONS" 'BEGIN {printf "RATIO uncontended clients=%d lockd(%d shared sessions)=%s node-redlock=%s lockd/node=%.2fx\n", c, k, l, n, l / n}'
    fi
    s=$(printf '%s\n' "${RESULTS[@]}" | grep "impl=lockd-lib label=after-lib mode=uncontended clients=$c " |
        grep -o 'cycles_per_s=[0-9.]*' | head -1 | cut -d= -f2 || true)
    if [ -n "$s" ] && [ -n "$n" ]; then
        awk -v l="$s" -v n="$n" -v c="$c" 'BEGIN {printf "RATIO uncontended clients=%d lockd(Node library, one Client)=%s node-redlock=%s lockd/node=%.2fx\n", c, l, n, l / n}'
    fi
done
