/*
 * lockbench: a LOCKP benchmark. C concurrent sessions (one async cm_lockclient each)
 * share one libevent loop in this process, so every time below is measured in-process
 * on one clock:
 *   uncontended: each session cycles ACQUIRE <own resource> 10000 0 / RELEASE;
 *                cycles/s and acquire+release latency p50/p99/p99.9.
 *   contended:   all sessions ACQUIRE one resource (waiting), hold it H ms, RELEASE;
 *                cycles/s, handoff latency (RELEASE sent -> next OK received, when the
 *                next holder was already waiting), wait time (ACQUIRE sent -> OK), and
 *                the safety checks: no two holders at once, fences strictly increasing.
 * Prints a table and one final `RESULT key=value ...` line for scripts. Exit 1 when a
 * safety check failed, 2 on usage errors or when the sessions cannot connect.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cm_addr.h"
#include "cm_flags.h"
#include "cm_hist.h"
#include "cm_lockclient.h"
#include "cm_lockp.h"
#include "cm_log.h"
#include "cm_parse.h"
#include "cm_time.h"

#define BENCH_LEASE_MS          10000
#define BENCH_CONTENDED_WAIT_MS 60000
#define BENCH_CONNECT_MS        10000

typedef enum bench_mode { MODE_UNCONTENDED, MODE_CONTENDED } bench_mode;

typedef struct bench bench;

typedef struct sess {
    bench *b;
    int idx;
    cm_lockclient *c;
    char resource[96];
    char token[CM_LOCKP_TOKEN_LEN + 1];
    uint64_t t_acq_us;     /* ACQUIRE sent */
    uint64_t t_granted_us; /* OK received */
    struct event *hold_timer;
} sess;

struct bench {
    struct event_base *base;
    bench_mode mode;
    int clients;
    int duration_s;
    uint64_t hold_ms;
    sess *s;
    int nconnected;
    bool running;
    bool failed;
    uint64_t t_start_us, t_end_us;
    struct event *stop_timer;
    struct event *ev_int;
    cm_histq cycle, acq, wait, handoff; /* latencies in microseconds */
    uint64_t cycles, errors, timeouts;
    int holder; /* contended: session holding the lock per our bookkeeping, -1 none */
    uint64_t overlaps, fence_violations, last_fence;
    uint64_t last_release_us;
};

/* The q-quantile of h in whole microseconds (0 without samples). */
static uint64_t pct(const cm_histq *h, double q)
{
    return (uint64_t)cm_histq_quantile_us(h, q);
}

static void sess_next(sess *s);

static void on_released(void *arg, const cm_lock_result *res)
{
    sess *s = arg;
    bench *b = s->b;
    if (!b->running)
        return;
    if (res->status == CM_LOCK_OK) {
        b->cycles++;
        if (b->mode == MODE_UNCONTENDED)
            cm_histq_add(&b->cycle, cm_now_us() - s->t_acq_us);
    } else {
        b->errors++;
    }
    sess_next(s);
}

static void sess_release(sess *s)
{
    bench *b = s->b;
    if (b->mode == MODE_CONTENDED) {
        b->holder = -1;
        b->last_release_us = cm_now_us();
    }
    if (cm_lockclient_release(s->c, s->resource, s->token, on_released, s) != CM_OK)
        b->errors++;
}

static void on_hold_done(evutil_socket_t fd, short what, void *arg)
{
    sess_release(arg);
}

