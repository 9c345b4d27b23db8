/*
 * Limits against hoarding (issue 13 §2, SPEC §6a) against a real reserved and PostgreSQL
 * (a database of the binary's shared server per case; lockd and 3 redis for the lockd
 * cases): the purchase limit (limits.max_seats_per_user_per_performance, 409
 * LIMIT_EXCEEDED) at its edge in every booking path (db mode, lockd mode one booking at a
 * time, a group booking), seats given back by a cancel, and the Idempotency-Key scoped to
 * its caller and swept after idempotency.ttl_s. No payment step: the limit is checked in
 * the booking transaction, before any charge would matter.
 *
 * Accounts: once reserved has its gate (POST /sessions answers), the catalogue is made
 * by the harness's admin and every booking carries its user's token; before that, users
 * are made without a login and bookings carry none (lt_world.auth says which).
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

#define LT_SEATS 12
#define LT_LIMIT 4 /* limits.max_seats_per_user_per_performance of every case */

typedef struct lt_world {
    th_pg pg;
    th_redis redis[3];
    th_lockd lockd;
    th_reserved srv;
    th_reserved srv2; /* a second process on the same database (lt_start_second) */
    char yaml[1024];  /* srv's config */
    bool auth;        /* reserved has its gate: requests need tokens */
    PGconn *db;
    long long perf;
    long long seats[LT_SEATS];
} lt_world;

typedef struct lt_user {
    long long id;
    char token[TH_TOKEN_LEN + 1]; /* "" without the gate */
} lt_user;

/* ---------------------------------------------------------------- the system */

/* Whether reserved logs users in (the gate of SPEC §6a): a wrong password is then 401. */
static bool lt_auth_on(int port)
{
    th_http_resp r;
    th_http_request_as(port, NULL, "POST", "/sessions", NULL,
                       "{\"email\":\"nobody@test.invalid\",\"password\":\"not-a-password\"}", &r);
    bool on = r.status == 401;
    th_http_resp_free(&r);
    return on;
}

/* POST /venues and /performances: a venue of LT_SEATS seats and a performance of it. */
static void lt_catalogue(lt_world *w)
{
    th_http_resp r;
    json_t *seats = json_array();
    for (int i = 0; i < LT_SEATS; i++)
        json_array_append_new(
            seats, json_pack("{s:s, s:i, s:s}", "row", "A", "number", i + 1, "type", "NORMAL"));
    json_t *venue = json_pack("{s:s, s:o}", "name", "Hall", "seats", seats);
    char *body = json_dumps(venue, JSON_COMPACT);
    json_decref(venue);
    th_http_request(w->srv.port, "POST", "/venues", NULL, body, &r);
    free(body);
    ck_assert_msg(r.status == 201, "POST /venues: %d %s", r.status, r.body);
    long long venue_id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    char path[64];
    snprintf(path, sizeof(path), "/venues/%lld", venue_id);
    th_http_request(w->srv.port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *list = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(list), LT_SEATS);
    for (size_t i = 0; i < LT_SEATS; i++)
        w->seats[i] = json_integer_value(json_object_get(json_array_get(list, i), "id"));
    th_http_resp_free(&r);
    char pb[256];
    snprintf(pb, sizeof(pb),
             "{\"venueId\":%lld,\"title\":\"Show\",\"startsAt\":\"2026-12-01T19:00:00Z\","
             "\"normalPrice\":1000,\"vipPrice\":2000}",
             venue_id);
    th_http_request(w->srv.port, "POST", "/performances", NULL, pb, &r);
    ck_assert_msg(r.status == 201, "POST /performances: %d %s", r.status, r.body);
    w->perf = th_http_int(&r, "id");
    th_http_resp_free(&r);
}

/* PostgreSQL, [3 redis and lockd,] one reserved in lock_mode with the purchase limit
 * LT_LIMIT and extra YAML lines; pause_ms > 0: every booking pauses that long after its
 * lock (the test hook), so that the next ones queue behind it and form a batch. Then the
 * catalogue. */
