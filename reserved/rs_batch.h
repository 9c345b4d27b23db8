/*
 * rs_batch: group booking (issue 11 §2). In lockd mode the bookings of one performance
 * that wait for its lock in this process form a batch: one waiter in the performance's
 * lock queue (rs_perflock) on behalf of all of them, one connection, ONE transaction,
 * one fence update, one COMMIT (one WAL flush) for the lot. Each booking keeps every
 * rule of a booking on its own: its savepoint inside rs_book_batch (its SEAT_TAKEN,
 * SOLD_OUT or guard rolls back that booking only), its price captured under the lock,
 * its Idempotency-Key, its payment (the charges of a batch run in parallel; a declined
 * or unknown one is taken back with rs_book_undo inside the transaction), its answer,
 * and the compensation of every payment no commit stands behind. A LOST push aborts the
 * whole batch: nothing commits, every payment is compensated.
 *
 * How it meets the booking machine (rs_bk): rs_bk_lock offers a booking to
 * rs_batch_join; a joined booking is in phase BK_BATCHED (BK_BATCH_CHARGING while its
 * charge is out) until the batch's transaction is over and the connection and the lock
 * are given back; then rs_bk_batch_over takes each booking on to compensation, the
 * Idempotency-Key record of a failure and the answer, as for a booking of its own. The
 * batch's first booking (its leader) is the lock queue's waiter: rs_bk's lock callbacks
 * hand the leader's grant, refusal, LOST and next-in-line to rs_batch_on_*.
 *
 * A refusal of the lock meant for one waiter (NOQUORUM, BUSY) refuses the leader (for
 * BUSY also every member past lock.wait_ms), as one booking alone would have been; the
 * rest wait on behind a new leader. Only an unreachable lock service refuses them all.
 *
 * A batch takes new bookings (it is "forming") from its creation until its lock is
 * granted or it has lock.batch_max of them; a booking that finds none forming starts
 * one. A booking whose Idempotency-Key is already in the forming batch is not joined
 * (rs_batch_join says no: it queues alone, behind the batch, and then finds the record).
 *
 * The batch's phases (rs_batch_state, rs_batch.c has the legal moves; rs_batch_move
 * asserts them and logs each at debug):
 *   forming -> [early-leasing -> early-beginning -> early-ready]  (first in line while the
 *              lock is busy: connection and BEGIN ahead of the grant, as one booking does)
 *   leasing -> beginning -> booking -> [charging] -> [dropping] [capturing] [reading]
 *   [storing] [undoing] -> [paused] -> committing -> done; a failure -> unwinding -> done
 *
 * Ownership: the batch owns its member list, its connection (from early-beginning or
 * beginning until done) and the lock waiter; members are rs_bk structs it borrows from
 * the join until rs_bk_batch_over, which it calls once per member after the transaction
 * is over, the connection back and the lock released, then frees itself. Nothing here is
 * freed inside its own libpq or gateway callback's caller.
 */
#ifndef RS_BATCH_H
#define RS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"
#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_bk.h"
#include "rs_perflock.h"

typedef enum rs_batch_state {
    RB_FORMING,           /* waiting for the lock (its leader in the lock queue); takes joins */
    RB_EARLY_LEASING,     /* forming, first in line: its connection asked for early */
    RB_EARLY_BEGINNING,   /* forming; the early connection is here, BEGIN out */
    RB_EARLY_READY,       /* forming, in an open, still empty transaction */
    RB_LEASING,           /* has the lock: waiting for a connection (urgent) */
    RB_BEGINNING,         /* has the lock and a connection; BEGIN out (maybe the early one) */
    RB_REFUSED_BEGINNING, /* refused the lock while the early BEGIN was out: rolled back
                             once it lands */
    RB_BOOKING,           /* rs_book_batch out: the fence, then every booking */
    RB_CHARGING,          /* the charges of the booked members are at the gateway */
    RB_DROPPING,          /* free bookings (total 0): their payment attempts deleted */
    RB_CAPTURING,         /* approved members: attempts CAPTURED, payment ids, read-back */
    RB_READING,           /* booked members without a charge: read back */
    RB_STORING,           /* members with an Idempotency-Key: the record, one at a time */
    RB_UNDOING,           /* booked members that must not commit: rs_book_undo */
    RB_PAUSED,            /* the test hook's pause before COMMIT */
    RB_COMMITTING,        /* COMMIT out */
    RB_UNWINDING,         /* ROLLBACK out (a failure, LOST, a refusal after an early BEGIN) */
    RB_DONE,              /* the transaction is over, connection and lock given back; the
                             members are handed back and the batch is freed */
    RB_NSTATES
} rs_batch_state;

typedef struct rs_batch rs_batch;

/* The name of a state ("early-leasing"); whether from -> to is a legal move; the one
 * move function (asserts, logs at debug). */
const char *rs_batch_state_name(rs_batch_state s);
bool rs_batch_state_legal(rs_batch_state from, rs_batch_state to);
void rs_batch_state_move(rs_batch_state *s, rs_batch_state to, uint64_t id);

/* The finishing steps a batch needs once its members are booked and charged, in the
 * order it takes them (a bit per state: RB_STEP(RB_CAPTURING) ...). Pure: tests call it
 * on members of their own. */
#define RB_STEP(s) (1u << (s))
unsigned rs_batch_steps(rs_bk *const *m, size_t n);
/* Whether member b is among those step `step` acts on. */
bool rs_batch_member_in(const rs_bk *b, rs_batch_state step);

/* Appends a PostgreSQL array literal of n strings, every element quoted ("a\"b" etc.):
 * {"x","y"}. */
void rs_batch_pg_array(cm_strbuf *out, const char *const *items, size_t n);

/* Registers the batch's statements; before rs_db_start. */
void rs_batch_register(rs_db *db);
/* Sets the module up; locks is rs_bk's queue table (NULL in db mode). */
void rs_batch_start(rs_app *app, rs_perflock *locks);
/* Frees the batches still forming (shutdown, after the lock client is gone). */
void rs_batch_stop(void);

/* Offers booking b (lockd mode, before the lock) to its performance's forming batch, or
 * starts one. CM_OK: b is in phase BK_BATCHED and the batch drives it. CM_ERR: not
 * joined (lock.batch_max 1, not a booking, or its key is in the forming batch): b goes
 * the one-booking way, untouched. */
cm_rc rs_batch_join(rs_bk *b) CM_MUSTCHECK;

/* The leader's lock callbacks (rs_bk passes them on for a booking in BK_BATCHED). */
void rs_batch_on_granted(rs_batch *x, uint64_t fence);
void rs_batch_on_refused(rs_batch *x, rs_perflock_refusal why, const char *code);
void rs_batch_on_lost(rs_batch *x);
void rs_batch_on_next_in_line(rs_batch *x);

#endif
