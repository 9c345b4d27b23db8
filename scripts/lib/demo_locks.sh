# scripts/lib/demo_locks.sh: the lockd-only walkthrough, run by `bash scripts/demo.sh --locks`
# (sourced after scripts/lib/booking.sh; bk_cleanup stops everything). With 3 Redis masters
# and 2 lockd on free loopback ports it shows, with lockctl:
#   1. several workers contending for Performance:1: the lock is handed over first come,
#      first served, and every holder sees a larger fence (LOCK_FENCE) than the last;
#   2. fencing: a holder whose lockctl is paused (SIGSTOP) loses the lock to the next
#      waiter after session.timeout_ms; the write it still attempts with its old fence is
#      rejected by a fenced store (the same rule the booking database applies);
#   3. lockd's INFO and a few Prometheus metrics.
# The workers run concurrently, so each phase's lines (the script's, the workers' and
# lockctl's own messages) go to one event file with a nanosecond timestamp and are printed
# sorted by time when the phase is over: the output reads in the order things happened.
# KEEP=1 keeps the servers running until Ctrl-C (demo_keep_wait).

demo_locks() {
local LOCKCTL="$BK_BIN/lockctl"
bk_init lockd-demo

say "3 Redis masters (appendfsync always: fences survive a crash)"
bk_start_redis 3
REDIS_LIST=$BK_REDIS_LIST
echo "redis masters: $REDIS_LIST"

# A short session timeout, so the paused holder of phase 2 loses its lock quickly.
say "2 lockd on the same masters (session.timeout_ms 1500)"
BK_LOCKD_SESSION_MS=1500 bk_start_lockd 2
A=${BK_LOCKD[0]}
B=${BK_LOCKD[1]}
echo "lockd A on $A (metrics http://${BK_LOCKD_METRICS[0]}/metrics)"
echo "lockd B on $B (metrics http://${BK_LOCKD_METRICS[1]}/metrics)"
echo "logs: $BK_LOGS"
"$LOCKCTL" --server "$A" ping
"$LOCKCTL" --server "$B" ping

# One event file per phase: `ev TEXT` appends "<ns since the epoch> TEXT" in one write
# (O_APPEND, shorter than PIPE_BUF: lines of concurrent writers never mix).
export EVENTS="$BK_TMP/events"
: >"$EVENTS"
ev() { printf '%s %s\n' "$(date +%s%N)" "$*" >>"$EVENTS"; }
export -f ev
# Prints the phase's events in time order as HH:MM:SS.mmm TEXT, and empties the file.
show_events() {
    local t line
    sort -s -n -k1,1 "$EVENTS" | while read -r t line; do
        printf '%(%H:%M:%S)T.%s %s\n' "${t:0:${#t}-9}" "${t:${#t}-9:3}" "$line"
    done
    : >"$EVENTS"
}

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
            ev "[$who] write with fence $fence: ACCEPTED"
        else
            ev "[$who] write with fence $fence: REJECTED (fence $fence is older than $last: a newer holder wrote)"
            exit 1
        fi
    ) 9>"$STORE.lock"
}
export -f store_write

# lockctl in the background under NAME; its own messages (stdout, stderr) become events
# "[NAME lockctl] ..." through a FIFO read by a stamper process. Sets LOCKCTL_PID and
# STAMPER_PID (both stopped by bk_cleanup if still running).
lockctl_bg() { # lockctl_bg NAME LOCKCTL-ARGS...
    local name=$1 fifo="$BK_TMP/$1.fifo"
    shift
    mkfifo "$fifo"
    # (a log line's own timestamp "2026-01-02T03:04:05.678Z " is dropped: the event has one)
    (while IFS= read -r line; do
        ev "[$name lockctl] ${line#[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*Z }"
    done <"$fifo") &
    STAMPER_PID=$!
    bk_track "$STAMPER_PID" -
    "$LOCKCTL" "$@" >"$fifo" 2>&1 &
    LOCKCTL_PID=$!
    bk_track "$LOCKCTL_PID" "lockctl of $name"
}

say "contention: 5 workers on lockd A (arriving 100 ms apart) and 1 on lockd B want Performance:1"
WORKERS=()
STAMPERS=()
for i in 1 2 3 4 5 6; do
    server=$A
    via=A
    [[ $i -eq 6 ]] && server=$B via=B
    ev "worker$i asks lockd $via for Performance:1"
    lockctl_bg "worker$i" --server "$server" --name "worker$i" acquire Performance:1 \
        --wait 30000 -- bash -c 'ev "[worker'"$i"' via lockd '"$via"'] holds $LOCK_RESOURCE, LOCK_FENCE=$LOCK_FENCE; works 300 ms"; sleep 0.3; store_write worker'"$i"' "$LOCK_FENCE"; ev "[worker'"$i"'] done: releases the lock"'
    WORKERS+=("$LOCKCTL_PID")
    STAMPERS+=("$STAMPER_PID")
    sleep 0.1
