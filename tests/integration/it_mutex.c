/*
 * it_mutex: mutual exclusion. 50 sessions x 20 ACQUIRE/RELEASE cycles on ONE resource,
 * half of the sessions on lockd A and half on lockd B (same 3 redis masters). All 50
 * connections are driven from this one process with poll(), so every event has one
 * global order: a grant that arrives while another session still holds the lock (has
 * not sent its RELEASE yet) is an overlap. Each holder keeps the lock ~1 ms so that a
 * double grant has a window to show up. Every fence must be greater than the previous
 * one in grant order.
 */
#include "it_common.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define SESSIONS 50
#define CYCLES   20
#define HOLD_US  1000
#define PING_US  250000 /* heartbeat while waiting: sessions live by traffic */
#define RES      "Performance:mutex"

typedef enum st {
    ST_WAITING,   /* ACQUIRE sent, no reply yet */
    ST_HOLDING,   /* OK received, RELEASE not sent yet */
    ST_RELEASING, /* RELEASE sent, no reply yet */
    ST_DONE,      /* all cycles done */
} st;

typedef struct sess {
    th_conn c;
    st state;
    int cycles;
    char token[IT_TOKEN_LEN + 1];
    uint64_t release_at_us;
    uint64_t last_send_us;
    int pings_out;
} sess;

typedef struct interval {
    uint64_t grant_us, release_us, fence;
    int who;
} interval;

static th_redis redis[3];
static th_lockd lockd[2];
static sess s[SESSIONS];
static interval iv[SESSIONS * CYCLES];

static const char *yaml = "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"
                          "watchdog: {lease_ms: 1500}\n"
                          "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, "
                          "clock_drift_factor: 0.01}\n"
                          "limits: {max_wait_ms: 600000}\n";

static void setup(void)
{
    it_redis_start_n(redis, 3);
    for (size_t i = 0; i < 2; i++) {
        it_lockd_start(&lockd[i], redis, 3, yaml);
    }
}

static void send_acquire(sess *x)
{
    ck_assert(th_send(&x->c, "a ACQUIRE %s 5000 60000", RES));
    x->state = ST_WAITING;
    x->last_send_us = th_now_us();
}

START_TEST(test_mutex)
{
    for (int i = 0; i < SESSIONS; i++) {
        char name[32];
        snprintf(name, sizeof name, "mutex-%d", i);
        it_connect(&s[i].c, lockd[i % 2].port, name);
    }
    for (int i = 0; i < SESSIONS; i++) {
        send_acquire(&s[i]);
    }

    int holder = -1, done = 0, overlaps = 0;
    size_t n_iv = 0;
    uint64_t last_fence = 0, start = th_now_us();
    struct pollfd pfd[SESSIONS];
    while (done < SESSIONS) {
        uint64_t now = th_now_us();
        ck_assert_msg(now - start < 100u * 1000000u, "mutex run took over 100 s (%d done)", done);
        /* Timed actions first: releases due, heartbeats of idle waiters. */
        int wait_ms = 50;
        for (int i = 0; i < SESSIONS; i++) {
            sess *x = &s[i];
            if (x->state == ST_HOLDING) {
                if (now >= x->release_at_us) {
                    /* The interval ends when the holder gives the lock up. */
                    ck_assert_int_eq(holder, i);
                    holder = -1;
                    iv[n_iv - 1].release_us = now;
                    ck_assert(th_send(&x->c, "r RELEASE %s %s", RES, x->token));
                    x->state = ST_RELEASING;
                    x->last_send_us = now;
                } else {
                    wait_ms = 0;
                }
            }
            if (x->state == ST_WAITING && now - x->last_send_us > PING_US) {
                ck_assert(th_send(&x->c, "p PING"));
                x->pings_out++;
                x->last_send_us = now;
            }
            pfd[i].fd = x->c.fd;
            pfd[i].events = x->state == ST_DONE ? 0 : POLLIN;
            pfd[i].revents = 0;
        }
        int pr = poll(pfd, SESSIONS, wait_ms);
        ck_assert(pr >= 0);
        for (int i = 0; i < SESSIONS && pr > 0; i++) {
            sess *x = &s[i];
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            ssize_t r = recv(x->c.fd, x->c.buf + x->c.len, sizeof x->c.buf - x->c.len, 0);
            ck_assert_msg(r > 0, "session %d: connection closed by lockd", i);
            x->c.len += (size_t)r;
            char line[512];
            while (th_recv(&x->c, line, sizeof line, 0)) {
                it_grant g;
                if (strncmp(line, "p ", 2) == 0) {
                    ck_assert_str_eq(line, "p OK PONG");
                    x->pings_out--;
                    continue;
                }
                if (x->state == ST_WAITING) {
                    it_reply k = it_classify(line, "a", &g);
                    ck_assert_msg(k == IT_OK, "session %d: ACQUIRE got '%s'", i, line);
                    uint64_t t = th_now_us();
                    if (holder != -1) {
                        overlaps++;
                        fprintf(stderr,
                                "OVERLAP: session %d granted (fence %" PRIu64
                                ") while session %d holds\n",
                                i, g.fence, holder);
                    }
                    ck_assert_msg(g.fence > last_fence,
                                  "fence went from %" PRIu64 " to %" PRIu64 " (session %d)",
                                  last_fence, g.fence, i);
                    last_fence = g.fence;
                    holder = i;
                    iv[n_iv++] = (interval){t, 0, g.fence, i};
                    memcpy(x->token, g.token, sizeof x->token);
                    x->state = ST_HOLDING;
                    x->release_at_us = t + HOLD_US;
                } else if (x->state == ST_RELEASING) {
                    ck_assert_msg(strcmp(line, "r OK") == 0, "session %d: RELEASE got '%s'", i,
                                  line);
                    if (++x->cycles == CYCLES) {
                        x->state = ST_DONE;
                        done++;
                    } else {
                        send_acquire(x);
                    }
                } else {
                    ck_abort_msg("session %d: unexpected line '%s'", i, line);
                }
            }
        }
    }
    uint64_t took = th_now_us() - start;
    fprintf(stderr, "it_mutex: %zu grants in %.2f s, last fence %" PRIu64 "\n", n_iv,
            (double)took / 1e6, last_fence);
    ck_assert_int_eq(overlaps, 0);
    ck_assert_uint_eq(n_iv, SESSIONS * CYCLES);
    /* The same claim as intervals: sorted by grant (they are), [grant, release) never
     * overlap and fences strictly increase. */
    for (size_t k = 1; k < n_iv; k++) {
        ck_assert_msg(iv[k].grant_us >= iv[k - 1].release_us,
                      "interval %zu [%" PRIu64 ",...) starts before %zu ends at %" PRIu64, k,
                      iv[k].grant_us, k - 1, iv[k - 1].release_us);
        ck_assert_uint_gt(iv[k].fence, iv[k - 1].fence);
    }
    for (int i = 0; i < SESSIONS; i++) {
        ck_assert_int_eq(s[i].cycles, CYCLES);
        th_close(&s[i].c);
    }
}
END_TEST

int main(void)
{
    return it_main("it_mutex", test_mutex, 110, setup);
}
