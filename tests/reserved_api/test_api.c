/*
 * test_api: black-box tests of the catalogue side of the real reserved binary (SPEC §5,
 * §6; issue 3 §4, §5) against a real PostgreSQL started by the harness, in --lock-mode db
 * with no payment step. One Check case per claim, registered with ctest as rapi_<case>
 * (CK_RUN_CASE). Servers and HTTP through the harness (th_reserved, th_http: one request
 * per connection, read to EOF) and rat.h; each case has a fresh database of its own on the
 * binary's shared PostgreSQL (th_pg_shared), except healthz, which stops PostgreSQL. Every case
 * that runs reserved ends with a SIGTERM that must give exit status 0: under ASan that is also the
 * leak check.
 */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rat.h"

/* A venue of rows A (NORMAL, 1..n_normal) and V (VIP, 1..n_vip); returns its id. */
static long long make_venue(const th_reserved *s, const char *name, int n_normal, int n_vip)
{
    json_t *seats = json_array();
    for (int i = 1; i <= n_normal; i++)
        json_array_append_new(
            seats, json_pack("{s:s,s:i,s:s}", "row", "A", "number", i, "type", "NORMAL"));
    for (int i = 1; i <= n_vip; i++)
        json_array_append_new(seats,
                              json_pack("{s:s,s:i,s:s}", "row", "V", "number", i, "type", "VIP"));
    th_http_resp r;
    rat_post_created(s, "/venues", json_pack("{s:s,s:o}", "name", name, "seats", seats), &r);
    ck_assert_int_eq(rat_jint(r.json, "seatCount"), n_normal + n_vip);
    ck_assert_str_eq(rat_jstr(r.json, "name"), name);
    long long id = rat_jint(r.json, "id");
    th_http_resp_free(&r);
    return id;
}

static void expect_perf(json_t *p, long long id, long long venue, const char *title,
                        const char *starts, long long normal, long long vip, long long total)
{
    ck_assert_int_eq(rat_jint(p, "id"), id);
    ck_assert_int_eq(rat_jint(p, "venueId"), venue);
    ck_assert_str_eq(rat_jstr(p, "title"), title);
    ck_assert_str_eq(rat_jstr(p, "startsAt"), starts);
    ck_assert_int_eq(rat_jint(p, "normalPrice"), normal);
    ck_assert_int_eq(rat_jint(p, "vipPrice"), vip);
    ck_assert_int_eq(rat_jint(p, "totalCapacity"), total);
    ck_assert_int_eq(rat_jint(p, "remainingCapacity"), total);
    ck_assert_int_eq((long long)json_object_size(p), 8);
}

/* ---- catalogue: venue -> performance -> seat map -> patch ---- */

START_TEST(catalogue)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char path[128];

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "Hall One", 3, 2);

    snprintf(path, sizeof path, "/venues/%lld", venue);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    ck_assert_str_eq(rat_jstr(r.json, "name"), "Hall One");
    json_t *seats = json_object_get(r.json, "seats");
    ck_assert_int_eq((long long)json_array_size(seats), 5);
    ck_assert_str_eq(rat_jstr(json_array_get(seats, 0), "row"), "A");
    ck_assert_int_eq(rat_jint(json_array_get(seats, 0), "number"), 1);
    ck_assert_str_eq(rat_jstr(json_array_get(seats, 3), "type"), "VIP");
    long long vip_seat = rat_jint(json_array_get(seats, 3), "id");
    th_http_resp_free(&r);

    /* an offset on input comes back as UTC */
    long long perf =
        rat_make_perf(&s, venue, "Opening Night", "2026-12-02T04:00:00+09:00", 50000, 120000, &r);
    expect_perf(r.json, perf, venue, "Opening Night", "2026-12-01T19:00:00Z", 50000, 120000, 5);
    th_http_resp_free(&r);

    snprintf(path, sizeof path, "/performances/%lld", perf);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    expect_perf(r.json, perf, venue, "Opening Night", "2026-12-01T19:00:00Z", 50000, 120000, 5);
    th_http_resp_free(&r);

    snprintf(path, sizeof path, "/performances/%lld/seats", perf);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    ck_assert_int_eq(rat_jint(r.json, "performanceId"), perf);
    seats = json_object_get(r.json, "seats");
    ck_assert_int_eq((long long)json_array_size(seats), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *st = json_array_get(seats, i);
        bool vip = strcmp(rat_jstr(st, "type"), "VIP") == 0;
        ck_assert_int_eq(rat_jint(st, "price"), vip ? 120000 : 50000);
        ck_assert(json_is_true(json_object_get(st, "available")));
        /* rows A (0) then V (1), seats by number within each (test_web covers the order) */
        ck_assert_int_eq(rat_jint(st, "rowIndex"), i < 3 ? 0 : 1);
        ck_assert_int_eq(rat_jint(st, "position"), i < 3 ? (long long)i : (long long)i - 3);
        ck_assert_int_eq((long long)json_object_size(st), 9); /* with "held" */
    }
    th_http_resp_free(&r);

    /* PATCH one price: the other fields stay, the seat map follows */
    snprintf(path, sizeof path, "/performances/%lld", perf);
    rat_req_ok(&s, "PATCH", path, "{\"vipPrice\": 150000}", 200, &r);
    expect_perf(r.json, perf, venue, "Opening Night", "2026-12-01T19:00:00Z", 50000, 150000, 5);
    th_http_resp_free(&r);
    rat_req_ok(&s, "PATCH", path, "{\"title\": \"Gala\", \"normalPrice\": 0}", 200, &r);
    expect_perf(r.json, perf, venue, "Gala", "2026-12-01T19:00:00Z", 0, 150000, 5);
    th_http_resp_free(&r);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    expect_perf(r.json, perf, venue, "Gala", "2026-12-01T19:00:00Z", 0, 150000, 5);
    th_http_resp_free(&r);
    snprintf(path, sizeof path, "/performances/%lld/seats", perf);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    seats = json_object_get(r.json, "seats");
    for (size_t i = 0; i < json_array_size(seats); i++) {
        json_t *st = json_array_get(seats, i);
        bool vip = strcmp(rat_jstr(st, "type"), "VIP") == 0;
        ck_assert_int_eq(rat_jint(st, "price"), vip ? 150000 : 0);
        ck_assert_int_eq(vip, rat_jint(st, "id") >= vip_seat);
    }
    th_http_resp_free(&r);

    /* fractional seconds survive the round trip */
    long long p2 = rat_make_perf(&s, venue, "Late", "2026-12-01T19:00:00.250Z", 1, 2, &r);
    ck_assert_str_eq(rat_jstr(r.json, "startsAt"), "2026-12-01T19:00:00.250000Z");
    ck_assert_int_gt(p2, perf);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- search with keyset pagination ---- */

