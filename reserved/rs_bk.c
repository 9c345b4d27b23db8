/*
 * rs_bk: the machine of one booking or cancellation (contract in rs_bk.h). The phases
 * and their legal moves are rs_bkphase's; every move goes through rs_bk_move, which
 * asserts it is in the table and logs it at debug level.
 *
 * The lock: lockd mode queues in rs_perflock (bk_granted / bk_refused / bk_lost /
 * bk_next_in_line are its callbacks); db mode goes straight to a connection (rs_book and
 * rs_cancel lock the row). The first waiter of a queue leases its connection and sends
 * BEGIN while it waits (the QUEUED_* phases), so the lock is held one lease and one
 * round trip less.
 * Every failure goes through rs_bk_unwind: ROLLBACK, the connection back, the lock
 * released (after the ROLLBACK: the next holder never meets our row locks), then
 * bk_settle undoes a payment no commit stands behind, bk_finish stores a final failure
 * under the Idempotency-Key, and rs_bk_answer answers. A LOST push is seen by the next
 * step (rs_bk_lock_lost) and unwinds from there.
 * Group booking: in lockd mode rs_bk_lock first offers a booking to rs_batch_join; a
 * batch's leader is the lock queue's waiter, so the lock callbacks pass the leader's
 * grant, refusal, LOST and next-in-line on to rs_batch; rs_bk_batch_over takes each
 * member back at the settle step.
 */
#include "rs_bk.h"

#include <assert.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_strbuf.h"
#include "cm_time.h"
#include "rs_batch.h"
#include "rs_dberr.h"
#include "rs_holds.h"
#include "rs_metrics.h"
#include "rs_perfcheck.h"
#include "rs_perflock.h"
#include "rs_reconcile.h"
#include "rs_testhook.h"

static const rs_db_stmt bk_stmts[] = {
    {"bk_attempt_set",
     "UPDATE payment_attempts SET status = $2, payment_id = coalesce(nullif($3, ''), payment_id),"
     " updated_at = now() WHERE reference = $1 AND status = $4",
     4},
    {"bk_attempt_drop", "DELETE FROM payment_attempts WHERE reference = $1 AND status = 'PENDING'",
     1},
};

/* ---------------------------------------------------------------- the context */

static struct {
    rs_app *app;
    rs_perflock *locks; /* lockd mode */
    uint64_t counter;
} bks;

void rs_bk_move(rs_bk *b, rs_bk_phase to)
{
    rs_bk_phase_move(&b->phase, to, rs_bk_what(b), b->seq);
    assert((b->conn != NULL) == rs_bk_phase_has_conn(to));
}

const char *rs_bk_what(const rs_bk *b)
{
    static const char *const names[] = {
        [RS_BK_BOOK] = "booking", [RS_BK_CANCEL] = "cancellation", [RS_BK_HOLD] = "hold"};
    return names[b->op];
}

bool rs_bk_db_mode(void)
{
    return bks.app->cfg.lock_mode == RS_LOCK_DB;
}

static void bk_free(rs_bk *b)
{
    if (b->pause != NULL)
        event_free(b->pause);
    json_decref(b->body_json);
    free(b->seats);
    free(b->seats_param);
    free(b->fingerprint);
    free(b);
}

void rs_bk_free(rs_bk *b)
{
    rs_bk_move(b, BK_ANSWERED);
    bk_free(b);
}

rs_bk *rs_bk_new(rs_req *r, rs_bk_op op, rs_bk_body_fn body)
{
    rs_bk *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return NULL;
    }
    b->r = r;
    b->op = op;
    b->body = body;
    b->seq = ++bks.counter;
    b->t0_us = cm_now_us();
    return b;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The seat rules of a booking and of a hold (moved here from rs_booking, which had them
 * alone): a non-empty array of at most max_seats positive integers, none twice. */
