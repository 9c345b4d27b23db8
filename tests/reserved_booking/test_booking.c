/*
 * Booking tests (issue 3 §6) against the real system: PostgreSQL (a fresh database of the
 * case's own on the binary's shared server, th_pg_shared; pg_restart, which restarts it,
 * has its own cluster), 3 redis, lockd, fakepay and 1-3 reserved processes (th_fakepay,
 * th_reserved), driven over HTTP (th_http). Each case names the
 * claim it checks; the storm drives 600 requests at once through poll()-multiplexed
 * sockets. Database facts are read with libpq (blocking: this is the test, not a daemon).
 * Who calls (SPEC §6a): the first reserved of a case makes the harness admin
 * (th_reserved_admin), and every request carries that admin's token, booking for the
 * customers by "userId" (the admin is user 1, made before any customer); the purchase
 * limit is raised so that a storm's users are not refused for it.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"
#include "th_check.h"
#include "th_fakepay.h"
#include "th_http.h"
#include "th_reserved.h"

#define RB_MAX_RESERVED 3
#define RB_IO_MS        30000
#define RB_SEATS        200
#define RB_STORM        600

/* ---------------------------------------------------------------- HTTP */

/* One request, answered within RB_IO_MS (a booking may wait for its lock that long). */
static void rb_http(int port, const char *method, const char *path, const char *key,
                    const char *body, th_http_resp *out)
{
    th_http_request_ms(port, method, path, key, body, RB_IO_MS, out);
}

/* Sends a request and returns the socket without waiting (th_http_finish reads it). */
static int rb_start(int port, const char *method, const char *path, const char *body)
{
    int fd = th_http_send(port, method, path, NULL, body, body ? strlen(body) : 0);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static json_int_t rb_int(const th_http_resp *r, const char *field)
{
    return json_integer_value(json_object_get(r->json, field));
}

/* ---------------------------------------------------------------- the system */

typedef struct rb_world {
    th_pg pg; /* this case's database on the shared server, or a cluster of its own */
    th_redis redis[3];
    th_lockd lockd;
    th_fakepay pay;
    th_reserved srv[RB_MAX_RESERVED];
    size_t n;
    PGconn *db;
    bool admin; /* th_reserved_admin ran on this database: th_http's bearer is its admin */
} rb_world;

/* PostgreSQL (the binary's shared server unless own_pg: cases that stop it), 3 redis,
 * lockd and fakepay (--seed 1 plus fakepay_extra): the fakepay and lockd of a case are
 * its own, since cases count payments and kill lockd. */
static void rb_start_infra(rb_world *w, const char *fakepay_extra, bool own_pg)
{
    memset(w, 0, sizeof(*w));
    ck_assert_msg(own_pg ? th_pg_start(&w->pg) : th_pg_shared(&w->pg), "PostgreSQL did not start");
    for (int i = 0; i < 3; i++)
        ck_assert(th_redis_start(&w->redis[i]));
    ck_assert(th_lockd_start(&w->lockd, w->redis, 3, NULL));
    char args[256];
    snprintf(args, sizeof(args), "--seed 1 %s", fakepay_extra != NULL ? fakepay_extra : "");
    th_fakepay_start_args(&w->pay, args);
}

/* Starts reserved #i with the standard config plus extra YAML lines. */
static void rb_start_reserved(rb_world *w, size_t i, const char *lock_mode, const char *extra)
{
    char yaml[2048];
    int n = snprintf(yaml, sizeof(yaml),
                     "database: \"%s\"\n"
                     "db_pool_size: 8\n"
                     "lockd: [127.0.0.1:%d]\n"
                     "limits: {max_body_bytes: 65536, max_seats_per_reservation: 10, "
                     "max_seats_per_user_per_performance: 100000}\n"
                     "log: {level: info}\n"
                     "%s\n",
                     w->pg.conninfo, w->lockd.port, extra != NULL ? extra : "");
    ck_assert(n > 0 && (size_t)n < sizeof(yaml));
    if (extra == NULL || strstr(extra, "payment:") == NULL)
        n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
                      "payment: {url: \"http://127.0.0.1:%d\", timeout_ms: 2000}\n", w->pay.port);
    if (extra == NULL || strstr(extra, "lock:") == NULL)
        n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
                      "lock: {mode: %s, lease_ms: 0, wait_ms: 20000}\n", lock_mode);
    ck_assert((size_t)n < sizeof(yaml));
    th_reserved_spawn_yaml(&w->srv[i], yaml);
    th_reserved_wait_up(&w->srv[i]);
    if (!w->admin)
        th_reserved_admin(&w->srv[i], w->pg.conninfo);
    w->admin = true;
    if (i + 1 > w->n)
        w->n = i + 1;
}

static void rb_db_connect(rb_world *w)
{
    w->db = PQconnectdb(w->pg.conninfo);
    ck_assert_msg(PQstatus(w->db) == CONNECTION_OK, "libpq: %s", PQerrorMessage(w->db));
}

/* One integer from a query. */
static long long rb_q(rb_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long long rb_q(rb_world *w, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGresult *res = PQexec(w->db, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(w->db));
    ck_assert_int_eq(PQntuples(res), 1);
    long long v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* Polls a log file until it contains needle. */
static bool rb_log_wait(const char *path, const char *needle, int timeout_ms)
{
    for (uint64_t end = th_now_ms() + (uint64_t)timeout_ms; th_now_ms() < end; th_sleep_ms(10)) {
        FILE *f = fopen(path, "r");
        char line[1024];
        bool found = false;
        while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
            found = strstr(line, needle) != NULL;
        if (f != NULL)
            fclose(f);
        if (found)
            return true;
    }
    return false;
}

/* SIGTERM every reserved and require exit 0 (with ASan this is also the leak check). */
static void rb_stop_reserved_clean(rb_world *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->srv[i].pid <= 0)
            continue;
        int st = th_stop(w->srv[i].pid, true, 15000);
        if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
            th_dump_log(w->srv[i].log, 40);
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "reserved %zu exit status 0x%x", i, st);
        w->srv[i].pid = 0;
    }
}

/* A value of a metric line "name{labels} value" (exact name+labels) served on port. */
static long long rb_metric_port(int port, const char *series)
{
    th_http_resp r;
    rb_http(port, "GET", "/metrics", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = -1;
    size_t sl = strlen(series);
    for (const char *p = r.raw; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
            v = strtoll(p + sl + 1, NULL, 10);
            break;
        }
    }
    th_http_resp_free(&r);
    return v;
}

/* The same from reserved #i. */
static long long rb_metric(rb_world *w, size_t i, const char *series)
{
    return rb_metric_port(w->srv[i].port, series);
}

/* Creates users, a venue of n seats (the first vip of them VIP) and a performance;
 * seat ids go to seat_ids (n of them). Returns the performance id. */
static long long rb_setup(rb_world *w, int n, int vip, long long normal, long long vipp,
                          long long *seat_ids, int users)
{
    th_http_resp r;
    json_t *seats = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(seats,
                              json_pack("{s:s, s:i, s:s}", "row", i < 100 ? "A" : "B", "number",
                                        i % 100 + 1, "type", i < vip ? "VIP" : "NORMAL"));
    json_t *venue = json_pack("{s:s, s:o}", "name", "Hall", "seats", seats);
    char *body = json_dumps(venue, JSON_COMPACT);
    json_decref(venue);
    rb_http(w->srv[0].port, "POST", "/venues", NULL, body, &r);
    free(body);
    ck_assert_msg(r.status == 201, "POST /venues: %d %s", r.status, r.raw);
    long long venue_id = rb_int(&r, "id");
    th_http_resp_free(&r);

    char path[64];
    snprintf(path, sizeof(path), "/venues/%lld", venue_id);
    rb_http(w->srv[0].port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *list = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(list), n);
    for (int i = 0; i < n; i++)
        seat_ids[i] = json_integer_value(json_object_get(json_array_get(list, (size_t)i), "id"));
    th_http_resp_free(&r);

    char pb[256];
    snprintf(pb, sizeof(pb),
             "{\"venueId\":%lld,\"title\":\"Show\",\"startsAt\":\"2026-12-01T19:00:00Z\","
             "\"normalPrice\":%lld,\"vipPrice\":%lld}",
             venue_id, normal, vipp);
    rb_http(w->srv[0].port, "POST", "/performances", NULL, pb, &r);
    ck_assert_msg(r.status == 201, "POST /performances: %d %s", r.status, r.raw);
    long long perf = rb_int(&r, "id");
    th_http_resp_free(&r);
    for (int u = 0; u < users; u++) {
        char ub[192];
        snprintf(ub, sizeof(ub),
                 "{\"name\":\"user%d\",\"email\":\"u%d-%lld@example.com\",\"password\":\"%s\"}", u,
                 u, perf, TH_PASSWORD);
        rb_http(w->srv[0].port, "POST", "/users", NULL, ub, &r);
        ck_assert_msg(r.status == 201, "POST /users: %d %s", r.status, r.raw);
        th_http_resp_free(&r);
    }
    return perf;
}