static void lt_start(lt_world *w, const char *lock_mode, const char *extra, unsigned pause_ms)
{
    memset(w, 0, sizeof(*w));
    bool lockd = strcmp(lock_mode, "lockd") == 0;
    ck_assert_msg(th_pg_shared(&w->pg), "PostgreSQL did not start");
    char lockd_line[64] = "";
    if (lockd) {
        for (int i = 0; i < 3; i++)
            ck_assert(th_redis_start(&w->redis[i]));
        ck_assert(th_lockd_start(&w->lockd, w->redis, 3, NULL));
        snprintf(lockd_line, sizeof(lockd_line), "lockd: [127.0.0.1:%d]\n", w->lockd.port);
    }
    char *yaml = w->yaml;
    int n = snprintf(yaml, sizeof(w->yaml),
                     "database: \"%s\"\n"
                     "db_pool_size: 4\n"
                     "%s"
                     "limits: {max_seats_per_user_per_performance: %d}\n"
                     "log: {level: info}\n"
                     "%s\n",
                     w->pg.conninfo, lockd_line, LT_LIMIT, extra != NULL ? extra : "");
    if (extra == NULL || strstr(extra, "lock:") == NULL)
        n += snprintf(yaml + n, sizeof(w->yaml) - (size_t)n,
                      "lock: {mode: %s, lease_ms: 0, wait_ms: 20000}\n", lock_mode);
    ck_assert(n > 0 && (size_t)n < sizeof(w->yaml));
    char ms[16];
    snprintf(ms, sizeof ms, "%u", pause_ms);
    if (pause_ms > 0)
        setenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS", ms, 1);
    th_reserved_spawn_yaml(&w->srv, yaml);
    unsetenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    th_reserved_wait_up(&w->srv);
    w->db = PQconnectdb(w->pg.conninfo);
    ck_assert_msg(PQstatus(w->db) == CONNECTION_OK, "libpq: %s", PQerrorMessage(w->db));
    w->auth = lt_auth_on(w->srv.port);
    if (w->auth)
        th_reserved_admin(&w->srv, w->pg.conninfo);
    lt_catalogue(w);
}

/* A second reserved with srv's config (same database). */
static void lt_start_second(lt_world *w)
{
    th_reserved_spawn_yaml(&w->srv2, w->yaml);
    th_reserved_wait_up(&w->srv2);
}

static void lt_stop(lt_world *w)
{
    PQfinish(w->db);
    th_reserved_stop_clean(&w->srv);
    if (w->srv2.pid > 0)
        th_reserved_stop_clean(&w->srv2);
}

/* The sweeper's runs in a reserved log: how many records each run that deleted some
 * deleted, summed into *sum, the largest into *max; whether a run failed. */
static bool lt_sweeps(const char *log, long long *sum, long long *max)
{
    FILE *f = fopen(log, "r");
    ck_assert(f != NULL);
    char line[1024];
    bool failed = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, "sweeper: deleted ");
        if (p != NULL) {
            long long n = strtoll(p + strlen("sweeper: deleted "), NULL, 10);
            *sum += n;
            *max = n > *max ? n : *max;
        }
        failed = failed || strstr(line, "sweeper: rs_sweep failed") != NULL;
    }
    fclose(f);
    return failed;
}

/* A customer (logged in when reserved has its gate). */
static void lt_user_new(lt_world *w, const char *name, lt_user *u)
{
    char email[96];
    snprintf(email, sizeof(email), "%s-%lld@example.com", name, w->perf);
    u->token[0] = '\0';
    if (w->auth) {
        u->id = th_signup(w->srv.port, name, email, u->token);
        return;
    }
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"email\":\"%s\",\"password\":\"%s\"}", name,
             email, TH_PASSWORD);
    th_http_resp r;
    th_http_request_as(w->srv.port, NULL, "POST", "/users", NULL, body, &r);
    ck_assert_msg(r.status == 201, "POST /users: %d %s", r.status, r.body);
    u->id = th_http_int(&r, "id");
    th_http_resp_free(&r);
}

