/*
 * reserved: the booking HTTP server (SPEC §0, §5, §6). main() owns the command line,
 * the event loop and the start-up and graceful-stop order of the modules:
 *   config -> migrations (blocking, before the loop) -> DB pool -> lock client (lockd
 *   mode) -> payment client -> HTTP routes, the gate (rs_auth), the password hasher
 *   (rs_account) + listen (and metrics_listen) -> booking (test hooks, lock queues) ->
 *   reconciler -> sweeper (expired keys and sessions)
 * and on SIGTERM/SIGINT: stop accepting -> stop the reconciler -> answer in-flight
 * requests (bounded) -> free everything in reverse -> exit 0.
 */
#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_cli.h"
#include "cm_daemon.h"
#include "cm_log.h"
#include "cm_rand.h"
#include "cm_time.h"
#include "rs_account.h"
#include "rs_api.h"
#include "rs_auth.h"
#include "rs_app.h"
#include "rs_booking.h"
#include "rs_config.h"
#include "rs_metrics.h"
#include "rs_migrate.h"
#include "rs_pay.h"
#include "rs_events.h"
#include "rs_holds.h"
#include "rs_reconcile.h"
#include "rs_seatmap.h"
#include "rs_static.h"
#include "rs_sweep.h"

#define DRAIN_MAX_MS 10000 /* in-flight requests get this long at shutdown */
/* A seat map's JSON values are freed all at once after the answer (a 10,000-seat map is
 * about 10 MB of them). By default glibc hands freed heap above 128 KB back to the kernel
 * and the next map faults it in again, page by page: a fifth of a map's CPU time on the
 * loop. Up to this much free heap is kept for the next one instead. */
#define KEEP_FREE_HEAP (32 * 1024 * 1024)
#define DRAIN_TICK_MS  20

static const cm_cli_flag flags[] = {
    {"listen", "listen", "H:P"},
    {"database", "database", "CONNINFO"},
    {"lockd", "lockd", "H:P,H:P,..."},
    {"payment-url", "payment.url", "URL"},
    {"lock-mode", "lock.mode", "lockd|db"},
    {"log-level", "log.level", "L"},
};

static cm_cli_spec cli_spec(void)
{
    /* Every key has a default: the file is optional, flags alone can run reserved. */
    return (cm_cli_spec){.prog = "reserved",
                         .keys = rs_config_keys,
                         .nkeys = rs_config_nkeys,
                         .flags = flags,
                         .nflags = CM_ARRAY_LEN(flags),
                         .config_help = "YAML config, keys below (optional: every key has a "
                                        "default)"};
}

static void usage(FILE *out)
{
    cm_cli_spec spec = cli_spec();
    cm_cli_usage(&spec, out);
    fprintf(out,
            "\n  --add-admin EMAIL  make EMAIL an admin with the password on the first line of "
            "standard input\n                     (creating the user if needed), print its "
            "id and exit; needs only the database\n");
}

/* Takes "--add-admin EMAIL" (or "--add-admin=EMAIL") out of argv, so the rest is the
 * daemon's usual command line; *email gets EMAIL (borrowed from argv) or stays NULL.
 * False when the flag has no value. */
static bool take_add_admin(int *argc, char **argv, const char **email)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--add-admin") == 0) {
            if (i + 1 >= *argc)
                return false;
            *email = argv[++i];
        } else if (strncmp(argv[i], "--add-admin=", 12) == 0) {
            *email = argv[i] + 12;
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    *argc = out;
    return true;
}

/* Checks that span keys (single values are checked by their keys' validators, in
 * rs_config). The message names where the key was set, as cm_config's do. */
