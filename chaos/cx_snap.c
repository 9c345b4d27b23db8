/*
 * cx_snap: reads the final state (see cx_snap.h). The database is read in one
 * REPEATABLE READ READ ONLY transaction, so every query sees the same snapshot.
 */
#include "cx_snap.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_httpc_fetch.h"
#include "cx_mem.h"

#define FETCH_TIMEOUT_MS 15000
#define FETCH_MAX        (256u << 20) /* a payment list of a long run stays far below this */

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *col_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Runs sql; returns the result when it has the expected status, else NULL with err set. */
static PGresult *run(PGconn *c, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != want) {
        snprintf(err, errlen, "%.60s...: %s", sql, PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

static const char SQL_RES[] =
    "SELECT id, performance_id, user_id, status = 'CONFIRMED', payment_id, "
    "payment_reference FROM reservations ORDER BY id";
static const char SQL_SEATS[] =
    "SELECT reservation_id, seat_id FROM reservation_seats ORDER BY reservation_id, seat_id";
static const char SQL_PERFS[] =
    "SELECT p.id, p.total_capacity, p.remaining_capacity,"
    " (SELECT count(*) FROM venue_seats vs WHERE vs.venue_id = p.venue_id),"
    " (SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id"
    "   WHERE rs.performance_id = p.id AND r.status = 'CONFIRMED')"
    " FROM performances p ORDER BY p.id";
/* Either flag counts: a seat row still marked confirmed under a CANCELLED reservation is as
 * much a second sale as two CONFIRMED reservations. */
static const char SQL_DUPS[] =
    "SELECT rs.performance_id, rs.seat_id, count(*) FROM reservation_seats rs"
    " JOIN reservations r ON r.id = rs.reservation_id"
    " WHERE r.status = 'CONFIRMED' OR rs.confirmed"
    " GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2";

static cm_rc load_res(cx_snap *s, PGconn *c, char *err, size_t errlen)
{
    PGresult *r = run(c, SQL_RES, PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    int n = PQntuples(r);
    s->res = cx_xcalloc((size_t)n, sizeof(cx_res));
    for (int i = 0; i < n; i++) {
        cx_res *x = &s->res[i];
        x->id = col_i64(r, i, 0);
        x->perf = col_i64(r, i, 1);
        x->user = col_i64(r, i, 2);
        x->confirmed = strcmp(PQgetvalue(r, i, 3), "t") == 0;
        x->payment_id = cx_xstrdup(col_str(r, i, 4));
        x->payment_ref = cx_xstrdup(col_str(r, i, 5));
    }
    s->n_res = (size_t)n;
    PQclear(r);

    r = run(c, SQL_SEATS, PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    n = PQntuples(r);
    /* Both lists are sorted by reservation id: one merge pass attaches the seats. */
    size_t k = 0;
    for (int i = 0; i < n;) {
        int64_t rid = col_i64(r, i, 0);
        int j = i;
        while (j < n && col_i64(r, j, 0) == rid)
            j++;
        while (k < s->n_res && s->res[k].id < rid)
            k++;
        if (k < s->n_res && s->res[k].id == rid) {
            cx_res *x = &s->res[k];
            x->seats = cx_xcalloc((size_t)(j - i), sizeof(int64_t));
            for (int m = i; m < j; m++)
                x->seats[x->n_seats++] = col_i64(r, m, 1);
        }
        i = j;
    }
    PQclear(r);
    return CM_OK;
}

static cm_rc load_perfs(cx_snap *s, PGconn *c, char *err, size_t errlen)
{
    PGresult *r = run(c, SQL_PERFS, PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    int n = PQntuples(r);
    s->perfs = cx_xcalloc((size_t)n, sizeof(cx_perf));
    for (int i = 0; i < n; i++) {
        cx_perf *p = &s->perfs[i];
        p->id = col_i64(r, i, 0);
        p->total = col_i64(r, i, 1);
        p->remaining = col_i64(r, i, 2);
        p->venue_seats = col_i64(r, i, 3);
        p->confirmed_seats = col_i64(r, i, 4);
    }
    s->n_perfs = (size_t)n;
    PQclear(r);

    r = run(c, SQL_DUPS, PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    n = PQntuples(r);
    s->dups = cx_xcalloc((size_t)n, sizeof(cx_dup));
    for (int i = 0; i < n; i++) {
        s->dups[i].perf = col_i64(r, i, 0);
        s->dups[i].seat = col_i64(r, i, 1);
        s->dups[i].count = col_i64(r, i, 2);
    }
    s->n_dups = (size_t)n;
    PQclear(r);
    return CM_OK;
}

static cm_rc load_counters(cx_snap *s, PGconn *c, char *err, size_t errlen)
{
    PGresult *r =
        run(c, "SELECT to_regclass('chaos_counters') IS NOT NULL", PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    s->have_counters = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!s->have_counters)
        return CM_OK;
    r = run(c, "SELECT id, value FROM chaos_counters ORDER BY id", PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    int n = PQntuples(r);
    s->counters = cx_xcalloc((size_t)n, sizeof(cx_counter));
    for (int i = 0; i < n; i++) {
        s->counters[i].id = col_i64(r, i, 0);
        s->counters[i].value = col_i64(r, i, 1);
    }
    s->n_counters = (size_t)n;
    PQclear(r);
    return CM_OK;
}

/* ---- seat holds (SPEC §9): read only when migration 100's tables exist ---- */

static const char SQL_HOLDS[] =
    "SELECT id, performance_id, user_id, status,"
    " floor(extract(epoch FROM now() - expires_at) * 1000)::bigint FROM holds ORDER BY id";
static const char SQL_HOLD_SEATS[] =
    "SELECT hold_id, performance_id, seat_id, active FROM hold_seats ORDER BY hold_id, seat_id";
/* A hold counts as active by either flag (as a sale does in SQL_DUPS). */
static const char SQL_HELD_SOLD[] =
    "SELECT hs.performance_id, hs.seat_id, h.id, h.user_id, r.id, r.user_id FROM holds h"
    " JOIN hold_seats hs ON hs.hold_id = h.id"
    " JOIN reservation_seats rs ON rs.performance_id = hs.performance_id"
    "  AND rs.seat_id = hs.seat_id"
    " JOIN reservations r ON r.id = rs.reservation_id"
    " WHERE (h.status = 'ACTIVE' OR hs.active) AND r.status = 'CONFIRMED'"
    "  AND r.user_id <> h.user_id ORDER BY 1, 2, 3";

static cx_hold_status hold_status(const char *s)
{
    static const char *const names[] = {"ACTIVE", "BOOKED", "RELEASED", "EXPIRED"};
    for (size_t i = 0; i < CM_ARRAY_LEN(names); i++)
        if (strcmp(s, names[i]) == 0)
            return (cx_hold_status)i;
    return CX_HOLD_UNKNOWN;
}

static cm_rc load_holds(cx_snap *s, PGconn *c, char *err, size_t errlen)
{
    PGresult *r = run(c,
                      "SELECT to_regclass('holds') IS NOT NULL AND to_regclass('hold_seats')"
                      " IS NOT NULL",
                      PGRES_TUPLES_OK, err, errlen);
    if (!r)
        return CM_ERR;
    s->have_holds = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!s->have_holds)
        return CM_OK;
    if (!(r = run(c, SQL_HOLDS, PGRES_TUPLES_OK, err, errlen)))
        return CM_ERR;
    int n = PQntuples(r);
    s->holds = cx_xcalloc((size_t)n, sizeof(cx_hold));
    for (int i = 0; i < n; i++)
        s->holds[s->n_holds++] = (cx_hold){.id = col_i64(r, i, 0),
                                           .perf = col_i64(r, i, 1),
                                           .user = col_i64(r, i, 2),
                                           .status = hold_status(PQgetvalue(r, i, 3)),
                                           .past_ms = col_i64(r, i, 4)};
    PQclear(r);
    if (!(r = run(c, SQL_HOLD_SEATS, PGRES_TUPLES_OK, err, errlen)))
        return CM_ERR;
    n = PQntuples(r);
    s->hold_seats = cx_xcalloc((size_t)n, sizeof(cx_hold_seat));
    for (int i = 0; i < n; i++)
        s->hold_seats[s->n_hold_seats++] =
            (cx_hold_seat){.hold = col_i64(r, i, 0),
                           .perf = col_i64(r, i, 1),
                           .seat = col_i64(r, i, 2),
                           .active = strcmp(PQgetvalue(r, i, 3), "t") == 0};
    PQclear(r);
    if (!(r = run(c, SQL_HELD_SOLD, PGRES_TUPLES_OK, err, errlen)))
        return CM_ERR;
    n = PQntuples(r);
    s->held_sold = cx_xcalloc((size_t)n, sizeof(cx_held_sold));
    for (int i = 0; i < n; i++)
        s->held_sold[s->n_held_sold++] = (cx_held_sold){.perf = col_i64(r, i, 0),
                                                        .seat = col_i64(r, i, 1),
                                                        .hold = col_i64(r, i, 2),
                                                        .holder = col_i64(r, i, 3),
                                                        .reservation = col_i64(r, i, 4),
                                                        .buyer = col_i64(r, i, 5)};
    PQclear(r);
    return CM_OK;
}

cm_rc cx_snap_load_db(cx_snap *s, const char *conninfo, char *err, size_t errlen)
{
    cm_rc rc = CM_ERR;
    PGresult *r = NULL;
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "database: %s", PQerrorMessage(c));
        goto done;
    }
    r = run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", PGRES_COMMAND_OK, err, errlen);
    if (!r)
        goto done;
    PQclear(r);
    if (load_res(s, c, err, errlen) != CM_OK || load_perfs(s, c, err, errlen) != CM_OK ||
        load_counters(s, c, err, errlen) != CM_OK || load_holds(s, c, err, errlen) != CM_OK)
        goto done;
    rc = CM_OK;
done:
    PQfinish(c);
    return rc;
}

static int cmp_payment(const void *a, const void *b)
{
    const cx_payment *x = a, *y = b;
    return strcmp(x->reference, y->reference);
}

cm_rc cx_snap_load_payments(cx_snap *s, const char *url, char *err, size_t errlen)
{
    int status;
    char *body = NULL;
    json_t *root = NULL;
    cm_rc rc = CM_ERR;
    if (cm_httpc_fetch(url, "/payments", FETCH_TIMEOUT_MS, FETCH_MAX, &status, &body, err,
                       errlen) != CM_OK)
        return CM_ERR;
    root = json_loads(body, 0, NULL);
    const json_t *items = json_object_get(root, "items");
    if (status != 200 || !json_is_array(items)) {
        snprintf(err, errlen, "GET /payments: status %d, no items list", status);
        goto done;
    }
    s->payments = cx_xcalloc(json_array_size(items), sizeof(cx_payment));
    size_t i;
    const json_t *p;
    json_array_foreach(items, i, p)
    {
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *st = json_string_value(json_object_get(p, "status"));
        const char *ref = json_string_value(json_object_get(p, "reference"));
        cx_payment *x = &s->payments[s->n_payments++];
        x->id = cx_xstrdup(id ? id : "");
        x->status = cx_xstrdup(st ? st : "");
        x->reference = cx_xstrdup(ref ? ref : "");
    }
    qsort(s->payments, s->n_payments, sizeof(cx_payment), cmp_payment);
    s->have_payments = true;
    rc = CM_OK;
done:
    json_decref(root);
    free(body);
    return rc;
}

/* Sums the reserved_guard_* samples of a Prometheus page into g. */
static void parse_guards(cx_guard *g, const char *page)
{
    size_t dlen = 0;
    for (const char *line = page, *end; *line; line = end ? end + 1 : line + strlen(line)) {
        end = strchr(line, '\n');
        if (strncmp(line, "reserved_guard_", 15) != 0)
            continue;
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[256], label[64] = "";
        snprintf(buf, sizeof(buf), "%.*s", (int)CM_MIN(len, sizeof(buf) - 1), line);
        const char *sp = strrchr(buf, ' ');
        if (!sp)
            continue;
        unsigned long long v = strtoull(sp + 1, NULL, 10);
        const char *lab = strstr(buf, "guard=\"");
        if (lab)
            sscanf(lab + 7, "%63[^\"]", label);
        else
            sscanf(buf, "%63[^{ ]", label);
        g->total += v;
        if (dlen < sizeof(g->detail))
            dlen += (size_t)snprintf(g->detail + dlen, sizeof(g->detail) - dlen, "%s%s=%llu",
                                     dlen ? " " : "", label, v);
    }
}

void cx_snap_load_guards(cx_snap *s, const char *list)
{
    char *copy = cx_xstrdup(list), *save = NULL;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    s->guards = cx_xcalloc(n, sizeof(cx_guard));
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        cx_guard *g = &s->guards[s->n_guards++];
        int status;
        char *body = NULL;
        snprintf(g->server, sizeof(g->server), "%s", tok);
        if (cm_httpc_fetch(tok, "/metrics", FETCH_TIMEOUT_MS, 0, &status, &body, g->err,
                           sizeof(g->err)) == CM_OK &&
            status == 200) {
            g->fetched = true;
            parse_guards(g, body);
        } else if (!g->err[0]) {
            snprintf(g->err, sizeof(g->err), "status %d", status);
        }
        free(body);
    }
    free(copy);
}

void cx_snap_free(cx_snap *s)
{
    for (size_t i = 0; i < s->n_res; i++) {
        free(s->res[i].payment_id);
        free(s->res[i].payment_ref);
        free(s->res[i].seats);
    }
    for (size_t i = 0; i < s->n_payments; i++) {
        free(s->payments[i].id);
        free(s->payments[i].status);
        free(s->payments[i].reference);
    }
    free(s->res);
    free(s->perfs);
    free(s->dups);
    free(s->counters);
    free(s->payments);
    free(s->guards);
    free(s->holds);
    free(s->hold_seats);
    free(s->held_sold);
    memset(s, 0, sizeof(*s));
}

static int cmp_res_id(const void *key, const void *elem)
{
    int64_t k = *(const int64_t *)key, id = ((const cx_res *)elem)->id;
    return (k > id) - (k < id);
}

const cx_res *cx_snap_res(const cx_snap *s, int64_t id)
{
    return s->n_res ? bsearch(&id, s->res, s->n_res, sizeof(cx_res), cmp_res_id) : NULL;
}

static int cmp_hold_id(const void *key, const void *elem)
{
    int64_t k = *(const int64_t *)key, id = ((const cx_hold *)elem)->id;
    return (k > id) - (k < id);
}

const cx_hold *cx_snap_hold(const cx_snap *s, int64_t id)
{
    return s->n_holds ? bsearch(&id, s->holds, s->n_holds, sizeof(cx_hold), cmp_hold_id) : NULL;
}