static char *rb_booking_body(long long user, const long long *seats, size_t n)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ids, json_integer(seats[i]));
    json_t *o = json_pack("{s:I, s:o}", "userId", (json_int_t)user, "seatIds", ids);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void rb_book(rb_world *w, size_t server, long long perf, long long user,
                    const long long *seats, size_t n, const char *key, th_http_resp *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(user, seats, n);
    rb_http(w->srv[server].port, "POST", path, key, body, out);
    free(body);
}

static long long rb_remaining(rb_world *w, size_t server, long long perf)
{
    th_http_resp r;
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld", perf);
    rb_http(w->srv[server].port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = rb_int(&r, "remainingCapacity");
    th_http_resp_free(&r);
    return v;
}

/* fakepay payments: counts by status; approved ids (not cancelled) into ids if non-NULL. */
static void rb_payments(rb_world *w, int *approved, int *cancelled, int *declined, json_t *ids)
{
    th_http_resp r;
    rb_http(w->pay.port, "GET", "/payments", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    *approved = *cancelled = *declined = 0;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(r.json, "items"), i, it)
    {
        const char *st = json_string_value(json_object_get(it, "status"));
        if (strcmp(st, "APPROVED") == 0) {
            (*approved)++;
            if (ids != NULL)
                json_array_append(ids, json_object_get(it, "id"));
        } else if (strcmp(st, "CANCELLED") == 0) {
            (*cancelled)++;
        } else {
            (*declined)++;
        }
    }
    th_http_resp_free(&r);
}

/* ---------------------------------------------------------------- the storm */

/* batch_max: lock.batch_max in lockd mode (0: the default, 64). */
static void rb_storm(const char *lock_mode, int batch_max)
{
    rb_world w;
    long long seat_ids[RB_SEATS];
    rb_start_infra(&w, NULL, false);
    char extra[128] = "";
    if (batch_max > 0)
        snprintf(extra, sizeof(extra),
                 "lock: {mode: lockd, lease_ms: 0, wait_ms: 20000, batch_max: %d}", batch_max);
    for (size_t i = 0; i < 3; i++)
        rb_start_reserved(&w, i, lock_mode, extra);
    long long perf = rb_setup(&w, RB_SEATS, 20, 1000, 5000, seat_ids, 20);

    /* 600 requests of 1-3 distinct random seats, round-robin over the 3 servers */
    srand(42);
    th_http_call *calls = calloc(RB_STORM, sizeof(*calls));
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    for (size_t i = 0; i < RB_STORM; i++) {
        long long seats[3];
        size_t n = (size_t)(rand() % 3) + 1;
        for (size_t k = 0; k < n; k++) {
        again:
            seats[k] = seat_ids[rand() % RB_SEATS];
            for (size_t j = 0; j < k; j++)
                if (seats[j] == seats[k])
                    goto again;
        }
        char *body = rb_booking_body((long long)(i % 20) + 1, seats, n);
        calls[i].port = w.srv[i % 3].port;
        calls[i].req = th_http_build("POST", path, NULL, body, &calls[i].len);
        free(body);
    }
    uint64_t t0 = th_now_ms();
    th_http_batch(calls, RB_STORM, 120000);
    uint64_t took = th_now_ms() - t0;

    int n201 = 0, n409 = 0, n503 = 0, other = 0;
    long long sold = 0;
    static bool seen[1 << 16];
    memset(seen, 0, sizeof(seen));
    json_t *ids = json_array();
    for (size_t i = 0; i < RB_STORM; i++) {
        th_http_resp *r = &calls[i].resp;
        if (r->status == 201) {
            n201++;
            json_array_append_new(ids, json_integer(rb_int(r, "id")));
            size_t k;
            json_t *s;
            json_array_foreach(json_object_get(r->json, "seats"), k, s)
            {
                long long sid = json_integer_value(json_object_get(s, "seatId"));
                ck_assert_msg(sid > 0 && sid < (1 << 16), "seat id %lld", sid);
                ck_assert_msg(!seen[sid], "seat %lld sold twice", sid);
                seen[sid] = true;
                sold++;
            }
            ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "CONFIRMED");
        } else if (r->status == 409) {
            n409++;
        } else if (r->status == 503) {
            n503++;
        } else {
            other++;
            fprintf(stderr, "unexpected answer: %d %s\n", r->status, r->raw ? r->raw : "(none)");
        }
        th_http_resp_free(r);
    }
    free(calls);
    fprintf(stderr,
            "storm (%s): %d requests in %llu ms: 201=%d 409=%d 503=%d other=%d, seats sold %lld\n",
            lock_mode, RB_STORM, (unsigned long long)took, n201, n409, n503, other, sold);
    ck_assert_int_eq(other, 0);
    ck_assert_int_gt(n201, 0);
    ck_assert_int_le(sold, RB_SEATS);

    /* remaining = 200 - seats confirmed, seen the same from every server and the DB */
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(rb_remaining(&w, i, perf), RB_SEATS - sold);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w,
                          "SELECT count(*) FROM reservation_seats WHERE performance_id = %lld "
                          "AND confirmed",
                          perf),
                     sold);
    ck_assert_int_eq(rb_q(&w,
                          "SELECT count(*) FROM (SELECT seat_id FROM reservation_seats WHERE "
                          "performance_id = %lld AND confirmed GROUP BY seat_id HAVING count(*) > "
                          "1) d",
                          perf),
                     0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'"),
                     n201);
    /* every 201 is readable from every server */
    size_t k;
    json_t *id;
    json_array_foreach(ids, k, id)
    {
        for (size_t i = 0; i < 3; i++) {
            th_http_resp r;
            char p[64];
            snprintf(p, sizeof(p), "/reservations/%lld", (long long)json_integer_value(id));
            rb_http(w.srv[i].port, "GET", p, NULL, NULL, &r);
            ck_assert_msg(r.status == 200, "GET %s on server %zu: %d", p, i, r.status);
            ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CONFIRMED");
            th_http_resp_free(&r);
        }
    }
    json_decref(ids);
    /* payments: every confirmed booking has exactly one approved payment */
    int ap, ca, de;
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, n201);
    /* no guard fired anywhere: the lock did its job */
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(rb_metric(&w, i, "reserved_guard_firings_total{guard=\"seat_unique\"}"),
                         0);
        ck_assert_int_eq(rb_metric(&w, i, "reserved_guard_firings_total{guard=\"capacity\"}"), 0);
    }
    /* lockd mode books in batches (every booking in one, most batches of many), unless
     * lock.batch_max is 1; db mode never */
    long long batches = 0, batched = 0;
    for (size_t i = 0; i < 3; i++) {
        batches += rb_metric(&w, i, "reserved_batches_total");
        batched += rb_metric(&w, i, "reserved_batch_bookings_total");
    }
    fprintf(stderr, "storm (%s, batch_max %d): %lld bookings in %lld batches\n", lock_mode,
            batch_max, batched, batches);
    if (strcmp(lock_mode, "db") == 0 || batch_max == 1) {
        ck_assert_int_eq(batches, 0);
    } else {
        ck_assert_int_eq(batched, RB_STORM);
        ck_assert_int_lt(batches * 2, batched);
    }
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}

START_TEST(test_storm)
{
    rb_storm("lockd", 0);
}
END_TEST

START_TEST(test_storm_db)
{
    rb_storm("db", 0);
}
END_TEST

/* lock.batch_max 1: one booking per transaction, as before group booking. */
START_TEST(test_storm_unbatched)
{
    rb_storm("lockd", 1);
}
END_TEST

/* ---------------------------------------------------------------- no payment */

/* Without a payment gateway a booking is booked and read back in one call (rs_book_read),
 * and in lockd mode rs_book's fence update also takes the capacity: the answers, their
 * precedence near the sell-out (400 foreign seat, then 409 SEAT_TAKEN, then 409
 * SOLD_OUT) and the capacity must be those of the path with a payment. */
