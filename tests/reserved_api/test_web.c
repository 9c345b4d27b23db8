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
#include <strings.h>

#include "rat.h"

/* ---- cors ---- */

#define APP           "http://localhost:3000"
#define APP2          "https://app.example.org"
#define EVIL          "http://evil.example"
#define ACAO          "Access-Control-Allow-Origin"
#define ALLOW_HEADERS "Content-Type, Idempotency-Key, Authorization"

/* How many times the answer carries header name. */
static int header_count(const th_http_resp *r, const char *name)
{
    int n = 0;
    size_t len = strlen(name);
    for (const char *line = strstr(r->raw, "\r\n"); line && line + 2 < r->body;
         line = strstr(line + 2, "\r\n"))
        n += strncasecmp(line + 2, name, len) == 0 && line[2 + len] == ':';
    return n;
}

/* The answer has header name exactly once, with value want (NULL: has it not at all). */
static void expect_header(const th_http_resp *r, const char *what, const char *name,
                          const char *want)
{
    char got[256];
    if (want == NULL) {
        ck_assert_msg(header_count(r, name) == 0, "%s: has %s:\n%s", what, name, r->raw);
        return;
    }
    ck_assert_msg(header_count(r, name) == 1, "%s: %d %s headers:\n%s", what, header_count(r, name),
                  name, r->raw);
    ck_assert_msg(th_http_header(r, name, got, sizeof got) && strcmp(got, want) == 0,
                  "%s: %s is '%s', want '%s'", what, name, got, want);
}

/* One request with an Origin (NULL: none) and, for a preflight, the method it announces. */
static void cors_req(const th_reserved *s, const char *method, const char *path, const char *origin,
                     const char *announce, const char *body, th_http_resp *r)
{
    char headers[512];
    snprintf(headers, sizeof headers, "%s%s%s%s%s%sContent-Type: application/json\r\n",
             origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "",
             announce ? "Access-Control-Request-Method: " : "", announce ? announce : "",
             announce ? "\r\nAccess-Control-Request-Headers: content-type, authorization\r\n" : "");
    rat_req_raw(s, method, path, headers, body, r);
    ck_assert_msg(r->status != 0, "%s %s: no answer", method, path);
}

/* An answer to an allowed origin: the CORS headers of every answer, whatever the status. */
static void expect_cors_answer(const th_http_resp *r, const char *what, const char *acao)
{
    expect_header(r, what, ACAO, acao);
    expect_header(r, what, "Access-Control-Expose-Headers", acao ? "Retry-After, Allow" : NULL);
    expect_header(r, what, "Vary", "Origin");
}

/* 204 to a preflight of an allowed origin, allowing methods. */
static void expect_preflight_ok(const th_http_resp *r, const char *what, const char *acao,
                                const char *methods)
{
    ck_assert_msg(r->status == 204, "%s: status %d:\n%s", what, r->status, r->raw);
    ck_assert_msg(r->body[0] == '\0', "%s: a 204 with a body", what);
    expect_cors_answer(r, what, acao);
    expect_header(r, what, "Access-Control-Allow-Methods", methods);
    expect_header(r, what, "Access-Control-Allow-Headers", ALLOW_HEADERS);
    expect_header(r, what, "Access-Control-Max-Age", "600");
    expect_header(r, what, "Allow", methods);
    expect_header(r, what, "Content-Length", NULL);
}

/* 403 FORBIDDEN to a preflight: no Allow-Origin, so the browser refuses. */
static void expect_preflight_refused(const th_http_resp *r, const char *what, const char *message)
{
    ck_assert_msg(r->status == 403, "%s: status %d:\n%s", what, r->status, r->raw);
    ck_assert_str_eq(th_http_error_code(r), "FORBIDDEN");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message")), message);
    expect_header(r, what, ACAO, NULL);
    expect_header(r, what, "Access-Control-Allow-Methods", NULL);
    expect_header(r, what, "Vary", "Origin");
}

/* What reserved with CORS off (the default) answers: no CORS header at all, OPTIONS gets
 * 204 with Allow, a preflight too (a browser reads that as a refusal). */
