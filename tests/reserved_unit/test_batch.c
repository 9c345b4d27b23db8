/*
 * test_batch: network-free tests of group booking's rules (rs_batch.h): the batch's
 * state table (main roads legal, shortcuts not, every state ends in done, an illegal
 * move aborts), which finishing steps a batch's members need (a declined or taken-back
 * booking is undone, an approved one captured, a free one dropped and read back, a
 * keyed one's record stored; a failed or replayed booking needs nothing), the quoting of
 * the array literals the batch sends, and joining (one lock waiter per batch, a key
 * twice in one batch refused, lock.batch_max starts the next batch, members counted in
 * the lock queue's bound) over a scripted lock service that grants nothing.
 */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "rs_batch.h"
#include "rs_testhook.h"
#include "ru_suites.h"

/* ---------------------------------------------------------------- the table */

static const rs_batch_state roads[][16] = {
    /* paid bookings, the connection after the grant */
    {RB_FORMING, RB_LEASING, RB_BEGINNING, RB_BOOKING, RB_CHARGING, RB_CAPTURING, RB_UNDOING,
     RB_COMMITTING, RB_DONE},
    /* first in line: the early transaction, no payment, keyed, paused (test hook) */
    {RB_FORMING, RB_EARLY_LEASING, RB_EARLY_BEGINNING, RB_EARLY_READY, RB_BOOKING, RB_READING,
     RB_STORING, RB_PAUSED, RB_COMMITTING, RB_DONE},
    /* a free booking: its attempt dropped, then read back */
    {RB_FORMING, RB_LEASING, RB_BEGINNING, RB_BOOKING, RB_DROPPING, RB_READING, RB_COMMITTING,
     RB_DONE},
    /* LOST while the charges were out */
    {RB_FORMING, RB_LEASING, RB_BEGINNING, RB_BOOKING, RB_CHARGING, RB_UNWINDING, RB_DONE},
    /* refused while the early BEGIN was out */
    {RB_FORMING, RB_EARLY_LEASING, RB_EARLY_BEGINNING, RB_REFUSED_BEGINNING, RB_UNWINDING, RB_DONE},
    /* refused while waiting */
    {RB_FORMING, RB_DONE},
};

START_TEST(test_roads)
{
    for (size_t p = 0; p < sizeof(roads) / sizeof(roads[0]); p++) {
        rs_batch_state cur = roads[p][0];
        for (size_t i = 1; i < 16 && roads[p][i] != RB_FORMING; i++) {
            ck_assert_msg(rs_batch_state_legal(cur, roads[p][i]), "road %zu: %s -> %s", p,
                          rs_batch_state_name(cur), rs_batch_state_name(roads[p][i]));
            rs_batch_state_move(&cur, roads[p][i], p);
        }
        ck_assert_int_eq(cur, RB_DONE);
    }
}
END_TEST

START_TEST(test_shortcuts)
{
    static const rs_batch_state bad[][2] = {
        {RB_FORMING, RB_BOOKING},        /* book without the lock and a transaction */
        {RB_LEASING, RB_BOOKING},        /* without BEGIN */
        {RB_EARLY_READY, RB_COMMITTING}, /* commit without the lock */
        {RB_BOOKING, RB_DONE},           /* the transaction left open */
        {RB_CHARGING, RB_DONE},          /* the same, charges out */
        {RB_UNDOING, RB_CAPTURING},      /* capture after the undo: steps go one way */
        {RB_STORING, RB_READING},        /* read back after the records were stored */
        {RB_COMMITTING, RB_UNWINDING},   /* ROLLBACK after COMMIT */
        {RB_PAUSED, RB_DONE},            /* the pause ends in COMMIT or ROLLBACK */
        {RB_DONE, RB_FORMING},           /* a batch is never reused */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!rs_batch_state_legal(bad[i][0], bad[i][1]), "%s -> %s is legal",
                      rs_batch_state_name(bad[i][0]), rs_batch_state_name(bad[i][1]));
    /* every state can end in done; done leads nowhere; names distinct */
    bool ends[RB_NSTATES] = {false};
    ends[RB_DONE] = true;
    for (bool changed = true; changed;) {
        changed = false;
        for (int f = 0; f < RB_NSTATES; f++)
            for (int t = 0; t < RB_NSTATES; t++)
                if (ends[t] && !ends[f] && rs_batch_state_legal(f, t))
                    ends[f] = changed = true;
    }
    for (int s = 0; s < RB_NSTATES; s++) {
        ck_assert_msg(ends[s], "%s never ends", rs_batch_state_name(s));
        ck_assert(!rs_batch_state_legal(RB_DONE, s));
        for (int q = s + 1; q < RB_NSTATES; q++)
            ck_assert_str_ne(rs_batch_state_name(s), rs_batch_state_name(q));
    }
}
END_TEST