/* Walks every page of query (limit per page); checks order and returns the ids seen. */
static size_t walk(const th_reserved *s, const char *query, int limit, long long *ids, size_t max,
                   size_t *pages)
{
    char path[512], cursor[256] = "";
    char prev_start[64] = "";
    long long prev_id = 0;
    size_t n = 0;
    *pages = 0;
    for (;;) {
        th_http_resp r;
        snprintf(path, sizeof path, "/performances?%s%slimit=%d%s%s", query, query[0] ? "&" : "",
                 limit, cursor[0] ? "&cursor=" : "", cursor);
        rat_req_ok(s, "GET", path, NULL, 200, &r);
        (*pages)++;
        json_t *items = json_object_get(r.json, "items");
        ck_assert(json_is_array(items));
        ck_assert_int_le((long long)json_array_size(items), limit);
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *p = json_array_get(items, i);
            const char *st = rat_jstr(p, "startsAt");
            long long id = rat_jint(p, "id");
            int c = strcmp(prev_start, st);
            ck_assert_msg(c < 0 || (c == 0 && prev_id < id), "order broken at id %lld", id);
            snprintf(prev_start, sizeof prev_start, "%s", st);
            prev_id = id;
            ck_assert(n < max);
            ids[n++] = id;
        }
        json_t *next = json_object_get(r.json, "nextCursor");
        ck_assert_msg(next != NULL, "nextCursor missing");
        if (json_is_null(next)) {
            th_http_resp_free(&r);
            break;
        }
        ck_assert_int_eq((long long)json_array_size(items), limit);
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        th_http_resp_free(&r);
        ck_assert(*pages < 100);
    }
    return n;
}

