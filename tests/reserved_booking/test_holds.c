/*
 * Seat holds (issue 14 §2, SPEC §9) against real reserved processes and PostgreSQL (a
 * database of the binary's shared server per case; lockd and 3 redis for the lockd-mode
 * cases): a hold keeps its seats from everyone else in every booking path (db mode, lockd
 * mode alone, a group booking), its holder books it with {"holdId"}, DELETE gives it back,
 * the sweeper of every process expires it within a second of expiresAt (each hold once,
 * with two processes sweeping), and the purchase limit counts held seats without counting
 * a hold being booked twice. No payment step: nothing here is about the charge.
 *
 * Every case: a venue of HT_SEATS seats and one performance, made by the harness's admin;
 * customers sign up (a token each) and act for themselves.
 */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"
#include "th_check.h"
#include "th_http.h"
#include "th_reserved.h"

#define HT_SEATS 12
#define HT_SRV   2 /* reserved processes at most */

typedef struct ht_world {
    th_pg pg;
    th_redis redis[3];
    th_lockd lockd;
    th_reserved srv[HT_SRV];
    int nsrv;
    PGconn *db;
    long long perf;
    long long seat[HT_SEATS];
} ht_world;

typedef struct ht_user {
    long long id;
    char token[TH_TOKEN_LEN + 1];
} ht_user;

/* ---------------------------------------------------------------- the system */

/* One integer from a one-row query (-1 for NULL). */
static long long ht_q(ht_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long long ht_q(ht_world *w, const char *fmt, ...)
{
    char *sql = NULL;
    va_list ap;
    va_start(ap, fmt);
    ck_assert(vasprintf(&sql, fmt, ap) > 0);
    va_end(ap);
    PGresult *res = PQexec(w->db, sql);
    bool one = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    ck_assert_msg(one, "%s: %s", sql, PQerrorMessage(w->db));
    long long v = PQgetisnull(res, 0, 0) ? -1 : atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    free(sql);
    return v;
}

/* A request to reserved `srv` as `u` (NULL: the admin), with a printf-made body (fmt NULL:
 * none). */
static void ht_req(ht_world *w, int srv, const ht_user *u, const char *method, const char *path,
                   th_http_resp *r, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void ht_req(ht_world *w, int srv, const ht_user *u, const char *method, const char *path,
                   th_http_resp *r, const char *fmt, ...)
{
    char body[1024];
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
    }
    th_http_request_as(w->srv[srv].port, u != NULL ? u->token : th_admin_token(), method, path,
                       NULL, fmt != NULL ? body : NULL, r);
}

/* r has this status and (code non-NULL) error code. */
static void ht_expect(const th_http_resp *r, int status, const char *code, const char *what)
{
    ck_assert_msg(r->status == status, "%s: %d %s (expected %d)", what, r->status, r->body, status);
    if (code != NULL)
        ck_assert_msg(strcmp(th_http_error_code(r), code) == 0, "%s: %s", what, r->body);
}

/* "[s1,s2]": the ids of the venue's seats at the given indexes (idx ends with -1). */
static const char *ht_ids(const ht_world *w, char *buf, size_t len, const int *idx)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; idx[i] >= 0; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i > 0 ? "," : "", w->seat[idx[i]]);
    snprintf(buf + n, len - n, "]");
    return buf;
}

#define IDS(...) ht_ids(w, (char[256]){0}, 256, (const int[]){__VA_ARGS__, -1})

