/*
 * test_chaos_tools: black-box tests of the chaos suite's own tools (issue 4):
 * build/bin/chaos_proxy in front of a REAL redis-server (RESP PING/ECHO make the bytes
 * checkable in both directions), and build/bin/chaos_load against a real reserved on a
 * real PostgreSQL (--lock-mode db), and with a real lockd + Redis for the counter
 * workload. One Check case per claim, registered with ctest as cxtools_<case>
 * (CK_RUN_CASE). Every tool run here must exit 0 on SIGTERM (under ASan: no leaks).
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
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
#include "th_http.h"
#include "th_reserved.h"

/* ---- helpers: running tools ---- */

/* Runs a tool to its end (argv NULL-terminated after the program name); returns the
 * exit code, -1 when it did not exit normally within timeout_ms. */
static int run_tool(const char *log, int timeout_ms, const char *prog, ...)
{
    char *argv[48];
    size_t n = 0;
    va_list ap;
    argv[n++] = (char *)th_bin(prog);
    va_start(ap, prog);
    for (char *a = va_arg(ap, char *); a && n < 46; a = va_arg(ap, char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = th_spawn(argv, log);
    ck_assert_int_gt(pid, 0);
    int st = th_wait_exit(pid, timeout_ms);
    if (st == -1) {
        th_stop(pid, false, 2000);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* ---- helpers: the proxy ---- */

typedef struct px {
    pid_t pid;
    int port, ctl;
    char log[512];
} px;

static void px_start(px *p, int upstream, const char *extra1, const char *extra2)
{
    char listen[64], up[64], ctl[64];
    memset(p, 0, sizeof(*p));
    p->port = th_free_port();
    p->ctl = th_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
    snprintf(up, sizeof up, "127.0.0.1:%d", upstream);
    snprintf(ctl, sizeof ctl, "127.0.0.1:%d", p->ctl);
    snprintf(p->log, sizeof p->log, "%s/proxy-%d.log", th_tmpdir(), p->port);
    char *argv[] = {(char *)th_bin("chaos_proxy"),
                    "--listen",
                    listen,
                    "--upstream",
                    up,
                    "--control",
                    ctl,
                    "--seed",
                    "7",
                    "--log-level",
                    "debug",
                    (char *)extra1,
                    (char *)extra2,
                    NULL};
    p->pid = th_spawn(argv, p->log);
    ck_assert_int_gt(p->pid, 0);
    if (!th_wait_port(p->port, 5000) || !th_wait_port(p->ctl, 5000)) {
        th_dump_log(p->log, 30);
        ck_abort_msg("chaos_proxy did not listen");
    }
}

static void px_stop_clean(px *p)
{
    int st = th_stop(p->pid, true, 5000);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        th_dump_log(p->log, 30);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "chaos_proxy: SIGTERM gave status 0x%x (want exit 0, no leaks)", st);
}

/* One control command on a fresh connection; the reply line into out. */
static void px_ctl(const px *p, const char *cmd, char *out, size_t outlen)
{
    th_conn c;
    ck_assert(th_connect(&c, p->ctl));
    ck_assert(th_send(&c, "%s", cmd));
    ck_assert_msg(th_recv(&c, out, outlen, 3000), "no reply to '%s'", cmd);
    th_close(&c);
}

static void px_ok(const px *p, const char *cmd)
{
    char r[512];
    px_ctl(p, cmd, r, sizeof r);
    ck_assert_msg(strncmp(r, "OK", 2) == 0, "'%s' -> '%s'", cmd, r);
}

/* A "key=value" figure of the stats line. */
static long long px_stat(const px *p, const char *key)
{
    char r[512], pat[64];
    px_ctl(p, "stats", r, sizeof r);
    snprintf(pat, sizeof pat, " %s=", key);
    const char *at = strstr(r, pat);
    ck_assert_msg(at != NULL, "no %s in '%s'", key, r);
    return atoll(at + strlen(pat));
}

/* Reads exactly n bytes (or fewer on timeout/close); returns how many came. */
static size_t recv_n(int fd, char *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (got < n) {
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static void send_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        buf += w;
        n -= (size_t)w;
    }
}

/* PING through c, the reply must be +PONG within timeout_ms; returns the ms it took. */
static uint64_t ping_ms(th_conn *c, int timeout_ms)
{
    char line[64];
    uint64_t t0 = th_now_us();
    ck_assert(th_send_raw(c, "PING\r\n", 6));
    ck_assert_msg(th_recv(c, line, sizeof line, timeout_ms), "no PONG");
    ck_assert_str_eq(line, "+PONG");
    return (th_now_us() - t0) / 1000;
}

static void start_redis(th_redis *r)
{
    memset(r, 0, sizeof(*r));
    ck_assert_msg(th_redis_start(r), "cannot start redis-server");
}

/* ---- proxy cases ---- */

START_TEST(proxy_forward)
{
    th_redis r;
    px p;
    th_conn a, b;
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    long long before = px_stat(&p, "connections"); /* th_wait_port's probe is one */
    ck_assert(th_connect(&a, p.port));
    ck_assert(th_connect(&b, p.port));
    ping_ms(&a, 2000);
    ping_ms(&b, 2000);
    /* 200 KB each way: ECHO returns the payload as a bulk string */
    size_t n = 200000;
    char *payload = malloc(n), *reply = malloc(n + 64);
    for (size_t i = 0; i < n; i++)
        payload[i] = (char)('a' + i % 26);
    char head[64];
    int hl = snprintf(head, sizeof head, "*2\r\n$4\r\nECHO\r\n$%zu\r\n", n);
    send_all(a.fd, head, (size_t)hl);
    send_all(a.fd, payload, n);
    send_all(a.fd, "\r\n", 2);
    char want_head[32];
    int wl = snprintf(want_head, sizeof want_head, "$%zu\r\n", n);
    size_t total = (size_t)wl + n + 2;
    ck_assert_uint_eq(recv_n(a.fd, reply, total, 5000), total);
    ck_assert(memcmp(reply, want_head, (size_t)wl) == 0);
    ck_assert(memcmp(reply + wl, payload, n) == 0);
    ck_assert_int_eq(px_stat(&p, "connections"), before + 2);
    ck_assert_int_eq(px_stat(&p, "active"), 2);
    ck_assert_int_ge(px_stat(&p, "bytes_up"), (long long)n);
    ck_assert_int_ge(px_stat(&p, "bytes_down"), (long long)n);
    /* the client closing closes the upstream side too */
    th_close(&a);
    th_close(&b);
    for (int i = 0; i < 50 && px_stat(&p, "active") != 0; i++)
        th_sleep_ms(20);
    ck_assert_int_eq(px_stat(&p, "active"), 0);
    free(payload);
    free(reply);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_latency)
{
    th_redis r;
    px p;
    th_conn c;
    char line[64];
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    ck_assert(th_connect(&c, p.port));
    uint64_t base = ping_ms(&c, 2000);
    ck_assert_uint_lt(base, 100);
    px_ok(&p, "latency 150");
    /* the delay applies to each direction: a round trip takes at least twice it */
    uint64_t slow = ping_ms(&c, 3000);
    ck_assert_msg(slow >= 300, "round trip %llu ms under latency 150", (unsigned long long)slow);
    ck_assert_msg(slow < 1500, "round trip %llu ms", (unsigned long long)slow);
    /* jitter never reorders: 20 separate writes come back in order */
    px_ok(&p, "latency 20 40");
    for (int i = 0; i < 20; i++) {
        char cmd[64];
        int n = snprintf(cmd, sizeof cmd, "ECHO m%02d\r\n", i);
        ck_assert(th_send_raw(&c, cmd, (size_t)n));
        th_sleep_ms(3);
    }
    for (int i = 0; i < 20; i++) {
        char want[16];
        snprintf(want, sizeof want, "m%02d", i);
        ck_assert(th_recv(&c, line, sizeof line, 3000)); /* $3 */
        ck_assert(th_recv(&c, line, sizeof line, 3000));
        ck_assert_str_eq(line, want);
    }
    px_ok(&p, "latency 0");
    ck_assert_uint_lt(ping_ms(&c, 2000), 100);
    th_close(&c);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_drop)
{
    th_redis r;
    px p;
    th_conn a, b, c;
    char reply[256];
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    ck_assert(th_connect(&a, p.port));
    ck_assert(th_connect(&b, p.port));
    ping_ms(&a, 2000);
    ping_ms(&b, 2000);
    px_ctl(&p, "drop", reply, sizeof reply);
    ck_assert_str_eq(reply, "OK dropped 2");
    ck_assert_msg(th_wait_closed(&a, 1000), "dropped connection still open");
    ck_assert_msg(th_wait_closed(&b, 1000), "dropped connection still open");
    /* a reset, not an orderly close: the next send or read fails with ECONNRESET */
    errno = 0;
    char tmp[8];
    ssize_t rr = recv(a.fd, tmp, sizeof tmp, 0);
    ck_assert_msg(rr <= 0, "data after drop");
    ck_assert_int_eq(px_stat(&p, "dropped"), 2);
    ck_assert_int_eq(px_stat(&p, "active"), 0);
    /* new connections go through again */
    ck_assert(th_connect(&c, p.port));
    ping_ms(&c, 2000);
    th_close(&a);
    th_close(&b);
    th_close(&c);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_blackhole)
{
    th_redis r;
    px p;
    th_conn a, b;
    char line[64];
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    ck_assert(th_connect(&a, p.port));
    ping_ms(&a, 2000);
    px_ok(&p, "blackhole on");
    ck_assert(th_send_raw(&a, "PING\r\n", 6));
    ck_assert_msg(!th_recv(&a, line, sizeof line, 600), "a reply crossed the blackhole");
    /* a new connection is accepted but hears nothing either */
    ck_assert(th_connect(&b, p.port));
    ck_assert(th_send_raw(&b, "ECHO held\r\n", 11));
    ck_assert_msg(!th_recv(&b, line, sizeof line, 300), "a reply crossed the blackhole");
    ck_assert_int_ge(px_stat(&p, "held_bytes"), 6 + 11);
    ck_assert_int_eq(px_stat(&p, "active"), 2);
    /* the partition ends: what was held is delivered, in order, nothing lost */
    uint64_t t0 = th_now_ms();
    px_ok(&p, "blackhole off");
    ck_assert(th_recv(&a, line, sizeof line, 2000));
    ck_assert_str_eq(line, "+PONG");
    ck_assert(th_recv(&b, line, sizeof line, 2000));
    ck_assert_str_eq(line, "$4");
    ck_assert(th_recv(&b, line, sizeof line, 2000));
    ck_assert_str_eq(line, "held");
    ck_assert_uint_lt(th_now_ms() - t0, 1000);
    ck_assert_int_eq(px_stat(&p, "held_bytes"), 0);
    ping_ms(&a, 2000);
    th_close(&a);
    th_close(&b);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_refuse)
{
    th_redis r;
    px p;
    th_conn a, c;
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    ck_assert(th_connect(&a, p.port));
    ping_ms(&a, 2000);
    px_ok(&p, "refuse on");
    ck_assert(th_connect(&c, p.port)); /* the kernel accepts; the proxy closes at once */
    ck_assert_msg(th_wait_closed(&c, 1000), "refused connection stayed open");
    th_close(&c);
    ck_assert_int_eq(px_stat(&p, "refused"), 1);
    /* connections from before are not touched */
    ping_ms(&a, 2000);
    px_ok(&p, "reset");
    ck_assert(th_connect(&c, p.port));
    ping_ms(&c, 2000);
    th_close(&a);
    th_close(&c);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_overflow)
{
    th_redis r;
    px p;
    th_conn a;
    start_redis(&r);
    px_start(&p, r.port, "--max-buffer", "65536");
    ck_assert(th_connect(&a, p.port));
    ping_ms(&a, 2000);
    px_ok(&p, "blackhole on");
    /* a stuck direction may not grow without bound: over the cap the link is reset */
    size_t n = 256 * 1024;
    char *junk = calloc(1, n);
    memset(junk, 'x', n);
    ssize_t w = 0;
    for (size_t off = 0; off < n; off += (size_t)w) {
        w = send(a.fd, junk + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
    }
    free(junk);
    ck_assert_msg(th_wait_closed(&a, 2000), "link over the cap not dropped");
    ck_assert_int_eq(px_stat(&p, "overflows"), 1);
    ck_assert_int_eq(px_stat(&p, "active"), 0);
    ck_assert_int_le(px_stat(&p, "held_bytes"), 0);
    th_close(&a);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_control)
{
    th_redis r;
    px p;
    char reply[512];
    static const char *const bad[] = {
        "",
        "bogus",
        "latency",
        "latency -1",
        "latency abc",
        "latency 1x",
        "latency 1 2 3",
        "latency 600001",
        "latency 5 -1",
        "blackhole",
        "blackhole maybe",
        "blackhole on off",
        "refuse yes",
        "refuse",
        "drop now",
        "stats x",
        "reset 1",
        "LATENCY 5",
        "a b c d e f",
    };
    start_redis(&r);
    px_start(&p, r.port, NULL, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        px_ctl(&p, bad[i], reply, sizeof reply);
        ck_assert_msg(strncmp(reply, "ERR ", 4) == 0, "'%s' -> '%s'", bad[i], reply);
    }
    /* nothing of it changed a fault */
    px_ctl(&p, "stats", reply, sizeof reply);
    ck_assert_msg(strstr(reply, "latency_ms=0 jitter_ms=0 blackhole=off refuse=off"), "%s", reply);
    /* several commands on one connection, CRLF accepted, replies in order */
    th_conn c;
    char line[512];
    ck_assert(th_connect(&c, p.ctl));
    ck_assert(th_send_raw(&c, "latency 10 5\r\nrefuse on\nrefuse off\n", 36));
    ck_assert(th_recv(&c, line, sizeof line, 2000));
    ck_assert_str_eq(line, "OK latency 10 5");
    ck_assert(th_recv(&c, line, sizeof line, 2000));
    ck_assert_str_eq(line, "OK refuse on");
    ck_assert(th_recv(&c, line, sizeof line, 2000));
    ck_assert_str_eq(line, "OK refuse off");
    /* an endless line: refused and the control connection closed */
    char big[3000];
    memset(big, 'l', sizeof big);
    ck_assert(th_send_raw(&c, big, sizeof big));
    ck_assert(th_recv(&c, line, sizeof line, 2000));
    ck_assert_str_eq(line, "ERR line too long");
    ck_assert(th_wait_closed(&c, 2000));
    th_close(&c);
    /* and the proxy goes on */
    px_ok(&p, "reset");
    th_conn d;
    ck_assert(th_connect(&d, p.port));
    ping_ms(&d, 2000);
    th_close(&d);
    px_stop_clean(&p);
}
END_TEST

START_TEST(proxy_cli)
{
    char log[512], ok[64], busy[64];
    snprintf(log, sizeof log, "%s/cli.log", th_tmpdir());
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--help", NULL), 0);
    ck_assert(file_contains(log, "usage: chaos_proxy"));
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--version", NULL), 0);
    snprintf(ok, sizeof ok, "127.0.0.1:%d", th_free_port());
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", NULL), 2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--bogus", NULL), 2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", ok, "--upstream", ok, NULL),
                     2); /* no --control */
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", "10.1.2.3:80", "--upstream", ok,
                              "--control", ok, NULL),
                     2);
    ck_assert(file_contains(log, "loopback addresses only"));
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", "127.0.0.1:0x", "--upstream",
                              ok, "--control", ok, NULL),
                     2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", ok, "--upstream", ok,
                              "--control", ok, "--max-buffer", "5", NULL),
                     2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", ok, "--upstream", ok,
                              "--control", ok, "--seed", "-1", NULL),
                     2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", ok, "--upstream", ok,
                              "--control", ok, "x", NULL),
                     2);
    /* a port already taken: a start-up failure, exit 1 */
    th_redis r;
    start_redis(&r);
    snprintf(busy, sizeof busy, "127.0.0.1:%d", r.port);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_proxy", "--listen", busy, "--upstream", ok,
                              "--control", ok, NULL),
                     1);
}
END_TEST

