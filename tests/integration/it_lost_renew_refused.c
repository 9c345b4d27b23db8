/*
 * it_lost_renew_refused: a watchdog lock whose key is overwritten on 2 of 3 masters (a
 * master that lost its data and gave the lock to someone else: Kleppmann's case) is lost
 * at its next renewal: lockd pushes `* LOST <res> <token> renew_refused` within about one
 * renewal period (a third of watchdog.lease_ms), not when validity runs out (SPEC 2b,
 * issue 12 item 3). Before, the refused renewal was retried silently until validity
 * ended, a whole lease later.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_MS 3000 /* renewal every 1000 ms */
#define YAML                                                                                       \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 3000}\n"                                                                 \
    "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"

#define RES "Performance:refused"

START_TEST(test_lost_renew_refused)
{
    th_redis redis[3] = {{0}};
    th_lockd a;
    th_conn holder;
    it_grant g;
    char line[IT_LINE], want[IT_LINE], reply[128];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, YAML);
    it_connect(&holder, a.port, "holder");
    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    th_sleep_ms(200);
    uint64_t t0 = th_now_us();
    for (int i = 0; i < 2; i++) {
        ck_assert(it_redis_cmd(redis[i].port, reply, sizeof reply,
                               "SET lockd:lock:" RES " intruder PX 60000"));
        ck_assert_str_eq(reply, "+OK");
    }
    bool got = it_wait_reply(&holder, "*", line, sizeof line, 2 * LEASE_MS);
    uint64_t ms = (th_now_us() - t0) / 1000;
    fprintf(stderr, "it_lost_renew_refused: '%s' %" PRIu64 " ms after the overwrite\n", line, ms);
    ck_assert_msg(got, "no push within two leases of the overwrite");
    snprintf(want, sizeof want, "* LOST %s %s renew_refused", RES, g.token);
    ck_assert_msg(strcmp(line, want) == 0, "'%s', want '%s'", line, want);
    /* one renewal period (1000 ms) plus a round; validity ran out only ~2800 ms later */
    ck_assert_msg(ms < LEASE_MS / 3 + 400, "LOST %" PRIu64 " ms after the overwrite", ms);
    /* the intruder's keys are untouched: lockd deletes only its own token */
    ck_assert(it_redis_cmd(redis[0].port, reply, sizeof reply, "GET lockd:lock:" RES));
    ck_assert_str_eq(reply, "intruder");
    char *page = it_http_get(a.metrics_port, "/metrics", 2000);
    ck_assert_msg(page && strstr(page, "lockd_lost_total{reason=\"renew_refused\"} 1\n"),
                  "metrics page without the renew_refused count");
    free(page);
    th_close(&holder);
}
END_TEST

int main(void)
{
    return it_main("it_lost_renew_refused", test_lost_renew_refused, 30, NULL);
}
