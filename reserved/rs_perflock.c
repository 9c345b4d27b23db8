/*
 * rs_perflock: one FIFO queue per performance that owns the performance lock (contract
 * and rules in rs_perflock.h). A queue is a small machine (plk_state) driven by three
 * kinds of events: a waiter arrives (rs_perflock_wait), the holder is done
 * (rs_perflock_release), the lock service reports (rs_perflock_on_*). plk_pump decides
 * what the lock does next whenever nobody holds it.
 *
 * Re-entrancy: every callback to a waiter may come back into this module (a granted
 * booking that fails at once releases inside its granted callback; a release may end
 * inside ops.release), which can free the queue. So a callback, ops.release and a
 * recursive plk_pump are always the last thing a function here does with its queue.
 *
 * Lock history (lock.history_file, issue 15 §3): over cm_lockclient, the table records every
 * lock event of its client into a cm_lockhist from rs_perflock_new to rs_perflock_free (the
 * booking path's locks are the only ones that client takes).
 */
#include "rs_perflock.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include "cm_hash.h"
#include "cm_hist.h"
#include "cm_lockhist.h"
#include "cm_log.h"
#include "cm_time.h"
#include "rs_app.h"
#include "rs_metrics.h"
#include "rs_testhook.h"

#define PLK_RESOURCE_MAX 64

typedef enum plk_state {
    PLK_IDLE,      /* no grant and nothing asked: a new queue, or one whose ACQUIRE or
                      RELEASE just ended; plk_pump then asks again or frees it */
    PLK_ACQUIRING, /* an ACQUIRE is out for the head waiter */
    PLK_HELD,      /* granted, and `holder` has it */
    PLK_HELD_LOST, /* granted, then a LOST push: the holder was told; on its release the
                      grant goes back to the service instead of on to the next waiter */
    PLK_BETWEEN,   /* granted, no holder (only inside plk_pump): hand on or release */
    PLK_RELEASING, /* ops.release called, its on_done not come yet */
    PLK_NSTATES
} plk_state;

static const char *const plk_state_names[PLK_NSTATES] = {
    "idle", "acquiring", "held", "held-lost", "between", "releasing",
};

#define PLK_TO(s) (1u << (s))
/* The legal moves: plk_moves[from] has the bit of every state it may go to. */
static const unsigned plk_moves[PLK_NSTATES] = {
    [PLK_IDLE] = PLK_TO(PLK_ACQUIRING),
    /* granted (to the head), or refused / could not be sent */
    [PLK_ACQUIRING] = PLK_TO(PLK_HELD) | PLK_TO(PLK_IDLE),
    [PLK_HELD] = PLK_TO(PLK_HELD_LOST) | PLK_TO(PLK_BETWEEN),
    [PLK_HELD_LOST] = PLK_TO(PLK_RELEASING),
    [PLK_BETWEEN] = PLK_TO(PLK_HELD) | PLK_TO(PLK_RELEASING),
    [PLK_RELEASING] = PLK_TO(PLK_IDLE),
};

typedef struct plk_queue plk_queue;

struct rs_perflock_waiter {
    plk_queue *q;
    STAILQ_ENTRY(rs_perflock_waiter) link; /* in q->waiting */
    void *arg;                             /* the caller's, for the callbacks */
    uint64_t since_us; /* when it started waiting (lock.wait_ms counts from here) */
    size_t weight;     /* bookings it waits for: 1, plus those rs_perflock_add counted */
};

struct plk_queue {
    rs_perflock *pl;
    int64_t perf;
    plk_state state;
    STAILQ_HEAD(, rs_perflock_waiter) waiting; /* in arrival order (FIFO) */
    size_t queued;                             /* the weights of `waiting` (rule 10) */
    rs_perflock_waiter *holder;                /* PLK_HELD, PLK_HELD_LOST */
    void *grant;                               /* the service's grant: HELD, HELD_LOST, BETWEEN */
    uint64_t fence;                            /* of the grant */
    unsigned chain;                            /* holders the grant has served */
    uint64_t granted_us;
};