bool rs_bk_parse_seats(rs_bk *b, json_t *body)
{
    rs_req *r = b->r;
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
    qsort(sorted, n, sizeof(*sorted), cmp_i64);
    for (size_t i = 1; i < n; i++) {
        if (sorted[i] == sorted[i - 1]) {
            rs_reply_error(r, 400, "BAD_REQUEST", "field 'seatIds' lists seat %" PRId64 " twice",
                           sorted[i]);
            free(sorted);
            return false;
        }
    }
    free(sorted);
    /* "{1,2,3}" for the bigint[] parameter */
    cm_strbuf sb = CM_STRBUF_INIT;
    cm_strbuf_printf(&sb, "{");
    for (size_t i = 0; i < n; i++)
        cm_strbuf_printf(&sb, "%s%" PRId64, i > 0 ? "," : "", b->seats[i]);
    cm_strbuf_printf(&sb, "}");
    b->seats_param = strdup(cm_strbuf_str(&sb));
    cm_strbuf_free(&sb);
    if (b->seats_param == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return false;
    }
    return true;
}

bool rs_bk_fingerprint(rs_bk *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&b->fingerprint, fmt, ap);
    va_end(ap);
    if (n >= 0)
        return true;
    b->fingerprint = NULL;
    rs_reply_error(b->r, 503, "UNAVAILABLE", "out of memory");
    return false;
}

void rs_bk_set_error(rs_bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof(b->msg), fmt, ap);
    va_end(ap);
    json_decref(b->body_json);
    b->body_json = extra;
    b->status = status;
    b->code = code;
    b->out = RS_BK_OUT_ERROR;
}

/* Counted when answered, not when set: an error may be replaced before the answer (a batch
 * member's SEAT_TAKEN becomes BUSY when the booking that took its seat is undone). */
static void bk_count_error(const rs_bk *b)
{
    if (b->op != RS_BK_BOOK || b->out != RS_BK_OUT_ERROR || b->code == NULL)
        return;
    if (strcmp(b->code, "SEAT_TAKEN") == 0)
        rs_stats.bookings_seat_taken++;
    else if (strcmp(b->code, "SOLD_OUT") == 0)
        rs_stats.bookings_sold_out++;
    else if (strcmp(b->code, "PAYMENT_DECLINED") == 0)
        rs_stats.bookings_declined++;
    else if (strcmp(b->code, "BUSY") == 0)
        rs_stats.bookings_busy++;
    else if (strcmp(b->code, "UNAVAILABLE") == 0)
        rs_stats.bookings_unavailable++;
}

void rs_bk_set_body(rs_bk *b, int status, json_t *body)
{
    json_decref(b->body_json);
    b->body_json = body;
    b->status = status;
    b->code = NULL;
    b->out = RS_BK_OUT_OK;
}

void rs_bk_answer(rs_bk *b)
{
    rs_bk_move(b, BK_ANSWERED);
    bk_count_error(b);
    if (b->op == RS_BK_BOOK)
        cm_hist_observe_us(&rs_stats.booking_latency, cm_now_us() - b->t0_us);
    json_t *body = b->body_json;
    b->body_json = NULL;
    if (b->code == NULL)
        rs_reply_json(b->r, b->status, body);
    else if (b->out == RS_BK_OUT_ERROR && strcmp(b->code, "BUSY") == 0) /* "retry soon" */
        rs_reply_json_hdr(b->r, b->status,
                          json_pack("{s:{s:s, s:s}}", "error", "code", b->code, "message", b->msg),
                          "Retry-After", "1");
    else if (body != NULL)
        rs_reply_error_extra(b->r, b->status, b->code, body, "%s", b->msg);
    else
        rs_reply_error(b->r, b->status, b->code, "%s", b->msg);
    bk_free(b);
}

/* ---------------------------------------------------------------- unwind and settle */

static void bk_settle(rs_bk *b);
static void bk_settle_committed(rs_bk *b);

void rs_bk_fail(rs_bk *b, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    char msg[RS_BK_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rs_bk_set_error(b, status, code, extra, "%s", msg);
    rs_bk_unwind(b);
}

void rs_bk_fail_unavailable(rs_bk *b)
{
    rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "database unavailable");
}

void rs_bk_fail_lost(rs_bk *b)
{
    rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "the performance lock was lost; nothing was booked");
}

/* Whether the lock this booking holds was lost (never in db mode). */
bool rs_bk_lock_lost(const rs_bk *b)
{
    return b->lockw != NULL && rs_perflock_lost(b->lockw);
}

