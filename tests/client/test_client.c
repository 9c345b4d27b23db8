/*
 * test_client: the lock client library (cm_lockclient async, with_lock guard, blocking
 * wrapper) and lockctl, end to end against REAL redis-server and build/bin/lockd
 * processes started by the th harness. Each test starts its own servers inside its
 * (forked) test process and stops them by PID; th_stop_all also runs from an unchecked
 * teardown and at exit, and PDEATHSIG covers a crashed test.
 * The binary runs one test when given its name (ctest registers one entry per test).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cm_lockclient.h"
#include "cm_log.h"
#include "it_common.h"
#include "th.h"
#include "th_check.h"

#define LOCKD_YAML                                                                                 \
    "session: {timeout_ms: 3000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 2000}\n"

/* ---------------------------------------------------------------- fixtures */

typedef struct env {
    th_redis redis[3];
    th_lockd lockd[2];
    int n_lockd;
    struct event_base *base;
} env;

static void env_start(env *e, int n_lockd)
{
    memset(e, 0, sizeof(*e));
    for (int i = 0; i < 3; i++)
        ck_assert_msg(th_redis_start(&e->redis[i]), "redis-server %d did not start", i);
    for (int i = 0; i < n_lockd; i++)
        ck_assert_msg(th_lockd_start(&e->lockd[i], e->redis, 3, LOCKD_YAML),
                      "lockd %d did not start (see %s)", i, e->lockd[i].log);
    for (int i = 0; i < n_lockd; i++)
        it_wait_masters(&e->lockd[i], 3, 5000); /* as the integration tests start */
    e->n_lockd = n_lockd;
    e->base = event_base_new();
    ck_assert_ptr_nonnull(e->base);
}

static void env_stop(env *e)
{
    if (e->base != NULL)
        event_base_free(e->base);
    e->base = NULL;
    th_stop_all();
}

static cm_lockclient_opts client_opts(env *e, cm_addr *eps, int first, int n)
{
    cm_lockclient_opts o;
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < n; i++) {
        snprintf(eps[i].host, sizeof(eps[i].host), "127.0.0.1");
        eps[i].port = e->lockd[first + i].port;
    }
    o.endpoints = eps;
    o.n_endpoints = (size_t)n;
    o.client_name = "test";
    o.connect_timeout_ms = 500;
    o.reconnect_max_ms = 200;
    return o;
}

static cm_lockclient *client_new(env *e, int first, int n)
{
    cm_addr eps[2];
    cm_lockclient_opts o = client_opts(e, eps, first, n);
    cm_lockclient *c = cm_lockclient_new(e->base, &o);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Runs the loop until *flag is true or timeout_ms passed. */
static bool run_until(env *e, const bool *flag, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (!*flag && th_now_ms() < deadline) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(e->base, &tv);
        event_base_dispatch(e->base);
    }
    return *flag;
}

static void run_for(env *e, int ms)
{
    bool never = false;
    run_until(e, &never, ms);
}

/* A request's outcome, kept past its callback. */
typedef struct box {
    bool done;
    int calls;
    cm_lock_result r;
    char message[256];
    char line[4096];
    uint64_t at_ms;
    uint64_t at_us;
} box;

static void box_cb(void *arg, const cm_lock_result *r)
{
    box *b = arg;
    b->calls++;
    b->done = true;
    b->r = *r;
    b->at_ms = th_now_ms();
    b->at_us = th_now_us();
    snprintf(b->message, sizeof(b->message), "%s", r->message);
    snprintf(b->line, sizeof(b->line), "%s", r->line);
    b->r.message = b->message;
    b->r.line = b->line;
}

static void wait_connected(env *e, cm_lockclient *c)
{
    uint64_t deadline = th_now_ms() + 3000;
    while (!cm_lockclient_connected(c) && th_now_ms() < deadline)
        run_for(e, 10);
    ck_assert_msg(cm_lockclient_connected(c), "client did not connect");
}

static cm_lock_result acquire(env *e, cm_lockclient *c, const char *res, uint64_t wait_ms)
{
    box b = {0};
    ck_assert_int_eq(cm_lockclient_acquire(c, res, 0, wait_ms, box_cb, &b, NULL), CM_OK);
    ck_assert_msg(run_until(e, &b.done, (int)wait_ms + 5000), "no reply to ACQUIRE %s", res);
    ck_assert_int_eq(b.calls, 1);
    return b.r;
}

static cm_lock_status release(env *e, cm_lockclient *c, const char *res, const char *token)
{
    box b = {0};
    ck_assert_int_eq(cm_lockclient_release(c, res, token, box_cb, &b), CM_OK);
    ck_assert_msg(run_until(e, &b.done, 5000), "no reply to RELEASE %s", res);
    return b.r.status;
}

typedef struct lost_log {
    int n;
    char resource[300];
    char token[40];
    uint64_t at_us;      /* when the first loss was reported */
    int n_info;          /* on_lost_info calls */
    char reasons[8][40]; /* the first 8 reasons, in order */
    bool local[8];
} lost_log;

static void lost_cb(void *arg, const char *resource, const char *token)
{
    lost_log *l = arg;
    if (l->n++ == 0)
        l->at_us = th_now_us();
    snprintf(l->resource, sizeof(l->resource), "%s", resource);
    snprintf(l->token, sizeof(l->token), "%s", token);
}

static void lost_info_cb(void *arg, const cm_lock_lost_info *info)
{
    lost_log *l = arg;
    if (l->n_info < 8) {
        snprintf(l->reasons[l->n_info], sizeof(l->reasons[0]), "%s", info->reason);
        l->local[l->n_info] = info->local;
    }
    l->n_info++;
}

typedef struct state_log {
    int ups, downs;
} state_log;

static void state_cb(void *arg, bool connected)
{
    state_log *s = arg;
    if (connected)
        s->ups++;
    else
        s->downs++;
}

/* ---------------------------------------------------------------- async client */

