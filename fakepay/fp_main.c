/*
 * fakepay: the payment gateway double (SPEC §7) for the demo and the tests. main()
 * owns the command line, the event loop, the signals and the start/stop order:
 * store -> http, and the reverse on the way out. The PRNG is seeded once here, so a
 * given --seed yields one sequence of outcomes.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_daemon.h"
#include "cm_flags.h"
#include "cm_log.h"
#include "cm_parse.h"
#include "cm_rand.h"
#include "cm_time.h"
#include "fp_http.h"
#include "fp_store.h"

#define DEFAULT_MAX_PAYMENTS 1000000
#define MAX_MAX_PAYMENTS     100000000
#define STOP_FLUSH_MS        200 /* replies sent at stop get this long to be written */

typedef struct fp_opts {
    cm_addr listen;
    bool have_listen;
    fp_knobs knobs;
    uint64_t seed;
    bool have_seed;
    size_t max_payments;
    cm_log_level log_level;
} fp_opts;

typedef struct fp_daemon {
    struct event_base *base;
    fp_http *http;
    cm_daemon_signals *signals;
} fp_daemon;

/* The synopsis, then a blank line, then the options: the layout of lockd and reserved
 * (cm_cli_usage), so the docs copy the first paragraph of every --help alike. */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: fakepay --listen H:P [--decline-rate R] [--fail-rate R] [--latency-ms N]\n"
            "               [--seed S] [--max-payments N] [--log-level L] [--help] [--version]\n"
            "\n"
            "  --listen H:P         address to serve HTTP on (required)\n"
            "  --decline-rate R     share of new payments declined with 402, 0..1 (0)\n"
            "  --fail-rate R        share of new payments failed with 503, 0..1 (0)\n"
            "  --latency-ms N       hold every /payments reply back N ms, 0..%d (0)\n"
            "  --seed S             PRNG seed: one seed, one sequence of outcomes (random)\n"
            "  --max-payments N     payments kept in memory before 503 STORE_FULL (%d)\n"
            "  --log-level L        error|warn|info|debug (info)\n"
            "  --help, --version    this text; the version\n",
            FP_LATENCY_MAX_MS, DEFAULT_MAX_PAYMENTS);
}

/* Returns 0 to run, 1 when --help/--version was served, 2 on a usage error (printed). */
static int parse_args(int argc, char **argv, fp_opts *o)
{
    char latency_want[64], max_want[64];
    uint64_t latency = o->knobs.latency_ms, max = o->max_payments;
    snprintf(latency_want, sizeof(latency_want), "an integer from 0 to %d", FP_LATENCY_MAX_MS);
    snprintf(max_want, sizeof(max_want), "an integer from 1 to %d", MAX_MAX_PAYMENTS);
    const cm_flag flags[] = {
        {.name = "listen",
         .type = CM_FLAG_ADDR,
         .dst = &o->listen,
         .required = true,
         .metavar = "H:P"},
        {.name = "decline-rate",
         .type = CM_FLAG_DOUBLE,
         .dst = &o->knobs.decline_rate,
         .dlo = 0,
         .dhi = 1},
        {.name = "fail-rate",
         .type = CM_FLAG_DOUBLE,
         .dst = &o->knobs.fail_rate,
         .dlo = 0,
         .dhi = 1},
        {.name = "latency-ms",
         .type = CM_FLAG_U64,
         .dst = &latency,
         .lo = 0,
         .hi = FP_LATENCY_MAX_MS,
         .want = latency_want},
        {.name = "seed",
         .type = CM_FLAG_U64,
         .dst = &o->seed,
         .lo = 0,
         .hi = UINT64_MAX,
         .want = "an unsigned integer",
         .seen = &o->have_seed},
        {.name = "max-payments",
         .type = CM_FLAG_U64,
         .dst = &max,
         .lo = 1,
         .hi = MAX_MAX_PAYMENTS,
         .want = max_want},
        {.name = "log-level", .type = CM_FLAG_LOG_LEVEL, .dst = &o->log_level},
    };
    const cm_flags_spec spec = {
        .prog = "fakepay", .flags = flags, .nflags = CM_ARRAY_LEN(flags), .usage = usage};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, NULL);
    if (res != CM_FLAGS_RUN)
        return (int)res;
    o->have_listen = true;
    o->knobs.latency_ms = (uint32_t)latency;
    o->max_payments = (size_t)max;
    return 0;
}

static void graceful_stop(void *arg, int sig)
{
    fp_daemon *d = arg;
    struct timeval flush = cm_tv_from_ms(STOP_FLUSH_MS);
    log_info("signal %d: graceful stop", sig);
    /* No new connections; held-back replies go out now and get a moment to be written. */
    fp_http_stop(d->http);
    event_base_loopexit(d->base, &flush);
}

static int run(const fp_opts *o)
{
    fp_daemon d;
    fp_store *store = NULL;
    char a[CM_HOST_MAX + 16];
    int rc = 1;

    memset(&d, 0, sizeof(d));
    d.base = event_base_new();
    store = fp_store_new(o->max_payments);
    if (!d.base || !store) {
        log_error("out of memory at start");
        goto done;
    }
    d.signals = cm_daemon_signals_new(d.base, graceful_stop, &d);
    if (!d.signals)
        goto done;
    /* Listen only once the handlers are in: whoever sees the port may signal at once. */
    d.http = fp_http_new(d.base, &o->listen, store, &o->knobs);
    if (!d.http)
        goto done;
    log_info("fakepay %s listening on %s: decline-rate=%g fail-rate=%g latency-ms=%u seed=%" PRIu64
             " max-payments=%zu",
             BOOKING_VERSION, cm_addr_format(&o->listen, a, sizeof(a)), o->knobs.decline_rate,
             o->knobs.fail_rate, (unsigned)o->knobs.latency_ms, o->seed, o->max_payments);
    if (event_base_dispatch(d.base) < 0)
        log_error("event loop failed");
    else
        rc = 0;
    log_info("stopped: %zu payments", fp_store_count(store));
done:
    fp_http_free(d.http);
    fp_store_free(store);
    cm_daemon_signals_free(d.signals);
    if (d.base)
        event_base_free(d.base);
    return rc;
}

int main(int argc, char **argv)
{
    fp_opts o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.max_payments = DEFAULT_MAX_PAYMENTS;
    o.log_level = CM_LOG_INFO;
    signal(SIGPIPE, SIG_IGN);
    cm_log_init("fakepay", CM_LOG_INFO);
    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    cm_log_set_level(o.log_level);
    /* Without --seed, pick one and log it, so any run can be replayed. */
    if (!o.have_seed && cm_rand_bytes(&o.seed, sizeof(o.seed)) != CM_OK)
        o.seed = cm_now_ns();
    cm_rand_seed(o.seed);
    rc = run(&o);
    libevent_global_shutdown();
    return rc;
}