/* The transaction is over (committed, rolled back, or never begun): the connection goes
 * back, then the lock (after: the next holder never meets our row locks), then settle. */
static void bk_txn_over(rs_bk *b, bool committed)
{
    if (rs_bk_phase_has_conn(b->phase)) {
        rs_db_conn_return(b->conn);
        b->conn = NULL;
    }
    if (b->lockw != NULL) {
        rs_perflock_release(b->lockw);
        b->lockw = NULL;
    }
    if (committed)
        bk_settle_committed(b);
    else
        bk_settle(b);
}

static void bk_rolled_back(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok)
        log_warn("ROLLBACK failed: %s (the connection is replaced)", res->message);
    bk_txn_over(b, false);
}

static void bk_rollback(rs_bk *b)
{
    rs_bk_move(b, BK_UNWINDING);
    if (rs_db_conn_sql(b->conn, "ROLLBACK", bk_rolled_back, b) != CM_OK)
        bk_txn_over(b, false); /* rs_db_conn_return rolls back what is open */
}

/* The outcome is set: ends what b has open (transaction, connection, lock), then
 * settles. From any phase before the answer that has no request out. */
void rs_bk_unwind(rs_bk *b)
{
    switch (b->phase) {
    case BK_QUEUED_IN_TXN:
    case BK_IN_TXN:
        bk_rollback(b);
        return;
    case BK_QUEUED_BEGINNING: /* its BEGIN is out: rolled back once it lands */
        rs_bk_move(b, BK_REFUSED_BEGINNING);
        return;
    case BK_QUEUED_LEASING:
        rs_db_cancel(b->early);
        b->early = NULL;
        break;
    default:
        break;
    }
    bk_txn_over(b, false);
}

json_t *rs_bk_id_list(const char *csv)
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

/* The purchase limit (SPEC §6a; migration 090's trigger, DETAIL "<limit>,<had>,<asked>"):
 * 409 LIMIT_EXCEEDED, a final answer (stored under the Idempotency-Key). */
static void bk_set_limit_exceeded(rs_bk *b, const char *detail)
{
    long long limit = 0, had = 0, asked = 0;
    if (detail == NULL || sscanf(detail, "%lld,%lld,%lld", &limit, &had, &asked) != 3)
        asked = (long long)b->nseats;
    rs_bk_set_error(b, 409, "LIMIT_EXCEEDED", NULL,
                    "at most %lld seats per user for performance %" PRId64 "; user %" PRId64
                    " has %lld and asked for %lld",
                    limit, b->perf, b->user, had, asked);
}