START_TEST(test_acquire_release)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *a = client_new(&e, 0, 1);
    cm_lockclient *b = client_new(&e, 0, 1);

    /* a request made while connecting is queued and sent once the session is up */
    cm_lock_result g1 = acquire(&e, a, "Performance:1", 0);
    ck_assert_int_eq(g1.status, CM_LOCK_OK);
    ck_assert_uint_eq(strlen(g1.token), 32);
    ck_assert_uint_gt(g1.fence, 0);
    ck_assert_uint_gt(g1.validity_ms, 0);

    cm_lock_result busy = acquire(&e, b, "Performance:1", 0);
    ck_assert_int_eq(busy.status, CM_LOCK_TIMEOUT);

    box rn = {0};
    ck_assert_int_eq(cm_lockclient_renew(a, "Performance:1", g1.token, 5000, box_cb, &rn), CM_OK);
    ck_assert(run_until(&e, &rn.done, 3000));
    ck_assert_int_eq(rn.r.status, CM_LOCK_OK);
    ck_assert_uint_gt(rn.r.validity_ms, 0);

    ck_assert_int_eq(release(&e, a, "Performance:1", g1.token), CM_LOCK_OK);
    ck_assert_int_eq(release(&e, a, "Performance:1", g1.token), CM_LOCK_LOST);

    cm_lock_result g2 = acquire(&e, b, "Performance:1", 0);
    ck_assert_int_eq(g2.status, CM_LOCK_OK);
    ck_assert_uint_gt(g2.fence, g1.fence);
    /* a holds no lock: HELD is only for the same session */
    cm_lock_result held = acquire(&e, b, "Performance:1", 0);
    ck_assert_int_eq(held.status, CM_LOCK_ERROR);
    ck_assert_str_eq(held.code, "HELD");

    box ping = {0}, info = {0};
    ck_assert_int_eq(cm_lockclient_ping(a, box_cb, &ping), CM_OK);
    ck_assert_int_eq(cm_lockclient_info(a, box_cb, &info), CM_OK);
    ck_assert(run_until(&e, &info.done, 3000) && run_until(&e, &ping.done, 3000));
    ck_assert_int_eq(ping.r.status, CM_LOCK_OK);
    ck_assert_str_eq(ping.r.line, "PONG");
    ck_assert_int_eq(info.r.status, CM_LOCK_OK);
    ck_assert_ptr_nonnull(strstr(info.r.line, "sessions="));

    /* bad arguments: CM_ERR and no callback */
    box bad = {0};
    ck_assert_int_eq(cm_lockclient_acquire(a, "has space", 0, 0, box_cb, &bad, NULL), CM_ERR);
    ck_assert_int_eq(cm_lockclient_release(a, "R", "not-a-token", box_cb, &bad), CM_ERR);
    run_for(&e, 50);
    ck_assert_int_eq(bad.calls, 0);

    cm_lockclient_free(a);
    cm_lockclient_free(b);
    env_stop(&e);
}
END_TEST

START_TEST(test_timeout)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *a = client_new(&e, 0, 1);
    cm_lockclient *b = client_new(&e, 0, 1);
    cm_lock_result g = acquire(&e, a, "T", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    wait_connected(&e, b);
    uint64_t t0 = th_now_ms();
    cm_lock_result t = acquire(&e, b, "T", 400);
    uint64_t took = th_now_ms() - t0;
    ck_assert_int_eq(t.status, CM_LOCK_TIMEOUT);
    ck_assert_msg(took >= 350 && took < 2000, "TIMEOUT after %llu ms, wanted ~400",
                  (unsigned long long)took);
    cm_lockclient_free(a);
    cm_lockclient_free(b);
    env_stop(&e);
}
END_TEST

/* A waiting ACQUIRE on a client that is freed from inside another callback: the free is
 * deferred, no further callbacks run, nothing leaks (ASan checks). */
typedef struct free_ctx {
    cm_lockclient *c;
    bool freed;
} free_ctx;

static void free_in_cb(void *arg, const cm_lock_result *r)
{
    free_ctx *f = arg;
    cm_lockclient_free(f->c);
    f->freed = true;
}

static void must_not_run(void *arg, const cm_lock_result *r)
{
    ck_abort_msg("callback ran after the client was freed");
}

START_TEST(test_free_inside_callback)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *holder = client_new(&e, 0, 1);
    ck_assert_int_eq(acquire(&e, holder, "F", 0).status, CM_LOCK_OK);
    free_ctx f = {client_new(&e, 0, 1), false};
    wait_connected(&e, f.c);
    ck_assert_int_eq(cm_lockclient_acquire(f.c, "F", 0, 10000, must_not_run, NULL, NULL), CM_OK);
    ck_assert_int_eq(cm_lockclient_ping(f.c, free_in_cb, &f), CM_OK);
    ck_assert(run_until(&e, &f.freed, 3000));
    run_for(&e, 200);
    cm_lockclient_free(holder);
    env_stop(&e);
}
END_TEST

/* ---------------------------------------------------------------- with_lock guard */

typedef struct guard_ctx {
    env *e;
    cm_lockclient *other; /* checks the lock is held during the work */
    bool finish_called;
    int finishes;
    cm_lock_status status;
    bool worked;
    bool aborted;
    bool done_in_work; /* call cm_lock_guard_done inside work */
    cm_lock_guard *guard;
    uint64_t fence;
} guard_ctx;

static void g_work(void *arg, const cm_lock_result *grant, cm_lock_guard *g)
{
    guard_ctx *x = arg;
    x->worked = true;
    x->fence = grant->fence;
    x->guard = g;
    ck_assert(!cm_lock_guard_lost(g));
    if (x->done_in_work)
        cm_lock_guard_done(g);
}

static void g_abort(void *arg)
{
    guard_ctx *x = arg;
    x->aborted = true;
    ck_assert(cm_lock_guard_lost(x->guard));
    cm_lock_guard_done(x->guard); /* the work stops at once */
}

static void g_finish(void *arg, cm_lock_status st, const cm_lock_result *res)
{
    guard_ctx *x = arg;
    x->finish_called = true;
    x->finishes++;
    x->status = st;
}

START_TEST(test_with_lock_ok)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *c = client_new(&e, 0, 1);
    cm_lockclient *other = client_new(&e, 0, 1);

    /* done called synchronously inside the work */
    guard_ctx x = {.e = &e, .done_in_work = true};
    ck_assert_int_eq(cm_lockclient_with_lock(c, "W", 0, 1000, g_work, g_abort, g_finish, &x),
                     CM_OK);
    ck_assert(run_until(&e, &x.finish_called, 5000));
    ck_assert(x.worked && !x.aborted);
    ck_assert_int_eq(x.status, CM_LOCK_OK);
    ck_assert_int_eq(x.finishes, 1);
    /* released: someone else gets it at once */
    cm_lock_result g = acquire(&e, other, "W", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    ck_assert_uint_gt(g.fence, x.fence);
    ck_assert_int_eq(release(&e, other, "W", g.token), CM_LOCK_OK);

    /* done called later, from outside any callback; the lock is held meanwhile */
    guard_ctx y = {.e = &e};
    ck_assert_int_eq(cm_lockclient_with_lock(c, "W", 0, 1000, g_work, g_abort, g_finish, &y),
                     CM_OK);
    ck_assert(run_until(&e, &y.worked, 5000));
    ck_assert_int_eq(acquire(&e, other, "W", 0).status, CM_LOCK_TIMEOUT);
    ck_assert(!y.finish_called);
    cm_lock_guard_done(y.guard);
    ck_assert(run_until(&e, &y.finish_called, 5000));
    ck_assert_int_eq(y.status, CM_LOCK_OK);
    g = acquire(&e, other, "W", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);

    /* never granted: work not called, finish TIMEOUT */
    guard_ctx z = {.e = &e};
    ck_assert_int_eq(cm_lockclient_with_lock(c, "W", 0, 200, g_work, g_abort, g_finish, &z), CM_OK);
    ck_assert(run_until(&e, &z.finish_called, 5000));
    ck_assert(!z.worked);
    ck_assert_int_eq(z.status, CM_LOCK_TIMEOUT);

    cm_lockclient_free(c);
    cm_lockclient_free(other);
    env_stop(&e);
}
END_TEST

