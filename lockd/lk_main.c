/*
 * lockd: the Redlock lock daemon (SPEC §2-§5). main() owns the event loop and the
 * start-up and graceful-stop order of the modules: config -> redlock -> locks ->
 * server -> metrics, and the reverse on the way out.
 */
#include <assert.h>
#include <event2/event.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_daemon.h"
#include "cm_log.h"
#include "cm_time.h"
#include "lk_config.h"
#include "lk_locks.h"
#include "lk_metrics.h"
#include "lk_ops.h"
#include "lk_redlock.h"
#include "lk_server.h"

#define DRAIN_MAX_MS  2000 /* releases in flight get this long at shutdown */
#define FLUSH_MAX_MS  500  /* then sessions get this long to flush their replies */
#define DRAIN_TICK_MS 10
/* At start, sessions wait in the listen backlog until the masters' first connection
 * attempts tell whether a quorum is reachable (lk_redlock's on_settled), at most this
 * long: an ACQUIRE sent the moment lockd (re)starts gets a grant, not a NOQUORUM that
 * only says "not connected yet". */
#define START_HOLD_MAX_MS 1000

/* The listener: held at start, then open, then stopped (graceful stop). */
typedef enum lk_accept_state { ACCEPT_HELD, ACCEPT_OPEN, ACCEPT_STOPPED } lk_accept_state;

typedef struct lk_daemon {
    const lk_config *cfg;
    struct event_base *base;
    lk_redlock *rl;
    lk_ops_env ops_env; /* lk_locks' way to rl and the loop */
    lk_locks *lk;
    lk_server *srv;
    cm_daemon_signals *signals;
    struct event *drain;
    struct event *start_hold; /* START_HOLD_MAX_MS */
    lk_accept_state accept;
    bool sessions_closed;
    uint64_t stop_ms;
    uint64_t close_ms;
} lk_daemon;

static void on_released(void *arg, const char *resource)
{
    lk_daemon *d = arg;
    if (d->lk)
        lk_locks_on_released(d->lk, resource);
}

static void on_wanted(void *arg, const char *resource)
{
    lk_daemon *d = arg;
    if (d->lk)
        lk_locks_on_wanted(d->lk, resource);
}

static void accept_move(lk_daemon *d, lk_accept_state to)
{
    assert((d->accept == ACCEPT_HELD && to != ACCEPT_HELD) ||
           (d->accept == ACCEPT_OPEN && to == ACCEPT_STOPPED));
    d->accept = to;
}

/* Ends the start-up hold (masters settled, or its time is up). */
static void start_accepting(lk_daemon *d, bool timed_out)
{
    if (d->accept != ACCEPT_HELD || d->srv == NULL)
        return;
    accept_move(d, ACCEPT_OPEN);
    if (d->start_hold)
        event_del(d->start_hold);
    lk_server_start_accepting(d->srv);
    if (timed_out)
        log_warn("accepting sessions: masters still connecting after %d ms, %zu of %zu up",
                 START_HOLD_MAX_MS, lk_redlock_masters_up(d->rl), lk_redlock_masters_total(d->rl));
    else
        log_info("accepting sessions: %zu of %zu Redis masters up", lk_redlock_masters_up(d->rl),
                 lk_redlock_masters_total(d->rl));
}

static void on_settled(void *arg)
{
    start_accepting(arg, false);
}

static void start_hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_accepting(arg, true);
}

static void on_masters(void *arg, size_t up, size_t total)
{
    lk_daemon *d = arg;
    if (d->lk && d->rl)
        lk_locks_on_masters(d->lk, up, total);
}

/* Shutdown, step by step on a timer: releases drain, then sessions flush and close. */
static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_daemon *d = arg;
    uint64_t now = cm_now_ms();
    struct timeval tick = cm_tv_from_ms(DRAIN_TICK_MS);

    if (!d->sessions_closed) {
        if (lk_redlock_pending(d->rl) > 0 && now - d->stop_ms < DRAIN_MAX_MS) {
            evtimer_add(d->drain, &tick);
            return;
        }
        if (lk_redlock_pending(d->rl) > 0)
            log_warn("%zu Redlock rounds still pending after %d ms", lk_redlock_pending(d->rl),
                     DRAIN_MAX_MS);
        lk_server_close_all(d->srv);
        d->sessions_closed = true;
        d->close_ms = now;
    }
    if (lk_server_sessions(d->srv) > 0 && now - d->close_ms < FLUSH_MAX_MS) {
        evtimer_add(d->drain, &tick);
        return;
    }
    event_base_loopexit(d->base, NULL);
}

static void graceful_stop(void *arg, int sig)
{
    lk_daemon *d = arg;
    log_info("signal %d: graceful stop", sig);
    d->stop_ms = cm_now_ms();
    if (d->accept != ACCEPT_STOPPED)
        accept_move(d, ACCEPT_STOPPED);
    lk_server_stop_accepting(d->srv);
    lk_locks_shutdown(d->lk);
    drain_cb(-1, 0, d);
}

