/*
 * rs_api: the catalogue endpoints of SPEC §6 (venues, performances; the seat map's handler
 * is rs_seatmap's) plus /healthz and /metrics. Each handler validates the body in C (so every bad
 * input gets a 400 naming the field), then runs ONE prepared statement in autocommit and answers
 * from its callback; a statement is its own transaction, so a venue and its seats are created
 * atomically by one data-modifying CTE.
 *
 * Owns: its statements (rs_api_register) and the keyset cursor format of the search:
 * base64url("<startsAt with microseconds, UTC>|<id>"), opaque to clients.
 *
 * Seats are listed in the hall's natural order, rows first ("R2" before "R10"), each with
 * "rowIndex" and "position" (rs_seatlist builds the list). Both are stored when the seats
 * are inserted (migration 040), and POST /venues stores the seats in that order, so the
 * statements order by two stored integers over rows that come mostly presorted, and
 * reserved sorts nothing on its loop.
 */
#include "rs_api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_strbuf.h"
#include "rs_account.h"
#include "rs_auth.h"
#include "rs_dberr.h"
#include "rs_events.h"
#include "rs_holds.h"
#include "rs_metrics.h"
#include "rs_rfc3339.h"
#include "rs_seatlist.h"
#include "rs_seatmap.h"
#include "rs_utf8.h"

#define NAME_MAX_CHARS  200
#define ROW_MAX_CHARS   16
#define Q_MAX_CHARS     200
#define SEATS_MAX       10000
#define SEAT_NUMBER_MAX INT64_C(2147483647)
#define PRICE_MAX       INT64_C(1000000000000) /* 10^12 KRW: sums of 10^4 seats stay in int64 */
#define LIMIT_DEFAULT   20
#define LIMIT_MAX       100
#define TS_MAX          64
#define CURSOR_MAX      128
#define NUM_LEN         24

/* Columns of a performance, in this order, in every statement that returns one. */
#define PERF_COLS                                                                                  \
    "p.id, p.venue_id, p.title, rs_rfc3339(p.starts_at), p.normal_price, p.vip_price, "            \
    "p.total_capacity, p.remaining_capacity, "                                                     \
    "to_char(p.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
enum { PC_ID, PC_VENUE, PC_TITLE, PC_STARTS, PC_NORMAL, PC_VIP, PC_TOTAL, PC_REMAINING, PC_KEY };

static const rs_db_stmt api_stmts[] = {
    /* The seats go in laid out (rs_layout, migration 040) and in layout order, so their
     * ids and heap order follow the seat map's order as well. */
    {"api_venue_create",
     "WITH v AS (INSERT INTO venues (name) VALUES ($1) RETURNING id, name), "
     "x AS (SELECT * FROM ROWS FROM (jsonb_to_recordset($2::jsonb) "
     "                              AS (\"row\" text, number integer, type text)) "
     "      WITH ORDINALITY AS x(\"row\", number, type, i)), "
     "l AS (SELECT * FROM rs_layout(ARRAY(SELECT \"row\" FROM x ORDER BY i), "
     "                              ARRAY(SELECT number FROM x ORDER BY i))), "
     "s AS (INSERT INTO venue_seats (venue_id, row_label, number, type, row_index, row_position) "
     "      SELECT v.id, x.\"row\", x.number, x.type, l.row_index, l.row_position "
     "        FROM v, x JOIN l USING (i) ORDER BY l.row_index, l.row_position "
     "      RETURNING 1) "
     "SELECT v.id, v.name, (SELECT count(*) FROM s) FROM v",
     2},
    {"api_venue_get",
     "SELECT v.id, v.name, s.id, s.row_label, s.number, s.type, s.row_index, s.row_position "
     "FROM venues v LEFT JOIN venue_seats s ON s.venue_id = v.id WHERE v.id = $1::bigint "
     "ORDER BY s.row_index, s.row_position",
     1},
    {"api_perf_create",
     "INSERT INTO performances AS p (venue_id, title, starts_at, normal_price, vip_price, "
     "                               total_capacity, remaining_capacity) "
     "SELECT v.id, $2, $3::timestamptz, $4::bigint, $5::bigint, c.n, c.n "
     "FROM venues v CROSS JOIN LATERAL "
     "     (SELECT count(*)::integer AS n FROM venue_seats s WHERE s.venue_id = v.id) c "
     "WHERE v.id = $1::bigint RETURNING " PERF_COLS,
     5},
    {"api_perf_get", "SELECT " PERF_COLS " FROM performances p WHERE p.id = $1::bigint", 1},
    /* Prices of existing reservations are captured on them, so a patch changes none. */
    {"api_perf_patch",
     "UPDATE performances AS p SET title = COALESCE($2, p.title), "
     "normal_price = COALESCE($3::bigint, p.normal_price), "
     "vip_price = COALESCE($4::bigint, p.vip_price) WHERE p.id = $1::bigint RETURNING " PERF_COLS,
     4},
    /* Keyset pagination on (starts_at, id); every filter is optional (NULL = off). */
    {"api_perf_search",
     "SELECT " PERF_COLS " FROM performances p "
     "WHERE ($1::bigint IS NULL OR p.venue_id = $1::bigint) "
     "  AND ($2::timestamptz IS NULL OR p.starts_at >= $2::timestamptz) "
     "  AND ($3::timestamptz IS NULL OR p.starts_at <= $3::timestamptz) "
     "  AND ($4::text IS NULL OR strpos(lower(p.title), lower($4::text)) > 0) "
     "  AND (NOT $5::boolean OR p.remaining_capacity > 0) "
     "  AND ($6::timestamptz IS NULL OR (p.starts_at, p.id) > ($6::timestamptz, $7::bigint)) "
     "ORDER BY p.starts_at, p.id LIMIT $8::integer",
     8},
    {"api_ping", "SELECT 1", 0},
};

