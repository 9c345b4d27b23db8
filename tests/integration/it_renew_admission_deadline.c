/*
 * it_renew_admission_deadline: a watchdog renewal that waits in lockd's admission queue
 * (redlock.max_inflight_rounds: 1, behind LOAD acquire rounds that one session pipelines
 * at once) has the lock's validity as its deadline: the holder of a 150 ms watchdog lease
 * gets `* LOST <res> <token> no_quorum` when validity ends, not when the queued renewal
 * finally comes out (issue 12 item 6: before, the renewal waited in the queue with no
 * deadline, past validity, and the push came when it was refused).
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define RES  "Performance:admission"
#define LOAD 3000

START_TEST(test_renew_admission_deadline)
{
    th_redis redis[3] = {{0}};
    th_lockd a;
    th_conn holder, load;
    it_grant g;
    char line[IT_LINE], want[IT_LINE];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3,
                   "session: {timeout_ms: 5000, lock_delay_ms: 0}\n"
                   "watchdog: {lease_ms: 150}\n"
                   "redlock: {redis_timeout_ms: 20, retry_delay_ms: 20, "
                   "clock_drift_factor: 0.01, max_inflight_rounds: 1}\n");
    it_connect(&holder, a.port, "holder");
    it_connect(&load, a.port, "load");
    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    uint64_t t0 = th_now_us();
    static char burst[LOAD * 48];
    size_t n = 0;
    for (int i = 0; i < LOAD; i++)
        n += (size_t)snprintf(burst + n, sizeof burst - n, "l%d ACQUIRE Performance:load-%d 0 0\n",
                              i, i);
    ck_assert(th_send_raw(&load, burst, n));
    bool got = it_wait_reply(&holder, "*", line, sizeof line, 5000);
    uint64_t ms = (th_now_us() - t0) / 1000;
    fprintf(stderr,
            "it_renew_admission_deadline: '%s' %" PRIu64 " ms after the grant (validity %" PRIu64
            ")\n",
            got ? line : "", ms, g.validity_ms);
    ck_assert_msg(got, "no LOST push within 5 s");
    snprintf(want, sizeof want, "* LOST %s %s no_quorum", RES, g.token);
    ck_assert_msg(strcmp(line, want) == 0, "'%s', want '%s'", line, want);
    ck_assert_msg(ms <= g.validity_ms + 150,
                  "LOST %" PRIu64 " ms after the grant, validity %" PRIu64, ms, g.validity_ms);
    th_close(&load);
    th_close(&holder);
}
END_TEST

int main(void)
{
    return it_main("it_renew_admission_deadline", test_renew_admission_deadline, 30, NULL);
}
