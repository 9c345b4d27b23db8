/*
 * test_client_paused: the C lock client's promise with a PAUSED holder (SPEC §3b, the session
 * bound of docs/protocol.md "Lost locks"): a holder process stopped (SIGSTOP, a GC pause, a VM
 * stall) right after its grant is ended by lockd once it was silent for session.timeout_ms, and
 * lockd hands its locks to the next waiter at once (session.lock_delay_ms 0). The holder's own
 * deadline for every lock, watchdog or fixed lease, must have passed before that: it is bounded
 * by its last send + the session timeout (less the margin), because lockd's silence timer
 * starts at its last receipt, which is later. Against real redis-server and build/bin/lockd
 * (th harness); the holder is a forked child that records its lock history (cm_lockhist), the
 * waiters and a live holder run in the test process, all on one CLOCK_MONOTONIC.
 * Kept apart from test_client.c (at its line limit); the binary runs one test when given its
 * name (ctest registers one entry per test).
 */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cm_lockclient.h"
#include "cm_lockhist.h"
#include "cm_log.h"
#include "it_common.h"
#include "th.h"
#include "th_check.h"

/* A session timeout well below the watchdog lease and the fixed lease below: the deadlines
 * of SPEC §3b's validity rules alone end long after lockd's session expiry. */
#define SESSION_MS 1000
#define LOCKD_YAML                                                                                 \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 3000}\n"                                                                 \
    "redlock: {redis_timeout_ms: 250}\n"
#define FIXED_LEASE_MS 5000 /* the paused holder's fixed lease: 5 session timeouts */
#define LIVE_LEASE_MS  6000 /* the live holder's fixed lease */
#define LIVE_HOLD_MS   3000 /* how long the live holder keeps its locks: 3 session timeouts */

static const char *const paused_res[2] = {"P:watchdog", "P:fixed"};

static cm_lockclient *new_client(struct event_base *base, int port, const char *name)
{
    cm_addr ep;
    cm_lockclient_opts o;
    memset(&o, 0, sizeof(o));
    memset(&ep, 0, sizeof(ep));
    snprintf(ep.host, sizeof(ep.host), "127.0.0.1");
    ep.port = port;
    o.endpoints = &ep;
    o.n_endpoints = 1;
    o.client_name = name;
    o.connect_timeout_ms = 500;
    return cm_lockclient_new(base, &o);
}