void rs_api_register(rs_db *db)
{
    rs_db_register(db, api_stmts, CM_ARRAY_LEN(api_stmts));
}

/* ---- small helpers ---- */

static int64_t col_int(const PGresult *pg, int row, int col)
{
    return (int64_t)strtoll(PQgetvalue(pg, row, col), NULL, 10);
}

static const char *col_str(const PGresult *pg, int row, int col)
{
    return PQgetvalue(pg, row, col);
}

static void fmt_int(char buf[NUM_LEN], int64_t v)
{
    snprintf(buf, NUM_LEN, "%" PRId64, v);
}

/* Runs stmt with r as the callback's argument; answers 503 if it cannot even be queued. */
static void api_exec(rs_req *r, const char *stmt, int n, const char *const *params, rs_db_cb cb)
{
    if (!rs_db_exec(rs_app_g.db, stmt, n, params, cb, r))
        rs_reply_error(r, 503, "UNAVAILABLE", "the database is unavailable");
}

/* Answers a failed statement and returns true; false when it succeeded. The answer never
 * carries PostgreSQL's text (rs_dberr): what failed is in the log under the request id. */
static bool db_failed(rs_req *r, const rs_db_result *res)
{
    return rs_dberr_failed(r, res, "a catalogue statement");
}

/* A positive int64 in plain decimal. */
static bool parse_pos_int(const char *s, int64_t max, int64_t *out)
{
    char *end;
    if (!s || s[0] < '1' || s[0] > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

static json_t *performance_json(const PGresult *pg, int row)
{
    return json_pack("{s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:I}", "id", (json_int_t)col_int(pg, row, PC_ID),
                     "venueId", (json_int_t)col_int(pg, row, PC_VENUE), "title",
                     col_str(pg, row, PC_TITLE), "startsAt", col_str(pg, row, PC_STARTS),
                     "normalPrice", (json_int_t)col_int(pg, row, PC_NORMAL), "vipPrice",
                     (json_int_t)col_int(pg, row, PC_VIP), "totalCapacity",
                     (json_int_t)col_int(pg, row, PC_TOTAL), "remainingCapacity",
                     (json_int_t)col_int(pg, row, PC_REMAINING));
}

/* ---- base64url without padding (the search cursor) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const char *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < outlen; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        size_t n = len - i < 3 ? len - i : 3;
        if (n > 1)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (n > 2)
            v |= (unsigned char)in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (n > 1)
            out[o++] = b64[(v >> 6) & 63];
        if (n > 2)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
}

/* false on any character outside the alphabet, a dangling bit group or overflow. */
static bool b64url_decode(const char *in, char *out, size_t outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    size_t len = strlen(in);
    if (len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(b64, in[i]);
        if (!p || in[i] == '\0')
            return false;
        acc = (acc << 6) | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= outlen)
                return false;
            out[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out[o] = '\0';
    return memchr(out, '\0', o) == NULL;
}

/* ---- POST /venues ---- */

typedef struct seat_key {
    const char *row;
    int64_t number;
} seat_key;

static int seat_key_cmp(const void *a, const void *b)
{
    const seat_key *x = a, *y = b;
    int c = strcmp(x->row, y->row);
    if (c != 0)
        return c;
    return (x->number > y->number) - (x->number < y->number);
}

/* Checks one seat object and appends its normalized form to out; answers 400 if bad. */
static bool seat_check(rs_req *r, json_t *seat, size_t i, seat_key *key, json_t *out)
{
    json_t *row = json_object_get(seat, "row");
    json_t *num = json_object_get(seat, "number");
    json_t *type = json_object_get(seat, "type");
    const char *t;

    if (!json_is_object(seat)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "seats[%zu] must be an object", i);
        return false;
    }
    size_t row_chars =
        json_is_string(row) ? rs_utf8_chars(json_string_value(row), json_string_length(row)) : 0;
    if (row_chars == 0 || row_chars > ROW_MAX_CHARS) {
        rs_reply_error(r, 400, "BAD_REQUEST", "seats[%zu].row must be a string of 1..%d characters",
                       i, ROW_MAX_CHARS);
        return false;
    }
    if (!json_is_integer(num) || json_integer_value(num) < 1 ||
        json_integer_value(num) > SEAT_NUMBER_MAX) {
        rs_reply_error(r, 400, "BAD_REQUEST", "seats[%zu].number must be an integer in 1..%" PRId64,
                       i, SEAT_NUMBER_MAX);
        return false;
    }
    t = json_string_value(type);
    if (!t || (strcmp(t, "NORMAL") != 0 && strcmp(t, "VIP") != 0)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "seats[%zu].type must be \"NORMAL\" or \"VIP\"", i);
        return false;
    }
    key->row = json_string_value(row);
    key->number = (int64_t)json_integer_value(num);
    json_array_append_new(out, json_pack("{s:O,s:O,s:s}", "row", row, "number", num, "type", t));
    return true;
}

static void venue_created(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (db_failed(r, res))
        return;
    if (PQntuples(res->pg) != 1) {
        rs_dberr_internal(r, "POST /venues (no row returned)", res);
        return;
    }
    rs_reply_json(r, 201,
                  json_pack("{s:I,s:s,s:I}", "id", (json_int_t)col_int(res->pg, 0, 0), "name",
                            col_str(res->pg, 0, 1), "seatCount",
                            (json_int_t)col_int(res->pg, 0, 2)));
}

static void venue_create(rs_req *r)
{
    json_t *body = rs_req_json(r);
    json_t *seats, *norm = NULL;
    seat_key *keys = NULL;
    const char *name;
    char *seats_text = NULL;
    size_t n;

    if (!body || !rs_json_get_string(r, body, "name", true, NAME_MAX_CHARS, &name))
        return;
    seats = json_object_get(body, "seats");
    if (!json_is_array(seats)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'seats' %s",
                       seats ? "must be an array" : "is required");
        return;
    }
    n = json_array_size(seats);
    if (n == 0 || n > SEATS_MAX) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'seats' must hold 1..%d seats", SEATS_MAX);
        return;
    }
    keys = calloc(n, sizeof(*keys));
    norm = json_array();
    if (!keys || !norm) {
        rs_dberr_internal(r, "POST /venues (out of memory)", NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!seat_check(r, json_array_get(seats, i), i, &keys[i], norm))
            goto out;
    }
    qsort(keys, n, sizeof(*keys), seat_key_cmp);
    for (size_t i = 1; i < n; i++) {
        if (seat_key_cmp(&keys[i - 1], &keys[i]) == 0) {
            rs_reply_error(r, 400, "BAD_REQUEST", "duplicate seat: row '%s' number %" PRId64,
                           keys[i].row, keys[i].number);
            goto out;
        }
    }
    seats_text = json_dumps(norm, JSON_COMPACT);
    if (!seats_text) {
        rs_dberr_internal(r, "POST /venues (out of memory)", NULL);
        goto out;
    }
    const char *params[] = {name, seats_text};
    api_exec(r, "api_venue_create", 2, params, venue_created);
