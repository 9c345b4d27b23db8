# scripts/lib/booking.sh: start the booking system on loopback and seed it through its API.
# Sourced (not run) by scripts/demo.sh, bench/booking.sh and tests/bookbench/smoke.sh.
# Everything a bk_start_* function starts goes into BK_PIDS (stopped by bk_cleanup in
# reverse order, by PID; bk_track names it) and lives in one temp dir, BK_TMP, each server
# logging to its own file in BK_LOGS ($BK_TMP/logs); PostgreSQL is stopped through
# scripts/pg.sh by the PID in its postmaster.pid. The caller sets the traps:
#     trap bk_cleanup EXIT; trap 'exit 130' INT TERM
# Needs: BK_BIN (the bin/ dir of a build). Uses curl, awk, psql.
# Knobs (environment; the defaults are what the tests and benchmarks run with):
#   BK_LOG_LEVEL         log.level of lockd, reserved and fakepay (warn)
#   BK_LOCKD_SESSION_MS  lockd's session.timeout_ms (3000)
#   BK_DETACH=1          servers in their own session (setsid, same PID): a Ctrl-C on the
#                        terminal reaches the script only, which stops them in order
#   BK_STOP_VERBOSE=1    bk_cleanup says what it stops, PID by PID, one at a time
#   BK_KEEP_TMP=1        keep BK_TMP after the end; BK_KEEP_LOGS=1 keeps BK_LOGS only
#   BK_HASH_OPS, BK_HASH_MEM_KIB   auth.hash_ops / auth.hash_mem_kib of reserved (1 and 8:
#                        Argon2id at its cheapest, so hundreds of sign-ups take no time;
#                        reserved's defaults are 2 and 19456)
#   BK_MAX_SEATS_PER_USER  limits.max_seats_per_user_per_performance (100000: a storm's
#                        buyers are not stopped by the purchase limit; reserved's default 8)
#   BK_RATE_PER_TOKEN, BK_RATE_PER_IP  per_s of limits.rate_per_token / rate_per_ip (0: off,
#                        one load generator is not a flood; reserved's defaults 20 and 10)
#   BK_LOCK_EXTRA        more keys of reserved's lock: mapping ("batch_max: 1": one booking
#                        per transaction, no group booking)
# Accounts (SPEC §6a): bk_start_reserved makes BK_ADMIN_EMAIL an admin (reserved
# --add-admin) and logs it in: BK_ADMIN_TOKEN (exported), sent by bk_api and the /metrics
# reads; bk_create_users signs its users up with BK_USER_PASSWORD and logs each in: their
# tokens, one a line in user order, in BK_TOKENS_FILE (bookbench --tokens).

BK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BK_PIDS=()
declare -gA BK_NAME=() # PID -> what bk_cleanup calls it ("-": stopped without a word)
BK_LOCKD=()
BK_TMP=""
BK_LOGS=""
BK_PG_DIR=""
BK_USED_PORTS=" "

# The start of a test script: the traps that stop everything by PID on any exit, then
# the temp dir. bk_fail MESSAGE ends the test, keeping the servers' logs to look at.
bk_test_init() { # bk_test_init NAME
    trap bk_cleanup EXIT
    trap 'exit 130' INT TERM
    bk_init "$1"
}
bk_fail() {
    echo "FAIL: $*" >&2
    export BK_KEEP_LOGS=1
    echo "logs kept in $BK_LOGS" >&2
    exit 1
}

# Creates the temp dir every server of this run lives in, and its logs/ dir.
bk_init() { # bk_init NAME
    BK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    chmod 0755 "$BK_TMP"
    BK_LOGS="$BK_TMP/logs"
    mkdir -m 0777 "$BK_LOGS" # PostgreSQL runs as postgres when we are root
}

# Starts a server in the background (own session with BK_DETACH=1: setsid execs in place,
# so $! is the server) and tracks it; the caller redirects.
bk_spawn() { # bk_spawn NAME CMD...; sets BK_LAST_PID
    local name=$1
    shift
    if [[ ${BK_DETACH:-0} == 1 ]]; then
        setsid "$@" &
    else
        "$@" &
    fi
    BK_LAST_PID=$!
    bk_track "$BK_LAST_PID" "$name"
}

