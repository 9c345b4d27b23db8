/*
 * it_common: see it_common.h. Blocking and single-threaded on purpose: each test is
 * a sequential story told to real servers running in their own processes.
 */
#include "it_common.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IT_MAX_LOGS 16

static char it_logs[IT_MAX_LOGS][512];
static pid_t it_lockd_pids[IT_MAX_LOGS];
static size_t it_n_logs;
static pid_t it_logs_owner;
static bool it_atexit_set;

static void it_teardown(void)
{
    it_dump_logs();
    th_stop_all();
}

int it_main(const char *name, const TTest *test, double timeout_s, void (*setup)(void))
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, setup, it_teardown);
    tcase_set_timeout(tc, timeout_s);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    th_stop_all();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void it_redis_start_n(th_redis *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(th_redis_start(&r[i]), "redis-server %zu did not start (port %d)", i,
                      r[i].port);
    }
}

void it_dump_logs(void)
{
    if (it_logs_owner != getpid()) {
        return;
    }
    for (size_t i = 0; i < it_n_logs; i++) {
        /* SIGTERM first: a graceful exit writes the coverage data (gcov) and runs the
         * leak check; th_stop falls back to SIGKILL. Already stopped ones are skipped. */
        th_stop(it_lockd_pids[i], true, 3000);
    }
    for (size_t i = 0; i < it_n_logs; i++) {
        char cmd[sizeof it_logs[0] + 64];
        fprintf(stderr, "---- tail of %s ----\n", it_logs[i]);
        fflush(stderr);
        int n = snprintf(cmd, sizeof cmd, "tail -n 40 '%s' 1>&2", it_logs[i]);
        if (n < 0 || (size_t)n >= sizeof cmd || system(cmd) != 0) {
            fprintf(stderr, "(no log)\n");
        }
    }
    it_n_logs = 0;
}

void it_lockd_start(th_lockd *l, const th_redis *r, size_t n, const char *extra_yaml)
{
    bool ok = th_lockd_start(l, r, n, extra_yaml);
    if (it_logs_owner != getpid()) {
        it_logs_owner = getpid();
        it_n_logs = 0;
        /* atexit runs in reverse order: registered after th's own handler (first
         * th_spawn), so the logs are printed before th_stop_all removes them. A test
         * that started servers in its forked child exits through exit(), so this runs
         * there on failure too. */
        if (!it_atexit_set) {
            atexit(it_dump_logs);
            it_atexit_set = true;
        }
    }
    if (it_n_logs < IT_MAX_LOGS) {
        it_lockd_pids[it_n_logs] = l->pid;
        snprintf(it_logs[it_n_logs++], sizeof it_logs[0], "%s", l->log);
    }
    ck_assert_msg(ok, "lockd did not start on port %d (log %s)", l->port, l->log);
    it_wait_masters(l, n, 10000);
}

void it_wait_masters(const th_lockd *l, size_t n, int timeout_ms)
{
    /* lockd accepts sessions once a quorum of its masters counts (it_start_hold), maybe
     * before the last of them; a test that starts with "all masters up" waits for that. */
    char want[32], line[IT_LINE];
    th_conn c;
    snprintf(want, sizeof want, " masters_up=%zu ", n);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    ck_assert_msg(th_connect(&c, l->port), "cannot connect to lockd on %d", l->port);
    for (;;) {
        bool got = th_request(&c, "i", line, sizeof line, 2000, "INFO");
        size_t len = strlen(line);
        if (got && len + 1 < sizeof line) {
            line[len] = ' '; /* so the last key=value also ends with a space */
            line[len + 1] = '\0';
        }
        if (got && (strstr(line, want) != NULL || strstr(line, "ERR NOAUTH") != NULL))
            break; /* (with auth configured INFO needs AUTH: nothing to wait on then) */
        ck_assert_msg(th_now_ms() < deadline, "lockd on %d: not all %zu masters up: '%s'", l->port,
                      n, line);
        th_sleep_ms(20);
    }
    th_close(&c);
}

void it_connect(th_conn *c, int port, const char *name)
{
    char line[256];
    ck_assert_msg(th_connect(c, port), "connect to lockd port %d failed", port);
    ck_assert_msg(th_request(c, "h", line, sizeof line, 3000, "HELLO %s", name),
                  "no reply to HELLO");
    ck_assert_msg(strncmp(line, "h OK ", 5) == 0, "HELLO got '%s'", line);
}