/* The booking body of u for seats[first .. first + n) of the venue. */
static char *lt_body(const lt_world *w, const lt_user *u, size_t first, size_t n)
{
    json_t *ids = json_array();
    for (size_t i = first; i < first + n; i++)
        json_array_append_new(ids, json_integer(w->seats[i]));
    json_t *o = json_pack("{s:I, s:o}", "userId", (json_int_t)u->id, "seatIds", ids);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* u books seats[first .. first + n), with an Idempotency-Key or none (NULL). */
static void lt_book(lt_world *w, const lt_user *u, size_t first, size_t n, const char *key,
                    th_http_resp *r)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", w->perf);
    char *body = lt_body(w, u, first, n);
    th_http_request_as(w->srv.port, u->token[0] != '\0' ? u->token : NULL, "POST", path, key, body,
                       r);
    free(body);
}

/* The same, sent without waiting for the answer (th_http_finish reads it). */
static int lt_book_send(lt_world *w, const lt_user *u, size_t first, size_t n)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", w->perf);
    char *body = lt_body(w, u, first, n);
    char *saved = th_http_bearer() != NULL ? strdup(th_http_bearer()) : NULL;
    th_http_set_bearer(u->token);
    int fd = th_http_send(w->srv.port, "POST", path, NULL, body, strlen(body));
    th_http_set_bearer(saved);
    free(saved);
    free(body);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* r is status with error code (NULL: a success); its body says so when not. */
static void lt_expect(const th_http_resp *r, int status, const char *code, const char *what)
{
    ck_assert_msg(r->status == status, "%s: %d %s (expected %d)", what, r->status, r->body, status);
    if (code != NULL)
        ck_assert_msg(strcmp(th_http_error_code(r), code) == 0, "%s: %s", what, r->body);
}

/* A 409 LIMIT_EXCEEDED whose message names the limit and the seats the user has. */
static void lt_expect_limit(const th_http_resp *r, int has, const char *what)
{
    lt_expect(r, 409, "LIMIT_EXCEEDED", what);
    const char *msg =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    char want[64];
    snprintf(want, sizeof(want), "at most %d seats", LT_LIMIT);
    ck_assert_msg(msg != NULL && strstr(msg, want) != NULL, "%s: %s", what, r->body);
    snprintf(want, sizeof(want), "has %d and asked", has);
    ck_assert_msg(strstr(msg, want) != NULL, "%s: %s", what, r->body);
}

