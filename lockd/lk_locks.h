/*
 * lk_locks: the lock table of one lockd. Owns every resource this process knows
 * about (a hash table name -> lk_resource), the FIFO of waiting ACQUIREs per
 * resource, the locks held by local sessions (lease timers, the watchdog), the one
 * Redlock attempt in flight per resource, local handoff on release, cross-lockd
 * wake-ups and the bounded safety-net poll.
 *
 * Sessions take part through an lk_owner they embed: lk_locks links the owner's
 * holds and waiters to it and writes replies and pushes through owner->send.
 * An owner must be ended (lk_locks_owner_end) before its memory goes away; after
 * that lk_locks never touches it again. Nothing in here frees an owner.
 *
 * Redlock, the clock and timers are reached through an operations table (lk_ops.h):
 * lk_ops_redlock in the daemon, a scripted fake in tests/lockd_unit. Round callbacks
 * get lk_resource / lk_hold pointers; every round is cancelled and every timer freed
 * before the object it points to is freed, so the pointers are always valid.
 */
#ifndef LK_LOCKS_H
#define LK_LOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include "cm_core.h"

struct lk_ops;
typedef struct lk_locks lk_locks;
typedef struct lk_hold lk_hold;
typedef struct lk_waiter lk_waiter;
typedef struct lk_query lk_query;

typedef struct lk_owner lk_owner;
/* Writes one complete line (with its LF). Must not free or end the owner. */
typedef void (*lk_owner_send_fn)(lk_owner *owner, const char *line, size_t len);

struct lk_owner {
    TAILQ_HEAD(, lk_hold) holds;     /* locks this session holds */
    TAILQ_HEAD(, lk_waiter) waiters; /* its waiting ACQUIREs */
    TAILQ_HEAD(, lk_query) queries;  /* its SHOW / REVOKE in flight */
    const char *name;                /* HELLO name for SHOW's holder= (borrowed, no spaces;
                                        NULL or "": "-") */
    size_t n_holds;
    size_t n_waiters;
    lk_owner_send_fn send;
    bool ended; /* lk_locks_owner_end ran: nothing is linked any more */
};

typedef struct lk_locks_opts {
    uint64_t watchdog_lease_ms;
    uint64_t retry_delay_ms;
    uint64_t lock_delay_ms;
    uint64_t max_waiters;
    uint64_t max_lease_ms;
    uint64_t max_wait_ms;
    double clock_drift_factor; /* Redlock's: a fixed lease's keys are kept this share of
                                  the lease (+2 ms) past its validity (SPEC 2b) */
} lk_locks_opts;

/* ops and ctx are borrowed: both must outlive the table (lk_ops.h). */
lk_locks *lk_locks_new(const struct lk_ops *ops, void *ctx, const lk_locks_opts *opts) CM_MUSTCHECK;
/* Cancels every op and timer and frees every resource. Owners must be ended first. */
void lk_locks_free(lk_locks *lk);

void lk_owner_init(lk_owner *owner, lk_owner_send_fn send);

/* Request handlers: each answers through owner->send, now or later. */
void lk_locks_acquire(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                      uint64_t lease_ms, uint64_t wait_ms);
void lk_locks_renew(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                    const char *token, uint64_t lease_ms);
void lk_locks_release(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource,
                      const char *token);
/* SHOW (SPEC 2b): `<tag> OK held=<0|1> fence=<n> ttl_ms=<n> holder=<name|-> lockd=<id|->
 * waiters=<n>` as a quorum of masters sees the lock (waiters: this lockd's). */
void lk_locks_show(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource);
/* REVOKE (SPEC 2b; the caller checked the admin right): a holder on this lockd is sent
 * `* LOST <resource> <token> revoked` first and its hold dropped without a handoff; then
 * the masters replace the lock by a tombstone and raise the fence; `<tag> OK <fence>` (or
 * `OK -` when nothing was held), and this lockd's waiters go on. */
void lk_locks_revoke(lk_locks *lk, lk_owner *owner, const char *tag, const char *resource);
/* This lockd's instance id (16 hex digits): SHOW's lockd= and the "want" notices. */
const char *lk_locks_id(const lk_locks *lk);

/* The session went silent for session.timeout_ms (silent_ms, as measured) and is
 * over. Queued in this order: for each lock it holds `* LOST <resource> <token>
 * session`, sent before the lock is released or handed on (now or after
 * lock_delay_ms: SPEC 2b's ordering promise); for each waiting ACQUIRE `<tag> ERR
 * SESSION session expired after <silent_ms> ms of silence` (never TIMEOUT: the wait
 * did not run out, the session did). Then the owner is ended as by
 * lk_locks_owner_end: nothing is sent through it again. */
void lk_locks_owner_expire(lk_locks *lk, lk_owner *owner, uint64_t silent_ms);
/* The session is gone (EOF, QUIT, error): release its locks (now or after
 * lock_delay_ms) and drop its waiters silently. The owner is never touched again. */
void lk_locks_owner_end(lk_locks *lk, lk_owner *owner);

/* Graceful stop: waiters get ERR SHUTDOWN, every held lock is released through
 * Redlock, new ACQUIREs get ERR SHUTDOWN. */
void lk_locks_shutdown(lk_locks *lk);

/* Hooks for lk_redlock's callbacks (main wires them; the unit tests call them). */
void lk_locks_on_released(lk_locks *lk, const char *resource);
/* Another lockd has waiters: notice is "<resource>[ <oldest_ms> <lockd-id> <seq>]" (the
 * "want" payload, see lk_redlock.h). The lock goes to that lockd when a hold here ends
 * and its oldest waiter arrived before our next one (or our chain is long and old). */
void lk_locks_on_wanted(lk_locks *lk, const char *notice);
void lk_locks_on_masters(lk_locks *lk, size_t up, size_t total);

#endif
