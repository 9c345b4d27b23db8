/*
 * rs_holdbk: a booking with {"holdId"} (contract in rs_holdbk.h).
 */
#include "rs_holdbk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_app.h"
#include "rs_auth.h"

static const rs_db_stmt hb_stmts[] = {
    /* $2: the caller's id (a customer books only its own hold) or NULL (an admin). The
     * seats as a bigint[] literal, by id. */
    {"hb_lookup",
     "SELECT h.user_id, h.status = 'ACTIVE' AND h.expires_at > clock_timestamp(), h.status,"
     " (SELECT array_agg(hs.seat_id ORDER BY hs.seat_id) FROM hold_seats hs"
     "   WHERE hs.hold_id = h.id)::text"
     " FROM holds h WHERE h.id = $1::bigint AND h.performance_id = $3::bigint"
     " AND ($2::bigint IS NULL OR h.user_id = $2::bigint)",
     3},
    /* rs_booking's bk_book and bk_book_read with the hold as $7 */
    {"hb_book",
     "SELECT reservation_id, total FROM rs_book_hold($7::bigint, $1::bigint, $2::bigint,"
     " $3::bigint[], $4::numeric, $5::boolean, $6::text)",
     7},
    {"hb_book_read",
     "SELECT * FROM rs_book_hold_read($7::bigint, $1::bigint, $2::bigint, $3::bigint[],"
     " $4::numeric, $5::boolean, $6::text)",
     7},
};

void rs_holdbk_register(rs_db *db)
{
    rs_db_register(db, hb_stmts, CM_ARRAY_LEN(hb_stmts));
}

bool rs_holdbk_asked(json_t *body)
{
    json_t *v = json_object_get(body, "holdId");
    return v != NULL && !json_is_null(v);
}

bool rs_holdbk_parse(rs_bk *b, json_t *body)
{
    rs_req *r = b->r;
    static const char *const not_with[] = {"seatIds", "userId"};
    for (size_t i = 0; i < CM_ARRAY_LEN(not_with); i++) {
        json_t *v = json_object_get(body, not_with[i]);
        if (v != NULL && !json_is_null(v)) {
            rs_reply_error(r, 400, "BAD_REQUEST",
                           "field '%s' cannot go with 'holdId': the hold says the seats and "
                           "the user",
                           not_with[i]);
            return false;
        }
    }
    bool present = false;
    if (!rs_json_get_int(r, body, "holdId", true, 1, INT64_MAX, &b->hold, &present) ||
        !rs_auth_acting_user(r, false, 0, &b->user))
        return false;
    return rs_bk_fingerprint(b, "perf=%" PRId64 ";hold=%" PRId64, b->perf, b->hold);
}

/* "{1,2,3}" (a bigint[] as text, never empty: a hold has seats) into b's seats. */
static bool hb_take_seats(rs_bk *b, const char *text)
{
    size_t n = 1;
    for (const char *p = text; *p != '\0'; p++)
        n += *p == ',';
    b->seats = calloc(n, sizeof(*b->seats));
    b->seats_param = strdup(text);
    if (b->seats == NULL || b->seats_param == NULL)
        return false;
    b->nseats = 0;
    for (const char *p = text; *p != '\0' && b->nseats < n;) {
        if (*p == '{' || *p == ',' || *p == '}') {
            p++;
            continue;
        }
        char *end;
        b->seats[b->nseats++] = strtoll(p, &end, 10);
        if (end == p)
            return false; /* not a number: never from array_agg */
        p = end;
    }
    return b->nseats > 0;
}

static void hb_looked_up(void *arg, const rs_db_result *res)
{
    rs_bk *b = arg;
    if (!res->ok) {
        rs_bk_fail_db(b, res); /* a read that failed: 503, not stored under the key */
        return;
    }
    if (PQntuples(res->pg) == 0) {
        rs_bk_fail(b, 404, "NOT_FOUND", NULL, "hold %" PRId64 " not found", b->hold);
        return;
    }
    if (strcmp(PQgetvalue(res->pg, 0, 1), "t") != 0) {
        const char *status = PQgetvalue(res->pg, 0, 2);
        rs_bk_fail(b, 409, "HOLD_EXPIRED", NULL, "hold %" PRId64 " is %s", b->hold,
                   strcmp(status, "ACTIVE") == 0 ? "past its expiry" : status);
        return;
    }
    b->user = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    if (PQgetisnull(res->pg, 0, 3) || !hb_take_seats(b, PQgetvalue(res->pg, 0, 3))) {
        rs_bk_fail(b, 503, "UNAVAILABLE", NULL, "hold %" PRId64 " unreadable", b->hold);
        return;
    }
    b->then(b);
}

void rs_holdbk_lookup(rs_bk *b, rs_bk_body_fn next)
{
    rs_bk_move(b, BK_HOLD_LOOKUP);
    b->then = next;
    char hold[RS_BK_INT_MAX], perf[RS_BK_INT_MAX], owner[24];
    snprintf(hold, sizeof(hold), "%" PRId64, b->hold);
    snprintf(perf, sizeof(perf), "%" PRId64, b->perf);
    const char *params[] = {hold, rs_auth_owner_param(b->r, owner), perf};
    if (rs_db_exec(rs_app_g.db, "hb_lookup", 3, params, hb_looked_up, b) == NULL)
        rs_bk_fail_unavailable(b);
}

const char *rs_holdbk_stmt(const rs_bk *b, const char *plain)
{
    if (b->hold == 0)
        return plain;
    return strcmp(plain, "bk_book_read") == 0 ? "hb_book_read" : "hb_book";
}

const char *rs_holdbk_param(const rs_bk *b, char buf[RS_BK_INT_MAX])
{
    if (b->hold == 0)
        return NULL;
    snprintf(buf, RS_BK_INT_MAX, "%" PRId64, b->hold);
    return buf;
}
