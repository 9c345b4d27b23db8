/*
 * test_edge: the HTTP edge of the real reserved (issue 13 §3, SPEC §6a "HTTP limits"),
 * against a real PostgreSQL started by the harness, in --lock-mode db with no payment
 * step, over raw sockets (what a hostile or old client sends):
 *   big_header       a 64 MiB header line: 431 or closed, RSS bounded, others served
 *   slowloris        a head trickling a line every 200 ms ends at limits.header_timeout_ms
 *   emfile           out of descriptors, reserved pauses accept (CPU from /proc stays low,
 *                    few log lines) and serves again once some close
 *   max_connections  beyond limits.max_connections accept waits until one closes
 *   half_close       a client that shuts down its sending side after its request is
 *                    answered
 *   json_errors      what evhttp answered with HTML pages (or an empty 500) gets JSON
 *   config           the new keys' validation; lock.auth hidden by --check-config
 * One Check case per claim, registered with ctest as rapi_edge_<claim> (CK_RUN_CASE).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rat.h"

/* reserved in db mode with these extra limits ("" for none) at this log level. */
static void edge_start(th_reserved *s, th_pg *pg, const char *limits, const char *level)
{
    char yaml[2048];
    rat_pg_start(pg);
    snprintf(yaml, sizeof yaml,
             "database: \"%s\"\nlock: {mode: db}\nlog: {level: %s}\nlimits: {max_body_bytes: "
             "65536%s%s}\n",
             pg->conninfo, level, limits[0] ? ", " : "", limits);
    th_reserved_spawn_yaml(s, yaml);
    th_reserved_wait_up(s);
}

static int conn_open(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    ck_assert_msg(send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n, "send: %s", strerror(errno));
}

static bool readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1;
}

/* The answer must be a SPEC §6 JSON error with this status and code. */
static void expect_json_error(const th_http_resp *r, const char *what, int status, const char *code)
{
    char ctype[128];
    ck_assert_msg(r->status == status, "%s: status %d, want %d: %s", what, r->status, status,
                  r->raw ? r->raw : "(no answer)");
    ck_assert_msg(th_http_header(r, "Content-Type", ctype, sizeof ctype) &&
                      strncmp(ctype, "application/json", 16) == 0,
                  "%s: not JSON: %s", what, r->raw);
    ck_assert_msg(r->json != NULL, "%s: body is not JSON: %s", what, r->raw);
    const char *got = th_http_error_code(r);
    ck_assert_msg(got != NULL && strcmp(got, code) == 0, "%s: code %s, want %s: %s", what,
                  got ? got : "(none)", code, r->body);
}

/* One raw request on a new connection; the answer read to EOF (bounded). */
static void raw_request(const th_reserved *s, const char *bytes, size_t len, th_http_resp *r)
{
    int fd = conn_open(s->port);
    ck_assert_msg(send(fd, bytes, len, MSG_NOSIGNAL) == (ssize_t)len, "send: %s", strerror(errno));
    th_http_finish(fd, r, 5000);
}

static long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* utime + stime of pid in clock ticks (/proc/<pid>/stat fields 14 and 15). */
static unsigned long long proc_cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    ck_assert_ptr_nonnull(p);
    unsigned long long ut = 0, st = 0;
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
    return ut + st;
}

