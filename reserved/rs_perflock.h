/*
 * rs_perflock: the performance lock of lock.mode lockd (SPEC §0), shared by every
 * booking and cancellation of this process through one FIFO queue per performance.
 *
 * Why a queue: LOCKP locks are not reentrant (a second ACQUIRE of Performance:P on our
 * one session is ERR HELD), so the requests of this process for one performance line up
 * in one queue that owns the lock. Every new grant leaves the lock idle for a round trip
 * through lockd and the Redis masters: with chains of 8 that was 13% of the hot
 * performance's time in bench/booking.sh; chains of 32 gave 464 -> 499 hot bookings/s
 * there, and RS_PERFLOCK_CHAIN_MS still bounds what the other processes wait.
 *
 * The rules (each has a network-free test in tests/reserved_unit, perflock_*):
 *  1. fifo: waiters get the lock in the order they called rs_perflock_wait.
 *  2. one_acquire: at most one ACQUIRE per performance is out at a time, and only for a
 *     waiter; its wait is what the head waiter has left of opts.wait_ms.
 *  3. chain: a holder's release hands the grant to the next waiter without a RELEASE /
 *     ACQUIRE round trip while the grant has served fewer than RS_PERFLOCK_CHAIN_MAX
 *     holders and is younger than RS_PERFLOCK_CHAIN_MS; else it is released, and
 *     acquired anew for the next waiter (processes waiting at lockd get their turn).
 *  4. fence: every holder of a chain gets the grant's fence (the database accepts a
 *     fence equal to the last one it saw).
 *  5. lost: a LOST push tells the holder (cbs.lost; rs_perflock_lost answers true from
 *     then on); such a grant is never handed on: after the holder's release the queue
 *     releases it and acquires anew for the next waiter.
 *  6. wait_timeout: a waiter that has waited opts.wait_ms is refused BUSY the next time
 *     the lock is free to move (a hand-on or a new ACQUIRE), never while another request
 *     holds it; an ACQUIRE that times out refuses its waiter BUSY. With wait_ms 0 (ACQUIRE
 *     does not wait at lockd) a wait in the queue is still bounded, by opts.wait0_ms
 *     (wait_zero_bounded): else a queue behind a busy lock keeps its waiters for ever.
 *  7. refused: an ACQUIRE that lockd refuses (NOQUORUM, SESSION ...) refuses its waiter
 *     UNAVAILABLE, and the next waiter gets an ACQUIRE of its own; when the lock service
 *     cannot be asked at all, every waiter is refused.
 *  8. prefetch: while the lock is busy or on its way (ACQUIRE out, held, RELEASE out) the
 *     first waiter is told cbs.next_in_line, so it can lease its database connection and
 *     send BEGIN before it gets the lock; only the first: one early connection per
 *     performance at most.
 *  9. free: a queue with no waiter and no lock is freed.
 * 10. queue_bound: at most opts.max_queue bookings wait in one performance's queue (a
 *     waiter counts 1, plus the bookings rs_perflock_add put behind it: a batch); a
 *     rs_perflock_wait or rs_perflock_add beyond it is refused at once (rs_perflock_full
 *     tells why), and the booking answered 503 BUSY: a queue no bound holds grows with
 *     every request of a hot sale, each holding memory and a client's connection. *
 * The lock service is reached through an operations table (rs_lock_ops), as pgbouncer's
 * sbuf reaches its socket: rs_perflock_lockclient_ops over cm_lockclient in reserved,
 * a scripted one in the unit tests. The service reports back by calling
 * rs_perflock_on_granted / _on_lost / _on_done with the arg it was given.
 *
 * Ownership: the table owns its queues and the waiter handles. A waiter handle is valid
 * from rs_perflock_wait until its refused callback returns or rs_perflock_release
 * returns. Callbacks run from the service's reports or from rs_perflock_release (a hand
 * on to the next waiter), never inside rs_perflock_wait; they may call rs_perflock_wait
 * and rs_perflock_release, never rs_perflock_free.
 */
#ifndef RS_PERFLOCK_H
#define RS_PERFLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"
#include "cm_lockclient.h"

#define RS_PERFLOCK_CHAIN_MAX 32  /* holders served by one grant at most */
#define RS_PERFLOCK_CHAIN_MS  100 /* a grant older than this is not handed on */
/* Bookings waiting in one performance's queue at most (rule 10), when opts.max_queue is 0:
 * to become the config key lock.max_queue. */
#define RS_PERFLOCK_QUEUE_MAX 4096
/* A wait's bound in the queue when lock.wait_ms is 0 (rule 6), when opts.wait0_ms is 0. */
#define RS_PERFLOCK_WAIT0_MS 10000

typedef struct rs_perflock rs_perflock;
typedef struct rs_perflock_waiter rs_perflock_waiter;