/* ---- chaos_load: command line ---- */

START_TEST(load_args)
{
    char log[512], out[512];
    snprintf(log, sizeof log, "%s/load-cli.log", th_tmpdir());
    snprintf(out, sizeof out, "%s/h.jsonl", th_tmpdir());
    ck_assert_int_eq(run_tool(log, 5000, "chaos_load", "--help", NULL), 0);
    ck_assert(file_contains(log, "usage: chaos_load"));
    ck_assert_int_eq(run_tool(log, 5000, "chaos_load", "--version", NULL), 0);
#define S    "--servers", "127.0.0.1:1"
#define BASE "--duration", "1", "--out", out, "--hot-perf", "1", "--users", "1:5"
    static const char *const names[] = {"no flags",
                                        "unknown flag",
                                        "no --out",
                                        "no --duration",
                                        "no --hot-perf",
                                        "no --users",
                                        "bad --users",
                                        "bad --users count",
                                        "bad --perfs",
                                        "empty --perfs item",
                                        "duration 0",
                                        "clients 0",
                                        "non-loopback server",
                                        "bad server",
                                        "lockd without --database",
                                        "negative seed",
                                        "stray argument",
                                        "bad log level",
                                        "missing value",
                                        "timeout too small"};
    int rcs[20];
    int k = 0;
    rcs[k++] = run_tool(log, 5000, "chaos_load", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--bogus", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, "--duration", "1", "--hot-perf", "1", "--users",
                        "1:5", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, "--out", out, "--hot-perf", "1", "--users",
                        "1:5", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, "--duration", "1", "--out", out, "--users",
                        "1:5", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, "--duration", "1", "--out", out, "--hot-perf",
                        "1", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--users", "5", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--users", "1:0", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--perfs", "2,x", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--perfs", "2,,3", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--duration", "0", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--clients", "0", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", "--servers", "192.168.1.1:80", BASE, NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", "--servers", "127.0.0.1", BASE, NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--lockd", "127.0.0.1:2", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--seed", "-3", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "extra", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--log-level", "loud", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--seed", NULL);
    rcs[k++] = run_tool(log, 5000, "chaos_load", S, BASE, "--timeout-ms", "1", NULL);
#undef S
#undef BASE
    for (int i = 0; i < k; i++)
        ck_assert_msg(rcs[i] == 2, "%s: exit %d, want 2", names[i], rcs[i]);
    /* a usage error writes no history */
    ck_assert_msg(access(out, F_OK) != 0, "a failed start created the history file");
}
END_TEST