static void on_acquired(void *arg, const cm_lock_result *res)
{
    sess *s = arg;
    bench *b = s->b;
    uint64_t now = cm_now_us();
    if (!b->running)
        return; /* freeing the client ends the session; lockd drops the lock */
    if (res->status != CM_LOCK_OK) {
        if (res->status == CM_LOCK_TIMEOUT)
            b->timeouts++;
        else
            b->errors++;
        if (b->errors + b->timeouts <= 5) /* the first few: a reason, not a flood */
            fprintf(stderr, "lockbench: session %d: ACQUIRE -> %s %s\n", s->idx,
                    res->status == CM_LOCK_TIMEOUT ? "TIMEOUT" : res->code, res->message);
        sess_next(s);
        return;
    }
    snprintf(s->token, sizeof(s->token), "%s", res->token);
    s->t_granted_us = now;
    if (b->mode == MODE_UNCONTENDED) {
        cm_histq_add(&b->acq, now - s->t_acq_us);
        sess_release(s);
        return;
    }
    cm_histq_add(&b->wait, now - s->t_acq_us);
    if (b->holder != -1)
        b->overlaps++;
    b->holder = s->idx;
    if (b->last_fence != 0 && res->fence <= b->last_fence)
        b->fence_violations++;
    b->last_fence = res->fence;
    /* a handoff: this session was already waiting when the previous holder let go */
    if (b->last_release_us != 0 && s->t_acq_us < b->last_release_us)
        cm_histq_add(&b->handoff, now - b->last_release_us);
    if (b->hold_ms == 0) {
        sess_release(s);
    } else {
        struct timeval tv = cm_tv_from_ms(b->hold_ms);
        evtimer_add(s->hold_timer, &tv);
    }
}

static void sess_next(sess *s)
{
    bench *b = s->b;
    uint64_t wait = b->mode == MODE_CONTENDED ? BENCH_CONTENDED_WAIT_MS : 0;
    s->t_acq_us = cm_now_us();
    if (cm_lockclient_acquire(s->c, s->resource, BENCH_LEASE_MS, wait, on_acquired, s, NULL) !=
        CM_OK) {
        b->errors++;
        b->failed = true;
        event_base_loopbreak(b->base);
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    if (!b->running) {
        fprintf(stderr, "lockbench: only %d of %d sessions connected in time\n", b->nconnected,
                b->clients);
        b->failed = true;
    }
    b->running = false;
    b->t_end_us = cm_now_us();
    event_base_loopbreak(b->base);
}

static void on_state(void *arg, bool connected)
{
    sess *s = arg;
    bench *b = s->b;
    if (!connected) {
        if (b->running)
            b->errors++;
        return;
    }
    if (b->running || ++b->nconnected < b->clients)
        return;
    struct timeval tv = cm_tv_from_ms((uint64_t)b->duration_s * 1000);
    evtimer_del(b->stop_timer);
    evtimer_add(b->stop_timer, &tv);
    b->running = true;
    b->t_start_us = cm_now_us();
    for (int i = 0; i < b->clients; i++)
        sess_next(&b->s[i]);
}

/* --mode uncontended|contended */
static bool parse_mode(const char *v, void *dst, char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    bench_mode *m = dst;
    if (strcmp(v, "uncontended") == 0)
        *m = MODE_UNCONTENDED;
    else if (strcmp(v, "contended") == 0)
        *m = MODE_CONTENDED;
    else
        return false;
    return true;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: lockbench --server H:P [--server2 H:P] [--clients C] [--duration S]\n"
                 "                 [--mode uncontended|contended] [--hold MS]\n"
                 "defaults: --clients 64 --duration 10 --mode uncontended --hold 1\n");
}

