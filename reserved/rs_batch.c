/*
 * rs_batch: group booking (contract in rs_batch.h). A batch is one lock waiter, one
 * connection and one transaction for many bookings of one performance:
 *   BEGIN (early, while first in line, or after the grant)
 *   rs_book_batch: the fence once, then each booking in its own subtransaction
 *   the charges of the booked members, all at once
 *   [drop the attempts of free bookings] [capture the approved ones: attempt CAPTURED,
 *   payment id, read-back, one statement] [read back the rest] [store the success records
 *   of members with a key] [rs_book_undo of booked members that must not commit]
 *   COMMIT; the connection back; the lock released; each member to rs_bk_batch_over.
 * Every step checks the lock (a LOST push aborts the whole batch: ROLLBACK, every member
 * 503, every payment compensated by rs_bk's settle step). A whole statement that fails
 * fails every member still open with that statement's answer.
 */
#include "rs_batch.h"

#include <assert.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cm_hash.h"
#include "cm_log.h"
#include "cm_time.h"
#include "rs_metrics.h"
#include "rs_pay.h"
#include "rs_resv.h"
#include "rs_testhook.h"

static const rs_db_stmt rb_stmts[] = {
    {"rb_book",
     "SELECT o_i, o_id, o_total, o_state, o_message, o_detail, o_hash, o_status, o_response"
     " FROM rs_book_batch($1::bigint, $2::numeric, $3::bigint[], $4::text[], $5::text[],"
     " $6::text[])",
     6},
    /* without a gateway: the same and the read-back of each booking, one round trip */
    {"rb_book_read",
     "SELECT * FROM rs_book_batch_read($1::bigint, $2::numeric, $3::bigint[],"
     " $4::text[], $5::text[], $6::text[])",
     6},
    /* free bookings (nothing to charge): their attempt rows go with the transaction */
    {"rb_drop",
     "DELETE FROM payment_attempts WHERE reference = ANY ($1::text[])"
     " AND status = 'PENDING'",
     1},
    /* bk_capture for many: a member missing from the rows had its attempt claimed by
     * the reconciler first (it cancels the payment), so it must not commit */
    {"rb_capture",
     "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])"
     " AS v(ref, pid, amount, res)),"
     " a AS (UPDATE payment_attempts pa SET status = 'CAPTURED', payment_id = v.pid,"
     " amount = v.amount, updated_at = now() FROM v"
     " WHERE pa.reference = v.ref AND pa.status IN ('PENDING', 'APPROVED')"
     " RETURNING v.res, v.pid),"
     " r AS (UPDATE reservations SET payment_id = a.pid FROM a WHERE reservations.id = a.res"
     " RETURNING reservations.*)"
     " SELECT " RS_RESV_COLS " FROM r" RS_RESV_JOIN " ORDER BY r.id, s.seat_id",
     4},
    {"rb_read",
     "SELECT " RS_RESV_COLS " FROM reservations r" RS_RESV_JOIN
     " WHERE r.id = ANY ($1::bigint[]) ORDER BY r.id, s.seat_id",
     1},
    {"rb_undo", "SELECT rs_book_undo($1::bigint[])", 1},
};

/* The first column of the read-back in rb_book_read's rows (after rs_book_batch's). */
#define RB_READ_COL 9

/* How long a performance counts as contended after a batch of two or more of it ended
 * here: the turn of the lock comes back to a process after the other processes' turns
 * (each up to RS_PERFLOCK_CHAIN_MS), and the booking that finds the performance idle in
 * its process in between must lead a batch, not take the lock for itself alone. */
#define RB_CONTENDED_MS 1000
/* At most this many performances remembered as contended; past it, entries out of time
 * are dropped, and a performance that finds no room is simply not remembered. */
#define RB_CONTENDED_MAX 4096

struct rs_batch {
    LIST_ENTRY(rs_batch) link; /* in rbs.all */
    rs_batch_state state;      /* moved by rb_move only */
    uint64_t seq;              /* process-unique, for the debug log */
    int64_t perf;
    rs_bk **m; /* members in arrival order; m[0] is the leader (the lock waiter's arg) */
    size_t n;
    struct rs_perflock_waiter *lockw; /* queued for or holding the lock; NULL once refused */
    char fence[RS_BK_INT_MAX];        /* the grant's */
    rs_db_req *early;                 /* RB_EARLY_LEASING */
    rs_db_conn *conn;                 /* from (early-)beginning until done */
    struct event *pause;              /* test hooks */
    uint64_t ready_us;                /* when the early transaction began (EARLY_READY) */
    size_t charging;                  /* charges out */
    size_t cursor;                    /* RB_STORING: the next member to look at */
};

static struct {
    rs_app *app;
    rs_perflock *locks;
    size_t max;                /* lock.batch_max */
    cm_hash *forming;          /* perf -> the batch taking joins */
    LIST_HEAD(, rs_batch) all; /* every batch alive (freed by rs_batch_stop at shutdown) */
    uint64_t counter;
    cm_hash *contended; /* perf -> rb_contended: a batch of 2+ of it ended lately */
} rbs;

typedef struct rb_contended {
    uint64_t until_us; /* contended until then */
} rb_contended;

/* ---------------------------------------------------------------- states */

static const char *const rb_names[RB_NSTATES] = {
    [RB_FORMING] = "forming",
    [RB_EARLY_LEASING] = "early-leasing",
    [RB_EARLY_BEGINNING] = "early-beginning",
    [RB_EARLY_READY] = "early-ready",
    [RB_LEASING] = "leasing",
    [RB_BEGINNING] = "beginning",
    [RB_REFUSED_BEGINNING] = "refused-beginning",
    [RB_BOOKING] = "booking",
    [RB_CHARGING] = "charging",
    [RB_DROPPING] = "dropping",
    [RB_CAPTURING] = "capturing",
    [RB_READING] = "reading",
    [RB_STORING] = "storing",
    [RB_UNDOING] = "undoing",
    [RB_PAUSED] = "paused",
    [RB_COMMITTING] = "committing",
    [RB_UNWINDING] = "unwinding",
    [RB_DONE] = "done",
};

