#!/usr/bin/env bash
# demo.sh: the README's run command. Installs what is missing, builds the Release tree
# in build/, starts 3 Redis masters and 2 lockd on free loopback ports (all in one temp
# dir), then shows with build/bin/lockctl:
#   1. several workers contending for Performance:1: the lock is handed over first come,
#      first served, and every holder sees a larger fence (LOCK_FENCE) than the last;
#   2. fencing: a holder whose lockctl is paused (SIGSTOP) loses the lock to the next
#      waiter after session.timeout_ms; the write it still attempts with its old fence is
#      rejected by a fenced store (the same rule the booking database applies);
#   3. lockd's INFO and a few Prometheus metrics.
# Everything started here is stopped by PID on exit. `--keep` keeps the servers running
# until Ctrl-C (addresses are printed). BUILD_DIR=... builds elsewhere than build/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
KEEP=0
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--keep]" >&2
        exit 2
        ;;
    esac
done

PIDS=() # everything this script started, stopped by PID in cleanup
TMP=""
cleanup() {
    local pid
    # Reverse order: clients and lockd before the Redis masters they use.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -CONT "$pid" 2>/dev/null || true
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ts() { date +%H:%M:%S.%3N; }

# A port on 127.0.0.1 nobody listens on (and that this script has not handed out yet).
USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "demo: nothing listens on port $port" >&2
    return 1
}

say "dependencies"
bash scripts/deps.sh

say "build ($BUILD_DIR, Release)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)" --target lockd lockctl | tail -n 2
LOCKD="$BUILD_DIR/bin/lockd"
LOCKCTL="$BUILD_DIR/bin/lockctl"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lockd-demo.XXXXXX")

say "3 Redis masters (appendfsync always: fences survive a crash)"
REDIS_PORTS=()
for i in 1 2 3; do
    port=$(free_port)
    mkdir -p "$TMP/redis$i"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync always --dir "$TMP/redis$i" --daemonize no \
        >"$TMP/redis$i/redis.log" 2>&1 &
    PIDS+=($!)
    REDIS_PORTS+=("$port")
done
for port in "${REDIS_PORTS[@]}"; do
    wait_port "$port"
    echo "redis master on 127.0.0.1:$port"
done
REDIS_LIST=$(printf '127.0.0.1:%s, ' "${REDIS_PORTS[@]}")
REDIS_LIST=${REDIS_LIST%, }

say "2 lockd on the same masters (session.timeout_ms 1500, watchdog.lease_ms 3000)"
LOCKD_PORTS=()
METRICS_PORTS=()
for name in A B; do
    port=$(free_port)
    mport=$(free_port)
    cat >"$TMP/lockd$name.yaml" <<EOF
listen: 127.0.0.1:$port
metrics_listen: 127.0.0.1:$mport
redis: [$REDIS_LIST]
watchdog: {lease_ms: 3000}
session: {timeout_ms: 1500, lock_delay_ms: 0}
log: {level: info}
EOF
    "$LOCKD" --config "$TMP/lockd$name.yaml" >"$TMP/lockd$name.log" 2>&1 &
    PIDS+=($!)
    LOCKD_PORTS+=("$port")
    METRICS_PORTS+=("$mport")
done
for i in 0 1; do
    wait_port "${LOCKD_PORTS[i]}"
    wait_port "${METRICS_PORTS[i]}"
done
A="127.0.0.1:${LOCKD_PORTS[0]}"
B="127.0.0.1:${LOCKD_PORTS[1]}"
echo "lockd A on $A (metrics ${METRICS_PORTS[0]}), lockd B on $B (metrics ${METRICS_PORTS[1]})"
"$LOCKCTL" --server "$A" ping
"$LOCKCTL" --server "$B" ping

# The fenced store: a write is accepted only with a fence >= the last accepted one,
# like the booking database's fence check inside the booking transaction.
export STORE="$TMP/store"
echo 0 >"$STORE"
store_write() { # store_write WHO FENCE
    local who=$1 fence=$2 last
    (
        flock 9
        last=$(cat "$STORE")
        if ((fence >= last)); then
            echo "$fence" >"$STORE"
            echo "$(date +%H:%M:%S.%3N) [$who] write with fence $fence: ACCEPTED"
        else
            echo "$(date +%H:%M:%S.%3N) [$who] write with fence $fence: REJECTED (fence $fence is older than $last: a newer holder wrote)"
            exit 1
        fi
    ) 9>"$STORE.lock"
}
export -f store_write