/* Maps a failed statement of the booking/cancel transaction to its answer. */
void rs_bk_set_db_error(rs_bk *b, const rs_db_result *res)
{
    const char *st = res->sqlstate != NULL ? res->sqlstate : "";
    const char *msg = res->message != NULL ? res->message : "";
    if (strcmp(st, "RBP04") == 0) {
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "performance %" PRId64 " not found", b->perf);
    } else if (strcmp(st, "RBU04") == 0) {
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "user %" PRId64 " not found", b->user);
    } else if (strcmp(st, "RBR04") == 0) {
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "reservation %" PRId64 " not found", b->res_id);
    } else if (strcmp(st, "RBFEN") == 0) {
        rs_stats.bookings_fence_rejected++;
        log_warn("performance %" PRId64 ": fence %s is stale (a newer lock holder committed): "
                 "rolled back",
                 b->perf, b->fence);
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL,
                        "lock lost: a newer holder of the performance lock "
                        "committed; nothing was changed");
    } else if (strcmp(st, "RBSEA") == 0) {
        rs_bk_set_error(b, 400, "BAD_REQUEST",
                        json_pack("{s:o}", "seatIds", rs_bk_id_list(res->detail)),
                        "seats %s are not seats of performance %" PRId64, res->detail, b->perf);
    } else if (strcmp(st, "RBTAK") == 0) {
        rs_bk_set_error(b, 409, "SEAT_TAKEN",
                        json_pack("{s:o}", "seatIds", rs_bk_id_list(res->detail)),
                        "seats already taken: %s", res->detail);
    } else if (strcmp(st, "RBSOL") == 0) {
        rs_bk_set_error(b, 409, "SOLD_OUT", NULL, "performance %" PRId64 " has too few seats left",
                        b->perf);
    } else if (strcmp(st, "RBLIM") == 0) {
        bk_set_limit_exceeded(b, res->detail);
    } else if (strcmp(st, "RBHEX") == 0) { /* 120's rs_hold_claim */
        rs_bk_set_error(b, 409, "HOLD_EXPIRED", NULL, "hold %" PRId64 " is no longer active",
                        b->hold);
    } else if (strcmp(st, "RBH04") == 0) {
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "hold %" PRId64 " not found", b->hold);
    } else if (strcmp(st, "23505") == 0 && strstr(msg, "reservation_seats_one_confirmed") != NULL) {
        rs_stats.guard_seat_unique++;
        log_error("GUARD reservation_seats_one_confirmed fired for performance %" PRId64
                  " (the lock should have prevented it): %s",
                  b->perf, msg);
        json_t *ids = json_array();
        for (size_t i = 0; i < b->nseats; i++)
            json_array_append_new(ids, json_integer(b->seats[i]));
        rs_bk_set_error(b, 409, "SEAT_TAKEN", json_pack("{s:o}", "seatIds", ids),
                        "a requested seat was taken concurrently");
    } else if (strcmp(st, "23514") == 0 && strstr(msg, "performances_capacity_guard") != NULL) {
        rs_stats.guard_capacity++;
        log_error("GUARD performances_capacity_guard fired for performance %" PRId64 ": %s",
                  b->perf, msg);
        rs_bk_set_error(b, 409, "SOLD_OUT", NULL, "performance %" PRId64 " has too few seats left",
                        b->perf);
    } else if (strcmp(st, "23514") == 0) {
        rs_stats.guard_other++;
        char id[RS_DBERR_ID_MAX];
        rs_dberr_new_id(id);
        log_error("GUARD a CHECK constraint fired for performance %" PRId64 " (request id %s): %s",
                  b->perf, id, msg);
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL,
                        "the booking broke a database check; request id %s", id);
    } else if (strcmp(st, "55P03") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) {
        rs_bk_set_error(b, 503, "BUSY", NULL, "the performance is busy, retry");
    } else {
        char id[RS_DBERR_ID_MAX], what[64];
        snprintf(what, sizeof(what), "a %s of performance %" PRId64, rs_bk_what(b), b->perf);
        rs_dberr_log(id, 503, what, res);
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable; request id %s", id);
    }
}

void rs_bk_fail_db(rs_bk *b, const rs_db_result *res)
{
    rs_bk_set_db_error(b, res);
    rs_bk_unwind(b);
}

/* Sets the outcome from a stored Idempotency-Key record. */
void rs_bk_replay(rs_bk *b, const PGresult *pg, int row, int col)
{
    rs_idem_answer a;
    switch (rs_idem_replay_at(pg, row, col, b->fingerprint, &a)) {
    case RS_IDEM_MISMATCH:
        rs_bk_set_error(b, 422, "IDEMPOTENCY_MISMATCH", NULL,
                        "Idempotency-Key '%s' was used with a different request",
                        rs_idem_key_header(b->key));
        break;
    case RS_IDEM_UNREADABLE:
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "stored idempotent response unreadable");
        break;
    case RS_IDEM_REPLAY:
        rs_stats.bookings_idempotent_replays++;
        json_decref(b->body_json);
        b->body_json = a.body;
        b->status = a.status;
        b->code = NULL;
        if (a.code[0] != '\0') {
            snprintf(b->code_buf, sizeof(b->code_buf), "%s", a.code);
            snprintf(b->msg, sizeof(b->msg), "%s", a.message);
            b->code = b->code_buf;
        }
        break;
    }
    b->out = RS_BK_OUT_REPLAY;
}

rs_bk *rs_bk_ok(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (res->ok)
        return b;
    rs_bk_fail_db(b, res);
    return NULL;
}

static void bk_answer_stored(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok)
        log_warn("idempotency record %s not stored: %s", b->key, res->message);
    rs_bk_answer(b);
}