struct rs_perflock {
    rs_lock_ops ops;
    void *ctx;
    rs_perflock_opts opts;
    rs_perflock_cbs cbs;
    cm_hash *queues;   /* perf -> plk_queue */
    cm_lockhist *hist; /* lock.history_file's, over cm_lockclient; NULL: off */
};

static void plk_move(plk_queue *q, plk_state to)
{
    bool legal = to < PLK_NSTATES && (plk_moves[q->state] & PLK_TO(to)) != 0;
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("performance %" PRId64 ": lock queue %s -> %s", q->perf, plk_state_names[q->state],
              plk_state_names[to]);
    q->state = to;
    assert((q->holder != NULL) == (to == PLK_HELD || to == PLK_HELD_LOST));
}

static uint64_t plk_now(const rs_perflock *pl)
{
    return pl->ops.now_us(pl->ctx);
}

/* The first waiter, or NULL. */
static rs_perflock_waiter *plk_head(const plk_queue *q)
{
    return STAILQ_FIRST(&q->waiting);
}

static void plk_append(plk_queue *q, rs_perflock_waiter *w)
{
    w->q = q;
    w->weight = 1;
    q->queued++;
    STAILQ_INSERT_TAIL(&q->waiting, w, link);
}

static rs_perflock_waiter *plk_pop(plk_queue *q)
{
    rs_perflock_waiter *w = STAILQ_FIRST(&q->waiting);
    if (w != NULL) {
        STAILQ_REMOVE_HEAD(&q->waiting, link);
        assert(q->queued >= w->weight);
        q->queued -= w->weight;
    }
    return w;
}

static void plk_queue_free(plk_queue *q)
{
    assert(q->state == PLK_IDLE && plk_head(q) == NULL);
    void *gone = cm_hash_del_u64(q->pl->queues, (uint64_t)q->perf);
    assert(gone == q);
    CM_UNUSED(gone);
    free(q);
}

static void plk_hint(plk_queue *q)
{
    rs_perflock_waiter *w = plk_head(q);
    if (w != NULL)
        q->pl->cbs.next_in_line(w->arg);
}

/* w leaves the queue for good; its handle is freed before the callback. */
static void plk_refuse(rs_perflock *pl, rs_perflock_waiter *w, rs_perflock_refusal why,
                       const char *code, const char *message)
{
    void *arg = w->arg;
    free(w);
    pl->cbs.refused(arg, why, code != NULL ? code : "", message != NULL ? message : "");
}

/* w becomes the holder. The caller's last act (the holder may release at once). */
static void plk_give(plk_queue *q, rs_perflock_waiter *w)
{
    rs_perflock *pl = q->pl;
    q->holder = w;
    plk_move(q, PLK_HELD);
    q->chain++;
    plk_hint(q);
    cm_hist_observe_us(&rs_stats.lock_wait, plk_now(pl) - w->since_us);
    pl->cbs.granted(w->arg, q->fence);
}

/* The grant goes back to the service. The caller's last act (on_done may come inside). */
static void plk_release_grant(plk_queue *q)
{
    void *grant = q->grant;
    q->grant = NULL;
    plk_move(q, PLK_RELEASING);
    q->pl->ops.release(q->pl->ctx, grant);
}

/* IDLE -> ACQUIRING for the head, with what it has left of lock.wait_ms; back to IDLE
 * when the service cannot be asked. */
static cm_rc plk_acquire(plk_queue *q)
{
    rs_perflock *pl = q->pl;
    char resource[PLK_RESOURCE_MAX];
    snprintf(resource, sizeof(resource), "Performance:%" PRId64, q->perf);
    uint64_t waited_ms = (plk_now(pl) - plk_head(q)->since_us) / 1000;
    uint64_t wait_ms = pl->opts.wait_ms > waited_ms ? pl->opts.wait_ms - waited_ms : 0;
    plk_move(q, PLK_ACQUIRING);
    if (pl->ops.acquire(pl->ctx, resource, pl->opts.lease_ms, wait_ms, q) == CM_OK)
        return CM_OK;
    plk_move(q, PLK_IDLE);
    return CM_ERR;
}

