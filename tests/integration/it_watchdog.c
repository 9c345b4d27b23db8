/*
 * it_watchdog: a lock taken with lease 0 is kept alive by lockd's watchdog for 3x
 * watchdog.lease_ms (1500 ms here) while its session lives (the holder only PINGs):
 * a second session's ACQUIRE ... 0 (no waiting) gets TIMEOUT all along, the holder
 * gets no LOST push, and the holder's RELEASE at the end is OK, not LOST.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define RES "Performance:watchdog"

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

START_TEST(test_watchdog)
{
    th_conn holder, other;
    it_grant g, g2;
    char line[512];
    it_connect(&holder, lockd.port, "holder");
    it_connect(&other, lockd.port, "other");
    ck_assert_int_eq(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line), IT_OK);
    /* Validity is counted from the watchdog lease, not from "forever". */
    ck_assert_uint_le(g.validity_ms, IT_WATCHDOG_LEASE_MS);

    uint64_t t0 = th_now_ms(), end = t0 + 3 * IT_WATCHDOG_LEASE_MS + 300;
    int probes = 0;
    while (th_now_ms() < end) {
        ck_assert(th_send(&holder, "p PING"));
        ck_assert_msg(th_recv(&holder, line, sizeof line, 1000), "holder: no PONG");
        ck_assert_msg(strcmp(line, "p OK PONG") == 0, "holder got '%s' at +%" PRIu64 " ms", line,
                      th_now_ms() - t0);
        it_reply k = it_acquire(&other, "o", RES, 0, 0, 2000, &g2, line, sizeof line);
        ck_assert_msg(k == IT_TIMEOUT, "other session got '%s' at +%" PRIu64 " ms", line,
                      th_now_ms() - t0);
        probes++;
        th_sleep_ms(250);
    }
    fprintf(stderr, "it_watchdog: held %" PRIu64 " ms, %d probes got TIMEOUT\n", th_now_ms() - t0,
            probes);
    ck_assert_int_eq(it_release(&holder, "r", RES, g.token, 2000), IT_OK);
    ck_assert_int_eq(it_acquire(&other, "o", RES, 0, 0, 2000, &g2, line, sizeof line), IT_OK);
    ck_assert_uint_gt(g2.fence, g.fence);
    ck_assert_int_eq(it_release(&other, "r", RES, g2.token, 2000), IT_OK);
    th_close(&holder);
    th_close(&other);
}
END_TEST

int main(void)
{
    return it_main("it_watchdog", test_watchdog, 50, setup);
}