out:
    free(seats_text);
    json_decref(norm);
    free(keys);
}

/* ---- GET /venues/{id} ---- */

static void venue_got(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (db_failed(r, res))
        return;
    int rows = PQntuples(res->pg);
    if (rows == 0) {
        rs_reply_error(r, 404, "NOT_FOUND", "venue %" PRId64 " does not exist", rs_req_id(r, 0));
        return;
    }
    static const rs_seatlist_cols cols = {.id = 2,
                                          .row = 3,
                                          .number = 4,
                                          .type = 5,
                                          .row_index = 6,
                                          .position = 7,
                                          .price = -1,
                                          .available = -1};
    json_t *seats = rs_seatlist_json(res->pg, &cols);
    rs_reply_json(r, 200,
                  json_pack("{s:I,s:s,s:o}", "id", (json_int_t)col_int(res->pg, 0, 0), "name",
                            col_str(res->pg, 0, 1), "seats", seats));
}

static void venue_get(rs_req *r)
{
    char id[NUM_LEN];
    fmt_int(id, rs_req_id(r, 0));
    const char *params[] = {id};
    api_exec(r, "api_venue_get", 1, params, venue_got);
}

/* ---- performances ---- */

/* Answers the one performance a statement returned, or 404 naming what was missing. */
static void performance_answer(rs_req *r, const rs_db_result *res, int status, const char *what,
                               int64_t id)
{
    if (db_failed(r, res))
        return;
    if (PQntuples(res->pg) != 1) {
        rs_reply_error(r, 404, "NOT_FOUND", "%s %" PRId64 " does not exist", what, id);
        return;
    }
    rs_reply_json(r, status, performance_json(res->pg, 0));
}