START_TEST(test_with_lock_lost)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *c = client_new(&e, 0, 1);
    guard_ctx x = {.e = &e};
    ck_assert_int_eq(cm_lockclient_with_lock(c, "L", 0, 1000, g_work, g_abort, g_finish, &x),
                     CM_OK);
    ck_assert(run_until(&e, &x.worked, 5000));
    /* the session drops mid-work: lockd has released the lock, the work must stop */
    th_stop(e.lockd[0].pid, false, 2000);
    ck_assert(run_until(&e, &x.finish_called, 5000));
    ck_assert(x.aborted);
    ck_assert_int_eq(x.status, CM_LOCK_LOST);
    ck_assert_int_eq(x.finishes, 1);
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

/* ---------------------------------------------------------------- failover, lost */

START_TEST(test_failover)
{
    env e;
    env_start(&e, 2);
    cm_lockclient *c = client_new(&e, 0, 2); /* endpoints: lockd 0, then lockd 1 */
    lost_log lost = {0};
    state_log st = {0};
    cm_lockclient_on_lost(c, lost_cb, &lost);
    cm_lockclient_on_state(c, state_cb, &st);

    cm_lock_result g = acquire(&e, c, "FO", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    ck_assert_int_eq(st.ups, 1);
    box waiting = {0};
    cm_lockclient *other = client_new(&e, 0, 1);
    cm_lock_result og = acquire(&e, other, "FO2", 0);
    ck_assert_int_eq(og.status, CM_LOCK_OK);
    ck_assert_int_eq(cm_lockclient_acquire(c, "FO2", 0, 20000, box_cb, &waiting, NULL), CM_OK);
    run_for(&e, 100);

    uint64_t t0 = th_now_ms();
    th_stop(e.lockd[0].pid, false, 2000);
    /* the pending ACQUIRE fails, the granted lock is reported lost */
    ck_assert(run_until(&e, &waiting.done, 3000));
    ck_assert_int_eq(waiting.r.status, CM_LOCK_ERROR);
    ck_assert_str_eq(waiting.r.code, "DISCONNECTED");
    ck_assert_int_eq(lost.n, 1);
    ck_assert_str_eq(lost.resource, "FO");
    ck_assert_str_eq(lost.token, g.token);
    ck_assert_int_ge(st.downs, 1);

    /* the client moves to lockd 1 by itself */
    wait_connected(&e, c);
    ck_assert_int_eq(st.ups, 2);
    ck_assert_msg(th_now_ms() - t0 < 2000, "failover took %llu ms",
                  (unsigned long long)(th_now_ms() - t0));
    /* FO's key in Redis outlives the dead lockd until its watchdog lease (2 s) ends */
    cm_lock_result g2 = acquire(&e, c, "FO", 5000);
    ck_assert_int_eq(g2.status, CM_LOCK_OK);
    ck_assert_uint_gt(g2.fence, g.fence);
    ck_assert_int_eq(release(&e, c, "FO", g2.token), CM_LOCK_OK);
    ck_assert_int_eq(lost.n, 1);
    cm_lockclient_free(other);
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

START_TEST(test_lost_on_session_drop)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *c = client_new(&e, 0, 1);
    lost_log lost = {0};
    state_log st = {0};
    cm_lockclient_on_lost(c, lost_cb, &lost);
    cm_lockclient_on_state(c, state_cb, &st);
    cm_lock_result a = acquire(&e, c, "S1", 0);
    cm_lock_result b = acquire(&e, c, "S2", 0);
    cm_lock_result r = acquire(&e, c, "S3", 0);
    ck_assert(a.status == CM_LOCK_OK && b.status == CM_LOCK_OK && r.status == CM_LOCK_OK);
    ck_assert_int_eq(release(&e, c, "S3", r.token), CM_LOCK_OK); /* released: not lost */

    th_stop(e.lockd[0].pid, false, 2000);
    uint64_t deadline = th_now_ms() + 3000;
    while (lost.n < 2 && th_now_ms() < deadline)
        run_for(&e, 10);
    ck_assert_int_eq(lost.n, 2);
    ck_assert(!cm_lockclient_connected(c));
    ck_assert_int_ge(st.downs, 1);
    /* with no lockd left, a request fails (through its callback) with NOTCONNECTED */
    run_for(&e, 300);
    box nc = {0};
    ck_assert_int_eq(cm_lockclient_ping(c, box_cb, &nc), CM_OK);
    ck_assert(!nc.done); /* never inside the call */
    ck_assert(run_until(&e, &nc.done, 3000));
    ck_assert_int_eq(nc.r.status, CM_LOCK_ERROR);
    ck_assert_str_eq(nc.r.code, "NOTCONNECTED");
    ck_assert_int_eq(lost.n, 2);

    /* lockd back on the same port: the client reconnects by itself */
    ck_assert(th_lockd_restart(&e.lockd[0]));
    wait_connected(&e, c);
    /* A lockd that starts next to masters without durable data keeps them out of every
     * quorum until it has checked what they hold (redlock.quarantine: milliseconds here,
     * nothing is held), and accepts sessions only after that: the first ACQUIRE of the
     * reconnected client is granted. */
    cm_lock_result again = acquire(&e, c, "S3", 0);
    ck_assert_int_eq(again.status, CM_LOCK_OK);
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

START_TEST(test_keepalive)
{
    /* the server's session timeout is 3 s; with PINGs every ~1 s an idle client keeps
     * its watchdog lock for 3x the session timeout */
    env e;
    env_start(&e, 1);
    cm_lockclient *c = client_new(&e, 0, 1);
    cm_lockclient *other = client_new(&e, 0, 1);
    lost_log lost = {0};
    cm_lockclient_on_lost(c, lost_cb, &lost);
    cm_lock_result g = acquire(&e, c, "K", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    run_for(&e, 9500);
    ck_assert_int_eq(lost.n, 0);
    ck_assert(cm_lockclient_connected(c));
    ck_assert_int_eq(acquire(&e, other, "K", 0).status, CM_LOCK_TIMEOUT);
    ck_assert_int_eq(release(&e, c, "K", g.token), CM_LOCK_OK);
    cm_lockclient_free(c);
    cm_lockclient_free(other);
    env_stop(&e);
}
END_TEST

START_TEST(test_unresponsive_failover)
{
    /* lockd 0 is frozen (SIGSTOP): TCP stays up, nothing answers. The keep-alive PING
     * times out on the client side, the session is dropped and the client moves on. */
    env e;
    env_start(&e, 2);
    cm_addr eps[2];
    cm_lockclient_opts o = client_opts(&e, eps, 0, 2);
    o.ping_interval_ms = 200;
    o.request_slack_ms = 500;
    cm_lockclient *c = cm_lockclient_new(e.base, &o);
    ck_assert_ptr_nonnull(c);
    lost_log lost = {0};
    cm_lockclient_on_lost(c, lost_cb, &lost);
    cm_lock_result g = acquire(&e, c, "Frozen", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);

    uint64_t t0 = th_now_ms();
    th_signal(e.lockd[0].pid, SIGSTOP);
    uint64_t deadline = t0 + 5000;
    while (lost.n == 0 && th_now_ms() < deadline)
        run_for(&e, 10);
    ck_assert_int_eq(lost.n, 1);
    ck_assert_str_eq(lost.token, g.token);
    wait_connected(&e, c);
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(took < 2500, "moved to lockd 1 after %llu ms", (unsigned long long)took);
    box ping = {0};
    ck_assert_int_eq(cm_lockclient_ping(c, box_cb, &ping), CM_OK);
    ck_assert(run_until(&e, &ping.done, 3000));
    ck_assert_int_eq(ping.r.status, CM_LOCK_OK);
    cm_lockclient_free(c);
    env_stop(&e); /* th_stop sends SIGCONT before SIGKILL */
}
END_TEST

/* ---------------------------------------------------------------- cancellation */

START_TEST(test_cancel)
{
    env e;
    env_start(&e, 1);
    cm_lockclient *holder = client_new(&e, 0, 1);
    cm_lockclient *c = client_new(&e, 0, 1);
    cm_lockclient *third = client_new(&e, 0, 1);
    lost_log lost = {0};
    cm_lockclient_on_lost(c, lost_cb, &lost);
    cm_lock_result g = acquire(&e, holder, "C", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    wait_connected(&e, c);

    /* a sent, waiting ACQUIRE: cancelled; the grant that comes later is given back */
    box cancelled = {0};
    uint64_t id = 0;
    ck_assert_int_eq(cm_lockclient_acquire(c, "C", 0, 10000, box_cb, &cancelled, &id), CM_OK);
    ck_assert_uint_gt(id, 0);
    run_for(&e, 100);
    cm_lockclient_cancel(c, id);
    box next = {0};
    ck_assert_int_eq(cm_lockclient_acquire(third, "C", 0, 10000, box_cb, &next, NULL), CM_OK);
    run_for(&e, 100);
    ck_assert_int_eq(release(&e, holder, "C", g.token), CM_LOCK_OK);
    /* FIFO: c's cancelled ACQUIRE is granted first, released by the client, then third */
    ck_assert(run_until(&e, &next.done, 5000));
    ck_assert_int_eq(next.r.status, CM_LOCK_OK);
    ck_assert_int_eq(cancelled.calls, 0);
    ck_assert_int_eq(lost.n, 0);

    /* a request not sent yet (client still connecting) is dropped outright */
    cm_lockclient *fresh = client_new(&e, 0, 1);
    box unsent = {0};
    ck_assert_int_eq(cm_lockclient_acquire(fresh, "C2", 0, 0, box_cb, &unsent, &id), CM_OK);
    cm_lockclient_cancel(fresh, id);
    wait_connected(&e, fresh);
    run_for(&e, 200);
    ck_assert_int_eq(unsent.calls, 0);
    cm_lock_result c2 = acquire(&e, third, "C2", 0);
    ck_assert_int_eq(c2.status, CM_LOCK_OK);

    cm_lockclient_free(fresh);
    cm_lockclient_free(holder);
    cm_lockclient_free(c);
    cm_lockclient_free(third);
    env_stop(&e);
}
END_TEST

/* ---------------------------------------------------------------- a scripted lockd */

/* What the fake lockd does: it answers HELLO (with timeout_ms) and grants every ACQUIRE
 * (token: the grant's number in 32 hex digits, fence: the number, validity_ms); after
 * grant i it pushes push[i] (NULL: nothing, "": a 3-field "* LOST <res> <token>", else
 * that reason as the 4th field). PINGs are answered until mute_after_ms after the first
 * grant (0: always); every other request gets "OK". */
typedef struct fake_script {
    unsigned timeout_ms, validity_ms;
    unsigned mute_after_ms;
    const char *push[4];
} fake_script;

typedef struct fake_lockd {
    pid_t pid;
    int port;
} fake_lockd;

static void fake_serve(int fd, const fake_script *sc)
{
    char buf[8192], out[1024];
    size_t len = 0;
    int grants = 0;
    uint64_t first_grant = 0;
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (k <= 0)
            return;
        len += (size_t)k;
        char *nl;
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            char tag[40], verb[16], res[300];
            *nl = '\0';
            int nf = sscanf(buf, "%39s %15s %299s", tag, verb, res);
            out[0] = '\0';
            if (nf >= 2 && strcmp(verb, "HELLO") == 0) {
                snprintf(out, sizeof(out), "%s OK fake %u\n", tag, sc->timeout_ms);
            } else if (nf == 3 && strcmp(verb, "ACQUIRE") == 0) {
                int i = grants++;
                char tok[40];
                snprintf(tok, sizeof(tok), "%032x", i + 1);
                int m = snprintf(out, sizeof(out), "%s OK %s %d %u\n", tag, tok, i + 1,
                                 sc->validity_ms);
                if (i < 4 && sc->push[i] != NULL)
                    snprintf(out + m, sizeof(out) - (size_t)m, "* LOST %s %s%s%s\n", res, tok,
                             sc->push[i][0] ? " " : "", sc->push[i]);
                if (first_grant == 0)
                    first_grant = th_now_ms();
            } else if (nf >= 2 && strcmp(verb, "PING") == 0) {
                if (sc->mute_after_ms == 0 || first_grant == 0 ||
                    th_now_ms() - first_grant < sc->mute_after_ms)
                    snprintf(out, sizeof(out), "%s OK PONG\n", tag);
            } else if (nf >= 2) {
                snprintf(out, sizeof(out), "%s OK\n", tag);
            }
            if (out[0] != '\0' && write(fd, out, strlen(out)) < 0)
                return;
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
    }
}

/* Forks the fake on a free loopback port (it dies with us: PDEATHSIG); fake_stop kills it
 * by its PID. */
static void fake_start(fake_lockd *f, const fake_script *sc)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ls, 4) == 0);
    ck_assert(getsockname(ls, (struct sockaddr *)&a, &alen) == 0);
    f->port = ntohs(a.sin_port);
    f->pid = fork();
    ck_assert(f->pid >= 0);
    if (f->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0)
                _exit(0); /* never exit(): the harness's atexit belongs to the test */
            fake_serve(fd, sc);
            close(fd);
        }
    }
    close(ls);
}