/* The venue, its seats and the performance, as the admin. */
static void ht_catalogue(ht_world *w)
{
    th_http_resp r;
    char seats[1024];
    size_t n = 0;
    for (int i = 0; i < HT_SEATS; i++)
        n += (size_t)snprintf(seats + n, sizeof(seats) - n,
                              "%s{\"row\":\"B\",\"number\":%d,\"type\":\"%s\"}", i ? "," : "",
                              i + 1, i < 2 ? "VIP" : "NORMAL");
    ht_req(w, 0, NULL, "POST", "/venues", &r, "{\"name\":\"Hold hall\",\"seats\":[%s]}", seats);
    ht_expect(&r, 201, NULL, "POST /venues");
    long long venue = th_http_int(&r, "id");
    th_http_resp_free(&r);
    char path[64];
    snprintf(path, sizeof(path), "/venues/%lld", venue);
    ht_req(w, 0, NULL, "GET", path, &r, NULL);
    ht_expect(&r, 200, NULL, "GET the venue");
    json_t *list = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(list), HT_SEATS);
    for (size_t i = 0; i < HT_SEATS; i++)
        w->seat[i] = json_integer_value(json_object_get(json_array_get(list, i), "id"));
    th_http_resp_free(&r);
    ht_req(w, 0, NULL, "POST", "/performances", &r,
           "{\"venueId\":%lld,\"title\":\"Held\",\"startsAt\":\"2027-01-02T19:00:00Z\","
           "\"normalPrice\":100,\"vipPrice\":300}",
           venue);
    ht_expect(&r, 201, NULL, "POST /performances");
    w->perf = th_http_int(&r, "id");
    th_http_resp_free(&r);
}

/* PostgreSQL, [3 redis and lockd,] nsrv reserved processes on one database in lock_mode,
 * each with the extra YAML lines; pause_ms > 0: every booking pauses that long after its
 * lock (the test hook: the next ones queue and form a batch). Then the admin and the
 * catalogue. */
static void ht_start(ht_world *w, const char *lock_mode, int nsrv, const char *extra,
                     unsigned pause_ms)
{
    memset(w, 0, sizeof(*w));
    ck_assert_msg(th_pg_shared(&w->pg), "PostgreSQL did not start");
    char lockd[96] = "";
    if (strcmp(lock_mode, "lockd") == 0) {
        for (int i = 0; i < 3; i++)
            ck_assert(th_redis_start(&w->redis[i]));
        ck_assert(th_lockd_start(&w->lockd, w->redis, 3, NULL));
        snprintf(lockd, sizeof(lockd), "lockd: [127.0.0.1:%d]\n", w->lockd.port);
    }
    char yaml[1024];
    int n = snprintf(yaml, sizeof(yaml),
                     "database: \"%s\"\ndb_pool_size: 4\n%slog: {level: info}\n%s\n",
                     w->pg.conninfo, lockd, extra != NULL ? extra : "");
    if (extra == NULL || strstr(extra, "lock:") == NULL)
        n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
                      "lock: {mode: %s, lease_ms: 0, wait_ms: 20000}\n", lock_mode);
    ck_assert(n > 0 && (size_t)n < sizeof(yaml));
    if (pause_ms > 0) {
        char ms[16];
        snprintf(ms, sizeof(ms), "%u", pause_ms);
        setenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS", ms, 1);
    }
    w->nsrv = nsrv;
    for (int i = 0; i < nsrv; i++)
        th_reserved_spawn_yaml(&w->srv[i], yaml);
    unsetenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    for (int i = 0; i < nsrv; i++)
        th_reserved_wait_up(&w->srv[i]);
    w->db = PQconnectdb(w->pg.conninfo);
    ck_assert_msg(PQstatus(w->db) == CONNECTION_OK, "libpq: %s", PQerrorMessage(w->db));
    th_reserved_admin(&w->srv[0], w->pg.conninfo);
    ht_catalogue(w);
}

