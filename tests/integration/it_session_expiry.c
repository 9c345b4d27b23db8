/*
 * it_session_expiry: a LOCKP session that sends nothing for session.timeout_ms (500 ms
 * here) is dead, and its client is told so, in order, before lockd closes the connection:
 *   * LOST <X> <token> session                          for the lock it held,
 *   <tag> ERR SESSION session expired after <n> ms of silence   for its waiting ACQUIRE,
 *   * ERR SESSION expired after <n> ms of silence (session.timeout_ms=500),
 * then EOF. The waiting ACQUIRE never gets TIMEOUT. Another session waiting for X is
 * granted it only after that LOST (with a greater fence). Lines the dead session sends
 * afterwards are neither answered nor executed (a late ACQUIRE takes no lock: a third
 * session gets it with wait_ms 0). A session that PINGs within the timeout keeps its lock
 * and hears no push. lockd_sessions_expired_total counts the one expiry.
 */
#include "it_common.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define TIMEOUT_MS 500
#define RES_X      "Performance:expiry-x"
#define RES_Y      "Performance:expiry-y"
#define RES_Z      "Performance:expiry-z"
#define MAX_LINES  64

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3,
                   "session: {timeout_ms: 500, lock_delay_ms: 0}\n"
                   "watchdog: {lease_ms: 1500}\n"
                   "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: "
                   "0.01}\n"
                   "log: {level: info}\n");
}

/* Every line one connection received, with a sequence number shared by all of them. */
typedef struct trace {
    th_conn *c;
    bool keep_alive; /* PINGed every 100 ms (a client that is alive) */
    bool eof;
    size_t n;
    char lines[MAX_LINES][IT_LINE];
    unsigned seq[MAX_LINES];
} trace;

static unsigned next_seq;

/* Moves the complete lines already buffered in t->c into t. */
static void trace_take(trace *t)
{
    char line[IT_LINE];
    while (t->n < MAX_LINES && th_recv(t->c, line, sizeof line, 0)) {
        snprintf(t->lines[t->n], IT_LINE, "%s", line);
        t->seq[t->n++] = next_seq++;
    }
}

/* Index of the first line of t starting with prefix, or -1. */
static int trace_find(const trace *t, const char *prefix)
{
    for (size_t i = 0; i < t->n; i++)
        if (strncmp(t->lines[i], prefix, strlen(prefix)) == 0)
            return (int)i;
    return -1;
}

static void trace_dump(const char *name, const trace *t)
{
    for (size_t i = 0; i < t->n; i++)
        fprintf(stderr, "  %s #%u: %s\n", name, t->seq[i], t->lines[i]);
    fprintf(stderr, "  %s: %s\n", name, t->eof ? "EOF" : "(open)");
}

/*
 * Reads all traces (in array order each round, so a line already on its way to an
 * earlier trace gets the smaller sequence number) and PINGs the keep-alive ones every
 * 100 ms, until done(arg) or timeout_ms. When the dead session's ERR SESSION push is
 * read, the late lines are sent on it at once.
 */
static bool pump(trace *t, size_t n, int timeout_ms, bool (*done)(trace *t), const char *late)
{
    struct pollfd pfd[8];
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms, next_ping = 0;
    bool late_sent = false;
    for (;;) {
        if (done(t))
            return true;
        uint64_t now = th_now_ms();
        if (now >= deadline)
            return false;
        if (now >= next_ping) {
            for (size_t i = 0; i < n; i++)
                if (t[i].keep_alive)
                    ck_assert(th_send(t[i].c, "p PING"));
            next_ping = now + 100;
        }
        for (size_t i = 0; i < n; i++) {
            pfd[i].fd = t[i].eof ? -1 : t[i].c->fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        uint64_t until = next_ping < deadline ? next_ping : deadline;
        if (poll(pfd, n, (int)(until - now)) <= 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (pfd[i].revents == 0)
                continue;
            th_conn *c = t[i].c;
            ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (r <= 0) {
                t[i].eof = true;
                continue;
            }
            c->len += (size_t)r;
            trace_take(&t[i]);
            if (late != NULL && !late_sent && trace_find(&t[i], "* ERR SESSION") >= 0) {
                /* the session is dead now: whatever it says must not act */
                ck_assert(th_send_raw(c, late, strlen(late)));
                late_sent = true;
            }
        }
    }
}

static bool expiry_done(trace *t)
{
    /* t[0]: the silent session (its last notice); t[2]: the waiter for X (its reply) */
    return (t[0].eof || trace_find(&t[0], "* ERR SESSION") >= 0) && trace_find(&t[2], "c ") >= 0;
}

/* "<prefix><n> ms of silence<suffix>": n, or 0 when the line does not match. */
static uint64_t silence_ms(const char *line, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix);
    if (strncmp(line, prefix, pl) != 0)
        return 0;
    char *end;
    uint64_t n = strtoull(line + pl, &end, 10);
    if (end == line + pl || strncmp(end, " ms of silence", 14) != 0 ||
        strcmp(end + 14, suffix) != 0)
        return 0;
    return n;
}

