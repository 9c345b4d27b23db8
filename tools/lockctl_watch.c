/*
 * lockctl watch: prints a resource's holder changes as they happen, like `etcdctl
 * watch`. Owns one async client on its own loop, a poll timer and the last state seen:
 * one SHOW at a time (SPEC §2b), the next one --interval ms after the previous answer;
 * a line is printed when held, holder, fence or lockd changed (ttl_ms and waiters move
 * all the time and are not changes of hands). The first line is the state at start.
 * Ends on SIGINT/SIGTERM (exit 0), after --count changes (exit 0), or when the first
 * SHOW fails or lockd refuses SHOW (exit 2). A lockd lost later is retried (the client
 * fails over and reconnects by itself); each outage is told once on stderr.
 * Everything is freed before lockctl_watch returns.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cm_log.h"
#include "cm_time.h"
#include "lockctl.h"

#define WATCH_DEFAULT_INTERVAL_MS 100

typedef struct watch {
    lockctl_loop loop;
    struct event_base *base; /* loop.base */
    cm_lockclient *c;
    const char *resource;
    uint64_t interval_ms;
    uint64_t count; /* 0: no limit */
    uint64_t changes;
    bool have_last; /* last holds the state at start (or later) */
    cm_lockp_show last;
    bool failing; /* the last SHOW failed and that was told */
    int exit_code;
    struct event *timer;
} watch;

static void watch_end(watch *w, int code)
{
    w->exit_code = code;
    event_base_loopbreak(w->base);
}

static bool same_hands(const cm_lockp_show *a, const cm_lockp_show *b)
{
    return a->held == b->held && a->fence == b->fence && strcmp(a->holder, b->holder) == 0 &&
           strcmp(a->lockd, b->lockd) == 0;
}

static void print_state(const cm_lockp_show *s)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03ldZ held=%d holder=%s fence=%llu lockd=%s\n", when, ts.tv_nsec / 1000000,
           s->held ? 1 : 0, s->holder, (unsigned long long)s->fence, s->lockd);
    fflush(stdout); /* a pipe reader sees each change as it happens */
}

static void watch_next(watch *w)
{
    struct timeval tv = cm_tv_from_ms(w->interval_ms);
    evtimer_add(w->timer, &tv);
}

static void on_show(void *arg, const cm_lock_result *res)
{
    watch *w = arg;
    cm_lockp_show now;
    char prefix[CM_LOCKP_RESOURCE_MAX + 32];
    snprintf(prefix, sizeof(prefix), "watch %s: SHOW failed", w->resource);
    if (res->status == CM_LOCK_OK &&
        cm_lockp_parse_show(res->line, strlen(res->line), &now) != CM_OK) {
        fprintf(stderr, "lockctl: watch %s: malformed SHOW answer '%s'\n", w->resource, res->line);
        watch_end(w, LOCKCTL_EXIT_ERROR);
        return;
    }
    if (res->status != CM_LOCK_OK) {
        /* refused (no admin right, a lockd without SHOW) or never answered: give up */
        bool fatal = !w->have_last || strcmp(res->code, "NOAUTH") == 0 ||
                     strcmp(res->code, "BADREQ") == 0 || strcmp(res->code, "AUTH") == 0;
        if (fatal || !w->failing)
            lockctl_print_error(prefix, res);
        if (fatal) {
            watch_end(w, LOCKCTL_EXIT_ERROR);
            return;
        }
        w->failing = true;
        watch_next(w);
        return;
    }
    if (w->failing)
        fprintf(stderr, "lockctl: watch %s: SHOW answered again\n", w->resource);
    w->failing = false;
    if (!w->have_last || !same_hands(&w->last, &now)) {
        bool change = w->have_last;
        print_state(&now);
        w->last = now;
        w->have_last = true;
        if (change && w->count > 0 && ++w->changes >= w->count) {
            watch_end(w, 0);
            return;
        }
    }
    watch_next(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    watch *w = arg;
    if (cm_lockclient_show(w->c, w->resource, on_show, w) != CM_OK) {
        fprintf(stderr, "lockctl: watch %s: cannot send SHOW\n", w->resource);
        watch_end(w, LOCKCTL_EXIT_ERROR);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    watch_end(arg, 0);
}

static int watch_loop(watch *w, const cm_lockclient_opts *co)
{
    struct timeval now = {0, 0};
    w->exit_code = LOCKCTL_EXIT_ERROR;
    if (!lockctl_loop_init(&w->loop, on_signal, w))
        return LOCKCTL_EXIT_ERROR;
    w->base = w->loop.base;
    w->timer = evtimer_new(w->base, on_timer, w);
    if (w->timer == NULL)
        return LOCKCTL_EXIT_ERROR;
    w->c = cm_lockclient_new(w->base, co);
    if (w->c == NULL) {
        fprintf(stderr, "lockctl: bad client options (server, name or secret)\n");
        return LOCKCTL_EXIT_ERROR;
    }
    evtimer_add(w->timer, &now);
    event_base_dispatch(w->base);
    return w->exit_code;
}

int lockctl_watch(const lockctl_opts *o, int argc, char **argv)
{
    cm_lockclient_opts co;
    cm_addr *eps = NULL;
    watch w;
    int i, rc;

    if ((rc = lockctl_resource_arg("watch", argc, argv)) >= 0)
        return rc;
    memset(&w, 0, sizeof(w));
    w.resource = argv[0];
    w.interval_ms = WATCH_DEFAULT_INTERVAL_MS;
    const cm_flag flags[] = {
        {.name = "interval",
         .type = CM_FLAG_U64,
         .dst = &w.interval_ms,
         .lo = 1,
         .hi = 3600000,
         .want = "milliseconds from 1 to 3600000"},
        {.name = "count",
         .type = CM_FLAG_U64,
         .dst = &w.count,
         .lo = 1,
         .hi = UINT64_MAX,
         .want = "a number of changes, at least 1"},
    };
    if ((rc = lockctl_parse_flags(flags, CM_ARRAY_LEN(flags), argc, argv, &i)) >= 0)
        return rc;
    if (i < argc)
        return lockctl_usage_error("unexpected argument '%s'", argv[i]);
    if (!lockctl_make_opts(o, NULL, &co, &eps))
        return LOCKCTL_EXIT_ERROR;
    int code = watch_loop(&w, &co);
    cm_lockclient_free(w.c);
    if (w.timer)
        event_free(w.timer);
    lockctl_loop_free(&w.loop);
    free(eps);
    return code;
}
