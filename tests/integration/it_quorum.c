/*
 * it_quorum: with N masters (Redis with appendfsync always, so a SIGKILLed master keeps
 * its fence counters, as the README tells operators to run it):
 *  1. a minority down (SIGKILL) changes nothing: ACQUIRE/RENEW/RELEASE all work;
 *  2. a majority down: ACQUIRE (even with wait_ms 5000) gets ERR NOQUORUM within 100 ms;
 *  3. the masters restarted on the same ports: the SAME lockd process and the SAME
 *     session grant again within a few seconds (reconnect with backoff, no restart);
 *  4. every fence granted along the way is greater than the one before.
 * The servers are started inside the test: the test itself kills and restarts them.
 */
#include "it_quorum.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "it_common.h"

#define RES        "Performance:quorum"
#define MAX_N      5
#define RECOVER_MS 10000

static uint64_t last_fence;

/* ACQUIRE (fixed lease; one failed attempt may be retried within wait_ms), RENEW,
 * RELEASE; the fence must go up. */
static void cycle(th_conn *c, const char *when)
{
    it_grant g;
    char line[IT_LINE];
    it_reply k = it_acquire(c, "q", RES, 2000, 1000, 3000, &g, line, sizeof line);
    ck_assert_msg(k == IT_OK, "%s: ACQUIRE got '%s'", when, line);
    ck_assert_msg(g.fence > last_fence, "%s: fence %" PRIu64 " after %" PRIu64, when, g.fence,
                  last_fence);
    last_fence = g.fence;
    ck_assert_msg(it_renew(c, "n", RES, g.token, 2000, 2000) == IT_OK, "%s: RENEW failed", when);
    ck_assert_msg(it_release(c, "r", RES, g.token, 2000) == IT_OK, "%s: RELEASE failed", when);
}

/* Retries ACQUIRE every 100 ms on the same session until it is granted (lockd
 * reconnects to restarted masters with backoff); the fence must still go up. */
static void recover(th_conn *c, size_t n, const char *when)
{
    char line[IT_LINE];
    uint64_t t0 = th_now_ms();
    for (;;) {
        it_grant g;
        it_reply k = it_acquire(c, "q", RES, 2000, 0, 2000, &g, line, sizeof line);
        if (k == IT_OK) {
            ck_assert_msg(g.fence > last_fence, "%s: fence %" PRIu64 " after %" PRIu64, when,
                          g.fence, last_fence);
            last_fence = g.fence;
            ck_assert_int_eq(it_release(c, "r", RES, g.token, 2000), IT_OK);
            break;
        }
        ck_assert_msg(k == IT_ERR || k == IT_TIMEOUT, "%s: '%s'", when, line);
        ck_assert_msg(th_now_ms() - t0 < RECOVER_MS, "%s: no grant within %d ms: '%s'", when,
                      RECOVER_MS, line);
        th_sleep_ms(100);
    }
    fprintf(stderr, "it_quorum%zu: %s: granted again after %" PRIu64 " ms\n", n, when,
            th_now_ms() - t0);
}

void it_quorum_run(size_t n)
{
    th_redis redis[MAX_N] = {{0}};
    th_lockd lockd;
    th_conn c;
    char line[IT_LINE];
    size_t quorum = n / 2 + 1, minority = n - quorum;
    ck_assert(n <= MAX_N);
    for (size_t i = 0; i < n; i++) {
        redis[i].aof = true;
    }
    it_redis_start_n(redis, n);
    /* appendfsync always makes every write wait for an fsync: a round gets 300 ms. */
    it_lockd_start(&lockd, redis, n,
                   "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"
                   "redlock: {redis_timeout_ms: 300, retry_delay_ms: 20, "
                   "clock_drift_factor: 0.01}\n");
    it_connect(&c, lockd.port, "quorum");
    for (int i = 0; i < 3; i++) {
        cycle(&c, "all up");
    }

    for (size_t i = 0; i < minority; i++) {
        th_redis_kill(&redis[i]);
    }
    th_sleep_ms(200);
    for (int i = 0; i < 3; i++) {
        cycle(&c, "minority down");
    }
    fprintf(stderr, "it_quorum%zu: %zu of %zu down: grants work, fence %" PRIu64 "\n", n, minority,
            n, last_fence);

    th_redis_kill(&redis[minority]); /* now a majority is down */
    th_sleep_ms(200);                /* lockd sees the connections drop */
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = th_now_us();
        ck_assert(th_request(&c, "q", line, sizeof line, 6000, "ACQUIRE %s 2000 5000", RES));
        uint64_t us = th_now_us() - t0;
        fprintf(stderr, "it_quorum%zu: %zu of %zu down: '%s' after %" PRIu64 " us\n", n,
                minority + 1, n, line, us);
        ck_assert_msg(strncmp(line, "q ERR NOQUORUM", 14) == 0, "majority down: got '%s'", line);
        ck_assert_msg(us < 100000, "NOQUORUM took %" PRIu64 " us (>= 100 ms)", us);
        ck_assert(it_ping(&c, "p", 1000));
    }

    for (size_t i = 0; i <= minority; i++) {
        ck_assert_msg(th_redis_start(&redis[i]), "redis restart on port %d failed", redis[i].port);
    }
    recover(&c, n, "masters back");
    for (int i = 0; i < 3; i++) {
        cycle(&c, "all back");
    }
    /* Now the masters that stayed up are killed (quorum - 1 of them): the restarted ones
     * alone carry the quorum, so lockd really uses its new connections (the first grant
     * above may have come before all of them were reconnected), and their fence counters
     * (kept by the AOF) keep the fences going up. */
    for (size_t i = minority + 1; i < n; i++) {
        th_redis_kill(&redis[i]);
    }
    recover(&c, n, "only restarted masters up");
    for (int i = 0; i < 3; i++) {
        cycle(&c, "only restarted masters up");
    }
    fprintf(stderr, "it_quorum%zu: last fence %" PRIu64 "\n", n, last_fence);
    th_close(&c);
}