static long long ht_q(ht_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The purchase limit's counter (migrations 095, 130) equals a recount of confirmed and
 * held seats, after whatever the case did (bookings, holds, releases, expiries, undos). */
static void ht_counter_consistent(ht_world *w)
{
    long long off =
        ht_q(w, "WITH x AS (SELECT u, p, sum(n)::integer AS n FROM ("
                " SELECT r.user_id AS u, r.performance_id AS p, count(*) AS n FROM reservations r"
                " JOIN reservation_seats s ON s.reservation_id = r.id AND s.confirmed"
                " WHERE r.status = 'CONFIRMED' GROUP BY 1, 2 UNION ALL"
                " SELECT h.user_id, h.performance_id, count(*) FROM holds h"
                " JOIN hold_seats hs ON hs.hold_id = h.id AND hs.active WHERE h.status = 'ACTIVE'"
                " GROUP BY 1, 2) y GROUP BY u, p)"
                " SELECT count(*) FROM user_performance_seats c FULL JOIN x"
                " ON x.u = c.user_id AND x.p = c.performance_id"
                " WHERE coalesce(c.seats, 0) <> coalesce(x.n, 0)");
    ck_assert_msg(off == 0, "%lld (user, performance) counters differ from a recount", off);
}

static void ht_stop(ht_world *w)
{
    ht_counter_consistent(w);
    PQfinish(w->db);
    for (int i = 0; i < w->nsrv; i++)
        th_reserved_stop_clean(&w->srv[i]);
}

static void ht_customer(ht_world *w, const char *name, ht_user *u)
{
    char email[96];
    snprintf(email, sizeof(email), "%s.%lld@example.org", name, w->perf);
    u->id = th_signup(w->srv[0].port, name, email, u->token);
}

/* One reserved in lock_mode (with extra) and two customers, a and b. */
static void ht_start_ab(ht_world *w, const char *lock_mode, const char *extra, ht_user *a,
                        ht_user *b)
{
    ht_start(w, lock_mode, 1, extra, 0);
    ht_customer(w, "a", a);
    ht_customer(w, "b", b);
}

/* ---------------------------------------------------------------- the verbs */

/* u holds seats (a JSON array) through reserved srv: the answer in r. */
static void ht_hold(ht_world *w, int srv, const ht_user *u, const char *seats, th_http_resp *r)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/holds", w->perf);
    ht_req(w, srv, u, "POST", path, r, "{\"seatIds\":%s}", seats);
}

/* The same, which must succeed: the hold's id. */
static long long ht_hold_ok(ht_world *w, int srv, const ht_user *u, const char *seats)
{
    th_http_resp r;
    ht_hold(w, srv, u, seats, &r);
    ht_expect(&r, 201, NULL, "a hold");
    ck_assert_str_eq(th_http_str(&r, "status"), "ACTIVE");
    ck_assert_int_eq(th_http_int(&r, "userId"), u->id);
    ck_assert_int_eq(th_http_int(&r, "performanceId"), w->perf);
    ck_assert_msg(strlen(th_http_str(&r, "expiresAt")) >= 20, "expiresAt: %s", r.body);
    long long id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    return id;
}

/* u (NULL: the admin) books: body is {"seatIds": ...} or {"holdId": ...}. */
static void ht_book(ht_world *w, int srv, const ht_user *u, const char *body, th_http_resp *r)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", w->perf);
    ht_req(w, srv, u, "POST", path, r, "%s", body);
}

static void ht_release(ht_world *w, const ht_user *u, long long hold, th_http_resp *r)
{
    char path[64];
    snprintf(path, sizeof(path), "/holds/%lld", hold);
    ht_req(w, 0, u, "DELETE", path, r, NULL);
}

/* The hold's status in the database. */
static char *ht_status(ht_world *w, long long hold, char out[16])
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT status FROM holds WHERE id = %lld", hold);
    PGresult *res = PQexec(w->db, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s", sql);
    snprintf(out, 16, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return out;
}

#define STATUS(h) ht_status(w, (h), (char[16]){0})

/* Seat i of the seat map (srv 0): its "available" and "held". */
static void ht_map_seat(ht_world *w, int i, bool *available, bool *held)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/seats", w->perf);
    th_http_resp r;
    th_http_request_as(w->srv[0].port, NULL, "GET", path, NULL, NULL, &r);
    ht_expect(&r, 200, NULL, "the seat map");
    json_t *seats = json_object_get(r.json, "seats");
    bool found = false;
    for (size_t k = 0; k < json_array_size(seats); k++) {
        json_t *s = json_array_get(seats, k);
        if (json_integer_value(json_object_get(s, "id")) != w->seat[i])
            continue;
        json_t *h = json_object_get(s, "held");
        ck_assert_msg(json_is_boolean(h), "seat without \"held\": %s", r.body);
        *available = json_is_true(json_object_get(s, "available"));
        *held = json_is_true(h);
        found = true;
    }
    ck_assert_msg(found, "seat %d not in the map", i);
    th_http_resp_free(&r);
}

static void ht_expect_map(ht_world *w, int i, bool available, bool held, const char *what)
{
    bool a, h;
    ht_map_seat(w, i, &a, &h);
    ck_assert_msg(a == available && h == held, "%s: seat %d available %d held %d", what, i, a, h);
}