static void report(bench *b, const char *servers)
{
    double secs = (double)(b->t_end_us - b->t_start_us) / 1e6;
    double rate = secs > 0 ? (double)b->cycles / secs : 0;

    printf("lockbench  mode=%s  clients=%d  duration=%.2fs  hold=%llums  servers=%s\n",
           b->mode == MODE_CONTENDED ? "contended" : "uncontended", b->clients, secs,
           (unsigned long long)b->hold_ms, servers);
    printf("  %-22s %12llu\n", "cycles", (unsigned long long)b->cycles);
    printf("  %-22s %12.1f\n", "cycles/s", rate);
    if (b->mode == MODE_UNCONTENDED) {
        printf("  %-22s %9s %9s %9s\n", "latency (ms)", "p50", "p99", "p99.9");
        printf("  %-22s %9.3f %9.3f %9.3f\n", "acquire+release", pct(&b->cycle, 0.5) / 1e3,
               pct(&b->cycle, 0.99) / 1e3, pct(&b->cycle, 0.999) / 1e3);
        printf("  %-22s %9.3f %9.3f %9.3f\n", "acquire", pct(&b->acq, 0.5) / 1e3,
               pct(&b->acq, 0.99) / 1e3, pct(&b->acq, 0.999) / 1e3);
    } else {
        uint64_t wmax = b->wait.max_us;
        printf("  %-22s %9s %9s %9s\n", "latency (ms)", "p50", "p99", "max");
        printf("  %-22s %9.3f %9.3f %9.3f\n", "handoff", pct(&b->handoff, 0.5) / 1e3,
               pct(&b->handoff, 0.99) / 1e3, (double)b->handoff.max_us / 1e3);
        printf("  %-22s %9.3f %9.3f %9.3f\n", "wait", pct(&b->wait, 0.5) / 1e3,
               pct(&b->wait, 0.99) / 1e3, wmax / 1e3);
        printf("  %-22s %12llu\n", "overlaps", (unsigned long long)b->overlaps);
        printf("  %-22s %12llu\n", "fence violations", (unsigned long long)b->fence_violations);
    }
    printf("  %-22s %12llu\n", "timeouts", (unsigned long long)b->timeouts);
    printf("  %-22s %12llu\n", "errors", (unsigned long long)b->errors);

    if (b->mode == MODE_UNCONTENDED) {
        printf("RESULT impl=lockd mode=uncontended clients=%d duration_s=%.2f cycles=%llu "
               "cycles_per_s=%.1f "
               "cycle_p50_us=%llu cycle_p99_us=%llu cycle_p999_us=%llu acquire_p50_us=%llu "
               "acquire_p99_us=%llu acquire_p999_us=%llu timeouts=%llu errors=%llu\n",
               b->clients, secs, (unsigned long long)b->cycles, rate,
               (unsigned long long)pct(&b->cycle, 0.5), (unsigned long long)pct(&b->cycle, 0.99),
               (unsigned long long)pct(&b->cycle, 0.999), (unsigned long long)pct(&b->acq, 0.5),
               (unsigned long long)pct(&b->acq, 0.99), (unsigned long long)pct(&b->acq, 0.999),
               (unsigned long long)b->timeouts, (unsigned long long)b->errors);
    } else {
        printf(
            "RESULT impl=lockd mode=contended clients=%d duration_s=%.2f hold_ms=%llu cycles=%llu "
            "cycles_per_s=%.1f handoff_p50_us=%llu handoff_p99_us=%llu wait_p50_ms=%.3f "
            "wait_p99_ms=%.3f wait_max_ms=%.3f overlaps=%llu fence_violations=%llu "
            "timeouts=%llu errors=%llu\n",
            b->clients, secs, (unsigned long long)b->hold_ms, (unsigned long long)b->cycles, rate,
            (unsigned long long)pct(&b->handoff, 0.5), (unsigned long long)pct(&b->handoff, 0.99),
            pct(&b->wait, 0.5) / 1e3, pct(&b->wait, 0.99) / 1e3, (double)b->wait.max_us / 1e3,
            (unsigned long long)b->overlaps, (unsigned long long)b->fence_violations,
            (unsigned long long)b->timeouts, (unsigned long long)b->errors);
    }
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
    on_stop(fd, what, arg);
}