/* Committing a batch that never had the lock aborts (Check: the test dies of SIGABRT). */
START_TEST(test_illegal_move_aborts)
{
    rs_batch_state s = RB_FORMING;
    cm_log_set_level(CM_LOG_ERROR);
    if (RU_ABORT_SIGNAL != 0)
        rs_batch_state_move(&s, RB_COMMITTING, 1);
}
END_TEST

/* ---------------------------------------------------------------- the members' steps */

static rs_bk member(rs_bk_outcome out, rs_bk_pay pay, int64_t res_id, const char *key)
{
    rs_bk b;
    memset(&b, 0, sizeof(b));
    b.op = RS_BK_BOOK;
    b.phase = BK_BATCHED;
    b.out = out;
    b.pay = pay;
    b.res_id = res_id;
    snprintf(b.key, sizeof(b.key), "%s", key);
    return b;
}

START_TEST(test_steps)
{
    rs_bk approved = member(RS_BK_OUT_NONE, RS_BK_PAY_APPROVED, 11, "");
    rs_bk declined = member(RS_BK_OUT_ERROR, RS_BK_PAY_DECLINED, 12, "");
    rs_bk unknown = member(RS_BK_OUT_ERROR, RS_BK_PAY_SENT, 13, "");
    rs_bk taken = member(RS_BK_OUT_ERROR, RS_BK_PAY_RECORDED, 0, ""); /* SEAT_TAKEN, guard */
    rs_bk replay = member(RS_BK_OUT_REPLAY, RS_BK_PAY_RECORDED, 0, "k");
    rs_bk free_one = member(RS_BK_OUT_NONE, RS_BK_PAY_RECORDED, 14, "");
    rs_bk no_gateway = member(RS_BK_OUT_NONE, RS_BK_PAY_NONE, 15, "");
    rs_bk keyed = member(RS_BK_OUT_NONE, RS_BK_PAY_APPROVED, 16, "k2");

    /* one rule per member */
    ck_assert(rs_batch_member_in(&approved, RB_CAPTURING));
    ck_assert(!rs_batch_member_in(&approved, RB_UNDOING));
    ck_assert(rs_batch_member_in(&declined, RB_UNDOING)); /* booked, must not commit */
    ck_assert(!rs_batch_member_in(&declined, RB_CAPTURING));
    ck_assert(rs_batch_member_in(&unknown, RB_UNDOING));
    for (rs_batch_state s = RB_DROPPING; s <= RB_UNDOING; s++) {
        ck_assert(!rs_batch_member_in(&taken, s)); /* its savepoint took it back already */
        ck_assert(!rs_batch_member_in(&replay, s));
    }
    ck_assert(rs_batch_member_in(&free_one, RB_DROPPING));
    ck_assert(rs_batch_member_in(&free_one, RB_READING));
    ck_assert(rs_batch_member_in(&no_gateway, RB_READING));
    ck_assert(!rs_batch_member_in(&no_gateway, RB_DROPPING));

    rs_bk *a[] = {&approved, &taken, &replay};
    ck_assert_uint_eq(rs_batch_steps(a, 3), RB_STEP(RB_CAPTURING));
    rs_bk *b[] = {&approved, &declined, &taken};
    ck_assert_uint_eq(rs_batch_steps(b, 3), RB_STEP(RB_CAPTURING) | RB_STEP(RB_UNDOING));
    rs_bk *c[] = {&free_one};
    ck_assert_uint_eq(rs_batch_steps(c, 1), RB_STEP(RB_DROPPING) | RB_STEP(RB_READING));
    rs_bk *d[] = {&keyed, &no_gateway};
    ck_assert_uint_eq(rs_batch_steps(d, 2),
                      RB_STEP(RB_CAPTURING) | RB_STEP(RB_READING) | RB_STEP(RB_STORING));
    rs_bk *e[] = {&taken, &replay};
    ck_assert_uint_eq(rs_batch_steps(e, 2), 0);
    /* answered, then the record: a keyed success is stored, a failure is not (rs_bk
     * stores failures after the transaction) */
    keyed.out = RS_BK_OUT_OK;
    ck_assert(rs_batch_member_in(&keyed, RB_STORING));
    declined.key[0] = 'x';
    ck_assert(!rs_batch_member_in(&declined, RB_STORING));
}
END_TEST