_Static_assert(RB_NSTATES <= 32, "one bit per state in an unsigned");
#define TO(s) RB_STEP(s)
/* From an open transaction whose work is done or failed: the test pause, COMMIT, or
 * the unwind. */
#define RB_END_TXN (TO(RB_PAUSED) | TO(RB_COMMITTING) | TO(RB_UNWINDING))

static const unsigned rb_moves[RB_NSTATES] = {
    /* next in line; granted; refused */
    [RB_FORMING] = TO(RB_EARLY_LEASING) | TO(RB_LEASING) | TO(RB_DONE),
    /* no connection; the connection; granted; refused */
    [RB_EARLY_LEASING] = TO(RB_FORMING) | TO(RB_EARLY_BEGINNING) | TO(RB_LEASING) | TO(RB_DONE),
    /* BEGIN failed; BEGIN done; granted; refused */
    [RB_EARLY_BEGINNING] =
        TO(RB_FORMING) | TO(RB_EARLY_READY) | TO(RB_BEGINNING) | TO(RB_REFUSED_BEGINNING),
    /* granted; refused */
    [RB_EARLY_READY] = TO(RB_BOOKING) | TO(RB_UNWINDING),
    /* the connection; none */
    [RB_LEASING] = TO(RB_BEGINNING) | TO(RB_DONE),
    /* BEGIN done; BEGIN failed (a new lease); the lock lost before BEGIN */
    [RB_BEGINNING] = TO(RB_BOOKING) | TO(RB_LEASING) | TO(RB_DONE),
    /* BEGIN done: roll back; failed: nothing to roll back */
    [RB_REFUSED_BEGINNING] = TO(RB_UNWINDING) | TO(RB_DONE),
    [RB_BOOKING] = TO(RB_CHARGING) | TO(RB_DROPPING) | TO(RB_CAPTURING) | TO(RB_READING) |
                   TO(RB_STORING) | TO(RB_UNDOING) | RB_END_TXN,
    [RB_CHARGING] = TO(RB_DROPPING) | TO(RB_CAPTURING) | TO(RB_READING) | TO(RB_STORING) |
                    TO(RB_UNDOING) | RB_END_TXN,
    [RB_DROPPING] =
        TO(RB_CAPTURING) | TO(RB_READING) | TO(RB_STORING) | TO(RB_UNDOING) | RB_END_TXN,
    [RB_CAPTURING] = TO(RB_READING) | TO(RB_STORING) | TO(RB_UNDOING) | RB_END_TXN,
    [RB_READING] = TO(RB_STORING) | TO(RB_UNDOING) | RB_END_TXN,
    [RB_STORING] = TO(RB_UNDOING) | RB_END_TXN,
    [RB_UNDOING] = RB_END_TXN,
    [RB_PAUSED] = TO(RB_COMMITTING) | TO(RB_UNWINDING),
    /* the transaction is over either way */
    [RB_COMMITTING] = TO(RB_DONE),
    [RB_UNWINDING] = TO(RB_DONE),
    [RB_DONE] = 0,
};

/* The finishing steps in the order a batch takes them. */
static const rs_batch_state rb_fin_steps[] = {RB_DROPPING, RB_CAPTURING, RB_READING, RB_STORING,
                                              RB_UNDOING};

const char *rs_batch_state_name(rs_batch_state s)
{
    return s < RB_NSTATES ? rb_names[s] : "?";
}

bool rs_batch_state_legal(rs_batch_state from, rs_batch_state to)
{
    return from < RB_NSTATES && to < RB_NSTATES && (rb_moves[from] & TO(to)) != 0;
}

void rs_batch_state_move(rs_batch_state *s, rs_batch_state to, uint64_t id)
{
    log_debug("batch %" PRIu64 ": %s -> %s", id, rs_batch_state_name(*s), rs_batch_state_name(to));
    assert(rs_batch_state_legal(*s, to));
    *s = to;
}

static void rb_move(rs_batch *x, rs_batch_state to)
{
    rs_batch_state_move(&x->state, to, x->seq);
}

/* ---------------------------------------------------------------- the rules */

bool rs_batch_member_in(const rs_bk *b, rs_batch_state step)
{
    bool booked_open = b->out == RS_BK_OUT_NONE && b->res_id > 0;
    switch (step) {
    case RB_DROPPING: /* booked, free: the attempt row was never charged */
        return booked_open && b->pay == RS_BK_PAY_RECORDED;
    case RB_CAPTURING:
        return booked_open && b->pay == RS_BK_PAY_APPROVED;
    case RB_READING: /* booked with nothing to capture (after DROPPING, pay is NONE) */
        return booked_open && (b->pay == RS_BK_PAY_NONE || b->pay == RS_BK_PAY_RECORDED);
    case RB_STORING:
        return b->out == RS_BK_OUT_OK && b->key[0] != '\0';
    case RB_UNDOING: /* booked, but failed since (payment, capture, record) */
        return b->out == RS_BK_OUT_ERROR && b->res_id > 0;
    default:
        return false;
    }
}

unsigned rs_batch_steps(rs_bk *const *m, size_t n)
{
    unsigned steps = 0;
    for (size_t s = 0; s < CM_ARRAY_LEN(rb_fin_steps); s++)
        for (size_t i = 0; i < n; i++)
            if (rs_batch_member_in(m[i], rb_fin_steps[s]))
                steps |= RB_STEP(rb_fin_steps[s]);
    /* members READING will be once DROPPING is done; STORING once CAPTURING/READING set
     * their answers */
    if (steps & (RB_STEP(RB_CAPTURING) | RB_STEP(RB_READING)))
        for (size_t i = 0; i < n; i++)
            if (m[i]->key[0] != '\0' && m[i]->out == RS_BK_OUT_NONE && m[i]->res_id > 0)
                steps |= RB_STEP(RB_STORING);
    return steps;
}

void rs_batch_pg_array(cm_strbuf *out, const char *const *items, size_t n)
{
    cm_strbuf_printf(out, "{");
    for (size_t i = 0; i < n; i++) {
        cm_strbuf_printf(out, "%s\"", i > 0 ? "," : "");
        for (const char *p = items[i]; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                cm_strbuf_printf(out, "\\");
            cm_strbuf_printf(out, "%c", *p);
        }
        cm_strbuf_printf(out, "\"");
    }
    cm_strbuf_printf(out, "}");
}