static int proc_fds(pid_t pid)
{
    char path[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int log_lines_with(const char *log, const char *needle)
{
    char line[4096];
    int n = 0;
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Another client is served while the edge is under attack. */
static void other_client_served(const th_reserved *s)
{
    th_http_resp r;
    rat_req(s, "GET", "/venues/999999", NULL, &r);
    ck_assert_msg(r.status == 404, "another client: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
}

/* ---- big_header ---- */

START_TEST(big_header)
{
    th_pg pg;
    th_reserved s;
    enum { CHUNK = 64 * 1024, TOTAL = 64 * 1024 * 1024 };
    static char chunk[CHUNK];

    edge_start(&s, &pg, "", "info");
    other_client_served(&s);
    long before = proc_rss_kb(s.pid);
    memset(chunk, 'a', sizeof chunk);
    int fd = conn_open(s.port);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    size_t sent = 0;
    long peak = before;
    while (sent < TOTAL && !readable(fd, 0)) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server stopped reading (or closed) */
        sent += (size_t)n;
        if (sent % (1024 * 1024) < CHUNK) {
            long now = proc_rss_kb(s.pid);
            peak = now > peak ? now : peak;
        }
    }
    other_client_served(&s);
    long after = proc_rss_kb(s.pid);
    peak = after > peak ? after : peak;
    ck_assert_msg(peak - before < 16 * 1024, "RSS %ld kB -> peak %ld kB after %zu header bytes",
                  before, peak, sent);
    ck_assert_msg(sent < TOTAL, "reserved read all %zu bytes of one header line", sent);
    /* 431, or the connection closed (a reset may come before the answer can be read) */
    th_http_resp r;
    th_http_finish(fd, &r, 3000);
    if (r.status != 0)
        expect_json_error(&r, "64 MiB header", 431, "HEADERS_TOO_LARGE");
    th_http_resp_free(&r);
    other_client_served(&s);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- slowloris ---- */

START_TEST(slowloris)
{
    th_pg pg;
    th_reserved s;

    edge_start(&s, &pg, "header_timeout_ms: 1000", "info");
    uint64_t t0 = th_now_ms();
    int fd = conn_open(s.port);
    send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    bool ended = false;
    int lines = 0;
    while (th_now_ms() - t0 < 6000) {
        if (readable(fd, 200)) {
            ended = true;
            break;
        }
        if (lines == 2)
            other_client_served(&s);
        if (send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL) != 8) {
            ended = true;
            break;
        }
        lines++;
    }
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(ended, "a head trickling a line every 200 ms was still open after %llu ms",
                  (unsigned long long)took);
    ck_assert_msg(took < 2500, "the head's deadline is 1000 ms; ended after %llu ms",
                  (unsigned long long)took);
    th_http_resp r;
    th_http_finish(fd, &r, 3000);
    if (r.status != 0)
        expect_json_error(&r, "slow head", 408, "REQUEST_TIMEOUT");
    th_http_resp_free(&r);
    /* a connection that sends nothing at all ends the same way */
    t0 = th_now_ms();
    fd = conn_open(s.port);
    ck_assert_msg(readable(fd, 3000), "an idle connection was still open after 3 s");
    th_http_finish(fd, &r, 3000);
    ck_assert_msg(th_now_ms() - t0 >= 900, "ended after %llu ms",
                  (unsigned long long)(th_now_ms() - t0));
    if (r.status != 0)
        expect_json_error(&r, "idle connection", 408, "REQUEST_TIMEOUT");
    th_http_resp_free(&r);
    /* a head sent at once is unaffected, and so is a kept-alive connection's next one */
    fd = conn_open(s.port);
    send_str(fd, "GET /venues/1 HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert(readable(fd, 3000));
    char buf[4096];
    ck_assert_int_gt(recv(fd, buf, sizeof buf, 0), 0);
    th_sleep_ms(1500); /* longer than the deadline: the next head's starts at its first byte */
    send_str(fd, "GET /venues/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    th_http_finish(fd, &r, 3000);
    ck_assert_msg(r.status == 404, "kept-alive second request: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- emfile ---- */

START_TEST(emfile)
{
    th_pg pg;
    th_reserved s;
    enum { N = 40 };
    int fds[N];
    struct rlimit old, low;

    edge_start(&s, &pg, "", "info");
    /* the database pool first: its connections need descriptors too */
    int fds_now = proc_fds(s.pid), stable = 0;
    for (uint64_t end = th_now_ms() + 5000; stable < 10 && th_now_ms() < end; th_sleep_ms(50)) {
        int n = proc_fds(s.pid);
        stable = n == fds_now ? stable + 1 : 0;
        fds_now = n;
    }
    other_client_served(&s);
    ck_assert_int_eq(prlimit(s.pid, RLIMIT_NOFILE, NULL, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)proc_fds(s.pid) + 6;
    ck_assert_int_eq(prlimit(s.pid, RLIMIT_NOFILE, &low, NULL), 0);
    int accept_lines = log_lines_with(s.log, "accept");
    for (int i = 0; i < N; i++)
        fds[i] = conn_open(s.port); /* the kernel's backlog takes what reserved cannot */
    th_sleep_ms(300);
    unsigned long long c0 = proc_cpu_ticks(s.pid);
    th_sleep_ms(2000);
    unsigned long long c1 = proc_cpu_ticks(s.pid);
    double cpu_s = (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK);
    int lines = log_lines_with(s.log, "accept") - accept_lines;
    ck_assert_msg(cpu_s < 0.3, "reserved used %.2f s of CPU in 2 s out of descriptors", cpu_s);
    ck_assert_msg(lines <= 5, "%d accept log lines in 2 s", lines);
    /* some close: the ones waiting in the backlog are served */
    for (int i = 0; i < N - 5; i++)
        close(fds[i]);
    th_http_resp r;
    th_sleep_ms(300);
    if (send(fds[N - 1], "G", 1, MSG_NOSIGNAL) != 1)
        th_dump_log(s.log, 30);
    send_str(fds[N - 1], "ET /venues/999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    th_http_finish(fds[N - 1], &r, 5000);
    ck_assert_msg(r.status == 404, "after some closed: %d %s", r.status, r.raw ? r.raw : "");
    th_http_resp_free(&r);
    for (int i = N - 5; i < N - 1; i++)
        close(fds[i]);
    /* the exit (and its leak check) needs descriptors again */
    ck_assert_int_eq(prlimit(s.pid, RLIMIT_NOFILE, &old, NULL), 0);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- max_connections ---- */

START_TEST(max_connections)
{
    th_pg pg;
    th_reserved s;
    int idle[3];

    edge_start(&s, &pg, "max_connections: 3, header_timeout_ms: 20000", "debug");
    th_sleep_ms(200); /* the start-up probe's connection is closed */
    for (int i = 0; i < 3; i++)
        idle[i] = conn_open(s.port);
    th_sleep_ms(200);
    int fd = conn_open(s.port); /* completes in the kernel's backlog */
    send_str(fd, "GET /venues/999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ck_assert_msg(!readable(fd, 700), "a 4th connection was served with max_connections 3");
    close(idle[0]);
    th_http_resp r;
    th_http_finish(fd, &r, 3000);
    ck_assert_msg(r.status == 404, "once one closed: %d %s", r.status, r.raw ? r.raw : "");
    th_http_resp_free(&r);
    close(idle[1]);
    close(idle[2]);
    th_sleep_ms(100);
    other_client_served(&s);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- half_close ---- */

START_TEST(half_close)
{
    th_pg pg;
    th_reserved s;
    char req[512];

    edge_start(&s, &pg, "", "debug");
    th_reserved_admin(&s, pg.conninfo);
    long long venue = rat_post_id(&s, "/venues",
                                  json_pack("{s:s,s:[{s:s,s:i,s:s}]}", "name", "Half", "seats",
                                            "row", "A", "number", 1, "type", "NORMAL"));
    /* HTTP/1.1 without Connection: close, then shutdown(SHUT_WR), as "nc -N" does; the
     * request is held in flight so the close is seen before the answer */
    PGconn *holder = rat_lock_venues(pg.conninfo);
    snprintf(req, sizeof req, "GET /venues/%lld HTTP/1.1\r\nHost: x\r\n\r\n", venue);
    int fd = conn_open(s.port);
    send_str(fd, req);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    th_sleep_ms(500);
    rat_unlock_venues(holder);
    th_http_resp r;
    th_http_finish(fd, &r, 5000);
    ck_assert_msg(r.status == 200, "half-closed client: %d %s", r.status, r.raw ? r.raw : "");
    ck_assert_str_eq(rat_jstr(r.json, "name"), "Half");
    th_http_resp_free(&r);
    /* HTTP/1.0 the same, and a write (POST) too */
    fd = conn_open(s.port);
    const char *body =
        "{\"name\":\"Half2\",\"seats\":[{\"row\":\"A\",\"number\":1,\"type\":\"NORMAL\"}]}";
    snprintf(req, sizeof req,
             "POST /venues HTTP/1.0\r\nAuthorization: Bearer %s\r\nContent-Type: "
             "application/json\r\nContent-Length: %zu\r\n\r\n%s",
             th_admin_token(), strlen(body), body);
    holder = rat_lock_venues(pg.conninfo);
    send_str(fd, req);
    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    th_sleep_ms(500);
    rat_unlock_venues(holder);
    th_http_finish(fd, &r, 5000);
    ck_assert_msg(r.status == 201, "half-closed POST: %d %s", r.status, r.raw ? r.raw : "");
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- json_errors ---- */

START_TEST(json_errors)
{
    th_pg pg;
    th_reserved s;
    th_http_resp r;
    static char big[8193 + 1];

    edge_start(&s, &pg, "", "debug");
    th_reserved_admin(&s, pg.conninfo); /* for /metrics */
    struct {
        const char *what, *bytes;
        int status;
        const char *code;
    } cases[] = {
        {"malformed request line", "GARBAGE\r\n\r\n", 400, "BAD_REQUEST"},
        {"no version", "GET /healthz\r\n\r\n", 400, "BAD_REQUEST"},
        {"non-UTF-8 path byte", "GET /venues/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         400, "BAD_REQUEST"},
        {"non-UTF-8 path (overlong)",
         "GET /\xc0\xaf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "BAD_REQUEST"},
        {"malformed header line",
         "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\nConnection: close\r\n\r\n", 400,
         "BAD_REQUEST"},
        {"malformed Content-Length",
         "POST /venues HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\nConnection: close\r\n\r\n",
         400, "BAD_REQUEST"},
        {"body far over max_body_bytes",
         "POST /venues HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: "
         "close\r\n\r\n",
         413, "TOO_LARGE"},
        {"unserved method", "TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 501,
         "NOT_IMPLEMENTED"},
        {"Expect other than 100-continue",
         "POST /venues HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}", 417,
         "EXPECTATION_FAILED"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        raw_request(&s, cases[i].bytes, strlen(cases[i].bytes), &r);
        expect_json_error(&r, cases[i].what, cases[i].status, cases[i].code);
        th_http_resp_free(&r);
        other_client_served(&s);
    }
    /* a head of limits.max_header_bytes + 1 bytes (all of it read: the answer is not lost
     * to a reset) */
    const char *start = "GET /healthz HTTP/1.1\r\nX-A: ";
    memset(big, 'a', sizeof big - 1);
    memcpy(big, start, strlen(start));
    raw_request(&s, big, sizeof big - 1, &r);
    expect_json_error(&r, "head over max_header_bytes", 431, "HEADERS_TOO_LARGE");
    th_http_resp_free(&r);
    /* exactly at the limit is served */
    char at[8192 + 1];
    const char *tail = "\r\nConnection: close\r\n\r\n";
    memset(at, 'a', sizeof at - 1);
    memcpy(at, start, strlen(start));
    memcpy(at + sizeof at - 1 - strlen(tail), tail, strlen(tail));
    raw_request(&s, at, sizeof at - 1, &r);
    ck_assert_msg(r.status == 200 || r.status == 503, "head of 8192 bytes: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    /* the metrics count them */
    rat_req_ok(&s, "GET", "/metrics", NULL, 200, &r);
    ck_assert_msg(strstr(r.body, "reserved_http_heads_refused_total{reason=\"bad_target\"} 2\n"),
                  "%s", r.body);
    th_http_resp_free(&r);
    th_reserved_stop_clean(&s);
}
END_TEST

/* ---- config ---- */

/* reserved --check-config on yaml exits 2 naming the file, line and key. */
static void expect_config_error(const char *yaml, const char *key, int line)
{
    char out[8192], path[512], where[600], what[128];
    snprintf(path, sizeof path, "%s/edge-%s.yaml", th_tmpdir(), key);
    rat_write_file(path, yaml);
    int rc = th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL);
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    snprintf(what, sizeof what, "key '%s'", key);
    ck_assert_msg(rc == 2 && strstr(out, where) && strstr(out, what),
                  "%s: exit %d, want 2 with '%s' and '%s': %s", key, rc, where, what, out);
}

START_TEST(config)
{
    char out[8192], path[512];
    expect_config_error("log: {level: info}\nlimits: {max_header_bytes: 100}\n",
                        "limits.max_header_bytes", 2);
    expect_config_error("limits:\n  header_timeout_ms: 0\n", "limits.header_timeout_ms", 2);
    expect_config_error("limits: {max_connections: 0}\n", "limits.max_connections", 1);
    expect_config_error("lock: {auth: [a, b]}\n", "lock.auth", 1);
    /* a booking must not wait for its lock longer than the reconciler waits before it
     * cancels its payment attempt (only with a payment step) */
    expect_config_error("payment: {url: \"http://127.0.0.1:9\"}\nlock: {wait_ms: 5000}\n"
                        "reconcile: {after_ms: 5000}\n",
                        "lock.wait_ms", 2);
    expect_config_error("payment: {url: \"http://127.0.0.1:9\"}\nreconcile: {after_ms: 1000}\n",
                        "reconcile.after_ms", 2);
    snprintf(path, sizeof path, "%s/edge-nopay.yaml", th_tmpdir());
    rat_write_file(path, "lock: {wait_ms: 5000}\nreconcile: {after_ms: 1000}\n");
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL), 0);
    /* lock.auth is a secret: --check-config shows it hidden; the defaults of the limits */
    snprintf(path, sizeof path, "%s/edge-auth.yaml", th_tmpdir());
    rat_write_file(path, "lock: {mode: lockd, auth: \"s3cret-edge\"}\n");
    int rc = th_reserved_run(out, sizeof out, "--config", path, "--check-config", NULL);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "s3cret-edge") == NULL, "the secret is printed: %s", out);
    ck_assert_msg(strstr(out, "(hidden)") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "limits.max_header_bytes = 8192\n") &&
                      strstr(out, "limits.header_timeout_ms = 10000\n") &&
                      strstr(out, "limits.max_connections = 4096\n") &&
                      strstr(out, "lock.auth = (hidden)\n"),
                  "%s", out);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"edge_big_header", big_header}, {"edge_slowloris", slowloris},
        {"edge_emfile", emfile},         {"edge_max_connections", max_connections},
        {"edge_half_close", half_close}, {"edge_json_errors", json_errors},
        {"edge_config", config},
    };
    return th_check_main("reserved_edge", cases, sizeof cases / sizeof cases[0], 120, argc, argv);
}
