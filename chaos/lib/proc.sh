# shellcheck shell=bash
# proc.sh (sourced by chaos/run): the processes this run started, by PID, and loopback ports.
# Every process is started through cx_spawn and remembered under a name (redis1, lockd2, ...)
# so faults can signal exactly it and cx_stop_all can stop everything we started (and nothing
# else) on any exit, Ctrl-C included. Needs: CX_WORK (work dir).
# In netns mode (chaos/lib/netns.sh) a server runs inside its own network namespace
# (CX_NS[name]) and listens on that namespace's address (CX_HOST[name]); a restart goes back
# into the same namespace. CX_ENV[name] adds environment (clock.sh's LD_PRELOAD shim) to the
# start and every restart; CX_CMD keeps the bare command, so a fault may rewrite it (amnesia.sh
# restarts a Redis with another configuration) and the namespace and environment still apply.

declare -gA CX_PID=()   # name -> pid of the live process
declare -gA CX_CMD=()   # name -> the command line, NUL-free, for restarts (printf %q-quoted)
declare -gA CX_PORTS=() # ports handed out in this run
declare -gA CX_ENV=()  # name -> extra environment, space-separated VAR=value words (default none)
declare -gA CX_NS=()   # name -> its network namespace (netns mode; empty: this namespace)
declare -gA CX_HOST=() # name -> the address it listens on (default 127.0.0.1)

# cx_host NAME: the address NAME listens on.
cx_host() { echo "${CX_HOST[$1]:-127.0.0.1}"; }

# A TCP port on 127.0.0.1 nobody listens on, not handed out before in this run.
cx_free_port() {
    local p
    while :; do
        # Below the kernel's ephemeral range (32768+), where outgoing connections of the
        # proxies and clients would otherwise take a port between our probe and the bind.
        p=$((20000 + SRANDOM % 12000))
        [ -n "${CX_PORTS[$p]:-}" ] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            CX_PORTS[$p]=1
            echo "$p"
            return
        fi
    done
}

# cx_wait_up NAME PORT [TIMEOUT_S]: until NAME accepts on PORT; fails at once if it exits.
cx_wait_up() {
    local name=$1 port=$2 deadline=$((SECONDS + ${3:-20})) host
    host=$(cx_host "$1")
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if [ $SECONDS -ge "$deadline" ] || ! kill -0 "${CX_PID[$name]:-0}" 2>/dev/null; then
            echo "chaos/run: $name is not up on $host:$port (see logs/$name.log)" >&2
            tail -n 5 "$CX_WORK/logs/$name.log" >&2 || true
            return 1
        fi
        sleep 0.05
    done
}

# cx_wrap NAME: the words that put a command into NAME's namespace and environment, one per
# line (none for a plain process). `ip netns exec` and `env` both exec in place, so the PID
# of the background job is the server's own: signals and kills reach exactly it.
cx_wrap() {
    local -a env_words=()
    [ -n "${CX_NS[$1]:-}" ] && printf '%s\n' ip netns exec "${CX_NS[$1]}"
    read -r -a env_words <<<"${CX_ENV[$1]:-}"
    [ ${#env_words[@]} -gt 0 ] && printf '%s\n' env "${env_words[@]}"
    return 0
}

# cx_launch NAME: runs CX_CMD[NAME] in the background, wrapped, output to logs/NAME.log.
# SIGHUP is ignored in the server (an ignored signal stays ignored across exec): when the
# run's process group is left without a parent outside it (chaos/run started in the
# background of a shell that then exits) and a member is stopped, as the pause faults
# stop them, the kernel sends the whole group SIGHUP and a server without a handler dies
# of it (seen: a lockd that pause_lockd had stopped). The subshell execs in place, so $!
# is still the server's own PID.
# A stop signal that comes between the start and the CX_PID entry (bash runs its trap
# between the two commands) would leave the new server unknown to cx_stop_all: seen, a
# Redis left running after chaos_net_cleanup's SIGTERM. So cx_on_signal only notes a
# signal that comes while CX_LAUNCHING is set, and the launch acts on it once the PID is
# known.
CX_LAUNCHING=0
CX_SIGNAL_PENDING=0
cx_launch() {
    local name=$1
    local -a pre=()
    mapfile -t pre < <(cx_wrap "$name")
    eval "set -- ${CX_CMD[$name]}"
    CX_LAUNCHING=1
    (
        trap '' HUP
        exec "${pre[@]}" "$@"
    ) </dev/null >>"$CX_WORK/logs/$name.log" 2>&1 &
    CX_PID[$name]=$!
    CX_LAUNCHING=0
    [ "$CX_SIGNAL_PENDING" = 0 ] || cx_on_signal
}

# cx_on_signal: chaos/run's INT and TERM trap. Exits 130 (the EXIT trap stops everything),
# or, inside cx_launch, once its PID is recorded.
cx_on_signal() {
    if [ "$CX_LAUNCHING" = 1 ]; then
        CX_SIGNAL_PENDING=1
        return 0
    fi
    echo "chaos/run: interrupted" >&2
    exit 130
}

# cx_spawn NAME CMD ARGS...: starts CMD in the background, output appended to logs/NAME.log.
cx_spawn() {
    local name=$1
    shift
    CX_CMD[$name]=$(printf '%q ' "$@")
    cx_launch "$name"
}

# cx_respawn NAME: starts NAME again with its saved command line (CX_CMD[NAME]), in its
# namespace and with its environment.
cx_respawn() {
    cx_launch "$1"
}

# cx_signal NAME SIG: signals the live process NAME (never anything else).
cx_signal() {
    local pid=${CX_PID[$1]:-}
    [ -n "$pid" ] && kill -"$2" "$pid" 2>/dev/null || true
}

# cx_kill9 NAME: SIGKILL and reap; NAME is then not running.
cx_kill9() {
    local pid=${CX_PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    CX_PID[$1]=
}

# cx_stop NAME [TIMEOUT_S]: SIGCONT (it may be paused), SIGTERM, then SIGKILL after the timeout.
cx_stop() {
    local name=$1 pid=${CX_PID[$1]:-} deadline
    [ -n "$pid" ] || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ${2:-10}))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge "$deadline" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
    CX_PID[$name]=
}

# Stops every process we started, newest kind first (clients before servers).
cx_stop_all() {
    local name
    for name in load counter "${!CX_PID[@]}"; do
        [ -n "${CX_PID[$name]:-}" ] && cx_stop "$name" 5
    done
    return 0
}
