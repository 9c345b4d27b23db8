/*
 * test_events: live seat events (SPEC §8, issue 14 §1) of the real reserved, two of them
 * on one database (db lock mode), PostgreSQL shared by the binary's cases:
 *   events_other_server        a stream on reserved B sees a booking made through A within
 *                              1 s, with the exact SPEC payload (and 404 for no such
 *                              performance); with the readers' connections cut, the next
 *                              booking still comes, once, after B reconnects
 *   events_cancel              a cancel makes the seats available again
 *   events_only_committed      a refused booking (SEAT_TAKEN) emits nothing
 *   events_resume              Last-Event-ID replays exactly the missed events, then live
 *   events_keepalive           a comment line within 1.25 x events.keepalive_ms of silence
 *   events_slow_reader_dropped readers that never read are closed, reserved's RSS stays
 *                              bounded
 *   events_cap                 events.max_subscribers: 2: the third gets 503 + Retry-After
 *   events_stop                SIGTERM with open streams: exit 0 promptly, streams ended
 *   events_lockd               a booking and a cancel through a reserved in lockd mode
 * The stream is read by a small SSE client here (HTTP/1.1, chunked), one socket each.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rat.h"

#define STARTS "2026-12-01T19:00:00Z"

/* ---- a small SSE client ---- */

typedef struct sse_event {
    long long id; /* -1 when the event had no id line */
    char type[32];
    json_t *data; /* the data line parsed (owned; sse_event_free) */
} sse_event;

typedef struct sse {
    int fd;
    int status;
    char head[4096];
    char raw[65536]; /* received body bytes, not decoded yet */
    size_t rlen;
    char *text; /* the decoded body */
    size_t tlen, tcap, tpos;
    int comments;   /* comment lines seen */
    int keepalives; /* of them, ": keep-alive" */
    bool eof;       /* the server closed */
    bool ended;     /* the last chunk came */
} sse;

static void sse_event_free(sse_event *e)
{
    json_decref(e->data);
    e->data = NULL;
}

static void text_add(sse *c, const char *p, size_t n)
{
    if (c->tlen + n + 1 > c->tcap) {
        c->tcap = (c->tlen + n + 1) * 2;
        c->text = realloc(c->text, c->tcap);
        ck_assert(c->text != NULL);
    }
    memcpy(c->text + c->tlen, p, n);
    c->tlen += n;
    c->text[c->tlen] = '\0';
}

/* Decodes the complete chunks of raw into text. */
static void dechunk(sse *c)
{
    for (;;) {
        char *crlf = memmem(c->raw, c->rlen, "\r\n", 2);
        if (!crlf)
            return;
        size_t size = strtoul(c->raw, NULL, 16);
        size_t hlen = (size_t)(crlf - c->raw) + 2;
        if (size == 0) {
            c->ended = true;
            c->rlen = 0;
            return;
        }
        if (c->rlen < hlen + size + 2)
            return;
        text_add(c, c->raw + hlen, size);
        memmove(c->raw, c->raw + hlen + size + 2, c->rlen - hlen - size - 2);
        c->rlen -= hlen + size + 2;
    }
}

/* Reads what comes within timeout_ms (at least one read when data is there). False when
 * nothing came (timeout) or the server closed. */
static bool sse_fill(sse *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (c->eof || poll(&p, 1, timeout_ms) <= 0)
        return false;
    if (sizeof(c->raw) - c->rlen < 4096)
        return true; /* a chunk bigger than raw: never here (events are small) */
    ssize_t n = recv(c->fd, c->raw + c->rlen, sizeof(c->raw) - c->rlen, 0);
    if (n <= 0) {
        c->eof = true;
        return false;
    }
    c->rlen += (size_t)n;
    dechunk(c);
    return true;
}