it_reply it_classify(const char *line, const char *tag, it_grant *g)
{
    size_t tl = strlen(tag);
    if (strncmp(line, tag, tl) != 0 || line[tl] != ' ') {
        return IT_NOREPLY;
    }
    const char *rest = line + tl + 1;
    if (strncmp(rest, "OK", 2) == 0 && (rest[2] == ' ' || rest[2] == '\0')) {
        if (g != NULL) {
            char token[64];
            uint64_t fence, validity;
            if (sscanf(rest, "OK %63s %" SCNu64 " %" SCNu64, token, &fence, &validity) != 3 ||
                strlen(token) != IT_TOKEN_LEN) {
                return IT_NOREPLY;
            }
            memcpy(g->token, token, IT_TOKEN_LEN + 1);
            g->fence = fence;
            g->validity_ms = validity;
        }
        return IT_OK;
    }
    if (strcmp(rest, "TIMEOUT") == 0) {
        return IT_TIMEOUT;
    }
    if (strcmp(rest, "LOST") == 0) {
        return IT_LOST;
    }
    if (strncmp(rest, "ERR ", 4) == 0) {
        return IT_ERR;
    }
    return IT_NOREPLY;
}

it_reply it_acquire(th_conn *c, const char *tag, const char *res, uint64_t lease_ms,
                    uint64_t wait_ms, int timeout_ms, it_grant *g, char *line, size_t linelen)
{
    char buf[512];
    if (line == NULL) {
        line = buf;
        linelen = sizeof buf;
    }
    line[0] = '\0';
    if (!th_request(c, tag, line, linelen, timeout_ms, "ACQUIRE %s %" PRIu64 " %" PRIu64, res,
                    lease_ms, wait_ms)) {
        return IT_NOREPLY;
    }
    return it_classify(line, tag, g);
}

it_reply it_release(th_conn *c, const char *tag, const char *res, const char *token, int timeout_ms)
{
    char line[512];
    bool ok = th_request(c, tag, line, sizeof line, timeout_ms, "RELEASE %s %s", res, token);
    return ok ? it_classify(line, tag, NULL) : IT_NOREPLY;
}

it_reply it_renew(th_conn *c, const char *tag, const char *res, const char *token,
                  uint64_t lease_ms, int timeout_ms)
{
    char line[512];
    bool ok = th_request(c, tag, line, sizeof line, timeout_ms, "RENEW %s %s %" PRIu64, res, token,
                         lease_ms);
    return ok ? it_classify(line, tag, NULL) : IT_NOREPLY;
}

bool it_ping(th_conn *c, const char *tag, int timeout_ms)
{
    char line[256], want[64];
    snprintf(want, sizeof want, "%s OK PONG", tag);
    return th_request(c, tag, line, sizeof line, timeout_ms, "PING") && strcmp(line, want) == 0;
}

uint64_t it_handoff_trial(th_conn *holder, th_conn *waiter, const char *res, int settle_ms)
{
    it_grant hg, wg;
    char line[512];
    ck_assert_msg(it_acquire(holder, "h1", res, 0, 2000, 3000, &hg, line, sizeof line) == IT_OK,
                  "holder ACQUIRE got '%s'", line);
    ck_assert(th_send(waiter, "w1 ACQUIRE %s 0 5000", res));
    th_sleep_ms(settle_ms);
    /* Nothing may have been granted to the waiter while the holder holds. */
    ck_assert_msg(!th_recv(waiter, line, sizeof line, 0), "waiter got '%s' while held", line);
    uint64_t t0 = th_now_us();
    ck_assert(th_send(holder, "h2 RELEASE %s %s", res, hg.token));
    ck_assert_msg(th_recv_prefix(waiter, "w1 ", line, sizeof line, 3000),
                  "waiter got nothing within 3 s of the RELEASE");
    uint64_t took = th_now_us() - t0;
    ck_assert_msg(it_classify(line, "w1", &wg) == IT_OK, "waiter got '%s'", line);
    ck_assert_uint_gt(wg.fence, hg.fence);
    ck_assert_msg(th_recv_prefix(holder, "h2 ", line, sizeof line, 3000), "no RELEASE reply");
    ck_assert_str_eq(line, "h2 OK");
    ck_assert_int_eq(it_release(waiter, "w2", res, wg.token, 3000), IT_OK);
    return took;
}