say "contention: 5 workers on lockd A (arriving 100 ms apart) and 1 on lockd B want Performance:1"
OUT="$TMP/contention.out"
: >"$OUT"
WORKERS=()
for i in 1 2 3 4 5 6; do
    server=$A
    [[ $i -eq 6 ]] && server=$B
    "$LOCKCTL" --server "$server" --name "worker$i" acquire Performance:1 --wait 30000 -- \
        bash -c 'echo "$(date +%H:%M:%S.%3N) [worker'"$i"' via '"$server"'] holds $LOCK_RESOURCE, LOCK_FENCE=$LOCK_FENCE"; sleep 0.3; store_write worker'"$i"' "$LOCK_FENCE"' \
        >>"$OUT" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    WORKERS+=("$pid")
    echo "$(ts) worker$i asks lockd $([[ $i -eq 6 ]] && echo B || echo A) (lockctl pid $pid)"
    sleep 0.1
done
for pid in "${WORKERS[@]}"; do
    wait "$pid"
done
cat "$OUT"
FENCES=$(grep -o 'LOCK_FENCE=[0-9]*' "$OUT" | cut -d= -f2)
prev=0
for f in $FENCES; do
    if ((f <= prev)); then
        echo "demo: fence $f after $prev: NOT increasing" >&2
        exit 1
    fi
    prev=$f
done
echo "=> one holder at a time; fences strictly increasing: $(echo $FENCES | tr '\n' ' ')"

say "fencing: the holder's lockctl is paused (SIGSTOP) while its work goes on"
OUT2="$TMP/fencing.out"
: >"$OUT2"
"$LOCKCTL" --server "$A" --name slow acquire Performance:1 --wait 5000 -- \
    bash -c 'echo "$(date +%H:%M:%S.%3N) [slow] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE, works for 4 s"; echo "$LOCK_FENCE" >"$STORE.slow"; sleep 4; store_write slow "$LOCK_FENCE"' \
    >>"$OUT2" 2>&1 &
SLOW=$!
PIDS+=("$SLOW")
sleep 0.5
"$LOCKCTL" --server "$B" --name next acquire Performance:1 --wait 20000 -- \
    bash -c 'echo "$(date +%H:%M:%S.%3N) [next] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE"; store_write next "$LOCK_FENCE"' \
    >>"$OUT2" 2>&1 &
NEXT=$!
PIDS+=("$NEXT")
sleep 0.3
echo "$(ts) SIGSTOP lockctl of [slow] (pid $SLOW): it stops sending PINGs; its command keeps running"
kill -STOP "$SLOW"
wait "$NEXT" || true
sleep 3.5 # [slow]'s command wakes up and tries its write with the old fence
echo "$(ts) SIGCONT lockctl of [slow]"
kill -CONT "$SLOW"
slow_rc=0
wait "$SLOW" || slow_rc=$?
cat "$OUT2"
echo "=> [slow] held fence $(cat "$STORE.slow"), [next] got a newer one after session.timeout_ms;"
echo "   the store rejected the stale write. lockctl of [slow] exited with $slow_rc (3 = lock lost)."

say "lockd A: INFO"
"$LOCKCTL" --server "$A" info

say "lockd A and B: a few metrics (GET /metrics)"
for i in 0 1; do
    echo "-- lockd $([[ $i -eq 0 ]] && echo A || echo B)"
    curl -s "http://127.0.0.1:${METRICS_PORTS[i]}/metrics" |
        grep -E '^lockd_(grants_total|handoffs_total|wakeups_total|lost_locks_total|sessions_expired_total|master_up|handoff_latency_seconds_count|handoff_latency_seconds_sum)' || true
done

if [[ $KEEP -eq 1 ]]; then
    say "running: lockd A $A, lockd B $B, redis ${REDIS_LIST}; Ctrl-C stops everything"
    echo "try: $LOCKCTL --server $A acquire Performance:1 -- sh -c 'echo fence \$LOCK_FENCE'"
    while :; do
        sleep 1
    done
fi
say "done: stopping everything"