static cm_rc config_validate(const rs_config *cfg, int argc, char **argv, const char *file,
                             char *err, size_t errlen)
{
    if (cfg->lock_mode == RS_LOCK_LOCKD && cfg->lockd.count == 0) {
        cm_cli_spec spec = cli_spec();
        char where[CM_CLI_ORIGIN_MAX];
        (void)cm_cli_origin(&spec, argc, argv, file, "lockd", where, sizeof(where));
        snprintf(err, errlen, "%s: key 'lockd': lock.mode lockd needs at least one endpoint",
                 where);
        return CM_ERR;
    }
    /* A booking records its payment attempt before it queues for the lock; the reconciler
     * takes an attempt older than reconcile.after_ms for an orphan and cancels it. A
     * booking still waiting for its lock then would charge for an attempt already
     * settled. */
    if (cfg->payment_url[0] != '\0' && cfg->lock_wait_ms >= cfg->reconcile_after_ms) {
        cm_cli_spec spec = cli_spec();
        char where[CM_CLI_ORIGIN_MAX];
        /* named where it was set: the wait, or else the reconciler's age */
        const char *key = "lock.wait_ms";
        if (!cm_cli_origin(&spec, argc, argv, file, key, where, sizeof(where))) {
            key = "reconcile.after_ms";
            (void)cm_cli_origin(&spec, argc, argv, file, key, where, sizeof(where));
        }
        snprintf(err, errlen,
                 "%s: key '%s': lock.wait_ms (%lld) must be below reconcile.after_ms (%lld): "
                 "a booking waits for its lock after recording its payment attempt, which the "
                 "reconciler cancels as orphaned after reconcile.after_ms",
                 where, key, (long long)cfg->lock_wait_ms, (long long)cfg->reconcile_after_ms);
        return CM_ERR;
    }
    return CM_OK;
}

/* Flags over the file (cm_cli), then the checks that span keys. */
static cm_rc config_from_args(int argc, char **argv, void *cfg, cm_cli_action *action,
                              bool *usage_error, char *err, size_t errlen)
{
    const char *file = NULL;
    cm_cli_spec spec = cli_spec();
    if (cm_cli_parse(&spec, argc, argv, cfg, action, usage_error, &file, err, errlen) != CM_OK)
        return CM_ERR;
    if (*action == CM_CLI_HELP || *action == CM_CLI_VERSION)
        return CM_OK;
    return config_validate(cfg, argc, argv, file, err, errlen);
}

/* ---- the daemon ---- */

typedef struct rs_daemon {
    cm_daemon_signals *signals;
    struct event *drain;
    uint64_t stop_ms;
    bool reconciler_started;
} rs_daemon;

/* Graceful stop, on a timer: wait until every accepted request has its answer. */
static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    rs_daemon *d = arg;
    size_t left = rs_http_in_flight(rs_app_g.http);
    struct timeval tick = cm_tv_from_ms(DRAIN_TICK_MS);

    if (left > 0 && cm_now_ms() - d->stop_ms < DRAIN_MAX_MS) {
        evtimer_add(d->drain, &tick);
        return;
    }
    if (left > 0)
        log_warn("%zu requests still unanswered after %d ms: stopping anyway", left, DRAIN_MAX_MS);
    event_base_loopexit(rs_app_g.base, NULL);
}

static void graceful_stop(void *arg, int sig)
{
    rs_daemon *d = arg;
    log_info("signal %d: graceful stop (%zu requests in flight)", sig,
             rs_http_in_flight(rs_app_g.http));
    rs_app_g.shutting_down = true;
    d->stop_ms = cm_now_ms();
    rs_http_stop_accepting(rs_app_g.http);
    if (rs_app_g.metrics_http)
        rs_http_stop_accepting(rs_app_g.metrics_http);
    /* The reconciler starts nothing new while the last answers go out. */
    if (d->reconciler_started)
        rs_reconcile_stop();
    rs_sweep_stop();
    rs_holds_stop();
    rs_events_stop(); /* the event streams end: their requests count as answered */
    drain_cb(-1, 0, d);
}

static cm_rc make_instance_id(char out[17])
{
    unsigned char raw[8];
    if (cm_rand_bytes(raw, sizeof(raw)) != CM_OK)
        return CM_ERR;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return CM_OK;
}