static int connect_to(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

/* GET path with extra header lines (may be NULL); reads the head (5 s). rcvbuf > 0: the
 * socket's receive buffer (a reader that will not read). The status in c->status. */
static void sse_open(sse *c, int port, const char *path, const char *headers, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = connect_to(port, rcvbuf);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
                     "text/event-stream\r\n%s\r\n",
                     path, headers ? headers : "");
    ck_assert(send(c->fd, req, (size_t)n, MSG_NOSIGNAL) == n);
    size_t have = 0;
    uint64_t end = th_now_ms() + 5000;
    for (;;) {
        char *eoh = memmem(c->head, have, "\r\n\r\n", 4);
        if (eoh) {
            size_t hl = (size_t)(eoh - c->head) + 4;
            memcpy(c->raw, c->head + hl, have - hl);
            c->rlen = have - hl;
            *eoh = '\0';
            break;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int left = (int)(end - th_now_ms());
        ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "GET %s: no answer head", path);
        ssize_t r = recv(c->fd, c->head + have, sizeof(c->head) - 1 - have, 0);
        ck_assert_msg(r > 0, "GET %s: closed before the head", path);
        have += (size_t)r;
    }
    ck_assert(sscanf(c->head, "HTTP/1.%*d %d", &c->status) == 1);
    if (c->status == 200) {
        ck_assert_msg(strcasestr(c->head, "\r\nContent-Type: text/event-stream") != NULL, "%s",
                      c->head);
        ck_assert_msg(strcasestr(c->head, "\r\nTransfer-Encoding: chunked") != NULL, "%s", c->head);
        dechunk(c);
    }
}

/* Opens a stream that must be answered 200 and waits for its preamble (the server has
 * registered it: every later commit reaches it). */
static void sse_subscribe(sse *c, int port, long long perf, const char *headers, int rcvbuf)
{
    char path[96];
    snprintf(path, sizeof path, "/performances/%lld/events", perf);
    sse_open(c, port, path, headers, rcvbuf);
    ck_assert_msg(c->status == 200, "GET %s: %d\n%s", path, c->status, c->head);
    uint64_t end = th_now_ms() + 5000;
    while (strstr(c->text ? c->text : "", "\n\n") == NULL && th_now_ms() < end)
        sse_fill(c, 100);
    ck_assert_msg(c->text && strncmp(c->text, ": ", 2) == 0, "no preamble comment");
}

static void sse_close(sse *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->text);
    c->text = NULL;
}

/* The next event within timeout_ms (comments are counted and skipped). */
static bool sse_next(sse *c, int timeout_ms, sse_event *e)
{
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    memset(e, 0, sizeof(*e));
    for (;;) {
        char *start = c->text ? c->text + c->tpos : NULL;
        char *stop = start ? strstr(start, "\n\n") : NULL;
        while (stop) {
            *stop = '\0';
            c->tpos = (size_t)(stop - c->text) + 2;
            e->id = -1;
            bool has_data = false;
            for (char *line = strtok(start, "\n"); line; line = strtok(NULL, "\n")) {
                if (line[0] == ':') {
                    c->comments++;
                    c->keepalives += strcmp(line, ": keep-alive") == 0;
                } else if (strncmp(line, "id: ", 4) == 0) {
                    e->id = atoll(line + 4);
                } else if (strncmp(line, "event: ", 7) == 0) {
                    snprintf(e->type, sizeof e->type, "%s", line + 7);
                } else if (strncmp(line, "data: ", 6) == 0) {
                    json_error_t err;
                    e->data = json_loads(line + 6, 0, &err);
                    ck_assert_msg(e->data != NULL, "data is not JSON: %s", line + 6);
                    has_data = true;
                }
            }
            if (has_data)
                return true;
            start = c->text + c->tpos;
            stop = strstr(start, "\n\n");
        }
        int left = (int)(end - th_now_ms());
        if ((int64_t)(end - th_now_ms()) <= 0 || (!sse_fill(c, left) && c->eof))
            return false;
    }
}

/* ---- the world: a venue, a performance, users, two reserved ---- */

#define N_SEATS 12

typedef struct world {
    th_pg pg;
    th_reserved a, b;
    PGconn *db;
    long long venue, perf;
    long long seats[N_SEATS];
    long long users[4];
} world;

static PGconn *db_connect(const th_pg *pg)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static void db_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

static long long db_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQerrorMessage(c));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* A up (db mode; lockd mode on a_lockd "H:P" unless NULL), the catalogue made through
 * it; B (db mode) from b_yaml (NULL: the defaults). */
