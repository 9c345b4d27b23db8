/*
 * test_perflock: the rules of reserved's performance lock queue (rs_perflock.h, rules
 * 1-9) over a scripted lock service: no network, no event loop. The fake service records
 * every ACQUIRE and RELEASE and answers only when the test says so (fk_grant,
 * fk_timeout, fk_error, fk_lost, fk_released); its clock stands still until the test
 * moves it (F.now_us). Waiters write what happens to them into one event log:
 *   A<wait_ms>  an ACQUIRE went out        R  a RELEASE went out
 *   g<w>:<f>    waiter w got the lock (fence f)
 *   r<w>:<why>  waiter w was refused (busy, unreachable, or lockd's code)
 *   l<w>        holder w was told its lock was lost
 *   n<w>        waiter w was told it is next in line
 * Each test names the events it watches (F.show) and compares the log.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_strbuf.h"
#include "rs_perflock.h"
#include "ru_suites.h"

#define MAX_ACQ 128
#define MAX_W   64

typedef struct tw {
    int id;
    int64_t perf;
    rs_perflock_waiter *h; /* while waiting or holding */
    bool holds;
    bool refused;
} tw;

static struct {
    uint64_t now_us;
    bool unusable;
    bool acquire_fails;
    bool release_inline; /* on_done inside ops.release (cm_lockclient after a LOST) */
    int nacq;
    void *acq_arg[MAX_ACQ];
    uint64_t acq_wait[MAX_ACQ];
    char acq_res[MAX_ACQ][64];
    void *rel_pending[MAX_ACQ]; /* queue args whose RELEASE is out, oldest first */
    int nrel;
    const char *show; /* event letters logged */
    cm_strbuf log;
    rs_perflock *pl;
    tw w[MAX_W];
    /* the waiters in arrival order that neither got the lock nor were refused */
    int line[MAX_W];
    int nline;
} F;