static void rb_no_payment(const char *lock_mode)
{
    rb_world w;
    long long seat_ids[4];
    rb_start_infra(&w, NULL, false);
    rb_start_reserved(&w, 0, lock_mode, "payment: {url: \"\", timeout_ms: 2000}");
    long long perf = rb_setup(&w, 4, 1, 1000, 5000, seat_ids, 1);
    long long other[1];
    (void)rb_setup(&w, 1, 0, 1000, 5000, other, 1); /* a seat of another venue */
    rb_db_connect(&w);
    long long user = rb_q(&w, "SELECT min(id) FROM users");

    th_http_resp r;
    long long two[] = {seat_ids[0], seat_ids[1]}; /* VIP 5000 + normal 1000 */
    rb_book(&w, 0, perf, user, two, 2, NULL, &r);
    ck_assert_msg(r.status == 201, "book: %d %s", r.status, r.raw);
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
    ck_assert(json_is_null(json_object_get(r.json, "paymentId")));
    json_t *seats = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(seats), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(seats, 0), "type")), "VIP");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(seats, 1), "price")), 1000);
    /* the answer is the reservation as stored */
    char path[64];
    snprintf(path, sizeof(path), "/reservations/%lld", (long long)rb_int(&r, "id"));
    char *booked = json_dumps(r.json, JSON_COMPACT | JSON_SORT_KEYS);
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char *stored = json_dumps(r.json, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(booked, stored);
    free(booked);
    free(stored);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 2);

    /* 2 left, 3 asked, one of them taken and one foreign: the foreign seat answers first,
     * then the taken one, and only then the capacity */
    long long foreign[] = {seat_ids[2], seat_ids[3], other[0]};
    rb_book(&w, 0, perf, user, foreign, 3, NULL, &r);
    ck_assert_msg(r.status == 400, "foreign seat: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    long long taken[] = {seat_ids[0], seat_ids[2], seat_ids[3]};
    rb_book(&w, 0, perf, user, taken, 3, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(th_http_error_code(&r), "SEAT_TAKEN") == 0,
                  "taken: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    long long last[] = {seat_ids[2], seat_ids[3]};
    rb_book(&w, 0, perf, user, last, 2, NULL, &r);
    ck_assert_msg(r.status == 201, "last two: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    rb_book(&w, 0, perf, user, last, 1, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(th_http_error_code(&r), "SEAT_TAKEN") == 0,
                  "sold: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    /* cancel the first booking, then ask for 3 seats with 2 free, one of the 3 taken:
     * SEAT_TAKEN, and nothing changes */
    snprintf(path, sizeof(path), "/reservations/%lld",
             rb_q(&w, "SELECT min(id) FROM reservations WHERE performance_id = %lld", perf));
    rb_http(w.srv[0].port, "DELETE", path, NULL, NULL, &r);
    ck_assert_msg(r.status == 200, "cancel: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 2);
    long long want3[] = {seat_ids[0], seat_ids[1], seat_ids[2]};
    rb_book(&w, 0, perf, user, want3, 3, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(th_http_error_code(&r), "SEAT_TAKEN") == 0,
                  "want3: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 2);
    ck_assert_int_eq(rb_q(&w,
                          "SELECT count(*) FROM reservation_seats WHERE performance_id = %lld "
                          "AND confirmed",
                          perf),
                     2);
    /* lockd mode stored the fence of its last commit; db mode never writes one */
    long long fence = rb_q(&w, "SELECT last_fence FROM performances WHERE id = %lld", perf);
    if (strcmp(lock_mode, "db") == 0)
        ck_assert_int_eq(fence, 0);
    else
        ck_assert_int_gt(fence, 0);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}

START_TEST(test_no_payment)
{
    rb_no_payment("lockd");
}
END_TEST

START_TEST(test_no_payment_db)
{
    rb_no_payment("db");
}
END_TEST

/* ---------------------------------------------------------------- prices + cancel */

static void rb_prices_cancel(const char *lock_mode)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    rb_start_reserved(&w, 0, lock_mode, NULL);
    rb_start_reserved(&w, 1, lock_mode, NULL);
    long long perf = rb_setup(&w, 10, 2, 1000, 5000, seats, 1);
    th_http_resp r;
    long long two[2] = {seats[0], seats[5]}; /* one VIP, one NORMAL */
    rb_book(&w, 0, perf, 1, two, 2, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    long long res = rb_int(&r, "id");
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
    const char *pay_id = json_string_value(json_object_get(r.json, "paymentId"));
    ck_assert_ptr_nonnull(pay_id);
    char pay[64];
    snprintf(pay, sizeof(pay), "%s", pay_id);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 1, perf), 8);

    /* patch the prices: the booking keeps its own */
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld", perf);
    rb_http(w.srv[1].port, "PATCH", path, NULL, "{\"normalPrice\":2222,\"vipPrice\":9999}", &r);
    ck_assert_msg(r.status == 200, "PATCH: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    snprintf(path, sizeof(path), "/reservations/%lld", res);
    rb_http(w.srv[1].port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(rb_int(&r, "normalPrice"), 1000);
    ck_assert_int_eq(rb_int(&r, "vipPrice"), 5000);
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
    json_t *s0 = json_array_get(json_object_get(r.json, "seats"), 0);
    json_t *s1 = json_array_get(json_object_get(r.json, "seats"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(s0, "type")), "VIP");
    ck_assert_int_eq(json_integer_value(json_object_get(s0, "price")), 5000);
    ck_assert_int_eq(json_integer_value(json_object_get(s1, "price")), 1000);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "paymentId")), pay);
    const char *created = json_string_value(json_object_get(r.json, "createdAt"));
    ck_assert_msg(created != NULL && strlen(created) == 20 && created[19] == 'Z', "createdAt %s",
                  created);
    th_http_resp_free(&r);
    /* a new booking pays the new prices */
    rb_book(&w, 1, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 9999);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 7);

    /* cancel: capacity and seats come back, the payment is cancelled; twice: same 200 */
    for (int i = 0; i < 2; i++) {
        rb_http(w.srv[i].port, "DELETE", path, NULL, NULL, &r);
        ck_assert_msg(r.status == 200, "DELETE: %d %s", r.status, r.raw);
        ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CANCELLED");
        ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
        th_http_resp_free(&r);
    }
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 9);
    snprintf(path, sizeof(path), "/performances/%lld/seats", perf);
    rb_http(w.srv[0].port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    size_t i;
    json_t *it;
    int available = 0;
    json_array_foreach(json_object_get(r.json, "seats"), i, it)
    {
        long long sid = json_integer_value(json_object_get(it, "id"));
        bool av = json_is_true(json_object_get(it, "available"));
        available += av;
        if (sid == seats[0] || sid == seats[5])
            ck_assert_msg(av, "seat %lld not available after the cancellation", sid);
    }
    ck_assert_int_eq(available, 9);
    th_http_resp_free(&r);
    char pp[96];
    snprintf(pp, sizeof(pp), "/payments/%s", pay);
    rb_http(w.pay.port, "GET", pp, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CANCELLED");
    th_http_resp_free(&r);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w,
                          "SELECT count(*) FROM payment_attempts WHERE payment_id = '%s' AND "
                          "status = 'CANCELLED'",
                          pay),
                     1);
    /* the seats can be booked again */
    rb_book(&w, 1, perf, 1, two, 2, NULL, &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 2222 + 9999);
    th_http_resp_free(&r);
    /* the user's list: newest first, filtered, paginated */
    rb_http(w.srv[0].port, "GET", "/users/1/reservations?limit=2", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 2);
    const char *cursor = json_string_value(json_object_get(r.json, "nextCursor"));
    ck_assert_ptr_nonnull(cursor);
    char p2[128];
    snprintf(p2, sizeof(p2), "/users/1/reservations?limit=2&cursor=%s", cursor);
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "GET", p2, NULL, NULL, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r.json, "items"), 0), "id")),
                     res);
    ck_assert(json_is_null(json_object_get(r.json, "nextCursor")));
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "GET", "/users/1/reservations?status=CANCELLED", NULL, NULL, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 1);
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "GET", "/users/1/reservations?status=NOPE", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 400);
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "GET", "/users/999/reservations", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 404);
    th_http_resp_free(&r);
    rb_http(w.srv[0].port, "DELETE", "/reservations/99999", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 404);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_cancellations_total"), 1);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}

START_TEST(test_prices_cancel)
{
    rb_prices_cancel("lockd");
}
END_TEST

START_TEST(test_prices_cancel_db)
{
    rb_prices_cancel("db");
}
END_TEST

/* ---------------------------------------------------------------- declines */