static cm_rc start_modules(rs_app *app, rs_daemon *d)
{
    const rs_config *cfg = &app->cfg;
    char client_name[64];

    rs_db_opts dbo = {
        .conninfo = cfg->database,
        .pool_size = (size_t)cfg->db_pool_size,
        .lock_timeout_ms = (uint32_t)cfg->db_lock_timeout_ms,
        .idle_in_txn_timeout_ms = (uint32_t)cfg->db_idle_in_txn_timeout_ms,
        .statement_timeout_ms = (uint32_t)cfg->db_statement_timeout_ms,
        .max_seats_per_user = (uint32_t)cfg->max_seats_per_user,
    };
    app->db = rs_db_new(app->base, &dbo);
    if (!app->db) {
        log_error("cannot set up the database pool");
        return CM_ERR;
    }
    rs_api_register(app->db);
    rs_seatmap_register(app->db);
    rs_auth_register(app->db);
    rs_account_register(app->db);
    rs_booking_register(app->db);
    rs_reconcile_register(app->db);
    rs_sweep_register(app->db);
    rs_events_register(app->db);
    rs_holds_register(app->db);
    if (rs_db_start(app->db) != CM_OK) {
        log_error("cannot start the database pool");
        return CM_ERR;
    }
    if (cfg->lock_mode == RS_LOCK_LOCKD) {
        snprintf(client_name, sizeof(client_name), "reserved-%s", app->instance_id);
        cm_lockclient_opts lo = {
            .endpoints = cfg->lockd.items,
            .n_endpoints = cfg->lockd.count,
            .client_name = client_name,
            .auth = cfg->lock_auth,
        };
        app->locks = cm_lockclient_new(app->base, &lo);
        if (!app->locks) {
            log_error("cannot set up the lock client");
            return CM_ERR;
        }
    }
    if (cfg->payment_url[0]) {
        app->pay = rs_pay_new(app->base, cfg->payment_url, (uint32_t)cfg->payment_timeout_ms);
        if (!app->pay) {
            log_error("cannot set up the payment client for %s", cfg->payment_url);
            return CM_ERR;
        }
    }
    app->cors.origins = &cfg->cors_allow_origins;
    rs_edge_opts limits = {
        .max_header_bytes = (size_t)cfg->max_header_bytes,
        .header_timeout_ms = (uint32_t)cfg->header_timeout_ms,
        .max_connections = (size_t)cfg->max_connections,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
    };
    app->http = rs_http_new(app->base, &limits, &app->cors);
    if (!app->http)
        return CM_ERR;
    rs_http_add_routes(app->http, rs_api_routes, rs_api_nroutes);
    rs_http_add_routes(app->http, rs_account_routes, rs_account_nroutes);
    rs_http_add_routes(app->http, rs_booking_routes, rs_booking_nroutes);
    rs_http_add_routes(app->http, rs_holds_routes, rs_holds_nroutes);
    rs_http_add_routes(app->http, rs_events_routes, rs_events_nroutes);
    if (rs_static_start(app) != CM_OK)
        return CM_ERR;
    if (rs_auth_start(app) != CM_OK || rs_account_start(app) != CM_OK)
        return CM_ERR;
    if (rs_http_listen(app->http, &cfg->listen) != CM_OK)
        return CM_ERR;
    if (cfg->metrics_listen.port != 0) {
        app->metrics_http = rs_http_new(app->base, &limits, NULL);
        if (!app->metrics_http)
            return CM_ERR;
        rs_http_add_routes(app->metrics_http, rs_api_metrics_routes, rs_api_metrics_nroutes);
        if (rs_http_listen(app->metrics_http, &cfg->metrics_listen) != CM_OK)
            return CM_ERR;
    }
    if (rs_booking_start(app) != CM_OK)
        return CM_ERR;
    if (rs_reconcile_start(app) != CM_OK)
        return CM_ERR;
    d->reconciler_started = true;
    if (rs_sweep_start(app) != CM_OK || rs_holds_start(app) != CM_OK ||
        rs_events_start(app) != CM_OK)
        return CM_ERR;
    return CM_OK;
}

