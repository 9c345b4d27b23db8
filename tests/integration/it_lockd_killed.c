/*
 * it_lockd_killed: lockd A is SIGKILLed while its sessions hold watchdog locks (lease
 * 0): nobody renews them any more, and sessions waiting on lockd B (same 3 masters) get
 * every one of them within watchdog.lease_ms + 1 s of the kill. B must not grant them
 * before the keys A wrote can have expired either: A renewed every lease/3, so at
 * least ~2/3 of the lease remained at the kill; the lower bound asserted is lease/2.
 * The servers are started inside the test: the test itself signals them.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>

#define LOCKS 5

START_TEST(test_lockd_killed)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b;
    th_conn holders[LOCKS], waiters[LOCKS];
    char res[LOCKS][64], lines[LOCKS][IT_LINE];
    uint64_t at_us[LOCKS], fence[LOCKS];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_lockd_start(&b, redis, 3, IT_FAST_YAML);
    for (int i = 0; i < LOCKS; i++) {
        it_grant g;
        char line[IT_LINE];
        snprintf(res[i], sizeof res[i], "Performance:%d", 100 + i);
        it_connect(&holders[i], a.port, "holder");
        ck_assert_msg(it_acquire(&holders[i], "a", res[i], 0, 0, 2000, &g, line, sizeof line) ==
                          IT_OK,
                      "holder %d: '%s'", i, line);
        fence[i] = g.fence;
        it_connect(&waiters[i], b.port, "waiter");
        ck_assert(th_send(&waiters[i], "w ACQUIRE %s 0 10000", res[i]));
    }
    th_sleep_ms(200);

    uint64_t t0 = th_now_us();
    th_stop(a.pid, false, 2000); /* SIGKILL */
    size_t got = it_wait_replies(waiters, LOCKS, "w", lines, at_us, IT_WATCHDOG_LEASE_MS + 3000);
    for (int i = 0; i < LOCKS; i++) {
        it_grant g;
        uint64_t ms = at_us[i] ? (at_us[i] - t0) / 1000 : 0;
        fprintf(stderr, "it_lockd_killed: %s granted on B %" PRIu64 " ms after the kill: %s\n",
                res[i], ms, lines[i]);
        ck_assert_msg(it_classify(lines[i], "w", &g) == IT_OK, "waiter %d: '%s'", i, lines[i]);
        ck_assert_uint_gt(g.fence, fence[i]);
        ck_assert_msg(ms <= IT_WATCHDOG_LEASE_MS + 1000, "%s granted after %" PRIu64 " ms", res[i],
                      ms);
        ck_assert_msg(ms >= IT_WATCHDOG_LEASE_MS / 2,
                      "%s granted after %" PRIu64 " ms: before A's lease could expire", res[i], ms);
        ck_assert_int_eq(it_release(&waiters[i], "r", res[i], g.token, 2000), IT_OK);
    }
    ck_assert_uint_eq(got, LOCKS);
    for (int i = 0; i < LOCKS; i++) {
        th_close(&holders[i]);
        th_close(&waiters[i]);
    }
}
END_TEST

int main(void)
{
    return it_main("it_lockd_killed", test_lockd_killed, 50, NULL);
}
