/*
 * rs_booking: reservations (contract in rs_booking.h). Owns the booking and cancellation
 * state machines, the Idempotency-Key records and the reservation reads.
 *
 * One booking (struct bk) walks, each step started from the previous one's callback:
 *   [idempotency lookup] -> record the payment attempt (autocommit, durable before any
 *   charge) -> lock Performance:<id> (lockd mode: a process-local queue per performance
 *   that owns the lock, see bk_lockq) -> lease + BEGIN (for the next in line of a queue
 *   already while it waits, see bk_prefetch) -> [idempotency re-check under an
 *   advisory lock] -> rs_book() (fence or FOR UPDATE, seats, insert, capacity: one call)
 *   -> charge -> capture (attempt CAPTURED + payment id + read-back: one statement) ->
 *   [store the idempotency record] -> COMMIT -> release -> [compensate] -> answer.
 * Every failure goes through one unwind: ROLLBACK, give the connection back, release the
 * lock, compensate a payment that may have been taken, answer. A LOST push only sets a
 * flag; the step that is in flight sees it when its callback comes and unwinds.
 * Cancellation reuses the lock/transaction/unwind half with rs_cancel() as its body.
 * A client that disconnects does not stop anything: the work finishes and the answer
 * is dropped by rs_http.
 */
#include "rs_booking.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_time.h"
#include "rs_metrics.h"
#include "rs_pay.h"
#include "rs_reconcile.h"

#define BK_KEY_MAX  255 /* longest Idempotency-Key accepted */
#define BK_REF_MAX  96
#define BK_ID_MAX   64
#define BK_INT_MAX  24
#define BK_MSG_MAX  256
#define BK_LIST_MAX 100
#define BK_LIST_DEF 20
#define BK_RESOURCE 64

/* The columns of one reservation row joined with one of its seats (see bk_res_json). */
#define BK_RES_COLS                                                                                \
    "r.id, r.user_id, r.performance_id, r.status, r.normal_price, r.vip_price,"                    \
    " r.total_amount, r.payment_id,"                                                               \
    " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                 \
    " s.seat_id, vs.row_label, vs.number, s.seat_type, s.price"
#define BK_RES_JOIN                                                                                \
    " JOIN reservation_seats s ON s.reservation_id = r.id JOIN venue_seats vs ON vs.id = "         \
    "s.seat_id"

static const rs_db_stmt bk_stmts[] = {
    {"bk_book",
     "SELECT reservation_id, total FROM rs_book($1::bigint, $2::bigint, $3::bigint[],"
     " $4::numeric, $5::boolean, $6::text)",
     6},
    /* The amount is an estimate at the current prices (the charge uses rs_book's total,
     * which bk_capture stores); the row exists so a crash after the charge is found. */
    {"bk_attempt_new",
     "INSERT INTO payment_attempts (reference, performance_id, user_id, amount, status)"
     " SELECT $1, $2::bigint, $3::bigint,"
     " coalesce(sum(CASE WHEN vs.type = 'VIP' THEN p.vip_price ELSE p.normal_price END), 0),"
     " 'PENDING' FROM performances p"
     " JOIN venue_seats vs ON vs.venue_id = p.venue_id AND vs.id = ANY ($4::bigint[])"
     " WHERE p.id = $2::bigint",
     4},
    {"bk_attempt_set",
     "UPDATE payment_attempts SET status = $2, payment_id = coalesce(nullif($3, ''), payment_id),"
     " updated_at = now() WHERE reference = $1 AND status = $4",
     4},
    {"bk_attempt_drop", "DELETE FROM payment_attempts WHERE reference = $1 AND status = 'PENDING'",
     1},
    /* Marks the attempt CAPTURED, stores the payment id on the reservation and reads the
     * reservation back, in one round trip under the lock. Zero rows: the reconciler
     * claimed the attempt first (it cancels the payment), so this booking must not
     * commit. */
    {"bk_capture",
     "WITH a AS (UPDATE payment_attempts SET status = 'CAPTURED', payment_id = $2,"
     " amount = $3::bigint, updated_at = now()"
     " WHERE reference = $1 AND status IN ('PENDING', 'APPROVED') RETURNING reference),"
     " r AS (UPDATE reservations SET payment_id = $2"
     " WHERE id = $4::bigint AND EXISTS (SELECT 1 FROM a) RETURNING *)"
     " SELECT " BK_RES_COLS " FROM r" BK_RES_JOIN " ORDER BY s.seat_id",
     4},
    /* Without a payment nothing runs between the booking and its read-back. */
    {"bk_book_read",
     "SELECT * FROM rs_book_read($1::bigint, $2::bigint, $3::bigint[], $4::numeric,"
     " $5::boolean, $6::text)",
     6},
    {"bk_res_get",
     "SELECT " BK_RES_COLS " FROM reservations r" BK_RES_JOIN
     " WHERE r.id = $1::bigint ORDER BY s.seat_id",
     1},
    {"bk_res_list",
     "WITH ids AS (SELECT id FROM reservations WHERE user_id = $1::bigint"
     " AND ($2::text IS NULL OR status = $2::text) AND ($3::bigint IS NULL OR id < $3::bigint)"
     " ORDER BY id DESC LIMIT $4::int)"
     " SELECT " BK_RES_COLS " FROM ids JOIN reservations r ON r.id = ids.id" BK_RES_JOIN
     " ORDER BY r.id DESC, s.seat_id",
     4},
    {"bk_user_exists", "SELECT 1 FROM users WHERE id = $1::bigint", 1},
    {"bk_res_head", "SELECT performance_id, status FROM reservations WHERE id = $1::bigint", 1},
    {"bk_cancel",
     "SELECT changed, coalesce(reference, ''), coalesce(payment_id, '')"
     " FROM rs_cancel($1::bigint, $2::numeric, $3::boolean)",
     3},
    {"bk_idem_get",
     "SELECT request_hash, status_code, response::text FROM idempotency_keys WHERE key = $1", 1},
    /* Serializes requests with one key inside their transactions (hash collisions only
     * cost a little waiting). */
    {"bk_idem_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1},
    {"bk_idem_put",
     "INSERT INTO idempotency_keys (key, request_hash, status_code, response)"
     " VALUES ($1, $2, $3::int, $4::jsonb) ON CONFLICT (key) DO NOTHING RETURNING key",
     4},
};

/* ---------------------------------------------------------------- reservation JSON */

static json_t *bk_int_json(const PGresult *pg, int row, int col)
{
    return json_integer((json_int_t)strtoll(PQgetvalue(pg, row, col), NULL, 10));
}

/* Builds one reservation from the rows starting at *row (one per seat, BK_RES_COLS) and
 * advances *row past them. */
static json_t *bk_res_json(const PGresult *pg, int *row)
{
    int i = *row;
    int n = PQntuples(pg);
    const char *id = PQgetvalue(pg, i, 0);
    json_t *seats = json_array();
    json_t *o = json_object();
    json_object_set_new(o, "id", bk_int_json(pg, i, 0));
    json_object_set_new(o, "userId", bk_int_json(pg, i, 1));
    json_object_set_new(o, "performanceId", bk_int_json(pg, i, 2));
    json_object_set_new(o, "status", json_string(PQgetvalue(pg, i, 3)));
    for (; i < n && strcmp(PQgetvalue(pg, i, 0), id) == 0; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "seatId", bk_int_json(pg, i, 9));
        json_object_set_new(s, "row", json_string(PQgetvalue(pg, i, 10)));
        json_object_set_new(s, "number", bk_int_json(pg, i, 11));
        json_object_set_new(s, "type", json_string(PQgetvalue(pg, i, 12)));
        json_object_set_new(s, "price", bk_int_json(pg, i, 13));
        json_array_append_new(seats, s);
    }
    json_object_set_new(o, "seats", seats);
    json_object_set_new(o, "normalPrice", bk_int_json(pg, *row, 4));
    json_object_set_new(o, "vipPrice", bk_int_json(pg, *row, 5));
    json_object_set_new(o, "totalAmount", bk_int_json(pg, *row, 6));
    json_object_set_new(o, "paymentId",
                        PQgetisnull(pg, *row, 7) ? json_null()
                                                 : json_string(PQgetvalue(pg, *row, 7)));
    json_object_set_new(o, "createdAt", json_string(PQgetvalue(pg, *row, 8)));
    *row = i;
    return o;
}