static void cors_off(const th_pg *pg, long long venue)
{
    th_reserved s;
    th_http_resp r;
    char path[64];
    th_reserved_start(&s, pg->conninfo);
    snprintf(path, sizeof path, "/venues/%lld", venue);
    const char *cors_headers[] = {ACAO, "Vary", "Access-Control-Expose-Headers",
                                  "Access-Control-Allow-Methods"};
    struct {
        const char *method, *path, *announce;
        int status;
    } reqs[] = {{"GET", path, NULL, 200},
                {"GET", "/venues/999999", NULL, 404},
                {"OPTIONS", "/venues", "POST", 204},
                {"OPTIONS", path, NULL, 204}};
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        cors_req(&s, reqs[i].method, reqs[i].path, APP, reqs[i].announce, NULL, &r);
        ck_assert_msg(r.status == reqs[i].status, "off #%zu: %d", i, r.status);
        for (size_t k = 0; k < sizeof cors_headers / sizeof cors_headers[0]; k++)
            expect_header(&r, "CORS off", cors_headers[k], NULL);
        th_http_resp_free(&r);
    }
    cors_req(&s, "OPTIONS", "/venues", NULL, NULL, NULL, &r);
    expect_header(&r, "CORS off, OPTIONS", "Allow", "POST, OPTIONS");
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}

/* cors.allow_origins: what --check-config refuses (exit 2, file:line:key) and takes. */
static void cors_config(void)
{
    char out[4096], path[512], want[1024];
    const struct {
        const char *list, *why;
    } bad[] = {
        {"[http://localhost:3000/]",
         "item 1 'http://localhost:3000/': a path, query or fragment after the host (an origin "
         "has none, not even a final /)"},
        {"[" APP ", localhost:3000]", "item 2 'localhost:3000': no http:// or https:// scheme"},
        {"[\"*\", " APP "]", "item 1 '*': \"*\" with other origins"},
        {"[http://a.example:80]",
         "item 1 'http://a.example:80': a default port (browsers leave it out of Origin: drop it)"},
        {"[https://a.example:70000]",
         "item 1 'https://a.example:70000': the port must be 1..65535"},
        {"[\"null\"]", "item 1 'null': no http:// or https:// scheme"},
        {"[\"http://a b\"]", "item 1 'http://a b': a character that cannot be in a host"},
        {"[http://]", "item 1 'http://': no host"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[256];
        snprintf(path, sizeof path, "%s/cors-%zu.yaml", th_tmpdir(), i);
        snprintf(yaml, sizeof yaml, "lock: {mode: db}\ncors:\n  allow_origins: %s\n", bad[i].list);
        rat_write_file(path, yaml);
        int rc = th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL);
        snprintf(want, sizeof want,
                 "reserved: %s:3: key 'cors.allow_origins': %s; an origin is http(s)://host[:port] "
                 "(no path), or \"*\" alone\n",
                 path, bad[i].why);
        ck_assert_msg(rc == 2 && strcmp(out, want) == 0, "case %zu: exit %d, want\n%sgot\n%s", i,
                      rc, want, out);
    }
    snprintf(path, sizeof path, "%s/cors-good.yaml", th_tmpdir());
    rat_write_file(path, "cors: {allow_origins: [" APP ", " APP2 ", \"http://[::1]:8080\"]}\n");
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL), 0);
    ck_assert_msg(strstr(out, "\ncors.allow_origins = " APP "," APP2 ",http://[::1]:8080\n"), "%s",
                  out);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--check-config", NULL), 0);
    ck_assert_msg(strstr(out, "\ncors.allow_origins = \n"), "default: %s", out);
}

