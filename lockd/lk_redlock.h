/*
 * lk_redlock: Redlock over N independent Redis masters (SPEC §4), hiredis async on
 * the daemon's libevent loop. Owns the connections (one command context and one
 * pub/sub context per master, reconnect with backoff), the Lua scripts, the per-round
 * timers, fence write-back, and the cross-lockd wake-up channel.
 *
 * Keys: <prefix>lock:<resource> holds the token, <prefix>fence:<resource> counts grants,
 * <prefix>owner:<resource> names the holder for SHOW ("<token> <client-name> <lockd-id>",
 * believed only while that token holds the lock). A REVOKE replaces the lock's value with
 * the tombstone "revoked:<token>" (same TTL): acquires treat it as free, the revoked
 * holder's renewal sees it and is told "revoked".
 * Channel: <prefix>released carries the resource name of every release (the releases
 * of one batch call in one message: " <r1> <r2> ..." when there are several), and
 * "want <resource>" notices from lockds whose waiters find the lock held elsewhere
 * (resource names never contain a space, so the two cannot be confused).
 *
 * Rounds: each operation sends its command to every connected master and completes as
 * soon as its outcome is known (quorum reached, quorum impossible, or the round timer
 * of redlock.redis_timeout_ms fires). Late replies are ignored. At most
 * max_inflight_rounds are out at once; later ones wait in a FIFO and their time starts
 * when they are sent. A master that is not
 * connected, or is quarantined (lk_quarantine: it came back without its data), counts as a no.
 * Rounds (and fence write-backs) that start in the same loop pass reach each master as ONE call of
 * a batch script that carries them all, each with its own per-resource answer (see lk_redlock.c).
 * The callback runs exactly once, from the event loop, never from inside the call that started the
 * operation, unless the operation was cancelled.
 */
#ifndef LK_REDLOCK_H
#define LK_REDLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "cm_hist.h"

struct event_base;
typedef struct lk_redlock lk_redlock;
typedef struct lk_rl_op lk_rl_op;

typedef enum lk_rl_outcome {
    LK_RL_GRANTED,  /* acquire/renew: quorum and validity > 0; release: done (see below) */
    LK_RL_HELD,     /* acquire: another token holds it; retry_after_ms = its smallest PTTL;
                       renew: refused by a majority (another value, or none, on a quorum of
                       masters): the lock is gone, retrying cannot bring it back */
    LK_RL_NOQUORUM, /* fewer than a quorum of masters connected; nothing was sent */
    LK_RL_FAILED,   /* no quorum for other reasons (timeouts, errors, split vote, validity
                       ran out); for acquire the token was already unlocked everywhere; for
                       renew the lock may still be ours: try again while validity lasts */
} lk_rl_outcome;

typedef struct lk_rl_result {
    lk_rl_outcome outcome;
    uint64_t fence;         /* acquire GRANTED: the fence, already on a majority */
    int64_t validity_ms;    /* acquire/renew GRANTED: remaining validity from now */
    int64_t retry_after_ms; /* acquire HELD: PTTL of the current holder (>= 0), else 0 */
    bool revoked;           /* renew HELD: some master holds a REVOKE's tombstone of the token */
} lk_rl_result;

typedef void (*lk_rl_cb)(void *arg, const lk_rl_result *res);

/* The client's own counters (lk_metrics renders them; tests read them). They live as
 * long as the client and start at zero. */
typedef struct lk_rl_stats {
    uint64_t rounds_total;           /* rounds started (acquire, renew, release, unlocks) */
    uint64_t failed_total;           /* rounds that ended without quorum */
    uint64_t fence_writebacks_total; /* acquires that wrote the fence back to a majority */
    uint64_t batch_calls_total;      /* batch script calls sent (one per master per pass) */
    uint64_t batch_entries_total;    /* round commands those calls carried */
    cm_hist redis_rtt;               /* per-master command round trip */
} lk_rl_stats;
/* Another process released resource (pub/sub). Borrowed string. on_wanted gets the
 * whole "want" notice after its prefix: "<resource>[ <oldest_ms> <lockd-id> <seq>]"
 * (the fields are absent in notices of older lockds). */
typedef void (*lk_rl_released_cb)(void *arg, const char *resource);
/* The number of connected masters changed. */
typedef void (*lk_rl_masters_cb)(void *arg, size_t up, size_t total);

