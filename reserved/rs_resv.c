/*
 * rs_resv: reservation reads and JSON (contract in rs_resv.h). Each read is one or two
 * autocommit statements; the small per-request structs are freed when answered.
 */
#include "rs_resv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_core.h"
#include "rs_app.h"
#include "rs_auth.h"
#include "rs_dberr.h"

#define RESV_INT_MAX  24
#define RESV_LIST_MAX 100 /* limit's upper bound */
#define RESV_LIST_DEF 20  /* limit when not given */

static const rs_db_stmt resv_stmts[] = {
    {"resv_get",
     "SELECT " RS_RESV_COLS " FROM reservations r" RS_RESV_JOIN
     " WHERE r.id = $1::bigint ORDER BY s.seat_id",
     1},
    /* The route's read: a customer's filter is its own id, an admin's NULL. Another
     * user's reservation is then "not found", exactly as one that does not exist. */
    {"resv_get_owned",
     "SELECT " RS_RESV_COLS " FROM reservations r" RS_RESV_JOIN
     " WHERE r.id = $1::bigint AND ($2::bigint IS NULL OR r.user_id = $2::bigint)"
     " ORDER BY s.seat_id",
     2},
    {"resv_list",
     "WITH ids AS (SELECT id FROM reservations WHERE user_id = $1::bigint"
     " AND ($2::text IS NULL OR status = $2::text) AND ($3::bigint IS NULL OR id < $3::bigint)"
     " ORDER BY id DESC LIMIT $4::int)"
     " SELECT " RS_RESV_COLS " FROM ids JOIN reservations r ON r.id = ids.id" RS_RESV_JOIN
     " ORDER BY r.id DESC, s.seat_id",
     4},
    {"resv_user_exists", "SELECT 1 FROM users WHERE id = $1::bigint", 1},
};

void rs_resv_register(rs_db *db)
{
    rs_db_register(db, resv_stmts, CM_ARRAY_LEN(resv_stmts));
}

static json_t *int_json(const PGresult *pg, int row, int col)
{
    return json_integer((json_int_t)strtoll(PQgetvalue(pg, row, col), NULL, 10));
}

json_t *rs_resv_json(const PGresult *pg, int *row)
{
    return rs_resv_json_at(pg, row, 0);
}

json_t *rs_resv_json_at(const PGresult *pg, int *row, int c)
{
    int i = *row;
    int n = PQntuples(pg);
    const char *id = PQgetvalue(pg, i, c + 0);
    json_t *seats = json_array();
    json_t *o = json_object();
    json_object_set_new(o, "id", int_json(pg, i, c + 0));
    json_object_set_new(o, "userId", int_json(pg, i, c + 1));
    json_object_set_new(o, "performanceId", int_json(pg, i, c + 2));
    json_object_set_new(o, "status", json_string(PQgetvalue(pg, i, c + 3)));
    for (; i < n && strcmp(PQgetvalue(pg, i, c + 0), id) == 0; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "seatId", int_json(pg, i, c + 9));
        json_object_set_new(s, "row", json_string(PQgetvalue(pg, i, c + 10)));
        json_object_set_new(s, "number", int_json(pg, i, c + 11));
        json_object_set_new(s, "type", json_string(PQgetvalue(pg, i, c + 12)));
        json_object_set_new(s, "price", int_json(pg, i, c + 13));
        json_array_append_new(seats, s);
    }
    json_object_set_new(o, "seats", seats);
    json_object_set_new(o, "normalPrice", int_json(pg, *row, c + 4));
    json_object_set_new(o, "vipPrice", int_json(pg, *row, c + 5));
    json_object_set_new(o, "totalAmount", int_json(pg, *row, c + 6));
    json_object_set_new(o, "paymentId",
                        PQgetisnull(pg, *row, c + 7) ? json_null()
                                                     : json_string(PQgetvalue(pg, *row, c + 7)));
    json_object_set_new(o, "createdAt", json_string(PQgetvalue(pg, *row, c + 8)));
    *row = i;
    return o;
}

cm_rc rs_resv_read(rs_db_conn *conn, int64_t id, rs_db_cb cb, void *arg)
{
    char text[RESV_INT_MAX];
    snprintf(text, sizeof(text), "%" PRId64, id);
    const char *params[] = {text};
    return rs_db_conn_exec(conn, "resv_get", 1, params, cb, arg);
}

/* ---------------------------------------------------------------- one reservation */

typedef struct resv_get {
    rs_req *r;
    int64_t id;
} resv_get;

