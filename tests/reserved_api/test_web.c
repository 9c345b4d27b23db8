/*
 * test_web: what a web client of the real reserved needs (issue 9), against a real
 * PostgreSQL started by the harness, in --lock-mode db with no payment step:
 *   cors        cors.allow_origins: preflights, the headers on every answer, off by
 *               default, the key's validation
 *   seat_order  seats in natural row order with rowIndex and position, in GET /venues/{id}
 *               and in the seat map, for venues made through the API, through SQL and
 *               before migration 040 (its backfill)
 * One Check case per claim, registered with ctest as rapi_<case> (CK_RUN_CASE).
 */
#include <check.h>
#include <glob.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rat.h"

/* ---- seat_order ---- */

/* The layout a venue must have: seat (row, number) at rowIndex, position. */
typedef struct want_seat {
    const char *row;
    int number;
    int row_index;
    int position;
} want_seat;

/* Rows R1, R2, R10, A, B with numbers 1, 2, 10: in natural order A, B, R1, R2, R10. */
static const want_seat hall[] = {
    {"A", 1, 0, 0},  {"A", 2, 0, 1},   {"A", 10, 0, 2},  {"B", 1, 1, 0},   {"B", 2, 1, 1},
    {"B", 10, 1, 2}, {"R1", 1, 2, 0},  {"R1", 2, 2, 1},  {"R1", 10, 2, 2}, {"R2", 1, 3, 0},
    {"R2", 2, 3, 1}, {"R2", 10, 3, 2}, {"R10", 1, 4, 0}, {"R10", 2, 4, 1}, {"R10", 10, 4, 2},
};
/* Numbers that start a label, leading zeros, gaps in the numbers, text after a number. */
static const want_seat odd[] = {
    {"2", 7, 0, 0},          {"10", 3, 1, 0},          {"10", 300, 1, 1}, {"Balcony 3", 1, 2, 0},
    {"Balcony 12", 5, 3, 0}, {"Balcony 12", 40, 3, 1}, {"R01", 1, 4, 0},  {"R1", 1, 5, 0},
    {"R1A", 1, 6, 0},        {"R1B", 2, 7, 0},         {"R9", 100, 8, 0}, {"R9", 1000, 8, 1},
};
#define N_HALL (sizeof hall / sizeof hall[0])
#define N_ODD  (sizeof odd / sizeof odd[0])

/* POST /venues with the seats sent in a scrambled order (every 7th, wrapping). */
static long long venue_via_api(const rat_server *s, const want_seat *w, size_t n)
{
    json_t *seats = json_array();
    for (size_t k = 0, i = 0; k < n; k++, i = (i + 7) % n)
        json_array_append_new(seats, json_pack("{s:s,s:i,s:s}", "row", w[i].row, "number",
                                               w[i].number, "type", "NORMAL"));
    return rat_post_id(s, "/venues", json_pack("{s:s,s:o}", "name", "Natural", "seats", seats));
}

static PGconn *db_connect(const th_pg *pg)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static void db_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    PQclear(res);
}

/* The venue inserted with plain SQL, one statement per seat, in reverse order (the
 * benchmark and tests insert seats that way, bypassing the API). */
static long long venue_via_sql(PGconn *c, const want_seat *w, size_t n)
{
    PGresult *res = PQexec(c, "INSERT INTO venues (name) VALUES ('By SQL') RETURNING id");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long long id = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    for (size_t i = n; i-- > 0;) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO venue_seats (venue_id, row_label, number, type) "
                 "VALUES (%lld, '%s', %d, 'VIP')",
                 id, w[i].row, w[i].number);
        db_ok(c, sql);
    }
    return id;
}

/* seats[] of an answer holds exactly w, in w's order, each with its layout; a seat map
 * has price and available too. */
static void expect_layout(json_t *seats, const want_seat *w, size_t n, bool map)
{
    ck_assert_int_eq((long long)json_array_size(seats), (long long)n);
    for (size_t i = 0; i < n; i++) {
        json_t *st = json_array_get(seats, i);
        ck_assert_msg(strcmp(rat_jstr(st, "row"), w[i].row) == 0 &&
                          rat_jint(st, "number") == w[i].number,
                      "seat %zu: want %s %d, got %s %lld", i, w[i].row, w[i].number,
                      rat_jstr(st, "row"), rat_jint(st, "number"));
        ck_assert_msg(
            rat_jint(st, "rowIndex") == w[i].row_index && rat_jint(st, "position") == w[i].position,
            "seat %s %d: want rowIndex %d position %d, got %lld %lld", w[i].row, w[i].number,
            w[i].row_index, w[i].position, rat_jint(st, "rowIndex"), rat_jint(st, "position"));
        ck_assert_int_gt(rat_jint(st, "id"), 0);
        rat_jstr(st, "type");
        ck_assert_int_eq((long long)json_object_size(st), map ? 8 : 6);
    }
}