/* One integer from a query. */
static long long lt_q(lt_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long long lt_q(lt_world *w, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGresult *res = PQexec(w->db, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(w->db));
    long long v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* u's seats in CONFIRMED reservations of the case's performance. */
static long long lt_seats_of(lt_world *w, const lt_user *u)
{
    return lt_q(w,
                "SELECT count(*) FROM reservations r JOIN reservation_seats s"
                " ON s.reservation_id = r.id AND s.confirmed"
                " WHERE r.user_id = %lld AND r.performance_id = %lld AND r.status = 'CONFIRMED'",
                u->id, w->perf);
}

/* ---------------------------------------------------------------- purchase limit */

/* The limit at its edge, one booking at a time: 2 + 2 seats pass (the LT_LIMIT-th seat is
 * allowed), one more is 409 LIMIT_EXCEEDED; another user is not limited by it. */
static void lt_limit_edge(const char *lock_mode, const char *extra)
{
    lt_world w;
    lt_start(&w, lock_mode, extra, 0);
    lt_user a, b;
    lt_user_new(&w, "a", &a);
    lt_user_new(&w, "b", &b);
    th_http_resp r;
    lt_book(&w, &a, 0, 2, NULL, &r);
    lt_expect(&r, 201, NULL, "a's first 2");
    th_http_resp_free(&r);
    lt_book(&w, &a, 2, 2, NULL, &r);
    lt_expect(&r, 201, NULL, "a's next 2 (the limit)");
    th_http_resp_free(&r);
    lt_book(&w, &a, 4, 1, NULL, &r);
    lt_expect_limit(&r, 4, "a's fifth seat");
    th_http_resp_free(&r);
    lt_book(&w, &b, 4, 1, NULL, &r);
    lt_expect(&r, 201, NULL, "b's seat");
    th_http_resp_free(&r);
    lt_book(&w, &b, 5, 3, NULL, &r);
    lt_expect(&r, 201, NULL, "b's 3 more (the limit)");
    th_http_resp_free(&r);
    ck_assert_int_eq(lt_seats_of(&w, &a), LT_LIMIT);
    ck_assert_int_eq(lt_seats_of(&w, &b), LT_LIMIT);
    ck_assert_int_eq(
        lt_q(&w, "SELECT remaining_capacity FROM performances WHERE id = %lld", w.perf),
        LT_SEATS - 2 * LT_LIMIT);
    lt_stop(&w);
}

START_TEST(test_limit_edge)
{
    lt_limit_edge("lockd", "lock: {mode: lockd, lease_ms: 0, wait_ms: 20000, batch_max: 1}");
}
END_TEST

START_TEST(test_limit_edge_db)
{
    lt_limit_edge("db", NULL);
}
END_TEST

/* A group booking (lockd mode): four bookings queue behind a paused one and are booked as
 * one batch. a, who has 2 seats, asks for 2 and then 1 in it: the 2 reach the limit, the 1
 * alone is refused 409 LIMIT_EXCEEDED; the other members commit. (The batch's one seat
 * INSERT trips the limit, and the batch is booked again one savepoint per request.) */
START_TEST(test_limit_edge_batch)
{
    lt_world w;
    lt_start(&w, "lockd", NULL, 1000);
    lt_user a, b, c;
    lt_user_new(&w, "a", &a);
    lt_user_new(&w, "b", &b);
    lt_user_new(&w, "c", &c);
    th_http_resp r;
    lt_book(&w, &a, 0, 2, NULL, &r);
    lt_expect(&r, 201, NULL, "a's first 2");
    th_http_resp_free(&r);
    /* b's booking holds the lock for a second; the rest queue behind it, in this order */
    int first = lt_book_send(&w, &b, 2, 1);
    char line[64];
    snprintf(line, sizeof line, "paused %u ms after the lock", 1000u);
    for (uint64_t end = th_now_ms() + 10000; th_now_ms() < end; th_sleep_ms(10)) {
        FILE *f = fopen(w.srv.log, "r");
        char buf[1024];
        int seen = 0;
        while (f != NULL && fgets(buf, sizeof(buf), f) != NULL)
            seen += strstr(buf, line) != NULL;
        if (f != NULL)
            fclose(f);
        if (seen >= 2) /* a's booking paused too, before */
            break;
    }
    enum { N = 4 };
    int fd[N];
    fd[0] = lt_book_send(&w, &a, 3, 2); /* a: 4, the limit */
    th_sleep_ms(100);
    fd[1] = lt_book_send(&w, &a, 5, 1); /* a: 5, refused */
    th_sleep_ms(100);
    fd[2] = lt_book_send(&w, &c, 6, 2);
    th_sleep_ms(100);
    fd[3] = lt_book_send(&w, &b, 8, 1);
    th_http_finish(first, &r, 15000);
    lt_expect(&r, 201, NULL, "b's paused booking");
    th_http_resp_free(&r);
    const char *what[N] = {"a's 2 in the batch", "a's 1 over the limit", "c's 2", "b's 1"};
    for (int i = 0; i < N; i++) {
        th_http_finish(fd[i], &r, 15000);
        if (i == 1)
            lt_expect_limit(&r, 4, what[i]);
        else
            lt_expect(&r, 201, NULL, what[i]);
        th_http_resp_free(&r);
    }
    ck_assert_int_eq(lt_seats_of(&w, &a), LT_LIMIT);
    ck_assert_int_eq(lt_seats_of(&w, &b), 2);
    ck_assert_int_eq(lt_seats_of(&w, &c), 2);
    ck_assert_int_eq(
        lt_q(&w, "SELECT remaining_capacity FROM performances WHERE id = %lld", w.perf),
        LT_SEATS - 8);
    /* the four were one batch (a's first booking and b's paused one were batches of one) */
    th_http_request(w.srv.port, "GET", "/metrics", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "\nreserved_batches_total 3\n") != NULL &&
                      strstr(r.body, "\nreserved_batch_bookings_total 6\n") != NULL,
                  "not one batch of 4 after two of 1");
    th_http_resp_free(&r);
    lt_stop(&w);
}
END_TEST

/* A cancel gives the seats back to the limit: the user may book again. The refusal was
 * a final answer: its Idempotency-Key replays the 409 even after the cancel. */
START_TEST(test_limit_cancel_frees)
{
    lt_world w;
    lt_start(&w, "db", NULL, 0);
    lt_user a;
    lt_user_new(&w, "a", &a);
    th_http_resp r;
    lt_book(&w, &a, 0, LT_LIMIT, NULL, &r);
    lt_expect(&r, 201, NULL, "a's limit in one booking");
    long long id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    lt_book(&w, &a, LT_LIMIT, 1, "over", &r);
    lt_expect_limit(&r, LT_LIMIT, "one more");
    th_http_resp_free(&r);
    char path[64];
    snprintf(path, sizeof(path), "/reservations/%lld", id);
    th_http_request_as(w.srv.port, a.token[0] != '\0' ? a.token : NULL, "DELETE", path, NULL, NULL,
                       &r);
    lt_expect(&r, 200, NULL, "the cancel");
    th_http_resp_free(&r);
    ck_assert_int_eq(lt_seats_of(&w, &a), 0);
    lt_book(&w, &a, LT_LIMIT, 1, "over", &r);
    lt_expect_limit(&r, LT_LIMIT, "the refused key again (its stored answer)");
    th_http_resp_free(&r);
    lt_book(&w, &a, LT_LIMIT, 1, "again", &r);
    lt_expect(&r, 201, NULL, "one seat after the cancel");
    th_http_resp_free(&r);
    lt_book(&w, &a, 0, LT_LIMIT - 1, NULL, &r);
    lt_expect(&r, 201, NULL, "up to the limit again (the cancelled seats)");
    th_http_resp_free(&r);
    lt_book(&w, &a, LT_LIMIT + 1, 1, NULL, &r);
    lt_expect_limit(&r, LT_LIMIT, "over it again");
    th_http_resp_free(&r);
    ck_assert_int_eq(lt_seats_of(&w, &a), LT_LIMIT);
    lt_stop(&w);
}
END_TEST

/* ---------------------------------------------------------------- Idempotency-Key */

/* Two callers use one key, each for its own booking: two reservations, each replayed to
 * its caller; the same caller with another body is 422. Needs the gate (callers). */
START_TEST(test_idem_scoped_per_user)
{
    lt_world w;
    lt_start(&w, "db", NULL, 0);
    ck_assert_msg(w.auth, "reserved has no gate: callers cannot be told apart");
    lt_user a, b;
    lt_user_new(&w, "a", &a);
    lt_user_new(&w, "b", &b);
    th_http_resp r;
    lt_book(&w, &a, 0, 1, "shared-key", &r);
    lt_expect(&r, 201, NULL, "a with the key");
    long long ida = th_http_int(&r, "id");
    th_http_resp_free(&r);
    lt_book(&w, &b, 1, 1, "shared-key", &r);
    lt_expect(&r, 201, NULL, "b with the same key");
    long long idb = th_http_int(&r, "id");
    th_http_resp_free(&r);
    ck_assert_int_ne(ida, idb);
    lt_book(&w, &a, 0, 1, "shared-key", &r);
    lt_expect(&r, 201, NULL, "a's replay");
    ck_assert_int_eq(th_http_int(&r, "id"), ida);
    th_http_resp_free(&r);
    lt_book(&w, &b, 1, 1, "shared-key", &r);
    lt_expect(&r, 201, NULL, "b's replay");
    ck_assert_int_eq(th_http_int(&r, "id"), idb);
    th_http_resp_free(&r);
    lt_book(&w, &a, 2, 1, "shared-key", &r);
    lt_expect(&r, 422, "IDEMPOTENCY_MISMATCH", "a's key with another body");
    ck_assert_msg(strstr(r.body, "'shared-key'") != NULL, "the key as sent: %s", r.body);
    th_http_resp_free(&r);
    ck_assert_int_eq(lt_q(&w, "SELECT count(*) FROM reservations"), 2);
    lt_stop(&w);
}
END_TEST

/* idempotency.ttl_s 1: the record is deleted by the sweeper soon after, and the key can be
 * used again (for another booking). Expired login sessions go too, live ones stay. Two
 * processes sweep the same database: a backlog of 2500 expired records goes at most 1000
 * a run (the bound), and neither run fails. */
START_TEST(test_idem_ttl_sweep)
{
    lt_world w;
    lt_start(&w, "db", "idempotency: {ttl_s: 1}", 0);
    lt_start_second(&w);
    lt_user a;
    lt_user_new(&w, "a", &a);
    bool sessions = lt_q(&w, "SELECT count(*) FROM pg_class WHERE relname = 'sessions'") > 0;
    if (sessions) {
        PGresult *res = PQexec(
            w.db, "INSERT INTO sessions (token_hash, user_id, expires_at) SELECT"
                  " decode(repeat('e1', 32), 'hex'), max(id), now() - interval '1 second'"
                  " FROM users; INSERT INTO sessions (token_hash, user_id, expires_at) SELECT"
                  " decode(repeat('a1', 32), 'hex'), max(id), now() + interval '1 hour'"
                  " FROM users");
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(w.db));
        PQclear(res);
    }
    th_http_resp r;
    lt_book(&w, &a, 0, 1, "ttl-key", &r);
    lt_expect(&r, 201, NULL, "the first booking");
    long long first = th_http_int(&r, "id");
    th_http_resp_free(&r);
    lt_book(&w, &a, 1, 1, "ttl-key", &r);
    lt_expect(&r, 422, "IDEMPOTENCY_MISMATCH", "the key with another body, at once");
    th_http_resp_free(&r);
    uint64_t t0 = th_now_ms();
    while (lt_q(&w, "SELECT count(*) FROM idempotency_keys") > 0 && th_now_ms() - t0 < 5000)
        th_sleep_ms(50);
    ck_assert_msg(lt_q(&w, "SELECT count(*) FROM idempotency_keys") == 0,
                  "the record is still there after 5 s (ttl 1 s)");
    lt_book(&w, &a, 1, 1, "ttl-key", &r);
    lt_expect(&r, 201, NULL, "the key again, for another booking");
    ck_assert_int_ne(th_http_int(&r, "id"), first);
    th_http_resp_free(&r);
    if (sessions) {
        t0 = th_now_ms();
        while (lt_q(&w, "SELECT count(*) FROM sessions WHERE expires_at < now()") > 0 &&
               th_now_ms() - t0 < 5000)
            th_sleep_ms(50);
        ck_assert_int_eq(lt_q(&w, "SELECT count(*) FROM sessions WHERE expires_at < now()"), 0);
        ck_assert_int_eq(lt_q(&w, "SELECT count(*) FROM sessions"
                                  " WHERE token_hash = decode(repeat('a1', 32), 'hex')"),
                         1);
    }
    PGresult *res = PQexec(w.db, "INSERT INTO idempotency_keys (key, request_hash, status_code,"
                                 " response, created_at) SELECT 'old-' || i, 'h', 201, '{}',"
                                 " now() - interval '1 hour' FROM generate_series(1, 2500) i");
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(w.db));
    PQclear(res);
    t0 = th_now_ms();
    while (lt_q(&w, "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'old-%%'") > 0 &&
           th_now_ms() - t0 < 10000)
        th_sleep_ms(50);
    ck_assert_int_eq(lt_q(&w, "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'old-%%'"), 0);
    long long sum = 0, max = 0;
    ck_assert_msg(!lt_sweeps(w.srv.log, &sum, &max), "a sweep failed");
    ck_assert_msg(!lt_sweeps(w.srv2.log, &sum, &max), "a sweep failed");
    ck_assert_msg(max == 1000 && sum >= 2500,
                  "runs of at most 1000 (a full one: %lld), %lld in all", max, sum);
    lt_stop(&w);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"limit_edge", test_limit_edge},
        {"limit_edge_db", test_limit_edge_db},
        {"limit_edge_batch", test_limit_edge_batch},
        {"limit_cancel_frees", test_limit_cancel_frees},
        {"idem_ttl_sweep", test_idem_ttl_sweep},
        {"idem_scoped_per_user", test_idem_scoped_per_user},
    };
    /* the group booking tests form batches of known sizes behind a first booking in a
     * batch of its own (rs_testhook.h) */
    setenv("RESERVED_TEST_BATCH_WHEN_IDLE", "1", 1);
    return th_check_main("reserved_limits", cases, sizeof(cases) / sizeof(cases[0]), 60, argc,
                         argv);
}