START_TEST(load_now_ms)
{
    char log[512];
    snprintf(log, sizeof log, "%s/now.log", th_tmpdir());
    uint64_t before = th_now_ms();
    ck_assert_int_eq(run_tool(log, 5000, "chaos_load", "--now-ms", NULL), 0);
    uint64_t after = th_now_ms();
    FILE *f = fopen(log, "r");
    unsigned long long v = 0;
    char tail[8];
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%llu", &v), 1);
    ck_assert_msg(fscanf(f, "%7s", tail) == EOF, "more than one number printed");
    fclose(f);
    /* the same CLOCK_MONOTONIC as everything else: between our two readings */
    ck_assert_msg(v >= before && v <= after, "--now-ms %llu not in [%llu, %llu]", v,
                  (unsigned long long)before, (unsigned long long)after);
}
END_TEST

/* ---- chaos_load against the real system ---- */

static long long post_id(const th_reserved *s, const char *path, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    th_http_resp r;
    th_http_request(s->port, "POST", path, NULL, text, &r);
    ck_assert_msg(r.status == 201, "POST %s: %d %s", path, r.status, r.body ? r.body : "");
    long long id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    free(text);
    json_decref(body);
    return id;
}

/* A venue of n seats, two performances of it and 5 users; ids into perf[2], *user0. */
static void make_catalogue(const th_reserved *s, int n, long long perf[2], long long *user0)
{
    json_t *seats = json_array();
    for (int i = 1; i <= n; i++)
        json_array_append_new(seats, json_pack("{s:s,s:i,s:s}", "row", "A", "number", i, "type",
                                               i % 5 ? "NORMAL" : "VIP"));
    long long venue =
        post_id(s, "/venues", json_pack("{s:s,s:o}", "name", "Chaos", "seats", seats));
    for (int i = 0; i < 2; i++)
        perf[i] = post_id(s, "/performances",
                          json_pack("{s:I,s:s,s:s,s:i,s:i}", "venueId", (json_int_t)venue, "title",
                                    i ? "Other" : "Hot", "startsAt", "2027-03-01T19:00:00Z",
                                    "normalPrice", 10000, "vipPrice", 30000));
    for (int i = 0; i < 5; i++) {
        char email[64];
        snprintf(email, sizeof email, "u%d@chaos.test", i);
        long long id = th_signup(s->port, "U", email, NULL);
        if (i == 0)
            *user0 = id;
    }
}