bk_track() { # bk_track PID NAME: bk_cleanup stops it by PID
    BK_PIDS+=("$1")
    BK_NAME[$1]=$2
}

# Fails when one of the PIDs is gone: a server that exited at start (its port taken after
# the probe, a bad config) while another answered on the port it waited for.
bk_check_alive() { # bk_check_alive PID...
    local pid
    for pid in "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bk: ${BK_NAME[$pid]:-process} (pid $pid) exited at start (logs: $BK_LOGS)" >&2
            return 1
        fi
    done
}

bk_untrack() { # bk_untrack PID...: the caller has waited for them; forget them
    local keep=() p
    for p in "${BK_PIDS[@]}"; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    BK_PIDS=("${keep[@]}")
}

# Stops one PID: SIGTERM (SIGCONT first, in case it was paused), up to 5 s, then SIGKILL.
# Prints how it ended.
bk_stop_pid() { # bk_stop_pid PID
    local pid=$1 rc=0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "killed (still running 5 s after SIGTERM)"
        return 1
    fi
    wait "$pid" 2>/dev/null || rc=$?
    case $rc in
    0 | 143) echo ok ;; # 143: a shell or sleep that died of the SIGTERM itself
    127) echo "ok (had exited before)" ;; # not our child any more: nothing to collect
    *) echo "exited with status $rc" ;;
    esac
}