START_TEST(search)
{
    th_pg pg;
    th_reserved s;
    long long made[25], seen[64];
    size_t pages;

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long v1 = make_venue(&s, "Big", 2, 1);
    long long v2 = make_venue(&s, "Small", 1, 0);
    /* 25 performances in v1, three to a start time (ties are broken by id), created out
     * of time order; 3 more in v2 */
    for (int i = 0; i < 25; i++) {
        char title[32], starts[32];
        int day = 1 + (24 - i) / 3;
        snprintf(title, sizeof title, "Show %02d", i);
        snprintf(starts, sizeof starts, "2027-01-%02dT20:00:00Z", day);
        made[i] = rat_make_perf(&s, v1, title, starts, 1000, 2000, NULL);
    }
    for (int i = 0; i < 3; i++)
        rat_make_perf(&s, v2, "Other", "2027-01-05T12:00:00Z", 10, 20, NULL);

    char q[64];
    snprintf(q, sizeof q, "venueId=%lld", v1);
    size_t n = walk(&s, q, 10, seen, 64, &pages);
    ck_assert_int_eq((long long)n, 25);
    ck_assert_int_eq((long long)pages, 3);
    for (int i = 0; i < 25; i++) {
        int count = 0;
        for (size_t j = 0; j < n; j++)
            count += seen[j] == made[i];
        ck_assert_msg(count == 1, "performance %lld seen %d times", made[i], count);
    }
    /* everything: 28 over pages of 7 */
    ck_assert_int_eq((long long)walk(&s, "", 7, seen, 64, &pages), 28);
    ck_assert_int_eq((long long)pages, 4);
    /* an exact page boundary: the last full page has nextCursor null or an empty page after */
    ck_assert_int_eq((long long)walk(&s, q, 25, seen, 64, &pages), 25);
    /* filters */
    ck_assert_int_eq((long long)walk(&s, "q=sHoW%201", 100, seen, 64, &pages), 10);
    ck_assert_int_eq((long long)walk(&s, "q=other", 100, seen, 64, &pages), 3);
    ck_assert_int_eq((long long)walk(&s, "q=nothing-like-this", 100, seen, 64, &pages), 0);
    ck_assert_int_eq((long long)walk(&s, "from=2027-01-08T00:00:00Z&to=2027-01-09T20:00:00Z", 3,
                                     seen, 64, &pages),
                     4);
    ck_assert_int_eq((long long)pages, 2);
    ck_assert_int_eq((long long)walk(&s, "from=2027-01-09T21:00:00%2B01:00", 100, seen, 64, &pages),
                     1);
    ck_assert_int_eq((long long)walk(&s, "available=true", 100, seen, 64, &pages), 28);
    snprintf(q, sizeof q, "venueId=%lld&q=other", v1);
    ck_assert_int_eq((long long)walk(&s, q, 100, seen, 64, &pages), 0);
    /* default limit 20 */
    th_http_resp r;
    rat_req_ok(&s, "GET", "/performances", NULL, 200, &r);
    ck_assert_int_eq((long long)json_array_size(json_object_get(r.json, "items")), 20);
    ck_assert(json_is_string(json_object_get(r.json, "nextCursor")));
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- users ---- */

START_TEST(users)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    rat_req_ok(&s, "POST", "/users",
               "{\"name\":\"Ann\",\"email\":\"ann@example.org\",\"password\":\"" TH_PASSWORD "\"}",
               201, &r);
    ck_assert_int_gt(rat_jint(r.json, "id"), 0);
    ck_assert_str_eq(rat_jstr(r.json, "name"), "Ann");
    ck_assert_str_eq(rat_jstr(r.json, "email"), "ann@example.org");
    long long ann = rat_jint(r.json, "id");
    th_http_resp_free(&r);
    rat_req_ok(&s, "POST", "/users",
               "{\"name\":\"Bob\",\"email\":\"bob@example.org\",\"password\":\"" TH_PASSWORD "\"}",
               201, &r);
    ck_assert_int_gt(rat_jint(r.json, "id"), ann);
    th_http_resp_free(&r);
    const char *dups[] = {
        "{\"name\":\"Ann2\",\"email\":\"ann@example.org\",\"password\":\"" TH_PASSWORD "\"}",
        "{\"name\":\"Ann3\",\"email\":\"ANN@Example.org\",\"password\":\"" TH_PASSWORD "\"}"};
    for (size_t i = 0; i < 2; i++) {
        rat_req_ok(&s, "POST", "/users", dups[i], 409, &r);
        ck_assert_str_eq(th_http_error_code(&r), "EMAIL_TAKEN");
        th_http_resp_free(&r);
    }
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- the table of bad requests ---- */

typedef struct bad_case {
    const char *method;
    const char *path; /* {P} = an existing performance id, {V} = an existing venue id */
    const char *body;
    int status;
    const char *code;
} bad_case;

#define SEAT(r, n, t) "{\"row\":\"" r "\",\"number\":" #n ",\"type\":\"" t "\"}"
#define PERF(v, t, s, n, p)                                                                        \
    "{\"venueId\":" v ",\"title\":" t ",\"startsAt\":" s ",\"normalPrice\":" n ",\"vipPrice\":" p  \
    "}"

static const bad_case bad_cases[] = {
    {"POST", "/venues", "not json", 400, "BAD_REQUEST"},
    {"POST", "/venues", "", 400, "BAD_REQUEST"},
    {"POST", "/venues", "[{\"name\":\"V\"}]", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\"", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\"}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"seats\":[" SEAT("A", 1, "VIP") "]}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"\",\"seats\":[" SEAT("A", 1, "VIP") "]}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":7,\"seats\":[" SEAT("A", 1, "VIP") "]}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[]}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":\"A1\"}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[7]}", 400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("A", 1, "GOLD") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues",
     "{\"name\":\"V\",\"seats\":[" SEAT("A", 1, "NORMAL") "," SEAT("B", 1, "NORMAL") "," SEAT(
         "A", 1, "VIP") "]}",
     400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("A", 0, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("A", -4, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues",
     "{\"name\":\"V\",\"seats\":[" SEAT("A", 99999999999999999999, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("A", 2147483648, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("A", 1.5, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("", 1, "NORMAL") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"seats\":[" SEAT("ABCDEFGHIJKLMNOPQ", 1, "NORMAL") "]}",
     400, "BAD_REQUEST"},
    {"POST", "/venues", "{\"name\":\"V\",\"name\":\"W\",\"seats\":[" SEAT("A", 1, "VIP") "]}", 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("999999", "\"T\"", "\"2026-12-01T19:00:00Z\"", "1", "2"), 404,
     "NOT_FOUND"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-12-01T19:00:00Z\"", "-1", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-12-01T19:00:00Z\"", "1", "-2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-12-01T19:00:00Z\"", "\"1000\"", "2"),
     400, "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-12-01T19:00:00Z\"", "10.5", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"tomorrow\"", "1", "2"), 400, "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-12-01\"", "1", "2"), 400, "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-13-01T19:00:00Z\"", "1", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "\"2026-02-30T19:00:00Z\"", "1", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "\"T\"", "1764615600", "1", "2"), 400, "BAD_REQUEST"},
    {"POST", "/performances", PERF("{V}", "null", "\"2026-12-01T19:00:00Z\"", "1", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", PERF("\"{V}\"", "\"T\"", "\"2026-12-01T19:00:00Z\"", "1", "2"), 400,
     "BAD_REQUEST"},
    {"POST", "/performances", "{\"venueId\":{V},\"title\":\"T\",\"normalPrice\":1,\"vipPrice\":2}",
     400, "BAD_REQUEST"},
    {"GET", "/performances/999999", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/abc", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/0", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/-1", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/99999999999999999999", NULL, 404, "NOT_FOUND"},
    {"GET", "/venues/999999", NULL, 404, "NOT_FOUND"},
    {"GET", "/venues/{V}/extra", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/999999/seats", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/x1/seats", NULL, 404, "NOT_FOUND"},
    {"PATCH", "/performances/{P}", "{}", 400, "BAD_REQUEST"},
    {"PATCH", "/performances/{P}", "{\"vipPrice\":-1}", 400, "BAD_REQUEST"},
    {"PATCH", "/performances/{P}", "{\"title\":\"\"}", 400, "BAD_REQUEST"},
    {"PATCH", "/performances/{P}", "{\"normalPrice\":\"5\"}", 400, "BAD_REQUEST"},
    {"PATCH", "/performances/{P}", "[]", 400, "BAD_REQUEST"},
    {"PATCH", "/performances/999999", "{\"title\":\"x\"}", 404, "NOT_FOUND"},
    {"PUT", "/performances/{P}", "{}", 405, "METHOD_NOT_ALLOWED"},
    {"DELETE", "/venues", NULL, 405, "METHOD_NOT_ALLOWED"},
    {"GET", "/users", NULL, 405, "METHOD_NOT_ALLOWED"},
    {"POST", "/performances/{P}/seats", "{}", 405, "METHOD_NOT_ALLOWED"},
    {"POST", "/healthz", "{}", 405, "METHOD_NOT_ALLOWED"},
    {"GET", "/nope", NULL, 404, "NOT_FOUND"},
    {"GET", "/app/nope.js", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances/", NULL, 404, "NOT_FOUND"},
    {"GET", "/performances?limit=0", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?limit=101", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?limit=ten", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?limit=-5", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?cursor=!!!", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?cursor=Z2FyYmFnZQ", NULL, 400, "BAD_REQUEST"}, /* garbage */
    {"GET", "/performances?cursor=MjAyNi0xMi0wMXwxMg", NULL, 400,
     "BAD_REQUEST"}, /* 2026-12-01|12 */
    {"GET", "/performances?from=yesterday", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?to=2026-99-01T00:00:00Z", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?venueId=-3", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?venueId=abc", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?available=maybe", NULL, 400, "BAD_REQUEST"},
    {"GET", "/performances?q=", NULL, 400, "BAD_REQUEST"},
    {"POST", "/users", "{\"name\":\"x\",\"email\":\"nope\"}", 400, "BAD_REQUEST"},
    {"POST", "/users", "{\"name\":\"x\",\"email\":\"a b@c.org\"}", 400, "BAD_REQUEST"},
    {"POST", "/users", "{\"name\":\"x\",\"email\":\"@c.org\"}", 400, "BAD_REQUEST"},
    {"POST", "/users", "{\"email\":\"x@c.org\"}", 400, "BAD_REQUEST"},
    {"POST", "/users", "{\"name\":\"x\",\"email\":[\"x@c.org\"]}", 400, "BAD_REQUEST"},
    {"POST", "/users", "\"x@c.org\"", 400, "BAD_REQUEST"},
};

/* Replaces {P} and {V} in text. */
static void subst(const char *in, long long perf, long long venue, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 24 < outlen; p++) {
        if (strncmp(p, "{P}", 3) == 0 || strncmp(p, "{V}", 3) == 0) {
            o += (size_t)snprintf(out + o, outlen - o, "%lld", p[1] == 'P' ? perf : venue);
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

START_TEST(badreq)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char path[256], body[512], allow[64];

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "V", 1, 1);
    long long perf = rat_make_perf(&s, venue, "T", "2026-12-01T19:00:00Z", 1, 2, NULL);

    ck_assert_int_ge((long long)(sizeof bad_cases / sizeof bad_cases[0]), 25);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        subst(c->path, perf, venue, path, sizeof path);
        if (c->body)
            subst(c->body, perf, venue, body, sizeof body);
        rat_req(&s, c->method, path, c->body ? body : NULL, &r);
        ck_assert_msg(r.status == c->status, "#%zu %s %s %s: want %d, got %d: %s", i, c->method,
                      path, c->body ? body : "", c->status, r.status, r.body);
        ck_assert_msg(strcmp(th_http_error_code(&r), c->code) == 0, "#%zu %s %s: want %s, got %s",
                      i, c->method, path, c->code, r.body);
        const char *msg =
            json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
        ck_assert_msg(msg && msg[0], "#%zu: no error message", i);
        if (c->status == 405)
            ck_assert_msg(th_http_header(&r, "Allow", allow, sizeof allow), "#%zu: no Allow", i);
        th_http_resp_free(&r);
    }

    /* a body over limits.max_body_bytes (65536) */
    size_t big = 70000;
    char *huge = malloc(big + 1);
    ck_assert_ptr_nonnull(huge);
    memset(huge, 'x', big);
    memcpy(huge, "{\"name\":\"", 9);
    memcpy(huge + big - 2, "\"}", 2);
    huge[big] = '\0';
    rat_req(&s, "POST", "/venues", huge, &r);
    ck_assert_msg(r.status == 413, "oversize: got %d", r.status);
    ck_assert_str_eq(th_http_error_code(&r), "TOO_LARGE");
    th_http_resp_free(&r);
    free(huge);

    /* nothing above created anything: the venue list of searches is unchanged */
    rat_req_ok(&s, "GET", "/performances", NULL, 200, &r);
    ck_assert_int_eq((long long)json_array_size(json_object_get(r.json, "items")), 1);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- /healthz and /metrics ---- */

START_TEST(healthz)
{
    th_pg pg;
    th_reserved s, nolockd;
    th_http_resp r;
    char lockd[64];

    /* its own cluster: this case stops and restarts PostgreSQL */
    ck_assert_msg(th_pg_start(&pg), "cannot start PostgreSQL");
    th_reserved_start(&s, pg.conninfo);
    rat_req_ok(&s, "GET", "/healthz", NULL, 200, &r);
    ck_assert_str_eq(rat_jstr(r.json, "status"), "ok");
    ck_assert_str_eq(rat_jstr(r.json, "db"), "ok");
    ck_assert_str_eq(rat_jstr(r.json, "lockd"), "ok");
    th_http_resp_free(&r);

    /* lockd mode with no lockd listening: up, but not healthy */
    snprintf(lockd, sizeof lockd, "127.0.0.1:%d", th_free_port());
    th_reserved_spawn(&nolockd, pg.conninfo, "--lock-mode", "lockd", "--lockd", lockd, NULL);
    th_reserved_wait_up(&nolockd);
    rat_req_ok(&nolockd, "GET", "/healthz", NULL, 503, &r);
    ck_assert_str_eq(rat_jstr(r.json, "status"), "down");
    ck_assert_str_eq(rat_jstr(r.json, "db"), "ok");
    ck_assert_str_eq(rat_jstr(r.json, "lockd"), "down");
    th_http_resp_free(&r);
    th_reserved_stop_clean(&nolockd);

    /* the database stops: 503 with db down; it comes back: ok again (the pool heals) */
    th_pg_stop(&pg, true);
    rat_req_ok(&s, "GET", "/healthz", NULL, 503, &r);
    ck_assert_str_eq(rat_jstr(r.json, "status"), "down");
    ck_assert_str_eq(rat_jstr(r.json, "db"), "down");
    th_http_resp_free(&r);
    rat_req_ok(&s, "GET", "/performances/1", NULL, 503, &r);
    ck_assert_str_eq(th_http_error_code(&r), "UNAVAILABLE");
    th_http_resp_free(&r);
    ck_assert(th_pg_restart(&pg));
    uint64_t until = th_now_ms() + 20000;
    int status = 0;
    while (th_now_ms() < until) {
        rat_req(&s, "GET", "/healthz", NULL, &r);
        status = r.status;
        th_http_resp_free(&r);
        if (status == 200)
            break;
        th_sleep_ms(200);
    }
    ck_assert_int_eq(status, 200);
    th_reserved_stop_clean(&s);
}
END_TEST

START_TEST(metrics)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char ctype[128];

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    make_venue(&s, "M", 1, 0);
    rat_req(&s, "GET", "/venues/abc", NULL, &r);
    th_http_resp_free(&r);
    rat_req(&s, "GET", "/nowhere", NULL, &r);
    th_http_resp_free(&r);
    rat_req_ok(&s, "GET", "/metrics", NULL, 200, &r);
    ck_assert(th_http_header(&r, "Content-Type", ctype, sizeof ctype));
    ck_assert_msg(strncmp(ctype, "text/plain", 10) == 0, "Content-Type %s", ctype);
    const char *want[] = {
        "reserved_http_requests_total{route=\"venues_create\",method=\"POST\",code=\"201\","
        "class=\"2xx\"} 1\n",
        "reserved_http_requests_total{route=\"venue_get\",method=\"GET\",code=\"404\","
        "class=\"4xx\"} 1\n",
        "reserved_http_requests_total{route=\"unrouted\",method=\"ANY\",code=\"404\","
        "class=\"4xx\"} 1\n",
        "reserved_http_request_seconds_count{route=\"venues_create\",method=\"POST\"} 1\n",
        "reserved_db_pool_size 8\n",
        "reserved_db_pool_up ",
        "reserved_db_pool_in_use ",
        "reserved_bookings_total{outcome=\"confirmed\"} 0\n",
        "reserved_guard_firings_total{guard=\"capacity\"} 0\n",
        "reserved_payments_total{outcome=\"approved\"} 0\n",
        "reserved_booking_latency_seconds_count 0\n",
        "reserved_lock_wait_seconds_bucket",
        "reserved_http_in_flight 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(r.body, want[i]) != NULL, "metrics lack %s", want[i]);
    /* one HELP per family */
    const char *help = "# HELP reserved_http_request_seconds ";
    const char *first = strstr(r.body, help);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + 1, help));
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- process: SIGTERM, config errors, three at once ---- */

START_TEST(sigterm)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    make_venue(&s, "S", 2, 0);
    rat_req_ok(&s, "GET", "/healthz", NULL, 200, &r);
    th_http_resp_free(&r);
    int port = s.port;
    th_reserved_stop_clean(&s);
    ck_assert_msg(!th_wait_port(port, 200), "still listening after exit");
}
END_TEST

/* reserved with a long lock_timeout so a request can be held in flight on purpose. */
static void rat_start_patient(th_reserved *s, const th_pg *pg)
{
    char path[512];
    snprintf(path, sizeof path, "%s/patient.yaml", th_tmpdir());
    rat_write_file(path, "lock: {mode: db}\ndb: {lock_timeout_ms: 20000}\nlog: {level: debug}\n");
    th_reserved_spawn(s, pg->conninfo, "--config", path, NULL);
    th_reserved_wait_up(s);
    th_reserved_admin(s, pg->conninfo);
}

/* Waits until n requests besides the /metrics probe itself are in flight. */
static void wait_in_flight(const th_reserved *s, int n)
{
    char want[64];
    uint64_t until = th_now_ms() + 10000;
    snprintf(want, sizeof want, "reserved_http_in_flight %d\n", n + 1);
    while (th_now_ms() < until) {
        th_http_resp r;
        rat_req_ok(s, "GET", "/metrics", NULL, 200, &r);
        bool there = strstr(r.body, want) != NULL;
        th_http_resp_free(&r);
        if (there)
            return;
        th_sleep_ms(20);
    }
    ck_abort_msg("never %d requests in flight", n);
}

/* SIGTERM while a request waits: it still gets its answer, then the exit is clean. */
START_TEST(inflight)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char path[64];

    rat_pg_start(&pg);
    rat_start_patient(&s, &pg);
    long long venue = make_venue(&s, "Held", 1, 0);
    PGconn *holder = rat_lock_venues(pg.conninfo);
    snprintf(path, sizeof path, "/venues/%lld", venue);
    int fd = th_http_send(s.port, "GET", path, NULL, NULL, 0);
    ck_assert_int_ge(fd, 0);
    wait_in_flight(&s, 1);
    th_signal(s.pid, SIGTERM);
    th_sleep_ms(500);
    ck_assert_msg(!th_wait_port(s.port, 100), "still accepting after SIGTERM");
    ck_assert_msg(th_wait_exit(s.pid, 200) == -1, "exited with a request in flight");
    rat_unlock_venues(holder);
    th_http_recv(fd, &r);
    if (r.status != 200)
        th_dump_log(s.log, 40);
    ck_assert_msg(r.status == 200, "in-flight request: got %d: %s", r.status, r.body);
    ck_assert_str_eq(rat_jstr(r.json, "name"), "Held");
    th_http_resp_free(&r);
    int st = th_wait_exit(s.pid, 10000);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        th_dump_log(s.log, 40);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
}
END_TEST

/* A client that leaves while its request waits: the late answer is dropped safely. */
START_TEST(disconnect)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char path[64];

    rat_pg_start(&pg);
    rat_start_patient(&s, &pg);
    long long venue = make_venue(&s, "Gone", 1, 0);
    PGconn *holder = rat_lock_venues(pg.conninfo);
    snprintf(path, sizeof path, "/venues/%lld", venue);
    for (int i = 0; i < 5; i++) {
        int fd = th_http_send(s.port, "GET", path, NULL, NULL, 0);
        ck_assert_int_ge(fd, 0);
        wait_in_flight(&s, i + 1);
        close(fd);
    }
    th_sleep_ms(300);
    rat_unlock_venues(holder);
    th_sleep_ms(300);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    th_http_resp_free(&r);
    rat_req_ok(&s, "GET", "/metrics", NULL, 200, &r);
    const char *dropped = strstr(r.body, "\nreserved_http_answers_dropped_total ");
    ck_assert_ptr_nonnull(dropped);
    ck_assert_msg(strncmp(dropped, "\nreserved_http_answers_dropped_total 5\n", 39) == 0, "%.60s",
                  dropped + 1);
    ck_assert_ptr_nonnull(strstr(r.body, "reserved_http_in_flight 1\n"));
    /* the five left ones were answered (and counted) too, only not sent */
    ck_assert_ptr_nonnull(
        strstr(r.body, "route=\"venue_get\",method=\"GET\",code=\"200\",class=\"2xx\"} 6\n"));
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

START_TEST(config_error)
{
    char out[8192], path[512], want[600];
    struct {
        const char *yaml;
        const char *key;
        int line;
    } bad[] = {
        {"listen: 127.0.0.1:8081\ndb_pool_size: lots\n", "db_pool_size", 2},
        {"listen: 127.0.0.1:8081\nlock:\n  mode: redis\n", "lock.mode", 3},
        {"limits: {max_body_bytes: -1}\n", "limits.max_body_bytes", 1},
        {"log: {level: loud}\n", "log.level", 1},
        {"payment:\n  url: \"\"\n  timeout_ms: 0\n", "payment.timeout_ms", 3},
        {"reconcile: {interval_ms: 5000}\nbogus_key: 1\n", "bogus_key", 2},
        {"db: {lock_timeout_ms: 0}\n", "db.lock_timeout_ms", 1},
        /* past 12 s the longest silence (1.25x) would pass SPEC §8's 15 s */
        {"events:\n  keepalive_ms: 12001\n", "events.keepalive_ms", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/bad-%zu.yaml", th_tmpdir(), i);
        rat_write_file(path, bad[i].yaml);
        int rc = th_reserved_run(out, sizeof out, "--config", path, NULL);
        ck_assert_msg(rc == 2, "case %zu: exit %d: %s", i, rc, out);
        /* FILE:LINE: key 'k': reason, or FILE:LINE: unknown key 'k' */
        snprintf(want, sizeof want, "%s:%d: ", path, bad[i].line);
        ck_assert_msg(strstr(out, want) != NULL, "case %zu: want '%s' in: %s", i, want, out);
        snprintf(want, sizeof want, "key '%s'", bad[i].key);
        ck_assert_msg(strstr(out, want) != NULL, "case %zu: want '%s' in: %s", i, want, out);
    }
    /* the checks of single values (validators) and across keys name file and line, or
     * the flag: exactly these messages */
    struct {
        const char *yaml; /* NULL: the flag alone */
        const char *flag, *value;
        const char *want; /* {F}: the file */
    } exact[] = {
        {"listen: 127.0.0.1:8081\ndatabase: \"nonsense\"\n", NULL, NULL,
         "{F}:2: key 'database': not a libpq conninfo: missing \"=\" after \"nonsense\" in "
         "connection info string"},
        {NULL, "--database", "nonsense",
         "--database: key 'database': not a libpq conninfo: missing \"=\" after \"nonsense\" in "
         "connection info string"},
        {NULL, "--database", "host=/tmp bogus=1",
         "--database: key 'database': not a libpq conninfo: invalid connection option \"bogus\""},
        {NULL, "--database", "host='unterminated",
         "--database: key 'database': not a libpq conninfo: unterminated quoted string in "
         "connection info string"},
        {"database: \"\"\n", NULL, NULL, "{F}:1: key 'database': a libpq conninfo is required"},
        {NULL, "--database", "", "--database: key 'database': a libpq conninfo is required"},
        {"log: {level: info}\npayment:\n  url: ftp://x\n", NULL, NULL,
         "{F}:3: key 'payment.url': 'ftp://x': only http:// is supported (or empty: no payment "
         "step)"},
        {NULL, "--payment-url", "ftp://x",
         "--payment-url: key 'payment.url': 'ftp://x': only http:// is supported (or empty: no "
         "payment step)"},
        {NULL, "--payment-url", "https://pay.example",
         "--payment-url: key 'payment.url': 'https://pay.example': only http:// is supported (or "
         "empty: no payment step)"},
        {NULL, "--payment-url", "http://",
         "--payment-url: key 'payment.url': 'http://' has no host (http://host[:port][/path]) (or "
         "empty: no payment step)"},
        {NULL, "--payment-url", "http:///x",
         "--payment-url: key 'payment.url': 'http:///x' has no host (http://host[:port][/path]) "
         "(or empty: no payment step)"},
        {NULL, "--payment-url", "http://h/p?q",
         "--payment-url: key 'payment.url': 'http://h/p?q': no user, query or fragment "
         "(http://host[:port][/path]) (or empty: no payment step)"},
        {NULL, "--payment-url", "http://u@h/",
         "--payment-url: key 'payment.url': 'http://u@h/': no user, query or fragment "
         "(http://host[:port][/path]) (or empty: no payment step)"},
        {NULL, "--payment-url", "no url",
         "--payment-url: key 'payment.url': 'no url' is not a URL (or empty: no payment step)"},
        {"lockd: []\nlock: {mode: lockd}\n", NULL, NULL,
         "{F}:1: key 'lockd': lock.mode lockd needs at least one endpoint"},
        {NULL, "--lockd", "", "--lockd: key 'lockd': lock.mode lockd needs at least one endpoint"},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        char line[1024];
        int rc;
        snprintf(path, sizeof path, "%s/exact-%zu.yaml", th_tmpdir(), i);
        if (exact[i].yaml != NULL) {
            rat_write_file(path, exact[i].yaml);
            rc = th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL);
        } else {
            rc = th_reserved_run(out, sizeof out, exact[i].flag, exact[i].value, "--check-config",
                                 NULL);
        }
        const char *f = strstr(exact[i].want, "{F}");
        snprintf(line, sizeof line, "reserved: %s%s\n", f ? path : "", f ? f + 3 : exact[i].want);
        ck_assert_msg(rc == 2, "case %zu: exit %d: %s", i, rc, out);
        ck_assert_msg(strcmp(out, line) == 0, "case %zu: want\n%sgot\n%s", i, line, out);
    }
    /* flags */
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--lock-mode", "chaos", NULL), 2);
    ck_assert_msg(strstr(out, "--lock-mode") && strstr(out, "lock.mode"), "%s", out);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config",
                                     TH_SOURCE_DIR "/config/reserved.yaml", "--payment-url",
                                     "http://127.0.0.1:8090/gw/", "--check-config", NULL),
                     0);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--no-such-flag", NULL), 2);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config", "/nonexistent/r.yaml", NULL), 2);
    ck_assert_msg(strstr(out, "/nonexistent/r.yaml") != NULL, "%s", out);
    /* the good paths */
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--version", NULL), 0);
    ck_assert_msg(strncmp(out, "reserved ", 9) == 0, "%s", out);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--help", NULL), 0);
    ck_assert_msg(strstr(out, "reconcile.interval_ms") != NULL, "%s", out);
    /* the synopsis of SPEC §5, as the docs show it */
    const char *synopsis =
        "usage: reserved --config FILE [--listen H:P] [--database CONNINFO] [--lockd H:P,H:P,...]\n"
        "                [--payment-url URL] [--lock-mode lockd|db] [--log-level L]\n"
        "                [--check-config] [--help] [--version]\n"
        "\n"
        "  --config FILE         YAML config, keys below (optional: every key has a default)\n";
    ck_assert_msg(strncmp(out, synopsis, strlen(synopsis)) == 0, "--help:\n%s", out);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config",
                                     TH_SOURCE_DIR "/config/reserved.yaml", "--lock-mode", "db",
                                     "--check-config", NULL),
                     0);
    ck_assert_msg(strstr(out, "lock.mode = db") != NULL, "%s", out);
    /* a comment every 12.5 s at most by default (SPEC §8: at least every 15 s) */
    ck_assert_msg(strstr(out, "events.keepalive_ms = 10000") != NULL, "%s", out);
}
END_TEST

