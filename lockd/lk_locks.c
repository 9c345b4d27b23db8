/*
 * lk_locks: per-resource lock table, FIFO waiters, leases and the watchdog,
 * local handoff and cross-lockd wake-ups (SPEC §2-§4).
 *
 * Invariants (per resource, on this lockd):
 * - at most one Redlock acquire attempt in flight, always for the head waiter;
 * - no attempt while a local session holds the resource: its waiters are served by
 *   the handoff when it is released or dropped, so they never poll our own lock;
 * - prev_token, when set, is a token of ours that still may sit on some masters
 *   (a released lock whose handoff was not granted yet): every attempt offers it for
 *   takeover, and it is released through Redlock when nobody is left to take it;
 * - a resource is freed when it has no holder, no waiter, no attempt and no head start
 *   for other lockds running;
 * - grants follow arrival across lockds: a waiter that finds the lock held by another
 *   process makes this lockd announce ("want" notice, through Redis pub/sub) when its
 *   oldest waiter arrived (wall clock) and its instance id. The holder lockd keeps the
 *   oldest remote arrival announced within LK_WANTED_MS, and when a hold ends it hands
 *   the lock to its next local waiter only if that one arrived first; otherwise it
 *   yields: a release through Redis (pub/sub wakes the other lockds), a short head start
 *   for them, and its own "want" notice with its next waiter's arrival, so the lock
 *   comes back once the other side has served the waiters older than ours. Each side
 *   thus serves its waiters in turns of about one queue each, in arrival order, and
 *   pays one cross-lockd transfer per turn, not per grant;
 * - bounded whatever the clocks say: a chain of local handoffs that is both long
 *   (LK_CHAIN_MIN handoffs) and old (LK_CHAIN_MS) yields too while another lockd wants
 *   the lock (the only rule for notices without an arrival time, from older lockds);
 *   with no remote waiter the chain goes on and no handoff pays the head start. A skew
 *   between the lockds' clocks shifts the turns, never safety: the fence and the
 *   Redlock validity rules do not depend on any of this;
 * - a release with no local waiter while another lockd wants the lock gives the same
 *   head start: a client that ACQUIREs again right after its RELEASE waits for it.
 *
 * Where a resource is (attempt in flight, held here, retry / poll / head start armed)
 * is one lk_res_state, moved only by res_set_state. Redlock, the clock and timers are
 * reached through lk->ops (lk_ops.h), so tests/lockd_unit runs these rules without a
 * network.
 */
#include "lk_locks.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_hash.h"
#include "cm_lockp.h"
#include "cm_log.h"
#include "cm_rand.h"
#include "cm_time.h"
#include "lk_metrics.h"
#include "lk_ops.h"
#include "lk_token.h"

#define LK_POLL_CAP_MS   250  /* safety-net poll when another process holds the lock */
#define LK_TABLE_INIT    1024 /* resources the table has room for at start */
#define LK_LINE_BUF      (CM_LOCKP_MAX_LINE + 64)
#define LK_TOKEN_BUF     (CM_LOCKP_TOKEN_LEN + 1)
#define LK_TAG_BUF       (CM_LOCKP_TAG_MAX + 1)
#define LK_CHAIN_MS      250  /* a run of local handoffs this long ... */
#define LK_CHAIN_MIN     2    /* ... and this many gives other lockds a turn */
#define LK_WANTED_MS     1000 /* a "want" notice from another lockd counts this long ... */
#define LK_WANT_EVERY_MS 100  /* ... and our own waiters repeat theirs this often */
#define LK_YIELD_MIN     2    /* ms head start for remote waiters after such a yield ... */
#define LK_YIELD_MAX     5    /* ... about one pub/sub wake-up plus one Redlock round */
#define LK_RELEASED_MS   50   /* "released" notices of one release arrive within this */
#define LK_TURN_MIN      10   /* ms head start when we yield to an older remote waiter ... */
#define LK_TURN_MAX      15   /* ... ended at once when the other side releases it again */
#define LK_ID_BUF        17   /* this lockd's instance id in "want" notices: 16 hex + NUL */
#define LK_HOLDER_BUF    96   /* "<client-name> <lockd-id>" for SHOW's owner key */

typedef struct lk_resource lk_resource;
typedef struct lk_renew lk_renew;

struct lk_waiter {
    lk_resource *res;
    lk_owner *owner;
    TAILQ_ENTRY(lk_waiter) res_link;   /* FIFO of the resource */
    TAILQ_ENTRY(lk_waiter) owner_link; /* the session's waiters */
    lk_timer *deadline;                /* wait_ms timer (only when wait_ms > 0) */
    uint64_t lease_ms;
    uint64_t wait_ms;
    uint64_t start_us;   /* ACQUIRE received */
    uint64_t arrive_ms;  /* ... on the wall clock: compared with other lockds' waiters */
    uint64_t handoff_us; /* RELEASE received, when this waiter's attempt is a handoff */
    char tag[LK_TAG_BUF];
    char token[LK_TOKEN_BUF];
};

/* A SHOW or REVOKE in flight; owner NULL once its session is gone (no answer then). */
struct lk_query {
    lk_locks *lk;
    lk_owner *owner;
    TAILQ_ENTRY(lk_query) owner_link; /* the session's queries (while owner is set) */
    TAILQ_ENTRY(lk_query) link;       /* lk->queries */
    lk_qround *op;
    char tag[LK_TAG_BUF];
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
};

/* A client RENEW in flight. */
struct lk_renew {
    lk_hold *hold;
    TAILQ_ENTRY(lk_renew) link;
    lk_round *op;
    uint64_t lease_ms; /* effective lease written */
    bool set_lease;    /* the request named a lease: it becomes the lock's fixed lease */
    char tag[LK_TAG_BUF];
};

struct lk_hold {
    lk_locks *lk;
    lk_resource *res;
    lk_owner *owner; /* NULL once orphaned (session gone, release delayed) */
    TAILQ_ENTRY(lk_hold) owner_link;
    lk_timer *timer;               /* fixed: local expiry; watchdog: renewal; orphan: release */
    lk_round *wd_op;               /* watchdog renewal in flight */
    TAILQ_HEAD(, lk_renew) renews; /* client RENEWs in flight */
    uint64_t lease_ms;             /* 0 = watchdog lease */
    uint64_t expires_ms;           /* monotonic end of the granted validity */
    char token[LK_TOKEN_BUF];
};

/* Where a resource is on this lockd; res_set_state moves it and asserts the move.
 * The retry timer is armed in exactly the last three. */
