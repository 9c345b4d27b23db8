/*
 * test_redlock: integration tests of lk_redlock against REAL redis-server masters,
 * started on free loopback ports by the unchecked fixture of each test case (in the
 * parent process, so its teardown stops them by PID even when the forked test fails).
 * Tests signal those PIDs directly (SIGKILL, SIGSTOP); a master restarted inside a
 * test belongs to the forked child, which stops it when it exits.
 * Redis state is inspected and prepared with blocking hiredis calls: this is a test.
 */
#include <check.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_addr.h"
#include "cm_time.h"
#include "lk_redlock.h"
#include "th.h"

#define MAX_MASTERS 5
#define PREFIX      "t:"

static th_redis masters[MAX_MASTERS];
static size_t n_masters;

static void start_masters(size_t n)
{
    memset(masters, 0, sizeof masters);
    n_masters = n;
    for (size_t i = 0; i < n; i++) {
        if (!th_redis_start(&masters[i])) {
            fprintf(stderr, "redis-server did not start\n");
            th_stop_all();
            exit(1);
        }
    }
}

static void setup3(void)
{
    start_masters(3);
}

static void setup5(void)
{
    start_masters(5);
}

static void teardown(void)
{
    th_stop_all();
}

/* ---- the client under test, on its own loop ---- */

typedef struct box {
    bool done;
    int calls;
    lk_rl_result r;
} box;

typedef struct env {
    struct event_base *base;
    lk_redlock *rl;
    size_t masters_cb_up; /* last on_masters value */
    int masters_cbs;
    char released[8][64];
    int n_released;
} env;

static void on_masters(void *arg, size_t up, size_t total)
{
    env *e = arg;
    ck_assert_uint_eq(total, lk_redlock_masters_total(e->rl));
    e->masters_cb_up = up;
    e->masters_cbs++;
}

static void on_released(void *arg, const char *resource)
{
    env *e = arg;
    if (e->n_released < 8) {
        snprintf(e->released[e->n_released], sizeof e->released[0], "%s", resource);
    }
    e->n_released++;
}

static void tick(evutil_socket_t fd, short what, void *arg) {}

/* Runs the loop until *flag (if given) is true or timeout_ms passes. */
static bool run_until(env *e, const bool *flag, int timeout_ms)
{
    struct event *t = event_new(e->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 2000};
    event_add(t, &tv);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while ((flag == NULL || !*flag) && th_now_ms() < deadline) {
        event_base_loop(e->base, EVLOOP_ONCE);
    }
    event_free(t);
    return flag ? *flag : true;
}

static bool up_is(env *e, size_t want, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (lk_redlock_masters_up(e->rl) != want && th_now_ms() < deadline) {
        run_until(e, NULL, 5);
    }
    return lk_redlock_masters_up(e->rl) == want;
}

static uint32_t env_max_inflight; /* redlock.max_inflight_rounds of the next env_open */

static void env_open_timeout(env *e, uint32_t timeout_ms)
{
    memset(e, 0, sizeof *e);
    e->base = event_base_new();
    ck_assert_ptr_nonnull(e->base);
    cm_addr addrs[MAX_MASTERS];
    for (size_t i = 0; i < n_masters; i++) {
        snprintf(addrs[i].host, sizeof addrs[i].host, "127.0.0.1");
        addrs[i].port = masters[i].port;
    }
    lk_redlock_opts o = {.masters = addrs,
                         .n_masters = n_masters,
                         .key_prefix = PREFIX,
                         .redis_timeout_ms = timeout_ms,
                         .max_inflight_rounds = env_max_inflight,
                         .clock_drift_factor = 0.01,
                         .on_released = on_released,
                         .on_masters = on_masters,
                         .cb_arg = e};
    e->rl = lk_redlock_new(e->base, &o);
    ck_assert_ptr_nonnull(e->rl);
    ck_assert_uint_eq(lk_redlock_quorum(e->rl), n_masters / 2 + 1);
    ck_assert_msg(up_is(e, n_masters, 3000), "masters up: %zu", lk_redlock_masters_up(e->rl));
    ck_assert_uint_eq(e->masters_cb_up, n_masters);
}

static void env_open(env *e)
{
    env_open_timeout(e, 50);
}

static void env_close(env *e)
{
    lk_redlock_free(e->rl);
    event_base_free(e->base);
}

static void box_cb(void *arg, const lk_rl_result *res)
{
    box *b = arg;
    b->r = *res;
    b->done = true;
    b->calls++;
}

static lk_rl_result acquire(env *e, const char *res, const char *tok, const char *prev,
                            uint64_t lease)
{
    box b = {0};
    lk_rl_op *op = lk_redlock_acquire(e->rl, res, tok, prev, lease, box_cb, &b);
    ck_assert_ptr_nonnull(op);
    ck_assert_msg(!b.done, "callback ran inside lk_redlock_acquire");
    ck_assert_msg(run_until(e, &b.done, 3000), "acquire did not complete");
    return b.r;
}