/* "1,2,3" (a DETAIL of rs_book) -> [1,2,3] */
static json_t *bk_id_list_json(const char *csv)
{
    json_t *a = json_array();
    const char *p = csv != NULL ? csv : "";
    while (*p != '\0') {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p)
            break;
        json_array_append_new(a, json_integer(v));
        p = *end == ',' ? end + 1 : end;
    }
    return a;
}

/* ---------------------------------------------------------------- the context */

typedef enum bk_op { BK_BOOK, BK_CANCEL, BK_READ } bk_op;

/* Where the payment stands; decides what the unwind must undo. */
typedef enum bk_pay_state {
    BK_PAY_NONE,     /* no attempt recorded */
    BK_PAY_RECORDED, /* attempt row committed, no charge sent: drop the row */
    BK_PAY_SENT,     /* charge sent: outcome unknown until its callback */
    BK_PAY_APPROVED, /* approved (payment_id known) */
    BK_PAY_DECLINED, /* declined: nothing to undo, mark the attempt */
} bk_pay_state;

typedef struct bk {
    bk_op op;
    rs_req *r;
    uint64_t t0_us;
    int64_t perf;
    int64_t user;
    int64_t res_id; /* cancel: the reservation; book: the new one */
    int64_t total;
    int64_t *seats;
    size_t nseats;
    char *seats_param; /* "{1,2,3}" */
    char key[BK_KEY_MAX + 1];
    bool has_key;
    char *fingerprint; /* what the key's record must match: perf, user, seats */
    char reference[BK_REF_MAX];
    char payment_id[BK_ID_MAX];
    char fence[BK_INT_MAX]; /* "" in db lock mode */
    uint64_t t_lock_us;
    struct bk *qnext;   /* next in the process-local queue of this performance */
    struct bk_lockq *q; /* the queue whose lock b holds now (lockd mode), or NULL */
    bool lost;          /* a LOST push came while we held it */
    bool locked;        /* the lock is ours (lockd mode) or not needed (db mode) */
    /* the next in line of a queue leases its connection and sends BEGIN while it waits */
    enum { BK_PRE_NONE, BK_PRE_STARTED, BK_PRE_READY } pre;
    rs_db_req *pre_req; /* the prefetch lease, until its callback */
    bool pre_fail;      /* answered while its prefetch was in flight: unwind when it lands */
    /* transaction */
    rs_db_conn *conn;
    bool in_txn;
    bool committed;
    bk_pay_state pay;
    struct event *pause; /* test hook: delays COMMIT */
    /* the outcome */
    int status;
    json_t *body;     /* 2xx body or error extra fields */
    const char *code; /* error code, NULL on success */
    char msg[BK_MSG_MAX];
    bool retry_after;
    bool cacheable; /* a final outcome the Idempotency-Key record replays */
    /* cancel */
    char cancel_ref[BK_REF_MAX];
    char cancel_pay[BK_ID_MAX];
    bool changed;      /* this request moved the reservation to CANCELLED */
    char code_buf[32]; /* a replayed error code */
} bk;

static struct {
    rs_app *app;
    uint64_t counter;
    /* Test hooks (environment): widen the windows the crash and stale-holder tests aim
     * at, and play a holder that never hears its LOST push (a lost message). */
    uint32_t pause_before_commit_ms; /* RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS */
    uint32_t pause_after_lock_ms;    /* RESERVED_TEST_PAUSE_AFTER_LOCK_MS */
    bool ignore_lost;                /* RESERVED_TEST_IGNORE_LOST */
    bool atexit_added;
    size_t in_flight;
} bks;

static void bk_free(bk *b)
{
    if (b->pause != NULL)
        event_free(b->pause);
    json_decref(b->body);
    free(b->seats);
    free(b->seats_param);
    free(b->fingerprint);
    free(b);
    bks.in_flight--;
}

static bk *bk_new(rs_req *r, bk_op op)
{
    bk *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return NULL;
    }
    bks.in_flight++;
    b->r = r;
    b->op = op;
    b->t0_us = cm_now_us();
    return b;
}

static void bk_set_error(bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bk_set_error(bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof(b->msg), fmt, ap);
    va_end(ap);
    json_decref(b->body);
    b->body = extra;
    b->status = status;
    b->code = code;
    b->retry_after = false;
    b->cacheable = status != 503;
    if (b->op == BK_BOOK) {
        if (strcmp(code, "SEAT_TAKEN") == 0)
            rs_stats.bookings_seat_taken++;
        else if (strcmp(code, "SOLD_OUT") == 0)
            rs_stats.bookings_sold_out++;
        else if (strcmp(code, "PAYMENT_DECLINED") == 0)
            rs_stats.bookings_declined++;
        else if (strcmp(code, "BUSY") == 0)
            rs_stats.bookings_busy++;
        else if (strcmp(code, "UNAVAILABLE") == 0)
            rs_stats.bookings_unavailable++;
    }
}

/* Sends the outcome and frees b. */
static void bk_answer(bk *b)
{
    if (b->op == BK_BOOK)
        cm_hist_observe_us(&rs_stats.booking_latency, cm_now_us() - b->t0_us);
    if (b->code == NULL) {
        json_t *body = b->body;
        b->body = NULL;
        rs_reply_json(b->r, b->status, body);
    } else {
        json_t *extra = b->body;
        b->body = NULL;
        if (b->retry_after)
            rs_reply_json_hdr(
                b->r, b->status,
                json_pack("{s:{s:s, s:s}}", "error", "code", b->code, "message", b->msg),
                "Retry-After", "1");
        else if (extra != NULL)
            rs_reply_error_extra(b->r, b->status, b->code, extra, "%s", b->msg);
        else
            rs_reply_error(b->r, b->status, b->code, "%s", b->msg);
    }
    bk_free(b);
}

/* The SPEC §6 error body of an outcome, for the idempotency record. */
static json_t *bk_error_body(const bk *b)
{
    json_t *err = json_pack("{s:s, s:s}", "code", b->code, "message", b->msg);
    if (b->body != NULL)
        json_object_update(err, b->body);
    return json_pack("{s:o}", "error", err);
}

/* ---------------------------------------------------------------- the unwind */

static void bk_after_lock(bk *b);
static void bk_step_body(bk *b);
static void bk_lock_release(bk *b);

static void bk_rolled_back(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok)
        log_warn("ROLLBACK failed: %s (the connection is replaced)", res->message);
    rs_db_conn_return(b->conn);
    b->conn = NULL;
    b->in_txn = false;
    /* released after the rollback: the next holder never meets our row locks */
    bk_lock_release(b);
    bk_after_lock(b);
}

/* Ends the transaction (ROLLBACK unless committed), releases the lock, then bk_after_lock. */
static void bk_unwind(bk *b)
{
    if (b->conn != NULL && b->in_txn) {
        if (rs_db_conn_sql(b->conn, "ROLLBACK", bk_rolled_back, b) == CM_OK)
            return;
    }
    rs_db_result none = {.ok = true, .sqlstate = "", .message = "", .detail = ""};
    if (b->conn != NULL) {
        bk_rolled_back(b, &none);
        return;
    }
    bk_lock_release(b);
    bk_after_lock(b);
}

