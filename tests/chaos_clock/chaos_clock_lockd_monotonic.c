/*
 * chaos_clock_lockd_monotonic: lockd's leases, renewals, session timeouts and waits run
 * on the monotonic clock (issue 15 §1, clock_jump_lockd). A lockd under libcx_clock.so;
 * session A holds W (watchdog lease 1500 ms) and F (fixed lease 3000 ms); B waits for W,
 * C for F; a viewer SHOWs both every 100 ms. lockd's wall clock jumps +10 min at 0.3 s,
 * to -10 min at 1.3 s (F's lease ends inside this window) and home at 4.5 s. Then: A never
 * lost W and W's ttl never ran out (renewals went on: its ttl rose again and again); F's
 * ttl only fell, in step with the real time; A got `* LOST F ... expired` and C its grant
 * no earlier than F's validity after the ACQUIRE was sent, and not later than the lease
 * plus 1 s; B was never granted W while A held it, and is granted once A releases it.
 * That the jumps reached lockd shows in its log (debug: a grant in each window), stamped
 * by its wall clock: lines 10 min ahead of the real time and lines 10 min behind it.
 */
#include "cc_shim.h"
#include "it_common.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RES_W       "Clock:watchdog"
#define RES_F       "Clock:fixed"
#define F_LEASE_MS  3000
#define JUMP_MS     INT64_C(600000)
#define F_SENT_RING 256 /* SHOWs of F in flight at most */

enum { CA, CB, CC, CV, NCONN }; /* holder, W's waiter, F's waiter, viewer */

/* IT_FAST_YAML at log level debug: every grant is logged, stamped by lockd's wall clock. */
#define YAML                                                                                       \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 1500}\n"                                                                 \
    "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"              \
    "log: {level: debug}\n"

static int64_t real_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* this test runs without the shim */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Counts the lines of lockd's log stamped more than 5 min ahead of [from, to] (real wall
 * ms) into *ahead, more than 5 min behind it into *behind. */
static void log_stamps(const char *log, int64_t from, int64_t to, int *ahead, int *behind)
{
    char line[4096];
    FILE *f = fopen(log, "r");
    ck_assert_msg(f != NULL, "no lockd log %s", log);
    *ahead = *behind = 0;
    while (fgets(line, sizeof line, f)) {
        struct tm tm = {0};
        int ms;
        if (sscanf(line, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec, &ms) != 7)
            continue;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        int64_t stamp = (int64_t)timegm(&tm) * 1000 + ms;
        *ahead += stamp > to + 300000;
        *behind += stamp < from - 300000;
    }
    fclose(f);
}

/* What the loop saw. */
typedef struct seen {
    uint64_t lost_f_ms; /* when A got * LOST F (0: not yet) */
    char lost_f_line[IT_LINE];
    uint64_t c_granted_ms; /* when C got its OK for F */
    unsigned w_renewals;   /* times W's ttl rose between two SHOWs */
    long long w_last_ttl;
    unsigned f_shows;             /* SHOWs of F while A held it */
    uint64_t t_g;                 /* when F's grant reply was read */
    uint64_t f_sent[F_SENT_RING]; /* send times of F's SHOWs, oldest at f_head */
    unsigned f_head, f_tail;
} seen;