int main(int argc, char **argv)
{
    const char *server = NULL, *server2 = NULL;
    cm_addr a1, a2;
    char err[256];
    bench b;
    int code = 2;

    memset(&b, 0, sizeof(b));
    b.clients = 64;
    b.duration_s = 10;
    b.hold_ms = 1;
    b.holder = -1;
    b.mode = MODE_UNCONTENDED;
    cm_log_init("lockbench", CM_LOG_WARN);
    uint64_t clients = 64, duration_s = 10;
    const cm_flag flags[] = {
        {.name = "server", .type = CM_FLAG_STRING, .dst = &server, .required = true},
        {.name = "server2", .type = CM_FLAG_STRING, .dst = &server2},
        {.name = "clients", .type = CM_FLAG_U64, .dst = &clients, .lo = 1, .hi = 10000},
        {.name = "duration", .type = CM_FLAG_U64, .dst = &duration_s, .lo = 1, .hi = 86400},
        /* 0: release at once */
        {.name = "hold", .type = CM_FLAG_U64, .dst = &b.hold_ms, .lo = 0, .hi = 60000},
        {.name = "mode",
         .type = CM_FLAG_CUSTOM,
         .dst = &b.mode,
         .parse = parse_mode,
         .want = "uncontended or contended"},
    };
    const cm_flags_spec spec = {
        .prog = "lockbench", .flags = flags, .nflags = CM_ARRAY_LEN(flags), .usage = usage};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, NULL);
    if (res != CM_FLAGS_RUN)
        return CM_FLAGS_EXIT(res);
    b.clients = (int)clients;
    b.duration_s = (int)duration_s;
    if (cm_addr_parse(server, &a1, err, sizeof(err)) != CM_OK ||
        (server2 && cm_addr_parse(server2, &a2, err, sizeof(err)) != CM_OK)) {
        fprintf(stderr, "lockbench: bad server address: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* timerfd-backed timers: epoll_wait's millisecond timeout would stretch a 1 ms hold
     * to several ms and measure the timer instead of the lock */
    struct event_config *cfg = event_config_new();
    if (cfg != NULL) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        b.base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    b.s = calloc((size_t)b.clients, sizeof(*b.s));
    b.stop_timer = evtimer_new(b.base, on_stop, &b);
    b.ev_int = evsignal_new(b.base, SIGINT, on_sigint, &b);
    if (b.base == NULL || b.s == NULL || b.stop_timer == NULL || b.ev_int == NULL ||
        evsignal_add(b.ev_int, NULL) != 0)
        goto out;
    for (int i = 0; i < b.clients; i++) {
        sess *s = &b.s[i];
        cm_lockclient_opts co = {0};
        char name[32];
        snprintf(name, sizeof(name), "lockbench-%d", i);
        co.endpoints = (server2 && (i % 2)) ? &a2 : &a1;
        co.n_endpoints = 1;
        co.client_name = name;
        co.request_slack_ms = 5000;
        s->b = &b;
        s->idx = i;
        if (b.mode == MODE_CONTENDED)
            snprintf(s->resource, sizeof(s->resource), "bench:contended:%d", (int)getpid());
        else
            snprintf(s->resource, sizeof(s->resource), "bench:%d:%d", (int)getpid(), i);
        s->hold_timer = evtimer_new(b.base, on_hold_done, s);
        s->c = cm_lockclient_new(b.base, &co);
        if (s->c == NULL || s->hold_timer == NULL)
            goto out;
        cm_lockclient_on_state(s->c, on_state, s);
    }
    struct timeval tv = cm_tv_from_ms(BENCH_CONNECT_MS);
    evtimer_add(b.stop_timer, &tv);
    event_base_dispatch(b.base);
    if (b.failed)
        goto out;
    report(&b, server2 ? "2" : "1");
    code = (b.overlaps || b.fence_violations) ? 1 : 0;
out:
    for (int i = 0; b.s != NULL && i < b.clients; i++) {
        cm_lockclient_free(b.s[i].c);
        if (b.s[i].hold_timer)
            event_free(b.s[i].hold_timer);
    }
    free(b.s);
    if (b.stop_timer)
        event_free(b.stop_timer);
    if (b.ev_int)
        event_free(b.ev_int);
    if (b.base)
        event_base_free(b.base);
    return code;
}