static void perf_created(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    json_t *venue = json_object_get(rs_req_json(r), "venueId");
    performance_answer(r, res, 201, "venue", (int64_t)json_integer_value(venue));
}

static bool get_starts_at(rs_req *r, json_t *body, const char **out)
{
    if (!rs_json_get_string(r, body, "startsAt", true, TS_MAX, out))
        return false;
    if (!rs_rfc3339_ok(*out)) {
        rs_reply_error(r, 400, "BAD_REQUEST",
                       "field 'startsAt' must be an RFC 3339 time like 2026-12-01T19:00:00Z, "
                       "in years 0001..9999 once in UTC");
        return false;
    }
    return true;
}

static void perf_create(rs_req *r)
{
    json_t *body = rs_req_json(r);
    int64_t venue, normal, vip;
    const char *title, *starts;
    char venue_s[NUM_LEN], normal_s[NUM_LEN], vip_s[NUM_LEN];

    if (!body || !rs_json_get_int(r, body, "venueId", true, 1, INT64_MAX, &venue, NULL) ||
        !rs_json_get_string(r, body, "title", true, NAME_MAX_CHARS, &title) ||
        !get_starts_at(r, body, &starts) ||
        !rs_json_get_int(r, body, "normalPrice", true, 0, PRICE_MAX, &normal, NULL) ||
        !rs_json_get_int(r, body, "vipPrice", true, 0, PRICE_MAX, &vip, NULL))
        return;
    fmt_int(venue_s, venue);
    fmt_int(normal_s, normal);
    fmt_int(vip_s, vip);
    const char *params[] = {venue_s, title, starts, normal_s, vip_s};
    api_exec(r, "api_perf_create", 5, params, perf_created);
}

static void perf_got(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    performance_answer(r, res, 200, "performance", rs_req_id(r, 0));
}

static void perf_get(rs_req *r)
{
    char id[NUM_LEN];
    fmt_int(id, rs_req_id(r, 0));
    const char *params[] = {id};
    api_exec(r, "api_perf_get", 1, params, perf_got);
}

