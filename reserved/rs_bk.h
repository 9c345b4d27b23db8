/*
 * rs_bk: one booking or cancellation in flight, and the machine that moves it through
 * the phases of rs_bkphase.h: the performance lock (rs_perflock in lockd mode), the
 * connection and its transaction (an early one while queued), COMMIT, the unwind of a
 * failure, the compensation of a payment no commit stands behind, the Idempotency-Key
 * record of a final failure, and the answer. rs_booking, the pipeline's other half, owns
 * the routes and the work inside the transaction (the body).
 *
 * How the halves meet: rs_booking makes an rs_bk with its body, does what comes before
 * the lock (idempotency lookup, payment attempt, the reservation's head), then calls
 * rs_bk_lock. The machine calls body(b) in BK_IN_TXN, with the lock and an open
 * transaction on b->conn; the body runs its statements (one at a time, each callback
 * checking rs_bk_lock_lost) and ends with rs_bk_commit, or with rs_bk_fail* /
 * rs_bk_unwind when it has set an outcome. Everything after that is the machine's.
 * In lockd mode a booking may instead join its performance's batch in rs_bk_lock
 * (rs_batch.h: group booking, lock.batch_max > 1): it is then BK_BATCHED, the batch does
 * the lock, the transaction and the work for all its bookings, and hands each back with
 * rs_bk_batch_over once its transaction is over; the body is not called.
 *
 * Ownership: an rs_bk is freed by rs_bk_answer (every path ends there), or by rs_bk_free
 * when its handler answered before it started. Every callback that gets an rs_bk owns it
 * until it starts the next step. Fields are written by the half that owns the phase.
 */
#ifndef RS_BK_H
#define RS_BK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "rs_app.h"
#include "rs_bkphase.h"
#include "rs_db.h"
#include "rs_http.h"
#include "rs_idem.h"
#include "rs_pay.h"

#define RS_BK_REF_MAX 96                  /* a payment attempt's reference */
#define RS_BK_ID_MAX  (RS_PAY_ID_MAX + 1) /* a payment id (rs_pay bounds it) */
#define RS_BK_INT_MAX 24                  /* an int64 as text */
#define RS_BK_MSG_MAX 256

typedef enum rs_bk_op {
    RS_BK_BOOK,   /* POST /performances/{id}/reservations (rs_booking) */
    RS_BK_CANCEL, /* DELETE /reservations/{id} (rs_booking) */
    RS_BK_HOLD,   /* POST /performances/{id}/holds (rs_holds): taken under the performance
                     lock and fence as a booking; no payment, no Idempotency-Key, no batch */
} rs_bk_op;

/* Where the payment stands: what the settle step must undo. Not a phase: an approved
 * payment stays approved from CHARGING through COMMITTING or UNWINDING. */
typedef enum rs_bk_pay {
    RS_BK_PAY_NONE,     /* no attempt row (no gateway, dropped in the transaction, or a
                           COMMIT of unknown outcome left it to the reconciler) */
    RS_BK_PAY_RECORDED, /* attempt row committed, nothing charged: drop the row */
    RS_BK_PAY_SENT,     /* charge sent, outcome unknown: cancel by reference */
    RS_BK_PAY_APPROVED, /* approved (payment_id known): cancel it */
    RS_BK_PAY_DECLINED, /* declined: mark the attempt */
} rs_bk_pay;

/* What the answer is; decides whether it is stored under the Idempotency-Key. */
typedef enum rs_bk_outcome {
    RS_BK_OUT_NONE,   /* not decided yet */
    RS_BK_OUT_OK,     /* a 2xx body (stored in the transaction, with the reservation) */
    RS_BK_OUT_ERROR,  /* an error this request met: stored after the unwind unless 503 */
    RS_BK_OUT_REPLAY, /* taken from (or refused by) a stored record: never stored again */
} rs_bk_outcome;

struct event;
struct rs_batch;
struct rs_perflock_waiter;
typedef struct rs_bk rs_bk;
typedef void (*rs_bk_body_fn)(rs_bk *b);

struct rs_bk {
    rs_bk_op op;
    rs_bk_phase phase;  /* moved by rs_bk_move only */
    rs_bk_body_fn body; /* the work inside the transaction */
    rs_bk_body_fn then; /* what comes after a read before the lock: rs_bk_check_perf's
                           (the performance exists), rs_holdbk_lookup's (the hold read) */
    uint64_t seq;       /* process-unique: the debug log of its moves */
    rs_req *r;
    uint64_t t0_us;
    int64_t perf;
    int64_t user;
    int64_t res_id; /* cancel: the reservation; book: the new one */
    int64_t hold;   /* book with {"holdId"} (rs_holdbk): the hold; 0 otherwise */
    int64_t total;
    int64_t *seats;
    size_t nseats;
    char *seats_param;                /* "{1,2,3}" */
    char key[RS_IDEM_KEY_MAX + 1];    /* Idempotency-Key, "" without */
    char *fingerprint;                /* what the key's record must match */
    char reference[RS_BK_REF_MAX];    /* the payment attempt's */
    char payment_id[RS_BK_ID_MAX];    /* when approved */
    char fence[RS_BK_INT_MAX];        /* the lock grant's; "" in db lock mode */
    rs_bk_pay pay;                    /* what the settle step must undo */
    struct rs_perflock_waiter *lockw; /* lockd mode: queued for or holding the lock */
    struct rs_batch *batch;           /* BK_BATCHED, BK_BATCH_CHARGING: its batch */
    rs_db_req *early;                 /* the early lease (BK_QUEUED_LEASING) */
    rs_db_conn *conn;                 /* in the phases rs_bk_phase_has_conn names */
    struct event *pause;              /* a test hook's timer */
    /* the outcome */
    rs_bk_outcome out;
    int status;
    json_t *body_json; /* 2xx body or error extra fields */
    const char *code;  /* error code, NULL for a 2xx */
    char msg[RS_BK_MSG_MAX];
    char code_buf[32]; /* a replayed error code */
    /* cancel: what rs_cancel did; the payment to refund after the COMMIT */
    bool changed; /* this request cancelled the reservation */
    char cancel_ref[RS_BK_REF_MAX];
    char cancel_pay[RS_BK_ID_MAX];
};