/* The "seats" of GET path (owned by the caller). */
static json_t *get_seats(const rat_server *s, const char *fmt, long long id)
{
    char path[128];
    fpt_resp r;
    snprintf(path, sizeof path, fmt, id);
    rat_req_ok(s, "GET", path, NULL, 200, &r);
    json_t *seats = json_incref(json_object_get(r.json, "seats"));
    ck_assert_msg(json_is_array(seats), "GET %s: no seats: %s", path, r.body);
    fpt_resp_free(&r);
    return seats;
}

/* GET /venues/{id} and the map of a new performance of it both list w in order. */
static void expect_venue(const rat_server *s, long long venue, const want_seat *w, size_t n)
{
    json_t *seats = get_seats(s, "/venues/%lld", venue);
    expect_layout(seats, w, n, false);
    json_decref(seats);
    long long perf = rat_make_perf(s, venue, "T", "2026-12-01T19:00:00Z", 1000, 3000, NULL);
    seats = get_seats(s, "/performances/%lld/seats", perf);
    expect_layout(seats, w, n, true);
    json_decref(seats);
}

/* The schema as it was before migration 040: every earlier migration, recorded the way
 * reserved records them. */
static void schema_before_040(PGconn *c)
{
    glob_t g;
    ck_assert_int_eq(glob(TH_SOURCE_DIR "/reserved/migrations/*.sql", 0, NULL, &g), 0);
    db_ok(c, "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
             "applied_at timestamptz NOT NULL DEFAULT now())");
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *name = strrchr(g.gl_pathv[i], '/') + 1;
        int version = atoi(name);
        if (version >= 40)
            continue;
        FILE *f = fopen(g.gl_pathv[i], "r");
        ck_assert_ptr_nonnull(f);
        static char sql[1 << 16];
        size_t len = fread(sql, 1, sizeof sql - 1, f);
        fclose(f);
        ck_assert_uint_lt(len, sizeof sql - 1);
        sql[len] = '\0';
        db_ok(c, "BEGIN");
        db_ok(c, sql);
        char rec[256];
        snprintf(rec, sizeof rec, "INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')",
                 version, name);
        db_ok(c, rec);
        db_ok(c, "COMMIT");
    }
    globfree(&g);
}

START_TEST(seat_order)
{
    th_pg pg;
    rat_server s;
    rat_pg_start(&pg);
    PGconn *c = db_connect(&pg);

    /* a venue made before the layout existed: the migration lays it out */
    schema_before_040(c);
    long long old = venue_via_sql(c, hall, N_HALL);
    rat_start(&s, pg.conninfo);
    expect_venue(&s, old, hall, N_HALL);

    /* through the API, whatever order the seats come in */
    expect_venue(&s, venue_via_api(&s, hall, N_HALL), hall, N_HALL);
    expect_venue(&s, venue_via_api(&s, odd, N_ODD), odd, N_ODD);
    /* through SQL, a statement per seat: each insert lays the venue out again */
    expect_venue(&s, venue_via_sql(c, odd, N_ODD), odd, N_ODD);

    /* a sold seat keeps its place in the map */
    long long venue = venue_via_api(&s, hall, N_HALL);
    long long perf = rat_make_perf(&s, venue, "Sold", "2026-12-01T19:00:00Z", 1000, 3000, NULL);
    json_t *seats = get_seats(&s, "/performances/%lld/seats", perf);
    long long sold = rat_jint(json_array_get(seats, 13), "id"); /* R10 number 2 */
    json_decref(seats);
    char path[128];
    fpt_resp r;
    snprintf(path, sizeof path, "/performances/%lld/reservations", perf);
    rat_post_created(&s, path,
                     json_pack("{s:I,s:[I]}", "userId",
                               (json_int_t)rat_make_user(&s, "B", "b@example.org"), "seatIds",
                               (json_int_t)sold),
                     &r);
    fpt_resp_free(&r);
    seats = get_seats(&s, "/performances/%lld/seats", perf);
    expect_layout(seats, hall, N_HALL, true);
    for (size_t i = 0; i < N_HALL; i++)
        ck_assert_int_eq(json_is_true(json_object_get(json_array_get(seats, i), "available")),
                         i != 13);
    json_decref(seats);

    PQfinish(c);
    rat_stop_clean(&s);
}
END_TEST

int main(void)
{
    const fpt_case cases[] = {
        {"seat_order", seat_order},
    };
    return fpt_main("reserved_web", cases, sizeof cases / sizeof cases[0], 120);
}