/* ---------------------------------------------------------------- the end */

static rs_batch *rb_forming(int64_t perf)
{
    return rbs.forming != NULL ? cm_hash_get_u64(rbs.forming, (uint64_t)perf) : NULL;
}

/* No more joins. */
static void rb_close(rs_batch *x)
{
    if (rb_forming(x->perf) == x)
        cm_hash_del_u64(rbs.forming, (uint64_t)x->perf);
}

static bool rb_open(const rs_bk *b)
{
    return b->out == RS_BK_OUT_NONE || b->out == RS_BK_OUT_OK;
}

/* Every member whose booking could still commit gets this answer instead. */
static void rb_fail_open(rs_batch *x, int status, const char *code, const char *msg)
{
    for (size_t i = 0; i < x->n; i++)
        if (rb_open(x->m[i]))
            rs_bk_set_error(x->m[i], status, code, NULL, "%s", msg);
}

static void rb_fail_open_db(rs_batch *x, const rs_db_result *res)
{
    for (size_t i = 0; i < x->n; i++)
        if (rb_open(x->m[i]))
            rs_bk_set_db_error(x->m[i], res);
}

static void rb_free(rs_batch *x)
{
    LIST_REMOVE(x, link);
    if (x->pause != NULL)
        event_free(x->pause);
    free(x->m);
    free(x);
}

static void rb_contended_note(int64_t perf);

/* The transaction is over (or never began): the connection back, then the lock (after:
 * the next holder never meets our row locks), then every member goes on alone. A batch
 * of two or more marks its performance contended first. */
static void rb_end(rs_batch *x, bool committed)
{
    if (x->n >= 2)
        rb_contended_note(x->perf);
    if (x->conn != NULL) {
        rs_db_conn_return(x->conn);
        x->conn = NULL;
    }
    rb_move(x, RB_DONE);
    rb_close(x);
    struct rs_perflock_waiter *w = x->lockw;
    x->lockw = NULL;
    if (w != NULL)
        rs_perflock_release(w);
    for (size_t i = 0; i < x->n; i++)
        rs_bk_batch_over(x->m[i], committed);
    rb_free(x);
}

static void rb_rolled_back(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!res->ok)
        log_warn("batch ROLLBACK failed: %s (the connection is replaced)", res->message);
    rb_end(x, false);
}

/* From an open transaction with nothing out: ROLLBACK, then the end. */
static void rb_unwind(rs_batch *x)
{
    rb_move(x, RB_UNWINDING);
    if (rs_db_conn_sql(x->conn, "ROLLBACK", rb_rolled_back, x) != CM_OK)
        rb_end(x, false); /* rs_db_conn_return rolls back what is open */
}

static bool rb_lost(const rs_batch *x)
{
    return x->lockw != NULL && rs_perflock_lost(x->lockw);
}

/* A LOST push: nothing of this batch may commit. */
static void rb_abort_lost(rs_batch *x)
{
    rb_fail_open(x, 503, "UNAVAILABLE", "the performance lock was lost; nothing was booked");
    rb_unwind(x);
}

/* A statement of the open transaction failed as a whole. */
static void rb_abort_db(rs_batch *x, const rs_db_result *res)
{
    rb_fail_open_db(x, res);
    rb_unwind(x);
}

static void rb_abort_unavailable(rs_batch *x)
{
    rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
    rb_unwind(x);
}

/* ---------------------------------------------------------------- commit */

static void rb_commit_done(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!res->ok && res->unavailable) {
        /* The COMMIT may or may not have happened: the reconciler decides from the
         * database (it cancels only attempts without a CONFIRMED reservation). */
        log_error("performance %" PRId64 ": batch COMMIT outcome unknown (%s); its %zu payment "
                  "attempts are left to the reconciler",
                  x->perf, res->message, x->n);
        for (size_t i = 0; i < x->n; i++)
            if (x->m[i]->pay == RS_BK_PAY_APPROVED || x->m[i]->pay == RS_BK_PAY_SENT)
                x->m[i]->pay = RS_BK_PAY_NONE;
        rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
        rb_end(x, false);
        return;
    }
    if (!res->ok) {
        rb_fail_open_db(x, res);
        rb_end(x, false);
        return;
    }
    rb_end(x, true);
}

static void rb_commit_now(rs_batch *x)
{
    if (rb_lost(x)) {
        rb_abort_lost(x);
        return;
    }
    rb_move(x, RB_COMMITTING);
    if (rs_db_conn_sql(x->conn, "COMMIT", rb_commit_done, x) != CM_OK) {
        rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
        rb_end(x, false);
    }
}

static void rb_locked(rs_batch *x);

static void rb_pause_done(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    rs_batch *x = arg;
    if (x->state == RB_PAUSED)
        rb_commit_now(x); /* the pause before COMMIT */
    else
        rb_locked(x); /* the pause after the lock */
}

/* Test hooks: the batch waits ms, then rb_pause_done goes on. */
static bool rb_pause(rs_batch *x, uint32_t ms, const char *what)
{
    if (ms == 0)
        return false;
    if (x->pause == NULL)
        x->pause = evtimer_new(rbs.app->base, rb_pause_done, x);
    struct timeval tv = cm_tv_from_ms(ms);
    if (x->pause == NULL || evtimer_add(x->pause, &tv) != 0)
        return false;
    log_warn("test hook: booking on performance %" PRId64 " paused %u ms %s (a batch of %zu)",
             x->perf, ms, what, x->n);
    return true;
}

/* ---------------------------------------------------------------- finishing steps */

static void rb_next(rs_batch *x);

/* The member with reservation id (a read-back row's first column), or NULL. */
static rs_bk *rb_member_by_res(const rs_batch *x, int64_t res_id)
{
    for (size_t i = 0; i < x->n; i++)
        if (x->m[i]->res_id == res_id)
            return x->m[i];
    return NULL;
}

/* Rows of RS_RESV_COLS (ordered by reservation): each reservation becomes its member's
 * answer; a member of `step` that has no rows gets `missing` (a 503) instead. */
