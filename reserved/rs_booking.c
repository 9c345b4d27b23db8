/*
 * rs_booking: the reservation routes and the work of a booking or a cancellation
 * (contract in rs_booking.h). The machine around the work (lock, transaction, unwind,
 * compensation, answer) is rs_bk's; reads and JSON are rs_resv's; Idempotency-Key
 * records are rs_idem's.
 *
 * Before the lock (no transaction): a booking with a key looks its record up (a replay
 * costs no lock), then records its payment attempt (autocommit: durable before anything
 * can be charged, and before the lock, which is then held one round trip less; a booking
 * never needs two connections at once). A cancellation reads its reservation's
 * performance (an already cancelled one is answered as it stands).
 * Inside the transaction, with the lock (book_body / cancel_body): [the key again, under
 * its advisory lock] -> rs_book() (fence or FOR UPDATE, seats, insert, capacity: one
 * call) -> charge -> capture (attempt CAPTURED + payment id + read-back: one statement)
 * -> [the key's record] -> rs_bk_commit. A cancellation: rs_cancel() -> read-back ->
 * rs_bk_commit. Each statement's callback checks rs_bk_lock_lost before the next.
 */
#include "rs_booking.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_strbuf.h"
#include "rs_auth.h"
#include "rs_bk.h"
#include "rs_holdbk.h"
#include "rs_idem.h"
#include "rs_metrics.h"
#include "rs_pay.h"
#include "rs_resv.h"
#include "rs_testhook.h"

/* bk_attempt_drop, the attempt's undo, is rs_bk's; the body drops the row too when
 * there is nothing to charge. */
static const rs_db_stmt book_stmts[] = {
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
     " SELECT " RS_RESV_COLS " FROM r" RS_RESV_JOIN " ORDER BY s.seat_id",
     4},
    /* Without a payment nothing runs between the booking and its read-back. */
    {"bk_book_read",
     "SELECT * FROM rs_book_read($1::bigint, $2::bigint, $3::bigint[], $4::numeric,"
     " $5::boolean, $6::text)",
     6},
    /* $2: the caller's id (a customer cancels only its own: another's is not found) or
     * NULL (an admin). */
    {"bk_res_head",
     "SELECT performance_id, status FROM reservations "
     "WHERE id = $1::bigint AND ($2::bigint IS NULL OR user_id = $2::bigint)",
     2},
    {"bk_cancel",
     "SELECT changed, coalesce(reference, ''), coalesce(payment_id, '')"
     " FROM rs_cancel($1::bigint, $2::numeric, $3::boolean)",
     3},
};

static rs_app *app;