/* reserved in db lock mode on the case's database, with no purchase limit in the way of
 * the load's 5 users, and the harness logged in as its admin (chaos_load books with the
 * admin's token for the users). */
static void start_reserved_cfg(th_reserved *s, const th_pg *pg, const char *extra)
{
    char path[512];
    snprintf(path, sizeof path, "%s/reserved.yaml", th_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("lock: {mode: db}\nlimits: {max_seats_per_user_per_performance: 1000}\n", f);
    fputs(extra, f);
    fclose(f);
    th_reserved_spawn(s, pg->conninfo, "--config", path, "--log-level", "debug", NULL);
    th_reserved_wait_up(s);
    th_reserved_admin(s, pg->conninfo);
}

static void start_reserved_admin(th_reserved *s, const th_pg *pg)
{
    start_reserved_cfg(s, pg, "");
}

/* Runs chaos_load against one server with the admin's token; returns its exit code. */
static int run_load(const th_reserved *s, const char *out, const char *seed, const char *duration,
                    const char *clients, const char *maxreq, const long long perf[2],
                    long long user0)
{
    char servers[64], hot[32], perfs[32], users[64], log[600], token[600];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", s->port);
    snprintf(hot, sizeof hot, "%lld", perf[0]);
    snprintf(perfs, sizeof perfs, "%lld", perf[1]);
    snprintf(users, sizeof users, "%lld:5", user0);
    snprintf(log, sizeof log, "%s.log", out);
    snprintf(token, sizeof token, "%s.token", out);
    FILE *f = fopen(token, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", th_admin_token());
    fclose(f);
    int rc = run_tool(log, 30000, "chaos_load", "--servers", servers, "--duration", duration,
                      "--seed", seed, "--out", out, "--clients", clients, "--hot-perf", hot,
                      "--perfs", perfs, "--users", users, "--token-file", token,
                      maxreq ? "--max-requests" : NULL, maxreq, NULL);
    if (rc != 0)
        th_dump_log(log, 30);
    return rc;
}

/* Reads the history: every line must be a JSON object; returns them as an array. */
static json_t *read_history(const char *path)
{
    FILE *f = fopen(path, "r");
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    ck_assert_ptr_nonnull(f);
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        lineno++;
        ck_assert_msg(line[n - 1] == '\n', "line %d not terminated", lineno);
        json_t *o = json_loads(line, 0, &err);
        ck_assert_msg(json_is_object(o), "line %d is not a JSON object: %s (%s)", lineno, line,
                      err.text);
        json_array_append_new(all, o);
    }
    free(line);
    fclose(f);
    return all;
}

static json_t *need(json_t *o, const char *k, json_type type)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(v && json_typeof(v) == type, "field %s missing or of the wrong type in %s", k,
                  json_dumps(o, JSON_COMPACT));
    return v;
}

static long long need_int(json_t *o, const char *k)
{
    return (long long)json_integer_value(need(o, k, JSON_INTEGER));
}

static const char *need_str(json_t *o, const char *k)
{
    return json_string_value(need(o, k, JSON_STRING));
}