START_TEST(test_decline)
{
    rb_world w;
    long long seats[RB_SEATS];
    rb_start_infra(&w, "--decline-rate 0.3", false);
    for (size_t i = 0; i < 3; i++)
        rb_start_reserved(&w, i, "lockd", NULL);
    long long perf = rb_setup(&w, RB_SEATS, 0, 1000, 1000, seats, 5);
    /* 150 concurrent one-seat bookings of distinct seats: only the gateway says no */
    enum { N = 150 };
    th_http_call *calls = calloc(N, sizeof(*calls));
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    for (size_t i = 0; i < N; i++) {
        char *body = rb_booking_body((long long)(i % 5) + 1, &seats[i], 1);
        calls[i].port = w.srv[i % 3].port;
        calls[i].req = th_http_build("POST", path, NULL, body, &calls[i].len);
        free(body);
    }
    th_http_batch(calls, N, 120000);
    int n201 = 0, n402 = 0;
    rb_db_connect(&w);
    for (size_t i = 0; i < N; i++) {
        th_http_resp *r = &calls[i].resp;
        if (r->status == 201) {
            n201++;
        } else {
            ck_assert_msg(r->status == 402, "request %zu: %d %s", i, r->status, r->raw);
            ck_assert_str_eq(th_http_error_code(r), "PAYMENT_DECLINED");
            n402++;
            /* declined: the seat is still free */
            ck_assert_int_eq(rb_q(&w,
                                  "SELECT count(*) FROM reservation_seats WHERE seat_id = %lld "
                                  "AND confirmed",
                                  seats[i]),
                             0);
        }
        th_http_resp_free(r);
    }
    free(calls);
    fprintf(stderr, "decline: 201=%d 402=%d\n", n201, n402);
    ck_assert_int_gt(n402, 20);
    ck_assert_int_gt(n201, 60);
    ck_assert_int_eq(rb_remaining(&w, 2, perf), RB_SEATS - n201);
    /* approved payments at the gateway = confirmed reservations, id for id */
    int ap, ca, de;
    json_t *ids = json_array();
    rb_payments(&w, &ap, &ca, &de, ids);
    ck_assert_int_eq(ap, n201);
    ck_assert_int_eq(de, n402);
    size_t k;
    json_t *id;
    json_array_foreach(ids, k, id)
    {
        ck_assert_int_eq(rb_q(&w,
                              "SELECT count(*) FROM reservations WHERE payment_id = '%s' AND "
                              "status = 'CONFIRMED'",
                              json_string_value(id)),
                         1);
    }
    json_decref(ids);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'DECLINED'"),
                     n402);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CAPTURED'"),
                     n201);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- crash */

/* A reserved SIGKILLed after the charge was approved and before COMMIT: the reconciler
 * of another reserved cancels the orphaned payment. */
START_TEST(test_crash_reconcile)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    /* a booking may wait for its lock less than the reconciler waits (config check) */
    const char *rc = "reconcile: {interval_ms: 200, after_ms: 1000}\n"
                     "lock: {mode: lockd, lease_ms: 0, wait_ms: 900}";
    rb_start_reserved(&w, 0, "lockd", rc);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "60000", 1);
    rb_start_reserved(&w, 1, "lockd", rc);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(1, seats, 2);
    int fd = rb_start(w.srv[1].port, "POST", path, body);
    free(body);
    /* wait until the gateway approved the charge, then kill the server mid-transaction */
    int ap = 0, ca, de;
    for (uint64_t end = th_now_ms() + 10000; ap == 0 && th_now_ms() < end; th_sleep_ms(20))
        rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    th_sleep_ms(200);
    th_stop(w.srv[1].pid, false, 5000);
    w.srv[1].pid = 0;
    th_http_resp r;
    th_http_finish(fd, &r, 1000);
    ck_assert_int_eq(r.status, 0); /* no answer: it died */
    th_http_resp_free(&r);
    /* the other reserved's reconciler finds the orphan and cancels it */
    for (uint64_t end = th_now_ms() + 20000; th_now_ms() < end; th_sleep_ms(100)) {
        rb_payments(&w, &ap, &ca, &de, NULL);
        if (ap == 0)
            break;
    }
    ck_assert_int_eq(ap, 0);
    ck_assert_int_eq(ca, 1);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CANCELLED'"),
                     1);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 10);
    ck_assert_int_ge(rb_metric(&w, 0, "reserved_reconciler_cancelled_total"), 1);
    /* and the seats sell normally afterwards */
    rb_book(&w, 0, perf, 1, seats, 2, NULL, &r);
    ck_assert_int_eq(r.status, 201);
    th_http_resp_free(&r);
    th_sleep_ms(1500); /* a few reconciler runs: the confirmed booking's payment stays */
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- stale holder */

/* A holder frozen (SIGSTOP) past its lease, which never hears that it lost the lock
 * (test hook: LOST pushes ignored), wakes up and tries to commit: the fence update finds
 * the newer holder's fence and the booking is rolled back. */
START_TEST(test_stale_fence)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    const char *lease = "lock: {mode: lockd, lease_ms: 1000, wait_ms: 20000}";
    rb_start_reserved(&w, 0, "lockd", lease);
    setenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS", "3000", 1);
    setenv("RESERVED_TEST_IGNORE_LOST", "1", 1);
    rb_start_reserved(&w, 1, "lockd", lease);
    unsetenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    unsetenv("RESERVED_TEST_IGNORE_LOST");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(1, &seats[0], 1);
    int fd = rb_start(w.srv[1].port, "POST", path, body);
    free(body);
    /* freeze it once it holds the lock (its hook logs the pause right after the grant) */
    ck_assert_msg(rb_log_wait(w.srv[1].log, "paused 3000 ms after the lock", 10000),
                  "the booking never got the lock");
    th_signal(w.srv[1].pid, SIGSTOP);
    /* the other server waits for the lease to run out, then books with a newer fence */
    th_http_resp r;
    uint64_t t0 = th_now_ms();
    rb_book(&w, 0, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    th_http_resp_free(&r);
    fprintf(stderr, "stale_fence: second holder booked after %llu ms\n",
            (unsigned long long)(th_now_ms() - t0));
    th_sleep_ms(1500);
    th_signal(w.srv[1].pid, SIGCONT);
    th_http_finish(fd, &r, 15000);
    ck_assert_msg(r.status == 503, "stale holder got %d %s", r.status, r.raw);
    ck_assert_str_eq(th_http_error_code(&r), "UNAVAILABLE");
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_metric(&w, 1, "reserved_bookings_total{outcome=\"fence_rejected\"}"), 1);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'"), 1);
    ck_assert_int_eq(
        rb_q(&w, "SELECT count(*) FROM reservation_seats WHERE seat_id = %lld", seats[0]), 0);
    ck_assert_int_eq(rb_remaining(&w, 1, perf), 9);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* Starts reserved #i in lockd mode with the test hook that keeps every lock grant paused
 * pause_ms before the booking goes on (extra: config lines, or NULL). */
static void rb_start_pausing(rb_world *w, size_t i, unsigned pause_ms, const char *extra)
{
    char ms[16];
    snprintf(ms, sizeof ms, "%u", pause_ms);
    setenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS", ms, 1);
    rb_start_reserved(w, i, "lockd", extra);
    unsetenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
}

/* ---------------------------------------------------------------- queue prefetch */

/* While one booking holds the performance lock, the next in line of the process's queue
 * opens its connection and transaction (one, not every waiter); when that waiter then runs
 * out of lock.wait_ms it is rolled back and its connection goes back to the pool: nothing
 * stays "idle in transaction" and the next booking works. */
START_TEST(test_queue_prefetch)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    rb_start_pausing(&w, 0, 1500, "lock: {mode: lockd, lease_ms: 0, wait_ms: 500}");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 3);
    rb_db_connect(&w);
    /* this case's database only: the server is shared with the other cases */
    const char *idle_in_txn = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'booking'"
                              " AND state = 'idle in transaction'"
                              " AND datname = current_database()";
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    int fd[3];
    for (int i = 0; i < 3; i++) {
        char *body = rb_booking_body(i + 1, &seats[i], 1);
        fd[i] = rb_start(w.srv[0].port, "POST", path, body);
        free(body);
        if (i == 0)
            ck_assert_msg(rb_log_wait(w.srv[0].log, "paused 1500 ms after the lock", 10000),
                          "the first booking never got the lock");
    }
    th_sleep_ms(300);
    /* the holder opened its transaction while its ACQUIRE was out (it was the head then)
     * and is paused by the hook; the head waiter has one too; the third waits without */
    ck_assert_int_eq(rb_q(&w, "%s", idle_in_txn), 2);
    th_http_resp r;
    th_http_finish(fd[0], &r, 10000);
    ck_assert_msg(r.status == 201, "holder got %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    for (int i = 1; i < 3; i++) {
        th_http_finish(fd[i], &r, 10000);
        ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "BUSY") == 0,
                      "waiter %d got %d %s", i, r.status, r.raw);
        th_http_resp_free(&r);
    }
    th_sleep_ms(200);
    ck_assert_int_eq(rb_q(&w, "%s", idle_in_txn), 0);
    rb_book(&w, 0, perf, 2, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    th_http_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 8);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- lock lost */