bool it_wait_reply(th_conn *c, const char *tag, char *line, size_t linelen, int timeout_ms)
{
    size_t tl = strlen(tag);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms, next_ping = th_now_ms() + 250;
    for (;;) {
        uint64_t now = th_now_ms();
        if (now >= deadline) {
            return false;
        }
        if (now >= next_ping) {
            if (!th_send(c, "p PING")) {
                return false;
            }
            next_ping = now + 250;
        }
        uint64_t until = next_ping < deadline ? next_ping : deadline;
        if (!th_recv(c, line, linelen, (int)(until - now))) {
            if (c->len == 0 && th_wait_closed(c, 0)) {
                return false;
            }
            continue;
        }
        if (strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
            return true;
        }
    }
}

size_t it_wait_prefixes(th_conn *c, size_t n, const char *const *prefix, char (*lines)[IT_LINE],
                        uint64_t *at_us, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms, next_ping = th_now_ms() + 250;
    struct pollfd pfd[64];
    ck_assert(n <= 64);
    for (size_t i = 0; i < n; i++) {
        at_us[i] = 0;
        lines[i][0] = '\0';
    }
    while (got < n) {
        uint64_t now = th_now_ms();
        if (now >= deadline) {
            break;
        }
        if (now >= next_ping) {
            for (size_t i = 0; i < n; i++) {
                if (at_us[i] == 0 && c[i].fd >= 0 && !th_send(&c[i], "p PING")) {
                    th_close(&c[i]);
                }
            }
            next_ping = now + 250;
        }
        for (size_t i = 0; i < n; i++) {
            /* lines already buffered (read along with an earlier one) count first */
            while (at_us[i] == 0 && c[i].fd >= 0 && th_recv(&c[i], lines[i], IT_LINE, 0)) {
                if (strncmp(lines[i], prefix[i], strlen(prefix[i])) == 0) {
                    at_us[i] = th_now_us();
                    got++;
                }
            }
            pfd[i].fd = at_us[i] == 0 ? c[i].fd : -1;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        if (got == n) {
            break;
        }
        uint64_t until = next_ping < deadline ? next_ping : deadline;
        if (poll(pfd, n, (int)(until - now)) <= 0) {
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }
            ssize_t r = recv(c[i].fd, c[i].buf + c[i].len, sizeof c[i].buf - c[i].len, 0);
            if (r <= 0) {
                th_close(&c[i]); /* lockd closed it: this line never comes */
                continue;
            }
            c[i].len += (size_t)r;
            while (at_us[i] == 0 && th_recv(&c[i], lines[i], IT_LINE, 0)) {
                if (strncmp(lines[i], prefix[i], strlen(prefix[i])) == 0) {
                    at_us[i] = th_now_us();
                    got++;
                }
            }
        }
    }
    return got;
}

size_t it_wait_replies(th_conn *c, size_t n, const char *tag, char (*lines)[IT_LINE],
                       uint64_t *at_us, int timeout_ms)
{
    char want[IT_LINE];
    const char *prefix[64];
    ck_assert(n <= 64);
    snprintf(want, sizeof want, "%s ", tag);
    for (size_t i = 0; i < n; i++) {
        prefix[i] = want;
    }
    return it_wait_prefixes(c, n, prefix, lines, at_us, timeout_ms);
}

bool it_redis_cmd(int port, char *out, size_t outlen, const char *fmt, ...)
{
    th_conn c;
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    out[0] = '\0';
    if (!th_connect(&c, port)) {
        return false;
    }
    bool ok = th_send(&c, "%s", cmd) && th_recv(&c, out, outlen, 2000);
    if (ok && out[0] == '$' && strcmp(out, "$-1") != 0) {
        ok = th_recv(&c, out, outlen, 2000); /* a bulk string: its value */
    }
    th_close(&c);
    return ok;
}

static const char *it_reply_name(it_reply r)
{
    static const char *names[] = {"OK", "TIMEOUT", "LOST", "ERR", "NOREPLY"};
    return names[r];
}