START_TEST(cors)
{
    th_pg pg;
    th_reserved s, star, down;
    th_http_resp r;
    char path[512], seats[64], perf_path[64], yaml[600], lockd[64];

    cors_config();
    rat_pg_start(&pg);
    snprintf(path, sizeof path, "%s/cors.yaml", th_tmpdir());
    rat_write_file(path, "lock: {mode: db}\nlog: {level: debug}\n"
                         "cors:\n  allow_origins:\n    - " APP "\n    - " APP2 "\n");
    th_reserved_spawn(&s, pg.conninfo, "--config", path, NULL);
    th_reserved_wait_up(&s);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = rat_post_id(&s, "/venues",
                                  json_pack("{s:s,s:[{s:s,s:i,s:s}]}", "name", "CORS", "seats",
                                            "row", "A", "number", 1, "type", "NORMAL"));
    long long perf = rat_make_perf(&s, venue, "T", "2026-12-01T19:00:00Z", 1, 2, NULL);
    snprintf(perf_path, sizeof perf_path, "/performances/%lld", perf);
    snprintf(seats, sizeof seats, "/performances/%lld/seats", perf);

    /* preflights of an allowed origin: 204, the path's methods; the origin as sent */
    cors_req(&s, "OPTIONS", "/venues", APP, "POST", NULL, &r);
    expect_preflight_ok(&r, "preflight POST /venues", APP, "POST, OPTIONS");
    th_http_resp_free(&r);
    cors_req(&s, "OPTIONS", perf_path, "https://APP.example.org", "PATCH", NULL, &r);
    expect_preflight_ok(&r, "preflight PATCH", "https://APP.example.org", "GET, PATCH, OPTIONS");
    th_http_resp_free(&r);
    snprintf(path, sizeof path, "%s/reservations", perf_path);
    cors_req(&s, "OPTIONS", path, APP2, "POST", NULL, &r);
    expect_preflight_ok(&r, "preflight reservations", APP2, "POST, OPTIONS");
    th_http_resp_free(&r);
    /* refused: another origin, a method the path does not serve, a method's case */
    cors_req(&s, "OPTIONS", "/venues", EVIL, "POST", NULL, &r);
    expect_preflight_refused(&r, "other origin",
                             "origin " EVIL " may not call this API (cors.allow_origins)");
    expect_header(&r, "other origin", "Allow", "POST, OPTIONS");
    th_http_resp_free(&r);
    cors_req(&s, "OPTIONS", "/venues", APP, "DELETE", NULL, &r);
    expect_preflight_refused(&r, "DELETE /venues",
                             "DELETE is not served on /venues (allowed: POST, OPTIONS)");
    th_http_resp_free(&r);
    cors_req(&s, "OPTIONS", perf_path, APP, "patch", NULL, &r);
    ck_assert_int_eq(r.status, 403);
    expect_header(&r, "patch", ACAO, NULL);
    th_http_resp_free(&r);

    /* OPTIONS that is no preflight: 204 with Allow; with an allowed Origin, its headers */
    cors_req(&s, "OPTIONS", perf_path, NULL, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    expect_header(&r, "plain OPTIONS", "Allow", "GET, PATCH, OPTIONS");
    expect_header(&r, "plain OPTIONS", ACAO, NULL);
    expect_header(&r, "plain OPTIONS", "Vary", "Origin");
    th_http_resp_free(&r);
    cors_req(&s, "OPTIONS", seats, APP, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    expect_header(&r, "OPTIONS with Origin", "Allow", "GET, OPTIONS");
    expect_cors_answer(&r, "OPTIONS with Origin", APP);
    expect_header(&r, "OPTIONS with Origin", "Access-Control-Allow-Methods", NULL);
    th_http_resp_free(&r);
    rat_req_raw(&s, "OPTIONS", "*", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 204);
    expect_header(&r, "OPTIONS *", "Allow", "POST, GET, PATCH, DELETE, OPTIONS");
    th_http_resp_free(&r);
    cors_req(&s, "OPTIONS", "/nowhere", APP, "GET", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    expect_cors_answer(&r, "OPTIONS /nowhere", APP);
    th_http_resp_free(&r);

    /* every answer to an allowed origin carries the headers, errors included */
    char big[70001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct {
        const char *method, *path, *body;
        int status;
    } answers[] = {
        {"GET", seats, NULL, 200},
        {"GET", perf_path, NULL, 200},
        {"GET", "/venues/999999", NULL, 404},
        {"GET", "/nowhere", NULL, 404},
        {"POST", "/venues", "{\"name\":\"V\"}", 400},
        {"DELETE", "/venues", NULL, 405},
        {"POST", "/venues", big, 413},
        {"POST", "/users",
         "{\"name\":\"C\",\"email\":\"c@example.org\",\"password\":\"" TH_PASSWORD "\"}", 201},
        {"GET", "/healthz", NULL, 200},
    };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s %s", answers[i].method, answers[i].path);
        cors_req(&s, answers[i].method, answers[i].path, APP, NULL, answers[i].body, &r);
        ck_assert_msg(r.status == answers[i].status, "%s: %d:\n%s", what, r.status, r.raw);
        expect_cors_answer(&r, what, APP);
        th_http_resp_free(&r);
        /* another origin or none: the same answer, only Vary */
        cors_req(&s, answers[i].method, answers[i].path, i % 2 ? EVIL : NULL, NULL, answers[i].body,
                 &r);
        ck_assert_msg(r.status == answers[i].status || (i == 7 && r.status == 409), "%s: %d", what,
                      r.status);
        expect_cors_answer(&r, what, NULL);
        th_http_resp_free(&r);
    }
    /* 503 (lockd mode, no lockd: /healthz down) */
    snprintf(yaml, sizeof yaml, "%s/cors-down.yaml", th_tmpdir());
    rat_write_file(yaml, "cors: {allow_origins: [" APP "]}\n");
    snprintf(lockd, sizeof lockd, "127.0.0.1:%d", th_free_port());
    th_reserved_spawn(&down, pg.conninfo, "--config", yaml, "--lock-mode", "lockd", "--lockd",
                      lockd, NULL);
    th_reserved_wait_up(&down);
    cors_req(&down, "GET", "/healthz", APP, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 503);
    expect_cors_answer(&r, "503 /healthz", APP);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&down);

    /* "*": any origin, answered "*" */
    snprintf(yaml, sizeof yaml, "%s/cors-star.yaml", th_tmpdir());
    rat_write_file(yaml, "lock: {mode: db}\ncors: {allow_origins: \"*\"}\n");
    th_reserved_spawn(&star, pg.conninfo, "--config", yaml, NULL);
    th_reserved_wait_up(&star);
    cors_req(&star, "OPTIONS", "/venues", EVIL, "POST", NULL, &r);
    expect_preflight_ok(&r, "* preflight", "*", "POST, OPTIONS");
    th_http_resp_free(&r);
    cors_req(&star, "GET", seats, "http://anything.example:8000", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    expect_cors_answer(&r, "* GET", "*");
    th_http_resp_free(&r);
    th_reserved_stop_clean(&star);

    /* and a preflight from an origin is counted */
    rat_req_ok(&s, "GET", "/metrics", NULL, 200, &r);
    ck_assert_msg(strstr(r.body,
                         "reserved_http_requests_total{route=\"options\",method=\"OPTIONS\","
                         "code=\"403\",class=\"4xx\"} 3\n"),
                  "%s", r.body);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);

    cors_off(&pg, venue);
}
END_TEST

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
static long long venue_via_api(const th_reserved *s, const want_seat *w, size_t n)
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
        ck_assert_int_eq((long long)json_object_size(st), map ? 9 : 6);
    }
}