static void world_up_a(world *w, const char *b_yaml, const char *a_lockd)
{
    rat_pg_start(&w->pg);
    if (a_lockd) {
        th_reserved_spawn(&w->a, w->pg.conninfo, "--lock-mode", "lockd", "--lockd", a_lockd,
                          "--log-level", "debug", NULL);
        th_reserved_wait_up(&w->a);
    } else {
        th_reserved_start(&w->a, w->pg.conninfo);
    }
    th_reserved_admin(&w->a, w->pg.conninfo);
    if (b_yaml) {
        char path[512];
        snprintf(path, sizeof path, "%s/b.yaml", th_tmpdir());
        rat_write_file(path, b_yaml);
        th_reserved_spawn(&w->b, w->pg.conninfo, "--config", path, "--lock-mode", "db",
                          "--log-level", "debug", NULL);
    } else {
        th_reserved_spawn(&w->b, w->pg.conninfo, "--lock-mode", "db", "--log-level", "debug", NULL);
    }
    json_t *seats = json_array();
    for (int i = 1; i <= N_SEATS; i++)
        json_array_append_new(seats, json_pack("{s:s,s:i,s:s}", "row", "A", "number", i, "type",
                                               i > N_SEATS - 2 ? "VIP" : "NORMAL"));
    w->venue =
        rat_post_id(&w->a, "/venues", json_pack("{s:s,s:o}", "name", "Hall", "seats", seats));
    w->perf = rat_make_perf(&w->a, w->venue, "Live", STARTS, 100, 250, NULL);
    for (int i = 0; i < 4; i++) {
        char name[32], email[64];
        snprintf(name, sizeof name, "buyer%d", i);
        snprintf(email, sizeof email, "buyer%d@test.invalid", i);
        w->users[i] = rat_make_user(&w->a, name, email);
    }
    w->db = db_connect(&w->pg);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT id FROM venue_seats WHERE venue_id = %lld ORDER BY id",
             w->venue);
    PGresult *r = PQexec(w->db, sql);
    ck_assert_int_eq(PQntuples(r), N_SEATS);
    for (int i = 0; i < N_SEATS; i++)
        w->seats[i] = atoll(PQgetvalue(r, i, 0));
    PQclear(r);
    th_reserved_wait_up(&w->b);
}

static void world_up(world *w, const char *b_yaml)
{
    world_up_a(w, b_yaml, NULL);
}

static void world_down(world *w)
{
    PQfinish(w->db);
    th_reserved_stop_clean(&w->a);
    if (w->b.pid)
        th_reserved_stop_clean(&w->b);
}

/* Books seats (indexes into w->seats) for user through s: the status; *res_id the new
 * reservation's id (201). */
static int book(world *w, const th_reserved *s, int user, const int *idx, int n, long long *res_id)
{
    char path[96], body[512];
    int used = snprintf(body, sizeof body, "{\"userId\":%lld,\"seatIds\":[", w->users[user]);
    for (int i = 0; i < n; i++)
        used += snprintf(body + used, sizeof body - (size_t)used, "%s%lld", i ? "," : "",
                         w->seats[idx[i]]);
    snprintf(body + used, sizeof body - (size_t)used, "]}");
    snprintf(path, sizeof path, "/performances/%lld/reservations", w->perf);
    th_http_resp r;
    th_http_request(s->port, "POST", path, NULL, body, &r);
    int st = r.status;
    if (st == 201 && res_id)
        *res_id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    return st;
}

/* e is a seats event of w's performance: seats idx[0..n) with available/held, the
 * remaining capacity, and nothing else. */
static void expect_event(const world *w, const sse_event *e, const int *idx, int n, bool available,
                         long long remaining)
{
    ck_assert_str_eq(e->type, "seats");
    ck_assert_msg(e->id > 0, "event without an id");
    json_t *seats = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(seats, json_pack("{s:I,s:b,s:b}", "id", (json_int_t)w->seats[idx[i]],
                                               "available", available, "held", 0));
    json_t *want = json_pack("{s:I,s:o,s:I}", "performanceId", (json_int_t)w->perf, "seats", seats,
                             "remainingCapacity", (json_int_t)remaining);
    char *got_s = json_dumps(e->data, JSON_SORT_KEYS);
    char *want_s = json_dumps(want, JSON_SORT_KEYS);
    ck_assert_msg(json_equal(e->data, want), "event %lld:\n got  %s\n want %s", e->id, got_s,
                  want_s);
    free(got_s);
    free(want_s);
    json_decref(want);
}

static long long metric(const th_reserved *s, const char *name);

/* ---- the cases ---- */

