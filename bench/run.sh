#!/usr/bin/env bash
# bench/run.sh: lockd (lockbench) vs node-redlock, end to end, on this machine.
# Starts 3 fresh redis-server masters and 1 lockd on free loopback ports in a temp dir,
# runs both benchmarks in both modes against the same masters, prints every RESULT line,
# and stops everything it started by PID (trap), also on failure or Ctrl-C.
#   bench/run.sh                       # 64 clients, 10 s, 1 ms hold
#   CLIENTS=16 DURATION=3 bench/run.sh
#   MEM_SESSIONS=5000 bench/run.sh     # sessions of the memory step (default 2000)
#   LOCKD_EXTRA='redlock: {max_inflight_rounds: 0}' bench/run.sh   # lockd config lines
#   BUILD=build-rel bench/run.sh       # Release build dir to use (built if missing)
set -euo pipefail
# Arguments: none but --help (the knobs are environment variables, above).
case "${1:-}" in
'') ;;
-h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "${0##*/}: unknown argument '$1' (the settings are environment variables: --help)" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10}"
HOLD="${HOLD:-1}"
SKIP_NODE="${SKIP_NODE:-0}"
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
for i in 1 2 3; do
    p=$(free_port)
    mkdir -p "$TMP/redis$i"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP/redis$i" --daemonize no >"$TMP/redis$i.log" 2>&1 &
    PIDS+=($!)
    wait_port "$p"
    REDIS_PORTS+=("$p")
    REDIS_LIST="${REDIS_LIST:+$REDIS_LIST,}127.0.0.1:$p"
done
LOCKD_PORT=$(free_port)
cat >"$TMP/lockd.yaml" <<EOF
listen: 127.0.0.1:$LOCKD_PORT
redis: [${REDIS_LIST//,/, }]
log: {level: warn}
$LOCKD_EXTRA
EOF
"$BUILD/bin/lockd" --config "$TMP/lockd.yaml" >"$TMP/lockd.log" 2>&1 &
PIDS+=($!)
wait_port "$LOCKD_PORT"

flush() { for p in "${REDIS_PORTS[@]}"; do redis-cli -p "$p" flushall >/dev/null; done; }
RESULTS=()
run() {
    echo
    echo "\$ $*"
    "$@" >"$TMP/run.out" 2>&1 || echo "(exit status $?)" >>"$TMP/run.out"
    cat "$TMP/run.out"
    RESULTS+=("$(grep '^RESULT' "$TMP/run.out" || echo "RESULT missing for: $*")")
}

echo "machine: $(nproc) cores, $(uname -sr), redis $(redis-server --version | awk '{print $3}' | sed 's/v=//')"
# lockd's memory: resident size idle, then the peak while MEM_SESSIONS sessions each
# acquire and release their own lock for 3 s (needs that many descriptors on both sides).
LOCKD_PID=${PIDS[-1]}
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MEM_SESSIONS=$((MEM_SESSIONS > $(ulimit -n) - 100 ? $(ulimit -n) - 100 : MEM_SESSIONS))
idle_kib=$(rss_kib "$LOCKD_PID" VmRSS)
run "$BUILD/bin/lockbench" --server "127.0.0.1:$LOCKD_PORT" --clients "$MEM_SESSIONS" \
    --duration 3 --mode uncontended
peak_kib=$(rss_kib "$LOCKD_PID" VmHWM)
MEMORY="lockd RSS idle $((idle_kib / 1024)) MiB; peak with $MEM_SESSIONS sessions $((peak_kib / 1024)) MiB ($(((peak_kib - idle_kib) * 1024 / MEM_SESSIONS)) bytes per session)"
echo "$MEMORY"

flush
run "$BUILD/bin/lockbench" --server "127.0.0.1:$LOCKD_PORT" --clients "$CLIENTS" \
    --duration "$DURATION" --mode uncontended
flush
run "$BUILD/bin/lockbench" --server "127.0.0.1:$LOCKD_PORT" --clients "$CLIENTS" \
    --duration "$DURATION" --mode contended --hold "$HOLD"

if [ "$SKIP_NODE" != 1 ]; then
    NODE_DIR="$ROOT/bench/node-redlock"
    if [ ! -d "$NODE_DIR/node_modules/redlock" ]; then
        echo "== npm install (redlock 5, ioredis) in $NODE_DIR"
        (cd "$NODE_DIR" && npm install --no-package-lock --no-audit --no-fund >/dev/null)
    fi
    flush
    run node "$NODE_DIR/bench.js" --servers "$REDIS_LIST" --clients "$CLIENTS" \
        --duration "$DURATION" --mode uncontended
    flush
    run node "$NODE_DIR/bench.js" --servers "$REDIS_LIST" --clients "$CLIENTS" \
        --duration "$DURATION" --mode contended --hold "$HOLD"
fi

echo
echo "== summary"
printf '%s\n' "${RESULTS[@]}"
echo "$MEMORY"