static void fake_stop(fake_lockd *f)
{
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
}

/* An env with only an event base, the fake lockd started with sc, and a client of it
 * whose losses go to *lost. */
static cm_lockclient *fake_client(env *e, fake_lockd *f, const fake_script *sc, lost_log *lost)
{
    cm_addr ep;
    cm_lockclient_opts o;
    memset(e, 0, sizeof(*e));
    e->base = event_base_new();
    ck_assert_ptr_nonnull(e->base);
    fake_start(f, sc);
    memset(&o, 0, sizeof(o));
    snprintf(ep.host, sizeof(ep.host), "127.0.0.1");
    ep.port = f->port;
    o.endpoints = &ep;
    o.n_endpoints = 1;
    o.client_name = "test";
    cm_lockclient *c = cm_lockclient_new(e->base, &o);
    ck_assert_ptr_nonnull(c);
    cm_lockclient_on_lost(c, lost_cb, lost);
    cm_lockclient_on_lost_info(c, lost_info_cb, lost);
    return c;
}

static cm_lock_result acquire_lease(env *e, cm_lockclient *c, const char *res, uint64_t lease_ms)
{
    box b = {0};
    ck_assert_int_eq(cm_lockclient_acquire(c, res, lease_ms, 0, box_cb, &b, NULL), CM_OK);
    ck_assert_msg(run_until(e, &b.done, 5000), "no reply to ACQUIRE %s", res);
    return b.r;
}