typedef struct lk_redlock_opts {
    const cm_addr *masters; /* copied */
    size_t n_masters;
    const char *key_prefix; /* copied */
    uint32_t redis_timeout_ms;
    uint32_t max_inflight_rounds; /* rounds sent and open at once, the rest queue; 0: no limit */
    double clock_drift_factor;
    bool quarantine;       /* the guard against a master that forgot (lk_quarantine); off: a
                              master counts as soon as it is connected */
    uint64_t max_lease_ms; /* limits.max_lease_ms: the cap of a quarantine's time bound */
    lk_rl_released_cb on_released;
    lk_rl_released_cb on_wanted; /* another lockd has waiters for resource; may be NULL */
    lk_rl_masters_cb on_masters;
    /* Called once, when the masters' first connection attempts tell whether a quorum is
     * reachable: a quorum counts, every attempt has ended (the master counts, or the
     * attempt failed), or so many failed that no quorum is possible. May be NULL;
     * lk_redlock_settled() tells whether it has happened. */
    void (*on_settled)(void *arg);
    void *cb_arg;
} lk_redlock_opts;

/* Creates the client and starts connecting to every master (non-blocking). */
lk_redlock *lk_redlock_new(struct event_base *base, const lk_redlock_opts *opts) CM_MUSTCHECK;
/* Disconnects everything; pending callbacks are not called. */
void lk_redlock_free(lk_redlock *rl);

size_t lk_redlock_masters_total(const lk_redlock *rl);
size_t lk_redlock_masters_up(const lk_redlock *rl);
size_t lk_redlock_quorum(const lk_redlock *rl);
bool lk_redlock_has_quorum(const lk_redlock *rl);
/* Whether start-up has settled (see on_settled). */
bool lk_redlock_settled(const lk_redlock *rl);
/* Master i: its address text and whether its command connection is up. */
const char *lk_redlock_master_name(const lk_redlock *rl, size_t i);
bool lk_redlock_master_up(const lk_redlock *rl, size_t i);

/* One Redlock attempt for token with a lease of lease_ms. When prev_token is not NULL the
 * lock may also be taken over from prev_token (local handoff: the current holder's token
 * is replaced in one step, no gap). Grants bump the fence; the reply carries the largest
 * fence of the granting masters, written back to a majority first when needed. On any
 * failure the token is unlocked on every master before the callback. */
lk_rl_op *lk_redlock_acquire(lk_redlock *rl, const char *resource, const char *token,
                             const char *prev_token, uint64_t lease_ms, lk_rl_cb cb, void *arg);
/* lk_redlock_acquire that also writes holder ("<client-name> <lockd-id>", no spaces
 * inside either; NULL or "": nothing) to <prefix>owner:<resource> with the grant, for
 * SHOW. */
lk_rl_op *lk_redlock_acquire_as(lk_redlock *rl, const char *resource, const char *token,
                                const char *prev_token, const char *holder, uint64_t lease_ms,
                                lk_rl_cb cb, void *arg);
/* Extends token's lease to lease_ms where it still holds the lock; GRANTED needs quorum
 * and validity > 0. */
lk_rl_op *lk_redlock_renew(lk_redlock *rl, const char *resource, const char *token,
                           uint64_t lease_ms, lk_rl_cb cb, void *arg);
/* Deletes the lock where it holds token and publishes the release, on every master
 * that is up even without a quorum (best effort). cb may be NULL. GRANTED when a quorum
 * answered, FAILED otherwise (keys it could not reach expire by themselves). */
lk_rl_op *lk_redlock_release(lk_redlock *rl, const char *resource, const char *token, lk_rl_cb cb,
                             void *arg);
/* The callback of op will not run. A cancelled acquire that still gets granted is
 * released by lk_redlock itself. Safe to call with NULL. */
void lk_redlock_cancel(lk_rl_op *op);

/* For lk_rlquery (SHOW, REVOKE): master i's command context when it is up (NULL
 * otherwise; borrowed: valid until the loop runs again), the key prefix, the release
 * channel, the round bound and the loop. */
struct redisAsyncContext *lk_redlock_master_ac(const lk_redlock *rl, size_t i);
const char *lk_redlock_prefix(const lk_redlock *rl);
const char *lk_redlock_channel(const lk_redlock *rl);
uint32_t lk_redlock_timeout_ms(const lk_redlock *rl);
struct event_base *lk_redlock_base(const lk_redlock *rl);

/* The counters of rl, borrowed: valid until lk_redlock_free. */
const lk_rl_stats *lk_redlock_stats(const lk_redlock *rl);
/* The guard (lk_quarantine.h: which masters are quarantined), borrowed likewise. A master
 * in quarantine is not up: lk_redlock_masters_up, _master_up and _master_ac leave it out. */
struct lk_quar;
const struct lk_quar *lk_redlock_quar(const lk_redlock *rl);

/* Rounds still in flight (shutdown waits for releases to drain). */
size_t lk_redlock_pending(const lk_redlock *rl);
/* Rounds waiting for room under max_inflight_rounds (not sent yet). */
size_t lk_redlock_queued(const lk_redlock *rl);

#endif