/* Registers the machine's statements; before rs_db_start. */
void rs_bk_register(rs_db *db);
/* Sets the machine up (lockd mode: the lock queues over app->locks). */
cm_rc rs_bk_start(rs_app *app) CM_MUSTCHECK;
/* After the lock client is freed: frees what the lock queues still hold. */
void rs_bk_stop(void);

/* "booking", "cancellation", "hold": what b is, for log lines. */
const char *rs_bk_what(const rs_bk *b);
/* Reads the "seatIds" of body into b->seats, b->nseats and b->seats_param ("{1,2,3}", in
 * the order asked): 1..max_seats positive integers, none twice (a booking's and a hold's
 * rules). False after answering 400 (or 503: out of memory). */
bool rs_bk_parse_seats(rs_bk *b, json_t *body);

/* b->fingerprint (what an Idempotency-Key's record must match) from a format; false
 * after answering 503 (out of memory). */
bool rs_bk_fingerprint(rs_bk *b, const char *fmt, ...) CM_PRINTF(2, 3);
/* "1,2,3" (a DETAIL of rs_book, a list of ids) -> a new JSON array [1,2,3]. */
json_t *rs_bk_id_list(const char *csv);

/* A new booking (phase BK_NEW); NULL after answering 503 (out of memory). */
rs_bk *rs_bk_new(rs_req *r, rs_bk_op op, rs_bk_body_fn body);
/* Frees b whose request was answered elsewhere: by its handler before b started, or
 * by a read it was handed to (phase BK_ANSWERED). */
void rs_bk_free(rs_bk *b);
/* The one way to change b->phase: asserts the move is legal, logs it (debug). */
void rs_bk_move(rs_bk *b, rs_bk_phase to);
/* Whether lock.mode is db (no performance lock; rs_book / rs_cancel lock the row). */
bool rs_bk_db_mode(void);

/* The outcome. */
void rs_bk_set_error(rs_bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
    CM_PRINTF(5, 6);
void rs_bk_set_body(rs_bk *b, int status, json_t *body);
/* Answers and frees b (from any phase that has nothing open). */
void rs_bk_answer(rs_bk *b);

/* A booking or a hold (NEW or IDEM_LOOKUP: nothing written, no lock) goes on with then(b) once its
 * performance is known to exist (rs_perfcheck); else it is answered 404 NOT_FOUND (stored
 * under its Idempotency-Key, as rs_book's 404 was) or 503 UNAVAILABLE, and freed. */
void rs_bk_check_perf(rs_bk *b, rs_bk_body_fn then);
/* Before the lock (NEW, IDEM_LOOKUP, RECORDING, HEAD): the lock, a connection, BEGIN,
 * then b->body(b) in BK_IN_TXN. */
void rs_bk_lock(rs_bk *b);
/* Whether the lock b holds was lost (a LOST push): the body must not go on. */
bool rs_bk_lock_lost(const rs_bk *b);
/* The body is done: [test pause], COMMIT, connection and lock released, the answer. */
void rs_bk_commit(rs_bk *b);
/* The outcome is set: ROLLBACK, connection back, lock released, compensation, the
 * Idempotency-Key record of a final failure, the answer. */
void rs_bk_unwind(rs_bk *b);
void rs_bk_fail(rs_bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
    CM_PRINTF(5, 6);
void rs_bk_fail_unavailable(rs_bk *b); /* 503 "database unavailable" */
void rs_bk_fail_lost(rs_bk *b);        /* 503: the performance lock was lost */
/* A failed statement of the transaction, mapped to its answer (SQLSTATEs of rs_book). */
void rs_bk_fail_db(rs_bk *b, const rs_db_result *res);
/* The outcome of a failed statement, set without unwinding (a member of a batch). */
void rs_bk_set_db_error(rs_bk *b, const rs_db_result *res);
/* The outcome of a lock refusal (rs_perflock's why and lockd's code). */
void rs_bk_set_refused(rs_bk *b, int why, const char *code);
/* The outcome from a stored Idempotency-Key record (row `row` of pg, the columns of
 * idem_get from column col on). */
void rs_bk_replay(rs_bk *b, const PGresult *pg, int row, int col);
/* A member of a batch (BK_BATCHED) whose batch's transaction is over, its connection
 * back and its lock released: committed says whether the batch committed. Goes on as a
 * booking of its own would after its COMMIT or ROLLBACK (compensation, the failure's
 * Idempotency-Key record, the answer). */
void rs_bk_batch_over(rs_bk *b, bool committed);

/* The preamble of a statement's callback: the booking (arg) when the statement
 * succeeded; NULL when it failed, and then the booking already unwinds (rs_bk_fail_db). */
rs_bk *rs_bk_ok(void *arg, const rs_db_result *res) CM_MUSTCHECK;

#endif