START_TEST(load_reserved)
{
    th_pg pg;
    th_reserved s;
    long long perf[2], user0;
    char out[512], server[64];
    ck_assert_msg(th_pg_shared(&pg), "cannot get a database");
    start_reserved_admin(&s, &pg);
    make_catalogue(&s, 12, perf, &user0);
    snprintf(out, sizeof out, "%s/history.jsonl", th_tmpdir());
    snprintf(server, sizeof server, "127.0.0.1:%d", s.port);
    uint64_t t0 = th_now_ms();
    ck_assert_int_eq(run_load(&s, out, "1", "3", "8", NULL, perf, user0), 0);
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(took >= 3000 && took < 15000, "a 3 s run took %llu ms", (unsigned long long)took);

    json_t *h = read_history(out);
    size_t n = json_array_size(h);
    ck_assert_msg(n >= 50, "only %zu ops in 3 s", n);
    long long created = 0, cancelled = 0, taken = 0, reads = 0, max_id = 0;
    char *seen = calloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(h, i);
        ck_assert_str_eq(need_str(o, "type"), "op");
        long long id = need_int(o, "id");
        ck_assert_msg(id >= 1 && id <= (long long)n && !seen[id],
                      "op id %lld twice or out of range", id);
        seen[id] = 1;
        max_id = id > max_id ? id : max_id;
        long long client = need_int(o, "client");
        ck_assert(client >= 0 && client < 8);
        long long st = need_int(o, "start_ms"), en = need_int(o, "end_ms");
        ck_assert(st >= 0 && st <= en && en <= (long long)took + 1000);
        ck_assert_str_eq(need_str(o, "server"), server);
        long long status = need_int(o, "status");
        const char *outcome = need_str(o, "outcome");
        const char *code = need_str(o, "code");
        const char *op = need_str(o, "op");
        ck_assert_str_eq(outcome, status / 100 == 2 ? "ok" : (status ? "fail" : "unknown"));
        ck_assert_msg(status != 0, "no answer from a healthy server: %s", json_dumps(o, 0));
        long long p = need_int(o, "perf");
        ck_assert(p == perf[0] || p == perf[1]);
        if (strcmp(op, "book") == 0 || strcmp(op, "cancel") == 0) {
            long long u = need_int(o, "user");
            ck_assert(u >= user0 && u < user0 + 5);
            json_t *seats = need(o, "seats", JSON_ARRAY);
            ck_assert(json_array_size(seats) >= 1 && json_array_size(seats) <= 3);
        }
        if (strcmp(op, "book") == 0) {
            json_t *pay = json_object_get(o, "payment");
            ck_assert_msg(pay && json_is_null(pay), "no payment step, yet %s", json_dumps(o, 0));
            if (status == 201) {
                ck_assert_int_gt(need_int(o, "reservation"), 0);
                created++;
            } else {
                ck_assert_int_eq(status, 409);
                ck_assert_msg(strcmp(code, "SEAT_TAKEN") == 0 || strcmp(code, "SOLD_OUT") == 0,
                              "code %s", code);
                taken++;
            }
        } else if (strcmp(op, "cancel") == 0) {
            ck_assert_int_gt(need_int(o, "reservation"), 0);
            ck_assert_int_eq(status, 200);
            cancelled++;
        } else {
            ck_assert_str_eq(op, "read_seats");
            ck_assert_int_eq(status, 200);
            reads++;
        }
    }
    ck_assert_int_eq(max_id, (long long)n); /* no op started without a line */
    ck_assert_msg(created > 0 && taken > 0 && cancelled > 0 && reads > 0,
                  "mix: created %lld taken %lld cancelled %lld reads %lld", created, taken,
                  cancelled, reads);
    /* hot gets about 60% of the bookings and all bookings are ~75% of the ops */
    ck_assert_msg(created + taken > (long long)n / 2, "bookings %lld of %zu", created + taken, n);

    /* the history and the database agree: every 201 is a reservation, every 200 cancel
     * cancelled one, nothing else was booked */
    PGconn *c = PQconnectdb(pg.conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT count(*), count(*) FILTER (WHERE status = 'CANCELLED')"
                            " FROM reservations");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(atoll(PQgetvalue(r, 0, 0)), created);
    ck_assert_int_eq(atoll(PQgetvalue(r, 0, 1)), cancelled);
    PQclear(r);
    PQfinish(c);
    free(seen);
    json_decref(h);
    th_reserved_stop_clean(&s);
    th_pg_stop(&pg, true);
}
END_TEST

/* client -> the list of that client's book ops "perf/user/seats" in order */
static char **book_plan(json_t *h, int clients)
{
    char **plan = calloc((size_t)clients, sizeof(*plan));
    /* lines are in end order; a client runs one op at a time, so its lines are in its order */
    for (size_t i = 0; i < json_array_size(h); i++) {
        json_t *o = json_array_get(h, i);
        if (strcmp(need_str(o, "op"), "book") != 0)
            continue;
        int cl = (int)need_int(o, "client");
        char *seats = json_dumps(json_object_get(o, "seats"), JSON_COMPACT);
        char item[256];
        snprintf(item, sizeof item, "%lld/%lld/%s;", need_int(o, "perf"), need_int(o, "user"),
                 seats);
        free(seats);
        size_t old = plan[cl] ? strlen(plan[cl]) : 0;
        plan[cl] = realloc(plan[cl], old + strlen(item) + 1);
        memcpy(plan[cl] + old, item, strlen(item) + 1);
    }
    return plan;
}

START_TEST(load_seed)
{
    th_pg pg;
    th_reserved s;
    long long perf[2], user0;
    char out[3][512];
    ck_assert_msg(th_pg_shared(&pg), "cannot get a database");
    start_reserved_admin(&s, &pg);
    make_catalogue(&s, 30, perf, &user0);
    const char *seeds[3] = {"42", "42", "43"};
    char **plans[3];
    for (int i = 0; i < 3; i++) {
        snprintf(out[i], sizeof out[i], "%s/seed-%d.jsonl", th_tmpdir(), i);
        /* bounded by --max-requests, not by time */
        ck_assert_int_eq(run_load(&s, out[i], seeds[i], "60", "2", "80", perf, user0), 0);
        json_t *h = read_history(out[i]);
        ck_assert_int_eq(json_array_size(h), 80);
        plans[i] = book_plan(h, 2);
        json_decref(h);
    }
    /* the database answered differently each time (seats were taken by then), yet the same
     * seed asked for the same bookings, client by client; another seed did not */
    for (int cl = 0; cl < 2; cl++) {
        ck_assert_ptr_nonnull(plans[0][cl]);
        ck_assert_ptr_nonnull(plans[1][cl]);
        size_t common = strlen(plans[0][cl]) < strlen(plans[1][cl]) ? strlen(plans[0][cl])
                                                                    : strlen(plans[1][cl]);
        ck_assert_msg(common > 0 && strncmp(plans[0][cl], plans[1][cl], common) == 0,
                      "client %d: seed 42 twice gave\n%s\n%s", cl, plans[0][cl], plans[1][cl]);
        ck_assert_msg(plans[2][cl] == NULL || strncmp(plans[0][cl], plans[2][cl], 40) != 0,
                      "client %d: seeds 42 and 43 asked the same", cl);
    }
    for (int i = 0; i < 3; i++) {
        for (int cl = 0; cl < 2; cl++)
            free(plans[i][cl]);
        free(plans[i]);
    }
    th_reserved_stop_clean(&s);
    th_pg_stop(&pg, true);
}
END_TEST