static void perf_patch(rs_req *r)
{
    json_t *body = rs_req_json(r);
    int64_t normal = 0, vip = 0;
    bool has_normal, has_vip;
    const char *title;
    char id[NUM_LEN], normal_s[NUM_LEN], vip_s[NUM_LEN];

    if (!body || !rs_json_get_string(r, body, "title", false, NAME_MAX_CHARS, &title) ||
        !rs_json_get_int(r, body, "normalPrice", false, 0, PRICE_MAX, &normal, &has_normal) ||
        !rs_json_get_int(r, body, "vipPrice", false, 0, PRICE_MAX, &vip, &has_vip))
        return;
    if (!title && !has_normal && !has_vip) {
        rs_reply_error(r, 400, "BAD_REQUEST",
                       "give at least one of 'title', 'normalPrice', 'vipPrice'");
        return;
    }
    fmt_int(id, rs_req_id(r, 0));
    fmt_int(normal_s, normal);
    fmt_int(vip_s, vip);
    const char *params[] = {id, title, has_normal ? normal_s : NULL, has_vip ? vip_s : NULL};
    api_exec(r, "api_perf_patch", 4, params, perf_got);
}

/* ---- GET /performances (search) ---- */

static void perf_found(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (db_failed(r, res))
        return;
    int limit = (int)(intptr_t)rs_req_data(r);
    int rows = PQntuples(res->pg);
    int shown = rows > limit ? limit : rows;
    json_t *items = json_array();
    json_t *next = json_null();

    for (int i = 0; i < shown && items; i++)
        json_array_append_new(items, performance_json(res->pg, i));
    if (rows > limit && shown > 0) {
        char raw[CURSOR_MAX], enc[CURSOR_MAX * 2];
        snprintf(raw, sizeof(raw), "%s|%s", col_str(res->pg, shown - 1, PC_KEY),
                 col_str(res->pg, shown - 1, PC_ID));
        b64url_encode(raw, strlen(raw), enc, sizeof(enc));
        json_decref(next);
        next = json_string(enc);
    }
    rs_reply_json(r, 200, json_pack("{s:o,s:o}", "items", items, "nextCursor", next));
}

/* Decodes a cursor into its time text and id; false when it is not one of ours. */
static bool cursor_decode(const char *cursor, char ts[TS_MAX], char id[NUM_LEN])
{
    char raw[CURSOR_MAX];
    int64_t v;
    if (strlen(cursor) >= CURSOR_MAX || !b64url_decode(cursor, raw, sizeof(raw)))
        return false;
    char *bar = strchr(raw, '|');
    if (!bar || (size_t)(bar - raw) >= TS_MAX)
        return false;
    *bar = '\0';
    if (!rs_rfc3339_ok(raw) || !parse_pos_int(bar + 1, INT64_MAX, &v))
        return false;
    memcpy(ts, raw, (size_t)(bar - raw) + 1);
    fmt_int(id, v);
    return true;
}

static void perf_search(rs_req *r)
{
    const char *venue = rs_req_query(r, "venueId");
    const char *from = rs_req_query(r, "from");
    const char *to = rs_req_query(r, "to");
    const char *q = rs_req_query(r, "q");
    const char *avail = rs_req_query(r, "available");
    const char *limit_s = rs_req_query(r, "limit");
    const char *cursor = rs_req_query(r, "cursor");
    char venue_s[NUM_LEN], limit_p[NUM_LEN], cur_ts[TS_MAX], cur_id[NUM_LEN];
    int64_t v, limit = LIMIT_DEFAULT;

    if (venue && !parse_pos_int(venue, INT64_MAX, &v)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "venueId must be a positive integer");
        return;
    }
    if (venue)
        fmt_int(venue_s, v);
    if ((from && !rs_rfc3339_ok(from)) || (to && !rs_rfc3339_ok(to))) {
        rs_reply_error(r, 400, "BAD_REQUEST",
                       "from and to must be RFC 3339 times in years 0001..9999 once in UTC");
        return;
    }
    if (q && (q[0] == '\0' || rs_utf8_chars(q, strlen(q)) > Q_MAX_CHARS)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "q must be 1..%d characters", Q_MAX_CHARS);
        return;
    }
    if (avail && strcmp(avail, "true") != 0 && strcmp(avail, "false") != 0) {
        rs_reply_error(r, 400, "BAD_REQUEST", "available must be true or false");
        return;
    }
    if (limit_s && !parse_pos_int(limit_s, LIMIT_MAX, &limit)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "limit must be an integer in 1..%d", LIMIT_MAX);
        return;
    }
    if (cursor && !cursor_decode(cursor, cur_ts, cur_id)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "cursor is not one this server gave out");
        return;
    }
    fmt_int(limit_p, limit + 1); /* one more row tells whether a next page exists */
    rs_req_set_data(r, (void *)(intptr_t)limit);
    const char *params[] = {venue ? venue_s : NULL,
                            from,
                            to,
                            q,
                            avail && strcmp(avail, "true") == 0 ? "true" : "false",
                            cursor ? cur_ts : NULL,
                            cursor ? cur_id : NULL,
                            limit_p};
    api_exec(r, "api_perf_search", 8, params, perf_found);
}