START_TEST(test_pg_array)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    const char *items[] = {"{1,2,3}", "", "a\"b\\c", "x y"};
    rs_batch_pg_array(&sb, items, 4);
    ck_assert_str_eq(cm_strbuf_str(&sb), "{\"{1,2,3}\",\"\",\"a\\\"b\\\\c\",\"x y\"}");
    cm_strbuf_reset(&sb);
    rs_batch_pg_array(&sb, items, 0);
    ck_assert_str_eq(cm_strbuf_str(&sb), "{}");
    cm_strbuf_free(&sb);
}
END_TEST

/* ---------------------------------------------------------------- joining */

static int acquires;
static int hints;

static bool fk_usable(void *ctx)
{
    (void)ctx;
    return true;
}

static cm_rc fk_acquire(void *ctx, const char *resource, uint64_t lease_ms, uint64_t wait_ms,
                        void *arg)
{
    (void)ctx, (void)resource, (void)lease_ms, (void)wait_ms, (void)arg;
    acquires++;
    return CM_OK; /* never granted: the batches stay forming */
}

static void fk_release(void *ctx, void *grant)
{
    (void)ctx, (void)grant;
}

static uint64_t fk_now(void *ctx)
{
    (void)ctx;
    return 0;
}

static const rs_lock_ops fk_ops = {fk_usable, fk_acquire, fk_release, fk_now};

static void cb_granted(void *arg, uint64_t fence)
{
    (void)arg, (void)fence;
}
static void cb_refused(void *arg, rs_perflock_refusal why, const char *code, const char *msg)
{
    (void)arg, (void)why, (void)code, (void)msg;
}
static void cb_lost(void *arg)
{
    (void)arg;
}
static void cb_next(void *arg)
{
    (void)arg;
    hints++;
}

static rs_bk *booking(int64_t perf, const char *key)
{
    rs_bk *b = calloc(1, sizeof(*b));
    b->op = RS_BK_BOOK;
    b->phase = BK_RECORDING;
    b->perf = perf;
    snprintf(b->key, sizeof(b->key), "%s", key);
    return b;
}

/* A lock queue over the scripted service and group booking on it, batches of 3 at most;
 * when_idle: the test hook (a booking on an idle performance leads a batch). */
static rs_perflock *join_setup(rs_app *app, size_t max_queue, bool when_idle)
{
    rs_testhooks_g.batch_when_idle = when_idle;
    app->cfg.lock_batch_max = 3;
    const rs_perflock_opts opts = {.lease_ms = 0, .wait_ms = 0, .max_queue = max_queue};
    const rs_perflock_cbs cbs = {cb_granted, cb_refused, cb_lost, cb_next};
    rs_perflock *pl = rs_perflock_new(&fk_ops, NULL, &opts, &cbs);
    ck_assert_ptr_nonnull(pl);
    rs_batch_start(app, pl);
    return pl;
}