/* The lock is lost while the booking waits to commit (lockd killed: the session drops
 * and the client reports LOST): the booking rolls back, its approved payment is
 * cancelled, the answer is 503; after lockd comes back bookings work again. */
START_TEST(test_lock_lost)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "1500", 1);
    rb_start_reserved(&w, 0, "lockd", NULL);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(1, seats, 2);
    int fd = rb_start(w.srv[0].port, "POST", path, body);
    free(body);
    int ap = 0, ca, de;
    for (uint64_t end = th_now_ms() + 10000; ap == 0 && th_now_ms() < end; th_sleep_ms(20))
        rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    th_stop(w.lockd.pid, false, 5000);
    w.lockd.pid = 0;
    th_http_resp r;
    th_http_finish(fd, &r, 15000);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    ck_assert_str_eq(th_http_error_code(&r), "UNAVAILABLE");
    th_http_resp_free(&r);
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 0);
    ck_assert_int_eq(ca, 1);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_bookings_total{outcome=\"lock_lost\"}"), 1);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CANCELLED'"),
                     1);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 10);
    /* lockd down: 503 at once; back: bookings heal */
    rb_book(&w, 0, perf, 1, seats, 1, NULL, &r);
    ck_assert_int_eq(r.status, 503);
    th_http_resp_free(&r);
    ck_assert(th_lockd_restart(&w.lockd));
    int status = 0;
    for (uint64_t end = th_now_ms() + 15000; status != 201 && th_now_ms() < end; th_sleep_ms(200)) {
        rb_book(&w, 0, perf, 1, seats, 1, NULL, &r);
        status = r.status;
        th_http_resp_free(&r);
    }
    ck_assert_int_eq(status, 201);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- payment unknown */

static void rb_fakepay_knobs(rb_world *w, const char *json)
{
    th_http_resp r;
    rb_http(w->pay.port, "POST", "/admin/config", NULL, json, &r);
    ck_assert_msg(r.status == 200, "admin/config: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
}

/* Charges whose outcome is unknown (gateway timeout, gateway 503): the booking answers
 * 503 and books nothing; the reconciler later cancels what the gateway did approve and
 * closes what it never had. */
START_TEST(test_payment_unknown)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    char extra[256];
    snprintf(extra, sizeof(extra),
             "payment: {url: \"http://127.0.0.1:%d\", timeout_ms: 500}\n"
             "reconcile: {interval_ms: 200, after_ms: 1000}\n"
             "lock: {mode: lockd, lease_ms: 0, wait_ms: 900}",
             w.pay.port);
    rb_start_reserved(&w, 0, "lockd", extra);
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    th_http_resp r;
    /* 1: the gateway answers after our timeout (it approves the charge nevertheless) */
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":0,\"latencyMs\":2000}");
    rb_book(&w, 0, perf, 1, &seats[0], 1, NULL, &r);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    ck_assert_str_eq(th_http_error_code(&r), "UNAVAILABLE");
    th_http_resp_free(&r);
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":0,\"latencyMs\":0}");
    /* 2: the gateway fails (503, nothing recorded there) */
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":1,\"latencyMs\":0}");
    rb_book(&w, 0, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    th_http_resp_free(&r);
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":0,\"latencyMs\":0}");
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 0);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 10);
    /* the reconciler settles both */
    int ap = -1, ca = 0, de;
    long long open = -1;
    for (uint64_t end = th_now_ms() + 20000; th_now_ms() < end; th_sleep_ms(100)) {
        rb_payments(&w, &ap, &ca, &de, NULL);
        open = rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status <> 'CANCELLED'");
        if (ap == 0 && ca == 1 && open == 0)
            break;
    }
    ck_assert_int_eq(ap, 0);
    ck_assert_int_eq(ca, 1);
    ck_assert_int_eq(open, 0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CANCELLED'"),
                     2);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_payments_total{outcome=\"failed\"}"), 2);
    /* and a normal booking goes through */
    rb_book(&w, 0, perf, 1, &seats[2], 1, NULL, &r);
    ck_assert_int_eq(r.status, 201);
    th_http_resp_free(&r);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- PostgreSQL restart */

/* PostgreSQL stopped (fast: sessions cut) and started again while 200 paid bookings are
 * in flight: every answer is 201 or 503, and once the reconciler has settled what the
 * cut left open, the approved payments at the gateway are exactly those of the
 * confirmed reservations, and capacity matches the seats sold. */
START_TEST(test_pg_restart)
{
    rb_world w;
    long long seats[RB_SEATS];
    rb_start_infra(&w, "--latency-ms 5", true); /* it restarts PostgreSQL */
    /* a booking may wait for its lock less than the reconciler waits (config check) */
    const char *rc = "reconcile: {interval_ms: 200, after_ms: 1000}\n"
                     "lock: {mode: lockd, lease_ms: 0, wait_ms: 900}";
    rb_start_reserved(&w, 0, "lockd", rc);
    rb_start_reserved(&w, 1, "lockd", rc);
    long long perf = rb_setup(&w, RB_SEATS, 0, 1000, 1000, seats, 1);
    char out[512];
    snprintf(out, sizeof(out), "%s/pg_restart.out", th_tmpdir());
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) { /* the clients: 200 one-seat bookings at once */
        th_http_call *calls = calloc(RB_SEATS, sizeof(*calls));
        char path[64];
        snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
        for (size_t i = 0; i < RB_SEATS; i++) {
            char *body = rb_booking_body(1, &seats[i], 1);
            calls[i].port = w.srv[i % 2].port;
            calls[i].req = th_http_build("POST", path, NULL, body, &calls[i].len);
            free(body);
        }
        for (size_t wave = 0; wave < 8; wave++) { /* before, during and after the outage */
            th_http_call *wc = calls + wave * (RB_SEATS / 8);
            th_http_batch(wc, RB_SEATS / 8, 60000);
            int ok = 0;
            for (size_t i = 0; i < RB_SEATS / 8; i++)
                ok += wc[i].resp.status == 201;
            fprintf(stderr, "pg_restart: wave %zu: %d of %d booked\n", wave, ok, RB_SEATS / 8);
            th_sleep_ms(600);
        }
        FILE *f = fopen(out, "w");
        for (size_t i = 0; f != NULL && i < RB_SEATS; i++) {
            fprintf(f, "%d %lld\n", calls[i].resp.status, rb_int(&calls[i].resp, "id"));
            th_http_resp_free(&calls[i].resp);
        }
        if (f != NULL)
            fclose(f);
        _exit(0);
    }
    th_sleep_ms(400);
    th_pg_stop(&w.pg, true);
    th_sleep_ms(500);
    ck_assert_msg(th_pg_restart(&w.pg), "PostgreSQL did not restart");
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    int n201 = 0, n503 = 0, status;
    long long id;
    rb_db_connect(&w);
    while (fscanf(f, "%d %lld", &status, &id) == 2) {
        ck_assert_msg(status == 201 || status == 503, "answer %d", status);
        if (status == 201) {
            n201++;
            ck_assert_int_eq(rb_q(&w,
                                  "SELECT count(*) FROM reservations WHERE id = %lld AND "
                                  "status = 'CONFIRMED'",
                                  id),
                             1);
        } else {
            n503++;
        }
    }
    fclose(f);
    ck_assert_int_eq(n201 + n503, RB_SEATS);
    fprintf(stderr, "pg_restart: 201=%d 503=%d\n", n201, n503);
    ck_assert_int_gt(n503, 0);            /* the restart did hit bookings */
    ck_assert_int_gt(n201, RB_SEATS / 8); /* and the pool healed: later waves booked */
    /* settle: no open attempt left, approved payments = confirmed reservations */
    long long open = -1, confirmed = -1;
    int ap = -1, ca, de;
    for (uint64_t end = th_now_ms() + 30000; th_now_ms() < end; th_sleep_ms(200)) {
        open = rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status IN "
                        "('PENDING', 'APPROVED', 'CANCELLING')");
        confirmed = rb_q(&w, "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'");
        rb_payments(&w, &ap, &ca, &de, NULL);
        if (open == 0 && ap == confirmed)
            break;
    }
    ck_assert_int_eq(open, 0);
    ck_assert_int_eq(ap, confirmed);
    ck_assert_int_ge(confirmed, n201);
    json_t *ids = json_array();
    rb_payments(&w, &ap, &ca, &de, ids);
    size_t k;
    json_t *pid;
    json_array_foreach(ids, k, pid)
    {
        ck_assert_int_eq(rb_q(&w,
                              "SELECT count(*) FROM reservations WHERE payment_id = '%s' AND "
                              "status = 'CONFIRMED'",
                              json_string_value(pid)),
                         1);
    }
    json_decref(ids);
    long long sold = rb_q(&w, "SELECT count(*) FROM reservation_seats WHERE confirmed");
    ck_assert_int_eq(sold, confirmed);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), RB_SEATS - sold);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- idempotency */