START_TEST(events_other_server)
{
    world w;
    sse c, none;
    sse_event e;
    world_up(&w, NULL);
    sse_open(&none, w.b.port, "/performances/999999/events", NULL, 0);
    ck_assert_int_eq(none.status, 404);
    sse_close(&none);

    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    int seats[] = {3, N_SEATS - 1}; /* a NORMAL and a VIP */
    ck_assert_int_eq(book(&w, &w.a, 0, seats, 2, NULL), 201);
    uint64_t answered = th_now_ms();
    ck_assert_msg(sse_next(&c, 1000, &e), "no event on B within 1 s of A's 201");
    uint64_t took = th_now_ms() - answered;
    ck_assert_msg(took < 1000, "event after %llu ms", (unsigned long long)took);
    expect_event(&w, &e, seats, 2, false, N_SEATS - 2);
    sse_event_free(&e);
    /* the same capacity as the API's */
    char path[64];
    th_http_resp r;
    snprintf(path, sizeof path, "/performances/%lld", w.perf);
    rat_req_ok(&w.b, "GET", path, NULL, 200, &r);
    ck_assert_int_eq(rat_jint(r.json, "remainingCapacity"), N_SEATS - 2);
    th_http_resp_free(&r);

    /* the readers' connections cut (both servers'): B reconnects, and the booking made
     * meanwhile still comes, once, read after the stream's cursor */
    long long before = metric(&w.b, "reserved_events_reader_reconnects_total");
    ck_assert_int_ge(db_int(w.db, "SELECT count(pg_terminate_backend(pid)) FROM "
                                  "pg_stat_activity WHERE application_name = 'reserved-events'"),
                     2);
    int more[] = {5};
    ck_assert_int_eq(book(&w, &w.a, 1, more, 1, NULL), 201);
    ck_assert_msg(sse_next(&c, 3000, &e), "no event on B within 3 s of the cut");
    expect_event(&w, &e, more, 1, false, N_SEATS - 3);
    sse_event_free(&e);
    ck_assert_msg(!sse_next(&c, 300, &e), "an event twice");
    ck_assert_int_gt(metric(&w.b, "reserved_events_reader_reconnects_total"), before);
    sse_close(&c);
    world_down(&w);
}
END_TEST

/* Books seats through A for user, then cancels the booking through A: c (subscribed)
 * must see them sold, then available again with the capacity back, in that order. */
static void book_then_cancel(world *w, sse *c, int user, const int *seats, int n)
{
    sse_event e1, e2;
    long long res = 0;
    ck_assert_int_eq(book(w, &w->a, user, seats, n, &res), 201);
    ck_assert(sse_next(c, 2000, &e1));
    expect_event(w, &e1, seats, n, false, N_SEATS - n);
    char path[64];
    th_http_resp r;
    snprintf(path, sizeof path, "/reservations/%lld", res);
    rat_req_ok(&w->a, "DELETE", path, NULL, 200, &r);
    th_http_resp_free(&r);
    ck_assert_msg(sse_next(c, 2000, &e2), "no event for the cancel");
    expect_event(w, &e2, seats, n, true, N_SEATS);
    ck_assert_int_gt(e2.id, e1.id);
    sse_event_free(&e1);
    sse_event_free(&e2);
}

START_TEST(events_cancel)
{
    world w;
    sse c;
    world_up(&w, NULL);
    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    int seats[] = {0, 1, 2};
    book_then_cancel(&w, &c, 1, seats, 3);
    sse_close(&c);
    world_down(&w);
}
END_TEST

START_TEST(events_only_committed)
{
    world w;
    sse c;
    sse_event e;
    world_up(&w, NULL);
    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    int first[] = {5}, taken[] = {6, 5}, later[] = {7};
    ck_assert_int_eq(book(&w, &w.a, 0, first, 1, NULL), 201);
    ck_assert(sse_next(&c, 2000, &e));
    expect_event(&w, &e, first, 1, false, N_SEATS - 1);
    sse_event_free(&e);
    /* refused (seat 5 is sold): no event, on either server */
    ck_assert_int_eq(book(&w, &w.a, 1, taken, 2, NULL), 409);
    ck_assert_int_eq(book(&w, &w.b, 1, taken, 2, NULL), 409);
    /* the next event is the next committed change's */
    ck_assert_int_eq(book(&w, &w.a, 1, later, 1, NULL), 201);
    ck_assert(sse_next(&c, 2000, &e));
    expect_event(&w, &e, later, 1, false, N_SEATS - 2);
    sse_event_free(&e);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM seat_events WHERE performance_id = %lld",
             w.perf);
    ck_assert_int_eq(db_int(w.db, sql), 2);
    ck_assert_msg(!sse_next(&c, 300, &e), "an event after the last commit");
    sse_close(&c);
    world_down(&w);
}
END_TEST

