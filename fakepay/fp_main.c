/*
 * fakepay: the payment gateway double (SPEC §7) for the demo and the tests. main()
 * owns the command line, the event loop, the signals and the start/stop order:
 * store -> http, and the reverse on the way out. The PRNG is seeded once here, so a
 * given --seed yields one sequence of outcomes.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_log.h"
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
    struct event *sig_term;
    struct event *sig_int;
    bool stopping;
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

static bool parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0.0 || v > 1.0)
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

enum {
    OPT_LISTEN = 1,
    OPT_DECLINE,
    OPT_FAIL,
    OPT_LATENCY,
    OPT_SEED,
    OPT_MAX,
    OPT_LOG,
    OPT_HELP,
    OPT_VERSION
};

/* Returns 0 to run, 1 when --help/--version was served, 2 on a usage error (printed). */
static int parse_args(int argc, char **argv, fp_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"decline-rate", required_argument, NULL, OPT_DECLINE},
        {"fail-rate", required_argument, NULL, OPT_FAIL},
        {"latency-ms", required_argument, NULL, OPT_LATENCY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"max-payments", required_argument, NULL, OPT_MAX},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    char err[256];
    uint64_t u;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            if (cm_addr_parse(optarg, &o->listen, err, sizeof(err)) != CM_OK) {
                fprintf(stderr, "fakepay: --listen '%s': %s\n", optarg, err);
                return 2;
            }
            o->have_listen = true;
            break;
        case OPT_DECLINE:
        case OPT_FAIL:
            if (!parse_rate(optarg,
                            c == OPT_DECLINE ? &o->knobs.decline_rate : &o->knobs.fail_rate)) {
                fprintf(stderr, "fakepay: %s '%s': want a number from 0 to 1\n",
                        c == OPT_DECLINE ? "--decline-rate" : "--fail-rate", optarg);
                return 2;
            }
            break;
        case OPT_LATENCY:
            if (!parse_u64(optarg, 0, FP_LATENCY_MAX_MS, &u)) {
                fprintf(stderr, "fakepay: --latency-ms '%s': want an integer from 0 to %d\n",
                        optarg, FP_LATENCY_MAX_MS);
                return 2;
            }
            o->knobs.latency_ms = (uint32_t)u;
            break;
        case OPT_SEED:
            if (!parse_u64(optarg, 0, UINT64_MAX, &o->seed)) {
                fprintf(stderr, "fakepay: --seed '%s': want an unsigned integer\n", optarg);
                return 2;
            }
            o->have_seed = true;
            break;
        case OPT_MAX:
            if (!parse_u64(optarg, 1, MAX_MAX_PAYMENTS, &u)) {
                fprintf(stderr, "fakepay: --max-payments '%s': want an integer from 1 to %d\n",
                        optarg, MAX_MAX_PAYMENTS);
                return 2;
            }
            o->max_payments = (size_t)u;
            break;
        case OPT_LOG:
            if (cm_log_level_parse(optarg, &o->log_level) != CM_OK) {
                fprintf(stderr, "fakepay: --log-level '%s': want error|warn|info|debug\n", optarg);
                return 2;
            }
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        case OPT_VERSION:
            printf("fakepay %s\n", BOOKING_VERSION);
            return 1;
        case ':':
            fprintf(stderr, "fakepay: %s needs a value\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            fprintf(stderr, "fakepay: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fakepay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!o->have_listen) {
        fprintf(stderr, "fakepay: --listen H:P is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    fp_daemon *d = arg;
    struct timeval flush = cm_tv_from_ms(STOP_FLUSH_MS);
    if (d->stopping) {
        log_warn("signal %d again: stopping now", (int)sig);
        event_base_loopbreak(d->base);
        return;
    }
    log_info("signal %d: graceful stop", (int)sig);
    d->stopping = true;
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
    d.sig_term = evsignal_new(d.base, SIGTERM, signal_cb, &d);
    d.sig_int = evsignal_new(d.base, SIGINT, signal_cb, &d);
    if (!d.sig_term || !d.sig_int || evsignal_add(d.sig_term, NULL) != 0 ||
        evsignal_add(d.sig_int, NULL) != 0) {
        log_error("cannot install the signal handlers");
        goto done;
    }
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
    if (d.sig_term)
        event_free(d.sig_term);
    if (d.sig_int)
        event_free(d.sig_int);
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