START_TEST(test_session_expiry)
{
    th_conn silent, holder, waiter, probe;
    it_grant gx, gy, gc, gz;
    char line[IT_LINE], want[IT_LINE];

    it_connect(&silent, lockd.port, "silent");
    it_connect(&holder, lockd.port, "holder");
    it_connect(&waiter, lockd.port, "waiter");
    ck_assert_int_eq(it_acquire(&holder, "y", RES_Y, 0, 0, 2000, &gy, line, sizeof line), IT_OK);
    ck_assert_msg(it_acquire(&silent, "x", RES_X, 0, 0, 2000, &gx, line, sizeof line) == IT_OK,
                  "silent: ACQUIRE X got '%s'", line);
    /* Waits far longer than the session lives: only the expiry may end this wait. */
    ck_assert(th_send(&silent, "w ACQUIRE %s 0 10000", RES_Y));
    uint64_t t_last = th_now_ms();
    ck_assert(th_send(&waiter, "c ACQUIRE %s 0 10000", RES_X));

    trace t[3] = {
        {.c = &silent}, {.c = &holder, .keep_alive = true}, {.c = &waiter, .keep_alive = true}};
    bool finished = pump(t, 3, 5000, expiry_done, "late ACQUIRE " RES_Z " 0 0\nlate2 PING\n");
    uint64_t took = th_now_ms() - t_last;
    fprintf(stderr, "it_session_expiry: silent session's last line, then %" PRIu64 " ms:\n", took);
    trace_dump("silent", &t[0]);
    trace_dump("waiter", &t[2]);
    ck_assert_msg(finished, "no ERR SESSION push on the silent session or no reply to the waiter "
                            "in 5 s");

    /* (a) exactly these lines, in this order (EOF after them: checked below); never TIMEOUT */
    ck_assert_msg(trace_find(&t[0], "w TIMEOUT") < 0, "the waiting ACQUIRE got TIMEOUT");
    ck_assert_msg(t[0].n == 3, "silent session: %zu lines, want 3", t[0].n);
    snprintf(want, sizeof want, "* LOST %s %s session", RES_X, gx.token);
    ck_assert_str_eq(t[0].lines[0], want);
    uint64_t n1 = silence_ms(t[0].lines[1], "w ERR SESSION session expired after ", "");
    uint64_t n2 =
        silence_ms(t[0].lines[2], "* ERR SESSION expired after ", " (session.timeout_ms=500)");
    ck_assert_msg(n1 != 0, "waiter reply: '%s'", t[0].lines[1]);
    ck_assert_msg(n2 != 0, "push: '%s'", t[0].lines[2]);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(n1 >= TIMEOUT_MS && n1 < TIMEOUT_MS + 1500, "silence of %" PRIu64 " ms", n1);

    /* (b) the waiter for X got it after the LOST reached the dead session, fence up */
    int ci = trace_find(&t[2], "c ");
    ck_assert_msg(it_classify(t[2].lines[ci], "c", &gc) == IT_OK, "waiter: '%s'", t[2].lines[ci]);
    ck_assert_uint_gt(gc.fence, gx.fence);
    ck_assert_msg(t[0].seq[0] < t[2].seq[ci], "the grant (#%u) was read before the LOST (#%u)",
                  t[2].seq[ci], t[0].seq[0]);
    ck_assert_int_eq(it_release(&waiter, "r", RES_X, gc.token, 2000), IT_OK);

    /* (d) the holder PINGed all along: it kept Y and heard no push */
    int pi = trace_find(&t[1], "* ");
    ck_assert_msg(pi < 0, "holder got a push: '%s'", pi < 0 ? "" : t[1].lines[pi]);
    for (size_t i = 0; i < t[1].n; i++)
        ck_assert_str_eq(t[1].lines[i], "p OK PONG");
    ck_assert_int_eq(it_release(&holder, "r", RES_Y, gy.token, 2000), IT_OK);

    /* (c) the lines the dead session sent after its notice took nothing (Z is free at
     * once) and got no answer: EOF follows the notice */
    th_sleep_ms(100);
    it_connect(&probe, lockd.port, "probe");
    ck_assert_msg(it_acquire(&probe, "z", RES_Z, 0, 0, 2000, &gz, line, sizeof line) == IT_OK,
                  "probe: ACQUIRE Z got '%s' (the dead session's late ACQUIRE took it?)", line);
    ck_assert_int_eq(it_release(&probe, "r", RES_Z, gz.token, 2000), IT_OK);
    ck_assert_msg(!th_recv(&silent, line, sizeof line, 3000), "the dead session got '%s'", line);
    ck_assert_msg(th_wait_closed(&silent, 200), "no EOF on the dead session within 3 s");
    th_close(&silent);

    char *page = it_http_get(lockd.metrics_port, "/metrics", 3000);
    ck_assert_msg(page != NULL, "no metrics page");
    const char *expired = strstr(page, "\nlockd_sessions_expired_total ");
    const char *lost = strstr(page, "\nlockd_lost_locks_total ");
    ck_assert_msg(expired != NULL &&
                      strncmp(expired, "\nlockd_sessions_expired_total 1\n", 32) == 0,
                  "want lockd_sessions_expired_total 1: %.40s", expired ? expired + 1 : "(none)");
    ck_assert_msg(lost != NULL && strncmp(lost, "\nlockd_lost_locks_total 1\n", 26) == 0,
                  "want lockd_lost_locks_total 1: %.40s", lost ? lost + 1 : "(none)");
    free(page);
    th_close(&probe);
    th_close(&holder);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_session_expiry", test_session_expiry, 50, setup);
}