/* Stores a final failure under the Idempotency-Key (the success record was stored in the
 * booking transaction), then answers. */
static void bk_finish(rs_bk *b)
{
    if (b->op == RS_BK_BOOK && b->key[0] != '\0' && b->out == RS_BK_OUT_ERROR && b->status != 503) {
        json_t *body = rs_idem_error_body(b->code, b->msg, b->body_json);
        rs_bk_move(b, BK_STORING);
        cm_rc rc = rs_idem_store(bks.app->db, NULL, b->key, b->fingerprint, b->status, body,
                                 bk_answer_stored, b);
        json_decref(body);
        if (rc == CM_OK)
            return;
    }
    rs_bk_answer(b);
}

static void bk_attempt_closed(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok)
        log_warn("payment attempt %s: update failed: %s (the reconciler will look at it)",
                 b->reference, res->message);
    bk_finish(b);
}

static void bk_compensated(void *arg, bool done)
{
    rs_bk *b = arg;
    if (!done)
        log_warn("payment attempt %s: not compensated yet, left for the reconciler", b->reference);
    bk_finish(b);
}

static void bk_refunded(void *arg, bool done)
{
    rs_bk *b = arg;
    if (!done)
        log_warn("reservation %" PRId64 ": payment %s not cancelled yet, left for the "
                 "reconciler",
                 b->res_id, b->cancel_pay);
    rs_bk_answer(b);
}

/* After a failure, with the transaction over and the lock released: undo the payment
 * attempt that no committed booking stands behind, then bk_finish. */
static void bk_settle(rs_bk *b)
{
    const char *ref = b->reference;
    if (b->pay == RS_BK_PAY_NONE) {
        bk_finish(b);
        return;
    }
    rs_bk_move(b, BK_COMPENSATING);
    switch (b->pay) {
    case RS_BK_PAY_RECORDED: {
        const char *params[] = {ref};
        if (rs_db_exec(bks.app->db, "bk_attempt_drop", 1, params, bk_attempt_closed, b) != NULL)
            return;
        break;
    }
    case RS_BK_PAY_DECLINED: {
        const char *params[] = {ref, "DECLINED", "", "PENDING"};
        if (rs_db_exec(bks.app->db, "bk_attempt_set", 4, params, bk_attempt_closed, b) != NULL)
            return;
        break;
    }
    case RS_BK_PAY_SENT:
    case RS_BK_PAY_APPROVED:
        if (rs_comp_start(ref, b->payment_id, 0, false, bk_compensated, b) == CM_OK)
            return;
        break;
    case RS_BK_PAY_NONE:
        break;
    }
    bk_finish(b);
}

/* After the COMMIT, the connection back and the lock released: a cancellation refunds
 * the payment of the reservation it cancelled; then the answer. */
static void bk_settle_committed(rs_bk *b)
{
    if (b->op == RS_BK_CANCEL && b->cancel_pay[0] != '\0') {
        rs_bk_move(b, BK_COMPENSATING);
        if (rs_comp_start(b->cancel_ref, b->cancel_pay, 0, false, bk_refunded, b) == CM_OK)
            return;
    }
    rs_bk_answer(b);
}

void rs_bk_batch_over(rs_bk *b, bool committed)
{
    assert(b->phase == BK_BATCHED && b->conn == NULL && b->lockw == NULL);
    b->batch = NULL;
    if (committed && b->out == RS_BK_OUT_OK) {
        rs_stats.bookings_confirmed++;
        bk_settle_committed(b);
        return;
    }
    assert(b->out == RS_BK_OUT_ERROR || b->out == RS_BK_OUT_REPLAY);
    bk_settle(b);
}

/* ---------------------------------------------------------------- the performance first */

static void bk_perf_checked(void *arg, rs_perfcheck_answer a, const rs_db_result *res)
{
    rs_bk *b = arg;
    char id[RS_DBERR_ID_MAX];
    switch (a) {
    case RS_PERFCHECK_EXISTS:
        b->then(b);
        return;
    case RS_PERFCHECK_MISSING:
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "performance %" PRId64 " not found", b->perf);
        bk_finish(b);
        return;
    case RS_PERFCHECK_FAILED:
        rs_dberr_log(id, 503, "a performance check", res);
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable; request id %s", id);
        rs_bk_answer(b);
        return;
    }
}