typedef enum lk_res_state {
    RES_IDLE,       /* no local holder, no round in flight, no timer: just made, about to
                       start an attempt, or about to be freed */
    RES_ATTEMPT,    /* one acquire round (plain, or a handoff from prev_token) in flight
                       for op_waiter, the head waiter */
    RES_HELD,       /* a local session holds it (holder, maybe orphaned): its waiters wait
                       for the handoff, never poll our own lock */
    RES_RETRY,      /* timer armed: the next attempt after a FAILED round (or one that
                       could not start) */
    RES_POLL,       /* timer armed: the safety-net poll after a HELD answer (another process
                       holds it); a quorum of release notices starts the attempt sooner */
    RES_HEAD_START, /* timer armed: other lockds' head start after our release; no local
                       attempt, release notice or free until it ends */
} lk_res_state;

struct lk_resource {
    lk_locks *lk;
    lk_res_state state;
    lk_hold *holder; /* local holder, if any */
    TAILQ_HEAD(, lk_waiter) waiters;
    size_t n_waiters;
    lk_round *op;                  /* acquire attempt in flight */
    lk_waiter *op_waiter;          /* ... for this (head) waiter */
    lk_timer *retry;               /* next attempt: retry delay, poll or head start */
    char prev_token[LK_TOKEN_BUF]; /* "" or a released token of ours (see top) */
    uint64_t chain_start_ms;       /* when this lockd last got it other than by handoff */
    uint32_t chain_handoffs;       /* local handoffs since then */
    uint64_t remote_wanted_ms;     /* last "want" notice from another lockd (0: none) */
    uint64_t remote_oldest_ms;     /* its oldest waiter's arrival (wall; 0: not given) */
    char remote_from[LK_ID_BUF];   /* the lockd that announced remote_oldest_ms ... */
    uint64_t remote_seq;           /* ... in its notice number remote_seq */
    uint64_t want_sent_ms;         /* last "want" notice we published for our waiters */
    uint64_t want_sent_oldest;     /* ... and the arrival it announced */
    bool wake_pending;             /* a quorum of release notices came during an attempt */
    uint64_t own_release_ms;       /* our last release through Redis ... */
    uint32_t own_notices;          /* ... and how many of its own notices may still come */
    uint64_t released_first_ms;    /* first "released" notice of the current release ... */
    size_t released_seen;          /* ... and how many masters have sent one since */
    char name[];                   /* NUL-terminated; the table's key */
};

struct lk_locks {
    const lk_ops *ops; /* Redlock, clock and timers */
    void *ctx;         /* ... their context */
    lk_locks_opts opts;
    cm_hash *table; /* name -> lk_resource, keys borrowed from r->name */
    bool shutting_down;
    bool had_quorum;                /* for logging the loss of quorum once */
    char id[LK_ID_BUF];             /* instance id: our own "want" notices come back */
    uint64_t want_seq;              /* notices published: orders their copies */
    TAILQ_HEAD(, lk_query) queries; /* SHOW / REVOKE in flight */
    lk_token_pool tokens;           /* OS randomness for tokens */
};

/* ---- helpers ---------------------------------------------------------- */

static void owner_sendf(lk_owner *owner, const char *tag, const char *fmt, ...) CM_PRINTF(3, 4);
static void owner_sendf(lk_owner *owner, const char *tag, const char *fmt, ...)
{
    char buf[LK_LINE_BUF];
    va_list ap;
    size_t n;

    if (!owner || owner->ended || !owner->send)
        return;
    va_start(ap, fmt);
    n = cm_lockp_vformat(buf, sizeof(buf), tag, fmt, ap);
    va_end(ap);
    if (n > 0)
        owner->send(owner, buf, n);
}

static uint64_t now_us(const lk_locks *lk)
{
    return lk->ops->now_us(lk->ctx);
}

static uint64_t now_ms(const lk_locks *lk)
{
    return now_us(lk) / 1000u;
}

static void timer_arm_ms(const lk_locks *lk, lk_timer *t, uint64_t ms)
{
    lk->ops->timer_arm(t, ms);
}

static const char *const res_state_name[] = {"idle",  "attempt", "held",
                                             "retry", "poll",    "head_start"};

/* The one place a resource changes state: asserts that the move is legal (see
 * lk_res_state) and keeps the retry timer in step (armed by res_schedule only). */
static void res_set_state(lk_resource *r, lk_res_state to)
{
    lk_res_state from = r->state;
    bool legal = false;
    switch (from) {
    case RES_IDLE:
        legal = to == RES_ATTEMPT;
        break;
    case RES_ATTEMPT:
        legal = to == RES_HELD || to == RES_POLL || to == RES_RETRY || to == RES_IDLE;
        break;
    case RES_HELD:
        legal = to == RES_ATTEMPT || to == RES_HEAD_START || to == RES_IDLE;
        break;
    case RES_RETRY:
    case RES_POLL:
    case RES_HEAD_START:
        legal = to == RES_ATTEMPT || to == RES_IDLE;
        break;
    }
    assert(legal && "illegal lock resource state change");
    (void)legal;
    if (from == RES_RETRY || from == RES_POLL || from == RES_HEAD_START)
        r->lk->ops->timer_stop(r->retry);
    r->state = to;
    log_debug("lock %s: %s -> %s", r->name, res_state_name[from], res_state_name[to]);
}

static uint64_t waiter_lease(const lk_locks *lk, const lk_waiter *w)
{
    return w->lease_ms ? w->lease_ms : lk->opts.watchdog_lease_ms;
}

/* ---- the resource table --------------------------------------------- */

static lk_resource *res_find(lk_locks *lk, const char *name)
{
    return cm_hash_get_str(lk->table, name);
}

static void retry_cb(void *arg);