static lk_rl_result renew(env *e, const char *res, const char *tok, uint64_t lease)
{
    box b = {0};
    ck_assert_ptr_nonnull(lk_redlock_renew(e->rl, res, tok, lease, box_cb, &b));
    ck_assert_msg(run_until(e, &b.done, 3000), "renew did not complete");
    return b.r;
}

static lk_rl_result release(env *e, const char *res, const char *tok)
{
    box b = {0};
    ck_assert_ptr_nonnull(lk_redlock_release(e->rl, res, tok, box_cb, &b));
    ck_assert_msg(run_until(e, &b.done, 3000), "release did not complete");
    return b.r;
}

/* Lets the loop drain rounds nobody waits for (unlock-all, cancelled grants). */
static void drain(env *e)
{
    uint64_t deadline = th_now_ms() + 2000;
    while (lk_redlock_pending(e->rl) > 0 && th_now_ms() < deadline) {
        run_until(e, NULL, 5);
    }
    ck_assert_uint_eq(lk_redlock_pending(e->rl), 0);
}

/* ---- direct looks into one master (blocking hiredis) ---- */

static redisContext *rconnect(size_t i)
{
    redisContext *c = redisConnect("127.0.0.1", masters[i].port);
    ck_assert_msg(c != NULL && !c->err, "connect to master %zu", i);
    return c;
}

/* GET key on master i into out ("" when absent). */
static void rget(size_t i, const char *key, char *out, size_t outlen)
{
    redisContext *c = rconnect(i);
    redisReply *r = redisCommand(c, "GET %s", key);
    ck_assert_ptr_nonnull(r);
    snprintf(out, outlen, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    redisFree(c);
}

/* The lock key holds want ("" = absent) on every master. */
static void assert_lock_all(const char *key, const char *want)
{
    for (size_t i = 0; i < n_masters; i++) {
        char v[64];
        rget(i, key, v, sizeof v);
        ck_assert_msg(strcmp(v, want) == 0, "master %zu: %s = '%s', want '%s'", i, key, v, want);
    }
}

static long long rget_num(size_t i, const char *key)
{
    char v[64];
    rget(i, key, v, sizeof v);
    return v[0] ? atoll(v) : 0;
}

static void rset(size_t i, const char *key, const char *val)
{
    redisContext *c = rconnect(i);
    redisReply *r = redisCommand(c, "SET %s %s", key, val);
    ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "SET on master %zu", i);
    freeReplyObject(r);
    redisFree(c);
}

static void rdel(size_t i, const char *key)
{
    redisContext *c = rconnect(i);
    freeReplyObject(redisCommand(c, "DEL %s", key));
    redisFree(c);
}

/* ---- tests ---- */

START_TEST(test_roundtrip)
{
    env e;
    env_open(&e);
    const lk_rl_stats *st = lk_redlock_stats(e.rl);
    ck_assert_uint_eq(st->rounds_total, 0); /* the client's own counters start at zero */
    ck_assert_uint_eq(st->redis_rtt.count, 0);
    lk_rl_result r = acquire(&e, "Performance:1", "tokA", NULL, 10000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_uint_ge(r.fence, 1);
    ck_assert_int_gt(r.validity_ms, 9000);
    ck_assert_int_le(r.validity_ms, 10000 - 100 - 2);
    run_until(&e, NULL, 20); /* the round ended at quorum: let the third master answer */
    assert_lock_all(PREFIX "lock:Performance:1", "tokA");
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(rget_num(i, PREFIX "fence:Performance:1"), (long long)r.fence);
    }
    r = release(&e, "Performance:1", "tokA");
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    drain(&e);
    assert_lock_all(PREFIX "lock:Performance:1", "");
    ck_assert_uint_eq(st->rounds_total, 2);
    ck_assert_uint_ge(st->redis_rtt.count, 4);
    env_close(&e);
}
END_TEST

START_TEST(test_exclusion)
{
    env e;
    env_open(&e);
    lk_rl_result a = acquire(&e, "R", "tokA", NULL, 5000);
    ck_assert_int_eq(a.outcome, LK_RL_GRANTED);
    lk_rl_result b = acquire(&e, "R", "tokB", NULL, 5000);
    ck_assert_int_eq(b.outcome, LK_RL_HELD);
    ck_assert_int_gt(b.retry_after_ms, 4000);
    ck_assert_int_le(b.retry_after_ms, 5000);
    drain(&e);
    assert_lock_all(PREFIX "lock:R", "tokA"); /* B's failure did not disturb A */
    /* A retried attempt of the holder's own token is granted again (idempotent). */
    lk_rl_result a2 = acquire(&e, "R", "tokA", NULL, 5000);
    ck_assert_int_eq(a2.outcome, LK_RL_GRANTED);
    ck_assert_uint_gt(a2.fence, a.fence);
    ck_assert_int_eq(release(&e, "R", "tokB").outcome, LK_RL_GRANTED); /* answered, no-op */
    ck_assert_int_eq(acquire(&e, "R", "tokB", NULL, 5000).outcome, LK_RL_HELD);
    ck_assert_int_eq(release(&e, "R", "tokA").outcome, LK_RL_GRANTED);
    lk_rl_result b2 = acquire(&e, "R", "tokB", NULL, 5000);
    ck_assert_int_eq(b2.outcome, LK_RL_GRANTED);
    ck_assert_uint_gt(b2.fence, a2.fence);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_unlock_on_failure)
{
    /* Masters 0 and 1 are held by another token: the attempt fails, and the grant it got
     * on master 2 is taken back before the callback ran. */
    rset(0, PREFIX "lock:U", "other");
    rset(1, PREFIX "lock:U", "other");
    env e;
    env_open(&e);
    uint64_t failed0 = lk_redlock_stats(e.rl)->failed_total;
    lk_rl_result r = acquire(&e, "U", "tokA", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_HELD);
    ck_assert_int_eq(r.retry_after_ms, 0); /* "other" has no expiry: PTTL -1 -> 0 */
    ck_assert_uint_eq(lk_redlock_stats(e.rl)->failed_total, failed0 + 1);
    drain(&e);
    char v[64];
    rget(2, PREFIX "lock:U", v, sizeof v);
    ck_assert_str_eq(v, "");
    rget(0, PREFIX "lock:U", v, sizeof v);
    ck_assert_str_eq(v, "other");
    env_close(&e);
}
END_TEST