void rs_bk_check_perf(rs_bk *b, rs_bk_body_fn then)
{
    assert(b->op != RS_BK_CANCEL && (b->phase == BK_NEW || b->phase == BK_IDEM_LOOKUP));
    if (rs_perfcheck_known(b->perf)) {
        then(b);
        return;
    }
    b->then = then;
    if (rs_perfcheck_ask(bks.app->db, b->perf, bk_perf_checked, b) != CM_OK) {
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        rs_bk_answer(b);
    }
}

/* ---------------------------------------------------------------- lock + transaction */

/* In the transaction, with the lock: the body. */
static void bk_in_txn(rs_bk *b)
{
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    b->body(b);
}

static void bk_lease(rs_bk *b);

/* An early BEGIN failed or could not be sent: no transaction, the connection goes back. */
static void bk_early_dropped(rs_bk *b, rs_bk_phase to)
{
    rs_db_conn_return(b->conn);
    b->conn = NULL;
    rs_bk_move(b, to);
}

static void bk_begun(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    switch (b->phase) {
    case BK_QUEUED_BEGINNING:
        if (res->ok)
            rs_bk_move(b, BK_QUEUED_IN_TXN);
        else
            bk_early_dropped(b, BK_QUEUED);
        return;
    case BK_GRANTED_BEGINNING:
        if (!res->ok) {
            bk_early_dropped(b, BK_LEASING);
            bk_lease(b);
            return;
        }
        rs_bk_move(b, BK_IN_TXN);
        bk_in_txn(b);
        return;
    case BK_REFUSED_BEGINNING:
        if (res->ok)
            bk_rollback(b);
        else
            bk_txn_over(b, false);
        return;
    case BK_BEGINNING:
        if (!res->ok) {
            rs_bk_fail_db(b, res);
            return;
        }
        rs_bk_move(b, BK_IN_TXN);
        bk_in_txn(b);
        return;
    default:
        assert(!"BEGIN answered in a phase that sent none");
    }
}