/* Rule 3: whether the grant may serve one more holder. */
static bool plk_chain_open(const plk_queue *q)
{
    return q->chain < RS_PERFLOCK_CHAIN_MAX &&
           plk_now(q->pl) - q->granted_us < (uint64_t)RS_PERFLOCK_CHAIN_MS * 1000;
}

uint64_t rs_perflock_wait_limit_ms(const rs_perflock *pl)
{
    return pl->opts.wait_ms > 0 ? pl->opts.wait_ms : pl->opts.wait0_ms;
}

/* Rule 6: whether the first waiter has waited its limit. */
static bool plk_head_out_of_time(const plk_queue *q)
{
    const rs_perflock_waiter *w = plk_head(q);
    uint64_t limit = rs_perflock_wait_limit_ms(q->pl);
    return w != NULL && (plk_now(q->pl) - w->since_us) / 1000 >= limit;
}

/* Moves q on. Busy (a request out, or a holder): only the prefetch hint. Free to move
 * (IDLE, BETWEEN): waiters out of time are refused, then the grant is handed on or
 * released, or the head gets an ACQUIRE, or q is freed. */
static void plk_pump(plk_queue *q)
{
    rs_perflock *pl = q->pl;
    switch (q->state) {
    case PLK_ACQUIRING:
    case PLK_HELD:
    case PLK_HELD_LOST:
    case PLK_RELEASING:
        plk_hint(q);
        return;
    case PLK_IDLE:
    case PLK_BETWEEN:
        break;
    case PLK_NSTATES:
        assert(!"no such state");
        return;
    }
    while (plk_head_out_of_time(q))
        plk_refuse(pl, plk_pop(q), RS_PERFLOCK_BUSY, "", "");
    if (q->state == PLK_BETWEEN) {
        if (plk_head(q) != NULL && plk_chain_open(q))
            plk_give(q, plk_pop(q));
        else
            plk_release_grant(q);
        return;
    }
    if (plk_head(q) == NULL) {
        plk_queue_free(q);
        return;
    }
    if (plk_acquire(q) == CM_OK) {
        plk_hint(q);
        return;
    }
    rs_perflock_waiter *w;
    while ((w = plk_pop(q)) != NULL)
        plk_refuse(pl, w, RS_PERFLOCK_UNREACHABLE, "", "");
    plk_pump(q); /* frees q, or asks for a waiter that came meanwhile */
}

/* ---------------------------------------------------------------- the service's reports */

void rs_perflock_on_granted(void *arg, uint64_t fence, void *grant)
{
    plk_queue *q = arg;
    assert(q->state == PLK_ACQUIRING && plk_head(q) != NULL && grant != NULL);
    q->grant = grant;
    q->fence = fence;
    q->chain = 0;
    q->granted_us = plk_now(q->pl);
    plk_give(q, plk_pop(q));
}

void rs_perflock_on_lost(void *arg)
{
    plk_queue *q = arg;
    if (q->state == PLK_HELD_LOST)
        return; /* told once */
    plk_move(q, PLK_HELD_LOST);
    q->pl->cbs.lost(q->holder->arg);
}

void rs_perflock_on_done(void *arg, cm_lock_status status, const char *code, const char *message)
{
    plk_queue *q = arg;
    rs_perflock *pl = q->pl;
    if (q->state == PLK_RELEASING) {
        plk_move(q, PLK_IDLE);
        plk_pump(q);
        return;
    }
    /* the ACQUIRE was not granted: its waiter (still the head: waiters leave only while
     * the lock is free to move) gets the answer */
    assert(q->state == PLK_ACQUIRING && plk_head(q) != NULL);
    plk_move(q, PLK_IDLE);
    rs_perflock_waiter *w = plk_pop(q);
    if (status == CM_LOCK_TIMEOUT) {
        plk_refuse(pl, w, RS_PERFLOCK_BUSY, "", "");
    } else {
        log_warn("performance %" PRId64 ": lock not granted: %s %s", q->perf,
                 code != NULL ? code : "", message != NULL ? message : "");
        plk_refuse(pl, w, RS_PERFLOCK_REFUSED, code, message);
    }
    plk_pump(q);
}

