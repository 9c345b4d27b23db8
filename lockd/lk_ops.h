/*
 * lk_ops: the operations table through which lk_locks reaches the world outside its
 * lock table: Redlock rounds (acquire, handoff, renew, release), the cross-lockd "want"
 * notice, the quorum, the clock and one-shot timers. pgbouncer's sbuf io ops in
 * spirit: the same lock rules run over the real lk_redlock and libevent loop
 * (lk_ops_redlock) or over a scripted fake in the unit tests (tests/lockd_unit), which
 * decides every outcome and moves time by hand.
 *
 * Every function takes the ctx given to lk_locks_new. Contract of the rounds, the same
 * as lk_redlock.h's: the callback runs exactly once, later, from the loop (never from
 * inside the call that started the round), and never after cancel. A NULL round means
 * it could not start; no callback follows. Timers are owned by whoever made them with
 * timer_new and freed with timer_free; a timer's function runs from the loop.
 *
 * Incoming pub/sub notices ("released", "want") do not go through this table: the
 * owner of the Redlock client calls lk_locks_on_released / lk_locks_on_wanted.
 */
#ifndef LK_OPS_H
#define LK_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lk_redlock.h"
#include "lk_rlquery.h"

struct event_base;
typedef struct lk_round lk_round; /* a round in flight, opaque (the real one: lk_rl_op) */
typedef struct lk_timer lk_timer; /* a one-shot timer, opaque, made by the ops */
typedef void (*lk_timer_fn)(void *arg);
typedef struct lk_qround lk_qround; /* a SHOW / REVOKE query in flight (the real one: lk_rlq) */

typedef struct lk_ops {
    /* One Redlock attempt; prev_token (may be NULL) may be taken over: a local handoff. */
    /* holder: "<client-name> <lockd-id>" for SHOW's owner key (lk_redlock_acquire_as). */
    lk_round *(*acquire)(void *ctx, const char *resource, const char *token, const char *prev_token,
                         const char *holder, uint64_t lease_ms, lk_rl_cb cb, void *arg);
    lk_round *(*renew)(void *ctx, const char *resource, const char *token, uint64_t lease_ms,
                       lk_rl_cb cb, void *arg);
    /* Deletes the lock where it holds token and publishes the release; nobody waits for
     * the outcome (the keys expire by themselves when it fails). */
    void (*release)(void *ctx, const char *resource, const char *token);
    /* The round's callback will not run. round may be NULL. */
    void (*cancel)(void *ctx, lk_round *round);
    /* SHOW and REVOKE on the masters (lk_rlquery.h), same callback contract as the
     * rounds; NULL entries (the unit tests' fake) make lk_locks answer ERR. */
    lk_qround *(*show)(void *ctx, const char *resource, lk_rlq_cb cb, void *arg);
    lk_qround *(*revoke)(void *ctx, const char *resource, lk_rlq_cb cb, void *arg);
    void (*query_cancel)(void *ctx, lk_qround *q); /* q may be NULL */
    /* Tells the other lockds that this one has waiters for resource, the oldest of
     * which arrived at oldest_ms (wall clock; 0: none any more); from names this lockd
     * (lk_locks' instance id) so it can skip its own notices, and seq (increasing per
     * lockd) orders its notices, whose copies come through every master. */
    void (*publish_wanted)(void *ctx, const char *resource, uint64_t oldest_ms, const char *from,
                           uint64_t seq);
    bool (*has_quorum)(void *ctx);
    size_t (*quorum)(void *ctx);   /* masters needed for a grant */
    uint64_t (*now_us)(void *ctx); /* monotonic */
    /* Wall clock (ms since the epoch): waiters' arrival times, compared across lockds,
     * which may run on other machines (a skew between them shifts fairness, never
     * safety: see lk_locks.c). */
    uint64_t (*wall_ms)(void *ctx);
    /* NULL when out of memory. */
    lk_timer *(*timer_new)(void *ctx, lk_timer_fn fn, void *arg);
    void (*timer_arm)(lk_timer *t, uint64_t ms); /* (re)arms: fires once after ms */
    void (*timer_stop)(lk_timer *t);             /* disarms; no-op when not armed */
    void (*timer_free)(lk_timer *t);             /* disarms and frees; t may be NULL */
} lk_ops;

/* The context of lk_ops_redlock: the daemon's loop and its Redlock client. Owned by the
 * caller; it must outlive the lk_locks that uses it. */
typedef struct lk_ops_env {
    struct event_base *base;
    lk_redlock *rl;
} lk_ops_env;

/* The real table: lk_redlock rounds, libevent timers, the monotonic clock. */
extern const lk_ops lk_ops_redlock;

#endif