static void run_ms(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Three masters and a lockd with LOCKD_YAML; hist: a fresh history path named for who. */
static void start_world(th_redis redis[3], th_lockd *lockd, const char *who, char *hist,
                        size_t hist_len)
{
    memset(redis, 0, 3 * sizeof(*redis));
    memset(lockd, 0, sizeof(*lockd));
    for (int i = 0; i < 3; i++)
        ck_assert_msg(th_redis_start(&redis[i]), "redis-server %d did not start", i);
    ck_assert_msg(th_lockd_start(lockd, redis, 3, LOCKD_YAML), "lockd did not start (see %s)",
                  lockd->log);
    /* lockd accepts sessions once a quorum of its masters counts: all three up first,
     * as the integration tests do */
    it_wait_masters(lockd, 3, 5000);
    snprintf(hist, hist_len, "%s/locks-%s.jsonl", th_tmpdir(), who);
    unlink(hist);
}

/* ---------------------------------------------------------------- the paused holder (child) */

typedef struct child_ctx {
    int granted, lost;
    bool failed;
} child_ctx;

static void child_grant_cb(void *arg, const cm_lock_result *r)
{
    child_ctx *x = arg;
    if (r->status != CM_LOCK_OK)
        x->failed = true;
    else
        x->granted++;
}

static void child_lost_cb(void *arg, const char *resource, const char *token)
{
    ((child_ctx *)arg)->lost++;
}

/* Takes both locks (the watchdog lease, then the fixed lease), stops itself right after the
 * second grant (its last send was that ACQUIRE), and once continued runs its loop until both
 * are lost. Its lock events go to hist_path. Exit 0, or a code saying what went wrong. */
static void child_main(int port, const char *hist_path)
{
    char err[256];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct event_base *base = event_base_new();
    cm_lockclient *c = base != NULL ? new_client(base, port, "paused-holder") : NULL;
    cm_lockhist *h = cm_lockhist_open(hist_path, "holder", err, sizeof(err));
    if (c == NULL || h == NULL || cm_lockhist_attach(h, c, NULL) != CM_OK)
        _exit(10);
    child_ctx x = {0};
    cm_lockclient_on_lost(c, child_lost_cb, &x);
    if (cm_lockclient_acquire(c, paused_res[0], 0, 2000, child_grant_cb, &x, NULL) != CM_OK ||
        cm_lockclient_acquire(c, paused_res[1], FIXED_LEASE_MS, 2000, child_grant_cb, &x, NULL) !=
            CM_OK)
        _exit(11);
    uint64_t until = th_now_ms() + 5000;
    while (x.granted < 2 && !x.failed && th_now_ms() < until)
        event_base_loop(base, EVLOOP_ONCE);
    if (x.granted < 2)
        _exit(12);
    raise(SIGSTOP); /* a pause right after the grant: the test continues us later */
    until = th_now_ms() + 5000;
    while (x.lost < 2 && th_now_ms() < until)
        run_ms(base, 5);
    int rc = x.lost == 2 ? 0 : 13;
    cm_lockclient_free(c);
    cm_lockhist_close(h);
    event_base_free(base);
    _exit(rc);
}

/* ---------------------------------------------------------------- the test process */

typedef struct box {
    bool done;
    cm_lock_result r;
    uint64_t at_us;
} box;

static void box_cb(void *arg, const cm_lock_result *r)
{
    box *b = arg;
    b->done = true;
    b->r = *r;
    b->at_us = th_now_us();
}

/* The live holder's view of its own history: the deadline its last event recorded. */
typedef struct live_ctx {
    uint64_t recorded_us[2];
    int renews, lost;
} live_ctx;

static const char *const live_res[2] = {"L:watchdog", "L:fixed"};

static void live_event_cb(void *arg, const cm_lock_event *ev)
{
    live_ctx *x = arg;
    int i = strcmp(ev->resource, live_res[0]) == 0 ? 0 : 1;
    if (ev->kind == CM_LOCK_EV_GRANT || ev->kind == CM_LOCK_EV_RENEW)
        x->recorded_us[i] = ev->deadline_us;
    x->renews += ev->kind == CM_LOCK_EV_RENEW;
    x->lost += ev->kind == CM_LOCK_EV_LOST;
}

/* Serves the test process's clients for ms; the live holder's recorded deadlines must stay
 * in the future the whole time (a history whose deadline lags behind a live lock would end
 * its interval early and hide overlaps from chaos_check). */
static void serve(struct event_base *base, const live_ctx *live, int ms)
{
    uint64_t until = th_now_ms() + (uint64_t)ms;
    while (th_now_ms() < until) {
        run_ms(base, 5);
        for (int i = 0; i < 2; i++)
            ck_assert_msg(live->recorded_us[i] > th_now_us(),
                          "%s: the recorded deadline is %" PRIu64 " ms old while it is held",
                          live_res[i], (th_now_us() - live->recorded_us[i]) / 1000);
    }
}

/* The deadline_us of the history line of `ev` for resource res: the last such line's (0:
 * none); *n counts them. */
static uint64_t hist_deadline(const char *path, const char *res, const char *ev, int *n)
{
    char line[1024], want_res[300], want_ev[32];
    uint64_t d = 0;
    snprintf(want_res, sizeof(want_res), "\"res\":\"%s\"", res);
    snprintf(want_ev, sizeof(want_ev), "\"ev\":\"%s\"", ev);
    *n = 0;
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, want_res) || !strstr(line, want_ev))
            continue;
        const char *p = strstr(line, "\"deadline_us\":");
        (*n)++;
        d = p != NULL ? strtoull(p + 14, NULL, 10) : 0;
    }
    fclose(f);
    return d;
}