START_TEST(three_start)
{
    th_pg pg;
    th_reserved s[3];
    th_http_resp r;

    rat_pg_start(&pg);
    for (int i = 0; i < 3; i++)
        th_reserved_spawn(&s[i], pg.conninfo, "--lock-mode", "db", NULL);
    for (int i = 0; i < 3; i++)
        th_reserved_wait_up(&s[i]);
    th_reserved_admin(&s[0], pg.conninfo);
    long long venue = make_venue(&s[0], "Shared", 2, 2);
    for (int i = 0; i < 3; i++) {
        char path[64];
        rat_req_ok(&s[i], "GET", "/healthz", NULL, 200, &r);
        th_http_resp_free(&r);
        snprintf(path, sizeof path, "/venues/%lld", venue);
        rat_req_ok(&s[i], "GET", path, NULL, 200, &r);
        th_http_resp_free(&r);
    }
    /* each migration's objects exist exactly once */
    PGconn *c = PQconnectdb(pg.conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *res =
        PQexec(c, "SELECT (SELECT count(*) FROM pg_proc WHERE proname = 'rs_rfc3339'),"
                  " (SELECT count(*) FROM pg_class WHERE relname = 'users_email_lower'),"
                  " (SELECT count(*) FROM pg_class WHERE relname = 'venues')");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    for (int col = 0; col < 3; col++)
        ck_assert_str_eq(PQgetvalue(res, 0, col), "1");
    PQclear(res);
    res = PQexec(c, "SELECT count(*), count(DISTINCT version), count(*) FILTER (WHERE version = 20)"
                    " FROM schema_migrations");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    ck_assert_int_ge(atoi(PQgetvalue(res, 0, 0)), 3);
    ck_assert_str_eq(PQgetvalue(res, 0, 2), "1");
    PQclear(res);
    PQfinish(c);
    for (int i = 0; i < 3; i++)
        th_reserved_stop_clean(&s[i]);
}
END_TEST

/* ---- mutated bodies: whatever arrives, a documented answer and an intact database ---- */

static uint64_t mut_state = 0x9e3779b97f4a7c15ull;

static uint64_t mut_next(void)
{
    mut_state ^= mut_state << 13;
    mut_state ^= mut_state >> 7;
    mut_state ^= mut_state << 17;
    return mut_state;
}

static size_t mut_below(size_t n)
{
    return n > 0 ? (size_t)(mut_next() % n) : 0;
}

/* JSON fragments that stress types and ranges, spliced in anywhere. */
static const char *const mut_tokens[] = {
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1e309",
    "99999999999999999999",
    "-0",
    "1.5",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"x\"",
    "\"VIP\"",
    ",",
    ":",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "\\",
    "\xc3\x28",
    "\xff",
    "\"2026-02-30T19:00:00Z\"",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
};

/* One random change to a text (byte level): replace, delete a span, duplicate a span,
 * splice a token in, or cut the tail. Never a NUL byte (the client sends C strings). */
static void mut_bytes(char *buf, size_t cap)
{
    size_t len = strlen(buf);
    size_t at = mut_below(len + 1);
    switch (mut_below(5)) {
    case 0:
        if (len > 0)
            buf[mut_below(len)] = (char)(1 + mut_below(255));
        break;
    case 1: {
        size_t n = 1 + mut_below(8);
        if (at + n > len)
            n = len - at;
        memmove(buf + at, buf + at + n, len - at - n + 1);
        break;
    }
    case 2: {
        size_t n = 1 + mut_below(16);
        if (at + n > len)
            n = len - at;
        if (len + n + 1 <= cap) {
            memmove(buf + at + n, buf + at, len - at + 1);
            memcpy(buf + at + n, buf + at, n); /* the span again, right after itself */
        }
        break;
    }
    case 3: {
        const char *t = mut_tokens[mut_below(sizeof mut_tokens / sizeof mut_tokens[0])];
        size_t n = strlen(t);
        if (len + n + 1 <= cap) {
            memmove(buf + at + n, buf + at, len - at + 1);
            memcpy(buf + at, t, n);
        }
        break;
    }
    default:
        buf[at] = '\0';
        break;
    }
}

/* One random change to the JSON tree: a field gets a value of another type, goes away,
 * or an unknown field comes in. */
static void mut_tree(json_t *root)
{
    if (!json_is_object(root) || json_object_size(root) == 0)
        return;
    size_t pick = mut_below(json_object_size(root)), i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (i++ != pick)
            continue;
        switch (mut_below(4)) {
        case 0:
            json_object_del(root, key);
            return;
        case 1:
            if (json_is_array(v) && json_array_size(v) > 0) {
                mut_tree(json_array_get(v, mut_below(json_array_size(v))));
                return;
            }
            json_object_set_new(root, key,
                                json_integer((json_int_t)(mut_next() % 2000001) - 1000000));
            return;
        case 2: {
            json_t *vals[] = {json_null(),   json_true(),    json_string(""),  json_array(),
                              json_object(), json_real(0.5), json_string("42")};
            size_t k = mut_below(sizeof vals / sizeof vals[0]);
            json_object_set(root, key, vals[k]);
            for (size_t j = 0; j < sizeof vals / sizeof vals[0]; j++)
                json_decref(vals[j]);
            return;
        }
        default:
            json_object_set_new(root, "unexpected", json_integer(1));
            return;
        }
    }
}