START_TEST(events_resume)
{
    world w;
    sse c1, c2, c3;
    sse_event e[6];
    world_up(&w, NULL);
    sse_subscribe(&c1, w.b.port, w.perf, NULL, 0);
    int s[][1] = {{0}, {1}, {2}, {3}, {4}};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(book(&w, &w.a, i, s[i], 1, NULL), 201);
        ck_assert(sse_next(&c1, 2000, &e[i]));
        expect_event(&w, &e[i], s[i], 1, false, N_SEATS - 1 - i);
    }
    sse_close(&c1);
    /* missed while away */
    for (int i = 2; i < 4; i++)
        ck_assert_int_eq(book(&w, &w.a, i, s[i], 1, NULL), 201);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld\r\n", e[1].id);
    sse_subscribe(&c2, w.b.port, w.perf, hdr, 0);
    for (int i = 2; i < 4; i++) {
        ck_assert_msg(sse_next(&c2, 2000, &e[i]), "missed event %d not replayed", i);
        expect_event(&w, &e[i], s[i], 1, false, N_SEATS - 1 - i);
        ck_assert_int_gt(e[i].id, e[i - 1].id);
    }
    /* resumed from the newest: nothing until the next change, on the other server too */
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %lld\r\n", e[3].id);
    sse_subscribe(&c3, w.a.port, w.perf, hdr, 0);
    ck_assert_int_eq(book(&w, &w.b, 0, s[4], 1, NULL), 201);
    ck_assert(sse_next(&c2, 2000, &e[4]));
    expect_event(&w, &e[4], s[4], 1, false, N_SEATS - 5);
    ck_assert(sse_next(&c3, 2000, &e[5]));
    ck_assert_int_eq(e[5].id, e[4].id);
    for (int i = 0; i < 6; i++)
        sse_event_free(&e[i]);
    ck_assert_msg(!sse_next(&c2, 300, &e[0]), "a replayed event twice");
    sse_close(&c2);
    sse_close(&c3);
    world_down(&w);
}
END_TEST

START_TEST(events_keepalive)
{
    world w;
    sse c;
    sse_event e;
    /* a comment at least every 1.25 x events.keepalive_ms (rapi_config_error checks the
     * default, 10 s, and that past 12 s is refused): 400 ms here, so the wait is short */
    world_up(&w, "events: {keepalive_ms: 400}\n");
    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    ck_assert_int_eq(c.keepalives, 0);
    uint64_t t0 = th_now_ms();
    ck_assert(!sse_next(&c, 1400, &e));
    ck_assert_msg(c.keepalives >= 2, "%d keep-alive comments in 1.4 s (%d comments)", c.keepalives,
                  c.comments);
    ck_assert_msg(!c.eof, "the stream closed after %llu ms",
                  (unsigned long long)(th_now_ms() - t0));
    sse_close(&c);
    world_down(&w);
}
END_TEST

static long long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert(f != NULL);
    long long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Whether the server closed c within timeout_ms (what it had sent is read and dropped). */
static bool closed_by_server(sse *c, int timeout_ms)
{
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    char buf[65536];
    while (th_now_ms() < end) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n <= 0)
            return true;
    }
    return false;
}

#define SLOW_READERS 4
#define BIG_SEATS    2000
#define FLOOD        150