/* The "seats" of GET path (owned by the caller). */
static json_t *get_seats(const th_reserved *s, const char *fmt, long long id)
{
    char path[128];
    th_http_resp r;
    snprintf(path, sizeof path, fmt, id);
    rat_req_ok(s, "GET", path, NULL, 200, &r);
    json_t *seats = json_incref(json_object_get(r.json, "seats"));
    ck_assert_msg(json_is_array(seats), "GET %s: no seats: %s", path, r.body);
    th_http_resp_free(&r);
    return seats;
}

/* GET /venues/{id} and the map of a new performance of it both list w in order. */
static void expect_venue(const th_reserved *s, long long venue, const want_seat *w, size_t n)
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
    th_reserved s;
    rat_pg_start(&pg);
    PGconn *c = db_connect(&pg);

    /* a venue made before the layout existed: the migration lays it out */
    schema_before_040(c);
    long long old = venue_via_sql(c, hall, N_HALL);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
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
    th_http_resp r;
    snprintf(path, sizeof path, "/performances/%lld/reservations", perf);
    rat_post_created(&s, path,
                     json_pack("{s:I,s:[I]}", "userId",
                               (json_int_t)rat_make_user(&s, "B", "b@example.org"), "seatIds",
                               (json_int_t)sold),
                     &r);
    th_http_resp_free(&r);
    seats = get_seats(&s, "/performances/%lld/seats", perf);
    expect_layout(seats, hall, N_HALL, true);
    for (size_t i = 0; i < N_HALL; i++)
        ck_assert_int_eq(json_is_true(json_object_get(json_array_get(seats, i), "available")),
                         i != 13);
    json_decref(seats);

    PQfinish(c);
    th_reserved_stop_clean(&s);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"cors", cors},
        {"seat_order", seat_order},
    };
    return th_check_main("reserved_web", cases, sizeof cases / sizeof cases[0], 120, argc, argv);
}