START_TEST(mutate)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    char path[256], seed[1024], body[4096];
    enum { ROUNDS = 2500 };
    unsigned by_status[600] = {0};

    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "Mutated hall", 8, 4);
    long long perf = rat_make_perf(&s, venue, "Mutated", "2026-12-01T19:00:00Z", 1000, 3000, NULL);
    long long user = rat_make_user(&s, "M", "m@example.org");
    snprintf(path, sizeof path, "/venues/%lld", venue);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    long long seat0 = rat_jint(json_array_get(json_object_get(r.json, "seats"), 0), "id");
    th_http_resp_free(&r);

    struct {
        const char *method, *path, *body;
    } seeds[] = {
        {"POST", "/venues",
         "{\"name\":\"V\",\"seats\":[{\"row\":\"A\",\"number\":1,\"type\":\"VIP\"}]}"},
        {"POST", "/performances",
         "{\"venueId\":%V,\"title\":\"T\",\"startsAt\":\"2026-12-01T19:00:00Z\",\"normalPrice\":1,"
         "\"vipPrice\":2}"},
        {"PATCH", "/performances/%P", "{\"title\":\"T2\",\"normalPrice\":5,\"vipPrice\":6}"},
        {"POST", "/users",
         "{\"name\":\"U\",\"email\":\"u@example.org\",\"password\":\"" TH_PASSWORD "\"}"},
        {"POST", "/performances/%P/reservations", "{\"userId\":%U,\"seatIds\":[%S,%T]}"},
    };
    const size_t nseeds = sizeof seeds / sizeof seeds[0];
    for (unsigned round = 0; round < ROUNDS; round++) {
        size_t k = round % nseeds;
        /* the seed with today's ids in it */
        size_t o = 0;
        for (const char *p = seeds[k].body; *p && o + 32 < sizeof seed; p++) {
            if (*p == '%' && strchr("VPUST", p[1]) != NULL) {
                long long id = p[1] == 'V'   ? venue
                               : p[1] == 'P' ? perf
                               : p[1] == 'U' ? user
                                             : seat0 + (long long)mut_below(12);
                o += (size_t)snprintf(seed + o, sizeof seed - o, "%lld", id);
                p++;
            } else {
                seed[o++] = *p;
            }
        }
        seed[o] = '\0';
        snprintf(path, sizeof path, "%s", seeds[k].path);
        char *pp = strstr(path, "%P");
        if (pp != NULL) {
            char tail[128];
            snprintf(tail, sizeof tail, "%s", pp + 2);
            snprintf(pp, sizeof path - (size_t)(pp - path), "%lld%s", perf, tail);
        }
        /* half the rounds change the tree, half the bytes; some do both, some twice */
        if (mut_below(2) == 0) {
            json_t *tree = json_loads(seed, 0, NULL);
            ck_assert_ptr_nonnull(tree);
            mut_tree(tree);
            char *text = json_dumps(tree, JSON_COMPACT);
            snprintf(body, sizeof body, "%s", text);
            free(text);
            json_decref(tree);
        } else {
            snprintf(body, sizeof body, "%s", seed);
        }
        for (size_t m = mut_below(3); m > 0; m--)
            mut_bytes(body, sizeof body);

        rat_req(&s, seeds[k].method, path, body, &r);
        int st = r.status;
        by_status[st >= 0 && st < 600 ? st : 0]++;
        bool known = st == 200 || st == 201 || st == 400 || st == 404 || st == 409 || st == 422;
        ck_assert_msg(known, "#%u %s %s %s: status %d: %s", round, seeds[k].method, path, body, st,
                      r.body);
        if (st >= 400) {
            const char *msg =
                json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
            ck_assert_msg(th_http_error_code(&r)[0] != '\0' && msg != NULL && msg[0] != '\0',
                          "#%u: error without code or message: %s", round, r.body);
        }
        th_http_resp_free(&r);
    }
    fprintf(stderr, "mutate: %u requests: 200 %u, 201 %u, 400 %u, 404 %u, 409 %u, 422 %u\n",
            (unsigned)ROUNDS, by_status[200], by_status[201], by_status[400], by_status[404],
            by_status[409], by_status[422]);
    /* both the rejected and the accepted side were reached */
    ck_assert_uint_gt(by_status[400], ROUNDS / 10);
    ck_assert_uint_gt(by_status[200] + by_status[201], ROUNDS / 20);

    /* still serving, nothing the guards had to stop, and the books add up */
    rat_req_ok(&s, "GET", "/healthz", NULL, 200, &r);
    th_http_resp_free(&r);
    rat_req_ok(&s, "GET", "/metrics", NULL, 200, &r);
    ck_assert_msg(strstr(r.body, "reserved_guard_firings_total{guard=\"capacity\"} 0\n") &&
                      strstr(r.body, "reserved_guard_firings_total{guard=\"seat_unique\"} 0\n"),
                  "a guard fired");
    th_http_resp_free(&r);
    PGconn *c = PQconnectdb(pg.conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *res = PQexec(
        c, "SELECT count(*) FROM performances p WHERE p.remaining_capacity <> p.total_capacity -"
           " (SELECT count(*) FROM reservation_seats t JOIN reservations x ON x.id ="
           " t.reservation_id WHERE x.performance_id = p.id AND x.status = 'CONFIRMED')");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "0");
    PQclear(res);
    PQfinish(c);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- times at the edges of RFC 3339 (issue 13) ---- */