/* One line from connection i at time now: checks it against the rules. */
static void on_line(int i, const char *line, uint64_t now, uint64_t t_f, const it_grant *gw,
                    const it_grant *gf, seen *s)
{
    unsigned long long fence, ttl;
    int held;
    if (strncmp(line, "p OK PONG", 9) == 0)
        return;
    if (i == CA) {
        ck_assert_msg(strncmp(line, "* LOST " RES_W " ", strlen("* LOST " RES_W " ")) != 0,
                      "A lost the watchdog lock at %" PRIu64 " ms: '%s'", now - t_f, line);
        if (strncmp(line, "* LOST " RES_F " ", strlen("* LOST " RES_F " ")) == 0) {
            ck_assert_msg(s->lost_f_ms == 0, "a second LOST for F: '%s'", line);
            s->lost_f_ms = now;
            snprintf(s->lost_f_line, sizeof s->lost_f_line, "%s", line);
            return;
        }
    } else if (i == CB) {
        ck_assert_msg(0, "B got '%s' at %" PRIu64 " ms while A holds " RES_W, line, now - t_f);
    } else if (i == CC) {
        ck_assert_msg(strncmp(line, "c OK ", 5) == 0, "C got '%s'", line);
        s->c_granted_ms = now;
        return;
    } else if (strncmp(line, "w OK ", 5) == 0) {
        ck_assert_msg(sscanf(line, "w OK held=%d fence=%llu ttl_ms=%llu", &held, &fence, &ttl) == 3,
                      "SHOW W: '%s'", line);
        ck_assert_msg(held == 1 && fence == gw->fence && ttl > 0 && ttl <= IT_WATCHDOG_LEASE_MS,
                      "SHOW W at %" PRIu64 " ms: '%s'", now - t_f, line);
        if (s->w_last_ttl >= 0 && (long long)ttl > s->w_last_ttl)
            s->w_renewals++;
        s->w_last_ttl = (long long)ttl;
        return;
    } else if (strncmp(line, "f OK ", 5) == 0) {
        ck_assert_msg(sscanf(line, "f OK held=%d fence=%llu ttl_ms=%llu", &held, &fence, &ttl) == 3,
                      "SHOW F: '%s'", line);
        /* the SHOW this answers was sent no earlier than the oldest one outstanding */
        uint64_t sent = s->f_sent[s->f_head++ % F_SENT_RING];
        if (held == 1 && fence == gf->fence) {
            /* not stretched: the keys were written before the grant's reply came (t_g), so
             * what is left when the SHOW runs is at most the lease minus the time since */
            ck_assert_msg(ttl + sent <= s->t_g + F_LEASE_MS + 2,
                          "F's ttl %llu ms at %" PRIu64 " ms after its grant", ttl, sent - s->t_g);
            s->f_shows++;
        }
        return;
    }
    ck_assert_msg(strncmp(line, "* LOST", 6) != 0 && strstr(line, " ERR ") == NULL,
                  "connection %d got '%s'", i, line);
}