static void rb_take_reservations(rs_batch *x, const PGresult *pg, rs_batch_state step,
                                 const char *missing)
{
    int row = 0, rows = PQntuples(pg);
    while (row < rows) {
        rs_bk *b = rb_member_by_res(x, strtoll(PQgetvalue(pg, row, 0), NULL, 10));
        json_t *j = rs_resv_json(pg, &row);
        if (b != NULL && rs_batch_member_in(b, step))
            rs_bk_set_body(b, 201, j);
        else
            json_decref(j);
    }
    for (size_t i = 0; i < x->n; i++) {
        if (!rs_batch_member_in(x->m[i], step))
            continue;
        if (step == RB_CAPTURING)
            log_warn("payment attempt %s was claimed by the reconciler before the commit: "
                     "that booking is taken back",
                     x->m[i]->reference);
        rs_bk_set_error(x->m[i], 503, "UNAVAILABLE", NULL, "%s", missing);
    }
}

static bool rb_stmt_ok(rs_batch *x, const rs_db_result *res)
{
    if (!res->ok) {
        log_warn("performance %" PRId64 ": batch %s failed: %s %s", x->perf,
                 rs_batch_state_name(x->state), res->sqlstate, res->message);
        rb_abort_db(x, res);
        return false;
    }
    if (rb_lost(x)) {
        rb_abort_lost(x);
        return false;
    }
    return true;
}

static void rb_dropped(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!rb_stmt_ok(x, res))
        return;
    for (size_t i = 0; i < x->n; i++)
        if (rs_batch_member_in(x->m[i], RB_DROPPING))
            x->m[i]->pay = RS_BK_PAY_NONE;
    rb_next(x);
}

static void rb_captured(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!rb_stmt_ok(x, res))
        return;
    rb_take_reservations(x, res->pg, RB_CAPTURING, "the payment could not be confirmed; retry");
    rb_next(x);
}

static void rb_read(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!rb_stmt_ok(x, res))
        return;
    rb_take_reservations(x, res->pg, RB_READING, "reservation vanished");
    rb_next(x);
}

static void rb_store_next(rs_batch *x);

static void rb_stored(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!rb_stmt_ok(x, res))
        return;
    rs_bk *b = x->m[x->cursor++];
    if (PQntuples(res->pg) == 0) /* across a hash collision only: see rs_booking */
        rs_bk_set_error(b, 503, "BUSY", NULL, "a request with this Idempotency-Key is in progress");
    rb_store_next(x);
}

/* The success records, one member at a time (the statement is per key). */
static void rb_store_next(rs_batch *x)
{
    while (x->cursor < x->n && !rs_batch_member_in(x->m[x->cursor], RB_STORING))
        x->cursor++;
    if (x->cursor == x->n) {
        rb_next(x);
        return;
    }
    rs_bk *b = x->m[x->cursor];
    if (rs_idem_store(rbs.app->db, x->conn, b->key, b->fingerprint, 201, b->body_json, rb_stored,
                      x) != CM_OK)
        rb_abort_unavailable(x);
}

static void rb_undone(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!rb_stmt_ok(x, res))
        return;
    for (size_t i = 0; i < x->n; i++)
        if (rs_batch_member_in(x->m[i], RB_UNDOING))
            x->m[i]->res_id = 0; /* taken back */
    rb_next(x);
}

/* Sends the statement of finishing step `step` over its members. */
static cm_rc rb_send_step(rs_batch *x, rs_batch_state step)
{
    cm_strbuf refs = CM_STRBUF_INIT, pids = CM_STRBUF_INIT, amounts = CM_STRBUF_INIT,
              ids = CM_STRBUF_INIT;
    const char **ref = calloc(x->n, sizeof(*ref));
    const char **pid = calloc(x->n, sizeof(*pid));
    size_t k = 0;
    cm_strbuf_printf(&amounts, "{");
    cm_strbuf_printf(&ids, "{");
    for (size_t i = 0; ref != NULL && pid != NULL && i < x->n; i++) {
        rs_bk *b = x->m[i];
        if (!rs_batch_member_in(b, step))
            continue;
        ref[k] = b->reference;
        pid[k] = b->payment_id;
        cm_strbuf_printf(&amounts, "%s%" PRId64, k > 0 ? "," : "", b->total);
        cm_strbuf_printf(&ids, "%s%" PRId64, k > 0 ? "," : "", b->res_id);
        k++;
    }
    cm_strbuf_printf(&amounts, "}");
    cm_strbuf_printf(&ids, "}");
    rs_batch_pg_array(&refs, ref, k);
    rs_batch_pg_array(&pids, pid, k);
    cm_rc rc = CM_ERR;
    if (ref != NULL && pid != NULL) {
        const char *p[] = {cm_strbuf_str(&refs), cm_strbuf_str(&pids), cm_strbuf_str(&amounts),
                           cm_strbuf_str(&ids)};
        const char *one[] = {step == RB_DROPPING ? p[0] : p[3]};
        switch (step) {
        case RB_DROPPING:
            rc = rs_db_conn_exec(x->conn, "rb_drop", 1, one, rb_dropped, x);
            break;
        case RB_CAPTURING:
            rc = rs_db_conn_exec(x->conn, "rb_capture", 4, p, rb_captured, x);
            break;
        case RB_READING:
            rc = rs_db_conn_exec(x->conn, "rb_read", 1, one, rb_read, x);
            break;
        case RB_UNDOING:
            rc = rs_db_conn_exec(x->conn, "rb_undo", 1, one, rb_undone, x);
            break;
        default:
            assert(!"not a statement step");
        }
    }
    free(ref);
    free(pid);
    cm_strbuf_free(&refs);
    cm_strbuf_free(&pids);
    cm_strbuf_free(&amounts);
    cm_strbuf_free(&ids);
    return rc;
}

static bool rb_seats_overlap(const rs_bk *a, const rs_bk *b)
{
    for (size_t i = 0; i < a->nseats; i++)
        for (size_t j = 0; j < b->nseats; j++)
            if (a->seats[i] == b->seats[j])
                return true;
    return false;
}

/* Whether a's refusal may have come from b, an earlier member of the batch: a seat b took
 * (SEAT_TAKEN), or seats b booked for the same user (LIMIT_EXCEEDED: the purchase limit
 * counted them). */