/* False after answering 503 for a failed statement (its text only in the log, rs_dberr). */
static bool resv_db_ok(rs_req *r, const rs_db_result *res)
{
    if (res->ok)
        return true;
    rs_dberr_reply(r, 503, "UNAVAILABLE", "database unavailable", "a reservation read", res);
    return false;
}

static void resv_got(void *arg, const rs_db_result *res)
{
    resv_get *g = arg;
    int row = 0;
    if (resv_db_ok(g->r, res) && PQntuples(res->pg) == 0)
        rs_reply_error(g->r, 404, "NOT_FOUND", "reservation %" PRId64 " not found", g->id);
    else if (res->ok)
        rs_reply_json(g->r, 200, rs_resv_json(res->pg, &row));
    free(g);
}

/* owner: the owner filter of resv_get_owned, or NULL for the unfiltered resv_get. */
static void resv_answer(rs_req *r, int64_t id, const char *owner)
{
    resv_get *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    g->r = r;
    g->id = id;
    char text[RESV_INT_MAX];
    snprintf(text, sizeof(text), "%" PRId64, id);
    const char *params[] = {text, owner};
    bool queued = owner ? rs_db_exec(rs_app_g.db, "resv_get_owned", 2, params, resv_got, g)
                        : rs_db_exec(rs_app_g.db, "resv_get", 1, params, resv_got, g);
    if (!queued) {
        rs_reply_error(r, 503, "UNAVAILABLE", "database unavailable");
        free(g);
    }
}

void rs_resv_answer(rs_req *r, int64_t id)
{
    resv_answer(r, id, NULL);
}

void rs_resv_get(rs_req *r)
{
    char owner[24];
    resv_answer(r, rs_req_id(r, 0), rs_auth_owner_param(r, owner));
}

/* ---------------------------------------------------------------- a user's reservations */

typedef struct resv_list {
    rs_req *r;
    char user[RESV_INT_MAX];
    char status[16];
    char cursor[RESV_INT_MAX];
    char limit[RESV_INT_MAX]; /* one more than asked: tells whether a next page exists */
    int64_t nlimit;
} resv_list;

static void resv_listed(void *arg, const rs_db_result *res)
{
    resv_list *l = arg;
    if (!resv_db_ok(l->r, res)) {
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
            char c[RESV_INT_MAX];
            snprintf(c, sizeof(c), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(last, "id")));
            next = json_string(c);
            break;
        }
        json_array_append_new(items, rs_resv_json(res->pg, &row));
        count++;
    }
    rs_reply_json(l->r, 200, json_pack("{s:o, s:o}", "items", items, "nextCursor", next));
    free(l);
}

static void resv_user_checked(void *arg, const rs_db_result *res)
{
    resv_list *l = arg;
    if (!resv_db_ok(l->r, res)) {
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
    if (rs_db_exec(rs_app_g.db, "resv_list", 4, params, resv_listed, l) == NULL) {
        rs_reply_error(l->r, 503, "UNAVAILABLE", "database unavailable");
        free(l);
    }
}

/* A positive decimal int64 with nothing around it. */
static bool parse_pos(const char *s, int64_t max, int64_t *out)
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

void rs_resv_list_user(rs_req *r)
{
    resv_list *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    l->r = r;
    snprintf(l->user, sizeof(l->user), "%" PRId64, rs_req_id(r, 0));
    if (!rs_auth_may_see(r, rs_req_id(r, 0))) { /* as if the user did not exist */
        rs_reply_error(r, 404, "NOT_FOUND", "user %s not found", l->user);
        goto fail;
    }
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
    l->nlimit = RESV_LIST_DEF;
    if (limit != NULL && !parse_pos(limit, RESV_LIST_MAX, &l->nlimit)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "limit must be an integer 1..%d", RESV_LIST_MAX);
        goto fail;
    }
    snprintf(l->limit, sizeof(l->limit), "%" PRId64, l->nlimit + 1);
    if (cursor != NULL) {
        if (!parse_pos(cursor, INT64_MAX, &v)) {
            rs_reply_error(r, 400, "BAD_REQUEST", "bad cursor");
            goto fail;
        }
        snprintf(l->cursor, sizeof(l->cursor), "%" PRId64, v);
    }
    const char *params[] = {l->user};
    if (rs_db_exec(rs_app_g.db, "resv_user_exists", 1, params, resv_user_checked, l) == NULL) {
        rs_reply_error(r, 503, "UNAVAILABLE", "database unavailable");
        goto fail;
    }
    return;
fail:
    free(l);
}