static void ev(char kind, const char *fmt, ...) CM_PRINTF(2, 3);
static void ev(char kind, const char *fmt, ...)
{
    if (F.show == NULL || strchr(F.show, kind) == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    char buf[64];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cm_strbuf_printf(&F.log, "%s%c%s", F.log.len > 0 ? " " : "", kind, buf);
}

/* Compares the log with want and empties it. */
static void expect(const char *want)
{
    ck_assert_str_eq(cm_strbuf_str(&F.log), want);
    cm_strbuf_reset(&F.log);
}

static void line_drop(int id)
{
    for (int i = 0; i < F.nline; i++) {
        if (F.line[i] == id) {
            memmove(&F.line[i], &F.line[i + 1], (size_t)(F.nline - i - 1) * sizeof(int));
            F.nline--;
            return;
        }
    }
}

/* ---- the waiters' callbacks ---- */

static void cb_granted(void *arg, uint64_t fence)
{
    tw *w = arg;
    ck_assert_msg(!w->holds && !w->refused, "w%d granted twice", w->id);
    w->holds = true;
    line_drop(w->id);
    ev('g', "%d:%llu", w->id, (unsigned long long)fence);
}

static void cb_refused(void *arg, rs_perflock_refusal why, const char *code, const char *message)
{
    tw *w = arg;
    ck_assert_msg(!w->holds && !w->refused, "w%d refused after it got the lock", w->id);
    ck_assert_ptr_nonnull(message);
    w->refused = true;
    w->h = NULL;
    line_drop(w->id);
    ev('r', "%d:%s", w->id,
       why == RS_PERFLOCK_BUSY          ? "busy"
       : why == RS_PERFLOCK_UNREACHABLE ? "unreachable"
                                        : code);
}

static void cb_lost(void *arg)
{
    tw *w = arg;
    ck_assert_msg(w->holds, "w%d told lost without the lock", w->id);
    ev('l', "%d", w->id);
}

static void cb_next(void *arg)
{
    tw *w = arg;
    ck_assert_msg(!w->holds && !w->refused, "w%d told next in line, but it is not waiting", w->id);
    /* rule 8: the first waiter of its performance; at most the one being granted right
     * now is ahead of it */
    int ahead = 0;
    for (int i = 0; i < F.nline && F.line[i] != w->id; i++)
        if (F.w[F.line[i]].perf == w->perf)
            ahead++;
    ck_assert_msg(ahead <= 1, "w%d told next in line with %d waiting ahead of it", w->id, ahead);
    ev('n', "%d", w->id);
}

static const rs_perflock_cbs cbs = {cb_granted, cb_refused, cb_lost, cb_next};

/* ---- the scripted lock service ---- */

static bool fk_usable(void *ctx)
{
    (void)ctx;
    return !F.unusable;
}

static cm_rc fk_acquire(void *ctx, const char *resource, uint64_t lease_ms, uint64_t wait_ms,
                        void *arg)
{
    (void)ctx;
    ck_assert_int_eq(lease_ms, 1000);
    if (F.acquire_fails)
        return CM_ERR;
    ck_assert_int_lt(F.nacq, MAX_ACQ);
    F.acq_arg[F.nacq] = arg;
    F.acq_wait[F.nacq] = wait_ms;
    snprintf(F.acq_res[F.nacq], sizeof(F.acq_res[0]), "%s", resource);
    F.nacq++;
    ev('A', "%llu", (unsigned long long)wait_ms);
    return CM_OK;
}

/* A grant is a pointer to the arg slot of its ACQUIRE: release finds the queue from it. */
static void fk_release(void *ctx, void *grant)
{
    (void)ctx;
    void *arg = *(void **)grant;
    ev('R', "%s", "");
    if (F.release_inline) {
        rs_perflock_on_done(arg, CM_LOCK_OK, "", "");
        return;
    }
    F.rel_pending[F.nrel++] = arg;
}

static uint64_t fk_now(void *ctx)
{
    (void)ctx;
    return F.now_us;
}

static const rs_lock_ops fk_ops = {fk_usable, fk_acquire, fk_release, fk_now};

/* The answers to ACQUIRE number i (in the order sent; -1: the last one). */
static void *acq_arg(int i)
{
    ck_assert_int_gt(F.nacq, 0);
    ck_assert_int_lt(i, F.nacq);
    return F.acq_arg[i < 0 ? F.nacq - 1 : i];
}

static void fk_grant_at(int i, uint64_t fence)
{
    int k = i < 0 ? F.nacq - 1 : i;
    rs_perflock_on_granted(acq_arg(i), fence, &F.acq_arg[k]);
}

static void fk_grant(uint64_t fence)
{
    fk_grant_at(-1, fence);
}

static void fk_timeout_at(int i)
{
    rs_perflock_on_done(acq_arg(i), CM_LOCK_TIMEOUT, "", "");
}

static void fk_timeout(void)
{
    fk_timeout_at(-1);
}

static void fk_error(const char *code)
{
    rs_perflock_on_done(acq_arg(-1), CM_LOCK_ERROR, code, "lockd said no");
}

static void fk_lost(void)
{
    rs_perflock_on_lost(acq_arg(-1));
}

/* The oldest RELEASE out comes back. */
static void fk_released(void)
{
    ck_assert_int_gt(F.nrel, 0);
    void *arg = F.rel_pending[0];
    memmove(&F.rel_pending[0], &F.rel_pending[1], (size_t)(F.nrel - 1) * sizeof(void *));
    F.nrel--;
    rs_perflock_on_done(arg, CM_LOCK_OK, "", "");
}

/* max_queue 0: the table's default (RS_PERFLOCK_QUEUE_MAX). */
static void setup_queue(uint64_t wait_ms, size_t max_queue, const char *show)
{
    memset(&F, 0, sizeof(F));
    F.now_us = 1000000;
    F.show = show;
    for (int i = 0; i < MAX_W; i++)
        F.w[i].id = i;
    rs_perflock_opts opts = {.lease_ms = 1000, .wait_ms = wait_ms, .max_queue = max_queue};
    F.pl = rs_perflock_new(&fk_ops, NULL, &opts, &cbs);
    ck_assert_ptr_nonnull(F.pl);
}

static void setup_with(uint64_t wait_ms, const char *show)
{
    setup_queue(wait_ms, 0, show);
}

static void teardown_fk(void)
{
    rs_perflock_free(F.pl);
    cm_strbuf_free(&F.log);
}

/* Waiter i queues for perf. */
static void wait_for(int i, int64_t perf)
{
    F.line[F.nline++] = i;
    F.w[i].perf = perf;
    F.w[i].h = rs_perflock_wait(F.pl, perf, &F.w[i]);
    ck_assert_msg(F.w[i].h != NULL, "w%d could not queue", i);
}

static void release(int i)
{
    ck_assert_msg(F.w[i].holds, "w%d releases without the lock", i);
    rs_perflock_waiter *h = F.w[i].h;
    F.w[i].h = NULL;
    F.w[i].holds = false;
    rs_perflock_release(h);
}

static void advance_ms(uint64_t ms)
{
    F.now_us += ms * 1000;
}

/* ---------------------------------------------------------------- the rules */

/* Rule 1: the lock goes to the waiters in the order they came. */
START_TEST(test_fifo)
{
    setup_with(5000, "g");
    for (int i = 1; i <= 5; i++)
        wait_for(i, 7);
    fk_grant(3);
    expect("g1:3");
    for (int i = 1; i <= 4; i++)
        release(i);
    expect("g2:3 g3:3 g4:3 g5:3");
    release(5);
    teardown_fk();
}
END_TEST

/* Rule 2: one ACQUIRE out per performance, only for a waiter, with the head's remaining
 * wait; other performances have their own. */
START_TEST(test_one_acquire)
{
    setup_with(5000, "A");
    wait_for(1, 7);
    advance_ms(1000);
    wait_for(2, 7);
    wait_for(3, 7);
    wait_for(4, 8);
    expect("A5000 A5000");
    ck_assert_str_eq(F.acq_res[0], "Performance:7");
    ck_assert_str_eq(F.acq_res[1], "Performance:8");
    /* w1's ACQUIRE times out after its 5 s; w2, queued 4 s ago, gets the next one with
     * the 1 s it has left, and w3 still waits behind it */
    advance_ms(4000);
    fk_timeout_at(0);
    expect("A1000");
    ck_assert_int_eq(F.nacq, 3);
    teardown_fk();
}
END_TEST

/* Rule 3: one grant serves at most RS_PERFLOCK_CHAIN_MAX holders, then is released and
 * acquired anew for the next. */
START_TEST(test_chain_limit)
{
    setup_with(0, "gAR");
    int n = RS_PERFLOCK_CHAIN_MAX + 3;
    for (int i = 1; i <= n; i++)
        wait_for(i, 7);
    expect("A0");
    fk_grant(1);
    for (int i = 1; i < RS_PERFLOCK_CHAIN_MAX; i++)
        release(i);
    cm_strbuf_reset(&F.log);
    ck_assert(F.w[RS_PERFLOCK_CHAIN_MAX].holds);
    release(RS_PERFLOCK_CHAIN_MAX); /* the last of the chain: back to lockd */
    expect("R");
    ck_assert(!F.w[RS_PERFLOCK_CHAIN_MAX + 1].holds);
    fk_released();
    expect("A0");
    fk_grant(2);
    expect("g33:2");
    teardown_fk();
}
END_TEST

/* Rule 3: a grant older than RS_PERFLOCK_CHAIN_MS is not handed on. */
START_TEST(test_chain_time)
{
    setup_with(0, "gAR");
    for (int i = 1; i <= 4; i++)
        wait_for(i, 7);
    fk_grant(1);
    expect("A0 g1:1");
    advance_ms(RS_PERFLOCK_CHAIN_MS - 1);
    release(1);
    expect("g2:1"); /* still young: handed on */
    advance_ms(1);
    release(2);
    expect("R"); /* RS_PERFLOCK_CHAIN_MS old: released */
    fk_released();
    expect("A0");
    fk_grant(2);
    expect("g3:2");
    teardown_fk();
}
END_TEST

/* Rule 4: every holder of a chain gets the grant's fence; a new grant its own. */
START_TEST(test_fence)
{
    setup_with(0, "g");
    for (int i = 1; i <= 3; i++)
        wait_for(i, 7);
    fk_grant(41);
    release(1);
    expect("g1:41 g2:41");
    advance_ms(RS_PERFLOCK_CHAIN_MS);
    release(2);
    fk_released();
    fk_grant(42);
    expect("g3:42");
    teardown_fk();
}
END_TEST

/* Rule 5: a LOST push tells the holder; the grant is not handed on but released, and
 * the next waiter gets a grant of its own. */
START_TEST(test_lost)
{
    setup_with(0, "glAR");
    for (int i = 1; i <= 3; i++)
        wait_for(i, 7);
    fk_grant(5);
    expect("A0 g1:5");
    ck_assert(!rs_perflock_lost(F.w[1].h));
    fk_lost();
    fk_lost(); /* told once */
    expect("l1");
    ck_assert(rs_perflock_lost(F.w[1].h));
    release(1);
    expect("R"); /* not handed to w2 */
    ck_assert(!F.w[2].holds);
    fk_released();
    expect("A0");
    fk_grant(6);
    expect("g2:6");
    ck_assert(!rs_perflock_lost(F.w[2].h));
    /* cm_lockclient ends a lost grant's release at once: the same, inside release */
    fk_lost();
    F.release_inline = true;
    release(2);
    expect("l2 R A0");
    fk_grant(7);
    expect("g3:7");
    teardown_fk();
}
END_TEST

/* Rule 6: a waiter out of time is refused BUSY when the lock is next free to move, never
 * while another holds it; an ACQUIRE that times out refuses its waiter BUSY. */
START_TEST(test_wait_timeout)
{
    setup_with(5000, "grA");
    wait_for(1, 7);
    fk_grant(1);
    wait_for(2, 7);
    advance_ms(3000);
    wait_for(3, 7);
    expect("A5000 g1:1");
    advance_ms(3000); /* w2 has waited 6 s, w3 3 s, and w1 still holds: nobody refused, */
    wait_for(4, 7);   /* not even when the queue moves */
    expect("");
    release(1); /* the chain is old: the lock goes back to lockd, and w2 is out of time */
    expect("r2:busy");
    fk_released(); /* w3 gets the ACQUIRE, with the 2 s it has left */
    expect("A2000");
    fk_timeout();
    expect("r3:busy A5000");
    fk_timeout();
    expect("r4:busy");
    ck_assert_int_eq(rs_perflock_queues(F.pl), 0);
    teardown_fk();
}
END_TEST

/* Rule 6, at a hand-on: the grant skips the waiters out of time. */
START_TEST(test_wait_timeout_handon)
{
    setup_with(100, "grA");
    wait_for(1, 7);
    wait_for(2, 7);
    advance_ms(80); /* a slow grant: the chain starts at 80 ms */
    fk_grant(1);
    wait_for(3, 7);
    advance_ms(30); /* w2 has waited 110 ms, w3 30 ms; the chain is 30 ms old */
    release(1);
    expect("A100 g1:1 r2:busy g3:1");
    teardown_fk();
}
END_TEST

/* Rule 7: an ACQUIRE lockd refuses refuses its waiter with lockd's code; the next waiter
 * gets its own ACQUIRE. */
START_TEST(test_refused)
{
    setup_with(0, "grA");
    wait_for(1, 7);
    wait_for(2, 7);
    fk_error("NOQUORUM");
    expect("A0 r1:NOQUORUM A0");
    fk_grant(9);
    expect("g2:9");
    teardown_fk();
}
END_TEST

/* Rule 7: when the service cannot be asked, nobody waits. */
START_TEST(test_unreachable)
{
    setup_with(0, "grAR");
    F.unusable = true;
    ck_assert_ptr_null(rs_perflock_wait(F.pl, 7, &F.w[1]));
    F.unusable = false;
    F.acquire_fails = true;
    ck_assert_ptr_null(rs_perflock_wait(F.pl, 7, &F.w[1]));
    ck_assert_int_eq(rs_perflock_queues(F.pl), 0);
    F.acquire_fails = false;
    /* later: w1 holds, w2 and w3 wait; the lock goes back and cannot be asked again */
    wait_for(1, 7);
    fk_grant(1);
    wait_for(2, 7);
    wait_for(3, 7);
    advance_ms(RS_PERFLOCK_CHAIN_MS);
    release(1);
    F.acquire_fails = true;
    fk_released();
    expect("A0 g1:1 R r2:unreachable r3:unreachable");
    ck_assert_int_eq(rs_perflock_queues(F.pl), 0);
    teardown_fk();
}
END_TEST

/* Rule 8: while the lock is busy the first waiter (only it) is told next in line: the
 * check sits in cb_next; here, that it is told whenever there is one. */
START_TEST(test_prefetch)
{
    setup_with(0, "ng");
    wait_for(1, 7); /* its own ACQUIRE is out: it may get ready */
    expect("n1");
    wait_for(2, 7);
    expect("n1");
    fk_grant(1);
    expect("n2 g1:1");
    wait_for(3, 7);
    expect("n2");
    release(1);
    expect("n3 g2:1");
    advance_ms(RS_PERFLOCK_CHAIN_MS);
    release(2);
    expect(""); /* RELEASE out: w3 was told already when it became first */
    fk_released();
    expect("n3");
    fk_grant(2);
    expect("g3:2");
    teardown_fk();
}
END_TEST

/* Rule 9: a queue without waiters and lock is freed; performances do not share one. */
START_TEST(test_free)
{
    setup_with(0, NULL);
    wait_for(1, 7);
    wait_for(2, 8);
    ck_assert_int_eq(rs_perflock_queues(F.pl), 2);
    fk_grant_at(0, 1);
    release(1);
    ck_assert_int_eq(rs_perflock_queues(F.pl), 2); /* its RELEASE is out */
    fk_released();
    ck_assert_int_eq(rs_perflock_queues(F.pl), 1);
    fk_timeout_at(1);
    ck_assert_int_eq(rs_perflock_queues(F.pl), 0);
    teardown_fk();
}
END_TEST

/* Rule 6 with lock.wait_ms 0 (ACQUIRE does not wait at lockd): a wait in the queue is
 * still bounded, by RS_PERFLOCK_WAIT0_MS; before, a waiter behind a busy lock waited for
 * ever. */
START_TEST(test_wait_zero_bounded)
{
    setup_with(0, "grAR");
    wait_for(1, 7);
    fk_grant(1);
    wait_for(2, 7);
    advance_ms(RS_PERFLOCK_WAIT0_MS - 100);
    wait_for(3, 7);
    advance_ms(100); /* w2 has waited the bound, w3 100 ms; w1 still holds: nobody refused */
    expect("A0 g1:1");
    ck_assert_int_eq(rs_perflock_wait_limit_ms(F.pl), RS_PERFLOCK_WAIT0_MS);
    release(1); /* the lock moves: w2 is out of time, w3 gets an ACQUIRE of its own */
    expect("r2:busy R");
    fk_released();
    fk_grant(2);
    expect("A0 g3:2");
    release(3);
    teardown_fk();
}
END_TEST

/* Rule 10: at most opts.max_queue bookings wait in one performance's queue; beyond, a
 * wait is refused at once and rs_perflock_full says why. A holder no longer counts; a
 * batch's members do (rs_perflock_add); other performances have their own. The default
 * is RS_PERFLOCK_QUEUE_MAX. Before, the queue grew without a bound. */
START_TEST(test_queue_bound)
{
    setup_queue(0, 3, "gr");
    wait_for(1, 7);
    wait_for(2, 7);
    ck_assert(!rs_perflock_full(F.pl, 7));
    wait_for(3, 7);
    ck_assert(rs_perflock_full(F.pl, 7));
    ck_assert_ptr_null(rs_perflock_wait(F.pl, 7, &F.w[4]));
    ck_assert(!rs_perflock_full(F.pl, 8));
    wait_for(5, 8);
    fk_grant_at(0, 1); /* w1 holds: two wait */
    ck_assert(!rs_perflock_full(F.pl, 7));
    wait_for(6, 7);
    ck_assert_int_eq(rs_perflock_add(F.w[6].h), CM_ERR); /* full: a member is not counted */
    release(1);                                          /* w2 holds: w3 and w6 wait */
    ck_assert_int_eq(rs_perflock_add(F.w[6].h), CM_OK);  /* w6 waits for two now */
    ck_assert(rs_perflock_full(F.pl, 7));
    ck_assert_ptr_null(rs_perflock_wait(F.pl, 7, &F.w[7]));
    release(2);
    release(3); /* w6, with its member, leaves the queue: it is empty */
    ck_assert(!rs_perflock_full(F.pl, 7));
    expect("g1:1 g2:1 g3:1 g6:1");
    teardown_fk();

    /* the default bound */
    setup_with(0, NULL);
    static tw many[RS_PERFLOCK_QUEUE_MAX + 1];
    for (int i = 0; i <= RS_PERFLOCK_QUEUE_MAX; i++) {
        many[i].id = i;
        many[i].perf = 9;
        many[i].h = rs_perflock_wait(F.pl, 9, &many[i]);
        if (i < RS_PERFLOCK_QUEUE_MAX)
            ck_assert_msg(many[i].h != NULL, "waiter %d refused", i);
    }
    ck_assert_msg(many[RS_PERFLOCK_QUEUE_MAX].h == NULL, "the queue took %d waiters",
                  RS_PERFLOCK_QUEUE_MAX + 1);
    ck_assert(rs_perflock_full(F.pl, 9));
    teardown_fk();
}
END_TEST

/* A local table: Check's TTest pointers are not constants. */
Suite *ru_perflock_suite(void)
{
    const ru_case cases[] = {
        {"perflock_fifo", test_fifo, 0},
        {"perflock_one_acquire", test_one_acquire, 0},
        {"perflock_chain_limit", test_chain_limit, 0},
        {"perflock_chain_time", test_chain_time, 0},
        {"perflock_fence", test_fence, 0},
        {"perflock_lost", test_lost, 0},
        {"perflock_wait_timeout", test_wait_timeout, 0},
        {"perflock_wait_timeout_handon", test_wait_timeout_handon, 0},
        {"perflock_refused", test_refused, 0},
        {"perflock_unreachable", test_unreachable, 0},
        {"perflock_prefetch", test_prefetch, 0},
        {"perflock_free", test_free, 0},
        {"perflock_wait_zero_bounded", test_wait_zero_bounded, 0},
        {"perflock_queue_bound", test_queue_bound, 0},
    };
    return ru_suite("perflock", cases, sizeof(cases) / sizeof(cases[0]));
}