static bool rb_refused_by(const rs_bk *a, const rs_bk *b)
{
    if (strcmp(a->code, "SEAT_TAKEN") == 0)
        return rb_seats_overlap(a, b);
    return strcmp(a->code, "LIMIT_EXCEEDED") == 0 && a->user == b->user;
}

/* A member refused SEAT_TAKEN by a seat that an earlier member of this batch booked, or
 * LIMIT_EXCEEDED by seats an earlier member booked for the same user, and whose payment
 * then failed (that booking is taken back by RB_UNDOING), was refused by a booking that
 * will never commit: one at a time it may have been booked. It is told 503 BUSY ("retry",
 * with Retry-After) instead: a SEAT_TAKEN would be untrue after the COMMIT and would send
 * the buyer away from a free seat. Runs once, when the charges are back, before any
 * answer is stored. */
static void rb_unrefuse_displaced(rs_batch *x)
{
    for (size_t i = 0; i < x->n; i++) {
        rs_bk *b = x->m[i];
        if (b->out != RS_BK_OUT_ERROR || b->res_id > 0 || b->code == NULL)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (!rs_batch_member_in(x->m[j], RB_UNDOING) || !rb_refused_by(b, x->m[j]))
                continue;
            if (strcmp(b->code, "SEAT_TAKEN") == 0)
                rs_bk_set_error(b, 503, "BUSY", NULL,
                                "a seat asked for was held by a booking whose payment failed and "
                                "is free again: retry");
            else
                rs_bk_set_error(b, 503, "BUSY", NULL,
                                "the purchase limit counted a booking whose payment failed: "
                                "retry");
            break;
        }
    }
}

/* The next finishing step the members need after the current state, or the end of the
 * transaction: [test pause] COMMIT. */
static void rb_next(rs_batch *x)
{
    if (x->state == RB_CHARGING)
        rb_unrefuse_displaced(x);
    if (rb_lost(x)) {
        rb_abort_lost(x);
        return;
    }
    for (size_t s = 0; s < CM_ARRAY_LEN(rb_fin_steps); s++) {
        rs_batch_state step = rb_fin_steps[s];
        if (step <= x->state)
            continue;
        bool needed = false;
        for (size_t i = 0; i < x->n && !needed; i++)
            needed = rs_batch_member_in(x->m[i], step);
        if (!needed)
            continue;
        rb_move(x, step);
        if (step == RB_STORING) {
            x->cursor = 0;
            rb_store_next(x);
        } else if (rb_send_step(x, step) != CM_OK) {
            rb_abort_unavailable(x);
        }
        return;
    }
    for (size_t i = 0; i < x->n; i++)
        assert(x->m[i]->out != RS_BK_OUT_NONE); /* every member has its answer */
    rb_move(x, RB_PAUSED);
    if (!rb_pause(x, rs_testhooks_g.pause_before_commit_ms, "before COMMIT"))
        rb_commit_now(x);
}

/* ---------------------------------------------------------------- charges */

static void rb_charged(void *arg, rs_pay_outcome outcome, const char *payment_id)
{
    rs_bk *b = arg;
    rs_batch *x = b->batch;
    rs_bk_move(b, BK_BATCHED);
    switch (outcome) {
    case RS_PAY_APPROVED:
        rs_stats.payments_approved++;
        b->pay = RS_BK_PAY_APPROVED;
        snprintf(b->payment_id, sizeof(b->payment_id), "%s", payment_id);
        break;
    case RS_PAY_DECLINED:
        rs_stats.payments_declined++;
        b->pay = RS_BK_PAY_DECLINED;
        rs_bk_set_error(b, 402, "PAYMENT_DECLINED", NULL, "the payment was declined");
        break;
    default:
        rs_stats.payments_failed++;
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
        break;
    }
    assert(x->charging > 0);
    if (--x->charging == 0)
        rb_next(x);
}

/* The charges of every booked member with something to pay, all at once. */
static void rb_charge(rs_batch *x)
{
    rb_move(x, RB_CHARGING);
    x->charging = 1; /* held while sending: no callback can end the step early */
    for (size_t i = 0; i < x->n; i++) {
        rs_bk *b = x->m[i];
        if (!(b->out == RS_BK_OUT_NONE && b->res_id > 0 && b->pay == RS_BK_PAY_RECORDED &&
              b->total > 0))
            continue;
        b->pay = RS_BK_PAY_SENT;
        rs_bk_move(b, BK_BATCH_CHARGING);
        if (rs_pay_charge(rbs.app->pay, b->reference, b->total, rb_charged, b) == CM_OK) {
            x->charging++;
            continue;
        }
        b->pay = RS_BK_PAY_RECORDED;
        rs_bk_move(b, BK_BATCHED);
        rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "payment gateway unavailable");
    }
    if (--x->charging == 0)
        rb_next(x);
}

/* ---------------------------------------------------------------- the bookings */

static void rb_booked(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (!res->ok) {
        if (strcmp(res->sqlstate, "RBFEN") == 0)
            log_warn("performance %" PRId64 ": fence %s is stale (a newer lock holder committed):"
                     " a batch of %zu rolled back",
                     x->perf, x->fence, x->n);
        rb_abort_db(x, res);
        return;
    }
    /* one row per request (rb_book), or per request and seat (rb_book_read: the
     * reservation's columns from column RB_READ_COL, NULL when it booked nothing) */
    bool read_too = PQnfields(res->pg) > RB_READ_COL;
    int rows = PQntuples(res->pg);
    for (int row = 0; row < rows;) {
        long i = strtol(PQgetvalue(res->pg, row, 0), NULL, 10) - 1;
        if (i < 0 || (size_t)i >= x->n) {
            row++;
            continue;
        }
        rs_bk *b = x->m[i];
        const char *state = PQgetvalue(res->pg, row, 3);
        if (state[0] == '\0') {
            b->res_id = strtoll(PQgetvalue(res->pg, row, 1), NULL, 10);
            b->total = strtoll(PQgetvalue(res->pg, row, 2), NULL, 10);
            if (read_too && !PQgetisnull(res->pg, row, RB_READ_COL)) {
                rs_bk_set_body(b, 201, rs_resv_json_at(res->pg, &row, RB_READ_COL));
                continue; /* past its rows */
            }
        } else if (strcmp(state, "REPLAY") == 0) {
            rs_bk_replay(b, res->pg, row, 6);
        } else {
            rs_db_result one = {.ok = false,
                                .pg = NULL,
                                .sqlstate = state,
                                .message = PQgetvalue(res->pg, row, 4),
                                .detail = PQgetvalue(res->pg, row, 5)};
            rs_bk_set_db_error(b, &one);
        }
        row++;
    }
    for (size_t i = 0; i < x->n; i++)
        if (x->m[i]->out == RS_BK_OUT_NONE && x->m[i]->res_id <= 0)
            rs_bk_set_error(x->m[i], 503, "UNAVAILABLE", NULL, "database unavailable");
    if (rb_lost(x)) {
        rb_abort_lost(x);
        return;
    }
    for (size_t i = 0; i < x->n; i++) {
        rs_bk *b = x->m[i];
        if (b->out == RS_BK_OUT_NONE && b->pay == RS_BK_PAY_RECORDED && b->total > 0) {
            rb_charge(x);
            return;
        }
    }
    rb_next(x);
}