/* How the lock service is reached. ctx is the table's (rs_perflock_new). */
typedef struct rs_lock_ops {
    /* Whether the service can take requests now (connected). */
    bool (*usable)(void *ctx);
    /* Asks for resource. CM_OK: later, never inside this call, exactly one of
     * rs_perflock_on_granted(arg, ...) or rs_perflock_on_done(arg, ...) (not granted);
     * CM_ERR: nothing will come. */
    cm_rc (*acquire)(void *ctx, const char *resource, uint64_t lease_ms, uint64_t wait_ms,
                     void *arg);
    /* Gives the grant back; rs_perflock_on_done(arg, ...) follows (possibly inside this
     * call). Between a grant and its release the service may call rs_perflock_on_lost. */
    void (*release)(void *ctx, void *grant);
    /* The clock (microseconds, monotonic). */
    uint64_t (*now_us)(void *ctx);
} rs_lock_ops;

/* The reports of the lock service; arg is the one given to ops.acquire. */
void rs_perflock_on_granted(void *arg, uint64_t fence, void *grant);
void rs_perflock_on_lost(void *arg);
/* After a refused ACQUIRE (status TIMEOUT or ERROR, code/message from lockd, may be NULL)
 * or after a release (any status). */
void rs_perflock_on_done(void *arg, cm_lock_status status, const char *code, const char *message);

/* cm_lockclient through with_lock; ctx is the cm_lockclient. */
extern const rs_lock_ops rs_perflock_lockclient_ops;

typedef enum rs_perflock_refusal {
    RS_PERFLOCK_BUSY,        /* the waiter waited opts.wait_ms (in the queue or at lockd) */
    RS_PERFLOCK_REFUSED,     /* lockd refused the ACQUIRE: code and message say why */
    RS_PERFLOCK_UNREACHABLE, /* the lock service could not be asked */
} rs_perflock_refusal;

/* What the table tells its waiters; arg is the one given to rs_perflock_wait. */
typedef struct rs_perflock_cbs {
    /* The waiter holds the lock now, with this fence; it calls rs_perflock_release once
     * its work is over (committed or rolled back). */
    void (*granted)(void *arg, uint64_t fence);
    /* The waiter will never get the lock; its handle is gone when this returns. code and
     * message are lockd's for RS_PERFLOCK_REFUSED, "" otherwise. */
    void (*refused)(void *arg, rs_perflock_refusal why, const char *code, const char *message);
    /* The holder's lock was lost: its work must not commit; it still calls release. */
    void (*lost)(void *arg);
    /* The waiter is first in line while the lock is busy (rule 8). May come again. */
    void (*next_in_line)(void *arg);
} rs_perflock_cbs;

typedef struct rs_perflock_opts {
    uint64_t lease_ms; /* ACQUIRE's lease (lock.lease_ms; 0: lockd's watchdog) */
    uint64_t wait_ms;  /* lock.wait_ms: a waiter's whole wait; 0: ACQUIRE does not wait at
                          lockd, and the wait in the queue is bounded by wait0_ms */
    uint64_t wait0_ms; /* the bound of a wait in the queue when wait_ms is 0 (rule 6);
                          0: RS_PERFLOCK_WAIT0_MS */
    size_t max_queue;  /* bookings waiting in one queue at most (rule 10); 0:
                          RS_PERFLOCK_QUEUE_MAX */
} rs_perflock_opts;

/* ops, opts and cbs are copied; ctx is borrowed. NULL when out of memory. */
rs_perflock *rs_perflock_new(const rs_lock_ops *ops, void *ctx, const rs_perflock_opts *opts,
                             const rs_perflock_cbs *cbs) CM_MUSTCHECK;
/* Frees every queue and waiter without calling anything: only after the lock service is
 * gone (its pending reports would find freed queues). NULL is fine. */
void rs_perflock_free(rs_perflock *pl);
/* Queues for the performance lock of perf. NULL (and no callback ever): the queue is full
 * (rs_perflock_full), or the lock service is not usable, or could not be asked, or out of
 * memory. */
rs_perflock_waiter *rs_perflock_wait(rs_perflock *pl, int64_t perf, void *arg) CM_MUSTCHECK;
/* Whether perf's queue holds opts.max_queue waiting bookings (rule 10). */
bool rs_perflock_full(const rs_perflock *pl, int64_t perf);
/* Whether nothing in this process holds or waits for perf's lock (it has no queue). */
bool rs_perflock_idle(const rs_perflock *pl, int64_t perf);
/* One more booking waits behind w, which is still waiting (a batch's member behind its
 * leader): counted for rule 10. CM_ERR when the queue is full (nothing counted). */
cm_rc rs_perflock_add(rs_perflock_waiter *w);
/* How long a waiter may wait in the queue (rule 6): opts.wait_ms, or wait0_ms for 0. */
uint64_t rs_perflock_wait_limit_ms(const rs_perflock *pl);
/* The holder w is done with the lock; w is freed. */
void rs_perflock_release(rs_perflock_waiter *w);
/* Whether the grant that holder w holds was lost (rule 5). */
bool rs_perflock_lost(const rs_perflock_waiter *w);
/* Queues alive (tests). */
size_t rs_perflock_queues(const rs_perflock *pl);

#endif