/* The sum of reserved_holds_total{outcome} over the processes. */
static long long ht_metric(ht_world *w, const char *outcome)
{
    long long sum = 0;
    char want[96];
    snprintf(want, sizeof(want), "reserved_holds_total{outcome=\"%s\"} ", outcome);
    for (int i = 0; i < w->nsrv; i++) {
        th_http_resp r;
        ht_req(w, i, NULL, "GET", "/metrics", &r, NULL);
        ht_expect(&r, 200, NULL, "/metrics");
        const char *p = strstr(r.body, want);
        ck_assert_msg(p != NULL, "no %s in /metrics", want);
        sum += strtoll(p + strlen(want), NULL, 10);
        th_http_resp_free(&r);
    }
    return sum;
}

/* ---------------------------------------------------------------- the cases */

/* a holds seats 0 and 1: the seat map shows them held; b's booking of one of them and b's
 * hold of the other are 409 SEAT_TAKEN; a books them with holdId (201, exactly those
 * seats) and the hold is BOOKED, its seats sold and no longer held. */
static void ht_basic(const char *lock_mode, const char *extra)
{
    ht_world st, *w = &st;
    ht_user a, b;
    ht_start_ab(w, lock_mode, extra, &a, &b);
    long long hold = ht_hold_ok(w, 0, &a, IDS(1, 0));
    ht_expect_map(w, 0, false, true, "held seat 0");
    ht_expect_map(w, 1, false, true, "held seat 1");
    ht_expect_map(w, 2, true, false, "a free seat");
    th_http_resp r;
    char body[256];
    snprintf(body, sizeof(body), "{\"seatIds\":%s}", IDS(2, 1));
    ht_book(w, 0, &b, body, &r);
    ht_expect(&r, 409, "SEAT_TAKEN", "b books a held seat");
    json_t *ids = json_object_get(json_object_get(r.json, "error"), "seatIds");
    ck_assert_msg(json_array_size(ids) == 1 &&
                      json_integer_value(json_array_get(ids, 0)) == w->seat[1],
                  "seatIds: %s", r.body);
    th_http_resp_free(&r);
    ht_hold(w, 0, &b, IDS(0), &r);
    ht_expect(&r, 409, "SEAT_TAKEN", "b holds a held seat");
    th_http_resp_free(&r);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservations"), 0);
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", hold);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 201, NULL, "a books its hold");
    ck_assert_int_eq(th_http_int(&r, "userId"), a.id);
    json_t *seats = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(seats), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(seats, 0), "seatId")),
                     w->seat[0]);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(seats, 1), "seatId")),
                     w->seat[1]);
    ck_assert_int_eq(th_http_int(&r, "totalAmount"), 600);
    th_http_resp_free(&r);
    ck_assert_str_eq(STATUS(hold), "BOOKED");
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM hold_seats WHERE active"), 0);
    ht_expect_map(w, 0, false, false, "a booked seat");
    ck_assert_int_eq(ht_metric(w, "created"), 1);
    ck_assert_int_eq(ht_metric(w, "booked"), 1);
    ht_stop(w);
}

START_TEST(test_hold_basic)
{
    ht_basic("lockd", "lock: {mode: lockd, lease_ms: 0, wait_ms: 20000, batch_max: 1}");
}
END_TEST

START_TEST(test_hold_basic_db)
{
    ht_basic("db", NULL);
}
END_TEST

/* A statement's answer on c: its one integer (fails the test on an error). */
static long long ht_answer(PGconn *c)
{
    PGresult *res = PQgetResult(c);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    long long v = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    while ((res = PQgetResult(c)) != NULL)
        PQclear(res);
    return v;
}

/* Two sweeps at once, made to meet (the processes' timers rarely do): the servers are
 * stopped, four holds are past expiresAt, sweep A expires them in a transaction left
 * open, sweep B runs meanwhile, then A commits. B must neither wait for A nor expire a
 * hold A expired: together they expire each hold once. */
