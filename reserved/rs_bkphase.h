/*
 * rs_bkphase: the phases of one booking or cancellation (the machine rs_bk drives, as
 * memcached's drive_machine drives conn_states) and the table of legal moves.
 *
 * The phases in the order a booking meets them (rs_bkphase.c has the exact table):
 *   before the lock  NEW -> [IDEM_LOOKUP] -> [HOLD_LOOKUP] -> [RECORDING]; a cancellation
 *                    NEW -> HEAD; a hold (rs_holds) NEW straight to the lock
 *   the lock         QUEUED (lockd mode; db mode needs none) -> LEASING -> BEGINNING
 *   ready early      QUEUED -> QUEUED_LEASING -> QUEUED_BEGINNING -> QUEUED_IN_TXN, which
 *                    the grant turns into LEASING, GRANTED_BEGINNING or IN_TXN, and a
 *                    refusal into the unwind (REFUSED_BEGINNING waits for its BEGIN)
 *   the work         IN_TXN <-> CHARGING, then COMMITTING
 *   a batch          BATCHED <-> BATCH_CHARGING: rs_batch holds the lock, the connection
 *                    and the transaction of many bookings; when its transaction is over
 *                    each booking goes on to the end on its own
 *   a failure        UNWINDING (ROLLBACK), from an open transaction
 *   the end          [COMPENSATING] -> [STORING] -> ANSWERED, once the transaction is
 *                    over, the connection back and the lock released
 *
 * Ownership: nothing here allocates; a phase is a value inside the caller's struct.
 */
#ifndef RS_BKPHASE_H
#define RS_BKPHASE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum rs_bk_phase {
    BK_NEW,               /* parsed; nothing sent yet */
    BK_IDEM_LOOKUP,       /* booking with an Idempotency-Key: reading its record (autocommit) */
    BK_RECORDING,         /* booking with a gateway: INSERTing the payment attempt (autocommit,
                             durable before anything can be charged) */
    BK_HEAD,              /* cancellation: reading the reservation's performance and status */
    BK_HOLD_LOOKUP,       /* booking with {"holdId"}: reading the hold (its user, its seats,
                             whether it is still active) before anything is recorded */
    BK_QUEUED,            /* in the performance's lock queue (lockd mode), nothing else out */
    BK_QUEUED_LEASING,    /* queued, first in line: its connection is asked for early */
    BK_QUEUED_BEGINNING,  /* queued; the early connection is here, BEGIN out */
    BK_QUEUED_IN_TXN,     /* queued in an open, still empty transaction */
    BK_GRANTED_BEGINNING, /* has the lock; the early BEGIN is still out (a failed one: the
                             connection goes back and a new one is leased) */
    BK_REFUSED_BEGINNING, /* refused the lock (outcome set) while the early BEGIN was out:
                             rolled back once it lands */
    BK_LEASING,           /* has the lock (or db mode needs none): waiting for a connection */
    BK_BEGINNING,         /* has the lock and a connection; BEGIN out */
    BK_IN_TXN,            /* in the transaction with the lock: one statement out (idempotency
                             re-check, rs_book / rs_cancel, capture, read-back, the idempotency
                             record), or the test pause before COMMIT */
    BK_CHARGING,          /* in the transaction with the lock: the charge is at the gateway */
    BK_BATCHED,           /* a booking in a batch of its performance (lockd mode, rs_batch):
                             the batch waits for the lock, or holds it, its connection and its
                             one transaction, in which this booking has its own savepoint */
    BK_BATCH_CHARGING,    /* in a batch, inside its transaction: this booking's charge is at
                             the gateway (the batch's charges run in parallel) */
    BK_COMMITTING,        /* COMMIT out: the transaction is over when it answers, either way */
    BK_UNWINDING,         /* outcome set: ROLLBACK out; then the connection and the lock go */
    BK_COMPENSATING,      /* transaction over, lock released: undoing what no commit stands
                             behind (attempt row dropped or DECLINED, payment cancelled at the
                             gateway), or refunding a reservation just cancelled */
    BK_STORING,           /* a final failure is being stored under the Idempotency-Key */
    BK_ANSWERED,          /* answered (or handed to a read); the struct is freed right after */
    BK_NPHASES
} rs_bk_phase;

/* "queued-leasing" etc. */
const char *rs_bk_phase_name(rs_bk_phase p);
/* Whether from -> to is in the table. */
bool rs_bk_phase_legal(rs_bk_phase from, rs_bk_phase to);
/* Whether a booking in phase p holds a leased database connection. */
bool rs_bk_phase_has_conn(rs_bk_phase p);
/* Moves *p to `to`: asserts the move is legal (abort() in a build with assertions),
 * logs it at debug level as "<what> <id>: <from> -> <to>". */
void rs_bk_phase_move(rs_bk_phase *p, rs_bk_phase to, const char *what, uint64_t id);

#endif