/* With the lock and an open transaction: every member's booking in one statement. */
static void rb_book(rs_batch *x)
{
    if (rb_lost(x)) {
        rb_move(x, RB_BOOKING);
        rb_abort_lost(x);
        return;
    }
    rb_move(x, RB_BOOKING);
    rs_stats.batches++;
    rs_stats.batch_bookings += x->n;
    cm_hist_observe_us(&rs_stats.batch_size, (uint64_t)x->n * 1000000u);
    log_debug("performance %" PRId64 ": batch %" PRIu64 " books %zu", x->perf, x->seq, x->n);
    const char **seats = calloc(x->n, sizeof(*seats));
    const char **refs = calloc(x->n, sizeof(*refs));
    const char **keys = calloc(x->n, sizeof(*keys));
    cm_strbuf users = CM_STRBUF_INIT, s = CM_STRBUF_INIT, r = CM_STRBUF_INIT, k = CM_STRBUF_INIT;
    cm_rc rc = CM_ERR;
    if (seats != NULL && refs != NULL && keys != NULL) {
        cm_strbuf_printf(&users, "{");
        for (size_t i = 0; i < x->n; i++) {
            snprintf(x->m[i]->fence, sizeof(x->m[i]->fence), "%s", x->fence);
            cm_strbuf_printf(&users, "%s%" PRId64, i > 0 ? "," : "", x->m[i]->user);
            seats[i] = x->m[i]->seats_param;
            refs[i] = x->m[i]->reference;
            keys[i] = x->m[i]->key;
        }
        cm_strbuf_printf(&users, "}");
        rs_batch_pg_array(&s, seats, x->n);
        rs_batch_pg_array(&r, refs, x->n);
        rs_batch_pg_array(&k, keys, x->n);
        char perf[RS_BK_INT_MAX];
        snprintf(perf, sizeof(perf), "%" PRId64, x->perf);
        const char *params[] = {perf,
                                x->fence,
                                cm_strbuf_str(&users),
                                cm_strbuf_str(&s),
                                cm_strbuf_str(&r),
                                cm_strbuf_str(&k)};
        bool read_too = rbs.app->pay == NULL; /* nothing between booking and read-back */
        rc = rs_db_conn_exec(x->conn, read_too ? "rb_book_read" : "rb_book", 6, params, rb_booked,
                             x);
    }
    free(seats);
    free(refs);
    free(keys);
    cm_strbuf_free(&users);
    cm_strbuf_free(&s);
    cm_strbuf_free(&r);
    cm_strbuf_free(&k);
    if (rc != CM_OK)
        rb_abort_unavailable(x);
}

/* ---------------------------------------------------------------- lock + transaction */

static void rb_lease(rs_batch *x);

static void rb_begun(void *arg, const rs_db_result *res)
{
    rs_batch *x = arg;
    switch (x->state) {
    case RB_EARLY_BEGINNING:
        if (res->ok) {
            x->ready_us = cm_now_us();
            rb_move(x, RB_EARLY_READY);
            return;
        }
        rs_db_conn_return(x->conn); /* no transaction: plain waiting again */
        x->conn = NULL;
        rb_move(x, RB_FORMING);
        return;
    case RB_BEGINNING:
        if (res->ok) {
            rb_book(x);
            return;
        }
        log_warn("batch BEGIN failed: %s (a new connection)", res->message);
        rs_db_conn_return(x->conn);
        x->conn = NULL;
        rb_move(x, RB_LEASING);
        rb_lease(x);
        return;
    case RB_REFUSED_BEGINNING:
        if (res->ok) {
            rb_unwind(x);
            return;
        }
        rb_end(x, false);
        return;
    default:
        assert(!"BEGIN answered in a state that sent none");
    }
}

static void rb_leased(void *arg, rs_db_conn *conn, const rs_db_result *res)
{
    rs_batch *x = arg;
    if (x->state == RB_EARLY_LEASING) {
        x->early = NULL; /* rs_db frees it after this callback */
        if (conn == NULL) {
            rb_move(x, RB_FORMING);
            return;
        }
        x->conn = conn;
        rb_move(x, RB_EARLY_BEGINNING);
        if (rs_db_conn_sql(conn, "BEGIN", rb_begun, x) != CM_OK) {
            rs_db_conn_return(conn);
            x->conn = NULL;
            rb_move(x, RB_FORMING);
        }
        return;
    }
    assert(x->state == RB_LEASING);
    if (conn == NULL) {
        log_warn("no database connection for a batch: %s", res != NULL ? res->message : "");
        rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
        rb_end(x, false);
        return;
    }
    x->conn = conn;
    rb_move(x, RB_BEGINNING);
    if (rb_lost(x)) {
        rb_fail_open(x, 503, "UNAVAILABLE", "the performance lock was lost; nothing was booked");
        rb_end(x, false);
        return;
    }
    if (rs_db_conn_sql(conn, "BEGIN", rb_begun, x) != CM_OK) {
        rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
        rb_end(x, false);
    }
}

/* Holding the performance lock: every other booking of it waits for this batch, so its
 * connection goes ahead of the pool's queue. */