/* ---------------------------------------------------------------- local deadlines (SPEC §3b) */

static void count_cb(void *arg, const cm_lock_result *r)
{
    (*(int *)arg)++;
}

/* The setup of the ordering cases: two lockds on the same masters; *c (the holder, on
 * lockd 0, its losses logged in *lost) and *other (on lockd 1), both connected. */
static void holder_and_other(env *e, lost_log *lost, cm_lockclient **c, cm_lockclient **other)
{
    env_start(e, 2);
    *c = client_new(e, 0, 1);
    *other = client_new(e, 1, 1);
    cm_lockclient_on_lost(*c, lost_cb, lost);
    cm_lockclient_on_lost_info(*c, lost_info_cb, lost);
    wait_connected(e, *c);
    wait_connected(e, *other);
}

/* The issue's rule, on one clock: the other session got the lock, and the holder was told
 * it lost it (once) before that. */
static void assert_told_first(const lost_log *lost, const box *waiter, uint64_t t0, const char *res)
{
    ck_assert_msg(waiter->done && waiter->r.status == CM_LOCK_OK, "lockd 1 never granted %s", res);
    unsigned long long granted = (waiter->at_us - t0) / 1000;
    ck_assert_msg(lost->n == 1, "%s granted through lockd 1 at +%llu ms, the holder was not told",
                  res, granted);
    ck_assert_msg(lost->at_us < waiter->at_us, "holder told at +%llu ms, %s granted at +%llu ms",
                  (unsigned long long)(lost->at_us - t0) / 1000, res, granted);
}

/* Issue 12, defect 2: a client that keeps sending ACQUIREs to a frozen (SIGSTOPped) lockd
 * holds X there. Its sends used to count as liveness (no PING went out) and an ACQUIRE
 * timed out only after wait + 3 s, so another lockd granted X ~1 s before the holder's
 * lost callback ran. Liveness is judged by bytes received now and the watchdog lease has
 * a local deadline: the lost callback runs first (timestamps on one clock). */