START_TEST(events_slow_reader_dropped)
{
    world w;
    sse slow[SLOW_READERS];
    char sql[512];
    /* the server's freed memory must not sit in ASan's quarantine, or RSS says nothing */
    char asan[512];
    const char *was = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=1", was ? was : "", was ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    world_up(&w, "events: {max_buffer_kib: 4}\n");
    /* a performance of BIG_SEATS seats and a reservation of them all, made in SQL: every
     * flip of its seats is one event of ~90 KB (too large to notify: read from the table) */
    snprintf(sql, sizeof sql,
             "INSERT INTO venue_seats (venue_id, row_label, number, type)"
             " SELECT %lld, 'B', n, 'NORMAL' FROM generate_series(1, %d) n",
             w.venue, BIG_SEATS);
    db_ok(w.db, sql);
    long long perf = rat_make_perf(&w.a, w.venue, "Big", STARTS, 1, 2, NULL);
    snprintf(sql, sizeof sql,
             "INSERT INTO reservations (user_id, performance_id, status, normal_price, vip_price,"
             " total_amount) VALUES (%lld, %lld, 'CONFIRMED', 1, 2, 0) RETURNING id",
             w.users[0], perf);
    long long res = db_int(w.db, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type,"
             " price) SELECT %lld, %lld, id, type, 1 FROM venue_seats WHERE venue_id = %lld"
             " AND row_label = 'B'",
             res, perf, w.venue);
    db_ok(w.db, sql);
    for (int i = 0; i < SLOW_READERS; i++)
        sse_subscribe(&slow[i], w.b.port, perf, NULL, 4096); /* and never read again */
    long long before = rss_kib(w.b.pid);
    snprintf(sql, sizeof sql,
             "UPDATE reservation_seats SET confirmed = NOT confirmed WHERE reservation_id = %lld",
             res);
    for (int i = 0; i < FLOOD; i++)
        db_ok(w.db, sql);
    /* every event is read and fanned out (or its readers dropped) */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM seat_events WHERE performance_id = %lld", perf);
    ck_assert_int_eq(db_int(w.db, sql), FLOOD + 1);
    th_sleep_ms(1000);
    long long after = rss_kib(w.b.pid);
    for (int i = 0; i < SLOW_READERS; i++) {
        ck_assert_msg(closed_by_server(&slow[i], 5000), "slow reader %d still connected", i);
        sse_close(&slow[i]);
    }
    /* without the rule each reader would hold ~13 MB of unsent events */
    ck_assert_msg(after - before < 6 * 1024, "RSS grew from %lld to %lld KiB", before, after);
    th_http_resp r;
    rat_req_ok(&w.b, "GET", "/metrics", NULL, 200, &r);
    char want[96];
    snprintf(want, sizeof want, "reserved_events_slow_readers_dropped_total %d\n", SLOW_READERS);
    ck_assert_msg(strstr(r.body, want) != NULL, "no '%s' in /metrics", want);
    ck_assert(strstr(r.body, "reserved_events_subscribers 0\n") != NULL);
    th_http_resp_free(&r);
    /* the server still streams to a reader that reads */
    sse c;
    sse_event e;
    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    int seats[] = {0};
    ck_assert_int_eq(book(&w, &w.a, 0, seats, 1, NULL), 201);
    ck_assert(sse_next(&c, 2000, &e));
    sse_event_free(&e);
    sse_close(&c);
    world_down(&w);
}
END_TEST

START_TEST(events_cap)
{
    world w;
    sse c[4];
    world_up(&w, "events: {max_subscribers: 2}\n");
    sse_subscribe(&c[0], w.b.port, w.perf, NULL, 0);
    sse_subscribe(&c[1], w.b.port, w.perf, NULL, 0);
    char path[96], retry[16];
    snprintf(path, sizeof path, "/performances/%lld/events", w.perf);
    sse_open(&c[2], w.b.port, path, NULL, 0);
    ck_assert_msg(c[2].status == 503, "third stream: %d\n%s", c[2].status, c[2].head);
    ck_assert_msg(strstr(c[2].head, "\r\nRetry-After: ") != NULL, "%s", c[2].head);
    sse_close(&c[2]);
    /* a stream that ends frees its place (the client left: the server hears it) */
    sse_close(&c[0]);
    uint64_t end = th_now_ms() + 3000;
    for (;;) {
        sse_open(&c[3], w.b.port, path, NULL, 0);
        if (c[3].status == 200 || th_now_ms() > end)
            break;
        sse_close(&c[3]);
        th_sleep_ms(50);
    }
    ck_assert_int_eq(c[3].status, 200);
    sse_close(&c[3]);
    sse_close(&c[1]);
    (void)retry;
    world_down(&w);
}
END_TEST

START_TEST(events_stop)
{
    world w;
    sse c[3];
    world_up(&w, NULL);
    for (int i = 0; i < 3; i++)
        sse_subscribe(&c[i], w.b.port, w.perf, NULL, i == 2 ? 4096 : 0);
    uint64_t t0 = th_now_ms();
    th_signal(w.b.pid, SIGTERM);
    int st = th_wait_exit(w.b.pid, 5000);
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(st != -1, "reserved B did not exit within 5 s of SIGTERM with 3 streams");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
    ck_assert_msg(took < 3000, "SIGTERM to exit took %llu ms", (unsigned long long)took);
    w.b.pid = 0;
    for (int i = 0; i < 2; i++) {
        while (!c[i].ended && sse_fill(&c[i], 1000))
            ;
        ck_assert_msg(c[i].ended || c[i].eof, "stream %d not ended", i);
        sse_close(&c[i]);
    }
    sse_close(&c[2]);
    world_down(&w);
}
END_TEST