START_TEST(test_join)
{
    static rs_app app;
    rs_perflock *pl = join_setup(&app, 0, true); /* the first booking leads a batch */
    rs_bk *b[8];
    b[0] = booking(1, "");
    b[1] = booking(1, "key");
    b[2] = booking(1, "key"); /* the same key: alone, behind the batch */
    b[3] = booking(1, "");
    b[4] = booking(1, ""); /* the batch is full (3): a new one */
    b[5] = booking(2, ""); /* another performance, another batch */
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(rs_batch_join(b[i]), i == 2 ? CM_ERR : CM_OK);
    ck_assert_int_eq(b[2]->phase, BK_RECORDING); /* untouched */
    ck_assert_ptr_null(b[2]->batch);
    ck_assert_ptr_eq(b[0]->batch, b[1]->batch);
    ck_assert_ptr_eq(b[0]->batch, b[3]->batch);
    ck_assert_ptr_ne(b[4]->batch, b[0]->batch);
    ck_assert_ptr_ne(b[5]->batch, b[0]->batch);
    for (int i = 0; i < 6; i++)
        if (i != 2)
            ck_assert_int_eq(b[i]->phase, BK_BATCHED);
    /* one lock waiter per batch: one ACQUIRE per performance (rs_perflock's rule), and
     * the second batch of performance 1 waits in its queue */
    ck_assert_int_eq(acquires, 2);
    ck_assert_uint_eq(rs_perflock_queues(pl), 2);
    rs_batch_stop();
    /* batch_max 1: no batches at all */
    app.cfg.lock_batch_max = 1;
    rs_batch_start(&app, pl);
    b[6] = booking(1, "");
    ck_assert_int_eq(rs_batch_join(b[6]), CM_ERR);
    rs_batch_stop();
    rs_perflock_free(pl);
    for (int i = 0; i < 7; i++)
        free(b[i]);
}
END_TEST

/* A batch's members count in the lock queue's bound (rs_perflock rule 10): with room for
 * four bookings, a batch of three and the leader of the next fill it; one more booking
 * does not join the forming batch (rs_batch_join says no, untouched), and the queue says
 * full, which rs_bk_lock answers 503 BUSY. */
START_TEST(test_join_queue_bound)
{
    static rs_app app;
    rs_perflock *pl = join_setup(&app, 4, true);
    rs_bk *b[6];
    for (int i = 0; i < 6; i++)
        b[i] = booking(1, "");
    for (int i = 0; i < 4; i++) {
        ck_assert(!rs_perflock_full(pl, 1));
        ck_assert_int_eq(rs_batch_join(b[i]), CM_OK);
    }
    ck_assert(rs_perflock_full(pl, 1));
    ck_assert_int_eq(rs_batch_join(b[4]), CM_ERR);
    ck_assert_int_eq(b[4]->phase, BK_RECORDING);
    ck_assert_ptr_null(b[4]->batch);
    ck_assert_ptr_null(rs_perflock_wait(pl, 1, b[5]));
    rs_batch_stop();
    rs_perflock_free(pl);
    for (int i = 0; i < 6; i++)
        free(b[i]);
}
END_TEST

/* Production's rule (no test hook): a booking whose performance is idle in this process
 * (no queue) goes alone, untouched; once something waits for that performance's lock, the
 * next booking leads a batch. */
START_TEST(test_join_alone_when_idle)
{
    static rs_app app;
    rs_perflock *pl = join_setup(&app, 0, false);
    rs_bk *alone = booking(1, ""), *lead = booking(1, ""), *other = booking(2, "");
    ck_assert(rs_perflock_idle(pl, 1));
    ck_assert_int_eq(rs_batch_join(alone), CM_ERR);
    ck_assert_int_eq(alone->phase, BK_RECORDING);
    ck_assert_ptr_null(alone->batch);
    /* it waits for the lock as an unbatched booking does: the performance is busy now */
    rs_perflock_waiter *w = rs_perflock_wait(pl, 1, alone);
    ck_assert_ptr_nonnull(w);
    ck_assert(!rs_perflock_idle(pl, 1));
    ck_assert_int_eq(rs_batch_join(lead), CM_OK);
    ck_assert_int_eq(lead->phase, BK_BATCHED);
    ck_assert_ptr_nonnull(lead->batch);
    ck_assert_int_eq(rs_batch_join(other), CM_ERR); /* performance 2 is idle */
    rs_batch_stop();
    rs_perflock_free(pl);
    free(alone);
    free(lead);
    free(other);
}
END_TEST

Suite *ru_batch_suite(void)
{
    const ru_case cases[] = {
        {"batch_roads", test_roads, 0},
        {"batch_shortcuts", test_shortcuts, 0},
        {"batch_illegal_move_aborts", test_illegal_move_aborts, RU_ABORT_SIGNAL},
        {"batch_steps", test_steps, 0},
        {"batch_pg_array", test_pg_array, 0},
        {"batch_join", test_join, 0},
        {"batch_join_queue_bound", test_join_queue_bound, 0},
        {"batch_join_alone_when_idle", test_join_alone_when_idle, 0},
    };
    return ru_suite("batch", cases, sizeof(cases) / sizeof(cases[0]));
}