START_TEST(test_lockd_monotonic)
{
    th_redis redis[3] = {{0}};
    th_lockd l;
    th_conn c[NCONN];
    it_grant gw, gf;
    char line[IT_LINE];
    const char *file = cc_offset_file_new();
    it_redis_start_n(redis, 3);
    int64_t wall_from = real_wall_ms();
    ck_assert_msg(cc_lockd_start_shimmed(&l, redis, 3, YAML, file),
                  "lockd under %s did not start (log %s)", cc_shim_lib(), l.log);
    it_wait_masters(&l, 3, 10000);
    ck_assert_msg(cc_shim_loaded(l.pid), "%s is not mapped in lockd", cc_shim_lib());
    const char *names[NCONN] = {"holder", "waiter-w", "waiter-f", "viewer"};
    for (int i = 0; i < NCONN; i++)
        it_connect(&c[i], l.port, names[i]);

    ck_assert_int_eq(it_acquire(&c[CA], "a", RES_W, 0, 0, 2000, &gw, line, sizeof line), IT_OK);
    uint64_t t_f = th_now_ms(); /* F's ACQUIRE is sent: the client's deadline counts from here */
    ck_assert_int_eq(it_acquire(&c[CA], "b", RES_F, F_LEASE_MS, 0, 2000, &gf, line, sizeof line),
                     IT_OK);
    uint64_t t_g = th_now_ms();
    ck_assert(th_send(&c[CB], "b ACQUIRE " RES_W " 0 20000"));
    ck_assert(th_send(&c[CC], "c ACQUIRE " RES_F " 0 20000"));

    seen s = {.w_last_ttl = -1, .t_g = t_g};
    int64_t offset = 0;
    bool probed = false;
    uint64_t next_tick = 0, end = t_f + 5500;
    for (uint64_t now = th_now_ms(); now < end; now = th_now_ms()) {
        int64_t want = now - t_f < 300    ? 0
                       : now - t_f < 1300 ? JUMP_MS
                       : now - t_f < 4500 ? -JUMP_MS
                                          : 0;
        if (want != offset) {
            cc_offset_set(file, want);
            fprintf(stderr, "%5" PRIu64 " ms: lockd's wall clock %+" PRId64 " ms\n", now - t_f,
                    want);
            offset = want;
        }
        if (now >= next_tick) { /* every 100 ms: sessions stay alive, the viewer looks */
            for (int i = CA; i <= CC; i++)
                ck_assert(th_send(&c[i], "p PING"));
            ck_assert(th_send(&c[CV], "w SHOW " RES_W));
            ck_assert(th_send(&c[CV], "f SHOW " RES_F));
            ck_assert(s.f_tail - s.f_head < F_SENT_RING);
            s.f_sent[s.f_tail++ % F_SENT_RING] = now;
            next_tick = now + 100;
        }
        if (!probed && now - t_f >= 800) { /* a grant logged inside the forward window */
            ck_assert(th_send(&c[CV], "q ACQUIRE Clock:probe 0 0"));
            probed = true;
        }
        struct pollfd pfd[NCONN];
        for (int i = 0; i < NCONN; i++)
            pfd[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
        (void)poll(pfd, NCONN, 10);
        for (int i = 0; i < NCONN; i++) {
            if (pfd[i].revents) {
                ssize_t r = recv(c[i].fd, c[i].buf + c[i].len, sizeof c[i].buf - c[i].len, 0);
                ck_assert_msg(r > 0, "lockd closed %s's session", names[i]);
                c[i].len += (size_t)r;
            }
            while (th_recv(&c[i], line, sizeof line, 0))
                on_line(i, line, th_now_ms(), t_f, &gw, &gf, &s);
        }
    }
    fprintf(stderr,
            "F lost at %" PRIu64 " ms ('%s'), C granted at %" PRIu64 " ms, validity %" PRIu64
            " ms; W renewed %u times; %u SHOWs of F held\n",
            s.lost_f_ms - t_f, s.lost_f_line, s.c_granted_ms - t_f, gf.validity_ms, s.w_renewals,
            s.f_shows);
    ck_assert_msg(s.lost_f_ms != 0 && strstr(s.lost_f_line, " expired") != NULL,
                  "no '* LOST " RES_F " ... expired' for A within 5.5 s ('%s')", s.lost_f_line);
    ck_assert_msg(s.lost_f_ms + 20 >= t_f + gf.validity_ms,
                  "F cut: LOST at %" PRIu64 " ms, validity %" PRIu64, s.lost_f_ms - t_f,
                  gf.validity_ms);
    ck_assert_msg(s.lost_f_ms <= t_f + F_LEASE_MS + 1000, "F stretched: LOST at %" PRIu64 " ms",
                  s.lost_f_ms - t_f);
    ck_assert_msg(s.c_granted_ms != 0, "C was never granted F");
    ck_assert_msg(s.c_granted_ms >= t_f + gf.validity_ms,
                  "C granted F early: %" PRIu64 " ms, validity %" PRIu64, s.c_granted_ms - t_f,
                  gf.validity_ms);
    ck_assert_msg(s.c_granted_ms <= t_f + F_LEASE_MS + 1000, "C granted F late: %" PRIu64 " ms",
                  s.c_granted_ms - t_f);
    /* 5.5 s of a 1500 ms watchdog lease renewed every 500 ms: ~10 renewals */
    ck_assert_msg(s.w_renewals >= 6, "W's ttl rose only %u times", s.w_renewals);
    ck_assert_msg(s.f_shows >= 10, "F seen held only %u times", s.f_shows);

    /* the jumps reached lockd: its log has lines stamped 10 min ahead and 10 min behind */
    int ahead, behind;
    log_stamps(l.log, wall_from, real_wall_ms(), &ahead, &behind);
    fprintf(stderr, "lockd's log: %d lines stamped ahead, %d behind\n", ahead, behind);
    ck_assert_msg(ahead > 0 && behind > 0,
                  "lockd's log has %d lines stamped ~10 min ahead and %d behind: the jumps did "
                  "not reach it (is %s a working shim?)",
                  ahead, behind, cc_shim_lib());

    /* A still holds W (RELEASE OK, not LOST) and B gets it now */
    ck_assert_int_eq(it_release(&c[CA], "r", RES_W, gw.token, 2000), IT_OK);
    ck_assert_msg(it_wait_reply(&c[CB], "b", line, sizeof line, 3000), "B not granted W");
    it_grant gb;
    ck_assert_msg(it_classify(line, "b", &gb) == IT_OK && gb.fence > gw.fence, "B got '%s'", line);
    for (int i = 0; i < NCONN; i++)
        th_close(&c[i]);
}
END_TEST

int main(void)
{
    return it_main("chaos_clock_lockd_monotonic", test_lockd_monotonic, 40, NULL);
}