static void log_start(const rs_config *cfg)
{
    char a[CM_HOST_MAX + 16];
    log_info("reserved %s instance %s listening on %s, lock.mode %s, db_pool_size %lld, "
             "payment %s, cors %s (%zu origins)",
             BOOKING_VERSION, rs_app_g.instance_id, cm_addr_format(&cfg->listen, a, sizeof(a)),
             cfg->lock_mode == RS_LOCK_DB ? "db" : "lockd", (long long)cfg->db_pool_size,
             cfg->payment_url[0] ? cfg->payment_url : "off",
             rs_cors_on(&rs_app_g.cors) ? "on" : "off", cfg->cors_allow_origins.count);
}

static int run(void)
{
    rs_app *app = &rs_app_g;
    rs_daemon d;
    char err[1024];
    int rc = 1;

    memset(&d, 0, sizeof(d));
    rs_metrics_init();
    if (make_instance_id(app->instance_id) != CM_OK) {
        log_error("no randomness from the OS");
        return 1;
    }
    /* Blocking on purpose: nothing else runs yet, and every instance must see the
     * schema before it serves (the advisory lock makes concurrent starts safe). */
    if (rs_migrate_apply(app->cfg.database, err, sizeof(err)) != CM_OK) {
        log_error("migrations: %s", err);
        return 1;
    }
    app->base = event_base_new();
    if (!app->base) {
        log_error("cannot create the event loop");
        return 1;
    }
    d.drain = evtimer_new(app->base, drain_cb, &d);
    d.signals = cm_daemon_signals_new(app->base, graceful_stop, &d);
    if (!d.drain || !d.signals)
        goto done;
    if (start_modules(app, &d) != CM_OK)
        goto done;
    log_start(&app->cfg);
    if (event_base_dispatch(app->base) < 0)
        log_error("event loop failed");
    else
        rc = 0;
    log_info("stopped");
done:
    if (d.reconciler_started && !app->shutting_down)
        rs_reconcile_stop();
    rs_sweep_stop();
    rs_holds_stop();
    rs_events_stop();
    rs_http_free(app->http);
    rs_seatmap_stop(); /* after the last request */
    app->http = NULL;
    if (app->metrics_http)
        rs_http_free(app->metrics_http);
    app->metrics_http = NULL;
    rs_account_stop(); /* joins the hasher's threads: every request is answered by now */
    rs_auth_stop();
    if (app->pay)
        rs_pay_free(app->pay);
    app->pay = NULL;
    if (app->locks)
        cm_lockclient_free(app->locks);
    app->locks = NULL;
    rs_booking_free(); /* the lock queues, whose pending callbacks went with the client */
    if (app->db)
        rs_db_free(app->db);
    app->db = NULL;
    cm_daemon_signals_free(d.signals);
    if (d.drain)
        event_free(d.drain);
    event_base_free(app->base);
    app->base = NULL;
    return rc;
}

static void dump(const void *cfg, FILE *out)
{
    cm_cfg_dump(rs_config_keys, rs_config_nkeys, cfg, out);
}

int main(int argc, char **argv)
{
    static const cm_daemon_front front = {
        .prog = "reserved", .parse = config_from_args, .usage = usage, .dump = dump};
    rs_config *cfg = &rs_app_g.cfg;

    const char *add_admin = NULL;

    signal(SIGPIPE, SIG_IGN);
    mallopt(M_TRIM_THRESHOLD, KEEP_FREE_HEAP);
    cm_log_init("reserved", CM_LOG_INFO);
    if (!take_add_admin(&argc, argv, &add_admin)) {
        fprintf(stderr, "reserved: --add-admin needs an EMAIL\n");
        usage(stderr);
        return 2;
    }
    int rc = cm_daemon_front_door(&front, argc, argv, cfg);
    if (rc == CM_DAEMON_RUN) {
        cm_log_set_level(cfg->log_level);
        rc = add_admin ? rs_account_add_admin(cfg, add_admin, stdin, stdout) : run();
    }
    cm_cfg_free(rs_config_keys, rs_config_nkeys, cfg);
    libevent_global_shutdown();
    return rc;
}