/* POST /performances at startsAt in venue: the status (the answer into r, to free). */
static int perf_at(const th_reserved *s, long long venue, const char *starts, th_http_resp *r)
{
    json_t *b = json_pack("{s:I,s:s,s:s,s:i,s:i}", "venueId", (json_int_t)venue, "title", "Edge",
                          "startsAt", starts, "normalPrice", 1, "vipPrice", 1);
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    rat_req(s, "POST", "/performances", text, r);
    free(text);
    return r->status;
}

/* Every time reserved stores is given back as RFC 3339 and every cursor it issues is
 * taken back: a UTC instant outside years 0001..9999 is refused with 400 on input
 * (startsAt, from, to), however it is written (an offset, second 60, hour 24, a fraction
 * PostgreSQL rounds up); the first and last instants in range go through, and a search
 * pages over them one at a time. Before: "9999-12-31T23:59:59-12:00" was stored and
 * shown as 10000-01-01T11:59:59Z, "0001-01-01T00:00:00+01:00" as 0001-12-31T23:00:00Z
 * (1 BC, without the era). */
START_TEST(dates_year_edge)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "Edge", 1, 0);

    static const char *const bad[] = {
        "9999-12-31T23:59:59-12:00",    "9999-12-31T23:59:59-00:01", "9999-12-31T23:59:60Z",
        "9999-12-31T23:59:59.9999996Z", "9999-12-31T24:00:00Z",      "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:59:59+01:00",    "0000-06-01T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = perf_at(&s, venue, bad[i], &r);
        ck_assert_msg(st == 400, "startsAt %s: %d %s", bad[i], st, r.body);
        ck_assert_str_eq(th_http_error_code(&r), "BAD_REQUEST");
        th_http_resp_free(&r);
    }
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
        {"0001-01-01T00:00:00-01:00", "0001-01-01T01:00:00Z"},
        {"9999-12-31T23:59:59+12:00", "9999-12-31T11:59:59Z"},
        {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
        {"9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"},
    };
    size_t nok = sizeof ok / sizeof ok[0];
    long long ids[8];
    for (size_t i = 0; i < nok; i++) {
        int st = perf_at(&s, venue, ok[i].in, &r);
        ck_assert_msg(st == 201, "startsAt %s: %d %s", ok[i].in, st, r.body);
        ck_assert_str_eq(rat_jstr(r.json, "startsAt"), ok[i].out);
        ids[i] = rat_jint(r.json, "id");
        th_http_resp_free(&r);
    }
    /* one to a page: every cursor the server gave is taken, in time order */
    char path[512], cursor[256] = "";
    for (size_t i = 0; i < nok; i++) {
        snprintf(path, sizeof path, "/performances?limit=1%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        rat_req_ok(&s, "GET", path, NULL, 200, &r);
        json_t *items = json_object_get(r.json, "items");
        json_t *next = json_object_get(r.json, "nextCursor");
        ck_assert_int_eq((long long)json_array_size(items), 1);
        ck_assert_int_eq(rat_jint(json_array_get(items, 0), "id"), ids[i]);
        ck_assert_str_eq(rat_jstr(json_array_get(items, 0), "startsAt"), ok[i].out);
        if (i + 1 == nok) {
            ck_assert(json_is_null(next));
        } else {
            ck_assert_msg(json_is_string(next), "no cursor after %s", ok[i].out);
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        }
        th_http_resp_free(&r);
    }
    /* the same range on the search's bounds */
    static const char *const bad_q[] = {"from=9999-12-31T23:59:59-12:00",
                                        "to=0001-01-01T00:00:00%2B01:00",
                                        "from=9999-12-31T23:59:60Z"};
    for (size_t i = 0; i < sizeof bad_q / sizeof bad_q[0]; i++) {
        snprintf(path, sizeof path, "/performances?%s", bad_q[i]);
        rat_req_ok(&s, "GET", path, NULL, 400, &r);
        th_http_resp_free(&r);
    }
    rat_req_ok(&s, "GET", "/performances?from=9999-12-31T23:59:59Z", NULL, 200, &r);
    ck_assert_int_eq((long long)json_array_size(json_object_get(r.json, "items")), 2);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- Idempotency-Key bytes (issue 13) ---- */

/* POST a booking of seat for user with the raw header line (may be NULL); the status. */
static int book_with_header(const th_reserved *s, long long perf, long long user, long long seat,
                            const char *header, th_http_resp *r)
{
    char path[64], body[128], headers[512];
    snprintf(path, sizeof path, "/performances/%lld/reservations", perf);
    snprintf(body, sizeof body, "{\"userId\":%lld,\"seatIds\":[%lld]}", user, seat);
    snprintf(headers, sizeof headers, "Content-Type: application/json\r\n%s",
             header != NULL ? header : "");
    rat_req_raw(s, "POST", path, headers, body, r);
    return r->status;
}

/* An Idempotency-Key that is not valid UTF-8 (a stray byte, an overlong form, a
 * surrogate, a code point above U+10FFFF) is the client's 400 BAD_REQUEST, and books
 * nothing; before, PostgreSQL refused the key as text and the client got 503 "retry",
 * which no retry mends. A key in valid UTF-8 beyond ASCII books once and replays. */
START_TEST(idem_key_bad_utf8)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "Keys", 2, 0);
    long long perf = rat_make_perf(&s, venue, "K", "2027-01-01T20:00:00Z", 10, 10, NULL);
    long long user = rat_make_user(&s, "Kim", "kim@example.org");
    char path[64];
    snprintf(path, sizeof path, "/performances/%lld/seats", perf);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    long long seat = rat_jint(json_array_get(json_object_get(r.json, "seats"), 0), "id");
    th_http_resp_free(&r);

    static const char *const bad[] = {
        "Idempotency-Key: k-\xff\xfe\r\n",     "Idempotency-Key: k-\xc0\xaf\r\n",
        "Idempotency-Key: k-\xed\xa0\x80\r\n", "Idempotency-Key: k-\xf4\x90\x80\x80\r\n",
        "Idempotency-Key: k-\xe2\x82\r\n",     "Idempotency-Key: \x80\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = book_with_header(&s, perf, user, seat, bad[i], &r);
        ck_assert_msg(st == 400, "key %zu: %d %s", i, st, r.body);
        ck_assert_str_eq(th_http_error_code(&r), "BAD_REQUEST");
        th_http_resp_free(&r);
    }
    /* valid UTF-8: booked once, then replayed */
    const char *good =
        "Idempotency-Key: cl\xc3\xa9-\xd0\xba\xd0\xbb-\xe9\x8d\xb5-\xf0\x9f\x8e\xab\r\n";
    ck_assert_int_eq(book_with_header(&s, perf, user, seat, good, &r), 201);
    long long id = rat_jint(r.json, "id");
    th_http_resp_free(&r);
    ck_assert_int_eq(book_with_header(&s, perf, user, seat, good, &r), 201);
    ck_assert_int_eq(rat_jint(r.json, "id"), id);
    th_http_resp_free(&r);
    snprintf(path, sizeof path, "/users/%lld/reservations", user);
    rat_req_ok(&s, "GET", path, NULL, 200, &r);
    ck_assert_int_eq((long long)json_array_size(json_object_get(r.json, "items")), 1);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- database errors reach no client (issue 13) ---- */