/* A holder that takes a watchdog lease (3000 ms) and a fixed lease (5000 ms) and is stopped
 * right after, for longer than the session timeout (1000 ms), while this process's sessions
 * wait for both locks: lockd ends the holder's session and grants them. Each lock's local
 * deadline, as the holder's history records it (grant, renew, and the deadline in force when
 * it was lost), must come before the waiter's grant. Without the session bound the watchdog
 * deadline ran ~1.9 s and the fixed one ~3.9 s past the moment lockd handed the lock on. A
 * live holder in this process keeps a watchdog lease and a fixed lease (6000 ms) for three
 * session timeouts: the bound moves with its PINGs, it loses nothing. */
START_TEST(test_lost_first_holder_paused)
{
    th_redis redis[3];
    th_lockd lockd;
    char hist[512];
    start_world(redis, &lockd, "holder", hist, sizeof(hist));

    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        child_main(lockd.port, hist);

    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    cm_lockclient *live = new_client(base, lockd.port, "live");
    cm_lockclient *waiter = new_client(base, lockd.port, "waiter");
    ck_assert(live != NULL && waiter != NULL);
    live_ctx lx = {{0}, 0, 0};
    cm_lockclient_on_event(live, live_event_cb, &lx);
    box lg[2] = {{0}};
    ck_assert_int_eq(cm_lockclient_acquire(live, live_res[0], 0, 5000, box_cb, &lg[0], NULL),
                     CM_OK);
    ck_assert_int_eq(
        cm_lockclient_acquire(live, live_res[1], LIVE_LEASE_MS, 5000, box_cb, &lg[1], NULL), CM_OK);

    /* the holder stops itself right after its second grant */
    int st = 0;
    uint64_t until = th_now_ms() + 8000;
    pid_t w = 0;
    while (w == 0 && th_now_ms() < until) {
        run_ms(base, 5);
        w = waitpid(child, &st, WNOHANG | WUNTRACED);
    }
    ck_assert_msg(w == child && WIFSTOPPED(st), "the holder did not take its locks (status %d)",
                  st);
    ck_assert(lg[0].done && lg[0].r.status == CM_LOCK_OK);
    ck_assert(lg[1].done && lg[1].r.status == CM_LOCK_OK);
    uint64_t t_stop = th_now_us();

    box wg[2] = {{0}};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(
            cm_lockclient_acquire(waiter, paused_res[i], 0, 8000, box_cb, &wg[i], NULL), CM_OK);
    until = th_now_ms() + 9000;
    while (!(wg[0].done && wg[1].done) && th_now_ms() < until)
        serve(base, &lx, 5);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(wg[i].done && wg[i].r.status == CM_LOCK_OK,
                      "lockd did not grant %s to the waiter while the holder was stopped",
                      paused_res[i]);
    serve(base, &lx, 100);
    kill(child, SIGCONT);
    w = 0;
    until = th_now_ms() + 8000;
    while (w == 0 && th_now_ms() < until) {
        serve(base, &lx, 5);
        w = waitpid(child, &st, WNOHANG);
    }
    if (w == 0) {
        kill(child, SIGKILL);
        waitpid(child, &st, 0);
    }
    ck_assert_msg(w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "the holder did not lose both locks after it was continued (status %d)", st);

    /* every deadline the holder's history holds, against the waiter's grant of that lock;
     * all of them reported at once (the case fails for each lock on its own) */
    char late[1024] = "";
    size_t pos = 0;
    for (int i = 0; i < 2; i++) {
        static const char *const evs[] = {"grant", "renew", "lost"};
        uint64_t granted = wg[i].at_us;
        int n = 0;
        for (size_t k = 0; k < 3; k++) {
            uint64_t d = hist_deadline(hist, paused_res[i], evs[k], &n);
            ck_assert_msg(k == 1 || n == 1, "%s: %d %s lines in the holder's history",
                          paused_res[i], n, evs[k]);
            if (n == 0)
                continue;
            if (d == 0 && k == 2 && pos < sizeof(late)) {
                /* lost (told after the waiter's grant) while its own deadline was still ahead */
                pos += (size_t)snprintf(late + pos, sizeof(late) - pos,
                                        "; %s: lost before its deadline passed", paused_res[i]);
                continue;
            }
            ck_assert_msg(d > 0, "%s: the %s line has no deadline", paused_res[i], evs[k]);
            double ms = ((double)d - (double)granted) / 1000.0;
            if (d >= granted && pos < sizeof(late))
                pos += (size_t)snprintf(late + pos, sizeof(late) - pos,
                                        "; %s: the holder's %s deadline is %.1f ms after the "
                                        "waiter's grant",
                                        paused_res[i], evs[k], ms);
            else if (k == 2)
                fprintf(stderr,
                        "%s: the holder's deadline ended %.1f ms before the waiter's "
                        "grant (%.1f ms after the holder stopped)\n",
                        paused_res[i], -ms, ((double)d - (double)t_stop) / 1000.0);
        }
    }
    ck_assert_msg(late[0] == '\0', "stopped %.1f ms before the first grant%s",
                  (double)(wg[0].at_us - t_stop) / 1000.0, late);

    /* three session timeouts after its grants the live holder still holds both */
    uint64_t live_end_ms = lg[1].at_us / 1000 + LIVE_HOLD_MS;
    if (th_now_ms() < live_end_ms)
        serve(base, &lx, (int)(live_end_ms - th_now_ms()));
    ck_assert_int_eq(lx.lost, 0);
    ck_assert_msg(lx.renews >= 2, "the live holder's history has %d renew lines", lx.renews);
    box rel[2] = {{0}};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cm_lockclient_release(live, live_res[i], lg[i].r.token, box_cb, &rel[i]),
                         CM_OK);
    until = th_now_ms() + 3000;
    while (!(rel[0].done && rel[1].done) && th_now_ms() < until)
        run_ms(base, 5);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(rel[i].done && rel[i].r.status == CM_LOCK_OK,
                      "%s was not held to the end by the live holder", live_res[i]);
    cm_lockclient_free(live);
    cm_lockclient_free(waiter);
    event_base_free(base);
    th_stop_all();
}
END_TEST