/* PostgreSQL with chaos_counters holding `rows` ("(id, value), ..."), one Redis and one
 * lockd with the given session timeout; returns a connection to the database. */
static PGconn *counter_world(th_pg *pg, th_redis *r, th_lockd *l, int session_ms, const char *rows)
{
    char yaml[96], sql[512];
    ck_assert_msg(th_pg_shared(pg), "cannot get a database");
    start_redis(r);
    snprintf(yaml, sizeof yaml, "session: {timeout_ms: %d, lock_delay_ms: 0}", session_ms);
    ck_assert_msg(th_lockd_start(l, r, 1, yaml), "cannot start lockd");
    PGconn *c = PQconnectdb(pg->conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    snprintf(sql, sizeof sql,
             "CREATE TABLE chaos_counters (id int PRIMARY KEY, value bigint NOT NULL,"
             " last_fence numeric(20,0) NOT NULL DEFAULT 0);"
             " INSERT INTO chaos_counters (id, value) VALUES %s",
             rows);
    PGresult *res = PQexec(c, sql);
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return c;
}

START_TEST(load_counter)
{
    th_pg pg;
    th_redis r;
    th_lockd l;
    char out[512], lockd[64], log[600];
    PGconn *c = counter_world(&pg, &r, &l, 2000, "(1, 100), (2, 0)");
    PGresult *res;
    snprintf(out, sizeof out, "%s/counter.jsonl", th_tmpdir());
    snprintf(log, sizeof log, "%s.log", out);
    snprintf(lockd, sizeof lockd, "127.0.0.1:%d", l.port);
    int rc = run_tool(log, 30000, "chaos_load", "--lockd", lockd, "--database", pg.conninfo,
                      "--counters", "2", "--counter-clients", "4", "--duration", "3", "--out", out,
                      NULL);
    if (rc != 0)
        th_dump_log(log, 30);
    ck_assert_int_eq(rc, 0);

    json_t *h = read_history(out);
    long long applied[3] = {0, 0, 0}, last_fence[3] = {0, 0, 0};
    size_t n = json_array_size(h);
    ck_assert_msg(n >= 20, "only %zu counter ops", n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(h, i);
        ck_assert_str_eq(need_str(o, "type"), "op");
        ck_assert_str_eq(need_str(o, "op"), "counter_incr");
        ck_assert_str_eq(need_str(o, "server"), lockd);
        need_int(o, "id");
        need_int(o, "client");
        ck_assert(need_int(o, "start_ms") <= need_int(o, "end_ms"));
        long long k = need_int(o, "counter");
        ck_assert(k == 1 || k == 2);
        /* nothing failed here: every op got the lock and wrote */
        ck_assert_msg(strcmp(need_str(o, "outcome"), "ok") == 0, "op failed: %s",
                      json_dumps(o, JSON_COMPACT));
        ck_assert_str_eq(need_str(o, "write"), "applied");
        long long fence = need_int(o, "fence");
        ck_assert_int_eq(need_int(o, "wrote"), need_int(o, "read") + 1);
        /* under the lock one at a time: each write saw the previous one */
        ck_assert_int_eq(need_int(o, "read"), (k == 1 ? 100 : 0) + applied[k]);
        ck_assert_msg(fence > last_fence[k], "fence went %lld -> %lld", last_fence[k], fence);
        last_fence[k] = fence;
        applied[k]++;
    }
    res = PQexec(c, "SELECT value, last_fence FROM chaos_counters ORDER BY id");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_int_eq(atoll(PQgetvalue(res, 0, 0)), 100 + applied[1]);
    ck_assert_int_eq(atoll(PQgetvalue(res, 1, 0)), applied[2]);
    ck_assert_int_eq(atoll(PQgetvalue(res, 0, 1)), last_fence[1]);
    ck_assert_int_eq(atoll(PQgetvalue(res, 1, 1)), last_fence[2]);
    PQclear(res);
    PQfinish(c);
    json_decref(h);
    th_pg_stop(&pg, true);
}
END_TEST

/*
 * The process pause of Kleppmann's critique on one counter: a chaos_load client holds
 * Counter:1 with its read done and a 2 s sleep before the write (the marker says so); it is
 * SIGSTOPped; lockd's session timeout (1 s) ends its session; a second chaos_load takes the
 * lock with higher fences and increments; then SIGCONT. The naive client
 * (--counter-ignore-lost) still sends its write, which the fence rejects; the careful client
 * gives the op up (LOST) without writing. Either way no increment is lost.
 */
static void paused_holder(bool ignore_lost)
{
    th_pg pg;
    th_redis r;
    th_lockd l;
    char naive[512], comp[512], marker[512], nlog[600], clog[600], lockd[64], line[64] = "";
    PGconn *c = counter_world(&pg, &r, &l, 1000, "(1, 0)");
    PGresult *res;
    snprintf(naive, sizeof naive, "%s/naive.jsonl", th_tmpdir());
    snprintf(comp, sizeof comp, "%s/comp.jsonl", th_tmpdir());
    snprintf(marker, sizeof marker, "%s/marker", th_tmpdir());
    snprintf(nlog, sizeof nlog, "%s.log", naive);
    snprintf(clog, sizeof clog, "%s.log", comp);
    snprintf(lockd, sizeof lockd, "127.0.0.1:%d", l.port);
    char *argv[] = {(char *)th_bin("chaos_load"),
                    "--lockd",
                    lockd,
                    "--database",
                    pg.conninfo,
                    "--counters",
                    "1",
                    "--counter-clients",
                    "1",
                    "--counter-sleep-ms",
                    "2000:2000",
                    "--counter-marker",
                    marker,
                    "--duration",
                    "3",
                    "--max-requests",
                    "1",
                    "--out",
                    naive,
                    ignore_lost ? "--counter-ignore-lost" : NULL,
                    NULL};
    pid_t pid = th_spawn(argv, nlog);
    ck_assert_int_gt(pid, 0);
    for (int i = 0; i < 1000 && strncmp(line, "sleeping=1", 10) != 0; i++) {
        FILE *f = fopen(marker, "r");
        if (!f || !fgets(line, sizeof line, f))
            line[0] = '\0';
        if (f)
            fclose(f);
        usleep(10000);
    }
    ck_assert_msg(strncmp(line, "sleeping=1 held=1", 17) == 0, "marker: '%s'", line);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    /* lockd frees the lock once the session times out; the competitor waits for it */
    int rc = run_tool(clog, 30000, "chaos_load", "--lockd", lockd, "--database", pg.conninfo,
                      "--counters", "1", "--counter-clients", "1", "--counter-sleep-ms", "0:0",
                      "--duration", "2", "--client-base", "10", "--out", comp, NULL);
    ck_assert_int_eq(kill(pid, SIGCONT), 0);
    if (rc != 0)
        th_dump_log(clog, 30);
    ck_assert_int_eq(rc, 0);
    int st = th_wait_exit(pid, 20000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "naive chaos_load failed");

    json_t *hn = read_history(naive), *hc = read_history(comp);
    ck_assert_uint_eq(json_array_size(hn), 1);
    json_t *o = json_array_get(hn, 0);
    long long stale_fence = need_int(o, "fence");
    ck_assert_msg(json_is_true(json_object_get(o, "lost")), "the pause did not lose the lock");
    ck_assert_int_eq(need_int(o, "read"), 0);
    if (ignore_lost) {
        ck_assert_str_eq(need_str(o, "write"), "rejected");
        ck_assert_str_eq(need_str(o, "code"), "STALE_FENCE");
    } else {
        ck_assert_ptr_null(json_object_get(o, "write"));
        ck_assert_str_eq(need_str(o, "code"), "LOST");
    }
    size_t applied = 0;
    for (size_t i = 0; i < json_array_size(hc); i++) {
        json_t *k = json_array_get(hc, i);
        if (strcmp(need_str(k, "outcome"), "ok") != 0)
            continue;
        ck_assert(need_int(k, "fence") > stale_fence);
        applied++;
    }
    ck_assert_uint_gt(applied, 0);
    res = PQexec(c, "SELECT value FROM chaos_counters WHERE id = 1");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_int_eq(atoll(PQgetvalue(res, 0, 0)), (long long)applied);
    PQclear(res);
    PQfinish(c);
    json_decref(hn);
    json_decref(hc);
    th_pg_stop(&pg, true);
}

START_TEST(load_counter_ignore_lost)
{
    paused_holder(true);
}
END_TEST

START_TEST(load_counter_careful)
{
    paused_holder(false);
}
END_TEST

/*
 * Seat holds in the load (--hold-share, SPEC §9): against a reserved whose holds live 2 s,
 * 6 clients for 4 s on a 12-seat hot show. The history has hold ops of every kind, each
 * acknowledged hold with its id, the admin as its user (the token's), its seats and an
 * expiresAt about 2 s after it was taken; then, past the expiry, chaos_check finds the
 * history and the database clean (holds_exclusive and holds_expire among its checks).
 */
START_TEST(load_holds)
{
    th_pg pg;
    th_reserved s;
    long long perf[2], user0;
    char out[512], log[600], token[600], servers[64], hot[32], perfs[32], users[64];
    ck_assert_msg(th_pg_shared(&pg), "cannot get a database");
    start_reserved_cfg(&s, &pg, "holds: {ttl_s: 2}\n");
    make_catalogue(&s, 12, perf, &user0);
    snprintf(out, sizeof out, "%s/history.jsonl", th_tmpdir());
    snprintf(log, sizeof log, "%s.log", out);
    snprintf(token, sizeof token, "%s.token", out);
    snprintf(servers, sizeof servers, "127.0.0.1:%d", s.port);
    snprintf(hot, sizeof hot, "%lld", perf[0]);
    snprintf(perfs, sizeof perfs, "%lld", perf[1]);
    snprintf(users, sizeof users, "%lld:5", user0);
    FILE *f = fopen(token, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", th_admin_token());
    fclose(f);
    int rc = run_tool(log, 30000, "chaos_load", "--servers", servers, "--duration", "4", "--seed",
                      "3", "--out", out, "--clients", "6", "--hot-perf", hot, "--perfs", perfs,
                      "--users", users, "--token-file", token, "--hold-share", "30", NULL);
    if (rc != 0)
        th_dump_log(log, 30);
    ck_assert_int_eq(rc, 0);

    json_t *h = read_history(out);
    long long held = 0, hold_fail = 0, released = 0, by_hold = 0, admin = 0;
    for (size_t i = 0; i < json_array_size(h); i++) {
        json_t *o = json_array_get(h, i);
        const char *op = need_str(o, "op");
        long long status = need_int(o, "status");
        ck_assert_msg(status != 0, "no answer from a healthy server: %s", json_dumps(o, 0));
        if (strcmp(op, "hold") == 0 && status == 201) {
            ck_assert_int_eq(need_int(o, "perf"), perf[0]);
            ck_assert_int_gt(need_int(o, "hold"), 0);
            long long u = need_int(o, "user");
            ck_assert_msg(admin == 0 || u == admin, "holds of two users: %lld, %lld", admin, u);
            admin = u;
            ck_assert_msg(u < user0 || u >= user0 + 5, "a hold for a load user, not the caller");
            size_t n = json_array_size(need(o, "seats", JSON_ARRAY));
            ck_assert(n >= 1 && n <= 3);
            (void)need_str(o, "expires_at");
            long long exp = need_int(o, "expires_ms"), st = need_int(o, "start_ms");
            ck_assert_msg(exp >= st + 1500 && exp <= need_int(o, "end_ms") + 2500,
                          "expiresAt %lld ms for a 2 s hold taken at %lld ms", exp, st);
            held++;
        } else if (strcmp(op, "hold") == 0) {
            ck_assert_int_eq(status, 409);
            hold_fail++;
        } else if (strcmp(op, "release") == 0) {
            ck_assert_int_gt(need_int(o, "hold"), 0);
            released += status == 200;
        } else if (strcmp(op, "book") == 0 && json_object_get(o, "hold")) {
            by_hold++;
            ck_assert_int_eq(need_int(o, "user"), admin);
        }
    }
    ck_assert_msg(held > 0 && released > 0 && by_hold > 0,
                  "hold ops: held %lld (refused %lld), released %lld, booked by hold %lld", held,
                  hold_fail, released, by_hold);
    json_decref(h);

    /* every hold has expired (2 s) by 3.6 s after the load: the checks must pass */
    usleep(3600 * 1000);
    char clog[600];
    snprintf(clog, sizeof clog, "%s/check.out", th_tmpdir());
    rc = run_tool(clog, 30000, "chaos_check", "--history", out, "--database", pg.conninfo, NULL);
    th_dump_log(clog, 40);
    ck_assert_int_eq(rc, 0);
    th_reserved_stop_clean(&s);
    th_pg_stop(&pg, true);
}
END_TEST

/* The lock workload (issue 15 §3): 4 plain clients over one lockd loop on chaos:lk:0..1 for
 * 3 s. Their lock history has grants (with fences and local deadlines after the grant),
 * releases, and per resource fences that grow in grant order with no two holders at once;
 * chaos_check --locks passes it. --lock-clients needs --lockd and --lock-history. */
START_TEST(lock_workload)
{
    th_pg pg;
    th_redis r;
    th_lockd l;
    th_reserved s;
    char out[512], locks[512], lockd[64], log[600], json[512], hist[512];
    ck_assert_msg(th_pg_shared(&pg), "cannot get a database");
    start_redis(&r);
    ck_assert_msg(th_lockd_start(&l, &r, 1, "session: {timeout_ms: 2000, lock_delay_ms: 0}"),
                  "cannot start lockd");
    snprintf(out, sizeof out, "%s/history.jsonl", th_tmpdir());
    snprintf(locks, sizeof locks, "%s/locks-load.jsonl", th_tmpdir());
    snprintf(log, sizeof log, "%s.log", locks);
    snprintf(lockd, sizeof lockd, "127.0.0.1:%d", l.port);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_load", "--lock-clients", "2", "--duration", "1",
                              "--out", out, "--lock-history", locks, NULL),
                     2);
    ck_assert_int_eq(run_tool(log, 5000, "chaos_load", "--lockd", lockd, "--lock-clients", "2",
                              "--duration", "1", "--out", out, NULL),
                     2);
    int rc = run_tool(log, 30000, "chaos_load", "--lockd", lockd, "--lock-clients", "4",
                      "--lock-resources", "2", "--lock-history", locks, "--duration", "3", "--seed",
                      "7", "--out", out, NULL);
    if (rc != 0)
        th_dump_log(log, 30);
    ck_assert_int_eq(rc, 0);

    json_t *h = read_history(locks);
    size_t n = json_array_size(h), grants = 0, releases = 0;
    long long last_fence[2] = {0, 0}, last_end[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(h, i);
        ck_assert_str_eq(need_str(o, "src"), "load"); /* the file's name, as chaos/run's */
        const char *res = need_str(o, "res"), *ev = need_str(o, "ev");
        ck_assert_msg(strcmp(res, "chaos:lk:0") == 0 || strcmp(res, "chaos:lk:1") == 0, "%s", res);
        int k = res[9] - '0';
        ck_assert_msg(strncmp(need_str(o, "sess"), "c", 1) == 0, "sess %s", need_str(o, "sess"));
        long long fence = atoll(need_str(o, "fence")), t = need_int(o, "t_us");
        if (strcmp(ev, "grant") == 0) {
            grants++;
            ck_assert_msg(need_int(o, "deadline_us") > t, "deadline before the grant");
            /* one holder at a time (the last one released before this grant) */
            ck_assert_msg(t >= last_end[k], "grant at %lld before the release at %lld", t,
                          last_end[k]);
            ck_assert_msg(fence > last_fence[k], "fence %lld after %lld", fence, last_fence[k]);
            last_fence[k] = fence;
            last_end[k] = INT64_MAX;
        } else {
            ck_assert_msg(strcmp(ev, "release") == 0 || strcmp(ev, "renew") == 0, "%s: %s", ev,
                          json_dumps(o, JSON_COMPACT));
            ck_assert_int_eq(fence, last_fence[k]);
            if (strcmp(ev, "release") == 0) {
                releases++;
                last_end[k] = t;
            }
        }
    }
    json_decref(h);
    ck_assert_msg(grants >= 40, "only %zu grants", grants);
    ck_assert_uint_eq(releases, grants); /* the last ones at the stop, none left held */

    /* the checker on it: a database with reserved's schema (a reserved made it) and no ops */
    start_reserved_admin(&s, &pg);
    snprintf(hist, sizeof hist, "%s/empty.jsonl", th_tmpdir());
    FILE *f = fopen(hist, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(json, sizeof json, "%s/check.json", th_tmpdir());
    snprintf(log, sizeof log, "%s/check.out", th_tmpdir());
    rc = run_tool(log, 30000, "chaos_check", "--history", hist, "--database", pg.conninfo,
                  "--locks", locks, "--json", json, NULL);
    if (rc != 0)
        th_dump_log(log, 40);
    ck_assert_int_eq(rc, 0);
    char want[128];
    snprintf(want, sizeof want, "CHECK locks_exclusive PASS 0 overlaps over %zu grants on 2",
             grants);
    ck_assert_msg(file_contains(log, want), "no '%s'", want);
    ck_assert(file_contains(log, "CHECK locks_fence_order PASS 0 regressions"));
    ck_assert(file_contains(log, "CHECK locks_lost_first PASS 0 late LOSTs"));
    th_reserved_stop_clean(&s);
    th_pg_stop(&pg, true);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"proxy_forward", proxy_forward},
        {"proxy_latency", proxy_latency},
        {"proxy_drop", proxy_drop},
        {"proxy_blackhole", proxy_blackhole},
        {"proxy_refuse", proxy_refuse},
        {"proxy_overflow", proxy_overflow},
        {"proxy_control", proxy_control},
        {"proxy_cli", proxy_cli},
        {"load_args", load_args},
        {"load_now_ms", load_now_ms},
        {"load_reserved", load_reserved},
        {"load_seed", load_seed},
        {"load_counter", load_counter},
        {"load_counter_ignore_lost", load_counter_ignore_lost},
        {"load_counter_careful", load_counter_careful},
        {"load_holds", load_holds},
        {"lock_workload", lock_workload},
    };
    return th_check_main("chaos_tools", cases, sizeof cases / sizeof cases[0], 120, argc, argv);
}