static void bk_fail(bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void bk_fail(bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    char msg[BK_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bk_set_error(b, status, code, extra, "%s", msg);
    bk_unwind(b);
}

/* 503 BUSY with Retry-After (the retry_after flag must be set before the unwind, which
 * may answer and free b at once). */
static void bk_fail_busy(bk *b, const char *msg)
{
    bk_set_error(b, 503, "BUSY", NULL, "%s", msg);
    b->retry_after = true;
    bk_unwind(b);
}

static void bk_fail_lost(bk *b)
{
    bk_fail(b, 503, "UNAVAILABLE", NULL, "the performance lock was lost; nothing was booked");
}

/* Maps a failed statement of the booking/cancel transaction to its answer. */
static void bk_fail_db(bk *b, const rs_db_result *res)
{
    const char *st = res->sqlstate != NULL ? res->sqlstate : "";
    const char *msg = res->message != NULL ? res->message : "";
    if (strcmp(st, "RBP04") == 0) {
        bk_fail(b, 404, "NOT_FOUND", NULL, "performance %" PRId64 " not found", b->perf);
    } else if (strcmp(st, "RBU04") == 0) {
        bk_fail(b, 404, "NOT_FOUND", NULL, "user %" PRId64 " not found", b->user);
    } else if (strcmp(st, "RBR04") == 0) {
        bk_fail(b, 404, "NOT_FOUND", NULL, "reservation %" PRId64 " not found", b->res_id);
    } else if (strcmp(st, "RBFEN") == 0) {
        rs_stats.bookings_fence_rejected++;
        log_warn("performance %" PRId64 ": fence %s is stale (a newer lock holder committed): "
                 "rolled back",
                 b->perf, b->fence);
        bk_fail(b, 503, "UNAVAILABLE", NULL,
                "lock lost: a newer holder of the performance lock "
                "committed; nothing was changed");
    } else if (strcmp(st, "RBSEA") == 0) {
        bk_fail(b, 400, "BAD_REQUEST", json_pack("{s:o}", "seatIds", bk_id_list_json(res->detail)),
                "seats %s are not seats of performance %" PRId64, res->detail, b->perf);
    } else if (strcmp(st, "RBTAK") == 0) {
        bk_fail(b, 409, "SEAT_TAKEN", json_pack("{s:o}", "seatIds", bk_id_list_json(res->detail)),
                "seats already taken: %s", res->detail);
    } else if (strcmp(st, "RBSOL") == 0) {
        bk_fail(b, 409, "SOLD_OUT", NULL, "performance %" PRId64 " has too few seats left",
                b->perf);
    } else if (strcmp(st, "23505") == 0 && strstr(msg, "reservation_seats_one_confirmed") != NULL) {
        rs_stats.guard_seat_unique++;
        log_error("GUARD reservation_seats_one_confirmed fired for performance %" PRId64
                  " (the lock should have prevented it): %s",
                  b->perf, msg);
        json_t *ids = json_array();
        for (size_t i = 0; i < b->nseats; i++)
            json_array_append_new(ids, json_integer(b->seats[i]));
        bk_fail(b, 409, "SEAT_TAKEN", json_pack("{s:o}", "seatIds", ids),
                "a requested seat was taken concurrently");
    } else if (strcmp(st, "23514") == 0 && strstr(msg, "performances_capacity_guard") != NULL) {
        rs_stats.guard_capacity++;
        log_error("GUARD performances_capacity_guard fired for performance %" PRId64 ": %s",
                  b->perf, msg);
        bk_fail(b, 409, "SOLD_OUT", NULL, "performance %" PRId64 " has too few seats left",
                b->perf);
    } else if (strcmp(st, "23514") == 0) {
        rs_stats.guard_other++;
        log_error("GUARD a CHECK constraint fired for performance %" PRId64 ": %s", b->perf, msg);
        bk_fail(b, 503, "UNAVAILABLE", NULL, "the booking broke a database check");
    } else if (strcmp(st, "55P03") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) {
        bk_fail_busy(b, "the performance is busy, retry");
    } else {
        log_warn("performance %" PRId64 ": database error %s: %s", b->perf, st, msg);
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
    }
}

static void bk_answer_stored(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok)
        log_warn("idempotency record %s not stored: %s", b->key, res->message);
    bk_answer(b);
}

/* Stores a final failure under the Idempotency-Key (the success record was stored in the
 * booking transaction), then answers. */
static void bk_finish(bk *b)
{
    if (b->op == BK_BOOK && b->has_key && b->code != NULL && b->cacheable) {
        json_t *body = bk_error_body(b);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        char status[BK_INT_MAX];
        snprintf(status, sizeof(status), "%d", b->status);
        const char *params[] = {b->key, b->fingerprint, status, text};
        rs_db_req *q = text != NULL
                           ? rs_db_exec(bks.app->db, "bk_idem_put", 4, params, bk_answer_stored, b)
                           : NULL;
        free(text);
        if (q != NULL)
            return;
    }
    bk_answer(b);
}

static void bk_attempt_closed(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok)
        log_warn("payment attempt %s: update failed: %s (the reconciler will look at it)",
                 b->reference, res->message);
    bk_finish(b);
}

static void bk_compensated(void *arg, bool done)
{
    bk *b = arg;
    if (!done)
        log_warn("payment attempt %s: not compensated yet, left for the reconciler", b->reference);
    bk_finish(b);
}

static void bk_cancel_compensated(void *arg, bool done)
{
    bk *b = arg;
    if (!done)
        log_warn("reservation %" PRId64 ": payment %s not cancelled yet, left for the "
                 "reconciler",
                 b->res_id, b->cancel_pay);
    bk_answer(b);
}

/* After the transaction ended and the lock is released: undo a payment that no
 * committed booking stands behind, then answer. */
static void bk_after_lock(bk *b)
{
    const char *ref = b->reference;
    if (b->op == BK_CANCEL) {
        if (b->committed && b->changed && b->cancel_pay[0] != '\0') {
            if (rs_comp_start(b->cancel_ref, b->cancel_pay, 0, false, bk_cancel_compensated, b) ==
                CM_OK)
                return;
        }
        bk_answer(b);
        return;
    }
    if (b->committed) {
        bk_finish(b);
        return;
    }
    switch (b->pay) {
    case BK_PAY_RECORDED: {
        const char *params[] = {ref};
        if (rs_db_exec(bks.app->db, "bk_attempt_drop", 1, params, bk_attempt_closed, b) != NULL)
            return;
        break;
    }
    case BK_PAY_DECLINED: {
        const char *params[] = {ref, "DECLINED", "", "PENDING"};
        if (rs_db_exec(bks.app->db, "bk_attempt_set", 4, params, bk_attempt_closed, b) != NULL)
            return;
        break;
    }
    case BK_PAY_SENT:
    case BK_PAY_APPROVED:
        if (rs_comp_start(ref, b->payment_id, 0, false, bk_compensated, b) == CM_OK)
            return;
        break;
    case BK_PAY_NONE:
        break;
    }
    bk_finish(b);
}

/* ---------------------------------------------------------------- lock + transaction */

static void bk_lease(bk *b);

/* In the transaction, with the lock: the body. */
static void bk_in_txn(bk *b)
{
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    bk_step_body(b);
}

/* A prefetch that did not work out (no connection, BEGIN failed): b goes the normal way
 * (a lease once it has the lock), or is answered if it already was. */