START_TEST(test_idempotent)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    rb_start_reserved(&w, 0, "lockd", NULL);
    rb_start_reserved(&w, 1, "lockd", NULL);
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 2);
    th_http_resp a, b;
    rb_book(&w, 0, perf, 1, seats, 2, "key-1", &a);
    ck_assert_int_eq(a.status, 201);
    rb_book(&w, 1, perf, 1, seats, 2, "key-1", &b);
    ck_assert_int_eq(b.status, 201);
    ck_assert_int_eq(rb_int(&a, "id"), rb_int(&b, "id"));
    ck_assert_int_eq(rb_int(&a, "totalAmount"), rb_int(&b, "totalAmount"));
    ck_assert_str_eq(json_string_value(json_object_get(a.json, "paymentId")),
                     json_string_value(json_object_get(b.json, "paymentId")));
    th_http_resp_free(&a);
    th_http_resp_free(&b);
    /* same key, other body */
    rb_book(&w, 0, perf, 1, &seats[2], 1, "key-1", &a);
    ck_assert_int_eq(a.status, 422);
    ck_assert_str_eq(th_http_error_code(&a), "IDEMPOTENCY_MISMATCH");
    th_http_resp_free(&a);
    /* the same key sent to both servers at once books once */
    th_http_call calls[2] = {{.port = w.srv[0].port}, {.port = w.srv[1].port}};
    char *body = rb_booking_body(2, &seats[4], 2);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    for (int i = 0; i < 2; i++)
        calls[i].req = th_http_build("POST", path, "key-2", body, &calls[i].len);
    free(body);
    th_http_batch(calls, 2, RB_IO_MS);
    ck_assert_int_eq(calls[0].resp.status, 201);
    ck_assert_int_eq(calls[1].resp.status, 201);
    ck_assert_int_eq(rb_int(&calls[0].resp, "id"), rb_int(&calls[1].resp, "id"));
    th_http_resp_free(&calls[0].resp);
    th_http_resp_free(&calls[1].resp);
    /* a final failure is replayed too: seats taken under a new key, twice */
    rb_book(&w, 0, perf, 2, &seats[4], 1, "key-3", &a);
    ck_assert_int_eq(a.status, 409);
    rb_book(&w, 1, perf, 2, &seats[4], 1, "key-3", &b);
    ck_assert_int_eq(b.status, 409);
    ck_assert_str_eq(th_http_error_code(&b), "SEAT_TAKEN");
    ck_assert(json_equal(a.json, b.json));
    th_http_resp_free(&a);
    th_http_resp_free(&b);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 2);
    int ap, ca, de;
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 2);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 6);
    ck_assert_int_ge(rb_metric(&w, 1, "reserved_booking_idempotent_replays_total") +
                         rb_metric(&w, 0, "reserved_booking_idempotent_replays_total"),
                     3);
    /* validation of the booking body */
    static const struct {
        const char *body;
        int status;
    } bad[] = {
        {"{\"userId\":1}", 400},
        {"{\"userId\":1,\"seatIds\":[]}", 400},
        {"{\"userId\":1,\"seatIds\":[1,1]}", 400},
        {"{\"userId\":1,\"seatIds\":[0]}", 400},
        {"{\"userId\":1,\"seatIds\":[\"1\"]}", 400},
        {"{\"userId\":1,\"seatIds\":[1,2,3,4,5,6,7,8,9,10,11]}", 400},
        {"{\"userId\":-1,\"seatIds\":[1]}", 400},
        {"{\"userId\":\"1\",\"seatIds\":[1]}", 400},
        {"{\"userId\":true,\"seatIds\":[1]}", 400}, /* without userId: books for the caller */
        {"[1]", 400},
        {"{\"userId\":999,\"seatIds\":[1]}", 404},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rb_http(w.srv[0].port, "POST", path, NULL, bad[i].body, &a);
        ck_assert_msg(a.status == bad[i].status, "%s: %d %s", bad[i].body, a.status, a.raw);
        ck_assert_str_eq(th_http_error_code(&a),
                         bad[i].status == 400 ? "BAD_REQUEST" : "NOT_FOUND");
        th_http_resp_free(&a);
    }
    rb_http(w.srv[0].port, "POST", "/performances/987654/reservations", NULL,
            "{\"userId\":1,\"seatIds\":[1]}", &a);
    ck_assert_int_eq(a.status, 404);
    th_http_resp_free(&a);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- group booking */

/* The batch's metrics of reserved #i: batches run, bookings in them. */
static void rb_batches(rb_world *w, size_t i, long long *batches, long long *bookings)
{
    *batches = rb_metric(w, i, "reserved_batches_total");
    *bookings = rb_metric(w, i, "reserved_batch_bookings_total");
}

/* One booking of one seat sent without waiting (th_http_finish reads it). */
static int rb_start_one(rb_world *w, size_t server, long long perf, long long user, long long seat,
                        const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(user, &seat, 1);
    int fd = th_http_send(w->srv[server].port, "POST", path, key, body, strlen(body));
    free(body);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* The booking that takes the lock first: one seat on reserved #0 (started with
 * rb_start_pausing(pause_ms)); returns once it holds the lock and is paused there. */
static int rb_first_paused(rb_world *w, long long perf, long long seat, unsigned pause_ms)
{
    char line[64];
    int fd = rb_start_one(w, 0, perf, 1, seat, NULL);
    snprintf(line, sizeof line, "paused %u ms after the lock", pause_ms);
    ck_assert_msg(rb_log_wait(w->srv[0].log, line, 10000), "the first booking never got the lock");
    return fd;
}

/* A batch of 7 bookings in one transaction, among them one whose payment is declined,
 * one whose seat was taken (by the booking before the batch) and one that breaks a
 * database guard (a CHECK constraint this test adds, which rs_book does not know): only
 * those three fail, the four others commit, the approved payments are exactly the
 * confirmed reservations, and the declined booking's seat is still free. The batch
 * forms behind a first booking paused after its lock grant (test hook); fakepay's seed 5
 * at decline rate 0.2 approves payment 1 and declines payment 2 of 2..6 (the batch's
 * five charges, in any order). */
