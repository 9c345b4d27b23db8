/*
 * it_sigterm: SIGTERM to a lockd whose sessions hold locks (one fixed 30 s lease, one
 * watchdog lock with a 10 s watchdog lease): lockd exits with status 0, and it released
 * the locks on its way out, so another lockd on the same masters grants them to its
 * waiters at once (within 1 s of the signal), not after the leases run out; and each
 * holder was told first, `* LOST <res> <token> shutdown`, before its end of file (SPEC 2b:
 * before, a holder heard nothing but the EOF, after the other lockd had granted the lock).
 * The servers are started inside the test: the test itself signals lockd.
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define YAML                                                                                       \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 10000}\n"                                                                \
    "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"

START_TEST(test_sigterm)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b;
    th_conn holders[2], waiters[2];
    char lines[2][IT_LINE];
    uint64_t at_us[2], fence[2];
    char token[2][IT_TOKEN_LEN + 1];
    const char *res[2] = {"Performance:term-fixed", "Performance:term-watchdog"};
    const uint64_t lease[2] = {30000, 0};
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, YAML);
    it_lockd_start(&b, redis, 3, YAML);
    for (int i = 0; i < 2; i++) {
        it_grant g;
        char line[IT_LINE];
        it_connect(&holders[i], a.port, "holder");
        ck_assert_msg(
            it_acquire(&holders[i], "a", res[i], lease[i], 0, 2000, &g, line, sizeof line) == IT_OK,
            "holder %d: '%s'", i, line);
        fence[i] = g.fence;
        snprintf(token[i], sizeof token[i], "%s", g.token);
        it_connect(&waiters[i], b.port, "waiter");
        ck_assert(th_send(&waiters[i], "w ACQUIRE %s 0 20000", res[i]));
    }
    th_sleep_ms(200);

    uint64_t t0 = th_now_us();
    th_signal(a.pid, SIGTERM);
    it_wait_replies(waiters, 2, "w", lines, at_us, 5000);
    int status = th_wait_exit(a.pid, 10000);
    fprintf(stderr, "it_sigterm: lockd A exit status 0x%x\n", status);
    for (int i = 0; i < 2; i++) {
        it_grant g;
        uint64_t ms = at_us[i] ? (at_us[i] - t0) / 1000 : 0;
        fprintf(stderr, "it_sigterm: %s granted on B %" PRIu64 " ms after SIGTERM: '%s'\n", res[i],
                ms, lines[i]);
        ck_assert_msg(it_classify(lines[i], "w", &g) == IT_OK, "waiter %d: '%s'", i, lines[i]);
        ck_assert_uint_gt(g.fence, fence[i]);
        ck_assert_msg(ms < 1000, "%s granted %" PRIu64 " ms after SIGTERM (lease not released)",
                      res[i], ms);
        ck_assert_int_eq(it_release(&waiters[i], "r", res[i], g.token, 2000), IT_OK);
    }
    for (int i = 0; i < 2; i++) {
        char line[IT_LINE], want[IT_LINE];
        snprintf(want, sizeof want, "* LOST %s %s shutdown", res[i], token[i]);
        ck_assert_msg(it_wait_reply(&holders[i], "*", line, sizeof line, 2000),
                      "holder %d: no push before its end of file", i);
        ck_assert_msg(strcmp(line, want) == 0, "holder %d: '%s', want '%s'", i, line, want);
    }
    ck_assert_msg(status != -1, "lockd did not exit within 10 s of SIGTERM");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "lockd exit status 0x%x", status);
    for (int i = 0; i < 2; i++) {
        th_close(&holders[i]);
        th_close(&waiters[i]);
    }
}
END_TEST

int main(void)
{
    return it_main("it_sigterm", test_sigterm, 50, NULL);
}