static void bk_pre_dropped(bk *b)
{
    b->pre = BK_PRE_NONE;
    if (b->pre_fail) {
        bk_after_lock(b);
        return;
    }
    if (b->locked)
        bk_lease(b);
}

static void bk_begun(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (b->pre == BK_PRE_STARTED) {
        if (!res->ok) {
            rs_db_conn_return(b->conn);
            b->conn = NULL;
            bk_pre_dropped(b);
            return;
        }
        b->in_txn = true;
        if (b->pre_fail) {
            b->pre = BK_PRE_NONE;
            bk_unwind(b); /* ROLLBACK, then the answer already set */
            return;
        }
        if (!b->locked) {
            b->pre = BK_PRE_READY; /* bk_locked goes on */
            return;
        }
        b->pre = BK_PRE_NONE;
        bk_in_txn(b);
        return;
    }
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    b->in_txn = true;
    bk_in_txn(b);
}

static void bk_leased(void *arg, rs_db_conn *conn, const rs_db_result *res)
{
    bk *b = arg;
    if (b->pre == BK_PRE_STARTED) {
        b->pre_req = NULL; /* rs_db frees it after this callback */
        if (conn == NULL) {
            bk_pre_dropped(b);
            return;
        }
        b->conn = conn;
        if (b->pre_fail) {
            b->pre = BK_PRE_NONE;
            bk_unwind(b); /* gives the connection back, then the answer already set */
            return;
        }
        if (rs_db_conn_sql(conn, "BEGIN", bk_begun, b) != CM_OK) {
            rs_db_conn_return(conn);
            b->conn = NULL;
            bk_pre_dropped(b);
        }
        return;
    }
    if (conn == NULL) {
        log_warn("no database connection: %s", res != NULL ? res->message : "");
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    b->conn = conn;
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    if (rs_db_conn_sql(conn, "BEGIN", bk_begun, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

static void bk_lease(bk *b)
{
    /* Holding the performance lock (lockd mode): every other booking of the performance,
     * in every process, waits for this one, so it goes ahead of the pool's queue. */
    rs_db_req *req = b->q != NULL ? rs_db_lease_urgent(bks.app->db, bk_leased, b)
                                  : rs_db_lease(bks.app->db, bk_leased, b);
    if (req == NULL)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

/* Drops a prefetch whose lease has not come yet; false when its connection is here. */
static bool bk_pre_cancel(bk *b)
{
    if (b->pre != BK_PRE_STARTED || b->conn != NULL || b->pre_req == NULL)
        return false;
    rs_db_cancel(b->pre_req);
    b->pre_req = NULL;
    b->pre = BK_PRE_NONE;
    return true;
}

/* The lock is held (fence known), or db mode: into the transaction, which the prefetch
 * may have opened already. */
static void bk_locked(bk *b)
{
    b->locked = true;
    switch (b->pre) {
    case BK_PRE_NONE:
        bk_lease(b);
        return;
    case BK_PRE_STARTED:
        /* still queued for a connection: now it holds the lock, so ask urgently */
        if (bk_pre_cancel(b))
            bk_lease(b);
        return; /* else bk_begun goes on */
    case BK_PRE_READY:
        b->pre = BK_PRE_NONE;
        bk_in_txn(b);
        return;
    }
}

/* The next in line of a queue takes its connection and sends BEGIN while the lock is
 * still busy, so the lock is held one lease and one round trip less per booking.
 * PostgreSQL takes no snapshot and no lock before the first statement, which runs under
 * the lock: lock before the transaction's work still holds. One connection per queue at
 * most waits like this, never more. */
static void bk_prefetch(bk *b)
{
    if (b == NULL || b->pre != BK_PRE_NONE || b->locked)
        return;
    b->pre = BK_PRE_STARTED;
    b->pre_req = rs_db_lease(bks.app->db, bk_leased, b);
    if (b->pre_req == NULL)
        b->pre = BK_PRE_NONE;
}

/* A queued b is answered without the lock (its answer is set): its prefetch, if any,
 * ends first. */
static void bk_waiter_done(bk *b)
{
    switch (b->pre) {
    case BK_PRE_NONE:
        bk_after_lock(b);
        return;
    case BK_PRE_STARTED:
        if (bk_pre_cancel(b)) {
            bk_after_lock(b);
            return;
        }
        b->pre_fail = true; /* BEGIN in flight: bk_begun unwinds */
        return;
    case BK_PRE_READY:
        b->pre = BK_PRE_NONE;
        bk_unwind(b);
        return;
    }
}

/* ---- the performance lock in lockd mode ----
 * LOCKP locks are not reentrant (a second ACQUIRE of Performance:P on our one session is
 * ERR HELD), so all requests of this process for one performance line up in one queue
 * (FIFO) that owns the lock: the queue acquires it through the with_lock guard, gives it
 * to its head, and when that request is done (after its COMMIT or ROLLBACK) hands it on
 * to the next waiter without a release/acquire round trip, for at most BK_CHAIN_MAX
 * requests or BK_CHAIN_MS, then releases it so other processes (waiting at lockd) get
 * their turn. The fence stays that of the grant, which the database accepts (<=). Time
 * in the queue counts against lock.wait_ms. A LOST push marks the current holder, and
 * the queue then re-acquires instead of handing on. Every new grant leaves the lock idle
 * for a round trip through lockd and the masters: with chains of 8 that was 13% of the
 * hot performance's time in bench/booking.sh; 32 gave 464 -> 499 hot bookings/s there,
 * and BK_CHAIN_MS still bounds what the other processes wait. */
#define BK_QBUCKETS  256
#define BK_CHAIN_MAX 32
#define BK_CHAIN_MS  100

typedef struct bk_lockq {
    int64_t perf;
    bk *head, *tail;      /* waiting (linked through bk.qnext) */
    bk *cur;              /* holds the lock now */
    cm_lock_guard *guard; /* while the lock is held */
    bool acquiring;       /* ACQUIRE sent, no answer yet */
    bool releasing;       /* RELEASE sent (cm_lock_guard_done), finish not called yet */
    bool lost;            /* a LOST push came for the current grant */
    char fence[BK_INT_MAX];
    unsigned chain; /* requests served by the current grant */
    uint64_t granted_us;
    struct bk_lockq *next; /* hash chain */
} bk_lockq;

static bk_lockq *bk_queues[BK_QBUCKETS];

static bk_lockq **bk_lockq_slot(int64_t perf)
{
    bk_lockq **pp = &bk_queues[(uint64_t)perf % BK_QBUCKETS];
    while (*pp != NULL && (*pp)->perf != perf)
        pp = &(*pp)->next;
    return pp;
}

/* Queues left at exit (the lock client was freed under a pending RELEASE). */
static void bk_lockq_free_all(void)
{
    for (size_t i = 0; i < BK_QBUCKETS; i++) {
        while (bk_queues[i] != NULL) {
            bk_lockq *q = bk_queues[i];
            bk_queues[i] = q->next;
            free(q);
        }
    }
}

static bk *bk_lockq_pop(bk_lockq *q)
{
    bk *w = q->head;
    if (w != NULL) {
        q->head = w->qnext;
        if (q->head == NULL)
            q->tail = NULL;
        w->qnext = NULL;
    }
    return w;
}

static uint64_t bk_waited_ms(const bk *b)
{
    return (cm_now_us() - b->t_lock_us) / 1000;
}

static void bk_pause_after_lock_done(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    bk_locked(arg);
}

/* Starts b->pause (test hooks); false when no pause was asked or it could not start. */
static bool bk_pause_start(bk *b, uint32_t ms, event_callback_fn fn, const char *what)
{
    if (ms == 0 || b->op != BK_BOOK)
        return false;
    if (b->pause != NULL)
        event_free(b->pause);
    b->pause = evtimer_new(bks.app->base, fn, b);
    struct timeval tv = cm_tv_from_ms(ms);
    if (b->pause == NULL || evtimer_add(b->pause, &tv) != 0)
        return false;
    log_warn("test hook: booking on performance %" PRId64 " paused %u ms %s", b->perf, ms, what);
    return true;
}

/* w becomes the holder of q's lock. */
static void bk_lockq_give(bk_lockq *q, bk *w)
{
    q->cur = w;
    q->chain++;
    w->q = q;
    bk_prefetch(q->head);
    snprintf(w->fence, sizeof(w->fence), "%s", q->fence);
    cm_hist_observe_us(&rs_stats.lock_wait, cm_now_us() - w->t_lock_us);
    if (bk_pause_start(w, bks.pause_after_lock_ms, bk_pause_after_lock_done, "after the lock"))
        return;
    bk_locked(w);
}

static void bk_lockq_finish(void *arg, cm_lock_status status, const cm_lock_result *res);

static void bk_lockq_work(void *arg, const cm_lock_result *grant, cm_lock_guard *guard)
{
    bk_lockq *q = arg;
    q->acquiring = false;
    q->guard = guard;
    q->lost = false;
    q->chain = 0;
    q->granted_us = cm_now_us();
    snprintf(q->fence, sizeof(q->fence), "%" PRIu64, grant->fence);
    bk *w = bk_lockq_pop(q);
    if (w == NULL) { /* cannot happen: we acquire only for a waiter; let it go again */
        q->guard = NULL;
        q->releasing = true;
        cm_lock_guard_done(guard);
        return;
    }
    bk_lockq_give(q, w);
}

static void bk_lockq_abort(void *arg)
{
    bk_lockq *q = arg;
    if (bks.ignore_lost) {
        log_warn("test hook: LOST push for performance %" PRId64 " ignored", q->perf);
        return;
    }
    q->lost = true;
    bk *b = q->cur;
    if (b != NULL && !b->lost && !b->committed) {
        b->lost = true;
        if (b->op == BK_BOOK)
            rs_stats.bookings_lock_lost++;
        log_warn("performance %" PRId64 ": lock lost (LOST push) during a %s: aborting", b->perf,
                 b->op == BK_BOOK ? "booking" : "cancellation");
    }
}

/* Moves q on while nobody holds it: hand on, release, acquire for the head, or free q.
 * Waiters whose wait ran out are answered BUSY on the way. */
static void bk_lockq_pump(bk_lockq *q)
{
    rs_app *app = bks.app;
    uint64_t wait_ms = (uint64_t)app->cfg.lock_wait_ms;
    if (q->cur != NULL || q->acquiring || q->releasing) {
        bk_prefetch(q->head); /* it will wait: a newcomer, or the lock is on its way */
        return;
    }
    while (q->head != NULL && app->cfg.lock_wait_ms > 0 && bk_waited_ms(q->head) >= wait_ms) {
        bk *w = bk_lockq_pop(q);
        bk_set_error(w, 503, "BUSY", NULL, "performance %" PRId64 " is busy, retry", w->perf);
        w->retry_after = true;
        bk_waiter_done(w);
    }
    if (q->guard != NULL) {
        bool fresh = q->chain < BK_CHAIN_MAX && cm_now_us() - q->granted_us < BK_CHAIN_MS * 1000;
        if (q->head != NULL && !q->lost && fresh) {
            bk_lockq_give(q, bk_lockq_pop(q));
            return;
        }
        cm_lock_guard *g = q->guard;
        q->guard = NULL;
        q->releasing = true;
        cm_lock_guard_done(g); /* -> bk_lockq_finish (maybe at once), which pumps again */
        return;
    }
    if (q->head == NULL) {
        bk_lockq **pp = bk_lockq_slot(q->perf);
        *pp = q->next;
        free(q);
        return;
    }
    char resource[BK_RESOURCE];
    snprintf(resource, sizeof(resource), "Performance:%" PRId64, q->perf);
    uint64_t waited = bk_waited_ms(q->head);
    q->acquiring = true;
    if (app->locks != NULL &&
        cm_lockclient_with_lock(app->locks, resource, (uint64_t)app->cfg.lock_lease_ms,
                                wait_ms > waited ? wait_ms - waited : 0, bk_lockq_work,
                                bk_lockq_abort, bk_lockq_finish, q) == CM_OK) {
        bk_prefetch(q->head);
        return;
    }
    /* could not even ask: every waiter gets the answer now */
    q->acquiring = false;
    bk *w;
    while ((w = bk_lockq_pop(q)) != NULL) {
        bk_set_error(w, 503, "UNAVAILABLE", NULL, "lock service unavailable");
        bk_waiter_done(w);
    }
    bk_lockq_pump(q); /* frees q */
}

/* After a failed ACQUIRE or after the release. */
static void bk_lockq_finish(void *arg, cm_lock_status status, const cm_lock_result *res)
{
    bk_lockq *q = arg;
    q->guard = NULL;
    q->releasing = false;
    if (q->acquiring) { /* never granted: the head waiter gets the answer */
        q->acquiring = false;
        bk *w = bk_lockq_pop(q);
        if (w != NULL) {
            if (status == CM_LOCK_TIMEOUT) {
                bk_set_error(w, 503, "BUSY", NULL, "performance %" PRId64 " is busy, retry",
                             w->perf);
                w->retry_after = true;
            } else {
                log_warn("performance %" PRId64 ": lock not granted: %s %s", w->perf, res->code,
                         res->message != NULL ? res->message : "");
                bk_set_error(w, 503, "UNAVAILABLE", NULL, "lock service unavailable (%s)",
                             res->code);
            }
            bk_waiter_done(w);
        }
    }
    bk_lockq_pump(q);
}

/* b is done with the lock (its transaction has ended). */
static void bk_lock_release(bk *b)
{
    bk_lockq *q = b->q;
    if (q == NULL)
        return;
    b->q = NULL;
    q->cur = NULL;
    bk_lockq_pump(q);
}

/* Takes the performance lock (lockd mode) or goes straight on (db mode: the row lock is
 * taken by rs_book / rs_cancel). */
static void bk_lock(bk *b)
{
    rs_app *app = bks.app;
    if (app->cfg.lock_mode == RS_LOCK_DB) {
        b->fence[0] = '\0';
        bk_locked(b);
        return;
    }
    if (app->locks == NULL || !cm_lockclient_connected(app->locks)) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "lock service unavailable");
        bk_after_lock(b);
        return;
    }
    b->t_lock_us = cm_now_us();
    bk_lockq **pp = bk_lockq_slot(b->perf);
    bk_lockq *q = *pp;
    if (q == NULL) {
        q = calloc(1, sizeof(*q));
        if (q == NULL) {
            bk_set_error(b, 503, "UNAVAILABLE", NULL, "out of memory");
            bk_after_lock(b);
            return;
        }
        q->perf = b->perf;
        *pp = q;
    }
    if (q->tail != NULL)
        q->tail->qnext = b;
    else
        q->head = b;
    q->tail = b;
    bk_lockq_pump(q);
}

static void bk_committed(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        b->in_txn = false; /* nothing left to roll back */
        if (res->unavailable) {
            /* The COMMIT may or may not have happened: the reconciler decides from the
             * database (it cancels only attempts without a CONFIRMED reservation). */
            log_error("performance %" PRId64 ": COMMIT outcome unknown (%s); payment attempt "
                      "%s left to the reconciler",
                      b->perf, res->message, b->reference);
            if (b->pay == BK_PAY_APPROVED || b->pay == BK_PAY_SENT)
                b->pay = BK_PAY_NONE;
            bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
            return;
        }
        bk_fail_db(b, res);
        return;
    }
    b->in_txn = false;
    b->committed = true;
    if (b->op == BK_BOOK) {
        rs_stats.bookings_confirmed++;
    } else if (b->changed) {
        rs_stats.cancellations++;
    }
    rs_db_result none = {.ok = true, .sqlstate = "", .message = "", .detail = ""};
    bk_rolled_back(b, &none); /* returns the connection, releases the lock */
}

static void bk_commit(bk *b)
{
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    if (rs_db_conn_sql(b->conn, "COMMIT", bk_committed, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

static void bk_pause_done(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    bk_commit(arg);
}

/* The test hook widens the window between the charge and COMMIT (crash tests). */
static void bk_commit_maybe_paused(bk *b)
{
    if (bk_pause_start(b, bks.pause_before_commit_ms, bk_pause_done, "before COMMIT"))
        return;
    bk_commit(b);
}

/* ---------------------------------------------------------------- booking steps */

static void bk_idem_stored(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        /* a request with the same key committed first (we hold its advisory lock, so
         * this only happens across a hash collision): its record stands */
        bk_fail_busy(b, "a request with this Idempotency-Key is in progress");
        return;
    }
    bk_commit_maybe_paused(b);
}

/* The reservation as it will be committed (rows of BK_RES_COLS): becomes the answer and,
 * with a key, the idempotency record; then COMMIT. */
static void bk_use_reservation(bk *b, const PGresult *pg)
{
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    int row = 0;
    json_decref(b->body);
    b->body = bk_res_json(pg, &row);
    b->code = NULL;
    b->status = b->op == BK_BOOK ? 201 : 200;
    if (b->op == BK_BOOK && b->has_key) {
        char *text = json_dumps(b->body, JSON_COMPACT);
        const char *params[] = {b->key, b->fingerprint, "201", text};
        cm_rc rc = text != NULL
                       ? rs_db_conn_exec(b->conn, "bk_idem_put", 4, params, bk_idem_stored, b)
                       : CM_ERR;
        free(text);
        if (rc != CM_OK)
            bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    bk_commit_maybe_paused(b);
}

static void bk_read_back(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        bk_fail(b, 503, "UNAVAILABLE", NULL, "reservation vanished");
        return;
    }
    bk_use_reservation(b, res->pg);
}

static void bk_read(bk *b)
{
    char id[BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    const char *params[] = {id};
    if (rs_db_conn_exec(b->conn, "bk_res_get", 1, params, bk_read_back, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

static void bk_captured(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        log_warn("payment attempt %s was claimed by the reconciler before the commit: "
                 "rolling back",
                 b->reference);
        bk_fail(b, 503, "UNAVAILABLE", NULL, "the payment could not be confirmed; retry");
        return;
    }
    bk_use_reservation(b, res->pg);
}

static void bk_charged(void *arg, rs_pay_outcome outcome, const char *payment_id)
{
    bk *b = arg;
    switch (outcome) {
    case RS_PAY_APPROVED: {
        rs_stats.payments_approved++;
        b->pay = BK_PAY_APPROVED;
        snprintf(b->payment_id, sizeof(b->payment_id), "%s", payment_id);
        /* No separate autocommit "APPROVED + payment id" write here: it would take the
         * attempt row's lock and fsync right before bk_capture needs that row, inside
         * the performance lock. The id becomes durable with the commit (CAPTURED); after
         * a crash the reconciler finds the payment by its reference. */
        if (b->lost) {
            bk_fail_lost(b);
            return;
        }
        char total[BK_INT_MAX], id[BK_INT_MAX];
        snprintf(total, sizeof(total), "%" PRId64, b->total);
        snprintf(id, sizeof(id), "%" PRId64, b->res_id);
        const char *p2[] = {b->reference, b->payment_id, total, id};
        if (rs_db_conn_exec(b->conn, "bk_capture", 4, p2, bk_captured, b) != CM_OK)
            bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    case RS_PAY_DECLINED:
        rs_stats.payments_declined++;
        b->pay = BK_PAY_DECLINED;
        bk_fail(b, 402, "PAYMENT_DECLINED", NULL, "the payment was declined");
        return;
    default:
        rs_stats.payments_failed++;
        bk_fail(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
        return;
    }
}

static void bk_no_payment(bk *b);

static void bk_booked(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    b->res_id = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    b->total = strtoll(PQgetvalue(res->pg, 0, 1), NULL, 10);
    if (b->pay == BK_PAY_RECORDED && b->total > 0) {
        b->pay = BK_PAY_SENT;
        if (rs_pay_charge(bks.app->pay, b->reference, b->total, bk_charged, b) != CM_OK) {
            b->pay = BK_PAY_RECORDED;
            bk_fail(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
        }
        return;
    }
    bk_no_payment(b);
}

static void bk_no_payment_done(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    b->pay = BK_PAY_NONE;
    bk_read(b);
}

/* Nothing to charge (no gateway, or a free booking): the attempt row goes with the
 * transaction. */
static void bk_no_payment(bk *b)
{
    if (b->pay == BK_PAY_RECORDED) {
        const char *params[] = {b->reference};
        if (rs_db_conn_exec(b->conn, "bk_attempt_drop", 1, params, bk_no_payment_done, b) != CM_OK)
            bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    bk_read(b);
}

static void bk_booked_read(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (res->ok && PQntuples(res->pg) > 0) {
        b->res_id = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
        b->total = strtoll(PQgetvalue(res->pg, 0, 6), NULL, 10);
    }
    bk_read_back(b, res);
}

static void bk_book(bk *b)
{
    char perf[BK_INT_MAX], user[BK_INT_MAX];
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    snprintf(user, sizeof(user), "%" PRId64, b->user);
    bool db_mode = bks.app->cfg.lock_mode == RS_LOCK_DB;
    const char *params[] = {
        perf,        user, b->seats_param, db_mode ? NULL : b->fence, db_mode ? "true" : "false",
        b->reference};
    /* No gateway: nothing to charge between booking and read-back (see bk_no_payment). */
    bool read_too = bks.app->pay == NULL;
    if (rs_db_conn_exec(b->conn, read_too ? "bk_book_read" : "bk_book", 6, params,
                        read_too ? bk_booked_read : bk_booked, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

static void bk_replay(bk *b, const PGresult *pg);

static void bk_idem_checked(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (PQntuples(res->pg) > 0) {
        bk_replay(b, res->pg); /* sets the outcome (not cacheable again) */
        bk_unwind(b);
        return;
    }
    bk_book(b);
}

static void bk_idem_locked(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    const char *params[] = {b->key};
    if (rs_db_conn_exec(b->conn, "bk_idem_get", 1, params, bk_idem_checked, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

/* In the transaction: cancel body, or (booking) the idempotency re-check then rs_book. */
static void bk_cancel_body(bk *b);
static void bk_step_body(bk *b)
{
    if (b->op == BK_CANCEL) {
        bk_cancel_body(b);
        return;
    }
    if (b->has_key) {
        /* two requests with one key: the second waits here and then sees the first's
         * record, so the key books once even when both passed the first lookup */
        const char *params[] = {b->key};
        if (rs_db_conn_exec(b->conn, "bk_idem_lock", 1, params, bk_idem_locked, b) != CM_OK)
            bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    bk_book(b);
}

static void bk_attempt_recorded(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        log_warn("payment attempt %s not recorded: %s", b->reference, res->message);
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        return;
    }
    b->pay = BK_PAY_RECORDED;
    bk_lock(b);
}

/* Records the attempt durably before anything can be charged. Done before the lock and
 * before the booking transaction leases its connection: the lock is held one round trip
 * less, and a booking never needs two connections at once (in db mode the pool could
 * otherwise fill with bookings waiting on one row). Every path that does not commit
 * drops the row again (bk_after_lock). */
static void bk_step_attempt(bk *b)
{
    if (bks.app->pay == NULL) {
        bk_lock(b);
        return;
    }
    char perf[BK_INT_MAX], user[BK_INT_MAX];
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    snprintf(user, sizeof(user), "%" PRId64, b->user);
    const char *params[] = {b->reference, perf, user, b->seats_param};
    if (rs_db_exec(bks.app->db, "bk_attempt_new", 4, params, bk_attempt_recorded, b) == NULL)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

/* ---------------------------------------------------------------- idempotency */

/* Answers from a stored record (request_hash, status_code, response). */
static void bk_replay(bk *b, const PGresult *pg)
{
    json_decref(b->body);
    b->body = NULL;
    b->cacheable = false;
    if (strcmp(PQgetvalue(pg, 0, 0), b->fingerprint) != 0) {
        bk_set_error(b, 422, "IDEMPOTENCY_MISMATCH", NULL,
                     "Idempotency-Key '%s' was used with a different request", b->key);
        b->cacheable = false;
        return;
    }
    json_t *stored = json_loads(PQgetvalue(pg, 0, 2), 0, NULL);
    if (stored == NULL) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "stored idempotent response unreadable");
        return;
    }
    rs_stats.bookings_idempotent_replays++;
    b->status = atoi(PQgetvalue(pg, 0, 1));
    json_t *err = json_object_get(stored, "error");
    if (json_is_object(err)) {
        /* replayed as it was first answered */
        snprintf(b->code_buf, sizeof(b->code_buf), "%s",
                 json_string_value(json_object_get(err, "code")) != NULL
                     ? json_string_value(json_object_get(err, "code"))
                     : "ERROR");
        snprintf(b->msg, sizeof(b->msg), "%s",
                 json_string_value(json_object_get(err, "message")) != NULL
                     ? json_string_value(json_object_get(err, "message"))
                     : "");
        json_t *extra = json_deep_copy(err);
        json_object_del(extra, "code");
        json_object_del(extra, "message");
        if (json_object_size(extra) == 0) {
            json_decref(extra);
            extra = NULL;
        }
        b->body = extra;
        b->code = b->code_buf;
        json_decref(stored);
        return;
    }
    b->code = NULL;
    b->body = stored;
}

static void bk_idem_looked_up(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        bk_answer(b);
        return;
    }
    if (PQntuples(res->pg) > 0) {
        bk_replay(b, res->pg);
        bk_answer(b);
        return;
    }
    bk_step_attempt(b);
}

/* ---------------------------------------------------------------- POST reservations */

static int bk_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Validates {"userId", "seatIds"} into b; false after answering 400. */
static bool bk_parse(bk *b, json_t *body)
{
    rs_req *r = b->r;
    if (!rs_json_get_int(r, body, "userId", true, 1, INT64_MAX, &b->user, NULL))
        return false;
    json_t *ids = json_object_get(body, "seatIds");
    if (!json_is_array(ids)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'seatIds' must be an array of seat ids");
        return false;
    }
    size_t n = json_array_size(ids);
    int64_t max = bks.app->cfg.max_seats;
    if (n == 0) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'seatIds' must not be empty");
        return false;
    }
    if ((int64_t)n > max) {
        rs_reply_error(r, 400, "BAD_REQUEST",
                       "field 'seatIds' has %zu seats, at most %" PRId64 " per reservation", n,
                       max);
        return false;
    }
    b->seats = calloc(n, sizeof(*b->seats));
    int64_t *sorted = calloc(n, sizeof(*sorted));
    if (b->seats == NULL || sorted == NULL) {
        free(sorted);
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) <= 0) {
            free(sorted);
            rs_reply_error(r, 400, "BAD_REQUEST",
                           "field 'seatIds' must hold positive integers (element %zu)", i);
            return false;
        }
        b->seats[i] = sorted[i] = (int64_t)json_integer_value(v);
    }
    b->nseats = n;
    qsort(sorted, n, sizeof(*sorted), bk_cmp_i64);
    for (size_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            rs_reply_error(r, 400, "BAD_REQUEST", "field 'seatIds' lists seat %" PRId64 " twice",
                           sorted[i]);
            free(sorted);
            return false;
        }
    }
    /* "{1,2,3}" for the bigint[] parameter; the fingerprint keeps the request's order */
    cm_strbuf sb = CM_STRBUF_INIT;
    cm_strbuf_printf(&sb, "{");
    for (size_t i = 0; i < n; i++)
        cm_strbuf_printf(&sb, "%s%" PRId64, i > 0 ? "," : "", b->seats[i]);
    cm_strbuf_printf(&sb, "}");
    b->seats_param = strdup(cm_strbuf_str(&sb));
    cm_strbuf_reset(&sb);
    cm_strbuf_printf(&sb, "perf=%" PRId64 ";user=%" PRId64 ";seats=%s", b->perf, b->user,
                     b->seats_param != NULL ? b->seats_param : "");
    b->fingerprint = strdup(cm_strbuf_str(&sb));
    cm_strbuf_free(&sb);
    free(sorted);
    if (b->seats_param == NULL || b->fingerprint == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return false;
    }
    return true;
}

static void bk_make_reference(bk *b)
{
    uint8_t rnd[4] = {0, 0, 0, 0};
    if (cm_rand_bytes(rnd, sizeof(rnd)) != CM_OK)
        rnd[0] = (uint8_t)cm_rand_range(0, 255);
    snprintf(b->reference, sizeof(b->reference), "%s-%" PRIu64 "-%02x%02x%02x%02x",
             bks.app->instance_id, ++bks.counter, rnd[0], rnd[1], rnd[2], rnd[3]);
}

static void bk_post_reservation(rs_req *r)
{
    json_t *body = rs_req_json(r);
    if (body == NULL)
        return;
    bk *b = bk_new(r, BK_BOOK);
    if (b == NULL)
        return;
    b->perf = rs_req_id(r, 0);
    if (!bk_parse(b, body)) {
        bk_free(b);
        return;
    }
    const char *key = rs_req_header(r, "Idempotency-Key");
    if (key != NULL) {
        size_t len = strlen(key);
        if (len == 0 || len > BK_KEY_MAX) {
            rs_reply_error(r, 400, "BAD_REQUEST", "Idempotency-Key must be 1..%d characters",
                           BK_KEY_MAX);
            bk_free(b);
            return;
        }
        snprintf(b->key, sizeof(b->key), "%s", key);
        b->has_key = true;
    }
    bk_make_reference(b);
    if (b->has_key) {
        const char *params[] = {b->key};
        if (rs_db_exec(bks.app->db, "bk_idem_get", 1, params, bk_idem_looked_up, b) == NULL) {
            bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
            bk_answer(b);
        }
        return;
    }
    bk_step_attempt(b);
}

/* ---------------------------------------------------------------- DELETE reservation */

static void bk_cancelled(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_fail_db(b, res);
        return;
    }
    if (strcmp(PQgetvalue(res->pg, 0, 0), "t") == 0) {
        snprintf(b->cancel_ref, sizeof(b->cancel_ref), "%s", PQgetvalue(res->pg, 0, 1));
        snprintf(b->cancel_pay, sizeof(b->cancel_pay), "%s", PQgetvalue(res->pg, 0, 2));
        b->changed = true;
    }
    if (b->lost) {
        bk_fail_lost(b);
        return;
    }
    bk_read(b);
}

static void bk_cancel_body(bk *b)
{
    char id[BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    bool db_mode = bks.app->cfg.lock_mode == RS_LOCK_DB;
    const char *params[] = {id, db_mode ? NULL : b->fence, db_mode ? "true" : "false"};
    if (rs_db_conn_exec(b->conn, "bk_cancel", 3, params, bk_cancelled, b) != CM_OK)
        bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

static void bk_got_res(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
    } else if (PQntuples(res->pg) == 0) {
        bk_set_error(b, 404, "NOT_FOUND", NULL, "reservation %" PRId64 " not found", b->res_id);
    } else {
        int row = 0;
        b->status = 200;
        b->code = NULL;
        b->body = bk_res_json(res->pg, &row);
    }
    bk_answer(b);
}

static void bk_get_and_answer(bk *b)
{
    char id[BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    const char *params[] = {id};
    if (rs_db_exec(bks.app->db, "bk_res_get", 1, params, bk_got_res, b) == NULL) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        bk_answer(b);
    }
}

static void bk_got_head(void *arg, const rs_db_result *res)
{
    bk *b = arg;
    if (!res->ok) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        bk_answer(b);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        bk_set_error(b, 404, "NOT_FOUND", NULL, "reservation %" PRId64 " not found", b->res_id);
        bk_answer(b);
        return;
    }
    b->perf = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    if (strcmp(PQgetvalue(res->pg, 0, 1), "CANCELLED") == 0) {
        bk_get_and_answer(b); /* idempotent: the same 200 */
        return;
    }
    bk_lock(b);
}

static void bk_delete_reservation(rs_req *r)
{
    bk *b = bk_new(r, BK_CANCEL);
    if (b == NULL)
        return;
    b->res_id = rs_req_id(r, 0);
    char id[BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    const char *params[] = {id};
    if (rs_db_exec(bks.app->db, "bk_res_head", 1, params, bk_got_head, b) == NULL) {
        bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        bk_answer(b);
    }
}

/* ---------------------------------------------------------------- reads */

static void bk_get_reservation(rs_req *r)
{
    bk *b = bk_new(r, BK_READ);
    if (b == NULL)
        return;
    b->res_id = rs_req_id(r, 0);
    bk_get_and_answer(b);
}

typedef struct bk_list {
    rs_req *r;
    char user[BK_INT_MAX];
    char status[16];
    char cursor[BK_INT_MAX];
    char limit[BK_INT_MAX];
    int64_t nlimit;
} bk_list;

static void bk_listed(void *arg, const rs_db_result *res)
{
    bk_list *l = arg;
    if (!res->ok) {
        rs_reply_error(l->r, 503, "UNAVAILABLE", "database unavailable");
        free(l);
        return;
    }
    json_t *items = json_array();
    json_t *next = json_null();
    int row = 0, n = PQntuples(res->pg);
    int64_t count = 0;
    while (row < n) {
        if (count == l->nlimit) { /* one more than asked exists: there is a next page */
            json_decref(next);
            json_t *last = json_array_get(items, json_array_size(items) - 1);
            char c[BK_INT_MAX];
            snprintf(c, sizeof(c), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(last, "id")));
            next = json_string(c);
            break;
        }
        json_array_append_new(items, bk_res_json(res->pg, &row));
        count++;
    }
    rs_reply_json(l->r, 200, json_pack("{s:o, s:o}", "items", items, "nextCursor", next));
    free(l);
}

static void bk_user_checked(void *arg, const rs_db_result *res)
{
    bk_list *l = arg;
    if (!res->ok) {
        rs_reply_error(l->r, 503, "UNAVAILABLE", "database unavailable");
        free(l);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        rs_reply_error(l->r, 404, "NOT_FOUND", "user %s not found", l->user);
        free(l);
        return;
    }
    const char *params[] = {l->user, l->status[0] != '\0' ? l->status : NULL,
                            l->cursor[0] != '\0' ? l->cursor : NULL, l->limit};
    if (rs_db_exec(bks.app->db, "bk_res_list", 4, params, bk_listed, l) == NULL) {
        rs_reply_error(l->r, 503, "UNAVAILABLE", "database unavailable");
        free(l);
    }
}

/* A positive decimal int64 with nothing around it. */
static bool bk_parse_pos(const char *s, int64_t max, int64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0 || v > max)
        return false;
    *out = v;
    return true;
}

static void bk_list_user_reservations(rs_req *r)
{
    bk_list *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    l->r = r;
    snprintf(l->user, sizeof(l->user), "%" PRId64, rs_req_id(r, 0));
    const char *status = rs_req_query(r, "status");
    const char *limit = rs_req_query(r, "limit");
    const char *cursor = rs_req_query(r, "cursor");
    int64_t v;
    if (status != NULL && strcmp(status, "CONFIRMED") != 0 && strcmp(status, "CANCELLED") != 0) {
        rs_reply_error(r, 400, "BAD_REQUEST", "status must be CONFIRMED or CANCELLED");
        goto fail;
    }
    if (status != NULL)
        snprintf(l->status, sizeof(l->status), "%s", status);
    l->nlimit = BK_LIST_DEF;
    if (limit != NULL) {
        if (!bk_parse_pos(limit, BK_LIST_MAX, &l->nlimit)) {
            rs_reply_error(r, 400, "BAD_REQUEST", "limit must be an integer 1..%d", BK_LIST_MAX);
            goto fail;
        }
    }
    snprintf(l->limit, sizeof(l->limit), "%" PRId64, l->nlimit + 1);
    if (cursor != NULL) {
        if (!bk_parse_pos(cursor, INT64_MAX, &v)) {
            rs_reply_error(r, 400, "BAD_REQUEST", "bad cursor");
            goto fail;
        }
        snprintf(l->cursor, sizeof(l->cursor), "%" PRId64, v);
    }
    const char *params[] = {l->user};
    if (rs_db_exec(bks.app->db, "bk_user_exists", 1, params, bk_user_checked, l) == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "database unavailable");
        goto fail;
    }
    return;
fail:
    free(l);
}

/* ---------------------------------------------------------------- module */

const rs_route rs_booking_routes[] = {
    {RS_POST, "/performances/{id}/reservations", "reservation_create", bk_post_reservation},
    {RS_GET, "/reservations/{id}", "reservation_get", bk_get_reservation},
    {RS_DELETE, "/reservations/{id}", "reservation_cancel", bk_delete_reservation},
    {RS_GET, "/users/{id}/reservations", "user_reservations", bk_list_user_reservations},
};
const size_t rs_booking_nroutes = CM_ARRAY_LEN(rs_booking_routes);

void rs_booking_register(rs_db *db)
{
    rs_db_register(db, bk_stmts, CM_ARRAY_LEN(bk_stmts));
    rs_reconcile_register(db);
}

static uint32_t bk_env_ms(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    uint32_t ms = (uint32_t)strtoul(v, NULL, 10);
    log_warn("test hook %s=%u is set", name, ms);
    return ms;
}

cm_rc rs_booking_start(rs_app *app)
{
    bks.app = app;
    bks.pause_before_commit_ms = bk_env_ms("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    bks.pause_after_lock_ms = bk_env_ms("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    bks.ignore_lost = bk_env_ms("RESERVED_TEST_IGNORE_LOST") > 0;
    if (!bks.atexit_added && atexit(bk_lockq_free_all) == 0)
        bks.atexit_added = true;
    return rs_reconcile_start(app);
}

void rs_booking_stop(void)
{
    rs_reconcile_stop();
}