START_TEST(test_batch_mixed)
{
    rb_world w;
    long long seats[20];
    rb_start_infra(&w, "--seed 5 --decline-rate 0.2", false);
    rb_start_pausing(&w, 0, 1000, NULL);
    long long perf = rb_setup(&w, 20, 0, 1000, 1000, seats, 3);
    rb_db_connect(&w);
    long long guard_user = rb_q(&w, "SELECT max(id) FROM users");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "ALTER TABLE reservations ADD CONSTRAINT batch_test_guard CHECK (user_id <> %lld)",
             guard_user);
    PQclear(PQexec(w.db, sql));
    /* the first booking takes seat 0 and holds the lock for a second */
    int first = rb_first_paused(&w, perf, seats[0], 1000);
    enum { GOOD = 5, N = GOOD + 2 };
    int fd[N];
    for (int i = 0; i < GOOD; i++) /* seats 1..5; one of them keyed */
        fd[i] = rb_start_one(&w, 0, perf, 1 + i % 2, seats[1 + i], i == 0 ? "batch-key-1" : NULL);
    fd[GOOD] = rb_start_one(&w, 0, perf, 1, seats[0], NULL);               /* SEAT_TAKEN */
    fd[GOOD + 1] = rb_start_one(&w, 0, perf, guard_user, seats[10], NULL); /* the guard */
    th_http_resp r;
    th_http_finish(first, &r, 15000);
    ck_assert_msg(r.status == 201, "first: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    int n201 = 0, n402 = 0;
    long long declined_seat = 0, keyed_id = 0;
    for (int i = 0; i < GOOD; i++) {
        th_http_finish(fd[i], &r, 15000);
        if (r.status == 201) {
            n201++;
            if (i == 0)
                keyed_id = rb_int(&r, "id");
        } else {
            ck_assert_msg(r.status == 402, "good booking %d: %d %s", i, r.status, r.raw);
            ck_assert_str_eq(th_http_error_code(&r), "PAYMENT_DECLINED");
            n402++;
            declined_seat = seats[1 + i];
        }
        th_http_resp_free(&r);
    }
    th_http_finish(fd[GOOD], &r, 15000);
    ck_assert_msg(r.status == 409 && strcmp(th_http_error_code(&r), "SEAT_TAKEN") == 0,
                  "taken: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    th_http_finish(fd[GOOD + 1], &r, 15000);
    ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "UNAVAILABLE") == 0,
                  "guard: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    fprintf(stderr, "batch_mixed: 201=%d 402=%d\n", n201, n402);
    ck_assert_int_eq(n402, 1);
    ck_assert_int_eq(n201, GOOD - 1);
    /* they were one batch: the first booking's, then one of 7 */
    long long batches, booked;
    rb_batches(&w, 0, &batches, &booked);
    ck_assert_int_eq(batches, 2);
    ck_assert_int_eq(booked, 1 + N);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_batch_size_bucket{le=\"4\"}"), 1);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_batch_size_bucket{le=\"8\"}"), 2);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_guard_firings_total{guard=\"other\"}"), 1);
    /* approved = confirmed, id for id; the declined seat is free; capacity adds up */
    int ap, ca, de;
    json_t *ids = json_array();
    rb_payments(&w, &ap, &ca, &de, ids);
    ck_assert_int_eq(ap, 1 + n201);
    ck_assert_int_eq(de, 1);
    size_t k;
    json_t *id;
    json_array_foreach(ids, k, id)
    {
        ck_assert_int_eq(rb_q(&w,
                              "SELECT count(*) FROM reservations WHERE payment_id = '%s' AND "
                              "status = 'CONFIRMED'",
                              json_string_value(id)),
                         1);
    }
    json_decref(ids);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 1 + n201);
    ck_assert_int_eq(rb_q(&w,
                          "SELECT count(*) FROM reservation_seats WHERE seat_id = %lld "
                          "AND confirmed",
                          declined_seat),
                     0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'DECLINED'"),
                     1);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CAPTURED'"),
                     1 + n201);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts"), 2 + n201);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 20 - 1 - n201);
    /* the keyed booking's record committed with the batch: a replay gives it back */
    if (keyed_id > 0) {
        rb_book(&w, 0, perf, 1, &seats[1], 1, "batch-key-1", &r);
        ck_assert_int_eq(r.status, 201);
        ck_assert_int_eq(rb_int(&r, "id"), keyed_id);
        th_http_resp_free(&r);
    }
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* Two bookings of one batch ask for the same seat and the first one's payment is declined:
 * the second was refused by a booking that never commits, so it is told 503 BUSY (retry,
 * with Retry-After), not 409 SEAT_TAKEN, and the seat is still free after the batch. (Every
 * payment is declined here; the batch forms behind a first booking paused after its lock.) */
START_TEST(test_batch_displaced)
{
    rb_world w;
    long long seats[4];
    rb_start_infra(&w, "--seed 5 --decline-rate 1", false);
    rb_start_pausing(&w, 0, 1000, NULL);
    long long perf = rb_setup(&w, 4, 0, 1000, 1000, seats, 3);
    rb_db_connect(&w);
    int first = rb_first_paused(&w, perf, seats[0], 1000);
    int fd[2] = {rb_start_one(&w, 0, perf, 1, seats[1], NULL),
                 rb_start_one(&w, 0, perf, 2, seats[1], NULL)};
    th_http_resp r;
    th_http_finish(first, &r, 15000);
    ck_assert_msg(r.status == 402, "first: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    int n402 = 0, nbusy = 0;
    for (int i = 0; i < 2; i++) {
        th_http_finish(fd[i], &r, 15000);
        if (r.status == 402) {
            n402++;
        } else {
            ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "BUSY") == 0 &&
                              strstr(r.raw, "Retry-After") != NULL,
                          "displaced booking %d: %d %s", i, r.status, r.raw);
            nbusy++;
        }
        th_http_resp_free(&r);
    }
    ck_assert_int_eq(n402, 1);
    ck_assert_int_eq(nbusy, 1);
    long long batches, booked;
    rb_batches(&w, 0, &batches, &booked);
    ck_assert_int_eq(batches, 2); /* the first booking's, then one of 2 */
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_bookings_total{outcome=\"seat_taken\"}"), 0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservation_seats WHERE confirmed"), 0);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 4);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* While booking `first` (seat 0) holds the lock, n one-seat bookings (seats 1..n) go to
 * reserved #server and form a batch there; returns once the first answered 201 and the
 * batch, every charge approved, waits before its COMMIT (the test hook's log line
 * `paused`). */
static void rb_batch_behind(rb_world *w, int first, size_t server, long long perf,
                            const long long *seats, int *fd, int n, const char *paused)
{
    for (int i = 0; i < n; i++)
        fd[i] = rb_start_one(w, server, perf, 1, seats[1 + i], NULL);
    th_http_resp r;
    th_http_finish(first, &r, 15000);
    ck_assert_msg(r.status == 201, "first: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    ck_assert_msg(rb_log_wait(w->srv[server].log, paused, 10000),
                  "the batch never reached its COMMIT (%s)", paused);
    int ap = 0, ca, de;
    rb_payments(w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1 + n);
}

/* The lock is lost (lockd killed: LOST) while a batch of 5 paid bookings waits to
 * commit: nothing of the batch commits, every one of its payments is cancelled, every
 * booking answers 503; the booking before the batch stays. */
START_TEST(test_batch_lock_lost)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "1500", 1);
    rb_start_reserved(&w, 0, "lockd", NULL);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    int first = rb_start_one(&w, 0, perf, 1, seats[0], NULL);
    ck_assert_msg(rb_log_wait(w.srv[0].log, "paused 1500 ms before COMMIT (a batch of 1)", 10000),
                  "the first booking never reached its COMMIT");
    enum { N = 5 };
    int fd[N];
    rb_batch_behind(&w, first, 0, perf, seats, fd, N,
                    "paused 1500 ms before COMMIT (a batch of 5)");
    /* the batch's charges approved, it waits before its COMMIT: lockd goes */
    th_http_resp r;
    int ap = 0, ca, de;
    th_stop(w.lockd.pid, false, 5000);
    w.lockd.pid = 0;
    for (int i = 0; i < N; i++) {
        th_http_finish(fd[i], &r, 15000);
        ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "UNAVAILABLE") == 0,
                      "booking %d: %d %s", i, r.status, r.raw);
        th_http_resp_free(&r);
    }
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    ck_assert_int_eq(ca, N);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_bookings_total{outcome=\"lock_lost\"}"), N);
    ck_assert_int_eq(rb_metric(&w, 0, "reserved_batch_bookings_total"), 1 + N);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 1);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CANCELLED'"),
                     N);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 9);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* A reserved SIGKILLed after the charges of its batch of 4 were approved and before the
 * batch's COMMIT: the other reserved's reconciler cancels all four payments, nothing is
 * booked. The batch forms on server 1 while server 0 holds the performance lock
 * (paused after its grant: test hook). */