static void ht_two_sweepers(ht_world *w)
{
    for (int i = 0; i < w->nsrv; i++)
        th_reserved_stop_clean(&w->srv[i]);
    w->nsrv = 0;
    ck_assert_int_eq(
        ht_q(w,
             "WITH h AS (INSERT INTO holds (performance_id, user_id, expires_at)"
             " SELECT %lld, (SELECT min(id) FROM users), now() - interval '1 second'"
             " FROM generate_series(1, 4) RETURNING id),"
             " n AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM h),"
             " s AS (INSERT INTO hold_seats (hold_id, performance_id, seat_id)"
             " SELECT n.id, %lld, (ARRAY[%lld, %lld, %lld, %lld])[n.k] FROM n RETURNING 1)"
             " SELECT count(*) FROM s",
             w->perf, w->perf, w->seat[0], w->seat[1], w->seat[2], w->seat[3]),
        4);
    PGconn *a = PQconnectdb(w->pg.conninfo), *b = PQconnectdb(w->pg.conninfo);
    ck_assert(PQstatus(a) == CONNECTION_OK && PQstatus(b) == CONNECTION_OK);
    ck_assert(PQsendQuery(a, "BEGIN; SELECT rs_hold_expire(100)") == 1);
    PGresult *begun = PQgetResult(a);
    PQclear(begun);
    long long by_a = ht_answer(a);
    ck_assert(PQsendQuery(b, "SELECT rs_hold_expire(100)") == 1);
    th_sleep_ms(300); /* B runs while A's transaction is open */
    ck_assert(PQconsumeInput(b) == 1);
    ck_assert_msg(!PQisBusy(b), "sweep B waits for the holds sweep A has locked");
    PGresult *done = PQexec(a, "COMMIT");
    ck_assert(PQresultStatus(done) == PGRES_COMMAND_OK);
    PQclear(done);
    long long by_b = ht_answer(b);
    PQfinish(a);
    PQfinish(b);
    ck_assert_msg(by_a == 4 && by_b == 0, "sweep A expired %lld holds, sweep B %lld (of 4)", by_a,
                  by_b);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM holds WHERE status = 'ACTIVE'"), 0);
}

/* holds.ttl_s 1, two reserved processes sweeping: six holds made through both expire by
 * themselves, no request touching them, each within 1 s of its expiresAt (the database's
 * ended_at), each exactly once (the processes' expired counters add up to six), and
 * their seats are free again. */
START_TEST(test_hold_expiry)
{
    ht_world st, *w = &st;
    ht_start(w, "db", 2, "holds: {ttl_s: 1}", 0);
    ht_user u[3];
    const char *names[3] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++)
        ht_customer(w, names[i], &u[i]);
    for (int i = 0; i < 6; i++)
        (void)ht_hold_ok(w, i % 2, &u[i % 3], IDS(2 * i, 2 * i + 1));
    ht_expect_map(w, 11, false, true, "the last seat, held");
    uint64_t t0 = th_now_ms();
    while (ht_q(w, "SELECT count(*) FROM holds WHERE status = 'ACTIVE'") > 0 &&
           th_now_ms() - t0 < 5000)
        th_sleep_ms(50);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM holds WHERE status = 'EXPIRED'"), 6);
    long long late_ms = ht_q(w, "SELECT (extract(epoch FROM max(ended_at - expires_at)) * 1000)"
                                "::bigint FROM holds");
    ck_assert_msg(late_ms >= 0 && late_ms < 1000, "a hold was freed %lld ms after expiresAt",
                  late_ms);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM hold_seats WHERE active"), 0);
    ht_expect_map(w, 11, true, false, "the last seat, free again");
    ck_assert_int_eq(ht_metric(w, "expired"), 6);
    th_http_resp r;
    char body[64];
    snprintf(body, sizeof(body), "{\"seatIds\":%s}", IDS(3));
    ht_book(w, 1, &u[1], body, &r);
    ht_expect(&r, 201, NULL, "a seat of an expired hold of another user");
    th_http_resp_free(&r);
    ht_two_sweepers(w);
    ht_stop(w);
}
END_TEST

/* DELETE /holds/{id}: another customer's is 404 and changes nothing; the owner's is 200
 * RELEASED and the seats are free (another user books them); again: the same 200. An
 * admin releases anyone's. */