START_TEST(test_lost_frozen_lockd_sending)
{
    env e;
    lost_log lost = {0};
    cm_lockclient *c, *other;
    holder_and_other(&e, &lost, &c, &other);
    cm_lock_result g = acquire(&e, c, "X", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    box waiter = {0};
    ck_assert_int_eq(cm_lockclient_acquire(other, "X", 0, 15000, box_cb, &waiter, NULL), CM_OK);
    run_for(&e, 100);
    ck_assert(!waiter.done);

    uint64_t t0 = th_now_us();
    th_signal(e.lockd[0].pid, SIGSTOP);
    int sent = 0, answered = 0;
    uint64_t deadline = th_now_ms() + 10000;
    while (!waiter.done && th_now_ms() < deadline) {
        char res[32];
        snprintf(res, sizeof(res), "Y%d", sent++);
        ck_assert_int_eq(cm_lockclient_acquire(c, res, 0, 0, count_cb, &answered, NULL), CM_OK);
        run_for(&e, 50);
    }
    assert_told_first(&lost, &waiter, t0, "X");
    ck_assert_str_eq(lost.token, g.token);
    ck_assert_str_eq(lost.reasons[0], "deadline");
    cm_lockclient_free(c);
    cm_lockclient_free(other);
    env_stop(&e);
}
END_TEST

/* Issue 12, defect 4 (client side): nobody tracked a fixed lease's validity_ms. lockd is
 * frozen right after the grant, so no push can come: the lease is lost locally at its
 * deadline (reason "deadline"), before lockd 1 grants the lock. */
START_TEST(test_lost_fixed_lease_deadline)
{
    env e;
    lost_log lost = {0};
    cm_lockclient *c, *other;
    holder_and_other(&e, &lost, &c, &other);
    uint64_t t0 = th_now_us();
    cm_lock_result g = acquire_lease(&e, c, "FX", 500);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    th_signal(e.lockd[0].pid, SIGSTOP);
    box waiter = {0};
    ck_assert_int_eq(cm_lockclient_acquire(other, "FX", 0, 8000, box_cb, &waiter, NULL), CM_OK);
    ck_assert(run_until(&e, &waiter.done, 9000));
    assert_told_first(&lost, &waiter, t0, "FX");
    unsigned long long told = (lost.at_us - t0) / 1000;
    ck_assert_msg(told >= 400 && told <= 500, "lost at +%llu ms of a 500 ms lease", told);
    ck_assert_int_eq(lost.n_info, 1);
    ck_assert_str_eq(lost.reasons[0], "deadline");
    ck_assert(lost.local[0]);
    cm_lockclient_free(c);
    cm_lockclient_free(other);
    env_stop(&e);
}
END_TEST

/* The fault cases of issue 12 §4 for the C client (the same as the Python and Node
 * libraries'): each must tell the holder before lockd 1 grants its lock. */
typedef enum fault {
    FAULT_SIGTERM,       /* lockd 0 stops gracefully: LOST shutdown before the keys go */
    FAULT_SIGKILL,       /* lockd 0 dies: EOF at once, the keys live to their TTL */
    FAULT_SIGSTOP,       /* lockd 0 freezes, the client idle: the watchdog deadline */
    FAULT_RENEW_REFUSED, /* 2 of 3 masters get another value after a renewal */
    FAULT_MAJORITY_DOWN, /* 2 of 3 masters die, back (empty) 3.3 s later */
} fault;

#define FOREIGN_PX 2000 /* how long the other value stays on two masters (ms) */

/* Waits (serving the clients) until lockd renewed R's key on master m: its PTTL jumps. */
static void wait_renewed(env *e, int m)
{
    char out[64];
    long last = -1;
    uint64_t deadline = th_now_ms() + 5000;
    while (th_now_ms() < deadline) {
        ck_assert(it_redis_cmd(e->redis[m].port, out, sizeof(out), "PTTL lockd:lock:R"));
        long pttl = atol(out + 1);
        if (last >= 0 && pttl > last + 50)
            return;
        last = pttl;
        run_for(e, 5);
    }
    ck_abort_msg("lockd never renewed R");
}

static void fault_case(fault f, const char *reason)
{
    env e;
    lost_log lost = {0};
    cm_lockclient *c, *other;
    char out[64];
    holder_and_other(&e, &lost, &c, &other);
    ck_assert_int_eq(acquire(&e, c, "R", 0).status, CM_LOCK_OK);
    box waiter = {0};
    ck_assert_int_eq(cm_lockclient_acquire(other, "R", 0, 15000, box_cb, &waiter, NULL), CM_OK);
    run_for(&e, 100);
    uint64_t t0 = th_now_us(), back_at = 0;
    switch (f) {
    case FAULT_SIGTERM:
        th_signal(e.lockd[0].pid, SIGTERM);
        break;
    case FAULT_SIGKILL:
        th_stop(e.lockd[0].pid, false, 2000);
        break;
    case FAULT_SIGSTOP:
        th_signal(e.lockd[0].pid, SIGSTOP);
        break;
    case FAULT_RENEW_REFUSED:
        wait_renewed(&e, 2);
        t0 = th_now_us();
        for (int m = 0; m < 2; m++)
            ck_assert(it_redis_cmd(e.redis[m].port, out, sizeof(out),
                                   "SET lockd:lock:R ffffffffffffffffffffffffffffffff PX %d",
                                   FOREIGN_PX));
        break;
    case FAULT_MAJORITY_DOWN:
        th_redis_kill(&e.redis[0]);
        th_redis_kill(&e.redis[1]);
        back_at = th_now_ms() + 3300;
        break;
    }
    uint64_t deadline = th_now_ms() + 15000;
    while (!(waiter.done && waiter.r.status == CM_LOCK_OK) && th_now_ms() < deadline) {
        if (back_at != 0 && th_now_ms() >= back_at) {
            ck_assert(th_redis_start(&e.redis[0]) && th_redis_start(&e.redis[1]));
            back_at = 0;
        }
        if (waiter.done) { /* NOQUORUM while the masters are down: ask again */
            memset(&waiter, 0, sizeof(waiter));
            ck_assert_int_eq(cm_lockclient_acquire(other, "R", 0, 15000, box_cb, &waiter, NULL),
                             CM_OK);
        }
        run_for(&e, 20);
    }
    assert_told_first(&lost, &waiter, t0, "R");
    ck_assert_msg(lost.n_info >= 1 && strcmp(lost.reasons[0], reason) == 0, "lost (%s), wanted %s",
                  lost.n_info ? lost.reasons[0] : "-", reason);
    cm_lockclient_free(c);
    cm_lockclient_free(other);
    env_stop(&e);
}

START_TEST(test_lost_first_lockd_sigterm)
{
    fault_case(FAULT_SIGTERM, "shutdown");
}
END_TEST

START_TEST(test_lost_first_lockd_sigkill)
{
    fault_case(FAULT_SIGKILL, "disconnected");
}
END_TEST

START_TEST(test_lost_first_lockd_sigstop)
{
    fault_case(FAULT_SIGSTOP, "deadline");
}
END_TEST

START_TEST(test_lost_first_renew_refused)
{
    fault_case(FAULT_RENEW_REFUSED, "renew_refused");
}
END_TEST

START_TEST(test_lost_first_majority_down)
{
    fault_case(FAULT_MAJORITY_DOWN, "no_quorum");
}
END_TEST

/* A watchdog lease lives while lockd answers (here 1.5 s on a validity of 600 ms) and is
 * lost locally ("deadline") about half a validity after lockd stops answering, long
 * before the client timeout (20 s here) ends the session. */
START_TEST(test_lost_watchdog_unanswered)
{
    env e;
    fake_script sc = {.timeout_ms = 30000, .validity_ms = 600, .mute_after_ms = 1500};
    fake_lockd f;
    lost_log lost = {0};
    cm_lockclient *c = fake_client(&e, &f, &sc, &lost);
    uint64_t t0 = th_now_us();
    ck_assert_int_eq(acquire_lease(&e, c, "W", 0).status, CM_LOCK_OK);
    uint64_t deadline = th_now_ms() + 5000;
    while (lost.n == 0 && th_now_ms() < deadline)
        run_for(&e, 10);
    unsigned long long told = (lost.at_us - t0) / 1000;
    ck_assert_msg(lost.n == 1, "the lock was never lost");
    ck_assert_msg(told >= 1500 && told <= 2200, "lost at +%llu ms (PINGs unanswered from +1500)",
                  told);
    ck_assert_str_eq(lost.reasons[0], "deadline");
    ck_assert(lost.local[0]);
    ck_assert(cm_lockclient_connected(c)); /* the session itself is not judged dead yet */
    cm_lockclient_free(c);
    fake_stop(&f);
    env_stop(&e);
}
END_TEST

/* `* LOST` carries its reason (SPEC §2b) to on_lost_info; a 3-field LOST still works
 * (reason "lost"); a graceful lockd stop says "shutdown". */
START_TEST(test_lost_reason)
{
    env e;
    fake_script sc = {.timeout_ms = 30000, .validity_ms = 10000, .push = {"", "revoked"}};
    fake_lockd f;
    lost_log lost = {0};
    cm_lockclient *c = fake_client(&e, &f, &sc, &lost);
    ck_assert_int_eq(acquire_lease(&e, c, "A", 0).status, CM_LOCK_OK);
    ck_assert_int_eq(acquire_lease(&e, c, "B", 0).status, CM_LOCK_OK);
    run_for(&e, 50);
    ck_assert_int_eq(lost.n, 2);
    ck_assert_int_eq(lost.n_info, 2);
    ck_assert_str_eq(lost.reasons[0], "lost");
    ck_assert_str_eq(lost.reasons[1], "revoked");
    ck_assert(!lost.local[0] && !lost.local[1]);
    cm_lockclient_free(c);
    fake_stop(&f);
    event_base_free(e.base);

    env_start(&e, 1);
    lost_log lost2 = {0};
    c = client_new(&e, 0, 1);
    cm_lockclient_on_lost_info(c, lost_info_cb, &lost2);
    ck_assert_int_eq(acquire(&e, c, "S", 0).status, CM_LOCK_OK);
    th_signal(e.lockd[0].pid, SIGTERM);
    uint64_t deadline = th_now_ms() + 3000;
    while (lost2.n_info == 0 && th_now_ms() < deadline)
        run_for(&e, 10);
    ck_assert_int_eq(lost2.n_info, 1);
    ck_assert_str_eq(lost2.reasons[0], "shutdown");
    ck_assert(!lost2.local[0]);
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

/* ---------------------------------------------------------------- blocking wrapper */

typedef struct sync_work {
    cm_lockclient_sync *other;
    const char *resource;
    bool ran;
    bool held_during;
} sync_work;

static int sync_work_fn(void *arg, const cm_lock_result *grant)
{
    sync_work *w = arg;
    cm_lock_result r;
    w->ran = true;
    ck_assert_int_eq(cm_lockclient_sync_acquire(w->other, w->resource, 0, 0, &r), CM_OK);
    w->held_during = r.status == CM_LOCK_TIMEOUT;
    return 42;
}

START_TEST(test_sync)
{
    env e;
    env_start(&e, 1);
    cm_addr eps[1];
    cm_lockclient_opts o = client_opts(&e, eps, 0, 1);
    char err[256];
    cm_lockclient_sync *s = cm_lockclient_sync_new(&o, err, sizeof(err));
    ck_assert_msg(s != NULL, "sync_new: %s", err);
    cm_lockclient_sync *s2 = cm_lockclient_sync_new(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(s2);
    cm_lock_result r, g;

    ck_assert_int_eq(cm_lockclient_sync_ping(s, &r), CM_OK);
    ck_assert_int_eq(r.status, CM_LOCK_OK);
    ck_assert_str_eq(r.line, "PONG");
    /* idle (no loop running) past the client timeout but not lockd's session timeout: the
     * silence was ours, the session still serves */
    th_sleep_ms(2300);
    ck_assert_int_eq(cm_lockclient_sync_ping(s, &r), CM_OK);
    ck_assert_msg(r.status == CM_LOCK_OK, "PING after an idle spell: %s %s", r.code, r.message);
    ck_assert_int_eq(cm_lockclient_sync_info(s, &r), CM_OK);
    ck_assert_ptr_nonnull(strstr(r.line, "sessions="));

    ck_assert_int_eq(cm_lockclient_sync_acquire(s, "Y", 0, 0, &g), CM_OK);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    ck_assert_int_eq(cm_lockclient_sync_renew(s, "Y", g.token, 3000, &r), CM_OK);
    ck_assert_int_eq(r.status, CM_LOCK_OK);
    ck_assert_int_eq(cm_lockclient_sync_acquire(s2, "Y", 0, 0, &r), CM_OK);
    ck_assert_int_eq(r.status, CM_LOCK_TIMEOUT);
    ck_assert_int_eq(cm_lockclient_sync_release(s, "Y", g.token, &r), CM_OK);
    ck_assert_int_eq(r.status, CM_LOCK_OK);
    ck_assert_int_eq(cm_lockclient_sync_release(s, "Y", g.token, &r), CM_OK);
    ck_assert_int_eq(r.status, CM_LOCK_LOST);
    ck_assert_int_eq(cm_lockclient_sync_acquire(s, "bad resource", 0, 0, &r), CM_ERR);
    ck_assert_int_eq(r.status, CM_LOCK_ERROR);

    /* with_lock_sync: the work runs holding the lock, then it is released */
    sync_work w = {s2, "Z", false, false};
    int rc = 0;
    ck_assert_int_eq(cm_with_lock_sync(s, "Z", 0, 1000, sync_work_fn, &w, &rc, &r), CM_OK);
    ck_assert(w.ran && w.held_during);
    ck_assert_int_eq(rc, 42);
    ck_assert_int_eq(r.status, CM_LOCK_OK);
    ck_assert_int_eq(cm_lockclient_sync_acquire(s2, "Z", 0, 0, &g), CM_OK);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    /* not granted: the work does not run */
    sync_work w2 = {s2, "Z", false, false};
    ck_assert_int_eq(cm_with_lock_sync(s, "Z", 0, 200, sync_work_fn, &w2, &rc, &r), CM_ERR);
    ck_assert(!w2.ran);
    ck_assert_int_eq(r.status, CM_LOCK_TIMEOUT);

    cm_lockclient_sync_free(s);
    cm_lockclient_sync_free(s2);
    /* nobody listening: sync_new fails with a reason */
    eps[0].port = th_free_port();
    ck_assert_ptr_null(cm_lockclient_sync_new(&o, err, sizeof(err)));
    ck_assert_uint_gt(strlen(err), 0);
    env_stop(&e);
}
END_TEST

/* ---------------------------------------------------------------- lockctl */

static pid_t lockctl_spawn(env *e, const char *log, char *const *args)
{
    char server[64];
    char *argv[24];
    int n = 0;
    snprintf(server, sizeof(server), "127.0.0.1:%d", e->lockd[0].port);
    argv[n++] = (char *)th_bin("lockctl");
    argv[n++] = "--server";
    argv[n++] = server;
    while (*args != NULL && n < 23)
        argv[n++] = *args++;
    argv[n] = NULL;
    return th_spawn(argv, log);
}

static int lockctl_run(env *e, const char *log, char *const *args)
{
    pid_t pid = lockctl_spawn(e, log, args);
    return th_wait_exit(pid, 20000);
}

static bool read_file(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return n > 0;
}

START_TEST(test_lockctl_status)
{
    env e;
    char log[600], envfile[600], cmd[800], buf[4096];
    env_start(&e, 1);
    const char *dir = th_tmpdir();
    snprintf(log, sizeof(log), "%s/lockctl.log", dir);
    snprintf(envfile, sizeof(envfile), "%s/env.txt", dir);
    snprintf(cmd, sizeof(cmd), "echo \"$LOCK_RESOURCE $LOCK_TOKEN $LOCK_FENCE\" > %s; exit 7",
             envfile);

    char *a1[] = {"acquire", "Job:1", "--", "sh", "-c", cmd, NULL};
    int st = lockctl_run(&e, log, a1);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 7, "status %d", st);
    ck_assert(read_file(envfile, buf, sizeof(buf)));
    char res[64], tok[64];
    unsigned long long fence = 0;
    ck_assert_int_eq(sscanf(buf, "%63s %63s %llu", res, tok, &fence), 3);
    ck_assert_str_eq(res, "Job:1");
    ck_assert_uint_eq(strlen(tok), 32);
    ck_assert_uint_gt(fence, 0);

    /* killed by a signal: 128 + signal */
    char *a2[] = {"acquire", "Job:1", "--", "sh", "-c", "kill -TERM $$", NULL};
    st = lockctl_run(&e, log, a2);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM, "status %d", st);

    /* the lock was released each time: a holder now makes a waiter time out (exit 1) */
    cm_lockclient *c = client_new(&e, 0, 1);
    cm_lock_result g = acquire(&e, c, "Job:1", 0);
    ck_assert_int_eq(g.status, CM_LOCK_OK);
    char *a3[] = {"acquire", "Job:1", "--wait", "300", "--", "true", NULL};
    pid_t p = lockctl_spawn(&e, log, a3);
    uint64_t deadline = th_now_ms() + 10000;
    while ((st = th_wait_exit(p, 20)) == -1 && th_now_ms() < deadline)
        run_for(&e, 20); /* keep our own session served */
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
    ck_assert_int_eq(release(&e, c, "Job:1", g.token), CM_LOCK_OK);

    char *a4[] = {"ping", NULL};
    st = lockctl_run(&e, log, a4);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *a5[] = {"info", NULL};
    st = lockctl_run(&e, log, a5);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *a6[] = {"--nonsense", NULL};
    st = lockctl_run(&e, log, a6);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    ck_assert(read_file(log, buf, sizeof(buf)));
    ck_assert_ptr_nonnull(strstr(buf, "PONG"));
    ck_assert_ptr_nonnull(strstr(buf, "lock timeout"));
    ck_assert_ptr_nonnull(strstr(buf, "sessions="));
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

START_TEST(test_lockctl_lost)
{
    env e;
    char log[600], pidfile[600], cmd[800], buf[64];
    env_start(&e, 1);
    const char *dir = th_tmpdir();
    snprintf(log, sizeof(log), "%s/lockctl.log", dir);
    snprintf(pidfile, sizeof(pidfile), "%s/child.pid", dir);
    snprintf(cmd, sizeof(cmd), "echo $$ > %s; exec sleep 30", pidfile);
    char *args[] = {"acquire", "Lost:1", "--", "sh", "-c", cmd, NULL};
    pid_t p = lockctl_spawn(&e, log, args);
    uint64_t deadline = th_now_ms() + 5000;
    while (!read_file(pidfile, buf, sizeof(buf)) && th_now_ms() < deadline)
        th_sleep_ms(10);
    pid_t child = (pid_t)atoi(buf);
    ck_assert_int_gt(child, 0);
    ck_assert_int_eq(kill(child, 0), 0);

    /* the session drops: lockd released the lock, so lockctl must stop the command */
    uint64_t t0 = th_now_ms();
    th_stop(e.lockd[0].pid, false, 2000);
    int st = th_wait_exit(p, 5000);
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d", st);
    ck_assert_msg(took < 1500, "lockctl took %llu ms to exit", (unsigned long long)took);
    ck_assert_msg(kill(child, 0) == -1 && errno == ESRCH, "the command still runs");
    char text[4096];
    ck_assert(read_file(log, text, sizeof(text)));
    ck_assert_ptr_nonnull(strstr(text, "lost"));
    env_stop(&e);
}
END_TEST

START_TEST(test_lockctl_signal)
{
    /* SIGTERM to lockctl goes to the command, which decides; lockctl exits with its
     * status and releases the lock */
    env e;
    char log[600], pidfile[600], cmd[800], buf[64];
    env_start(&e, 1);
    const char *dir = th_tmpdir();
    snprintf(log, sizeof(log), "%s/lockctl.log", dir);
    snprintf(pidfile, sizeof(pidfile), "%s/child.pid", dir);
    snprintf(cmd, sizeof(cmd), "trap 'exit 5' TERM; echo $$ > %s; sleep 30 & wait", pidfile);
    char *args[] = {"acquire", "Sig:1", "--", "sh", "-c", cmd, NULL};
    pid_t p = lockctl_spawn(&e, log, args);
    uint64_t deadline = th_now_ms() + 5000;
    while (!read_file(pidfile, buf, sizeof(buf)) && th_now_ms() < deadline)
        th_sleep_ms(10);
    ck_assert_int_gt(atoi(buf), 0);
    th_signal(p, SIGTERM);
    int st = th_wait_exit(p, 5000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 5, "status %d", st);
    cm_lockclient *c = client_new(&e, 0, 1);
    ck_assert_int_eq(acquire(&e, c, "Sig:1", 0).status, CM_LOCK_OK);
    cm_lockclient_free(c);
    env_stop(&e);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"acquire_release", test_acquire_release},
        {"timeout", test_timeout},
        {"free_inside_callback", test_free_inside_callback},
        {"with_lock_ok", test_with_lock_ok},
        {"with_lock_lost", test_with_lock_lost},
        {"failover", test_failover},
        {"unresponsive_failover", test_unresponsive_failover},
        {"lost_on_session_drop", test_lost_on_session_drop},
        {"keepalive", test_keepalive},
        {"cancel", test_cancel},
        {"sync", test_sync},
        {"lockctl_status", test_lockctl_status},
        {"lockctl_lost", test_lockctl_lost},
        {"lockctl_signal", test_lockctl_signal},
        {"lost_frozen_lockd_sending", test_lost_frozen_lockd_sending},
        {"lost_fixed_lease_deadline", test_lost_fixed_lease_deadline},
        {"lost_watchdog_unanswered", test_lost_watchdog_unanswered},
        {"lost_reason", test_lost_reason},
        {"lost_first_lockd_sigterm", test_lost_first_lockd_sigterm},
        {"lost_first_lockd_sigkill", test_lost_first_lockd_sigkill},
        {"lost_first_lockd_sigstop", test_lost_first_lockd_sigstop},
        {"lost_first_renew_refused", test_lost_first_renew_refused},
        {"lost_first_majority_down", test_lost_first_majority_down},
    };
    cm_log_init("test_client", CM_LOG_ERROR);
    return th_check_main("client", cases, sizeof(cases) / sizeof(cases[0]), 60, argc, argv);
}
