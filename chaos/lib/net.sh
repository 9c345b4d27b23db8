# shellcheck shell=bash
# net.sh (sourced by chaos/run): small clients for the control surfaces the faults use:
# chaos_proxy's control port, lockd's INFO (LOCKP over /dev/tcp), fakepay's /admin/config and
# PostgreSQL (psql). Needs: CX_PSQL (array), CX_FAKEPAY (port). An ADDR is PORT (on
# 127.0.0.1) or HOST:PORT (netns mode: a server's namespace address over the bridge).

# cx_tcp ADDR: "/dev/tcp/HOST/PORT" for bash's redirections.
cx_tcp() {
    if [[ $1 == *:* ]]; then echo "/dev/tcp/${1%:*}/${1##*:}"; else echo "/dev/tcp/127.0.0.1/$1"; fi
}

# cx_proxy_ctl ADDR LINE: sends one control line to a chaos_proxy, prints its reply.
cx_proxy_ctl() {
    local fd reply=""
    exec {fd}<>"$(cx_tcp "$1")" || return 1
    printf '%s\n' "$2" 1>&"$fd"
    read -r -t 2 -u "$fd" reply || true
    exec {fd}>&-
    [[ $reply == OK* ]] || {
        echo "chaos/run: proxy $1: '$2' -> '$reply'" >&2
        return 1
    }
}

# cx_lockd_held ADDR TIMEOUT_MS: polls lockd's INFO every 20 ms on one LOCKP connection
# until locks_held > 0 or the timeout; prints the last locks_held seen ("?" if no answer).
cx_lockd_held() {
    local fd line held="?" i
    exec {fd}<>"$(cx_tcp "$1")" 2>/dev/null || {
        echo "?"
        return 0
    }
    for ((i = 0; i < $2 / 20; i++)); do
        printf 'i%d INFO\n' "$i" 1>&"$fd" 2>/dev/null || break
        read -r -t 1 -u "$fd" line || break
        [[ $line =~ locks_held=([0-9]+) ]] && held=${BASH_REMATCH[1]}
        [ "$held" != "?" ] && [ "$held" -gt 0 ] && break
        sleep 0.02
    done
    exec {fd}>&-
    echo "$held"
}

# cx_pay_config JSON: sets fakepay's failure knobs.
cx_pay_config() {
    curl -fsS -m 5 -X POST -H 'Content-Type: application/json' -d "$1" \
        "http://$(cx_host fakepay):$CX_FAKEPAY/admin/config" >/dev/null
}

# cx_pg_start: (re)starts the run's PostgreSQL (scripts/pg.sh) in its namespace (netns mode,
# with CX_PG_OPTS="-c listen_addresses=...": also on its bridge address); prints pg.sh's
# conninfo (the unix socket).
cx_pg_start() {
    local -a pre=()
    mapfile -t pre < <(cx_wrap postgresql)
    PG_EXTRA_OPTS="${CX_PG_OPTS:-}" "${pre[@]}" "$CX_ROOT/scripts/pg.sh" start "$CX_WORK/pg" "$CX_PG_PORT"
}

# cx_sql SQL: runs SQL as the booking user, prints unaligned tuples.
cx_sql() {
    "${CX_PSQL[@]}" -c "$1"
}

# cx_wait_in_lock APP TIMEOUT_MS: returns 0 as soon as the reserved whose database
# connections carry application_name APP has a transaction open (in lock mode lockd a
# booking or cancel transaction only runs while its performance lock is held), 1 after
# the timeout. The wait loops inside PostgreSQL, so the answer is at most ~5 ms old.
cx_wait_in_lock() {
    local tries=$(($2 / 5))
    [ "$(cx_sql "DO \$\$ BEGIN
        FOR i IN 1..$tries LOOP
            PERFORM pg_stat_clear_snapshot();
            PERFORM 1 FROM pg_stat_activity WHERE application_name = '$1'
                AND xact_start IS NOT NULL AND state IN ('idle in transaction', 'active')
                AND query NOT LIKE 'DO %';
            IF FOUND THEN RAISE NOTICE 'held'; RETURN; END IF;
            PERFORM pg_sleep(0.005);
        END LOOP; END \$\$" 2>&1 | grep -c held)" = 1 ]
}