/* Runs sql on the case's database; it must succeed. */
static void sql_ok(const th_pg *pg, const char *sql)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *res = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
}

/* Whether the log file holds needle within 3 s (reserved writes it as it goes). */
static bool log_has(const char *path, const char *needle)
{
    for (uint64_t end = th_now_ms() + 3000; th_now_ms() < end; th_sleep_ms(20)) {
        FILE *f = fopen(path, "r");
        char line[2048];
        bool found = false;
        while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
            found = strstr(line, needle) != NULL;
        if (f != NULL)
            fclose(f);
        if (found)
            return true;
    }
    return false;
}

/* The answer carries no PostgreSQL text (the probe word "secret" is in every message and
 * name the database gives), ends with "request id <id>", and the log has that id. */
static void expect_hidden(const th_reserved *s, const th_http_resp *r, int status, const char *code,
                          const char *prefix)
{
    ck_assert_msg(r->status == status, "%d %s", r->status, r->body);
    ck_assert_str_eq(th_http_error_code(r), code);
    ck_assert_msg(strstr(r->body, "secret") == NULL, "database text in the answer: %s", r->body);
    const char *msg =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    ck_assert_ptr_nonnull(msg);
    ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0, "message '%s'", msg);
    const char *id = strstr(msg, "request id ");
    ck_assert_msg(id != NULL, "no request id in '%s'", msg);
    char needle[128];
    snprintf(needle, sizeof needle, "request id %s:", id + strlen("request id "));
    ck_assert_msg(log_has(s->log, needle), "the log has no '%s'", needle);
}