/* ---------------------------------------------------------------- the table */

/* Opens lock.history_file and records c's lock events into it; CM_OK when it is off. The
 * key is read from the process's config (rs_app_g): the table is made by rs_bk, which knows
 * nothing of histories, and only the cm_lockclient table has events to record. */
static cm_rc plk_history_open(rs_perflock *pl, cm_lockclient *c)
{
    const char *path = rs_app_g.cfg.lock_history_file;
    char src[64], err[320];
    if (path == NULL || path[0] == '\0' || c == NULL)
        return CM_OK;
    cm_lockhist_src_from_path(path, src, sizeof(src));
    pl->hist = cm_lockhist_open(path, src, err, sizeof(err));
    if (pl->hist == NULL) {
        log_error("lock.history_file: %s", err);
        return CM_ERR;
    }
    if (cm_lockhist_attach(pl->hist, c, NULL) != CM_OK) {
        log_error("lock.history_file: out of memory");
        return CM_ERR;
    }
    log_info("lock history: the booking path's lock events go to %s (src \"%s\")", path, src);
    return CM_OK;
}

rs_perflock *rs_perflock_new(const rs_lock_ops *ops, void *ctx, const rs_perflock_opts *opts,
                             const rs_perflock_cbs *cbs)
{
    rs_perflock *pl = calloc(1, sizeof(*pl));
    if (pl == NULL)
        return NULL;
    pl->queues = cm_hash_new(CM_HASH_U64);
    if (pl->queues == NULL) {
        free(pl);
        return NULL;
    }
    pl->ops = *ops;
    pl->ctx = ctx;
    pl->opts = *opts;
    if (pl->opts.wait0_ms == 0)
        pl->opts.wait0_ms = RS_PERFLOCK_WAIT0_MS;
    if (pl->opts.max_queue == 0)
        pl->opts.max_queue = RS_PERFLOCK_QUEUE_MAX;
    pl->cbs = *cbs;
    if (ops == &rs_perflock_lockclient_ops && plk_history_open(pl, ctx) != CM_OK) {
        rs_perflock_free(pl);
        return NULL;
    }
    return pl;
}

void rs_perflock_free(rs_perflock *pl)
{
    if (pl == NULL)
        return;
    size_t pos = 0;
    plk_queue *q;
    while ((q = cm_hash_next(pl->queues, &pos, NULL, NULL)) != NULL) {
        rs_perflock_waiter *w;
        while ((w = plk_pop(q)) != NULL)
            free(w);
        free(q->holder);
        free(q);
    }
    cm_hash_free(pl->queues);
    if (pl->hist != NULL) {
        /* reserved frees its client first (which records the release of what it held);
         * a client still alive must stop recording into the history closed here */
        if (pl->ctx != NULL && pl->ctx == rs_app_g.locks)
            cm_lockclient_on_event(pl->ctx, NULL, NULL);
        cm_lockhist_close(pl->hist);
    }
    free(pl);
}

size_t rs_perflock_queues(const rs_perflock *pl)
{
    return cm_hash_count(pl->queues);
}

bool rs_perflock_full(const rs_perflock *pl, int64_t perf)
{
    const plk_queue *q = cm_hash_get_u64(pl->queues, (uint64_t)perf);
    return q != NULL && q->queued >= pl->opts.max_queue;
}

bool rs_perflock_idle(const rs_perflock *pl, int64_t perf)
{
    return cm_hash_get_u64(pl->queues, (uint64_t)perf) == NULL;
}