# Stops what this run started, newest first: clients and reserved before lockd and Redis.
# With BK_STOP_VERBOSE=1 one at a time, a line each ("stopping reserved 1 (pid N) ... ok");
# otherwise all at once, quietly. Then removes BK_TMP (see BK_KEEP_TMP, BK_KEEP_LOGS).
# Returns 1 when something had to be killed.
bk_cleanup() {
    local i pid name rc=0 pgpid
    if [[ ${BK_STOP_VERBOSE:-0} == 1 ]]; then
        for ((i = ${#BK_PIDS[@]} - 1; i >= 0; i--)); do
            pid=${BK_PIDS[i]}
            name=${BK_NAME[$pid]:-process}
            if [[ $name == - ]]; then
                bk_stop_pid "$pid" >/dev/null || true
                continue
            fi
            if ! kill -0 "$pid" 2>/dev/null; then # died before: say how, if we can still tell
                wait "$pid" 2>/dev/null && echo "$name (pid $pid) had exited" ||
                    echo "$name (pid $pid) had exited with status $?"
                continue
            fi
            printf 'stopping %s (pid %s) ... ' "$name" "$pid"
            bk_stop_pid "$pid" || rc=1 # not in $(...): a subshell cannot wait for our children
        done
    else
        for ((i = ${#BK_PIDS[@]} - 1; i >= 0; i--)); do
            pid=${BK_PIDS[i]}
            if kill -0 "$pid" 2>/dev/null; then
                kill -CONT "$pid" 2>/dev/null || true
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done
        for pid in "${BK_PIDS[@]}"; do
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.05
            done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    BK_PIDS=()
    if [[ -n "$BK_PG_DIR" ]]; then
        pgpid=$(head -n 1 "$BK_PG_DIR/data/postmaster.pid" 2>/dev/null || true)
        [[ ${BK_STOP_VERBOSE:-0} == 1 && -n $pgpid ]] &&
            printf 'stopping PostgreSQL (pid %s) ... ' "$pgpid"
        if bash "$BK_ROOT/scripts/pg.sh" stop "$BK_PG_DIR" fast; then
            [[ ${BK_STOP_VERBOSE:-0} == 1 && -n $pgpid ]] && echo ok
        else
            rc=1
            [[ ${BK_STOP_VERBOSE:-0} == 1 && -n $pgpid ]] && echo "failed"
        fi
        BK_PG_DIR=""
    fi
    if [[ -n "$BK_TMP" && -d "$BK_TMP" ]]; then
        if [[ ${BK_KEEP_TMP:-0} == 1 ]]; then
            :
        elif [[ ${BK_KEEP_LOGS:-0} == 1 ]]; then
            find "$BK_TMP" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
        else
            rm -rf "$BK_TMP"
        fi
    fi
    return $rc
}

bk_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port on 127.0.0.1 nobody listens on and this run has not handed out yet, below the
# ephemeral range (32768+): a port some outgoing connection holds looks free to a connect
# probe but makes the server's bind fail. Assigns it to the variable VAR, not through
# $(...): a subshell would lose BK_USED_PORTS, and two servers started before either
# binds could get the same port. Never a port browsers refuse to open (Chromium's
# restricted ports, net::ERR_UNSAFE_PORT: 10080 is the one in this range, the others are
# listed for a range that may move): the browser tests load pages from these servers.
BK_UNSAFE_PORTS=" 1719 1720 1723 2049 3659 4045 4190 5060 5061 6000 6566 6665 6666 6667 6668 6669 6679 6697 10080 "
bk_free_port() { # bk_free_port VAR
    local p
    while :; do
        p=$((10000 + RANDOM % 22000))
        [[ "$BK_USED_PORTS" == *" $p "* || "$BK_UNSAFE_PORTS" == *" $p "* ]] && continue
        if ! bk_port_open "$p"; then
            BK_USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
}

bk_wait_port() { # bk_wait_port PORT [WHAT]
    for _ in $(seq 200); do
        bk_port_open "$1" && return 0
        sleep 0.05
    done
    echo "bk: nothing listens on 127.0.0.1:$1${2:+ ($2)}" >&2
    return 1
}

# PostgreSQL 15 in $BK_TMP/pg (fsync on); sets BK_PG_CONNINFO.
bk_start_pg() {
    local port
    bk_free_port port
    BK_PG_DIR="$BK_TMP/pg"
    BK_PG_CONNINFO=$(PG_LOG="$BK_LOGS/postgres.log" bash "$BK_ROOT/scripts/pg.sh" start \
        "$BK_PG_DIR" "$port")
    BK_PG_PORT=$port
}

# psql on the booking database: bk_psql SQL (unaligned, tuples only; as role booking, or
# BK_PSQL_USER).
bk_psql() {
    "${PGBIN:-/usr/lib/postgresql/15/bin}/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BK_PG_DIR" -p "$BK_PG_PORT" -U "${BK_PSQL_USER:-booking}" -d booking \
        -c "$1"
}

# N Redis masters; sets BK_REDIS_LIST "127.0.0.1:p, 127.0.0.1:q, ...".
bk_start_redis() { # bk_start_redis N
    local i port ports=() pids=()
    for ((i = 1; i <= $1; i++)); do
        bk_free_port port
        mkdir -p "$BK_TMP/redis$i"
        bk_spawn "redis $i" redis-server --port "$port" --bind 127.0.0.1 --save '' \
            --appendonly yes --appendfsync always --dir "$BK_TMP/redis$i" --daemonize no \
            >"$BK_LOGS/redis$i.log" 2>&1
        pids+=("$BK_LAST_PID")
        ports+=("$port")
    done
    for port in "${ports[@]}"; do bk_wait_port "$port" redis; done
    bk_check_alive "${pids[@]}"
    BK_REDIS_LIST=$(printf '127.0.0.1:%s, ' "${ports[@]}")
    BK_REDIS_LIST=${BK_REDIS_LIST%, }
}

# N lockd on the Redis masters, each with a metrics listener; sets BK_LOCKD (array of H:P),
# BK_LOCKD_METRICS (array of H:P) and BK_LOCKD_PIDS. Session timeout: BK_LOCKD_SESSION_MS.
bk_start_lockd() { # bk_start_lockd N
    local i port mport ports=()
    BK_LOCKD=()
    BK_LOCKD_METRICS=()
    BK_LOCKD_PIDS=()
    for ((i = 1; i <= $1; i++)); do
        bk_free_port port
        bk_free_port mport
        cat >"$BK_TMP/lockd$i.yaml" <<EOF
listen: 127.0.0.1:$port
metrics_listen: 127.0.0.1:$mport
redis: [$BK_REDIS_LIST]
session: {timeout_ms: ${BK_LOCKD_SESSION_MS:-3000}, lock_delay_ms: 0}
log: {level: ${BK_LOG_LEVEL:-warn}}
EOF
        bk_spawn "lockd $i" "$BK_BIN/lockd" --config "$BK_TMP/lockd$i.yaml" \
            >"$BK_LOGS/lockd$i.log" 2>&1
        BK_LOCKD_PIDS+=("$BK_LAST_PID")
        BK_LOCKD+=("127.0.0.1:$port")
        BK_LOCKD_METRICS+=("127.0.0.1:$mport")
        ports+=("$port" "$mport")
    done
    for port in "${ports[@]}"; do bk_wait_port "$port" lockd; done
    bk_check_alive "${BK_LOCKD_PIDS[@]}"
}

# fakepay with extra flags; sets BK_PAY_URL.
bk_start_fakepay() { # bk_start_fakepay [FLAGS...]
    local port
    bk_free_port port
    bk_spawn fakepay "$BK_BIN/fakepay" --listen "127.0.0.1:$port" \
        --log-level "${BK_LOG_LEVEL:-warn}" "$@" >"$BK_LOGS/fakepay.log" 2>&1
    bk_wait_port "$port" fakepay
    bk_check_alive "$BK_LAST_PID"
    BK_PAY_URL="http://127.0.0.1:$port"
}

# N reserved, each with its own config file; lockd list rotated per instance so they
# spread over the lockd. Appends to BK_RESERVED (array of H:P); BK_RESERVED_PIDS too, and
# BK_RESERVED_METRICS (each one's metrics_listen H:P: /metrics without a token, also while
# the database is down; the first exported as BK_METRICS_ADDR).
bk_start_reserved() { # bk_start_reserved N MODE PAYMENT_URL [EXTRA_YAML]
    local n=$1 mode=$2 pay=$3 extra=${4:-} i j port mport lockd ports=()
    BK_RESERVED=()
    BK_RESERVED_PIDS=()
    BK_RESERVED_METRICS=()
    for ((i = 0; i < n; i++)); do
        bk_free_port port
        bk_free_port mport
        lockd="" # none started (db mode): the key keeps its default
        for ((j = 0; j < ${#BK_LOCKD[@]}; j++)); do
            lockd+="${BK_LOCKD[(i + j) % ${#BK_LOCKD[@]}]}, "
        done
        [[ -n $lockd ]] && lockd="lockd: [${lockd%, }]"
        cat >"$BK_TMP/reserved$((i + 1)).yaml" <<EOF
listen: 127.0.0.1:$port
metrics_listen: 127.0.0.1:$mport
database: "$BK_PG_CONNINFO"
db_pool_size: ${BK_DB_POOL:-8}
$lockd
lock: {mode: $mode, lease_ms: 0, wait_ms: 5000${BK_LOCK_EXTRA:+, $BK_LOCK_EXTRA}}
payment: {url: "$pay", timeout_ms: 2000}
limits: {max_body_bytes: 1048576, max_seats_per_reservation: 10, max_seats_per_user_per_performance: ${BK_MAX_SEATS_PER_USER:-100000}, rate_per_token: {per_s: ${BK_RATE_PER_TOKEN:-0}}, rate_per_ip: {per_s: ${BK_RATE_PER_IP:-0}}}
auth: {hash_ops: ${BK_HASH_OPS:-1}, hash_mem_kib: ${BK_HASH_MEM_KIB:-8}}
log: {level: ${BK_LOG_LEVEL:-warn}}
$extra
EOF
        bk_spawn "reserved $((i + 1))" "$BK_BIN/reserved" \
            --config "$BK_TMP/reserved$((i + 1)).yaml" >"$BK_LOGS/reserved$((i + 1)).log" 2>&1
        BK_RESERVED_PIDS+=("$BK_LAST_PID")
        BK_RESERVED+=("127.0.0.1:$port")
        BK_RESERVED_METRICS+=("127.0.0.1:$mport")
        ports+=("$port")
    done
    export BK_METRICS_ADDR=${BK_RESERVED_METRICS[0]}
    for port in "${ports[@]}"; do
        for _ in $(seq 200); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]] &&
                continue 2
            sleep 0.05
        done
        echo "bk: reserved on 127.0.0.1:$port is not healthy (see $BK_LOGS/reserved*.log)" >&2
        return 1
    done
    bk_check_alive "${BK_RESERVED_PIDS[@]}"
    bk_admin
}

# The admin of SPEC §6a: reserved --add-admin BK_ADMIN_EMAIL (password on stdin; it needs
# only the database of reserved 1's config), then a login at the first reserved. Sets
# BK_ADMIN_ID and BK_ADMIN_TOKEN (exported: tests/openapi reads it).
bk_admin() {
    BK_ADMIN_EMAIL=${BK_ADMIN_EMAIL:-admin@booking.test}
    BK_ADMIN_PASSWORD=${BK_ADMIN_PASSWORD:-admin-password-1}
    BK_ADMIN_ID=$(printf '%s\n' "$BK_ADMIN_PASSWORD" | "$BK_BIN/reserved" \
        --config "$BK_TMP/reserved1.yaml" --add-admin "$BK_ADMIN_EMAIL" 2>>"$BK_LOGS/add-admin.log") || {
        echo "bk: reserved --add-admin $BK_ADMIN_EMAIL failed (see $BK_LOGS/add-admin.log)" >&2
        return 1
    }
    BK_ADMIN_TOKEN=$(bk_login "$BK_ADMIN_EMAIL" "$BK_ADMIN_PASSWORD") || return 1
    export BK_ADMIN_TOKEN
}

# POST /sessions at the first reserved: prints the token, fails (saying why) otherwise.
bk_login() { # bk_login EMAIL PASSWORD
    local out token
    out=$(curl -s -X POST -H 'Content-Type: application/json' \
        --data-binary "{\"email\": \"$1\", \"password\": \"$2\"}" "http://${BK_RESERVED[0]}/sessions")
    token=$(grep -o '"token": *"[0-9a-f]*"' <<<"$out" | grep -o '[0-9a-f]\{64\}')
    if [[ -z $token ]]; then
        echo "bk: login of $1 failed: $out" >&2
        return 1
    fi
    printf '%s\n' "$token"
}

# The curl arguments of the admin's Authorization header (none before bk_admin).
bk_auth_args() {
    [[ -n ${BK_ADMIN_TOKEN:-} ]] && printf '%s\n' -H "Authorization: Bearer $BK_ADMIN_TOKEN"
    return 0
}

# Stops the reserved processes of bk_start_reserved (SIGTERM: graceful) and forgets them.
bk_stop_reserved() {
    local pid
    for pid in "${BK_RESERVED_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${BK_RESERVED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    bk_untrack "${BK_RESERVED_PIDS[@]}"
    BK_RESERVED_PIDS=()
    BK_RESERVED=()
}

# bk_api METHOD PATH [BODY|@FILE] against the first reserved: prints the body, fails
# (with the answer on stderr) on anything but 2xx.
bk_api() {
    local out code auth
    mapfile -t auth < <(bk_auth_args)
    out=$(curl -s -w '\n%{http_code}' -X "$1" -H 'Content-Type: application/json' "${auth[@]}" \
        ${3:+--data-binary "$3"} "http://${BK_RESERVED[0]}$2") || return 1
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [[ $code != 2?? ]]; then
        echo "bk: $1 $2 -> $code $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

# The first "id" of a JSON object (our API prints the object's own id first).
bk_id() { grep -o '"id": *[0-9]*' | head -n 1 | grep -o '[0-9]*$'; }

# A venue of NSEATS seats, PER_ROW a row (rows R1, R2, ...); the first NVIP seats are VIP.
# Prints its id.
bk_create_venue() { # bk_create_venue NAME NSEATS NVIP [PER_ROW]
    local f="$BK_TMP/venue.$RANDOM.json"
    awk -v name="$1" -v n="$2" -v vip="$3" -v per="${4:-20}" 'BEGIN {
        printf "{\"name\": \"%s\", \"seats\": [", name
        for (i = 0; i < n; i++)
            printf "%s{\"row\": \"R%d\", \"number\": %d, \"type\": \"%s\"}", (i ? ", " : ""),
                int(i / per) + 1, i % per + 1, (i < vip ? "VIP" : "NORMAL")
        printf "]}\n"
    }' >"$f"
    bk_api POST /venues "@$f" | bk_id
}

# A performance on VENUE; prints its id. Days from now spread the start times.
bk_create_perf() { # bk_create_perf VENUE TITLE DAYS
    local starts
    starts=$(date -u -d "+$3 days" +%Y-%m-%dT19:00:00Z)
    bk_api POST /performances "{\"venueId\": $1, \"title\": \"$2\", \"startsAt\": \"$starts\", \
\"normalPrice\": 50000, \"vipPrice\": 120000}" | bk_id
}

# N users signed up (password BK_USER_PASSWORD) in one curl (keep-alive), then each
# logged in, in a second; sets BK_USERS_FIRST (the ids must be N in a row), BK_USERS_TAG
# (user i's email is u<i>.<tag>@example.test) and BK_TOKENS_FILE (user i's token on
# line i).
bk_create_users() { # bk_create_users N
    local n=$1 i cfg="$BK_TMP/users.curl" lcfg="$BK_TMP/logins.curl" ids first last
    local tag=$RANDOM$RANDOM pw=${BK_USER_PASSWORD:-buyer-password-1}
    : >"$cfg"
    : >"$lcfg"
    for ((i = 1; i <= n; i++)); do
        [[ $i -gt 1 ]] && echo "next" >>"$cfg" && echo "next" >>"$lcfg"
        printf 'url = "http://%s/users"\nheader = "Content-Type: application/json"\ndata = "{\\"name\\": \\"user %d\\", \\"email\\": \\"u%d.%s@example.test\\", \\"password\\": \\"%s\\"}"\n' \
            "${BK_RESERVED[0]}" "$i" "$i" "$tag" "$pw" >>"$cfg"
        printf 'url = "http://%s/sessions"\nheader = "Content-Type: application/json"\ndata = "{\\"email\\": \\"u%d.%s@example.test\\", \\"password\\": \\"%s\\"}"\n' \
            "${BK_RESERVED[0]}" "$i" "$tag" "$pw" >>"$lcfg"
    done
    ids=$(curl -s -K "$cfg" | grep -o '"id": *[0-9]*' | grep -o '[0-9]*$')
    first=$(head -n 1 <<<"$ids")
    last=$(tail -n 1 <<<"$ids")
    if [[ $(wc -l <<<"$ids") -ne $n || $((last - first + 1)) -ne $n ]]; then
        echo "bk: expected $n users with consecutive ids, got: $(tr '\n' ' ' <<<"$ids" | head -c 200)" >&2
        return 1
    fi
    BK_USERS_FIRST=$first
    BK_USERS_TAG=$tag
    BK_TOKENS_FILE="$BK_TMP/tokens"
    curl -s -K "$lcfg" | grep -o '"token": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}' >"$BK_TOKENS_FILE"
    if [[ $(wc -l <"$BK_TOKENS_FILE") -ne $n ]]; then
        echo "bk: $n users signed up, but $(wc -l <"$BK_TOKENS_FILE") logins gave a token" >&2
        return 1
    fi
}

# Comma-separated reserved addresses for bookbench --servers.
bk_servers() { local IFS=,; echo "${BK_RESERVED[*]}"; }

# Peak resident memory of processes (VmHWM, MiB, one decimal each, "/" between).
bk_peak_rss() { # bk_peak_rss PID...
    local pid kb out=()
    for pid in "$@"; do
        kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        out+=("$(awk -v k="${kb:-0}" 'BEGIN {printf "%.1f", k / 1024}')")
    done
    local IFS=/
    echo "${out[*]}"
}

# Each reserved's share of the hot bookings, from bookbench's RESULT field hot_ok_by_server
# ("a,b,c": r1 is the first of --servers): "shares: r1 33.6% r2 33.4% r3 33.0% (each
# within 0.5x-1.5x of an equal share: yes)"; "no, r3 0.31x" names the ones outside;
# "shares: n/a" without hot bookings.
bk_hot_shares() { # bk_hot_shares A,B,C
    awk -v by="$1" 'BEGIN {
        n = split(by, c, ","); sum = 0
        for (i = 1; i <= n; i++) sum += c[i]
        if (n < 1 || sum == 0) { print "shares: n/a"; exit }
        out = "shares:"; bad = ""
        for (i = 1; i <= n; i++) {
            out = out sprintf(" r%d %.1f%%", i, 100 * c[i] / sum)
            x = c[i] * n / sum
            if (x < 0.5 || x > 1.5) bad = bad sprintf(", r%d %.2fx", i, x)
        }
        print out " (each within 0.5x-1.5x of an equal share: " (bad == "" ? "yes" : "no" bad) ")"
    }'
}

# The /metrics of the reserved at ADDR..., one after the other (a server that does not
# answer adds nothing). Never fails.
bk_metrics() { # bk_metrics ADDR...
    local addr
    local auth
    mapfile -t auth < <(bk_auth_args)
    for addr in "$@"; do curl -s -m 5 "${auth[@]}" "http://$addr/metrics" || true; done
}
# The group-booking batch sizes of the reserved at ADDR... (their /metrics since they
# started, summed; with --since FILE, less the counts in FILE, a bk_metrics of the same
# servers taken earlier: what they did in between): "mean 6.21 (1520 batches, 9440
# bookings), p50 <= 8, p99 <= 32" from reserved_batches_total,
# reserved_batch_bookings_total and the histogram reserved_batch_size (p50/p99: the upper
# bound of the bucket that holds them); "n/a" when the reserved have no such metrics (or
# made no batch). Never fails.
bk_batch_sizes() { # bk_batch_sizes [--since FILE] ADDR...
    local since=/dev/null
    if [[ ${1:-} == --since ]]; then
        since=$2
        shift 2
    fi
    { sed 's/^/-/' "$since" 2>/dev/null || true; bk_metrics "$@"; } | awk '
        function num(s) { return s + 0 }
        # a line of the snapshot counts negative
        { sign = 1 } /^-/ { sign = -1; $0 = substr($0, 2) }
        /^reserved_batches_total[ {]/ { batches += sign * num($NF); if (sign > 0) seen = 1 }
        /^reserved_batch_bookings_total[ {]/ { bookings += sign * num($NF) }
        /^reserved_batch_size_bucket\{/ {
            if (match($0, /le="[^"]*"/)) {
                le = substr($0, RSTART + 4, RLENGTH - 5)
                if (!(le in cum)) les[++nle] = le
                cum[le] += sign * num($NF)
            }
        }
        # The bucket bound holding quantile q of the observations (buckets are cumulative).
        function q_bound(q,    i, j, t, k, v, want) {
            for (i = 1; i <= nle; i++) order[i] = les[i]
            for (i = 2; i <= nle; i++) { # insertion sort by bound, +Inf last
                t = order[i]; k = (t == "+Inf") ? 1e300 : num(t)
                for (j = i - 1; j >= 1; j--) {
                    v = (order[j] == "+Inf") ? 1e300 : num(order[j])
                    if (v <= k) break
                    order[j + 1] = order[j]
                }
                order[j + 1] = t
            }
            total = cum[order[nle]]
            if (total <= 0) return "n/a"
            want = q * total
            for (i = 1; i <= nle; i++) if (cum[order[i]] >= want) break
            if (order[i] == "+Inf") return "> " (nle > 1 ? order[nle - 1] : "0")
            return "<= " order[i]
        }
        END {
            if (!seen || batches <= 0) { print "n/a"; exit }
            out = sprintf("mean %.2f (%d batches, %d bookings)", bookings / batches, batches, bookings)
            if (nle > 0) out = out ", p50 " q_bound(0.5) ", p99 " q_bound(0.99)
            else out = out ", p50/p99 n/a (no reserved_batch_size histogram)"
            print out
        }'
}