/* A statement of the body on b's connection; b fails when it cannot even be sent. */
static void book_exec(rs_bk *b, const char *stmt, int nparams, const char *const *params,
                      rs_db_cb cb)
{
    if (rs_db_conn_exec(b->conn, stmt, nparams, params, cb, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

/* ---------------------------------------------------------------- the read-back */

/* The reservation as it will be committed (rows of RS_RESV_COLS): becomes the answer and,
 * for a booking with a key, the idempotency record; then COMMIT. */
static void use_reservation(rs_bk *b, const PGresult *pg);

static void read_back_done(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (PQntuples(res->pg) == 0) {
        rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "reservation vanished");
        return;
    }
    use_reservation(b, res->pg);
}

static void read_back(rs_bk *b)
{
    if (rs_resv_read(b->conn, b->res_id, read_back_done, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

static void book_idem_stored(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (PQntuples(res->pg) == 0) {
        /* a request with the same key committed first (we hold its advisory lock, so
         * this only happens across a hash collision): its record stands */
        rs_bk_fail(b, 503, "BUSY", NULL, "a request with this Idempotency-Key is in progress");
        return;
    }
    rs_bk_commit(b);
}

static void use_reservation(rs_bk *b, const PGresult *pg)
{
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    int row = 0;
    rs_bk_set_body(b, b->op == RS_BK_BOOK ? 201 : 200, rs_resv_json(pg, &row));
    if (b->op == RS_BK_BOOK && b->key[0] != '\0') {
        if (rs_idem_store(app->db, b->conn, b->key, b->fingerprint, 201, b->body_json,
                          book_idem_stored, b) != CM_OK)
            rs_bk_fail_unavailable(b);
        return;
    }
    rs_bk_commit(b);
}

/* ---------------------------------------------------------------- booking: the body */

static void book_captured(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (PQntuples(res->pg) == 0) {
        log_warn("payment attempt %s was claimed by the reconciler before the commit: "
                 "rolling back",
                 b->reference);
        rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "the payment could not be confirmed; retry");
        return;
    }
    use_reservation(b, res->pg);
}

static void book_charged(void *arg, rs_pay_outcome outcome, const char *payment_id)
{
    rs_bk *b = arg;
    rs_bk_move(b, BK_IN_TXN);
    switch (outcome) {
    case RS_PAY_APPROVED: {
        rs_stats.payments_approved++;
        b->pay = RS_BK_PAY_APPROVED;
        snprintf(b->payment_id, sizeof(b->payment_id), "%s", payment_id);
        /* No separate autocommit "APPROVED + payment id" write here: it would take the
         * attempt row's lock and fsync right before bk_capture needs that row, inside
         * the performance lock. The id becomes durable with the commit (CAPTURED); after
         * a crash the reconciler finds the payment by its reference. */
        if (rs_bk_lock_lost(b)) {
            rs_bk_fail_lost(b);
            return;
        }
        char total[RS_BK_INT_MAX], id[RS_BK_INT_MAX];
        snprintf(total, sizeof(total), "%" PRId64, b->total);
        snprintf(id, sizeof(id), "%" PRId64, b->res_id);
        const char *params[] = {b->reference, b->payment_id, total, id};
        book_exec(b, "bk_capture", 4, params, book_captured);
        return;
    }
    case RS_PAY_DECLINED:
        rs_stats.payments_declined++;
        b->pay = RS_BK_PAY_DECLINED;
        rs_bk_fail(b, 402, "PAYMENT_DECLINED", NULL, "the payment was declined");
        return;
    default:
        rs_stats.payments_failed++;
        rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
        return;
    }
}

static void book_charge(rs_bk *b)
{
    b->pay = RS_BK_PAY_SENT;
    rs_bk_move(b, BK_CHARGING);
    if (rs_pay_charge(app->pay, b->reference, b->total, book_charged, b) == CM_OK)
        return;
    b->pay = RS_BK_PAY_RECORDED;
    rs_bk_move(b, BK_IN_TXN);
    rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
}

static void book_no_payment_done(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    b->pay = RS_BK_PAY_NONE;
    read_back(b);
}

/* Nothing to charge (a free booking): the attempt row goes with the transaction. */
static void book_no_payment(rs_bk *b)
{
    if (b->pay == RS_BK_PAY_RECORDED) {
        const char *params[] = {b->reference};
        book_exec(b, "bk_attempt_drop", 1, params, book_no_payment_done);
        return;
    }
    read_back(b);
}

static void book_booked(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    b->res_id = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    b->total = strtoll(PQgetvalue(res->pg, 0, 1), NULL, 10);
    if (b->pay == RS_BK_PAY_RECORDED && b->total > 0)
        book_charge(b);
    else
        book_no_payment(b);
}

/* No gateway: rs_book_read books and reads back in one statement. */
static void book_booked_read(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (res->ok && PQntuples(res->pg) > 0) {
        b->res_id = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
        b->total = strtoll(PQgetvalue(res->pg, 0, 6), NULL, 10);
    }
    read_back_done(b, res);
}

static void book_book(rs_bk *b)
{
    char perf[RS_BK_INT_MAX], user[RS_BK_INT_MAX];
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    snprintf(user, sizeof(user), "%" PRId64, b->user);
    bool db_mode = rs_bk_db_mode();
    char hold[RS_BK_INT_MAX];
    const char *params[] = {perf,
                            user,
                            b->seats_param,
                            db_mode ? NULL : b->fence,
                            db_mode ? "true" : "false",
                            b->reference,
                            rs_holdbk_param(b, hold)};
    bool read_too = app->pay == NULL;
    book_exec(b, rs_holdbk_stmt(b, read_too ? "bk_book_read" : "bk_book"), b->hold ? 7 : 6, params,
              read_too ? book_booked_read : book_booked);
}

static void book_idem_checked(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (PQntuples(res->pg) > 0) {
        rs_bk_replay(b, res->pg, 0, 0);
        rs_bk_unwind(b);
        return;
    }
    book_book(b);
}

static void book_idem_locked(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (rs_idem_recheck(b->conn, b->key, book_idem_checked, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

static void book_body(rs_bk *b)
{
    if (b->key[0] != '\0') {
        /* two requests with one key: the second waits here and then sees the first's
         * record, so the key books once even when both passed the first lookup */
        if (rs_idem_lock(b->conn, b->key, book_idem_locked, b) != CM_OK)
            rs_bk_fail_unavailable(b);
        return;
    }
    book_book(b);
}

/* ---------------------------------------------------------------- booking: before the lock */

static void book_attempt_recorded(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok) {
        log_warn("payment attempt %s not recorded: %s", b->reference, res->message);
        rs_bk_fail_unavailable(b);
        return;
    }
    b->pay = RS_BK_PAY_RECORDED;
    rs_bk_lock(b);
}

/* Records the attempt durably before anything can be charged (see the top); every path
 * that does not commit drops the row again (rs_bk's settle step). */
static void book_record_attempt(rs_bk *b)
{
    if (b->hold != 0 && b->seats == NULL) { /* {"holdId"}: its seats first */
        rs_holdbk_lookup(b, book_record_attempt);
        return;
    }
    if (app->pay == NULL) {
        rs_bk_lock(b);
        return;
    }
    char perf[RS_BK_INT_MAX], user[RS_BK_INT_MAX];
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    snprintf(user, sizeof(user), "%" PRId64, b->user);
    const char *params[] = {b->reference, perf, user, b->seats_param};
    rs_bk_move(b, BK_RECORDING);
    if (rs_db_exec(app->db, "bk_attempt_new", 4, params, book_attempt_recorded, b) == NULL)
        rs_bk_fail_unavailable(b);
}

static void book_idem_looked_up(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok) {
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        rs_bk_answer(b);
        return;
    }
    if (PQntuples(res->pg) > 0) {
        rs_bk_replay(b, res->pg, 0, 0);
        rs_bk_answer(b);
        return;
    }
    rs_bk_check_perf(b, book_record_attempt);
}

/* Validates {"userId"?, "seatIds"} into b; false after answering 400 (or 403: a customer
 * naming another user). */
static bool book_parse(rs_bk *b, json_t *body)
{
    rs_req *r = b->r;
    int64_t asked = 0;
    bool has_asked = false;
    if (!rs_json_get_int(r, body, "userId", false, 1, INT64_MAX, &asked, &has_asked) ||
        !rs_auth_acting_user(r, has_asked, asked, &b->user) || !rs_bk_parse_seats(b, body))
        return false;
    /* the fingerprint keeps the request's order */
    return rs_bk_fingerprint(b, "perf=%" PRId64 ";user=%" PRId64 ";seats=%s", b->perf, b->user,
                             b->seats_param);
}

static void book_make_reference(rs_bk *b)
{
    uint8_t rnd[4] = {0, 0, 0, 0};
    if (cm_rand_bytes(rnd, sizeof(rnd)) != CM_OK)
        rnd[0] = (uint8_t)cm_rand_range(0, 255);
    snprintf(b->reference, sizeof(b->reference), "%s-%" PRIu64 "-%02x%02x%02x%02x",
             app->instance_id, b->seq, rnd[0], rnd[1], rnd[2], rnd[3]);
}

static void book_post(rs_req *r)
{
    json_t *body = rs_req_json(r);
    if (body == NULL)
        return;
    rs_bk *b = rs_bk_new(r, RS_BK_BOOK, book_body);
    if (b == NULL)
        return;
    b->perf = rs_req_id(r, 0);
    if (!(rs_holdbk_asked(body) ? rs_holdbk_parse(b, body) : book_parse(b, body))) {
        rs_bk_free(b);
        return;
    }
    if (!rs_idem_key_get(r, b->key)) {
        rs_bk_free(b);
        return;
    }
    book_make_reference(b);
    if (b->key[0] == '\0') {
        rs_bk_check_perf(b, book_record_attempt);
        return;
    }
    rs_bk_move(b, BK_IDEM_LOOKUP);
    if (rs_idem_lookup(app->db, b->key, book_idem_looked_up, b) == NULL) {
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        rs_bk_answer(b);
    }
}

/* ---------------------------------------------------------------- cancellation */

static void cancel_done(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return;
    if (strcmp(PQgetvalue(res->pg, 0, 0), "t") == 0) {
        snprintf(b->cancel_ref, sizeof(b->cancel_ref), "%s", PQgetvalue(res->pg, 0, 1));
        snprintf(b->cancel_pay, sizeof(b->cancel_pay), "%s", PQgetvalue(res->pg, 0, 2));
        b->changed = true;
    }
    if (rs_bk_lock_lost(b)) {
        rs_bk_fail_lost(b);
        return;
    }
    read_back(b);
}

static void cancel_body(rs_bk *b)
{
    char id[RS_BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    bool db_mode = rs_bk_db_mode();
    const char *params[] = {id, db_mode ? NULL : b->fence, db_mode ? "true" : "false"};
    book_exec(b, "bk_cancel", 3, params, cancel_done);
}

static void cancel_got_head(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok) {
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        rs_bk_answer(b);
        return;
    }
    if (PQntuples(res->pg) == 0) {
        rs_bk_set_error(b, 404, "NOT_FOUND", NULL, "reservation %" PRId64 " not found", b->res_id);
        rs_bk_answer(b);
        return;
    }
    b->perf = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    if (strcmp(PQgetvalue(res->pg, 0, 1), "CANCELLED") == 0) {
        rs_resv_answer(b->r, b->res_id); /* idempotent: the same 200 */
        rs_bk_free(b);
        return;
    }
    rs_bk_lock(b);
}

static void cancel_delete(rs_req *r)
{
    rs_bk *b = rs_bk_new(r, RS_BK_CANCEL, cancel_body);
    if (b == NULL)
        return;
    b->res_id = rs_req_id(r, 0);
    char id[RS_BK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, b->res_id);
    char owner[24];
    const char *params[] = {id, rs_auth_owner_param(r, owner)};
    rs_bk_move(b, BK_HEAD);
    if (rs_db_exec(app->db, "bk_res_head", 2, params, cancel_got_head, b) == NULL) {
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "database unavailable");
        rs_bk_answer(b);
    }
}

/* ---------------------------------------------------------------- module */

/* One table for the four routes, so Allow lists GET before DELETE on /reservations/{id}. */
const rs_route rs_booking_routes[] = {
    {RS_POST, "/performances/{id}/reservations", "reservation_create", book_post, RS_ACCESS_USER},
    {RS_GET, "/reservations/{id}", "reservation_get", rs_resv_get, RS_ACCESS_USER},
    {RS_DELETE, "/reservations/{id}", "reservation_cancel", cancel_delete, RS_ACCESS_USER},
    {RS_GET, "/users/{id}/reservations", "user_reservations", rs_resv_list_user, RS_ACCESS_USER},
};
const size_t rs_booking_nroutes = CM_ARRAY_LEN(rs_booking_routes);

void rs_booking_register(rs_db *db)
{
    rs_db_register(db, book_stmts, CM_ARRAY_LEN(book_stmts));
    rs_bk_register(db);
    rs_idem_register(db);
    rs_resv_register(db);
}

cm_rc rs_booking_start(rs_app *a)
{
    app = a;
    rs_testhook_load();
    return rs_bk_start(a);
}

void rs_booking_free(void)
{
    rs_bk_stop();
}