/* The holder child: never returns; reports through out, obeys in. */
static void it_holder_child(int port, const char *res, int in, int out)
{
    th_conn c;
    it_grant g;
    char line[512];
    if (!th_connect(&c, port) || !th_request(&c, "h", line, sizeof line, 3000, "HELLO holder") ||
        it_acquire(&c, "a", res, 0, 5000, 7000, &g, line, sizeof line) != IT_OK) {
        dprintf(out, "FAIL %s\n", line);
        _exit(1);
    }
    dprintf(out, "OK %s %" PRIu64 "\n", g.token, g.fence);
    for (;;) {
        struct pollfd pfd = {in, POLLIN, 0};
        int pr = poll(&pfd, 1, 50);
        if (pr == 0) {
            /* Heartbeat; after a SIGSTOP lockd may have closed us: not fatal here. */
            if (th_send(&c, "p PING")) {
                th_recv_prefix(&c, "p ", line, sizeof line, 1000);
            }
            continue;
        }
        if (pr < 0) {
            continue; /* EINTR after SIGCONT */
        }
        char cmd[16];
        if (read(in, cmd, sizeof cmd) <= 0) {
            _exit(0);
        }
        const char *via = "same";
        it_reply renew = it_renew(&c, "n", res, g.token, 5000, 2000);
        if (renew == IT_NOREPLY) {
            /* lockd ended the dead session and closed it: the old token is all the
             * holder has, so it tries it from a new session. */
            th_close(&c);
            via = "new";
            if (!th_connect(&c, port)) {
                dprintf(out, "FAIL reconnect\n");
                _exit(1);
            }
            renew = it_renew(&c, "n", res, g.token, 5000, 2000);
        }
        it_reply rel = it_release(&c, "r", res, g.token, 2000);
        dprintf(out, "RENEW=%s RELEASE=%s via=%s\n", it_reply_name(renew), it_reply_name(rel), via);
    }
}

/* Reads one line from a pipe (blocking up to timeout_ms). */
static bool it_pipe_line(int fd, char *out, size_t outlen, int timeout_ms)
{
    size_t n = 0;
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (n + 1 < outlen) {
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            return false;
        }
        ssize_t r = read(fd, out + n, 1);
        if (r <= 0) {
            return false;
        }
        if (out[n] == '\n') {
            break;
        }
        n++;
    }
    out[n] = '\0';
    return true;
}

void it_holder_start(it_holder *h, int port, const char *res)
{
    int down[2], up[2];
    ck_assert(pipe(down) == 0 && pipe(up) == 0);
    pid_t parent = getpid();
    h->pid = fork();
    ck_assert(h->pid >= 0);
    if (h->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        close(down[1]);
        close(up[0]);
        it_holder_child(port, res, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    h->to_child = down[1];
    h->from_child = up[0];
    char line[512];
    ck_assert_msg(it_pipe_line(h->from_child, line, sizeof line, 8000), "holder child silent");
    ck_assert_msg(sscanf(line, "OK %32s %" SCNu64, h->grant.token, &h->grant.fence) == 2,
                  "holder child: '%s'", line);
}

bool it_holder_check(it_holder *h, char *out, size_t outlen, int timeout_ms)
{
    if (write(h->to_child, "check\n", 6) != 6) {
        return false;
    }
    return it_pipe_line(h->from_child, out, outlen, timeout_ms);
}

void it_holder_reap(it_holder *h)
{
    if (h->pid > 0) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        close(h->to_child);
        close(h->from_child);
        h->pid = 0;
    }
}

char *it_http_get(int port, const char *path, int timeout_ms)
{
    th_conn c;
    if (!th_connect(&c, port)) {
        return NULL;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (!th_send_raw(&c, req, (size_t)n)) {
        th_close(&c);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *out = malloc(cap);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        struct pollfd pfd = {c.fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            break; /* a server that keeps the connection open: take what came */
        }
        if (len + 4096 > cap) {
            cap *= 2;
            char *grown = realloc(out, cap);
            if (grown == NULL) {
                break;
            }
            out = grown;
        }
        ssize_t r = recv(c.fd, out + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    th_close(&c);
    out[len] = '\0';
    if (len == 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int it_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t it_median(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof v[0], it_cmp_u64);
    return n == 0 ? 0 : v[n / 2];
}

uint64_t it_max(const uint64_t *v, size_t n)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        m = v[i] > m ? v[i] : m;
    }
    return m;
}

int it_run_lockd(char *const *args, char *out, size_t outlen)
{
    char log[300];
    char *argv[16];
    size_t n = 0;
    snprintf(log, sizeof log, "%s/out.log", th_tmpdir());
    argv[n++] = (char *)th_bin("lockd");
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = th_spawn(argv, log);
    int status = th_wait_exit(pid, 10000);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *it_write_yaml(const char *text)
{
    static char path[300];
    snprintf(path, sizeof path, "%s/lockd.yaml", th_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}