/* A in lockd mode (the fence path of rs_book: the capacity is taken before the seats are
 * written), B in db mode subscribed: the same events. */
START_TEST(events_lockd)
{
    world w;
    th_redis redis = {0};
    th_lockd lockd;
    sse c;
    char addr[32];
    ck_assert(th_redis_start(&redis));
    ck_assert(th_lockd_start(&lockd, &redis, 1, NULL));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", lockd.port);
    world_up_a(&w, NULL, addr);
    sse_subscribe(&c, w.b.port, w.perf, NULL, 0);
    int seats[] = {4, 9};
    book_then_cancel(&w, &c, 2, seats, 2);
    sse_close(&c);
    world_down(&w);
}
END_TEST

/* ---- the seat map's cache (rs_seatmap) ---- */

/* A's seat map of w's performance (owned) and the counter name of A's /metrics. */
static json_t *seat_map(const world *w, const th_reserved *s)
{
    char path[64];
    th_http_resp r;
    snprintf(path, sizeof path, "/performances/%lld/seats", w->perf);
    rat_req_ok(s, "GET", path, NULL, 200, &r);
    json_t *seats = json_incref(json_object_get(r.json, "seats"));
    ck_assert_int_eq((int)json_array_size(seats), N_SEATS);
    th_http_resp_free(&r);
    return seats;
}

static long long metric(const th_reserved *s, const char *name)
{
    th_http_resp r;
    rat_req_ok(s, "GET", "/metrics", NULL, 200, &r);
    char key[96];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(r.body, key);
    ck_assert_msg(at != NULL, "no %s in /metrics", name);
    long long v = atoll(at + strlen(key));
    th_http_resp_free(&r);
    return v;
}

/* Seat i of a map: available, held, price. */
static void expect_seat(json_t *seats, int i, bool available, bool held, long long price)
{
    json_t *seat = json_array_get(seats, (size_t)i);
    ck_assert_msg(json_is_true(json_object_get(seat, "available")) == available,
                  "seat %d: available should be %d", i, available);
    ck_assert_msg(json_is_true(json_object_get(seat, "held")) == held, "seat %d: held should be %d",
                  i, held);
    ck_assert_int_eq(rat_jint(seat, "price"), price);
}

/* A keeps the map; every change made elsewhere shows in A's next answer: a booking and a
 * cancel through B, prices patched through B, a hold written straight into the database
 * by a writer that is no reserved at all; an unchanged map comes from the cache, a map
 * whose seats changed is patched from their seat events, and new prices build it again. */