static void bk_leased(void *arg, rs_db_conn *conn, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (b->phase == BK_QUEUED_LEASING) {
        b->early = NULL; /* rs_db frees it after this callback */
        if (conn == NULL) {
            rs_bk_move(b, BK_QUEUED);
            return;
        }
        b->conn = conn;
        rs_bk_move(b, BK_QUEUED_BEGINNING);
        if (rs_db_conn_sql(conn, "BEGIN", bk_begun, b) != CM_OK)
            bk_early_dropped(b, BK_QUEUED);
        return;
    }
    assert(b->phase == BK_LEASING);
    if (conn == NULL) {
        log_warn("no database connection: %s", res != NULL ? res->message : "");
        rs_bk_fail_unavailable(b);
        return;
    }
    b->conn = conn;
    rs_bk_move(b, BK_BEGINNING);
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    if (rs_db_conn_sql(conn, "BEGIN", bk_begun, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

static void bk_lease(rs_bk *b)
{
    /* Holding the performance lock (lockd mode): every other booking of the performance,
     * in every process, waits for this one, so it goes ahead of the pool's queue. */
    rs_db_req *req = rs_bk_db_mode() ? rs_db_lease(bks.app->db, bk_leased, b)
                                     : rs_db_lease_urgent(bks.app->db, bk_leased, b);
    if (req == NULL)
        rs_bk_fail_unavailable(b);
}

/* The lock is b's now (or db mode needs none): into the transaction, which an early
 * lease may have opened already. */
static void bk_locked(rs_bk *b)
{
    switch (b->phase) {
    case BK_QUEUED_LEASING: /* still waiting for a connection: ask again, urgently */
        rs_db_cancel(b->early);
        b->early = NULL;
        /* fall through */
    case BK_QUEUED:
        rs_bk_move(b, BK_LEASING);
        bk_lease(b);
        return;
    case BK_QUEUED_BEGINNING:
        rs_bk_move(b, BK_GRANTED_BEGINNING); /* bk_begun goes on */
        return;
    case BK_QUEUED_IN_TXN:
        rs_bk_move(b, BK_IN_TXN);
        bk_in_txn(b);
        return;
    default:
        assert(!"granted a lock it did not wait for");
    }
}

static void bk_pause_done(evutil_socket_t fd, short what, void *arg);

/* Test hooks: waits ms, then bk_pause_done goes on (after the lock or before COMMIT).
 * False when no pause was asked or it could not start. */
static bool bk_pause(rs_bk *b, uint32_t ms, const char *what)
{
    if (ms == 0 || b->op != RS_BK_BOOK)
        return false;
    if (b->pause != NULL)
        event_free(b->pause);
    b->pause = evtimer_new(bks.app->base, bk_pause_done, b);
    struct timeval tv = cm_tv_from_ms(ms);
    if (b->pause == NULL || evtimer_add(b->pause, &tv) != 0)
        return false;
    log_warn("test hook: booking on performance %" PRId64 " paused %u ms %s", b->perf, ms, what);
    return true;
}

static void bk_granted(void *arg, uint64_t fence)
{
    rs_bk *b = arg;
    if (b->phase == BK_BATCHED) { /* a batch's leader: the grant is the batch's */
        rs_batch_on_granted(b->batch, fence);
        return;
    }
    snprintf(b->fence, sizeof(b->fence), "%" PRIu64, fence);
    if (bk_pause(b, rs_testhooks_g.pause_after_lock_ms, "after the lock"))
        return; /* the phase still says queued: the early lease goes on meanwhile */
    bk_locked(b);
}

void rs_bk_set_refused(rs_bk *b, int why, const char *code)
{
    if (why == RS_PERFLOCK_BUSY)
        rs_bk_set_error(b, 503, "BUSY", NULL, "performance %" PRId64 " is busy, retry", b->perf);
    else if (why == RS_PERFLOCK_REFUSED)
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "lock service unavailable (%s)", code);
    else
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "lock service unavailable");
}

static void bk_refused(void *arg, rs_perflock_refusal why, const char *code, const char *message)
{
    rs_bk *b = arg;
    CM_UNUSED(message);           /* rs_perflock logged it */
    if (b->phase == BK_BATCHED) { /* a batch's leader: the refusal is the batch's */
        rs_batch_on_refused(b->batch, why, code);
        return;
    }
    b->lockw = NULL;
    rs_bk_set_refused(b, why, code);
    rs_bk_unwind(b);
}

static void bk_lost(void *arg)
{
    rs_bk *b = arg;
    if (b->phase == BK_BATCHED || b->phase == BK_BATCH_CHARGING) {
        rs_batch_on_lost(b->batch);
        return;
    }
    if (b->op == RS_BK_BOOK)
        rs_stats.bookings_lock_lost++;
    log_warn("performance %" PRId64 ": lock lost (LOST push) during a %s: aborting", b->perf,
             rs_bk_what(b));
}

/* First in line while the lock is busy: lease the connection and send BEGIN now, so the
 * lock is held one lease and one round trip less. PostgreSQL takes no snapshot and no
 * lock before the first statement, which runs under the lock: lock before the
 * transaction's work still holds. */
static void bk_next_in_line(void *arg)
{
    rs_bk *b = arg;
    if (b->phase == BK_BATCHED) {
        rs_batch_on_next_in_line(b->batch);
        return;
    }
    if (b->phase != BK_QUEUED)
        return; /* already getting ready */
    rs_bk_move(b, BK_QUEUED_LEASING);
    b->early = rs_db_lease(bks.app->db, bk_leased, b);
    if (b->early == NULL)
        rs_bk_move(b, BK_QUEUED);
}

static const rs_perflock_cbs bk_lock_cbs = {
    .granted = bk_granted,
    .refused = bk_refused,
    .lost = bk_lost,
    .next_in_line = bk_next_in_line,
};

/* Takes the performance lock (lockd mode) or goes straight on (db mode: the row lock is
 * taken by rs_book / rs_cancel). */
void rs_bk_lock(rs_bk *b)
{
    if (rs_bk_db_mode()) {
        b->fence[0] = '\0';
        rs_bk_move(b, BK_LEASING);
        bk_lease(b);
        return;
    }
    if (rs_batch_join(b) == CM_OK)
        return; /* the batch takes it from here */
    rs_bk_move(b, BK_QUEUED);
    b->lockw = bks.locks != NULL ? rs_perflock_wait(bks.locks, b->perf, b) : NULL;
    if (b->lockw != NULL)
        return;
    if (bks.locks != NULL && rs_perflock_full(bks.locks, b->perf)) {
        rs_bk_set_refused(b, RS_PERFLOCK_BUSY, ""); /* 503 BUSY, Retry-After */
        rs_bk_unwind(b);
        return;
    }
    rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "lock service unavailable");
}