/* ---- /healthz, /metrics ---- */

static const char *lockd_state(void)
{
    if (rs_app_g.cfg.lock_mode == RS_LOCK_DB)
        return "ok";
    return rs_app_g.locks && cm_lockclient_connected(rs_app_g.locks) ? "ok" : "down";
}

static void health_answer(rs_req *r, bool db_ok)
{
    const char *lk = lockd_state();
    bool ok = db_ok && strcmp(lk, "ok") == 0;
    rs_reply_json(r, ok ? 200 : 503,
                  json_pack("{s:s,s:s,s:s}", "status", ok ? "ok" : "down", "db",
                            db_ok ? "ok" : "down", "lockd", lk));
}

static void health_pinged(void *arg, const rs_db_result *res)
{
    health_answer(arg, res->ok);
}

/* The DB is "ok" only when a query goes through now, not merely when a socket is open
 * (the pool fails at once while every connection is down, so this stays quick). */
static void healthz(rs_req *r)
{
    if (!rs_app_g.db || !rs_db_exec(rs_app_g.db, "api_ping", 0, NULL, health_pinged, r))
        health_answer(r, false);
}

static void metrics(rs_req *r)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    rs_http_metrics(rs_app_g.http, &sb);
    rs_metrics_render(&sb);
    rs_auth_metrics(&sb);
    rs_account_metrics(&sb);
    rs_holds_metrics(&sb);
    rs_events_metrics(&sb);
    rs_seatmap_metrics(&sb);
    rs_reply_text(r, 200, "text/plain; version=0.0.4", cm_strbuf_str(&sb), sb.len);
    cm_strbuf_free(&sb);
}

const rs_route rs_api_routes[] = {
    {RS_POST, "/venues", "venues_create", venue_create, RS_ACCESS_ADMIN},
    {RS_GET, "/venues/{id}", "venue_get", venue_get, RS_ACCESS_PUBLIC},
    {RS_POST, "/performances", "performances_create", perf_create, RS_ACCESS_ADMIN},
    {RS_GET, "/performances", "performances_search", perf_search, RS_ACCESS_PUBLIC},
    {RS_GET, "/performances/{id}", "performance_get", perf_get, RS_ACCESS_PUBLIC},
    {RS_PATCH, "/performances/{id}", "performance_patch", perf_patch, RS_ACCESS_ADMIN},
    {RS_GET, "/performances/{id}/seats", "performance_seats", rs_seatmap_get, RS_ACCESS_PUBLIC},
    {RS_GET, "/healthz", "healthz", healthz, RS_ACCESS_PUBLIC},
    {RS_GET, "/metrics", "metrics", metrics, RS_ACCESS_ADMIN},
};
const size_t rs_api_nroutes = CM_ARRAY_LEN(rs_api_routes);

/* metrics_listen's one route: no token there, the network is the access control. */
const rs_route rs_api_metrics_routes[] = {
    {RS_GET, "/metrics", "metrics", metrics, RS_ACCESS_PUBLIC},
};
const size_t rs_api_metrics_nroutes = CM_ARRAY_LEN(rs_api_metrics_routes);