START_TEST(test_batch_crash_reconcile)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    /* a booking may wait for its lock less than the reconciler waits (config check) */
    const char *rc = "reconcile: {interval_ms: 200, after_ms: 3000}\n"
                     "lock: {mode: lockd, lease_ms: 0, wait_ms: 2500}";
    rb_start_pausing(&w, 0, 1000, rc);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "60000", 1);
    rb_start_reserved(&w, 1, "lockd", rc);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    int first = rb_first_paused(&w, perf, seats[0], 1000);
    enum { N = 4 };
    int fd[N];
    rb_batch_behind(&w, first, 1, perf, seats, fd, N,
                    "paused 60000 ms before COMMIT (a batch of 4)");
    th_http_resp r;
    int ap = 0, ca, de;
    th_stop(w.srv[1].pid, false, 5000);
    w.srv[1].pid = 0;
    for (int i = 0; i < N; i++) {
        th_http_finish(fd[i], &r, 1000);
        ck_assert_int_eq(r.status, 0); /* no answer: it died */
        th_http_resp_free(&r);
    }
    for (uint64_t end = th_now_ms() + 20000; th_now_ms() < end; th_sleep_ms(100)) {
        rb_payments(&w, &ap, &ca, &de, NULL);
        if (ap == 1 && ca == N)
            break;
    }
    ck_assert_int_eq(ap, 1);
    ck_assert_int_eq(ca, N);
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 1);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts WHERE status = 'CANCELLED'"),
                     N);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 9);
    ck_assert_int_ge(rb_metric(&w, 0, "reserved_reconciler_cancelled_total"), N);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* A refusal meant for one waiter refuses the batch's leader, not the batch: BUSY (its
 * lock.wait_ms of 1 s spent behind a holder paused 2 s after its grant) refuses the
 * booking that started the batch and has waited 2 s; the one that joined 1.5 s later
 * has waited 0.5 s, waits on as the batch's new leader and books. */
START_TEST(test_batch_refused_leader)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    rb_start_pausing(&w, 0, 2000, "lock: {mode: lockd, lease_ms: 0, wait_ms: 1000}");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    int first = rb_first_paused(&w, perf, seats[0], 2000);
    int leader = rb_start_one(&w, 0, perf, 1, seats[1], NULL);
    th_sleep_ms(1500);
    int joined = rb_start_one(&w, 0, perf, 1, seats[2], NULL);
    th_http_resp r;
    th_http_finish(first, &r, 15000);
    ck_assert_msg(r.status == 201, "first: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    th_http_finish(leader, &r, 15000);
    ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "BUSY") == 0, "leader: %d %s",
                  r.status, r.raw);
    th_http_resp_free(&r);
    th_http_finish(joined, &r, 15000);
    ck_assert_msg(r.status == 201, "joined: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    /* one batch ran for the two of them and booked one */
    long long batches, booked;
    rb_batches(&w, 0, &batches, &booked);
    ck_assert_int_eq(batches, 2);
    ck_assert_int_eq(booked, 2);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 8);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- unknown performance */

/* A value of a metric line "name value" of lockd's metrics port (it must be there). */
static long long rb_lockd_metric(rb_world *w, const char *series)
{
    long long v = rb_metric_port(w->lockd.metrics_port, series);
    ck_assert_msg(v >= 0, "lockd has no %s", series);
    return v;
}

/* A booking for a performance that does not exist is 404 NOT_FOUND before anything is
 * written or locked: no payment attempt, no ACQUIRE at lockd, no payment (with and
 * without an Idempotency-Key; the key's 404 is replayed). Before, each recorded a payment
 * attempt and held Performance:<id> at lockd before rs_book said 404. A booking of the
 * real performance afterwards shows the counters move. */
START_TEST(test_unknown_performance_no_side_effects)
{
    rb_world w;
    long long seats[4];
    rb_start_infra(&w, NULL, false);
    rb_start_reserved(&w, 0, "lockd", NULL);
    long long perf = rb_setup(&w, 4, 0, 1000, 1000, seats, 1);
    long long acquires = rb_lockd_metric(&w, "lockd_acquires_total");
    long long grants = rb_lockd_metric(&w, "lockd_grants_total");
    th_http_resp r;
    const char *keys[] = {NULL, "unknown-1", "unknown-1"};
    for (size_t i = 0; i < 3; i++) {
        rb_book(&w, 0, perf + 1000, 1, seats, 1, keys[i], &r);
        ck_assert_msg(r.status == 404, "booking %zu: %d %s", i, r.status, r.raw);
        ck_assert_str_eq(th_http_error_code(&r), "NOT_FOUND");
        th_http_resp_free(&r);
    }
    rb_db_connect(&w);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts"), 0);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM reservations"), 0);
    ck_assert_int_eq(rb_lockd_metric(&w, "lockd_acquires_total"), acquires);
    ck_assert_int_eq(rb_lockd_metric(&w, "lockd_grants_total"), grants);
    int ap, ca, de;
    rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap + ca + de, 0);
    /* the real one books, and lockd saw its lock */
    rb_book(&w, 0, perf, 1, seats, 1, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    th_http_resp_free(&r);
    ck_assert_int_gt(rb_lockd_metric(&w, "lockd_grants_total"), grants);
    ck_assert_int_eq(rb_q(&w, "SELECT count(*) FROM payment_attempts"), 1);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- main */

/* Production's rule, without the test hook the other group booking tests set: a booking
 * that finds its performance idle in its process goes alone, unbatched (a batch of one
 * costs PostgreSQL more than the unbatched statement); the bookings that come while it
 * holds the lock form ONE batch behind it. After that batch the performance counts as
 * contended for RB_CONTENDED_MS (1 s, rs_batch.c): a booking that finds it idle then
 * leads a batch (of one here) instead of taking a turn of the lock alone
 * (contended_within_window true); once that second has passed, the next booking goes
 * alone again. */
static void rb_alone_then_batch(bool contended_within_window)
{
    unsetenv("RESERVED_TEST_BATCH_WHEN_IDLE");
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL, false);
    rb_start_pausing(&w, 0, 1000, NULL);
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    int first = rb_first_paused(&w, perf, seats[0], 1000);
    enum { N = 3 };
    int fd[N];
    for (int i = 0; i < N; i++)
        fd[i] = rb_start_one(&w, 0, perf, 1, seats[1 + i], NULL);
    th_http_resp r;
    th_http_finish(first, &r, 15000);
    ck_assert_msg(r.status == 201, "first: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    for (int i = 0; i < N; i++) {
        th_http_finish(fd[i], &r, 15000);
        ck_assert_msg(r.status == 201, "booking %d: %d %s", i, r.status, r.raw);
        th_http_resp_free(&r);
    }
    long long batches, booked;
    rb_batches(&w, 0, &batches, &booked);
    ck_assert_int_eq(batches, 1); /* the three behind the first; the first went alone */
    ck_assert_int_eq(booked, N);
    if (!contended_within_window)
        usleep(1300 * 1000); /* past RB_CONTENDED_MS since that batch */
    int last = rb_start_one(&w, 0, perf, 1, seats[1 + N], NULL);
    th_http_finish(last, &r, 15000);
    ck_assert_msg(r.status == 201, "last: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    rb_batches(&w, 0, &batches, &booked);
    if (contended_within_window) {
        ck_assert_int_eq(batches, 2); /* idle here, contended lately: a batch of one */
        ck_assert_int_eq(booked, N + 1);
    } else {
        ck_assert_int_eq(batches, 1); /* idle, and not contended lately: alone */
        ck_assert_int_eq(booked, N);
    }
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 10 - N - 2);
    rb_stop_reserved_clean(&w);
}

START_TEST(test_batch_alone_when_idle)
{
    rb_alone_then_batch(false);
}
END_TEST

START_TEST(test_batch_led_when_contended)
{
    rb_alone_then_batch(true);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"storm", test_storm},
        {"storm_db", test_storm_db},
        {"storm_unbatched", test_storm_unbatched},
        {"prices_cancel", test_prices_cancel},
        {"prices_cancel_db", test_prices_cancel_db},
        {"decline", test_decline},
        {"crash_reconcile", test_crash_reconcile},
        {"stale_fence", test_stale_fence},
        {"queue_prefetch", test_queue_prefetch},
        {"idempotent", test_idempotent},
        {"lock_lost", test_lock_lost},
        {"payment_unknown", test_payment_unknown},
        {"pg_restart", test_pg_restart},
        {"no_payment", test_no_payment},
        {"no_payment_db", test_no_payment_db},
        {"batch_mixed", test_batch_mixed},
        {"batch_displaced", test_batch_displaced},
        {"batch_lock_lost", test_batch_lock_lost},
        {"batch_crash_reconcile", test_batch_crash_reconcile},
        {"batch_refused_leader", test_batch_refused_leader},
        {"unknown_performance_no_side_effects", test_unknown_performance_no_side_effects},
        {"batch_alone_when_idle", test_batch_alone_when_idle},
        {"batch_led_when_contended", test_batch_led_when_contended},
    };
    /* the group booking tests form batches of known sizes behind a first booking in a
     * batch of its own: rs_testhook.h (batch_alone_when_idle and batch_led_when_contended run
     * without it) */
    setenv("RESERVED_TEST_BATCH_WHEN_IDLE", "1", 1);
    return th_check_main("reserved_booking", cases, sizeof(cases) / sizeof(cases[0]), 230, argc,
                         argv);
}