static void rb_lease(rs_batch *x)
{
    if (rs_db_lease_urgent(rbs.app->db, rb_leased, x) != NULL)
        return;
    rb_fail_open(x, 503, "UNAVAILABLE", "database unavailable");
    rb_end(x, false);
}

/* The lock is the batch's: into the transaction, which an early lease may have opened. */
static void rb_locked(rs_batch *x)
{
    switch (x->state) {
    case RB_EARLY_LEASING:
        rs_db_cancel(x->early);
        x->early = NULL;
        /* fall through */
    case RB_FORMING:
        rb_move(x, RB_LEASING);
        rb_lease(x);
        return;
    case RB_EARLY_BEGINNING:
        rb_move(x, RB_BEGINNING); /* rb_begun goes on */
        return;
    case RB_EARLY_READY:
        rb_book(x);
        return;
    default:
        assert(!"granted a lock it did not wait for");
    }
}

void rs_batch_on_granted(rs_batch *x, uint64_t fence)
{
    snprintf(x->fence, sizeof(x->fence), "%" PRIu64, fence);
    rb_close(x); /* later bookings form the next batch, queued behind this one */
    if (rb_pause(x, rs_testhooks_g.pause_after_lock_ms, "after the lock"))
        return; /* the state still says forming: an early lease goes on meanwhile */
    rb_locked(x);
}

/* Whether member b has waited as long as a waiter may (rs_perflock rule 6: lock.wait_ms,
 * or the bound that stands for 0). */
static bool rb_out_of_time(const rs_bk *b, uint64_t now_us)
{
    return now_us - b->t0_us >= rs_perflock_wait_limit_ms(rbs.locks) * 1000;
}

/* A refusal meant for one waiter: as one booking alone would have been, the leader is
 * refused (and, for BUSY, every member that has waited lock.wait_ms); the others wait
 * on behind a new leader (rs_perflock rules 6 and 7: the next waiter gets an ACQUIRE of
 * its own). False when nobody is left to wait, or the new leader could not queue. */
static bool rb_requeue(rs_batch *x, rs_perflock_refusal why, const char *code)
{
    uint64_t now = cm_now_us();
    rs_bk **out = calloc(x->n, sizeof(*out));
    if (out == NULL)
        return false;
    size_t nout = 0, nin = 0;
    for (size_t i = 0; i < x->n; i++) {
        rs_bk *b = x->m[i];
        if (i == 0 || (why == RS_PERFLOCK_BUSY && rb_out_of_time(b, now)))
            out[nout++] = b;
        else
            x->m[nin++] = b;
    }
    if (nin == 0) {
        memcpy(x->m, out, nout * sizeof(*out)); /* all of them, in order */
        free(out);
        return false;
    }
    x->n = nin;
    log_debug("performance %" PRId64 ": batch %" PRIu64 " refused: %zu leave, %zu wait on", x->perf,
              x->seq, nout, nin);
    for (size_t i = 0; i < nout; i++) {
        rs_bk_set_refused(out[i], (int)why, code);
        rs_bk_batch_over(out[i], false);
    }
    free(out);
    x->lockw = rs_perflock_wait(rbs.locks, x->perf, x->m[0]);
    if (x->lockw != NULL) {
        /* the members behind the new leader count in the queue's bound; they were counted
         * before, so one that does not fit now still waits (the bound is not a refusal
         * of who is already in) */
        for (size_t i = 1; i < x->n; i++)
            if (rs_perflock_add(x->lockw) != CM_OK)
                break;
        return true;
    }
    for (size_t i = 0; i < x->n; i++)
        rs_bk_set_refused(x->m[i], RS_PERFLOCK_UNREACHABLE, "");
    return false;
}

void rs_batch_on_refused(rs_batch *x, rs_perflock_refusal why, const char *code)
{
    x->lockw = NULL; /* the handle is gone */
    /* an early transaction may idle one more lock.wait_ms only while PostgreSQL's
     * idle_in_transaction_session_timeout is not near (it would cut the connection) */
    const rs_config *cfg = &rbs.app->cfg;
    uint64_t idle_ms = (cm_now_us() - x->ready_us) / 1000 + rs_perflock_wait_limit_ms(rbs.locks);
    bool waiting =
        x->state == RB_FORMING || x->state == RB_EARLY_LEASING || x->state == RB_EARLY_BEGINNING ||
        (x->state == RB_EARLY_READY && idle_ms + 1000 < (uint64_t)cfg->db_idle_in_txn_timeout_ms);
    if (waiting && why != RS_PERFLOCK_UNREACHABLE && x->n > 1 && rb_requeue(x, why, code))
        return;
    rb_close(x);
    for (size_t i = 0; i < x->n; i++)
        if (x->m[i]->out == RS_BK_OUT_NONE) /* not answered by rb_requeue */
            rs_bk_set_refused(x->m[i], (int)why, code);
    switch (x->state) {
    case RB_EARLY_LEASING:
        rs_db_cancel(x->early);
        x->early = NULL;
        rb_end(x, false);
        return;
    case RB_EARLY_BEGINNING: /* its BEGIN is out: rolled back once it lands */
        rb_move(x, RB_REFUSED_BEGINNING);
        return;
    case RB_EARLY_READY:
        rb_unwind(x);
        return;
    default:
        rb_end(x, false);
        return;
    }
}

void rs_batch_on_lost(rs_batch *x)
{
    size_t open = 0;
    for (size_t i = 0; i < x->n; i++)
        open += rb_open(x->m[i]);
    rs_stats.bookings_lock_lost += open;
    log_warn("performance %" PRId64 ": lock lost (LOST push) during a batch of %zu: aborting",
             x->perf, x->n);
}

/* First in line while the lock is busy: lease the connection and send BEGIN now (see
 * rs_bk's bk_next_in_line: PostgreSQL takes no snapshot before the first statement). */
void rs_batch_on_next_in_line(rs_batch *x)
{
    if (x->state != RB_FORMING)
        return;
    rb_move(x, RB_EARLY_LEASING);
    x->early = rs_db_lease(rbs.app->db, rb_leased, x);
    if (x->early == NULL)
        rb_move(x, RB_FORMING);
}

/* ---------------------------------------------------------------- contention */