START_TEST(test_hold_release)
{
    ht_world st, *w = &st;
    ht_user a, b;
    ht_start_ab(w, "db", NULL, &a, &b);
    long long hold = ht_hold_ok(w, 0, &a, IDS(4, 5));
    th_http_resp r;
    ht_release(w, &b, hold, &r);
    ht_expect(&r, 404, "NOT_FOUND", "b releases a's hold");
    th_http_resp_free(&r);
    ck_assert_str_eq(STATUS(hold), "ACTIVE");
    ht_expect_map(w, 4, false, true, "still held");
    ht_release(w, &a, hold, &r);
    ht_expect(&r, 200, NULL, "a releases its hold");
    ck_assert_str_eq(th_http_str(&r, "status"), "RELEASED");
    char *first = strdup(r.body);
    th_http_resp_free(&r);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM hold_seats WHERE active"), 0);
    ht_expect_map(w, 4, true, false, "released");
    ht_release(w, &a, hold, &r);
    ht_expect(&r, 200, NULL, "again");
    ck_assert_str_eq(r.body, first);
    free(first);
    th_http_resp_free(&r);
    char body[64];
    snprintf(body, sizeof(body), "{\"seatIds\":%s}", IDS(5));
    ht_book(w, 0, &b, body, &r);
    ht_expect(&r, 201, NULL, "b books a released seat");
    th_http_resp_free(&r);
    hold = ht_hold_ok(w, 0, &b, IDS(6));
    ht_release(w, NULL, hold, &r);
    ht_expect(&r, 200, NULL, "the admin releases b's hold");
    ck_assert_int_eq(th_http_int(&r, "userId"), b.id);
    th_http_resp_free(&r);
    ck_assert_int_eq(ht_metric(w, "released"), 2);
    ht_stop(w);
}
END_TEST

/* Purchase limit 4: a holds 3; booking 2 other seats is 409 LIMIT_EXCEEDED (has 3), so is
 * holding 2 more; booking the 3 held seats plus 1 works (the hold is BOOKED, its seats not
 * counted twice); then nothing more, held or booked. */
START_TEST(test_hold_limit)
{
    ht_world st, *w = &st;
    ht_start(w, "db", 1, "limits: {max_seats_per_user_per_performance: 4}", 0);
    ht_user a;
    ht_customer(w, "a", &a);
    long long hold = ht_hold_ok(w, 0, &a, IDS(0, 1, 2));
    th_http_resp r;
    char body[96];
    snprintf(body, sizeof(body), "{\"seatIds\":%s}", IDS(3, 4));
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 409, "LIMIT_EXCEEDED", "3 held + 2 booked");
    const char *msg =
        json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    ck_assert_msg(msg != NULL && strstr(msg, "has 3 and asked for 2") != NULL, "%s", r.body);
    th_http_resp_free(&r);
    ht_hold(w, 0, &a, IDS(3, 4), &r);
    ht_expect(&r, 409, "LIMIT_EXCEEDED", "3 held + 2 held");
    th_http_resp_free(&r);
    snprintf(body, sizeof(body), "{\"seatIds\":%s}", IDS(0, 1, 2, 3));
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 201, NULL, "the 3 held + 1");
    th_http_resp_free(&r);
    ck_assert_str_eq(STATUS(hold), "BOOKED");
    ht_hold(w, 0, &a, IDS(4), &r);
    ht_expect(&r, 409, "LIMIT_EXCEEDED", "a fifth seat held");
    th_http_resp_free(&r);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservation_seats WHERE confirmed"), 4);
    ht_stop(w);
}
END_TEST

/* Lockd mode, group booking: b holds seat 0; four bookings queue behind a paused one and
 * are booked as one batch: c's asks for b's held seat and alone is refused 409
 * SEAT_TAKEN; a's, d's and b's own (its held seat plus one: the hold is consumed) commit.
 * (The batch's one seat INSERT trips the hold rule, and the batch is booked again one
 * savepoint per request.) */