cm_rc rs_perflock_add(rs_perflock_waiter *w)
{
    plk_queue *q = w->q;
    assert(q->holder != w);
    if (q->queued >= q->pl->opts.max_queue)
        return CM_ERR;
    w->weight++;
    q->queued++;
    return CM_OK;
}

rs_perflock_waiter *rs_perflock_wait(rs_perflock *pl, int64_t perf, void *arg)
{
    if (rs_perflock_full(pl, perf)) {
        log_debug("performance %" PRId64 ": lock queue full (%zu bookings)", perf,
                  pl->opts.max_queue);
        return NULL;
    }
    if (!pl->ops.usable(pl->ctx))
        return NULL;
    rs_perflock_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->arg = arg;
    w->since_us = plk_now(pl);
    plk_queue *q = cm_hash_get_u64(pl->queues, (uint64_t)perf);
    if (q != NULL) {
        plk_append(q, w);
        /* IDLE or BETWEEN: called from a callback inside plk_pump, which goes on with w */
        if (q->state != PLK_IDLE && q->state != PLK_BETWEEN)
            plk_pump(q);
        return w;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL || cm_hash_put_u64(pl->queues, (uint64_t)perf, q) != CM_OK) {
        log_warn("performance %" PRId64 ": out of memory for its lock queue", perf);
        free(q);
        free(w);
        return NULL;
    }
    q->pl = pl;
    q->perf = perf;
    q->state = PLK_IDLE;
    STAILQ_INIT(&q->waiting);
    plk_append(q, w);
    if (plk_acquire(q) != CM_OK) {
        plk_pop(q);
        plk_queue_free(q);
        free(w);
        return NULL;
    }
    plk_hint(q); /* the new waiter itself: it may get ready while its ACQUIRE is out */
    return w;
}

void rs_perflock_release(rs_perflock_waiter *w)
{
    plk_queue *q = w->q;
    assert(q->holder == w);
    q->holder = NULL;
    free(w);
    if (q->state == PLK_HELD_LOST) {
        plk_release_grant(q); /* rule 5: never handed on */
        return;
    }
    plk_move(q, PLK_BETWEEN);
    plk_pump(q);
}

bool rs_perflock_lost(const rs_perflock_waiter *w)
{
    assert(w->q->holder == w);
    return w->q->state == PLK_HELD_LOST;
}

/* ---------------------------------------------------------------- over cm_lockclient */

static bool lc_usable(void *ctx)
{
    return ctx != NULL && cm_lockclient_connected(ctx);
}

static void lc_work(void *arg, const cm_lock_result *grant, cm_lock_guard *guard)
{
    rs_perflock_on_granted(arg, grant->fence, guard);
}

static void lc_abort(void *arg)
{
    if (rs_testhooks_g.ignore_lost) {
        const plk_queue *q = arg;
        log_warn("test hook: LOST push for performance %" PRId64 " ignored", q->perf);
        return;
    }
    rs_perflock_on_lost(arg);
}

static void lc_finish(void *arg, cm_lock_status status, const cm_lock_result *res)
{
    rs_perflock_on_done(arg, status, res->code, res->message);
}

static cm_rc lc_acquire(void *ctx, const char *resource, uint64_t lease_ms, uint64_t wait_ms,
                        void *arg)
{
    return cm_lockclient_with_lock(ctx, resource, lease_ms, wait_ms, lc_work, lc_abort, lc_finish,
                                   arg);
}

static void lc_release(void *ctx, void *grant)
{
    CM_UNUSED(ctx);
    cm_lock_guard_done(grant);
}

static uint64_t lc_now_us(void *ctx)
{
    CM_UNUSED(ctx);
    return cm_now_us();
}

const rs_lock_ops rs_perflock_lockclient_ops = {
    .usable = lc_usable,
    .acquire = lc_acquire,
    .release = lc_release,
    .now_us = lc_now_us,
};
