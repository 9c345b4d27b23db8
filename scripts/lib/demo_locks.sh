# scripts/lib/demo_locks.sh: the lockd-only walkthrough of issue 2, run by
# `bash scripts/demo.sh --locks` (sourced after scripts/lib/booking.sh; bk_cleanup stops
# everything). With 3 Redis masters and 2 lockd on free loopback ports it shows, with
# lockctl:
#   1. several workers contending for Performance:1: the lock is handed over first come,
#      first served, and every holder sees a larger fence (LOCK_FENCE) than the last;
#   2. fencing: a holder whose lockctl is paused (SIGSTOP) loses the lock to the next
#      waiter after session.timeout_ms; the write it still attempts with its old fence is
#      rejected by a fenced store (the same rule the booking database applies);
#   3. lockd's INFO and a few Prometheus metrics.
# KEEP=1 keeps the servers running until Ctrl-C.

demo_locks() {
local LOCKD="$BK_BIN/lockd" LOCKCTL="$BK_BIN/lockctl"
bk_init lockd-demo

say "3 Redis masters (appendfsync always: fences survive a crash)"
bk_start_redis 3
REDIS_LIST=$BK_REDIS_LIST
echo "redis masters: $REDIS_LIST"

say "2 lockd on the same masters (session.timeout_ms 1500, watchdog.lease_ms 3000)"
LOCKD_PORTS=()
METRICS_PORTS=()
for name in A B; do
    port=$(bk_free_port)
    mport=$(bk_free_port)
    cat >"$BK_TMP/lockd$name.yaml" <<EOF
listen: 127.0.0.1:$port
metrics_listen: 127.0.0.1:$mport
redis: [$REDIS_LIST]
watchdog: {lease_ms: 3000}
session: {timeout_ms: 1500, lock_delay_ms: 0}
log: {level: info}
EOF
    "$LOCKD" --config "$BK_TMP/lockd$name.yaml" >"$BK_TMP/lockd$name.log" 2>&1 &
    BK_PIDS+=($!)
    LOCKD_PORTS+=("$port")
    METRICS_PORTS+=("$mport")
done
for i in 0 1; do
    bk_wait_port "${LOCKD_PORTS[i]}"
    bk_wait_port "${METRICS_PORTS[i]}"
done
A="127.0.0.1:${LOCKD_PORTS[0]}"
B="127.0.0.1:${LOCKD_PORTS[1]}"
echo "lockd A on $A (metrics ${METRICS_PORTS[0]}), lockd B on $B (metrics ${METRICS_PORTS[1]})"
"$LOCKCTL" --server "$A" ping
"$LOCKCTL" --server "$B" ping

# The fenced store: a write is accepted only with a fence >= the last accepted one,
# like the booking database's fence check inside the booking transaction.
export STORE="$BK_TMP/store"
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
OUT="$BK_TMP/contention.out"
: >"$OUT"
WORKERS=()
for i in 1 2 3 4 5 6; do
    server=$A
    [[ $i -eq 6 ]] && server=$B
    "$LOCKCTL" --server "$server" --name "worker$i" acquire Performance:1 --wait 30000 -- \
        bash -c 'echo "$(date +%H:%M:%S.%3N) [worker'"$i"' via '"$server"'] holds $LOCK_RESOURCE, LOCK_FENCE=$LOCK_FENCE"; sleep 0.3; store_write worker'"$i"' "$LOCK_FENCE"' \
        >>"$OUT" 2>&1 &
    pid=$!
    BK_PIDS+=("$pid")
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
OUT2="$BK_TMP/fencing.out"
: >"$OUT2"
"$LOCKCTL" --server "$A" --name slow acquire Performance:1 --wait 5000 -- \
    bash -c 'echo "$(date +%H:%M:%S.%3N) [slow] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE, works for 4 s"; echo "$LOCK_FENCE" >"$STORE.slow"; sleep 4; store_write slow "$LOCK_FENCE"' \
    >>"$OUT2" 2>&1 &
SLOW=$!
BK_PIDS+=("$SLOW")
sleep 0.5
"$LOCKCTL" --server "$B" --name next acquire Performance:1 --wait 20000 -- \
    bash -c 'echo "$(date +%H:%M:%S.%3N) [next] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE"; store_write next "$LOCK_FENCE"' \
    >>"$OUT2" 2>&1 &
NEXT=$!
BK_PIDS+=("$NEXT")
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

if [[ ${KEEP:-0} -eq 1 ]]; then
    say "running: lockd A $A, lockd B $B, redis ${REDIS_LIST}; Ctrl-C stops everything"
    echo "try: $LOCKCTL --server $A acquire Performance:1 -- sh -c 'echo fence \$LOCK_FENCE'"
    while :; do
        sleep 1
    done
fi
}