/* A statement that fails in PostgreSQL (errors raised here by triggers and a CHECK
 * constraint of the test's own, each message and name holding "secret") is answered
 * without PostgreSQL's text: a 500 with only "internal error; request id <id>", a
 * 400 for a bad value and a 503 for a transient error with the id after their own
 * words, and the log line with that id holds the text. Before: "invalid value: new row
 * for relation ... violates check constraint ...", "the database is busy: <text>", and
 * a 500 "database error P0001" with no id to find it by. */
START_TEST(db_error_hidden)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    rat_pg_start(&pg);
    th_reserved_start(&s, pg.conninfo);
    th_reserved_admin(&s, pg.conninfo);
    long long venue = make_venue(&s, "Hidden", 1, 0);
    sql_ok(&pg,
           "CREATE FUNCTION secret_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
           " IF NEW.name = 'internal' THEN RAISE EXCEPTION 'secret failure in %', TG_TABLE_NAME;"
           " ELSIF NEW.name = 'busy' THEN RAISE EXCEPTION 'secret serialization' USING"
           " ERRCODE = '40001'; END IF; RETURN NEW; END $$");
    sql_ok(&pg, "CREATE TRIGGER secret_trigger BEFORE INSERT ON users FOR EACH ROW"
                " EXECUTE FUNCTION secret_boom()");
    sql_ok(&pg, "ALTER TABLE performances ADD CONSTRAINT secret_check CHECK (title <> 'x')");

    rat_req(&s, "POST", "/users",
            "{\"name\":\"internal\",\"email\":\"i@example.org\",\"password\":\"" TH_PASSWORD "\"}",
            &r);
    expect_hidden(&s, &r, 500, "INTERNAL", "internal error; request id ");
    th_http_resp_free(&r);
    rat_req(&s, "POST", "/users",
            "{\"name\":\"busy\",\"email\":\"b@example.org\",\"password\":\"" TH_PASSWORD "\"}", &r);
    expect_hidden(&s, &r, 503, "UNAVAILABLE", "");
    th_http_resp_free(&r);
    char body[256];
    snprintf(body, sizeof body,
             "{\"venueId\":%lld,\"title\":\"x\",\"startsAt\":\"2027-01-01T20:00:00Z\","
             "\"normalPrice\":1,\"vipPrice\":1}",
             venue);
    rat_req(&s, "POST", "/performances", body, &r);
    expect_hidden(&s, &r, 400, "BAD_REQUEST", "");
    th_http_resp_free(&r);
    /* the others go on as before */
    rat_make_user(&s, "Fine", "fine@example.org");
    th_reserved_stop_clean(&s);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"catalogue", catalogue},
        {"search", search},
        {"users", users},
        {"badreq", badreq},
        {"healthz", healthz},
        {"metrics", metrics},
        {"sigterm", sigterm},
        {"config_error", config_error},
        {"three_start", three_start},
        {"inflight", inflight},
        {"disconnect", disconnect},
        {"mutate", mutate},
        {"dates_year_edge", dates_year_edge},
        {"idem_key_bad_utf8", idem_key_bad_utf8},
        {"db_error_hidden", db_error_hidden},
    };
    return th_check_main("reserved_api", cases, sizeof cases / sizeof cases[0], 120, argc, argv);
}