/* The waiting holder (child): connects, sends ACQUIRE G (a watchdog lease, waiting up to 8 s)
 * and stops itself at once, so that lockd's grant waits unread in its socket while lockd ends
 * its silent session and grants G to the next waiter. Continued, it sends a PING before its
 * loop reads the grant, runs the loop for 2 s and exits 0. */
static void waiting_child_main(int port, const char *hist_path)
{
    char err[256];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct event_base *base = event_base_new();
    cm_lockclient *c = base != NULL ? new_client(base, port, "waiting-holder") : NULL;
    cm_lockhist *h = cm_lockhist_open(hist_path, "waiting", err, sizeof(err));
    if (c == NULL || h == NULL || cm_lockhist_attach(h, c, NULL) != CM_OK)
        _exit(10);
    uint64_t until = th_now_ms() + 3000;
    while (!cm_lockclient_connected(c) && th_now_ms() < until)
        run_ms(base, 5);
    child_ctx x = {0};
    if (!cm_lockclient_connected(c) ||
        cm_lockclient_acquire(c, "G", 0, 8000, child_grant_cb, &x, NULL) != CM_OK)
        _exit(11);
    run_ms(base, 20); /* the ACQUIRE goes out */
    raise(SIGSTOP);
    /* awake: a request goes out before the loop reads the socket (an application's next
     * request, or the keep-alive PING when its timer runs first) */
    child_ctx pong = {0};
    if (cm_lockclient_ping(c, child_grant_cb, &pong) != CM_OK)
        _exit(12);
    run_ms(base, 2000);
    cm_lockclient_free(c);
    cm_lockhist_close(h);
    event_base_free(base);
    _exit(0);
}