static void bk_commit_done(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok && res->unavailable) {
        /* The COMMIT may or may not have happened: the reconciler decides from the
         * database (it cancels only attempts without a CONFIRMED reservation). */
        log_error("performance %" PRId64 ": COMMIT outcome unknown (%s); payment attempt "
                  "%s left to the reconciler",
                  b->perf, res->message, b->reference);
        if (b->pay == RS_BK_PAY_APPROVED || b->pay == RS_BK_PAY_SENT)
            b->pay = RS_BK_PAY_NONE;
        rs_bk_fail_unavailable(b);
        return;
    }
    if (!res->ok) {
        rs_bk_fail_db(b, res);
        return;
    }
    if (b->op == RS_BK_BOOK)
        rs_stats.bookings_confirmed++;
    else if (b->op == RS_BK_CANCEL && b->changed)
        rs_stats.cancellations++;
    if (b->op == RS_BK_HOLD)
        rs_hold_stats.created++;
    else if (b->hold != 0)
        rs_hold_stats.booked++;
    bk_txn_over(b, true);
}

static void bk_commit_now(rs_bk *b)
{
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    rs_bk_move(b, BK_COMMITTING);
    if (rs_db_conn_sql(b->conn, "COMMIT", bk_commit_done, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

static void bk_pause_done(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    rs_bk *b = arg;
    if (b->phase == BK_IN_TXN)
        bk_commit_now(b); /* the pause before COMMIT */
    else
        bk_locked(b); /* the pause after the lock */
}

/* The test hook widens the window between the charge and COMMIT (crash tests). */
void rs_bk_commit(rs_bk *b)
{
    if (bk_pause(b, rs_testhooks_g.pause_before_commit_ms, "before COMMIT"))
        return;
    bk_commit_now(b);
}

/* ---------------------------------------------------------------- module */

void rs_bk_register(rs_db *db)
{
    rs_db_register(db, bk_stmts, CM_ARRAY_LEN(bk_stmts));
    rs_batch_register(db);
    rs_perfcheck_register(db);
}

cm_rc rs_bk_start(rs_app *app)
{
    bks.app = app;
    if (app->cfg.lock_mode == RS_LOCK_DB)
        return CM_OK;
    /* With lock.wait_ms 0 a wait in the queue is still bounded (rs_perflock rule 6), and
     * not beyond reconcile.after_ms: the booking's payment attempt was recorded before it
     * queued, and the reconciler takes an attempt that old for an orphan. */
    uint64_t wait0_ms = RS_PERFLOCK_WAIT0_MS;
    if (app->cfg.reconcile_after_ms > 0 && (uint64_t)app->cfg.reconcile_after_ms < wait0_ms)
        wait0_ms = (uint64_t)app->cfg.reconcile_after_ms;
    rs_perflock_opts opts = {
        .lease_ms = (uint64_t)app->cfg.lock_lease_ms,
        .wait_ms = app->cfg.lock_wait_ms > 0 ? (uint64_t)app->cfg.lock_wait_ms : 0,
        .wait0_ms = wait0_ms,
        .max_queue = (size_t)app->cfg.lock_max_queue,
    };
    bks.locks = rs_perflock_new(&rs_perflock_lockclient_ops, app->locks, &opts, &bk_lock_cbs);
    rs_batch_start(app, bks.locks);
    return bks.locks != NULL ? CM_OK : CM_ERR;
}

void rs_bk_stop(void)
{
    rs_perfcheck_stop();
    rs_batch_stop();
    rs_perflock_free(bks.locks);
    bks.locks = NULL;
}
