/*
 * Booking tests (issue 3 §6) against the real system: PostgreSQL (th_pg_start), 3 redis,
 * lockd, fakepay and 1-3 reserved processes, driven over HTTP. Each case names the
 * claim it checks; the storm drives 600 requests at once through poll()-multiplexed
 * sockets. Database facts are read with libpq (blocking: this is the test, not a daemon).
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

#define RB_MAX_RESERVED 3
#define RB_IO_MS        30000
#define RB_SEATS        200
#define RB_STORM        600

/* ---------------------------------------------------------------- HTTP client */

typedef struct rb_resp {
    int status;
    char *raw;
    json_t *json;
} rb_resp;

static void rb_resp_free(rb_resp *r)
{
    free(r->raw);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static char *rb_build(const char *method, const char *path, const char *key, const char *body,
                      size_t *len)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    size_t cap = blen + strlen(path) + 512;
    char *req = malloc(cap);
    ck_assert_ptr_nonnull(req);
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, key != NULL ? "Idempotency-Key: " : "", key != NULL ? key : "",
                     key != NULL ? "\r\n" : "", blen);
    memcpy(req + n, body != NULL ? body : "", blen);
    *len = (size_t)n + blen;
    return req;
}

static void rb_parse(rb_resp *r, char *raw)
{
    r->raw = raw;
    r->status = 0;
    if (raw == NULL || sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
        return;
    char *body = strstr(raw, "\r\n\r\n");
    if (body != NULL)
        r->json = json_loads(body + 4, 0, NULL);
}

static int rb_connect(int port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One in-flight request of a batch. */
typedef struct rb_call {
    int port;
    char *req;
    size_t len, sent;
    char *buf;
    size_t blen, bcap;
    int fd;
    bool done;
    rb_resp resp;
} rb_call;

/* Runs every call at once (non-blocking sockets, one poll loop) until all answered or
 * timeout_ms passed. */
static void rb_run_batch(rb_call *calls, size_t n, int timeout_ms)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    ck_assert_ptr_nonnull(pfd);
    for (size_t i = 0; i < n; i++) {
        calls[i].fd = rb_connect(calls[i].port, true);
        calls[i].done = calls[i].fd < 0;
    }
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++) {
            pfd[i].fd = calls[i].done ? -1 : calls[i].fd;
            pfd[i].events = calls[i].sent < calls[i].len ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
            left += !calls[i].done;
        }
        if (left == 0 || th_now_ms() >= end)
            break;
        if (poll(pfd, n, 100) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++) {
            rb_call *c = &calls[i];
            if (c->done || pfd[i].revents == 0)
                continue;
            if (c->sent < c->len) {
                ssize_t w = send(c->fd, c->req + c->sent, c->len - c->sent, MSG_NOSIGNAL);
                if (w > 0)
                    c->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    c->done = true;
                continue;
            }
            if (c->bcap - c->blen < 4096) {
                c->bcap = c->bcap * 2 + 8192;
                c->buf = realloc(c->buf, c->bcap);
                ck_assert_ptr_nonnull(c->buf);
            }
            ssize_t r = recv(c->fd, c->buf + c->blen, c->bcap - c->blen - 1, 0);
            if (r > 0) {
                c->blen += (size_t)r;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                c->done = true;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        rb_call *c = &calls[i];
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        if (c->buf != NULL)
            c->buf[c->blen] = '\0';
        rb_parse(&c->resp, c->buf);
        c->buf = NULL;
        free(c->req);
        c->req = NULL;
    }
    free(pfd);
}

static void rb_http(int port, const char *method, const char *path, const char *key,
                    const char *body, rb_resp *out)
{
    rb_call c = {.port = port};
    c.req = rb_build(method, path, key, body, &c.len);
    rb_run_batch(&c, 1, RB_IO_MS);
    *out = c.resp;
}

/* Sends a request and returns the socket without waiting (rb_finish reads the answer). */
static int rb_start(int port, const char *method, const char *path, const char *body)
{
    size_t len;
    char *req = rb_build(method, path, NULL, body, &len);
    int fd = rb_connect(port, false);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    free(req);
    return fd;
}

static void rb_finish(int fd, rb_resp *out, int timeout_ms)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    while (th_now_ms() < end && len < cap - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    memset(out, 0, sizeof(*out));
    rb_parse(out, buf);
}

static json_int_t rb_int(const rb_resp *r, const char *field)
{
    return json_integer_value(json_object_get(r->json, field));
}

static const char *rb_err(const rb_resp *r)
{
    const char *c = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return c != NULL ? c : "";
}

/* ---------------------------------------------------------------- the system */

typedef struct rb_world {
    th_pg pg;
    th_redis redis[3];
    th_lockd lockd;
    pid_t fakepay;
    int fakepay_port;
    pid_t reserved[RB_MAX_RESERVED];
    int port[RB_MAX_RESERVED];
    char log[RB_MAX_RESERVED][512];
    size_t n;
    PGconn *db;
} rb_world;

static void rb_dump(const char *path)
{
    char cmd[700];
    fprintf(stderr, "---- tail of %s ----\n", path);
    fflush(stderr);
    snprintf(cmd, sizeof(cmd), "tail -n 40 '%s' 1>&2", path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

static void rb_start_infra(rb_world *w, const char *fakepay_extra)
{
    memset(w, 0, sizeof(*w));
    ck_assert_msg(th_pg_start(&w->pg), "PostgreSQL did not start");
    for (int i = 0; i < 3; i++)
        ck_assert(th_redis_start(&w->redis[i]));
    ck_assert(th_lockd_start(&w->lockd, w->redis, 3, NULL));
    w->fakepay_port = th_free_port();
    char listen[64], log[512];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", w->fakepay_port);
    snprintf(log, sizeof(log), "%s/fakepay.log", th_tmpdir());
    char *argv[16] = {(char *)th_bin("fakepay"), "--listen", listen, "--seed", "1", NULL};
    size_t n = 5;
    char extra[256];
    if (fakepay_extra != NULL) {
        snprintf(extra, sizeof(extra), "%s", fakepay_extra);
        for (char *tok = strtok(extra, " "); tok != NULL && n < 15; tok = strtok(NULL, " "))
            argv[n++] = tok;
        argv[n] = NULL;
    }
    w->fakepay = th_spawn(argv, log);
    ck_assert_msg(th_wait_port(w->fakepay_port, 5000), "fakepay did not start");
}

/* Starts reserved #i with the standard config plus extra YAML lines. */
static void rb_start_reserved(rb_world *w, size_t i, const char *lock_mode, const char *extra)
{
    char cfg[512];
    w->port[i] = th_free_port();
    snprintf(cfg, sizeof(cfg), "%s/reserved-%zu.yaml", th_tmpdir(), i);
    snprintf(w->log[i], sizeof(w->log[i]), "%s/reserved-%zu.log", th_tmpdir(), i);
    FILE *f = fopen(cfg, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "listen: 127.0.0.1:%d\n"
            "database: \"%s\"\n"
            "db_pool_size: 8\n"
            "lockd: [127.0.0.1:%d]\n"
            "limits: {max_body_bytes: 65536, max_seats_per_reservation: 10}\n"
            "log: {level: info}\n"
            "%s\n",
            w->port[i], w->pg.conninfo, w->lockd.port, extra != NULL ? extra : "");
    if (extra == NULL || strstr(extra, "payment:") == NULL)
        fprintf(f, "payment: {url: \"http://127.0.0.1:%d\", timeout_ms: 2000}\n", w->fakepay_port);
    if (extra == NULL || strstr(extra, "lock:") == NULL)
        fprintf(f, "lock: {mode: %s, lease_ms: 0, wait_ms: 20000}\n", lock_mode);
    fclose(f);
    char *argv[] = {(char *)th_bin("reserved"), "--config", cfg, NULL};
    w->reserved[i] = th_spawn(argv, w->log[i]);
    if (!th_wait_port(w->port[i], 20000)) {
        rb_dump(w->log[i]);
        ck_abort_msg("reserved %zu did not start", i);
    }
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
        if (w->reserved[i] <= 0)
            continue;
        int st = th_stop(w->reserved[i], true, 15000);
        if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
            rb_dump(w->log[i]);
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "reserved %zu exit status 0x%x", i, st);
        w->reserved[i] = 0;
    }
}

/* A value of a metric line "name{labels} value" (exact name+labels) from reserved #i. */
static long long rb_metric(rb_world *w, size_t i, const char *series)
{
    rb_resp r;
    rb_http(w->port[i], "GET", "/metrics", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = -1;
    size_t sl = strlen(series);
    for (const char *p = r.raw; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
            v = strtoll(p + sl + 1, NULL, 10);
            break;
        }
    }
    rb_resp_free(&r);
    return v;
}

/* Creates users, a venue of n seats (the first vip of them VIP) and a performance;
 * seat ids go to seat_ids (n of them). Returns the performance id. */
static long long rb_setup(rb_world *w, int n, int vip, long long normal, long long vipp,
                          long long *seat_ids, int users)
{
    rb_resp r;
    json_t *seats = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(seats,
                              json_pack("{s:s, s:i, s:s}", "row", i < 100 ? "A" : "B", "number",
                                        i % 100 + 1, "type", i < vip ? "VIP" : "NORMAL"));
    json_t *venue = json_pack("{s:s, s:o}", "name", "Hall", "seats", seats);
    char *body = json_dumps(venue, JSON_COMPACT);
    json_decref(venue);
    rb_http(w->port[0], "POST", "/venues", NULL, body, &r);
    free(body);
    ck_assert_msg(r.status == 201, "POST /venues: %d %s", r.status, r.raw);
    long long venue_id = rb_int(&r, "id");
    rb_resp_free(&r);

    char path[64];
    snprintf(path, sizeof(path), "/venues/%lld", venue_id);
    rb_http(w->port[0], "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *list = json_object_get(r.json, "seats");
    ck_assert_int_eq(json_array_size(list), n);
    for (int i = 0; i < n; i++)
        seat_ids[i] = json_integer_value(json_object_get(json_array_get(list, (size_t)i), "id"));
    rb_resp_free(&r);

    char pb[256];
    snprintf(pb, sizeof(pb),
             "{\"venueId\":%lld,\"title\":\"Show\",\"startsAt\":\"2026-12-01T19:00:00Z\","
             "\"normalPrice\":%lld,\"vipPrice\":%lld}",
             venue_id, normal, vipp);
    rb_http(w->port[0], "POST", "/performances", NULL, pb, &r);
    ck_assert_msg(r.status == 201, "POST /performances: %d %s", r.status, r.raw);
    long long perf = rb_int(&r, "id");
    rb_resp_free(&r);
    for (int u = 0; u < users; u++) {
        char ub[128];
        snprintf(ub, sizeof(ub), "{\"name\":\"user%d\",\"email\":\"u%d-%lld@example.com\"}", u, u,
                 perf);
        rb_http(w->port[0], "POST", "/users", NULL, ub, &r);
        ck_assert_msg(r.status == 201, "POST /users: %d %s", r.status, r.raw);
        rb_resp_free(&r);
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
                    const long long *seats, size_t n, const char *key, rb_resp *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(user, seats, n);
    rb_http(w->port[server], "POST", path, key, body, out);
    free(body);
}

static long long rb_remaining(rb_world *w, size_t server, long long perf)
{
    rb_resp r;
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld", perf);
    rb_http(w->port[server], "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    long long v = rb_int(&r, "remainingCapacity");
    rb_resp_free(&r);
    return v;
}

/* fakepay payments: counts by status; approved ids (not cancelled) into ids if non-NULL. */
static void rb_payments(rb_world *w, int *approved, int *cancelled, int *declined, json_t *ids)
{
    rb_resp r;
    rb_http(w->fakepay_port, "GET", "/payments", NULL, NULL, &r);
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
    rb_resp_free(&r);
}

/* ---------------------------------------------------------------- the storm */

static void rb_storm(const char *lock_mode)
{
    rb_world w;
    long long seat_ids[RB_SEATS];
    rb_start_infra(&w, NULL);
    for (size_t i = 0; i < 3; i++)
        rb_start_reserved(&w, i, lock_mode, NULL);
    long long perf = rb_setup(&w, RB_SEATS, 20, 1000, 5000, seat_ids, 20);

    /* 600 requests of 1-3 distinct random seats, round-robin over the 3 servers */
    srand(42);
    rb_call *calls = calloc(RB_STORM, sizeof(*calls));
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
        calls[i].port = w.port[i % 3];
        calls[i].req = rb_build("POST", path, NULL, body, &calls[i].len);
        free(body);
    }
    uint64_t t0 = th_now_ms();
    rb_run_batch(calls, RB_STORM, 120000);
    uint64_t took = th_now_ms() - t0;

    int n201 = 0, n409 = 0, n503 = 0, other = 0;
    long long sold = 0;
    static bool seen[1 << 16];
    memset(seen, 0, sizeof(seen));
    json_t *ids = json_array();
    for (size_t i = 0; i < RB_STORM; i++) {
        rb_resp *r = &calls[i].resp;
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
        rb_resp_free(r);
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
            rb_resp r;
            char p[64];
            snprintf(p, sizeof(p), "/reservations/%lld", (long long)json_integer_value(id));
            rb_http(w.port[i], "GET", p, NULL, NULL, &r);
            ck_assert_msg(r.status == 200, "GET %s on server %zu: %d", p, i, r.status);
            ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CONFIRMED");
            rb_resp_free(&r);
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
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}

START_TEST(test_storm)
{
    rb_storm("lockd");
}
END_TEST

START_TEST(test_storm_db)
{
    rb_storm("db");
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
    rb_start_infra(&w, NULL);
    rb_start_reserved(&w, 0, lock_mode, "payment: {url: \"\", timeout_ms: 2000}");
    long long perf = rb_setup(&w, 4, 1, 1000, 5000, seat_ids, 1);
    long long other[1];
    (void)rb_setup(&w, 1, 0, 1000, 5000, other, 1); /* a seat of another venue */
    rb_db_connect(&w);
    long long user = rb_q(&w, "SELECT min(id) FROM users");

    rb_resp r;
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
    rb_resp_free(&r);
    rb_http(w.port[0], "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char *stored = json_dumps(r.json, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(booked, stored);
    free(booked);
    free(stored);
    rb_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 2);

    /* 2 left, 3 asked, one of them taken and one foreign: the foreign seat answers first,
     * then the taken one, and only then the capacity */
    long long foreign[] = {seat_ids[2], seat_ids[3], other[0]};
    rb_book(&w, 0, perf, user, foreign, 3, NULL, &r);
    ck_assert_msg(r.status == 400, "foreign seat: %d %s", r.status, r.raw);
    rb_resp_free(&r);
    long long taken[] = {seat_ids[0], seat_ids[2], seat_ids[3]};
    rb_book(&w, 0, perf, user, taken, 3, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(rb_err(&r), "SEAT_TAKEN") == 0, "taken: %d %s",
                  r.status, r.raw);
    rb_resp_free(&r);
    long long last[] = {seat_ids[2], seat_ids[3]};
    rb_book(&w, 0, perf, user, last, 2, NULL, &r);
    ck_assert_msg(r.status == 201, "last two: %d %s", r.status, r.raw);
    rb_resp_free(&r);
    rb_book(&w, 0, perf, user, last, 1, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(rb_err(&r), "SEAT_TAKEN") == 0, "sold: %d %s", r.status,
                  r.raw);
    rb_resp_free(&r);
    /* cancel the first booking, then ask for 3 seats with 2 free, one of the 3 taken:
     * SEAT_TAKEN, and nothing changes */
    snprintf(path, sizeof(path), "/reservations/%lld",
             rb_q(&w, "SELECT min(id) FROM reservations WHERE performance_id = %lld", perf));
    rb_http(w.port[0], "DELETE", path, NULL, NULL, &r);
    ck_assert_msg(r.status == 200, "cancel: %d %s", r.status, r.raw);
    rb_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 2);
    long long want3[] = {seat_ids[0], seat_ids[1], seat_ids[2]};
    rb_book(&w, 0, perf, user, want3, 3, NULL, &r);
    ck_assert_msg(r.status == 409 && strcmp(rb_err(&r), "SEAT_TAKEN") == 0, "want3: %d %s",
                  r.status, r.raw);
    rb_resp_free(&r);
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
    rb_start_infra(&w, NULL);
    rb_start_reserved(&w, 0, lock_mode, NULL);
    rb_start_reserved(&w, 1, lock_mode, NULL);
    long long perf = rb_setup(&w, 10, 2, 1000, 5000, seats, 1);
    rb_resp r;
    long long two[2] = {seats[0], seats[5]}; /* one VIP, one NORMAL */
    rb_book(&w, 0, perf, 1, two, 2, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    long long res = rb_int(&r, "id");
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
    const char *pay_id = json_string_value(json_object_get(r.json, "paymentId"));
    ck_assert_ptr_nonnull(pay_id);
    char pay[64];
    snprintf(pay, sizeof(pay), "%s", pay_id);
    rb_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 1, perf), 8);

    /* patch the prices: the booking keeps its own */
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld", perf);
    rb_http(w.port[1], "PATCH", path, NULL, "{\"normalPrice\":2222,\"vipPrice\":9999}", &r);
    ck_assert_msg(r.status == 200, "PATCH: %d %s", r.status, r.raw);
    rb_resp_free(&r);
    snprintf(path, sizeof(path), "/reservations/%lld", res);
    rb_http(w.port[1], "GET", path, NULL, NULL, &r);
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
    rb_resp_free(&r);
    /* a new booking pays the new prices */
    rb_book(&w, 1, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(rb_int(&r, "totalAmount"), 9999);
    rb_resp_free(&r);
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 7);

    /* cancel: capacity and seats come back, the payment is cancelled; twice: same 200 */
    for (int i = 0; i < 2; i++) {
        rb_http(w.port[i], "DELETE", path, NULL, NULL, &r);
        ck_assert_msg(r.status == 200, "DELETE: %d %s", r.status, r.raw);
        ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CANCELLED");
        ck_assert_int_eq(rb_int(&r, "totalAmount"), 6000);
        rb_resp_free(&r);
    }
    ck_assert_int_eq(rb_remaining(&w, 0, perf), 9);
    snprintf(path, sizeof(path), "/performances/%lld/seats", perf);
    rb_http(w.port[0], "GET", path, NULL, NULL, &r);
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
    rb_resp_free(&r);
    char pp[96];
    snprintf(pp, sizeof(pp), "/payments/%s", pay);
    rb_http(w.fakepay_port, "GET", pp, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "CANCELLED");
    rb_resp_free(&r);
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
    rb_resp_free(&r);
    /* the user's list: newest first, filtered, paginated */
    rb_http(w.port[0], "GET", "/users/1/reservations?limit=2", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 2);
    const char *cursor = json_string_value(json_object_get(r.json, "nextCursor"));
    ck_assert_ptr_nonnull(cursor);
    char p2[128];
    snprintf(p2, sizeof(p2), "/users/1/reservations?limit=2&cursor=%s", cursor);
    rb_resp_free(&r);
    rb_http(w.port[0], "GET", p2, NULL, NULL, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r.json, "items"), 0), "id")),
                     res);
    ck_assert(json_is_null(json_object_get(r.json, "nextCursor")));
    rb_resp_free(&r);
    rb_http(w.port[0], "GET", "/users/1/reservations?status=CANCELLED", NULL, NULL, &r);
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "items")), 1);
    rb_resp_free(&r);
    rb_http(w.port[0], "GET", "/users/1/reservations?status=NOPE", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 400);
    rb_resp_free(&r);
    rb_http(w.port[0], "GET", "/users/999/reservations", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 404);
    rb_resp_free(&r);
    rb_http(w.port[0], "DELETE", "/reservations/99999", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 404);
    rb_resp_free(&r);
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
    rb_start_infra(&w, "--decline-rate 0.3");
    for (size_t i = 0; i < 3; i++)
        rb_start_reserved(&w, i, "lockd", NULL);
    long long perf = rb_setup(&w, RB_SEATS, 0, 1000, 1000, seats, 5);
    /* 150 concurrent one-seat bookings of distinct seats: only the gateway says no */
    enum { N = 150 };
    rb_call *calls = calloc(N, sizeof(*calls));
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    for (size_t i = 0; i < N; i++) {
        char *body = rb_booking_body((long long)(i % 5) + 1, &seats[i], 1);
        calls[i].port = w.port[i % 3];
        calls[i].req = rb_build("POST", path, NULL, body, &calls[i].len);
        free(body);
    }
    rb_run_batch(calls, N, 120000);
    int n201 = 0, n402 = 0;
    rb_db_connect(&w);
    for (size_t i = 0; i < N; i++) {
        rb_resp *r = &calls[i].resp;
        if (r->status == 201) {
            n201++;
        } else {
            ck_assert_msg(r->status == 402, "request %zu: %d %s", i, r->status, r->raw);
            ck_assert_str_eq(rb_err(r), "PAYMENT_DECLINED");
            n402++;
            /* declined: the seat is still free */
            ck_assert_int_eq(rb_q(&w,
                                  "SELECT count(*) FROM reservation_seats WHERE seat_id = %lld "
                                  "AND confirmed",
                                  seats[i]),
                             0);
        }
        rb_resp_free(r);
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
    rb_start_infra(&w, NULL);
    const char *rc = "reconcile: {interval_ms: 200, after_ms: 1000}";
    rb_start_reserved(&w, 0, "lockd", rc);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "60000", 1);
    rb_start_reserved(&w, 1, "lockd", rc);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(1, seats, 2);
    int fd = rb_start(w.port[1], "POST", path, body);
    free(body);
    /* wait until the gateway approved the charge, then kill the server mid-transaction */
    int ap = 0, ca, de;
    for (uint64_t end = th_now_ms() + 10000; ap == 0 && th_now_ms() < end; th_sleep_ms(20))
        rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    th_sleep_ms(200);
    th_stop(w.reserved[1], false, 5000);
    w.reserved[1] = 0;
    rb_resp r;
    rb_finish(fd, &r, 1000);
    ck_assert_int_eq(r.status, 0); /* no answer: it died */
    rb_resp_free(&r);
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
    rb_resp_free(&r);
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
    rb_start_infra(&w, NULL);
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
    int fd = rb_start(w.port[1], "POST", path, body);
    free(body);
    /* freeze it once it holds the lock (its hook logs the pause right after the grant) */
    ck_assert_msg(rb_log_wait(w.log[1], "paused 3000 ms after the lock", 10000),
                  "the booking never got the lock");
    th_signal(w.reserved[1], SIGSTOP);
    /* the other server waits for the lease to run out, then books with a newer fence */
    rb_resp r;
    uint64_t t0 = th_now_ms();
    rb_book(&w, 0, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    rb_resp_free(&r);
    fprintf(stderr, "stale_fence: second holder booked after %llu ms\n",
            (unsigned long long)(th_now_ms() - t0));
    th_sleep_ms(1500);
    th_signal(w.reserved[1], SIGCONT);
    rb_finish(fd, &r, 15000);
    ck_assert_msg(r.status == 503, "stale holder got %d %s", r.status, r.raw);
    ck_assert_str_eq(rb_err(&r), "UNAVAILABLE");
    rb_resp_free(&r);
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

/* ---------------------------------------------------------------- queue prefetch */

/* While one booking holds the performance lock, the next in line of the process's queue
 * opens its connection and transaction (one, not every waiter); when that waiter then runs
 * out of lock.wait_ms it is rolled back and its connection goes back to the pool: nothing
 * stays "idle in transaction" and the next booking works. */
START_TEST(test_queue_prefetch)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL);
    setenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS", "1500", 1);
    rb_start_reserved(&w, 0, "lockd", "lock: {mode: lockd, lease_ms: 0, wait_ms: 500}");
    unsetenv("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 3);
    rb_db_connect(&w);
    const char *idle_in_txn = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'booking'"
                              " AND state = 'idle in transaction'";
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    int fd[3];
    for (int i = 0; i < 3; i++) {
        char *body = rb_booking_body(i + 1, &seats[i], 1);
        fd[i] = rb_start(w.port[0], "POST", path, body);
        free(body);
        if (i == 0)
            ck_assert_msg(rb_log_wait(w.log[0], "paused 1500 ms after the lock", 10000),
                          "the first booking never got the lock");
    }
    th_sleep_ms(300);
    /* the holder opened its transaction while its ACQUIRE was out (it was the head then)
     * and is paused by the hook; the head waiter has one too; the third waits without */
    ck_assert_int_eq(rb_q(&w, "%s", idle_in_txn), 2);
    rb_resp r;
    rb_finish(fd[0], &r, 10000);
    ck_assert_msg(r.status == 201, "holder got %d %s", r.status, r.raw);
    rb_resp_free(&r);
    for (int i = 1; i < 3; i++) {
        rb_finish(fd[i], &r, 10000);
        ck_assert_msg(r.status == 503 && strcmp(rb_err(&r), "BUSY") == 0, "waiter %d got %d %s", i,
                      r.status, r.raw);
        rb_resp_free(&r);
    }
    th_sleep_ms(200);
    ck_assert_int_eq(rb_q(&w, "%s", idle_in_txn), 0);
    rb_book(&w, 0, perf, 2, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 201, "%d %s", r.status, r.raw);
    rb_resp_free(&r);
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
    rb_start_infra(&w, NULL);
    setenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS", "1500", 1);
    rb_start_reserved(&w, 0, "lockd", NULL);
    unsetenv("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    char *body = rb_booking_body(1, seats, 2);
    int fd = rb_start(w.port[0], "POST", path, body);
    free(body);
    int ap = 0, ca, de;
    for (uint64_t end = th_now_ms() + 10000; ap == 0 && th_now_ms() < end; th_sleep_ms(20))
        rb_payments(&w, &ap, &ca, &de, NULL);
    ck_assert_int_eq(ap, 1);
    th_stop(w.lockd.pid, false, 5000);
    w.lockd.pid = 0;
    rb_resp r;
    rb_finish(fd, &r, 15000);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    ck_assert_str_eq(rb_err(&r), "UNAVAILABLE");
    rb_resp_free(&r);
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
    rb_resp_free(&r);
    ck_assert(th_lockd_restart(&w.lockd));
    int status = 0;
    for (uint64_t end = th_now_ms() + 15000; status != 201 && th_now_ms() < end; th_sleep_ms(200)) {
        rb_book(&w, 0, perf, 1, seats, 1, NULL, &r);
        status = r.status;
        rb_resp_free(&r);
    }
    ck_assert_int_eq(status, 201);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- payment unknown */

static void rb_fakepay_knobs(rb_world *w, const char *json)
{
    rb_resp r;
    rb_http(w->fakepay_port, "POST", "/admin/config", NULL, json, &r);
    ck_assert_msg(r.status == 200, "admin/config: %d %s", r.status, r.raw);
    rb_resp_free(&r);
}

/* Charges whose outcome is unknown (gateway timeout, gateway 503): the booking answers
 * 503 and books nothing; the reconciler later cancels what the gateway did approve and
 * closes what it never had. */
START_TEST(test_payment_unknown)
{
    rb_world w;
    long long seats[10];
    rb_start_infra(&w, NULL);
    char extra[256];
    snprintf(extra, sizeof(extra),
             "payment: {url: \"http://127.0.0.1:%d\", timeout_ms: 500}\n"
             "reconcile: {interval_ms: 200, after_ms: 1000}",
             w.fakepay_port);
    rb_start_reserved(&w, 0, "lockd", extra);
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 1);
    rb_resp r;
    /* 1: the gateway answers after our timeout (it approves the charge nevertheless) */
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":0,\"latencyMs\":2000}");
    rb_book(&w, 0, perf, 1, &seats[0], 1, NULL, &r);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    ck_assert_str_eq(rb_err(&r), "UNAVAILABLE");
    rb_resp_free(&r);
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":0,\"latencyMs\":0}");
    /* 2: the gateway fails (503, nothing recorded there) */
    rb_fakepay_knobs(&w, "{\"declineRate\":0,\"failRate\":1,\"latencyMs\":0}");
    rb_book(&w, 0, perf, 1, &seats[1], 1, NULL, &r);
    ck_assert_msg(r.status == 503, "%d %s", r.status, r.raw);
    rb_resp_free(&r);
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
    rb_resp_free(&r);
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
    rb_start_infra(&w, "--latency-ms 5");
    const char *rc = "reconcile: {interval_ms: 200, after_ms: 1000}";
    rb_start_reserved(&w, 0, "lockd", rc);
    rb_start_reserved(&w, 1, "lockd", rc);
    long long perf = rb_setup(&w, RB_SEATS, 0, 1000, 1000, seats, 1);
    char out[512];
    snprintf(out, sizeof(out), "%s/pg_restart.out", th_tmpdir());
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) { /* the clients: 200 one-seat bookings at once */
        rb_call *calls = calloc(RB_SEATS, sizeof(*calls));
        char path[64];
        snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
        for (size_t i = 0; i < RB_SEATS; i++) {
            char *body = rb_booking_body(1, &seats[i], 1);
            calls[i].port = w.port[i % 2];
            calls[i].req = rb_build("POST", path, NULL, body, &calls[i].len);
            free(body);
        }
        for (size_t wave = 0; wave < 8; wave++) { /* before, during and after the outage */
            rb_call *wc = calls + wave * (RB_SEATS / 8);
            rb_run_batch(wc, RB_SEATS / 8, 60000);
            int ok = 0;
            for (size_t i = 0; i < RB_SEATS / 8; i++)
                ok += wc[i].resp.status == 201;
            fprintf(stderr, "pg_restart: wave %zu: %d of %d booked\n", wave, ok, RB_SEATS / 8);
            th_sleep_ms(600);
        }
        FILE *f = fopen(out, "w");
        for (size_t i = 0; f != NULL && i < RB_SEATS; i++) {
            fprintf(f, "%d %lld\n", calls[i].resp.status, rb_int(&calls[i].resp, "id"));
            rb_resp_free(&calls[i].resp);
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
    rb_start_infra(&w, NULL);
    rb_start_reserved(&w, 0, "lockd", NULL);
    rb_start_reserved(&w, 1, "lockd", NULL);
    long long perf = rb_setup(&w, 10, 0, 1000, 1000, seats, 2);
    rb_resp a, b;
    rb_book(&w, 0, perf, 1, seats, 2, "key-1", &a);
    ck_assert_int_eq(a.status, 201);
    rb_book(&w, 1, perf, 1, seats, 2, "key-1", &b);
    ck_assert_int_eq(b.status, 201);
    ck_assert_int_eq(rb_int(&a, "id"), rb_int(&b, "id"));
    ck_assert_int_eq(rb_int(&a, "totalAmount"), rb_int(&b, "totalAmount"));
    ck_assert_str_eq(json_string_value(json_object_get(a.json, "paymentId")),
                     json_string_value(json_object_get(b.json, "paymentId")));
    rb_resp_free(&a);
    rb_resp_free(&b);
    /* same key, other body */
    rb_book(&w, 0, perf, 1, &seats[2], 1, "key-1", &a);
    ck_assert_int_eq(a.status, 422);
    ck_assert_str_eq(rb_err(&a), "IDEMPOTENCY_MISMATCH");
    rb_resp_free(&a);
    /* the same key sent to both servers at once books once */
    rb_call calls[2] = {{.port = w.port[0]}, {.port = w.port[1]}};
    char *body = rb_booking_body(2, &seats[4], 2);
    char path[64];
    snprintf(path, sizeof(path), "/performances/%lld/reservations", perf);
    for (int i = 0; i < 2; i++)
        calls[i].req = rb_build("POST", path, "key-2", body, &calls[i].len);
    free(body);
    rb_run_batch(calls, 2, RB_IO_MS);
    ck_assert_int_eq(calls[0].resp.status, 201);
    ck_assert_int_eq(calls[1].resp.status, 201);
    ck_assert_int_eq(rb_int(&calls[0].resp, "id"), rb_int(&calls[1].resp, "id"));
    rb_resp_free(&calls[0].resp);
    rb_resp_free(&calls[1].resp);
    /* a final failure is replayed too: seats taken under a new key, twice */
    rb_book(&w, 0, perf, 2, &seats[4], 1, "key-3", &a);
    ck_assert_int_eq(a.status, 409);
    rb_book(&w, 1, perf, 2, &seats[4], 1, "key-3", &b);
    ck_assert_int_eq(b.status, 409);
    ck_assert_str_eq(rb_err(&b), "SEAT_TAKEN");
    ck_assert(json_equal(a.json, b.json));
    rb_resp_free(&a);
    rb_resp_free(&b);
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
        {"{\"seatIds\":[1]}", 400},
        {"[1]", 400},
        {"{\"userId\":999,\"seatIds\":[1]}", 404},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rb_http(w.port[0], "POST", path, NULL, bad[i].body, &a);
        ck_assert_msg(a.status == bad[i].status, "%s: %d %s", bad[i].body, a.status, a.raw);
        ck_assert_str_eq(rb_err(&a), bad[i].status == 400 ? "BAD_REQUEST" : "NOT_FOUND");
        rb_resp_free(&a);
    }
    rb_http(w.port[0], "POST", "/performances/987654/reservations", NULL,
            "{\"userId\":1,\"seatIds\":[1]}", &a);
    ck_assert_int_eq(a.status, 404);
    rb_resp_free(&a);
    PQfinish(w.db);
    rb_stop_reserved_clean(&w);
}
END_TEST

/* ---------------------------------------------------------------- main */

static void rb_teardown(void)
{
    th_stop_all();
}

int main(void)
{
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"storm", test_storm},
        {"storm_db", test_storm_db},
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
    };
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("reserved_booking");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_unchecked_fixture(tc, NULL, rb_teardown);
        tcase_set_timeout(tc, 230);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    int ran = srunner_ntests_run(sr);
    srunner_free(sr);
    th_stop_all();
    return failed == 0 && ran > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
