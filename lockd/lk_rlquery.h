/*
 * lk_rlquery: SHOW and REVOKE on the Redis masters (SPEC 2b). A query sends one EVAL to
 * every master that is up and decides with the answers of a quorum, bounded by
 * redlock.redis_timeout_ms per phase like a Redlock round (a master that does not answer
 * counts as absent). SHOW reads the lock, its PTTL, the fence and the owner key; REVOKE
 * replaces a live lock by the tombstone "revoked:<token>" (same TTL: acquires treat it as
 * free, the revoked holder's renewal is told "revoked"), bumps the fence where it found
 * one, publishes the release, and then writes the largest fence back to a majority.
 *
 * Owns each query until its last hiredis callback has run (hiredis calls every pending
 * callback exactly once, with NULL on disconnect). The callback runs once, from the loop,
 * never from inside the starting call, and never after lk_rlq_cancel.
 */
#ifndef LK_RLQUERY_H
#define LK_RLQUERY_H

#include <stdbool.h>
#include <stdint.h>
#include "lk_redlock.h"

#define LK_RLQ_NAME_MAX 64

/* What a quorum of masters says about one lock. */
typedef struct lk_rl_lockview {
    bool ok;         /* a quorum answered (REVOKE: and took the fence write-back) */
    bool held;       /* SHOW: one live token on a quorum; REVOKE: a live lock was found */
    uint64_t fence;  /* SHOW: the largest fence a quorum holds at least; REVOKE: the new fence */
    uint64_t ttl_ms; /* SHOW, held: the smallest PTTL among those masters */
    char holder[LK_RLQ_NAME_MAX + 1]; /* SHOW, held: the holder's HELLO name, or "-" */
    char lockd[LK_RLQ_NAME_MAX + 1];  /* ... and the id of the lockd that granted it, or "-" */
} lk_rl_lockview;

typedef void (*lk_rlq_cb)(void *arg, const lk_rl_lockview *view);
typedef struct lk_rlq lk_rlq;

/* NULL when out of memory or the resource is too long; no callback then. */
lk_rlq *lk_rlq_show(lk_redlock *rl, const char *resource, lk_rlq_cb cb, void *arg);
lk_rlq *lk_rlq_revoke(lk_redlock *rl, const char *resource, lk_rlq_cb cb, void *arg);
/* The callback of q will not run (the query still finishes its work). NULL is fine. */
void lk_rlq_cancel(lk_rlq *q);

/* Tells the other lockds that this one has waiters for resource, which another process
 * holds, the oldest of them waiting since oldest_ms (wall clock), from lockd id from,
 * its seq-th notice (PUBLISH "want <resource> <oldest_ms> <from> <seq>" on every master
 * that is up; fire and forget). */
void lk_redlock_publish_wanted(lk_redlock *rl, const char *resource, uint64_t oldest_ms,
                               const char *from, uint64_t seq);

#endif