static lk_resource *res_get(lk_locks *lk, const char *name)
{
    size_t len = strlen(name);
    lk_resource *r = res_find(lk, name);
    if (r)
        return r;
    r = calloc(1, sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->retry = lk->ops->timer_new(lk->ctx, retry_cb, r);
    if (!r->retry) {
        free(r);
        return NULL;
    }
    r->lk = lk;
    r->state = RES_IDLE;
    memcpy(r->name, name, len + 1);
    TAILQ_INIT(&r->waiters);
    if (cm_hash_put_str(lk->table, r->name, r) != CM_OK) {
        lk->ops->timer_free(r->retry);
        free(r);
        return NULL;
    }
    return r;
}

/* Frees r when nothing refers to it any more; a leftover released token of ours
 * goes to Redlock first so it does not block other processes until it expires. */
static void res_maybe_free(lk_resource *r)
{
    lk_locks *lk = r->lk;
    if (r->holder || r->n_waiters > 0 || r->op)
        return;
    if (r->state == RES_HEAD_START && !lk->shutting_down)
        return; /* a head start for other lockds: a new local ACQUIRE must wait it out */
    if (r->prev_token[0] && !lk->shutting_down)
        lk->ops->release(lk->ctx, r->name, r->prev_token);
    if (r->state != RES_IDLE)
        res_set_state(r, RES_IDLE);
    lk->ops->timer_free(r->retry);
    (void)cm_hash_del_str(lk->table, r->name);
    free(r);
}

/* ---- waiters and attempts ---------------------------------------------- */

static void attempt_cb(void *arg, const lk_rl_result *res);

/* Unlinks w and frees it. If its attempt is in flight the attempt is cancelled
 * (lk_redlock releases a grant that arrives anyway). No reply, no kick. */
static void waiter_remove(lk_waiter *w)
{
    lk_resource *r = w->res;
    lk_locks *lk = r->lk;
    if (r->op_waiter == w) {
        lk->ops->cancel(lk->ctx, r->op);
        r->op = NULL;
        r->op_waiter = NULL;
        res_set_state(r, RES_IDLE);
    }
    TAILQ_REMOVE(&r->waiters, w, res_link);
    r->n_waiters--;
    if (w->owner) {
        TAILQ_REMOVE(&w->owner->waiters, w, owner_link);
        w->owner->n_waiters--;
    }
    lk->ops->timer_free(w->deadline);
    lk_stats.waiters--;
    free(w);
}

/* Arms the retry timer in state (RES_RETRY, RES_POLL or RES_HEAD_START). */
static void res_schedule(lk_resource *r, uint64_t delay_ms, lk_res_state state)
{
    res_set_state(r, state);
    timer_arm_ms(r->lk, r->retry, delay_ms);
}

/* Sends the head waiter's attempt: a plain one, or a handoff from prev_token. */
static void start_attempt(lk_resource *r)
{
    lk_locks *lk = r->lk;
    lk_waiter *w = TAILQ_FIRST(&r->waiters);

    char holder[LK_HOLDER_BUF];
    res_set_state(r, RES_ATTEMPT);
    r->wake_pending = false;
    r->op_waiter = w;
    /* SHOW's owner key: who asked, through which lockd */
    snprintf(holder, sizeof holder, "%s %s",
             w->owner && w->owner->name && w->owner->name[0] ? w->owner->name : "-", lk->id);
    r->op = lk->ops->acquire(lk->ctx, r->name, w->token, r->prev_token[0] ? r->prev_token : NULL,
                             holder, waiter_lease(lk, w), attempt_cb, r);
    if (!r->op) {
        r->op_waiter = NULL;
        log_warn("acquire attempt for %s could not start", r->name);
        res_schedule(r, cm_rand_range(1, (uint32_t)lk->opts.retry_delay_ms), RES_RETRY);
    }
}

/* Starts an attempt for the head waiter if one may run now: not while one runs, a
 * local session holds it, or a timer (poll, retry, head start) is armed. */
static void res_kick(lk_resource *r)
{
    if (TAILQ_EMPTY(&r->waiters) || r->state != RES_IDLE || r->lk->shutting_down)
        return;
    start_attempt(r);
}

/* The retry timer: a retry, a poll, or the end of a head start. */
static void retry_cb(void *arg)
{
    lk_resource *r = arg;
    lk_res_state was = r->state;
    assert(was == RES_RETRY || was == RES_POLL || was == RES_HEAD_START);
    res_set_state(r, RES_IDLE);
    if (TAILQ_EMPTY(&r->waiters)) {
        res_maybe_free(r); /* the end of a head start nobody here queued behind */
        return;
    }
    if (was == RES_POLL)
        lk_stats.polls_total++;
    start_attempt(r);
}

static void waiter_timeout(lk_waiter *w)
{
    lk_stats.timeouts_total++;
    cm_hist_observe_us(&lk_stats.wait_time, now_us(w->res->lk) - w->start_us);
    owner_sendf(w->owner, w->tag, "TIMEOUT");
}

static void deadline_cb(void *arg)
{
    lk_waiter *w = arg;
    lk_resource *r = w->res;

    waiter_timeout(w);
    waiter_remove(w);
    res_kick(r);
    res_maybe_free(r);
}

/* Answers every waiter of r with ERR NOQUORUM. */
static void res_fail_noquorum(lk_resource *r)
{
    lk_waiter *w;
    while ((w = TAILQ_FIRST(&r->waiters)) != NULL) {
        lk_stats.noquorum_total++;
        owner_sendf(w->owner, w->tag, "ERR NOQUORUM fewer than a quorum of Redis masters");
        waiter_remove(w);
    }
}

static void hold_timer_cb(void *arg);

static void grant(lk_resource *r, lk_waiter *w, const lk_rl_result *res)
{
    lk_locks *lk = r->lk;
    uint64_t t_us = now_us(lk);
    uint64_t lease = waiter_lease(lk, w);
    uint64_t validity = res->validity_ms > 0 ? (uint64_t)res->validity_ms : 0;
    lk_hold *h;

    if (validity > lease)
        validity = lease;
    h = calloc(1, sizeof(*h));
    if (h)
        h->timer = lk->ops->timer_new(lk->ctx, hold_timer_cb, h);
    if (!h || !h->timer) {
        /* Cannot track it: give it back rather than hold it blind. */
        free(h);
        lk->ops->release(lk->ctx, r->name, w->token);
        owner_sendf(w->owner, w->tag, "ERR LIMIT out of memory");
        res_set_state(r, RES_IDLE);
        waiter_remove(w);
        return;
    }
    h->lk = lk;
    h->res = r;
    h->owner = w->owner;
    h->lease_ms = w->lease_ms;
    h->expires_ms = t_us / 1000 + validity;
    memcpy(h->token, w->token, sizeof(h->token));
    TAILQ_INIT(&h->renews);
    TAILQ_INSERT_TAIL(&h->owner->holds, h, owner_link);
    h->owner->n_holds++;
    r->holder = h;
    res_set_state(r, RES_HELD);
    r->prev_token[0] = '\0'; /* taken over (or never ours): nothing left to clean */
    if (!w->handoff_us) {
        r->chain_start_ms = t_us / 1000;
        r->chain_handoffs = 0;
    } else {
        r->chain_handoffs++;
    }
    timer_arm_ms(lk, h->timer, h->lease_ms ? validity : lk->opts.watchdog_lease_ms / 3);

    owner_sendf(w->owner, w->tag, "OK %s %llu %llu", w->token, (unsigned long long)res->fence,
                (unsigned long long)validity);
    lk_stats.grants_total++;
    lk_stats.locks_held++;
    cm_hist_observe_us(&lk_stats.acquire_latency, t_us - w->start_us);
    cm_hist_observe_us(&lk_stats.wait_time, t_us - w->start_us);
    if (w->handoff_us) {
        lk_stats.handoffs_total++;
        cm_hist_observe_us(&lk_stats.handoff_latency, t_us - w->handoff_us);
    }
    log_debug("granted %s to %s fence %llu validity %llu", r->name, w->token,
              (unsigned long long)res->fence, (unsigned long long)validity);
    waiter_remove(w);
}

/* Our waiters find the lock held by another process (or we yield it to one): tell the
 * other lockds when our oldest waiter arrived, so the holder hands the lock over once
 * that one is the oldest. At most once per LK_WANT_EVERY_MS per resource, unless the
 * oldest waiter changed or force (a yield: the other side must know when to give the
 * lock back). */
static void want_notify(lk_resource *r, bool force)
{
    lk_locks *lk = r->lk;
    uint64_t now = now_ms(lk);
    lk_waiter *head = TAILQ_FIRST(&r->waiters);
    if (!head || (!force && now - r->want_sent_ms < LK_WANT_EVERY_MS &&
                  head->arrive_ms == r->want_sent_oldest))
        return;
    r->want_sent_ms = now;
    r->want_sent_oldest = head->arrive_ms;
    lk->ops->publish_wanted(lk->ctx, r->name, head->arrive_ms, lk->id, ++lk->want_seq);
}

static void attempt_cb(void *arg, const lk_rl_result *res)
{
    lk_resource *r = arg;
    lk_locks *lk = r->lk;
    lk_waiter *w = r->op_waiter;
    uint32_t jitter = (uint32_t)lk->opts.retry_delay_ms;

    assert(r->state == RES_ATTEMPT && w != NULL);
    r->op = NULL;
    r->op_waiter = NULL;
    switch (res->outcome) {
    case LK_RL_GRANTED:
        grant(r, w, res);
        break;
    case LK_RL_HELD: {
        w->handoff_us = 0;
        if (w->wait_ms == 0) {
            waiter_timeout(w);
            waiter_remove(w);
        }
        uint64_t after = res->retry_after_ms > 0 ? (uint64_t)res->retry_after_ms : 0;
        /* A release elsewhere came while this attempt was out (it may have lost to the
         * release's own keys still on a master): try again soon, not after the poll. */
        if (r->wake_pending)
            after = 0, jitter = 1;
        res_schedule(r, CM_MIN(after, LK_POLL_CAP_MS) + cm_rand_range(0, jitter), RES_POLL);
        want_notify(r, false);
        break;
    }
    case LK_RL_FAILED:
        w->handoff_us = 0;
        if (w->wait_ms == 0) {
            waiter_timeout(w);
            waiter_remove(w);
        }
        res_schedule(r, cm_rand_range(1, jitter), RES_RETRY);
        break;
    case LK_RL_NOQUORUM:
        res_set_state(r, RES_IDLE);
        res_fail_noquorum(r);
        break;
    }
    res_maybe_free(r);
}

void lk_locks_acquire(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                      uint64_t lease_ms, uint64_t wait_ms)
{
    lk_resource *r;
    lk_waiter *w;

    if (lk->shutting_down) {
        owner_sendf(owner, tag, "ERR SHUTDOWN lockd is shutting down");
        return;
    }
    if (lease_ms > lk->opts.max_lease_ms || wait_ms > lk->opts.max_wait_ms) {
        owner_sendf(owner, tag, "ERR LIMIT lease_ms or wait_ms over the configured maximum");
        return;
    }
    r = res_find(lk, resource);
    if (r) {
        if (r->holder && r->holder->owner == owner) {
            owner_sendf(owner, tag, "ERR HELD this session holds %s already", resource);
            return;
        }
        TAILQ_FOREACH(w, &owner->waiters, owner_link)
        {
            if (w->res == r) {
                owner_sendf(owner, tag, "ERR HELD this session waits for %s already", resource);
                return;
            }
        }
    }
    if (!lk->ops->has_quorum(lk->ctx)) {
        lk_stats.noquorum_total++;
        owner_sendf(owner, tag, "ERR NOQUORUM fewer than a quorum of Redis masters");
        return;
    }
    if ((uint64_t)lk_stats.waiters >= lk->opts.max_waiters) {
        owner_sendf(owner, tag, "ERR LIMIT too many waiters");
        return;
    }
    lk_stats.acquires_total++;
    /* No waiting and the lock is busy here: one look at the local state is the attempt. */
    if (wait_ms == 0 && r && (r->holder || r->n_waiters > 0)) {
        lk_stats.timeouts_total++;
        owner_sendf(owner, tag, "TIMEOUT");
        return;
    }
    if (!r && !(r = res_get(lk, resource))) {
        owner_sendf(owner, tag, "ERR LIMIT out of memory");
        return;
    }
    w = calloc(1, sizeof(*w));
    if (w && wait_ms > 0)
        w->deadline = lk->ops->timer_new(lk->ctx, deadline_cb, w);
    if (!w || (wait_ms > 0 && !w->deadline) || lk_token_new(&lk->tokens, w->token) != CM_OK) {
        if (w)
            lk->ops->timer_free(w->deadline);
        free(w);
        owner_sendf(owner, tag, "ERR LIMIT cannot create a token");
        res_maybe_free(r);
        return;
    }
    w->res = r;
    w->owner = owner;
    w->lease_ms = lease_ms;
    w->wait_ms = wait_ms;
    w->start_us = now_us(lk);
    w->arrive_ms = lk->ops->wall_ms(lk->ctx);
    snprintf(w->tag, sizeof(w->tag), "%s", tag);
    if (wait_ms > 0)
        timer_arm_ms(lk, w->deadline, wait_ms);
    TAILQ_INSERT_TAIL(&r->waiters, w, res_link);
    r->n_waiters++;
    TAILQ_INSERT_TAIL(&owner->waiters, w, owner_link);
    owner->n_waiters++;
    lk_stats.waiters++;
    /* During a head start for other lockds the first attempt waits for retry_cb. */
    if (TAILQ_FIRST(&r->waiters) == w && r->state != RES_ATTEMPT && r->state != RES_HELD &&
        r->state != RES_HEAD_START)
        start_attempt(r);
}

/* ---- holds --------------------------------------------------------------- */

static void hold_detach_owner(lk_hold *h)
{
    if (!h->owner)
        return;
    TAILQ_REMOVE(&h->owner->holds, h, owner_link);
    h->owner->n_holds--;
    h->owner = NULL;
}

/* Cancels the renewals in flight; a client RENEW among them is answered LOST. */
static void hold_cancel_ops(lk_hold *h)
{
    lk_locks *lk = h->lk;
    lk_renew *rn;
    lk->ops->cancel(lk->ctx, h->wd_op);
    h->wd_op = NULL;
    while ((rn = TAILQ_FIRST(&h->renews)) != NULL) {
        TAILQ_REMOVE(&h->renews, rn, link);
        lk->ops->cancel(lk->ctx, rn->op);
        owner_sendf(h->owner, rn->tag, "LOST");
        free(rn);
    }
}

/*
 * The lock leaves this session: hand it to the next local waiter in one Redlock
 * step (takeover from our token, no gap, no poll) or release it for everyone.
 * release_us is when the RELEASE arrived, for the handoff latency (0: not a RELEASE).
 */
static void hold_end(lk_hold *h, uint64_t release_us)
{
    lk_locks *lk = h->lk;
    lk_resource *r = h->res;
    lk_waiter *next = TAILQ_FIRST(&r->waiters);

    assert(r->state == RES_HELD && r->holder == h);
    hold_cancel_ops(h);
    hold_detach_owner(h);
    lk->ops->timer_free(h->timer);
    r->holder = NULL;
    lk_stats.locks_held--;
    uint64_t t_ms = now_ms(lk);
    bool remote_wants = r->remote_wanted_ms && t_ms - r->remote_wanted_ms < LK_WANTED_MS;
    bool chain_long = r->chain_handoffs >= LK_CHAIN_MIN && t_ms - r->chain_start_ms >= LK_CHAIN_MS;
    /* Yield to another lockd when its oldest waiter came before our next one, or when
     * our chain is long and old (the bound that holds whatever the clocks say). */
    bool yield = next && remote_wants &&
                 (chain_long || (r->remote_oldest_ms && r->remote_oldest_ms < next->arrive_ms));
    if (next && !lk->shutting_down && !yield) {
        memcpy(r->prev_token, h->token, sizeof(r->prev_token));
        next->handoff_us = release_us ? release_us : now_us(lk);
        start_attempt(r);
    } else {
        /* A plain release publishes it: after a long local chain, waiters on other
         * lockds (which only poll a lock that is never free) get a head start. So they
         * do when another lockd wants it and we have no local waiter yet: an ACQUIRE
         * that follows the RELEASE at once (same client, same write) would otherwise
         * reach the masters before their pub/sub wake-up, every time. The resource
         * stays (res_maybe_free) until the head start is over. */
        lk->ops->release(lk->ctx, r->name, h->token);
        /* Each master publishes this release once: those notices are ours and must not
         * wake anyone here (2q-1 >= the masters behind a quorum of q). */
        r->own_release_ms = t_ms;
        r->own_notices = (uint32_t)(2 * lk->ops->quorum(lk->ctx) - 1);
        if ((next || remote_wants) && !lk->shutting_down) {
            /* A turn handed to an older remote waiter gets a longer head start (a busy
             * machine may take a few ms to schedule the other lockd); its release
             * notices end it as soon as it is done. */
            bool turn = next && !chain_long;
            res_schedule(r,
                         turn ? cm_rand_range(LK_TURN_MIN, LK_TURN_MAX)
                              : cm_rand_range(LK_YIELD_MIN, LK_YIELD_MAX),
                         RES_HEAD_START);
            /* The other side learns when our next waiter arrived, so it gives the lock
             * back in turn; with none left, that we have nobody waiting any more. */
            if (next)
                lk_stats.yields_total++;
            want_notify(r, true);
        } else {
            res_set_state(r, RES_IDLE);
        }
        if (!next && r->want_sent_oldest && !lk->shutting_down) {
            r->want_sent_oldest = 0;
            r->want_sent_ms = t_ms;
            lk->ops->publish_wanted(lk->ctx, r->name, 0, lk->id, ++lk->want_seq);
        }
    }
    free(h);
    res_maybe_free(r);
}

/* Queues `* LOST <resource> <token> <reason>` to h's session (if it still has one) and
 * counts it. Callers queue it before any Redlock round that lets the lock go: the
 * session's flush event is then active first and the line is written before the DEL or
 * the handoff goes out (SPEC 2b's ordering promise). */
static void hold_push_lost(lk_hold *h, lk_lost_reason why)
{
    lk_stats.lost_total++;
    lk_stats.lost_by_reason[why]++;
    owner_sendf(h->owner, NULL, "LOST %s %s %s", h->res->name, h->token, lk_lost_reason_name[why]);
    log_info("lock %s (%s) lost: %s", h->res->name, h->token, lk_lost_reason_name[why]);
}

/* The lock could not be kept: tell the session, then let it go. */
static void hold_lost(lk_hold *h, lk_lost_reason why)
{
    hold_push_lost(h, why);
    hold_end(h, 0);
}

static void wd_renew_cb(void *arg, const lk_rl_result *res)
{
    lk_hold *h = arg;
    lk_locks *lk = h->lk;
    uint64_t now = now_ms(lk);

    h->wd_op = NULL;
    if (h->lease_ms > 0)
        return; /* a RENEW with a lease made it a fixed lease meanwhile: its timer rules */
    if (res->outcome == LK_RL_GRANTED && res->validity_ms > 0) {
        lk_stats.watchdog_renewals_total++;
        uint64_t validity = CM_MIN((uint64_t)res->validity_ms, lk->opts.watchdog_lease_ms);
        h->expires_ms = CM_MAX(h->expires_ms, now + validity);
        timer_arm_ms(lk, h->timer, CM_MAX(1, CM_MIN(lk->opts.watchdog_lease_ms / 3, validity / 2)));
        return;
    }
    if (res->outcome == LK_RL_HELD) {
        /* A majority holds another value: the lock is gone now, whatever validity says;
         * retrying would only keep the holder believing in it (issue 12, item 3). A
         * tombstone of our token means an admin's REVOKE through another lockd. */
        hold_lost(h, res->revoked ? LK_LOST_REVOKED : LK_LOST_RENEW_REFUSED);
        return;
    }
    if (now >= h->expires_ms) {
        hold_lost(h, LK_LOST_NO_QUORUM);
        return;
    }
    /* Timeouts or no quorum: keep trying while validity lasts; the timer checks the
     * deadline again. */
    uint64_t delay = cm_rand_range(1, (uint32_t)lk->opts.retry_delay_ms);
    timer_arm_ms(lk, h->timer, CM_MIN(delay, h->expires_ms - now));
}

/* Redlock's drift allowance for a lease: validity = lease - elapsed - drift, so a
 * lock's keys may live up to this long past its validity on a master. */
static uint64_t drift_ms(const lk_locks *lk, uint64_t lease_ms)
{
    return (uint64_t)((double)lease_ms * lk->opts.clock_drift_factor) + 2;
}

static void hold_timer_cb(void *arg)
{
    lk_hold *h = arg;
    lk_locks *lk = h->lk;

    if (!h->owner) {
        /* Orphan after lock_delay_ms, or a fixed lease past its margin: it goes to the
         * next waiter. */
        hold_end(h, 0);
        return;
    }
    if (h->lease_ms > 0) {
        /* The fixed lease's validity ran out without RENEW: the holder hears it now, and
         * the keys stay ours for Redlock's drift margin more before anyone else can be
         * granted them (SPEC 2b: validity + drift after the grant; the keys' TTL is the
         * whole lease). RENEWs in flight are answered LOST first. */
        hold_cancel_ops(h);
        hold_push_lost(h, LK_LOST_EXPIRED);
        hold_detach_owner(h);
        timer_arm_ms(lk, h->timer, drift_ms(lk, h->lease_ms));
        return;
    }
    uint64_t now = now_ms(lk);
    if (now >= h->expires_ms) {
        /* Validity is over, whether a renewal is still out (waiting for admission behind
         * other rounds, or for slow masters) or not: hold_end cancels it. */
        hold_lost(h, LK_LOST_NO_QUORUM);
        return;
    }
    if (!h->wd_op)
        h->wd_op = lk->ops->renew(lk->ctx, h->res->name, h->token, lk->opts.watchdog_lease_ms,
                                  wd_renew_cb, h);
    /* The renewal's deadline is the end of validity (issue 12 item 6); its callback
     * re-arms the timer for the next renewal or a retry. */
    timer_arm_ms(lk, h->timer,
                 h->wd_op ? h->expires_ms - now
                          : CM_MIN(lk->opts.retry_delay_ms, h->expires_ms - now));
}

/* The session is gone or dead: keep the lock lock_delay_ms longer (bounded by its
 * validity) without an owner, or end it now. */
static void hold_orphan(lk_hold *h)
{
    lk_locks *lk = h->lk;
    uint64_t now = now_ms(lk);
    uint64_t left = h->expires_ms > now ? h->expires_ms - now : 0;

    if (lk->opts.lock_delay_ms == 0 || left == 0) {
        hold_end(h, 0);
        return;
    }
    hold_cancel_ops(h);
    hold_detach_owner(h);
    /* A fixed lease is handed on no earlier than its validity + drift (SPEC 2b). */
    if (h->lease_ms > 0)
        left += drift_ms(lk, h->lease_ms);
    timer_arm_ms(lk, h->timer, CM_MIN(lk->opts.lock_delay_ms, left));
}

static lk_hold *find_hold(lk_locks *lk, lk_owner *owner, const char *resource, const char *token)
{
    lk_resource *r = res_find(lk, resource);
    lk_hold *h = r ? r->holder : NULL;
    if (!h || h->owner != owner || strcmp(h->token, token) != 0)
        return NULL;
    return h;
}

static void renew_cb(void *arg, const lk_rl_result *res)
{
    lk_renew *rn = arg;
    lk_hold *h = rn->hold;
    lk_locks *lk = h->lk;

    TAILQ_REMOVE(&h->renews, rn, link);
    if (res->outcome == LK_RL_GRANTED && res->validity_ms > 0) {
        uint64_t validity = CM_MIN((uint64_t)res->validity_ms, rn->lease_ms);
        h->expires_ms = now_ms(lk) + validity;
        if (h->lease_ms > 0 || rn->set_lease) {
            if (rn->set_lease)
                h->lease_ms = rn->lease_ms;
            if (h->lease_ms > 0)
                timer_arm_ms(lk, h->timer, validity);
        }
        lk_stats.renews_total++;
        owner_sendf(h->owner, rn->tag, "OK %llu", (unsigned long long)validity);
        free(rn);
        return;
    }
    owner_sendf(h->owner, rn->tag, "LOST");
    free(rn);
    log_info("renewal of %s (%s) failed: lock dropped", h->res->name, h->token);
    hold_end(h, 0);
}

void lk_locks_renew(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                    const char *token, uint64_t lease_ms)
{
    lk_hold *h = find_hold(lk, owner, resource, token);
    lk_renew *rn;

    if (!h) {
        owner_sendf(owner, tag, "LOST");
        return;
    }
    if (lease_ms > lk->opts.max_lease_ms) {
        owner_sendf(owner, tag, "ERR LIMIT lease_ms over the configured maximum");
        return;
    }
    rn = calloc(1, sizeof(*rn));
    if (!rn) {
        owner_sendf(owner, tag, "ERR LIMIT out of memory");
        return;
    }
    rn->hold = h;
    rn->set_lease = lease_ms > 0;
    rn->lease_ms = lease_ms ? lease_ms : (h->lease_ms ? h->lease_ms : lk->opts.watchdog_lease_ms);
    snprintf(rn->tag, sizeof(rn->tag), "%s", tag);
    TAILQ_INSERT_TAIL(&h->renews, rn, link);
    rn->op = lk->ops->renew(lk->ctx, h->res->name, h->token, rn->lease_ms, renew_cb, rn);
    if (!rn->op) {
        TAILQ_REMOVE(&h->renews, rn, link);
        free(rn);
        owner_sendf(owner, tag, "LOST");
        hold_end(h, 0);
    }
}

void lk_locks_release(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                      const char *token)
{
    uint64_t t_us = now_us(lk);
    lk_hold *h = find_hold(lk, owner, resource, token);

    if (!h) {
        owner_sendf(owner, tag, "LOST");
        return;
    }
    lk_stats.releases_total++;
    owner_sendf(owner, tag, "OK");
    hold_end(h, t_us);
}

/* ---- SHOW and REVOKE ------------------------------------------------------ */

/* The hold ends here without a handoff or a release (REVOKE deletes the keys itself;
 * lk_locks_free sends nothing): its renewals are cancelled, its session unlinked. The
 * resource is left idle with its waiters. */
static void hold_drop(lk_hold *h)
{
    lk_locks *lk = h->lk;
    lk_resource *r = h->res;
    assert(r->state == RES_HELD && r->holder == h);
    hold_cancel_ops(h);
    hold_detach_owner(h);
    lk->ops->timer_free(h->timer);
    r->holder = NULL;
    res_set_state(r, RES_IDLE);
    lk_stats.locks_held--;
    free(h);
}

/* Unlinks and frees q; cancel: its round is still out (lk_locks_free). */
static void query_free(lk_query *q, bool cancel)
{
    lk_locks *lk = q->lk;
    if (cancel)
        lk->ops->query_cancel(lk->ctx, q->op);
    if (q->owner)
        TAILQ_REMOVE(&q->owner->queries, q, owner_link);
    TAILQ_REMOVE(&lk->queries, q, link);
    free(q);
}

static void show_cb(void *arg, const lk_rl_lockview *v)
{
    lk_query *q = arg;
    lk_resource *r = res_find(q->lk, q->resource);
    if (v->ok)
        owner_sendf(q->owner, q->tag,
                    "OK held=%d fence=%llu ttl_ms=%llu holder=%s lockd=%s waiters=%zu",
                    v->held ? 1 : 0, (unsigned long long)v->fence, (unsigned long long)v->ttl_ms,
                    v->held ? v->holder : "-", v->held ? v->lockd : "-", r ? r->n_waiters : 0);
    else
        owner_sendf(q->owner, q->tag, "ERR NOQUORUM fewer than a quorum of Redis masters");
    query_free(q, false);
}

static void revoke_cb(void *arg, const lk_rl_lockview *v)
{
    lk_query *q = arg;
    lk_locks *lk = q->lk;
    lk_resource *r = res_find(lk, q->resource);
    if (!v->ok) {
        owner_sendf(q->owner, q->tag, "ERR NOQUORUM fewer than a quorum of Redis masters");
    } else if (v->held) {
        lk_stats.revocations_total++;
        owner_sendf(q->owner, q->tag, "OK %llu", (unsigned long long)v->fence);
        log_info("lock %s revoked: fence %llu", q->resource, (unsigned long long)v->fence);
    } else {
        owner_sendf(q->owner, q->tag, "OK -");
    }
    query_free(q, false);
    /* Our waiters go on at once: the tombstone counts as free. */
    if (r && !TAILQ_EMPTY(&r->waiters) && !lk->shutting_down &&
        (r->state == RES_IDLE || r->state == RES_POLL || r->state == RES_RETRY))
        start_attempt(r);
}

/* Starts a SHOW or REVOKE query for owner, or answers ERR when it cannot. */
static void query_start(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                        bool revoke)
{
    lk_query *q;
    if (!(revoke ? lk->ops->revoke : lk->ops->show)) {
        owner_sendf(owner, tag, "ERR BADREQ not supported here");
        return;
    }
    if (!lk->ops->has_quorum(lk->ctx)) {
        owner_sendf(owner, tag, "ERR NOQUORUM fewer than a quorum of Redis masters");
        return;
    }
    if (!(q = calloc(1, sizeof(*q)))) {
        owner_sendf(owner, tag, "ERR LIMIT out of memory");
        return;
    }
    q->lk = lk;
    q->owner = owner;
    snprintf(q->tag, sizeof(q->tag), "%s", tag);
    snprintf(q->resource, sizeof(q->resource), "%s", resource);
    TAILQ_INSERT_TAIL(&owner->queries, q, owner_link);
    TAILQ_INSERT_TAIL(&lk->queries, q, link);
    q->op = revoke ? lk->ops->revoke(lk->ctx, resource, revoke_cb, q)
                   : lk->ops->show(lk->ctx, resource, show_cb, q);
    if (!q->op) {
        owner_sendf(owner, tag, "ERR LIMIT cannot start the query");
        query_free(q, false);
    }
}

void lk_locks_show(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource)
{
    query_start(lk, owner, tag, resource, false);
}

void lk_locks_revoke(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource)
{
    lk_resource *r = res_find(lk, resource);
    if (lk->shutting_down) {
        owner_sendf(owner, tag, "ERR SHUTDOWN lockd is shutting down");
        return;
    }
    if (r && r->holder && lk->ops->revoke && lk->ops->has_quorum(lk->ctx)) {
        /* Told before the tombstone is sent: this push makes the session's flush event
         * active now, the query's EVAL goes out on a later write event (SPEC 2b). */
        hold_push_lost(r->holder, LK_LOST_REVOKED);
        hold_drop(r->holder);
    }
    query_start(lk, owner, tag, resource, true);
    if ((r = res_find(lk, resource)) != NULL)
        res_maybe_free(r);
}

const char *lk_locks_id(const lk_locks *lk)
{
    return lk->id;
}

/* ---- sessions ------------------------------------------------------------ */

void lk_owner_init(lk_owner *owner, lk_owner_send_fn send)
{
    memset(owner, 0, sizeof(*owner));
    TAILQ_INIT(&owner->holds);
    TAILQ_INIT(&owner->waiters);
    TAILQ_INIT(&owner->queries);
    owner->send = send;
}

/* Drops every waiter of owner, answering each with `<tag> <answer>` unless answer is
 * NULL, and lets each affected resource move on. */
static void owner_drop_waiters(lk_owner *owner, const char *answer)
{
    lk_waiter *w;
    while ((w = TAILQ_FIRST(&owner->waiters)) != NULL) {
        lk_resource *r = w->res;
        if (answer)
            owner_sendf(owner, w->tag, "%s", answer);
        waiter_remove(w);
        res_kick(r);
        res_maybe_free(r);
    }
}

void lk_locks_owner_expire(lk_locks *lk, lk_owner *owner, uint64_t silent_ms)
{
    char answer[80];
    lk_hold *h;
    if (owner->ended)
        return;
    while ((h = TAILQ_FIRST(&owner->holds)) != NULL) {
        hold_push_lost(h, LK_LOST_SESSION); /* before hold_orphan can hand it to anyone */
        hold_orphan(h);
    }
    snprintf(answer, sizeof(answer), "ERR SESSION session expired after %llu ms of silence",
             (unsigned long long)silent_ms);
    owner_drop_waiters(owner, answer);
    lk_locks_owner_end(lk, owner);
}

void lk_locks_owner_end(lk_locks *lk, lk_owner *owner)
{
    lk_hold *h;
    if (owner->ended)
        return;
    owner->ended = true; /* nothing is sent from here on */
    owner_drop_waiters(owner, NULL);
    lk_query *q;
    while ((q = TAILQ_FIRST(&owner->queries)) != NULL) {
        TAILQ_REMOVE(&owner->queries, q, owner_link);
        q->owner = NULL; /* it completes unanswered */
    }
    while ((h = TAILQ_FIRST(&owner->holds)) != NULL)
        hold_orphan(h);
}

/* ---- process-wide events ------------------------------------------------- */

/* Calls fn on every resource; fn may free the resource it is given (only that one)
 * and must not make new ones (cm_hash: deleting while iterating is fine). */
static void res_foreach(lk_locks *lk, void (*fn)(lk_resource *r))
{
    size_t pos = 0;
    lk_resource *r;
    while ((r = cm_hash_next(lk->table, &pos, NULL, NULL)) != NULL)
        fn(r);
}

static void res_noquorum(lk_resource *r)
{
    if (r->n_waiters == 0)
        return;
    res_fail_noquorum(r);
    res_maybe_free(r);
}

void lk_locks_on_masters(lk_locks *lk, size_t up, size_t total)
{
    if (lk->ops->has_quorum(lk->ctx)) {
        lk->had_quorum = true;
        return;
    }
    if (lk->had_quorum)
        log_warn("only %zu of %zu Redis masters up: waiting ACQUIREs get NOQUORUM", up, total);
    lk->had_quorum = false;
    res_foreach(lk, res_noquorum);
}

void lk_locks_on_released(lk_locks *lk, const char *resource)
{
    lk_resource *r = res_find(lk, resource);
    if (!r || TAILQ_EMPTY(&r->waiters) || lk->shutting_down)
        return;
    /* Not while a local session holds it. Our own release's notices are skipped (they
     * must not end the head start we give the other lockds); a release elsewhere ends
     * it: the other side is done and gives the lock back. During an attempt a quorum
     * of notices is remembered: if the attempt then finds it held, it tries again at
     * once. */
    uint64_t now = now_ms(lk);
    if (r->own_notices > 0 && now - r->own_release_ms <= LK_RELEASED_MS) {
        r->own_notices--;
        return;
    }
    r->own_notices = 0;
    if (r->state == RES_HELD)
        return;
    /* Each master publishes once it has deleted the key. An attempt on the first notice
     * finds the key still on the others, loses, and backs off: wait for a quorum of
     * them (notices within LK_RELEASED_MS belong to one release). */
    if (r->released_seen == 0 || now - r->released_first_ms > LK_RELEASED_MS) {
        r->released_first_ms = now;
        r->released_seen = 0;
    }
    if (++r->released_seen < lk->ops->quorum(lk->ctx))
        return;
    r->released_seen = 0;
    if (r->state == RES_ATTEMPT) {
        r->wake_pending = true;
        return;
    }
    lk_stats.wakeups_total++;
    start_attempt(r);
}

/* notice: "<resource>[ <oldest_ms> <lockd-id> <seq>]" (lk_redlock_publish_wanted). */
void lk_locks_on_wanted(lk_locks *lk, const char *notice)
{
    char name[CM_LOCKP_RESOURCE_MAX + 1], from[LK_ID_BUF] = "";
    unsigned long long oldest = 0, seq = 0;
    size_t len = strcspn(notice, " ");
    if (len == 0 || len > CM_LOCKP_RESOURCE_MAX)
        return;
    memcpy(name, notice, len);
    name[len] = '\0';
    if (notice[len] == ' ' && sscanf(notice + len + 1, "%llu %16s %llu", &oldest, from, &seq) < 2)
        oldest = 0;
    if (strcmp(from, lk->id) == 0)
        return; /* our own notice, back through Redis */
    lk_resource *r = res_find(lk, name);
    if (!r)
        return; /* nothing held or awaited here: whoever takes it next sees it held */
    /* The short form ("want <resource>", from lockds before issue 11, and sent by us
     * too for them) cannot be told from our own: as before, it counts only while a
     * local session holds the lock (our waiters never announce while we hold it). */
    if (!from[0] && !r->holder)
        return;
    uint64_t now = now_ms(lk);
    bool fresh = r->remote_wanted_ms && now - r->remote_wanted_ms < LK_WANTED_MS;
    /* Keep the oldest announced arrival; the same lockd's newer notice replaces its
     * own (its oldest waiter was served meanwhile), and "0" from it says it has nobody
     * waiting any more. */
    bool same = from[0] && strcmp(from, r->remote_from) == 0;
    if (same && seq && seq <= r->remote_seq)
        return; /* a copy (one per master) of a notice we have, or of an older one */
    if (from[0] && oldest == 0 && notice[len] == ' ') {
        if (same || !fresh) {
            r->remote_oldest_ms = 0;
            r->remote_wanted_ms = 0;
            memcpy(r->remote_from, from, sizeof(r->remote_from));
            r->remote_seq = seq;
        }
        return;
    }
    if (oldest && (!fresh || !r->remote_oldest_ms || same || oldest < r->remote_oldest_ms)) {
        r->remote_oldest_ms = oldest;
        memcpy(r->remote_from, from, sizeof(r->remote_from));
        r->remote_seq = seq;
    } else if (!oldest && !fresh) {
        r->remote_oldest_ms = 0;
    }
    r->remote_wanted_ms = now;
}

static void res_shutdown(lk_resource *r)
{
    lk_waiter *w;
    while ((w = TAILQ_FIRST(&r->waiters)) != NULL) {
        owner_sendf(w->owner, w->tag, "ERR SHUTDOWN lockd is shutting down");
        waiter_remove(w);
    }
    if (r->holder) {
        lk_hold *h = r->holder;
        /* The holder is told before its keys go: this line makes the session's flush event
         * active before the release round makes the Redlock flush active, and active events
         * run in order, so the line is written before the DEL is sent (SPEC 2b). */
        hold_push_lost(h, LK_LOST_SHUTDOWN);
        hold_end(h, 0); /* shutting_down: a plain release, no handoff */
    } else {
        res_maybe_free(r);
    }
}

static void res_release_prev(lk_resource *r)
{
    if (r->prev_token[0]) {
        r->lk->ops->release(r->lk->ctx, r->name, r->prev_token);
        r->prev_token[0] = '\0';
    }
}

void lk_locks_shutdown(lk_locks *lk)
{
    if (lk->shutting_down)
        return;
    log_info("releasing %zu resources", cm_hash_count(lk->table));
    /* prev_tokens still go out: res_maybe_free skips them only once shutting_down
     * is set, so release them first. */
    res_foreach(lk, res_release_prev);
    lk->shutting_down = true;
    res_foreach(lk, res_shutdown);
}

lk_locks *lk_locks_new(const lk_ops *ops, void *ctx, const lk_locks_opts *opts)
{
    lk_locks *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return NULL;
    lk->ops = ops;
    lk->ctx = ctx;
    lk->opts = *opts;
    if (lk->opts.retry_delay_ms == 0)
        lk->opts.retry_delay_ms = 1;
    if (lk_token_id(lk->id, (LK_ID_BUF - 1) / 2) != CM_OK) {
        free(lk);
        return NULL;
    }
    TAILQ_INIT(&lk->queries);
    lk->table = cm_hash_new(CM_HASH_STR);
    if (!lk->table || cm_hash_reserve(lk->table, LK_TABLE_INIT) != CM_OK) {
        cm_hash_free(lk->table);
        free(lk);
        return NULL;
    }
    return lk;
}

static void res_destroy(lk_resource *r)
{
    lk_locks *lk = r->lk;
    lk_waiter *w;
    while ((w = TAILQ_FIRST(&r->waiters)) != NULL)
        waiter_remove(w);
    if (r->holder)
        hold_drop(r->holder);
    lk->ops->cancel(lk->ctx, r->op);
    r->op = NULL;
    r->prev_token[0] = '\0';
    res_maybe_free(r);
}

void lk_locks_free(lk_locks *lk)
{
    if (!lk)
        return;
    lk->shutting_down = true; /* no Redlock traffic from here on */
    res_foreach(lk, res_destroy);
    lk_query *q;
    while ((q = TAILQ_FIRST(&lk->queries)) != NULL)
        query_free(q, true);
    cm_hash_free(lk->table);
    free(lk);
}
