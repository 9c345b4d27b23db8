/*
 * rs_holds: seat holds (contract in rs_holds.h).
 *
 * POST /performances/{id}/holds: parse (the seat rules of a booking) -> the performance
 * exists (rs_bk_check_perf: 404 before anything) -> the booking machine's lock and
 * transaction (rs_bk_lock) -> hold_body: rs_hold_take (fence or FOR UPDATE, seats in the
 * venue, sold or held, the purchase limit, the rows) -> COMMIT -> 201. Its failures are a
 * booking's (rs_bk_fail_db maps rs_hold_take's SQLSTATEs as rs_book's).
 * DELETE /holds/{id}: one autocommit call of rs_hold_release; no lock (freeing seats
 * never makes one taken).
 */
#include "rs_holds.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "rs_auth.h"
#include "rs_bk.h"
#include "rs_dberr.h"
#include "rs_holdbk.h"
#include "rs_holdsweep.h"

rs_hold_counts rs_hold_stats;

/* The columns of one hold (migration 120's rs_hold_row): id, performance_id, user_id,
 * status, expires_at (RFC 3339), seat ids ("1,2,3"). */
static const rs_db_stmt hd_stmts[] = {
    {"hd_take",
     "SELECT * FROM rs_hold_take($1::bigint, $2::bigint, $3::bigint[], $4::numeric,"
     " $5::boolean, $6::bigint)",
     6},
    /* $2: the caller's id (a customer releases only its own) or NULL (an admin); the 7th
     * column says whether this call released it */
    {"hd_release", "SELECT * FROM rs_hold_release($1::bigint, $2::bigint)", 2},
};

/* The hold of row `row` (the columns above) as the API shows it; NULL when out of memory. */
static json_t *hd_json(const PGresult *pg, int row)
{
    json_t *ids = rs_bk_id_list(PQgetvalue(pg, row, 5));
    return json_pack("{s:I, s:I, s:I, s:s, s:o?, s:s}", "id",
                     (json_int_t)strtoll(PQgetvalue(pg, row, 0), NULL, 10), "performanceId",
                     (json_int_t)strtoll(PQgetvalue(pg, row, 1), NULL, 10), "userId",
                     (json_int_t)strtoll(PQgetvalue(pg, row, 2), NULL, 10), "status",
                     PQgetvalue(pg, row, 3), "seatIds", ids, "expiresAt", PQgetvalue(pg, row, 4));
}

/* ---------------------------------------------------------------- POST: take a hold */

static void hold_taken(void *arg, const rs_db_result *res)
{
    rs_bk *b = rs_bk_ok(arg, res);
    if (b == NULL)
        return; /* unwinding; a lost lock is seen by rs_bk_commit */
    json_t *hold = PQntuples(res->pg) == 1 ? hd_json(res->pg, 0) : NULL;
    if (hold == NULL) {
        rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "the new hold could not be read");
        return;
    }
    rs_bk_set_body(b, 201, hold);
    rs_bk_commit(b);
}

/* In the transaction, with the lock (or db mode: rs_hold_take locks the row). */
static void hold_body(rs_bk *b)
{
    char perf[RS_BK_INT_MAX], user[RS_BK_INT_MAX], ttl[RS_BK_INT_MAX];
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    snprintf(user, sizeof(user), "%" PRId64, b->user);
    snprintf(ttl, sizeof(ttl), "%" PRId64, rs_app_g.cfg.holds_ttl_s);
    bool db_mode = rs_bk_db_mode();
    const char *params[] = {
        perf, user, b->seats_param, db_mode ? NULL : b->fence, db_mode ? "true" : "false", ttl};
    if (rs_db_conn_exec(b->conn, "hd_take", 6, params, hold_taken, b) != CM_OK)
        rs_bk_fail_unavailable(b);
}

/* {"seatIds"}: the caller's hold. */
static void hold_post(rs_req *r)
{
    json_t *body = rs_req_json(r);
    rs_bk *b = body != NULL ? rs_bk_new(r, RS_BK_HOLD, hold_body) : NULL;
    if (b == NULL)
        return; /* answered */
    b->perf = rs_req_id(r, 0);
    if (rs_auth_acting_user(r, false, 0, &b->user) && rs_bk_parse_seats(b, body))
        rs_bk_check_perf(b, rs_bk_lock); /* 404 for an unknown performance, then the lock */
    else
        rs_bk_free(b);
}

/* ---------------------------------------------------------------- DELETE: release */

static void hold_released(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (rs_dberr_failed(r, res, "DELETE /holds/{id}"))
        return;
    if (PQntuples(res->pg) == 0) {
        rs_reply_error(r, 404, "NOT_FOUND", "hold %" PRId64 " not found", rs_req_id(r, 0));
        return;
    }
    if (PQgetvalue(res->pg, 0, 6)[0] == 't')
        rs_hold_stats.released++;
    json_t *hold = hd_json(res->pg, 0);
    if (hold == NULL)
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
    else
        rs_reply_json(r, 200, hold);
}

static void hold_delete(rs_req *r)
{
    char id[RS_BK_INT_MAX], owner[24];
    snprintf(id, sizeof(id), "%" PRId64, rs_req_id(r, 0));
    const char *params[] = {id, rs_auth_owner_param(r, owner)};
    if (rs_db_exec(rs_app_g.db, "hd_release", 2, params, hold_released, r) == NULL)
        rs_reply_error(r, 503, "UNAVAILABLE", "database unavailable");
}

/* ---------------------------------------------------------------- module */

const rs_route rs_holds_routes[] = {
    {RS_POST, "/performances/{id}/holds", "hold_create", hold_post, RS_ACCESS_USER},
    {RS_DELETE, "/holds/{id}", "hold_release", hold_delete, RS_ACCESS_USER},
};
const size_t rs_holds_nroutes = CM_ARRAY_LEN(rs_holds_routes);

void rs_holds_register(rs_db *db)
{
    rs_db_register(db, hd_stmts, CM_ARRAY_LEN(hd_stmts));
    rs_holdbk_register(db);
    rs_holdsweep_register(db);
}

cm_rc rs_holds_start(rs_app *app)
{
    return rs_holdsweep_start(app);
}

void rs_holds_stop(void)
{
    rs_holdsweep_stop();
}

void rs_holds_metrics(cm_strbuf *out)
{
    const struct {
        const char *outcome;
        uint64_t n;
    } rows[] = {{"created", rs_hold_stats.created},
                {"booked", rs_hold_stats.booked},
                {"released", rs_hold_stats.released},
                {"expired", rs_hold_stats.expired}};
    cm_strbuf_printf(out, "# HELP reserved_holds_total seat holds by what happened to them in "
                          "this process (created; booked with holdId; released by DELETE; "
                          "expired by the sweeper)\n# TYPE reserved_holds_total counter\n");
    for (size_t i = 0; i < CM_ARRAY_LEN(rows); i++)
        cm_strbuf_printf(out, "reserved_holds_total{outcome=\"%s\"} %llu\n", rows[i].outcome,
                         (unsigned long long)rows[i].n);
}