START_TEST(test_hold_batch)
{
    ht_world st, *w = &st;
    ht_start(w, "lockd", 1, NULL, 1000);
    ht_user a, b, c, d;
    ht_customer(w, "a", &a);
    ht_customer(w, "b", &b);
    ht_customer(w, "c", &c);
    ht_customer(w, "d", &d);
    long long hold = ht_hold_ok(w, 0, &b, IDS(0));
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", w->perf);
    const ht_user *who[5] = {&d, &a, &c, &d, &b};
    const char *seats[5] = {IDS(9), IDS(1), IDS(0, 2), IDS(3), IDS(0, 4)};
    int fd[5];
    for (int i = 0; i < 5; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"seatIds\":%s}", seats[i]);
        th_http_set_bearer(who[i]->token);
        fd[i] = th_http_send(w->srv[0].port, "POST", path, NULL, body, strlen(body));
        th_http_set_bearer(th_admin_token());
        ck_assert_int_ge(fd[i], 0);
        if (i > 0) {
            th_sleep_ms(100);
            continue;
        }
        /* the first holds the lock for a second: the rest queue behind it */
        bool paused = false;
        for (uint64_t end = th_now_ms() + 10000; !paused && th_now_ms() < end; th_sleep_ms(10)) {
            FILE *f = fopen(w->srv[0].log, "r");
            char line[1024];
            while (f != NULL && fgets(line, sizeof(line), f) != NULL)
                paused = paused || strstr(line, "paused 1000 ms after the lock") != NULL;
            if (f != NULL)
                fclose(f);
        }
        ck_assert_msg(paused, "the first booking did not pause");
    }
    const char *what[5] = {"the paused one", "a's", "c's (b's held seat)", "d's", "b's own hold"};
    for (int i = 0; i < 5; i++) {
        th_http_resp r;
        th_http_finish(fd[i], &r, 15000);
        if (i == 2) {
            ht_expect(&r, 409, "SEAT_TAKEN", what[i]);
            json_t *ids = json_object_get(json_object_get(r.json, "error"), "seatIds");
            ck_assert_msg(json_array_size(ids) == 1 &&
                              json_integer_value(json_array_get(ids, 0)) == w->seat[0],
                          "seatIds: %s", r.body);
        } else {
            ht_expect(&r, 201, NULL, what[i]);
        }
        th_http_resp_free(&r);
    }
    ck_assert_str_eq(STATUS(hold), "BOOKED");
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservation_seats WHERE confirmed"), 5);
    ck_assert_int_eq(ht_q(w,
                          "SELECT r.user_id FROM reservations r JOIN reservation_seats s"
                          " ON s.reservation_id = r.id WHERE s.seat_id = %lld",
                          w->seat[0]),
                     b.id);
    th_http_resp r;
    ht_req(w, 0, NULL, "GET", "/metrics", &r, NULL);
    ck_assert_msg(strstr(r.body, "\nreserved_batches_total 2\n") != NULL &&
                      strstr(r.body, "\nreserved_batch_bookings_total 5\n") != NULL,
                  "not one batch of 4 after one of 1");
    th_http_resp_free(&r);
    ht_stop(w);
}
END_TEST

/* A group booking takes back, inside its transaction, a booking whose payment was declined
 * (rs_book_undo, as a rollback of its savepoint would): when that booking had consumed
 * the user's own hold, the hold is ACTIVE again with its seats held. Driven in SQL, as
 * rs_batch calls it: a booking of a's held seats, then its undo, in one transaction. */
START_TEST(test_hold_batch_undo)
{
    ht_world st, *w = &st;
    ht_user a, b;
    ht_start_ab(w, "db", NULL, &a, &b);
    long long hold = ht_hold_ok(w, 0, &a, IDS(0, 1));
    PGresult *res = PQexec(w->db, "BEGIN");
    PQclear(res);
    long long resv =
        ht_q(w, "SELECT reservation_id FROM rs_book(%lld, %lld, '{%lld}', NULL, true, 'undo-1')",
             w->perf, a.id, w->seat[0]);
    ck_assert_str_eq(STATUS(hold), "BOOKED");
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM (SELECT rs_book_undo('{%lld}')) AS u", resv), 1);
    res = PQexec(w->db, "COMMIT");
    ck_assert(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);
    ck_assert_str_eq(STATUS(hold), "ACTIVE");
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM hold_seats WHERE active"), 2);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservations"), 0);
    ht_expect_map(w, 1, false, true, "held again");
    th_http_resp r;
    char body[64];
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", hold);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 201, NULL, "the hold given back, booked");
    th_http_resp_free(&r);
    ht_stop(w);
}
END_TEST