START_TEST(test_noscript)
{
    /* Scripts flushed behind the client's back: NOSCRIPT falls back to EVAL and the
     * rounds still succeed. */
    env e;
    env_open(&e);
    for (size_t i = 0; i < n_masters; i++) {
        redisContext *c = rconnect(i);
        freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
        redisFree(c);
    }
    lk_rl_result r = acquire(&e, "NS", "tokA", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_uint_eq(r.fence, 1);
    ck_assert_int_eq(renew(&e, "NS", "tokA", 5000).outcome, LK_RL_GRANTED);
    ck_assert_int_eq(release(&e, "NS", "tokA").outcome, LK_RL_GRANTED);
    drain(&e);
    assert_lock_all(PREFIX "lock:NS", "");
    redisContext *c = rconnect(0);
    redisReply *info = redisCommand(c, "INFO commandstats");
    ck_assert_ptr_nonnull(strstr(info->str, "cmdstat_eval:calls="));
    freeReplyObject(info);
    redisFree(c);
    env_close(&e);
}
END_TEST

START_TEST(test_handoff)
{
    env e;
    env_open(&e);
    lk_rl_result a = acquire(&e, "H", "tokA", NULL, 5000);
    ck_assert_int_eq(a.outcome, LK_RL_GRANTED);
    /* A wrong prev_token does not take it over. */
    ck_assert_int_eq(acquire(&e, "H", "tokB", "tokX", 5000).outcome, LK_RL_HELD);
    lk_rl_result b = acquire(&e, "H", "tokB", "tokA", 5000);
    ck_assert_int_eq(b.outcome, LK_RL_GRANTED);
    ck_assert_uint_gt(b.fence, a.fence);
    run_until(&e, NULL, 20);
    assert_lock_all(PREFIX "lock:H", "tokB");
    /* The old holder's token is worthless now: every master refuses it (HELD). */
    ck_assert_int_eq(renew(&e, "H", "tokA", 5000).outcome, LK_RL_HELD);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_fences_increase)
{
    env e;
    env_open(&e);
    uint64_t last = 0;
    for (int i = 0; i < 100; i++) {
        char tok[32];
        snprintf(tok, sizeof tok, "tok%d", i);
        lk_rl_result r = acquire(&e, "F", tok, NULL, 5000);
        ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
        ck_assert_uint_gt(r.fence, last);
        last = r.fence;
        ck_assert_int_eq(release(&e, "F", tok).outcome, LK_RL_GRANTED);
    }
    drain(&e);
    env_close(&e);
}
END_TEST

static int count_at_least(const char *key, long long v)
{
    int n = 0;
    for (size_t i = 0; i < n_masters; i++) {
        n += rget_num(i, key) >= v;
    }
    return n;
}

START_TEST(test_fence_writeback)
{
    /* Masters disagree ({9,2,2} before the INCR); master 2 is held by someone else, so
     * exactly masters 0 and 1 grant, with fences 10 and 3: t = 10 must reach a majority. */
    rset(0, PREFIX "fence:W", "9");
    rset(1, PREFIX "fence:W", "2");
    rset(2, PREFIX "fence:W", "2");
    rset(2, PREFIX "lock:W", "other");
    env e;
    env_open(&e);
    uint64_t wb0 = lk_redlock_stats(e.rl)->fence_writebacks_total;
    lk_rl_result r = acquire(&e, "W", "tokA", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_uint_eq(r.fence, 10);
    ck_assert_uint_eq(lk_redlock_stats(e.rl)->fence_writebacks_total, wb0 + 1);
    ck_assert_int_ge(count_at_least(PREFIX "fence:W", 10), 2);
    ck_assert_int_eq(rget_num(1, PREFIX "fence:W"), 10);
    ck_assert_int_eq(release(&e, "W", "tokA").outcome, LK_RL_GRANTED);
    drain(&e);
    /* Another majority (1, 2) without master 0, which had the 10 to begin with. */
    rdel(2, PREFIX "lock:W");
    rset(0, PREFIX "lock:W", "other");
    lk_rl_result r2 = acquire(&e, "W", "tokB", NULL, 5000);
    ck_assert_int_eq(r2.outcome, LK_RL_GRANTED);
    ck_assert_uint_gt(r2.fence, 10);
    /* Agreeing masters need no write-back. */
    ck_assert_uint_eq(lk_redlock_stats(e.rl)->fence_writebacks_total, wb0 + 1);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_renew)
{
    env e;
    env_open(&e);
    ck_assert_int_eq(acquire(&e, "N", "tokA", NULL, 1000).outcome, LK_RL_GRANTED);
    lk_rl_result r = renew(&e, "N", "tokA", 60000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_int_gt(r.validity_ms, 50000);
    redisContext *c = rconnect(0);
    redisReply *p = redisCommand(c, "PTTL %s", PREFIX "lock:N");
    ck_assert_int_gt(p->integer, 50000);
    freeReplyObject(p);
    redisFree(c);
    /* Refused by a majority (another token, or none): HELD, a loss, not a retry. */
    ck_assert_int_eq(renew(&e, "N", "tokB", 60000).outcome, LK_RL_HELD);
    ck_assert_int_eq(release(&e, "N", "tokA").outcome, LK_RL_GRANTED);
    ck_assert_int_eq(renew(&e, "N", "tokA", 60000).outcome, LK_RL_HELD);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_cancel)
{
    env e;
    env_open(&e);
    box b = {0};
    lk_rl_op *op = lk_redlock_acquire(e.rl, "C", "tokA", NULL, 5000, box_cb, &b);
    ck_assert_ptr_nonnull(op);
    lk_redlock_cancel(op);
    lk_redlock_cancel(NULL);
    drain(&e);
    run_until(&e, NULL, 50);
    ck_assert_int_eq(b.calls, 0);
    /* The cancelled grant was given back: the lock is free on every master. */
    assert_lock_all(PREFIX "lock:C", "");
    ck_assert_int_eq(acquire(&e, "C", "tokB", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&e);
    env_close(&e);
}
END_TEST

/* ---- admission: at most max_inflight_rounds out at once, the rest in order ---- */

typedef struct order_box {
    box b;
    int *log; /* shared: indexes in completion order */
    int *n;
    int idx;
} order_box;

static void order_cb(void *arg, const lk_rl_result *res)
{
    order_box *o = arg;
    box_cb(&o->b, res);
    o->log[(*o->n)++] = o->idx;
}

START_TEST(test_admission)
{
    env e;
    enum { N = 6 };
    order_box boxes[N];
    lk_rl_op *ops[N];
    int log[N], n = 0;
    char res[N][8];

    env_max_inflight = 1;
    env_open(&e);
    env_max_inflight = 0;
    for (int i = 0; i < N; i++) {
        boxes[i] = (order_box){.log = log, .n = &n, .idx = i};
        snprintf(res[i], sizeof res[i], "Q%d", i);
        ops[i] = lk_redlock_acquire(e.rl, res[i], "tokQ", NULL, 5000, order_cb, &boxes[i]);
        ck_assert_ptr_nonnull(ops[i]);
    }
    /* one out, the others wait and have not been sent */
    ck_assert_uint_eq(lk_redlock_queued(e.rl), N - 1);
    ck_assert_uint_eq(lk_redlock_pending(e.rl), N);
    lk_redlock_cancel(ops[2]); /* queued: dropped when its turn comes, never sent */
    uint64_t deadline = th_now_ms() + 3000;
    while (n < N - 1 && th_now_ms() < deadline) {
        run_until(&e, NULL, 2);
        /* never more than one round out (pending counts queued and sent ones) */
        ck_assert_uint_le(lk_redlock_pending(e.rl) - lk_redlock_queued(e.rl), 1);
    }
    ck_assert_int_eq(n, N - 1);
    /* first come, first served: the completion order is the order of the calls */
    int want[] = {0, 1, 3, 4, 5};
    for (int i = 0; i < N - 1; i++) {
        ck_assert_int_eq(log[i], want[i]);
        ck_assert_int_eq(boxes[want[i]].b.r.outcome, LK_RL_GRANTED);
        ck_assert_int_gt(boxes[want[i]].b.r.validity_ms, 4000); /* time counts from the send */
        char key[32];
        snprintf(key, sizeof key, PREFIX "lock:Q%d", want[i]);
        assert_lock_all(key, "tokQ");
    }
    ck_assert_int_eq(boxes[2].b.calls, 0);
    drain(&e);
    assert_lock_all(PREFIX "lock:Q2", ""); /* the cancelled one never reached a master */
    ck_assert_uint_eq(lk_redlock_queued(e.rl), 0);
    env_close(&e);
}
END_TEST

START_TEST(test_minority_down)
{
    env e;
    env_open(&e);
    kill(masters[0].pid, SIGKILL);
    ck_assert(up_is(&e, 2, 2000));
    ck_assert_uint_eq(e.masters_cb_up, 2);
    ck_assert(lk_redlock_has_quorum(e.rl));
    ck_assert(!lk_redlock_master_up(e.rl, 0));
    ck_assert(lk_redlock_master_up(e.rl, 1));
    lk_rl_result r = acquire(&e, "M", "tokA", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(acquire(&e, "M", "tokB", NULL, 5000).outcome, LK_RL_HELD);
    ck_assert_int_eq(release(&e, "M", "tokA").outcome, LK_RL_GRANTED);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_majority_noquorum)
{
    env e;
    env_open(&e);
    kill(masters[0].pid, SIGKILL);
    kill(masters[1].pid, SIGKILL);
    ck_assert(up_is(&e, 1, 2000));
    ck_assert(!lk_redlock_has_quorum(e.rl));
    uint64_t t0 = th_now_us();
    lk_rl_result r = acquire(&e, "Q", "tokA", NULL, 5000);
    uint64_t took = th_now_us() - t0;
    ck_assert_int_eq(r.outcome, LK_RL_NOQUORUM);
    ck_assert_msg(took < 100000, "NOQUORUM took %llu us", (unsigned long long)took);
    /* A release is best effort: it goes to the master that is up, and without a quorum
     * of answers it is FAILED (issue 12 item 6). */
    ck_assert_int_eq(release(&e, "Q", "tokA").outcome, LK_RL_FAILED);
    drain(&e);
    /* The acquire sent nothing to the master that stayed up. */
    char v[64];
    rget(2, PREFIX "lock:Q", v, sizeof v);
    ck_assert_str_eq(v, "");
    env_close(&e);
}
END_TEST

START_TEST(test_masters_restart)
{
    env e;
    env_open(&e);
    ck_assert_int_eq(acquire(&e, "S", "tok0", NULL, 5000).outcome, LK_RL_GRANTED);
    kill(masters[0].pid, SIGKILL);
    kill(masters[1].pid, SIGKILL);
    ck_assert(up_is(&e, 1, 2000));
    ck_assert_int_eq(acquire(&e, "S", "tok1", NULL, 5000).outcome, LK_RL_NOQUORUM);
    /* Same ports, new processes (empty data): the client reconnects by itself. */
    masters[0].pid = masters[1].pid = 0;
    ck_assert(th_redis_start(&masters[0]));
    ck_assert(th_redis_start(&masters[1]));
    ck_assert_msg(up_is(&e, 3, 3000), "up: %zu", lk_redlock_masters_up(e.rl));
    ck_assert_uint_eq(e.masters_cb_up, 3);
    /* The restarted majority lost its data (no AOF here): only the grant is checked;
     * fences survive restarts only while a majority keeps its data (SPEC §4). */
    lk_rl_result r = acquire(&e, "S", "tok2", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_uint_ge(r.fence, 1);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_stopped_master)
{
    env e;
    env_open_timeout(&e, 50);
    kill(masters[0].pid, SIGSTOP);
    /* Rounds still complete within about redis_timeout_ms, granted by the other two. */
    uint64_t worst = 0;
    for (int i = 0; i < 20; i++) {
        char tok[32];
        snprintf(tok, sizeof tok, "tok%d", i);
        uint64_t t0 = th_now_us();
        lk_rl_result r = acquire(&e, "P", tok, NULL, 5000);
        ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
        uint64_t t1 = th_now_us();
        ck_assert_int_eq(release(&e, "P", tok).outcome, LK_RL_GRANTED);
        uint64_t t2 = th_now_us();
        worst = CM_MAX(worst, CM_MAX(t1 - t0, t2 - t1));
        run_until(&e, NULL, 20);
    }
    ck_assert_msg(worst < 60000, "slowest round %llu us", (unsigned long long)worst);
    /* The stopped master owes replies for 3 × 50 ms: it is dropped and counts as down. */
    ck_assert_msg(up_is(&e, 2, 2000), "up: %zu", lk_redlock_masters_up(e.rl));
    /* Once continued it comes back without a restart of the client. */
    kill(masters[0].pid, SIGCONT);
    ck_assert_msg(up_is(&e, 3, 3000), "up: %zu", lk_redlock_masters_up(e.rl));
    ck_assert_int_eq(acquire(&e, "P", "last", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_released_pubsub)
{
    env a, b;
    env_open(&a);
    env_open(&b);
    ck_assert_int_eq(acquire(&a, "Pub:1", "tokA", NULL, 5000).outcome, LK_RL_GRANTED);
    ck_assert_int_eq(release(&a, "Pub:1", "tokA").outcome, LK_RL_GRANTED);
    /* Every master publishes its release: B hears "Pub:1" once per master. */
    uint64_t deadline = th_now_ms() + 2000;
    while (b.n_released < 3 && th_now_ms() < deadline) {
        run_until(&b, NULL, 5);
        run_until(&a, NULL, 1);
    }
    ck_assert_int_eq(b.n_released, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(b.released[i], "Pub:1");
    }
    /* A release of a token that holds nothing publishes nothing. */
    ck_assert_int_eq(release(&a, "Pub:1", "tokA").outcome, LK_RL_GRANTED);
    run_until(&b, NULL, 100);
    ck_assert_int_eq(b.n_released, 3);
    drain(&a);
    env_close(&a);
    env_close(&b);
}
END_TEST

START_TEST(test_five_masters)
{
    env e;
    env_open(&e);
    ck_assert_uint_eq(lk_redlock_quorum(e.rl), 3);
    kill(masters[0].pid, SIGKILL);
    kill(masters[3].pid, SIGKILL);
    ck_assert(up_is(&e, 3, 2000));
    lk_rl_result r = acquire(&e, "Five", "tokA", NULL, 5000);
    ck_assert_int_eq(r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(acquire(&e, "Five", "tokB", NULL, 5000).outcome, LK_RL_HELD);
    ck_assert_int_eq(release(&e, "Five", "tokA").outcome, LK_RL_GRANTED);
    kill(masters[4].pid, SIGKILL);
    ck_assert(up_is(&e, 2, 2000));
    ck_assert_int_eq(acquire(&e, "Five", "tokC", NULL, 5000).outcome, LK_RL_NOQUORUM);
    drain(&e);
    env_close(&e);
}
END_TEST

START_TEST(test_free_pending)
{
    /* Freeing with rounds in flight: no callback, nothing leaks (ASan checks the rest). */
    env e;
    env_open(&e);
    box b = {0};
    for (int i = 0; i < 10; i++) {
        ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "Z", "tokA", NULL, 5000, box_cb, &b));
        ck_assert_ptr_nonnull(lk_redlock_release(e.rl, "Z", "tokA", box_cb, &b));
    }
    ck_assert_uint_eq(lk_redlock_pending(e.rl), 20);
    run_until(&e, NULL, 0);
    env_close(&e);
    ck_assert_int_le(b.calls, 20);
}
END_TEST

/* A master restarted on a big AOF answers -LOADING for a while: the SCRIPT LOADs of a
 * connection made then fail. The master must still come up once it has loaded (the
 * handshake is retried), not stay down for good. */
START_TEST(test_master_loading)
{
    env e;
    redisContext *rc = rconnect(0);
    /* About 600k keys make the AOF take a noticeable while to load. */
    redisReply *rep = redisCommand(rc, "EVAL %s 0",
                                   "for i=1,600000 do redis.call('SET','fill:'..i,'x') end "
                                   "return 1");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    redisFree(rc);
    env_open(&e);
    ck_assert(up_is(&e, 3, 3000));
    kill(masters[0].pid, SIGKILL);
    masters[0].pid = 0;
    ck_assert(up_is(&e, 2, 2000));
    /* Restart and let the client reconnect while the data loads. */
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", masters[0].port);
    snprintf(log, sizeof log, "%s/redis.log", masters[0].dir);
    char *argv[] = {"redis-server", "--port",        port,     "--bind",
                    "127.0.0.1",    "--save",        "",       "--appendonly",
                    "yes",          "--appendfsync", "always", "--dir",
                    masters[0].dir, "--daemonize",   "no",     NULL};
    masters[0].pid = th_spawn(argv, log);
    uint64_t t0 = cm_now_ms();
    ck_assert_msg(up_is(&e, 3, 20000), "master never came back up after loading: up %zu",
                  lk_redlock_masters_up(e.rl));
    fprintf(stderr, "redlock_master_loading: up again after %llu ms\n",
            (unsigned long long)(cm_now_ms() - t0));
    ck_assert_int_eq(acquire(&e, "L", "tok-loading", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&e);
    env_close(&e);
}
END_TEST

/* ---- batches: rounds started in one loop pass share one script call per master ---- */

/* How many calls of command cmd (lower case) master i has run, scripts included
 * (INFO commandstats). */
static long long cmd_calls(size_t i, const char *cmd)
{
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    redisContext *c = rconnect(i);
    redisReply *info = redisCommand(c, "INFO commandstats");
    ck_assert_ptr_nonnull(info);
    const char *p = strstr(info->str, key);
    long long n = p ? atoll(p + strlen(key)) : 0;
    freeReplyObject(info);
    redisFree(c);
    return n;
}

START_TEST(test_batch_one_call)
{
    /* Five rounds of three kinds start in one pass: each master gets ONE call, and
     * each round gets its own answer. B1 is held by another token on master 1 only
     * (granted by 0 and 2); B2 on masters 0 and 1 (held). */
    rset(1, PREFIX "lock:B1", "other");
    rset(0, PREFIX "lock:B2", "other");
    rset(1, PREFIX "lock:B2", "other");
    env e;
    env_open(&e);
    ck_assert_int_eq(acquire(&e, "BR", "tokR", NULL, 1000).outcome, LK_RL_GRANTED);
    ck_assert_int_eq(acquire(&e, "BD", "tokD", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&e);
    run_until(&e, NULL, 20);
    long long calls0[3];
    for (size_t i = 0; i < 3; i++) {
        calls0[i] = cmd_calls(i, "evalsha");
    }
    const lk_rl_stats *st = lk_redlock_stats(e.rl);
    uint64_t batches0 = st->batch_calls_total, entries0 = st->batch_entries_total;
    box b[5] = {{0}};
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "B0", "tok0", NULL, 5000, box_cb, &b[0]));
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "B1", "tok1", NULL, 5000, box_cb, &b[1]));
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "B2", "tok2", NULL, 5000, box_cb, &b[2]));
    ck_assert_ptr_nonnull(lk_redlock_renew(e.rl, "BR", "tokR", 60000, box_cb, &b[3]));
    ck_assert_ptr_nonnull(lk_redlock_release(e.rl, "BD", "tokD", box_cb, &b[4]));
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(run_until(&e, &b[i].done, 3000), "round %d did not complete", i);
    }
    /* One call per master carried the five (the unlock of B2 that follows its HELD is a
     * round of a later pass: not counted yet unless it went out, so compare with >=). */
    ck_assert_uint_eq(st->batch_entries_total - entries0 >= 15, true);
    ck_assert_uint_ge(st->batch_calls_total - batches0, 3);
    ck_assert_int_eq(b[0].r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(b[1].r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(b[2].r.outcome, LK_RL_HELD);
    ck_assert_int_eq(b[2].r.retry_after_ms, 0); /* "other" has no expiry */
    ck_assert_int_eq(b[3].r.outcome, LK_RL_GRANTED);
    ck_assert_int_gt(b[3].r.validity_ms, 50000);
    ck_assert_int_eq(b[4].r.outcome, LK_RL_GRANTED);
    ck_assert_uint_eq(b[0].r.fence, 1);
    ck_assert_uint_eq(b[1].r.fence, 1);
    drain(&e);
    run_until(&e, NULL, 20);
    /* The five rounds were one EVALSHA on each master, plus at most the unlock of B2. */
    for (size_t i = 0; i < 3; i++) {
        long long d = cmd_calls(i, "evalsha") - calls0[i];
        ck_assert_msg(d >= 1 && d <= 2, "master %zu ran %lld calls for 5 rounds + 1 unlock", i, d);
    }
    assert_lock_all(PREFIX "lock:B0", "tok0");
    assert_lock_all(PREFIX "lock:BD", "");
    char v[64];
    rget(0, PREFIX "lock:B1", v, sizeof v);
    ck_assert_str_eq(v, "tok1");
    rget(1, PREFIX "lock:B1", v, sizeof v);
    ck_assert_str_eq(v, "other"); /* the per-resource no did not touch the other token */
    rget(2, PREFIX "lock:B2", v, sizeof v);
    ck_assert_str_eq(v, ""); /* B2's grant on master 2 was taken back */
    rget(0, PREFIX "lock:B2", v, sizeof v);
    ck_assert_str_eq(v, "other");
    env_close(&e);
}
END_TEST

START_TEST(test_batch_release_notice)
{
    /* Two releases in one pass: each master publishes ONE notice naming both, and the
     * other client hears each resource from each master. */
    env a, b;
    env_open(&a);
    env_open(&b);
    ck_assert_int_eq(acquire(&a, "Rel:1", "tok1", NULL, 5000).outcome, LK_RL_GRANTED);
    ck_assert_int_eq(acquire(&a, "Rel:2", "tok2", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&a);
    run_until(&a, NULL, 20);
    long long pub0[3];
    for (size_t i = 0; i < 3; i++) {
        pub0[i] = cmd_calls(i, "publish");
    }
    box r1 = {0}, r2 = {0};
    ck_assert_ptr_nonnull(lk_redlock_release(a.rl, "Rel:1", "tok1", box_cb, &r1));
    ck_assert_ptr_nonnull(lk_redlock_release(a.rl, "Rel:2", "tok2", box_cb, &r2));
    ck_assert(run_until(&a, &r1.done, 3000));
    ck_assert(run_until(&a, &r2.done, 3000));
    uint64_t deadline = th_now_ms() + 2000;
    while (b.n_released < 6 && th_now_ms() < deadline) {
        run_until(&b, NULL, 5);
        run_until(&a, NULL, 1);
    }
    ck_assert_int_eq(b.n_released, 6);
    int n1 = 0, n2 = 0;
    for (int i = 0; i < 6; i++) {
        n1 += strcmp(b.released[i], "Rel:1") == 0;
        n2 += strcmp(b.released[i], "Rel:2") == 0;
    }
    ck_assert_int_eq(n1, 3);
    ck_assert_int_eq(n2, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(cmd_calls(i, "publish") - pub0[i], 1);
    }
    drain(&a);
    env_close(&a);
    env_close(&b);
}
END_TEST

static void busy_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    *(bool *)privdata = true;
}

/* Keeps master i busy for ms inside a script sent from e's own loop (a client that
 * answers late without being stopped: later commands queue behind it). */
static redisAsyncContext *master_busy(env *e, size_t i, int ms, bool *done)
{
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", masters[i].port);
    ck_assert_msg(ac != NULL && !ac->err, "async connect to master %zu", i);
    ck_assert_int_eq(redisLibeventAttach(ac, e->base), REDIS_OK);
    char script[256];
    snprintf(script, sizeof script,
             "local s = redis.call('TIME') local e = s[1] * 1000000 + s[2] + %d "
             "while true do local t = redis.call('TIME') "
             "if t[1] * 1000000 + t[2] >= e then break end end return 1",
             ms * 1000);
    ck_assert_int_eq(redisAsyncCommand(ac, busy_cb, done, "EVAL %s 0", script), REDIS_OK);
    return ac;
}

START_TEST(test_batch_late_one_resource)
{
    /* Three acquires in one pass: one call per master. Master 0 answers that call late
     * (busy 120 ms, redis_timeout_ms 50), master 1 holds LB for another token. LA and
     * LC do not need master 0 (1 and 2 grant them at once); LB does: its only other yes
     * is master 2, so the late answer counts as a no for it and LB is HELD after the
     * round timer, and its grants are taken back. Control: with master 0 on time, LB is
     * granted by masters 0 and 2. */
    rset(1, PREFIX "lock:LB", "other");
    env e;
    env_open_timeout(&e, 50);
    bool busy_done = false;
    redisAsyncContext *busy = master_busy(&e, 0, 120, &busy_done);
    run_until(&e, NULL, 15); /* the busy script is running on master 0 */
    const lk_rl_stats *st = lk_redlock_stats(e.rl);
    uint64_t batches0 = st->batch_calls_total;
    box a = {0}, b = {0}, c = {0};
    uint64_t t0 = th_now_us();
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "LA", "tokA", NULL, 5000, box_cb, &a));
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "LB", "tokB", NULL, 5000, box_cb, &b));
    ck_assert_ptr_nonnull(lk_redlock_acquire(e.rl, "LC", "tokC", NULL, 5000, box_cb, &c));
    ck_assert(run_until(&e, &a.done, 3000));
    ck_assert(run_until(&e, &c.done, 3000));
    ck_assert_msg(!b.done, "LB decided before its round timer: master 0 cannot have answered");
    ck_assert(run_until(&e, &b.done, 3000));
    uint64_t b_us = th_now_us() - t0;
    ck_assert_uint_eq(st->batch_calls_total - batches0 >= 3, true);
    ck_assert_int_eq(a.r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(c.r.outcome, LK_RL_GRANTED);
    ck_assert_int_eq(b.r.outcome, LK_RL_HELD);
    ck_assert_msg(b_us >= 45000, "LB decided after %llu us, before the 50 ms round timer",
                  (unsigned long long)b_us);
    ck_assert(run_until(&e, &busy_done, 3000));
    drain(&e);
    run_until(&e, NULL, 50);
    /* The late call did run on master 0: LA and LC are there with their tokens; LB's
     * late grant there was taken back by the unlock queued behind it. */
    char v[64];
    rget(0, PREFIX "lock:LA", v, sizeof v);
    ck_assert_str_eq(v, "tokA");
    rget(0, PREFIX "lock:LC", v, sizeof v);
    ck_assert_str_eq(v, "tokC");
    rget(0, PREFIX "lock:LB", v, sizeof v);
    ck_assert_str_eq(v, "");
    rget(2, PREFIX "lock:LB", v, sizeof v);
    ck_assert_str_eq(v, "");
    /* Control: master 0 on time decides LB the other way. */
    ck_assert_int_eq(acquire(&e, "LB", "tokB2", NULL, 5000).outcome, LK_RL_GRANTED);
    drain(&e);
    redisAsyncFree(busy);
    env_close(&e);
}
END_TEST

static void setup3_aof(void)
{
    memset(masters, 0, sizeof masters);
    n_masters = 3;
    masters[0].aof = true;
    for (size_t i = 0; i < 3; i++) {
        if (!th_redis_start(&masters[i])) {
            fprintf(stderr, "redis-server did not start\n");
            th_stop_all();
            exit(1);
        }
    }
}

static void add_case(Suite *s, const char *name, const TTest *t, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("redlock");
    add_case(s, "roundtrip", test_roundtrip, setup3);
    add_case(s, "exclusion", test_exclusion, setup3);
    add_case(s, "unlock_on_failure", test_unlock_on_failure, setup3);
    add_case(s, "noscript", test_noscript, setup3);
    add_case(s, "handoff", test_handoff, setup3);
    add_case(s, "fences_increase", test_fences_increase, setup3);
    add_case(s, "fence_writeback", test_fence_writeback, setup3);
    add_case(s, "renew", test_renew, setup3);
    add_case(s, "cancel", test_cancel, setup3);
    add_case(s, "admission", test_admission, setup3);
    add_case(s, "minority_down", test_minority_down, setup3);
    add_case(s, "majority_noquorum", test_majority_noquorum, setup3);
    add_case(s, "masters_restart", test_masters_restart, setup3);
    add_case(s, "stopped_master", test_stopped_master, setup3);
    add_case(s, "released_pubsub", test_released_pubsub, setup3);
    add_case(s, "five_masters", test_five_masters, setup5);
    add_case(s, "free_pending", test_free_pending, setup3);
    add_case(s, "master_loading", test_master_loading, setup3_aof);
    add_case(s, "batch_one_call", test_batch_one_call, setup3);
    add_case(s, "batch_late_one_resource", test_batch_late_one_resource, setup3);
    add_case(s, "batch_release_notice", test_batch_release_notice, setup3);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