static void log_start(const lk_config *cfg, const lk_redlock *rl)
{
    char a[CM_HOST_MAX + 16];
    log_info("lockd %s listening on %s, %zu Redis masters (quorum %zu), key_prefix '%s'",
             BOOKING_VERSION, cm_addr_format(&cfg->listen, a, sizeof(a)), cfg->redis.count,
             lk_redlock_quorum(rl), cfg->key_prefix);
    log_info("redis_timeout_ms=%lld max_inflight_rounds=%lld retry_delay_ms=%lld "
             "clock_drift_factor=%g watchdog.lease_ms=%lld session.timeout_ms=%lld "
             "lock_delay_ms=%lld quarantine=%s auth=%s",
             (long long)cfg->redis_timeout_ms, (long long)cfg->max_inflight_rounds,
             (long long)cfg->retry_delay_ms, cfg->clock_drift_factor,
             (long long)cfg->watchdog_lease_ms, (long long)cfg->session_timeout_ms,
             (long long)cfg->lock_delay_ms, cfg->quarantine ? "on" : "off",
             cfg->auth[0] ? "on" : "off");
}

static int run(const lk_config *cfg)
{
    lk_daemon d;
    int rc = 1;

    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    lk_metrics_init();
    /* The changelist folds the add/remove of a socket's write interest within one loop
     * pass (hiredis' libevent adapter toggles it per batch) into at most one epoll_ctl. */
    struct event_config *evcfg = event_config_new();
    if (evcfg) {
        event_config_set_flag(evcfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        d.base = event_base_new_with_config(evcfg);
        event_config_free(evcfg);
    }
    if (!d.base) {
        log_error("cannot create the event loop");
        return 1;
    }

    lk_redlock_opts ro = {
        .masters = cfg->redis.items,
        .n_masters = cfg->redis.count,
        .key_prefix = cfg->key_prefix,
        .redis_timeout_ms = (uint32_t)cfg->redis_timeout_ms,
        .max_inflight_rounds = (uint32_t)cfg->max_inflight_rounds,
        .clock_drift_factor = cfg->clock_drift_factor,
        .quarantine = cfg->quarantine,
        .max_lease_ms = (uint64_t)cfg->max_lease_ms,
        .on_released = on_released,
        .on_wanted = on_wanted,
        .on_masters = on_masters,
        .on_settled = on_settled,
        .cb_arg = &d,
    };
    d.rl = lk_redlock_new(d.base, &ro);
    if (!d.rl) {
        log_error("cannot set up the Redis masters");
        goto done;
    }
    lk_locks_opts lo = {
        .watchdog_lease_ms = (uint64_t)cfg->watchdog_lease_ms,
        .retry_delay_ms = (uint64_t)cfg->retry_delay_ms,
        .lock_delay_ms = (uint64_t)cfg->lock_delay_ms,
        .max_waiters = (uint64_t)cfg->max_waiters,
        .max_lease_ms = (uint64_t)cfg->max_lease_ms,
        .max_wait_ms = (uint64_t)cfg->max_wait_ms,
        .clock_drift_factor = cfg->clock_drift_factor,
    };
    d.ops_env = (lk_ops_env){.base = d.base, .rl = d.rl};
    d.lk = lk_locks_new(&lk_ops_redlock, &d.ops_env, &lo);
    if (!d.lk)
        goto done;
    lk_server_opts so = {
        .listen = &cfg->listen,
        .auth = cfg->auth,
        .admin_auth = cfg->admin_auth,
        .session_timeout_ms = (uint64_t)cfg->session_timeout_ms,
        .max_sessions = (uint64_t)cfg->max_sessions,
        .held = true,
    };
    d.srv = lk_server_new(d.base, d.lk, d.rl, &so);
    if (!d.srv)
        goto done;
    if (cfg->metrics_listen.port != 0 &&
        lk_metrics_listen(d.base, &cfg->metrics_listen, d.rl) != CM_OK)
        goto done;
    d.drain = evtimer_new(d.base, drain_cb, &d);
    d.signals = cm_daemon_signals_new(d.base, graceful_stop, &d);
    d.start_hold = evtimer_new(d.base, start_hold_cb, &d);
    struct timeval hold = cm_tv_from_ms(START_HOLD_MAX_MS);
    if (!d.drain || !d.signals || !d.start_hold || evtimer_add(d.start_hold, &hold) != 0)
        goto done;

    log_start(cfg, d.rl);
    if (lk_redlock_settled(d.rl)) /* every attempt failed at once, before the server */
        on_settled(&d);
    if (event_base_dispatch(d.base) < 0)
        log_error("event loop failed");
    else
        rc = 0;
    log_info("stopped");
done:
    lk_metrics_shutdown();
    lk_server_free(d.srv);
    lk_locks_free(d.lk);
    if (d.rl)
        lk_redlock_free(d.rl);
    cm_daemon_signals_free(d.signals);
    if (d.drain)
        event_free(d.drain);
    if (d.start_hold)
        event_free(d.start_hold);
    event_base_free(d.base);
    return rc;
}

static cm_rc parse(int argc, char **argv, void *cfg, cm_cli_action *action, bool *usage_error,
                   char *err, size_t errlen)
{
    return lk_config_from_args(argc, argv, cfg, action, usage_error, err, errlen);
}

static void dump(const void *cfg, FILE *out)
{
    lk_config_dump(cfg, out);
}

int main(int argc, char **argv)
{
    static const cm_daemon_front front = {
        .prog = "lockd", .parse = parse, .usage = lk_config_usage, .dump = dump};
    lk_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    signal(SIGPIPE, SIG_IGN);
    cm_log_init("lockd", CM_LOG_INFO);
    int rc = cm_daemon_front_door(&front, argc, argv, &cfg);
    if (rc == CM_DAEMON_RUN) {
        cm_log_set_level((cm_log_level)cfg.log_level);
        rc = run(&cfg);
    }
    lk_config_free(&cfg);
    libevent_global_shutdown();
    return rc;
}