/* {"holdId"} of a hold that is no longer active is 409 HOLD_EXPIRED and books nothing:
 * released, past its expiresAt (holds.ttl_s 1, swept or not yet), already booked. */
START_TEST(test_hold_expired_holdid)
{
    ht_world st, *w = &st;
    ht_start(w, "db", 1, "holds: {ttl_s: 1}", 0);
    ht_user a;
    ht_customer(w, "a", &a);
    th_http_resp r;
    char body[64];
    long long released = ht_hold_ok(w, 0, &a, IDS(0));
    ht_release(w, &a, released, &r);
    th_http_resp_free(&r);
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", released);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 409, "HOLD_EXPIRED", "a released hold");
    th_http_resp_free(&r);
    long long expired = ht_hold_ok(w, 0, &a, IDS(1));
    th_sleep_ms(1100); /* past expiresAt: the sweeper may or may not have run yet */
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", expired);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 409, "HOLD_EXPIRED", "a hold past its expiresAt");
    th_http_resp_free(&r);
    long long booked = ht_hold_ok(w, 0, &a, IDS(2));
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", booked);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 201, NULL, "a live hold");
    th_http_resp_free(&r);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 409, "HOLD_EXPIRED", "a booked hold again");
    th_http_resp_free(&r);
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservations"), 1);
    ht_stop(w);
}
END_TEST

/* {"holdId"} of another customer's hold is 404 NOT_FOUND (as if it did not exist) and
 * leaves the hold as it was; so is a hold of another performance. An admin may book a
 * customer's hold: for that customer. */
START_TEST(test_hold_foreign_holdid)
{
    ht_world st, *w = &st;
    ht_user a, b;
    ht_start_ab(w, "db", NULL, &a, &b);
    long long hold = ht_hold_ok(w, 0, &a, IDS(0, 1));
    th_http_resp r;
    char body[64];
    snprintf(body, sizeof(body), "{\"holdId\":%lld}", hold);
    ht_book(w, 0, &b, body, &r);
    ht_expect(&r, 404, "NOT_FOUND", "b books a's hold");
    th_http_resp_free(&r);
    ck_assert_str_eq(STATUS(hold), "ACTIVE");
    ck_assert_int_eq(ht_q(w, "SELECT count(*) FROM reservations"), 0);
    long long perf = w->perf;
    ht_req(w, 0, NULL, "POST", "/performances", &r,
           "{\"venueId\":%lld,\"title\":\"Other\",\"startsAt\":\"2027-01-03T19:00:00Z\","
           "\"normalPrice\":1,\"vipPrice\":2}",
           ht_q(w, "SELECT venue_id FROM performances WHERE id = %lld", perf));
    ht_expect(&r, 201, NULL, "another performance");
    w->perf = th_http_int(&r, "id");
    th_http_resp_free(&r);
    ht_book(w, 0, &a, body, &r);
    ht_expect(&r, 404, "NOT_FOUND", "a's hold on another performance");
    th_http_resp_free(&r);
    w->perf = perf;
    ht_book(w, 0, NULL, body, &r);
    ht_expect(&r, 201, NULL, "the admin books a's hold");
    ck_assert_int_eq(th_http_int(&r, "userId"), a.id);
    th_http_resp_free(&r);
    ck_assert_str_eq(STATUS(hold), "BOOKED");
    ht_stop(w);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"hold_basic", test_hold_basic},
        {"hold_basic_db", test_hold_basic_db},
        {"hold_expiry", test_hold_expiry},
        {"hold_release", test_hold_release},
        {"hold_limit", test_hold_limit},
        {"hold_batch", test_hold_batch},
        {"hold_batch_undo", test_hold_batch_undo},
        {"hold_expired_holdid", test_hold_expired_holdid},
        {"hold_foreign_holdid", test_hold_foreign_holdid},
    };
    /* the group booking tests form batches of known sizes behind a first booking in a
     * batch of its own (rs_testhook.h) */
    setenv("RESERVED_TEST_BATCH_WHEN_IDLE", "1", 1);
    return th_check_main("reserved_holds", cases, sizeof(cases) / sizeof(cases[0]), 60, argc, argv);
}