/* A grant read after a pause: the ACQUIRE went out, the holder stopped, lockd granted it the
 * lock, ended its silent session and granted the lock to the next waiter (a greater fence).
 * Continued, the holder must not count the grant as held past that other grant (before: its
 * waking loop sent a PING first, the session bound was counted from that send, and the grant
 * got a deadline after the other's grant, with the smaller fence: a fence going back in
 * chaos/run's lock history). */
START_TEST(test_grant_read_after_pause)
{
    th_redis redis[3];
    th_lockd lockd;
    char hist[512];
    start_world(redis, &lockd, "waiting", hist, sizeof(hist));
    struct event_base *base = event_base_new();
    ck_assert_ptr_nonnull(base);
    cm_lockclient *first = new_client(base, lockd.port, "first");
    cm_lockclient *next = new_client(base, lockd.port, "next");
    ck_assert(first != NULL && next != NULL);
    box a = {0};
    ck_assert_int_eq(cm_lockclient_acquire(first, "G", 0, 5000, box_cb, &a, NULL), CM_OK);
    uint64_t until = th_now_ms() + 5000;
    while (!a.done && th_now_ms() < until)
        run_ms(base, 5);
    ck_assert(a.done && a.r.status == CM_LOCK_OK);

    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        waiting_child_main(lockd.port, hist);
    int st = 0;
    pid_t w = 0;
    until = th_now_ms() + 5000;
    while (w == 0 && th_now_ms() < until) {
        run_ms(base, 5);
        w = waitpid(child, &st, WNOHANG | WUNTRACED);
    }
    ck_assert_msg(w == child && WIFSTOPPED(st), "the waiting holder did not stop (status %d)", st);
    run_ms(base, 100); /* its ACQUIRE waits at lockd: the child is first in line */
    box b = {0}, rel = {0};
    ck_assert_int_eq(cm_lockclient_acquire(next, "G", 0, 8000, box_cb, &b, NULL), CM_OK);
    run_ms(base, 50);
    ck_assert_int_eq(cm_lockclient_release(first, "G", a.r.token, box_cb, &rel), CM_OK);
    until = th_now_ms() + 8000;
    while (!b.done && th_now_ms() < until)
        run_ms(base, 5);
    ck_assert_msg(b.done && b.r.status == CM_LOCK_OK,
                  "the next waiter was not granted G while the holder was stopped");
    kill(child, SIGCONT);
    w = 0;
    until = th_now_ms() + 6000;
    while (w == 0 && th_now_ms() < until) {
        run_ms(base, 5);
        w = waitpid(child, &st, WNOHANG);
    }
    if (w == 0) {
        kill(child, SIGKILL);
        waitpid(child, &st, 0);
    }
    ck_assert_msg(w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    int n = 0;
    uint64_t d = hist_deadline(hist, "G", "grant", &n);
    if (n > 0)
        ck_assert_msg(d < b.at_us,
                      "the stopped holder's grant (fence below %" PRIu64 ") has a deadline %.1f ms "
                      "after the next waiter's grant",
                      b.r.fence, ((double)d - (double)b.at_us) / 1000.0);
    cm_lockclient_free(first);
    cm_lockclient_free(next);
    event_base_free(base);
    th_stop_all();
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"lost_first_holder_paused", test_lost_first_holder_paused},
        {"grant_read_after_pause", test_grant_read_after_pause},
    };
    cm_log_init("test_client_paused", CM_LOG_ERROR);
    return th_check_main("client", cases, sizeof(cases) / sizeof(cases[0]), 60, argc, argv);
}