done
for pid in "${WORKERS[@]}" "${STAMPERS[@]}"; do
    wait "$pid"
done
bk_untrack "${WORKERS[@]}" "${STAMPERS[@]}"
FENCES=$(sort -s -n -k1,1 "$EVENTS" | grep -o 'LOCK_FENCE=[0-9]*' | cut -d= -f2 | tr '\n' ' ')
ORDER=$(sort -s -n -k1,1 "$EVENTS" | sed -n 's/.*\[worker\([0-9]\) via lockd.*holds.*/\1/p' | tr '\n' ' ')
show_events
prev=0
for f in $FENCES; do
    if ((f <= prev)); then
        echo "demo: fence $f after $prev: NOT increasing" >&2
        exit 1
    fi
    prev=$f
done
A_ORDER=$(tr -d '6' <<<"$ORDER" | tr -s ' ')
echo "=> one holder at a time (in turn: ${ORDER% }); fences strictly increasing: ${FENCES% }."
# Not a check: a lockctl slow to start on a loaded machine can send its ACQUIRE after the
# next worker's, and lockd serves the ACQUIREs in the order they arrive.
echo "   lockd A serves its waiters first come, first served: its workers, asking 100 ms"
echo "   apart, held it in turn ${A_ORDER% }. worker6, waiting on lockd B, is woken through"
echo "   Redis when the lock is free and takes its turn among them."

say "fencing: the holder's lockctl is paused (SIGSTOP) while its work goes on"
lockctl_bg slow --server "$A" --name slow acquire Performance:1 --wait 5000 -- \
    bash -c 'ev "[slow] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE, works for 4 s"; echo "$LOCK_FENCE" >"$STORE.slow"; sleep 4; store_write slow "$LOCK_FENCE"'
SLOW=$LOCKCTL_PID
SLOW_STAMPER=$STAMPER_PID
sleep 0.5
ev "[next] asks lockd B for Performance:1"
lockctl_bg next --server "$B" --name next acquire Performance:1 --wait 20000 -- \
    bash -c 'ev "[next] holds Performance:1 with LOCK_FENCE=$LOCK_FENCE"; store_write next "$LOCK_FENCE"'
NEXT=$LOCKCTL_PID
NEXT_STAMPER=$STAMPER_PID
sleep 0.3
ev "SIGSTOP to the lockctl of [slow] (pid $SLOW): it stops sending PINGs; its command keeps running"
kill -STOP "$SLOW"
wait "$NEXT" || true
sleep 3.5 # [slow]'s command wakes up and tries its write with the old fence
ev "SIGCONT to the lockctl of [slow]"
kill -CONT "$SLOW"
slow_rc=0
wait "$SLOW" || slow_rc=$?
wait "$SLOW_STAMPER" "$NEXT_STAMPER" || true
bk_untrack "$SLOW" "$NEXT" "$SLOW_STAMPER" "$NEXT_STAMPER"
show_events
echo "=> [slow] held fence $(cat "$STORE.slow"); [next] got a newer one once [slow]'s session"
echo "   timed out (1500 ms without a PING); the store rejected [slow]'s late write."
echo "   The lockctl of [slow] exited with $slow_rc (3 = lock lost)."

say "lockd A: INFO"
"$LOCKCTL" --server "$A" info

say "lockd A and B: a few metrics (GET /metrics)"
for i in 0 1; do
    echo "-- lockd $([[ $i -eq 0 ]] && echo A || echo B)"
    curl -s "http://${BK_LOCKD_METRICS[i]}/metrics" |
        grep -E '^lockd_(grants_total|handoffs_total|wakeups_total|lost_locks_total|sessions_expired_total|master_up|handoff_latency_seconds_count|handoff_latency_seconds_sum)' || true
done

if [[ ${KEEP:-0} -eq 1 ]]; then
    say "running until Ctrl-C: lockd A $A, lockd B $B, redis ${REDIS_LIST}"
    echo "try: $LOCKCTL --server $A acquire Performance:1 -- sh -c 'echo fence \$LOCK_FENCE'"
    echo "logs: $BK_LOGS"
    demo_keep_wait
fi
}