START_TEST(events_seatmap_cache)
{
    world w;
    world_up(&w, NULL);
    json_t *m1 = seat_map(&w, &w.a);
    long long misses = metric(&w.a, "reserved_seatmap_cache_misses_total");
    long long hits = metric(&w.a, "reserved_seatmap_cache_hits_total");
    json_t *m2 = seat_map(&w, &w.a);
    ck_assert(json_equal(m1, m2));
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_hits_total"), hits + 1);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_misses_total"), misses);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_entries"), 1);
    ck_assert_int_gt(metric(&w.a, "reserved_seatmap_cache_bytes"), 0);
    json_decref(m1);
    json_decref(m2);

    /* a booking through B: A's next map shows it, patched from its seat event (no
     * build), and is the map B builds; the one after is a hit again */
    int seats[] = {3};
    long long res = 0;
    ck_assert_int_eq(book(&w, &w.b, 1, seats, 1, &res), 201);
    long long patches = metric(&w.a, "reserved_seatmap_cache_patches_total");
    json_t *m = seat_map(&w, &w.a);
    expect_seat(m, 3, false, false, 100);
    expect_seat(m, 4, true, false, 100);
    json_t *built = seat_map(&w, &w.b);
    ck_assert(json_equal(m, built));
    json_decref(built);
    json_decref(m);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_misses_total"), misses);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_patches_total"), patches + 1);
    hits = metric(&w.a, "reserved_seatmap_cache_hits_total");
    json_decref(seat_map(&w, &w.a));
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_hits_total"), hits + 1);

    /* its cancel through B */
    char path[64];
    th_http_resp r;
    snprintf(path, sizeof path, "/reservations/%lld", res);
    rat_req_ok(&w.b, "DELETE", path, NULL, 200, &r);
    th_http_resp_free(&r);
    m = seat_map(&w, &w.a);
    expect_seat(m, 3, true, false, 100);
    json_decref(m);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_patches_total"), patches + 2);

    /* prices are no seat event: the patch below must build the map again */
    misses = metric(&w.a, "reserved_seatmap_cache_misses_total");

    /* prices patched through B (no seat changes state: no seat event) */
    snprintf(path, sizeof path, "/performances/%lld", w.perf);
    rat_req_ok(&w.b, "PATCH", path, "{\"normalPrice\":120,\"vipPrice\":300}", 200, &r);
    th_http_resp_free(&r);
    m = seat_map(&w, &w.a);
    expect_seat(m, 0, true, false, 120);
    expect_seat(m, N_SEATS - 1, true, false, 300);
    json_decref(m);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_misses_total"), misses + 1);

    /* a hold written by SQL, then freed by SQL */
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH h AS (INSERT INTO holds (performance_id, user_id, expires_at) VALUES "
             "(%lld, %lld, now() + interval '1 hour') RETURNING id) "
             "INSERT INTO hold_seats (hold_id, performance_id, seat_id) SELECT h.id, %lld, %lld "
             "FROM h",
             w.perf, w.users[2], w.perf, w.seats[5]);
    db_ok(w.db, sql);
    m = seat_map(&w, &w.a);
    expect_seat(m, 5, false, true, 120);
    json_decref(m);
    snprintf(sql, sizeof sql,
             "WITH s AS (UPDATE hold_seats SET active = false WHERE performance_id = %lld "
             "RETURNING hold_id) UPDATE holds SET status = 'RELEASED', ended_at = now() "
             "WHERE id IN (SELECT hold_id FROM s)",
             w.perf);
    db_ok(w.db, sql);
    m = seat_map(&w, &w.a);
    expect_seat(m, 5, true, false, 120);
    json_decref(m);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_patches_total"), patches + 4);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_misses_total"), misses + 1);

    /* two reads at once after a booking: both deltas are sent from the same top (held back
     * by a lock on seat_events until both wait), the first answer patches the map, the
     * second finds it already there and answers it: no build */
    int seven[] = {7};
    ck_assert_int_eq(book(&w, &w.b, 1, seven, 1, &res), 201);
    misses = metric(&w.a, "reserved_seatmap_cache_misses_total");
    patches = metric(&w.a, "reserved_seatmap_cache_patches_total");
    hits = metric(&w.a, "reserved_seatmap_cache_hits_total");
    PGconn *watch = db_connect(&w.pg);
    db_ok(w.db, "BEGIN; LOCK TABLE seat_events IN ACCESS EXCLUSIVE MODE");
    snprintf(path, sizeof path, "/performances/%lld/seats", w.perf);
    int fd[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_ge(fd[i] = th_http_send(w.a.port, "GET", path, NULL, NULL, 0), 0);
    long long waiting = 0;
    for (int i = 0; i < 500 && waiting < 2; i++) {
        waiting = db_int(watch, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a "
                                "ON a.pid = l.pid WHERE l.relation = 'seat_events'::regclass "
                                "AND NOT l.granted AND a.query LIKE 'SELECT $2::bigint, v.key%'");
        if (waiting < 2)
            th_sleep_ms(10);
    }
    ck_assert_int_eq(waiting, 2);
    db_ok(w.db, "COMMIT");
    PQfinish(watch);
    for (int i = 0; i < 2; i++) {
        th_http_recv(fd[i], &r);
        ck_assert_int_eq(r.status, 200);
        expect_seat(json_object_get(r.json, "seats"), 7, false, false, 120);
        th_http_resp_free(&r);
    }
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_misses_total"), misses);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_patches_total"), patches + 1);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_hits_total"), hits + 1);

    /* a performance that does not exist: 404, nothing kept */
    rat_req_ok(&w.a, "GET", "/performances/999999/seats", NULL, 404, &r);
    th_http_resp_free(&r);
    ck_assert_int_eq(metric(&w.a, "reserved_seatmap_cache_entries"), 1);
    world_down(&w);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"events_other_server", events_other_server},
        {"events_cancel", events_cancel},
        {"events_only_committed", events_only_committed},
        {"events_resume", events_resume},
        {"events_keepalive", events_keepalive},
        {"events_slow_reader_dropped", events_slow_reader_dropped},
        {"events_cap", events_cap},
        {"events_stop", events_stop},
        {"events_lockd", events_lockd},
        {"events_seatmap_cache", events_seatmap_cache},
    };
    return th_check_main("reserved_events", cases, sizeof cases / sizeof cases[0], 120, argc, argv);
}