/* Whether a batch of two or more of perf ended here within RB_CONTENDED_MS. */
static bool rb_contended_now(int64_t perf)
{
    rb_contended *c = rbs.contended != NULL ? cm_hash_get_u64(rbs.contended, (uint64_t)perf) : NULL;
    if (c == NULL)
        return false;
    if (cm_now_us() < c->until_us)
        return true;
    free(cm_hash_del_u64(rbs.contended, (uint64_t)perf));
    return false;
}

static void rb_contended_sweep(uint64_t now)
{
    size_t pos = 0;
    uint64_t key;
    rb_contended *c;
    while ((c = cm_hash_next(rbs.contended, &pos, &key, NULL)) != NULL)
        if (now >= c->until_us)
            free(cm_hash_del_u64(rbs.contended, key));
}

static void rb_contended_note(int64_t perf)
{
    if (rbs.contended == NULL)
        return;
    uint64_t now = cm_now_us();
    rb_contended *c = cm_hash_get_u64(rbs.contended, (uint64_t)perf);
    if (c == NULL) {
        if (cm_hash_count(rbs.contended) >= RB_CONTENDED_MAX)
            rb_contended_sweep(now);
        if (cm_hash_count(rbs.contended) >= RB_CONTENDED_MAX || (c = malloc(sizeof(*c))) == NULL)
            return; /* not remembered: its next idle booking goes alone, as before */
        if (cm_hash_put_u64(rbs.contended, (uint64_t)perf, c) != CM_OK) {
            free(c);
            return;
        }
    }
    c->until_us = now + (uint64_t)RB_CONTENDED_MS * 1000;
}

/* ---------------------------------------------------------------- joining */

static bool rb_has_key(const rs_batch *x, const char *key)
{
    for (size_t i = 0; key[0] != '\0' && i < x->n; i++)
        if (strcmp(x->m[i]->key, key) == 0)
            return true;
    return false;
}

static rs_batch *rb_new(int64_t perf)
{
    rs_batch *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->m = calloc(rbs.max, sizeof(*x->m));
    if (x->m == NULL || cm_hash_put_u64(rbs.forming, (uint64_t)perf, x) != CM_OK) {
        free(x->m);
        free(x);
        return NULL;
    }
    LIST_INSERT_HEAD(&rbs.all, x, link);
    x->seq = ++rbs.counter;
    x->perf = perf;
    x->state = RB_FORMING;
    return x;
}

cm_rc rs_batch_join(rs_bk *b)
{
    /* a hold, and a booking of a hold (its claim is a statement of its own), go alone */
    if (rbs.max <= 1 || rbs.locks == NULL || b->op != RS_BK_BOOK || b->hold != 0)
        return CM_ERR;
    rs_batch *x = rb_forming(b->perf);
    /* A booking that finds its performance idle in this process goes alone, unbatched:
     * group booking pays only behind a lock that is busy, and with a gateway a batch of one
     * costs PostgreSQL more than the unbatched statement (1.39x fewer uncontended bookings
     * a second: docs/performance.md; without one, migration 150 books a batch of one with
     * the unbatched statement). The bookings that come while it waits or holds form a
     * batch behind it. Unless the performance is contended (a batch of 2+ of it ended here
     * within RB_CONTENDED_MS): idle here then means held by another process, and a
     * booking alone would take a whole turn of the lock (with payment, its charge too)
     * for one booking, while the batch forming behind it waits (docs/performance.md). */
    if (x == NULL && !rs_testhooks_g.batch_when_idle && rs_perflock_idle(rbs.locks, b->perf) &&
        !rb_contended_now(b->perf))
        return CM_ERR;
    if (x != NULL && rb_has_key(x, b->key))
        return CM_ERR; /* alone, behind the batch: it then finds the key's record */
    if (x != NULL && x->n == rbs.max) {
        rb_close(x); /* full: runs as it is once granted */
        x = NULL;
    }
    /* a member counts in the lock queue's bound as a waiter of its own would (rs_perflock
     * rule 10): beyond it, rs_bk_lock answers BUSY */
    if (x != NULL && x->lockw != NULL && rs_perflock_add(x->lockw) != CM_OK)
        return CM_ERR;
    bool leader = x == NULL;
    if (leader && (x = rb_new(b->perf)) == NULL)
        return CM_ERR;
    rs_bk_move(b, BK_BATCHED);
    b->batch = x;
    x->m[x->n++] = b;
    if (!leader)
        return CM_OK;
    /* the leader is the lock queue's waiter for the whole batch (next_in_line may come
     * inside rs_perflock_wait: the batch is ready for it) */
    x->lockw = rs_perflock_wait(rbs.locks, b->perf, b);
    if (x->lockw == NULL) {
        if (rs_perflock_full(rbs.locks, b->perf))
            rs_bk_set_refused(b, RS_PERFLOCK_BUSY, "");
        else
            rs_bk_set_error(b, 503, "UNAVAILABLE", NULL, "lock service unavailable");
        rb_end(x, false);
    }
    return CM_OK;
}

/* ---------------------------------------------------------------- module */

void rs_batch_register(rs_db *db)
{
    rs_db_register(db, rb_stmts, CM_ARRAY_LEN(rb_stmts));
}

void rs_batch_start(rs_app *app, rs_perflock *locks)
{
    rbs.app = app;
    rbs.locks = locks;
    rbs.max = (size_t)app->cfg.lock_batch_max;
    LIST_INIT(&rbs.all);
    rbs.forming = cm_hash_new(CM_HASH_U64);
    if (rbs.forming == NULL)
        rbs.max = 1; /* one booking per transaction: no table needed */
    /* NULL: nothing remembered, every idle booking goes alone as before */
    rbs.contended = cm_hash_new(CM_HASH_U64);
}

void rs_batch_stop(void)
{
    /* batches still waiting for their lock at shutdown: their members were answered by
     * the shutdown, the lock queue frees their waiters */
    while (!LIST_EMPTY(&rbs.all))
        rb_free(LIST_FIRST(&rbs.all));
    cm_hash_free(rbs.forming);
    rbs.forming = NULL;
    if (rbs.contended != NULL) {
        rb_contended_sweep(UINT64_MAX);
        cm_hash_free(rbs.contended);
        rbs.contended = NULL;
    }
    rbs.locks = NULL;
}
