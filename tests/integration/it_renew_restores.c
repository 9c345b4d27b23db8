/*
 * it_renew_restores: a watchdog renewal puts the lock's key back on a master that lost
 * it (a restart without its data, a key expired early under a clock jump), with the
 * token and the lease, but only where no key exists: the masters that forget one after
 * another never leave the lock on a minority. The key is deleted on master 0, then on
 * master 1, then on master 2, a renewal apart: the holder is never told LOST and every
 * master holds its token again. Before, the second deletion left the token on one master
 * of three and the next renewal was refused (renew_refused). A restored key does not
 * count as renewed: the quorum decision is what it was.
 */
#include "it_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_MS 3000 /* renewal every 1000 ms */
#define YAML                                                                                       \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 3000}\n"                                                                 \
    "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"

#define RES "Performance:restored"

START_TEST(test_renew_restores)
{
    th_redis redis[3] = {{0}};
    th_lockd a;
    th_conn holder;
    it_grant g;
    char line[IT_LINE], reply[128];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, YAML);
    it_connect(&holder, a.port, "holder");
    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    for (int i = 0; i < 3; i++) {
        ck_assert(it_redis_cmd(redis[i].port, reply, sizeof reply, "DEL lockd:lock:" RES));
        ck_assert_str_eq(reply, ":1");
        /* a renewal (every 1000 ms) and its round, the session kept alive by PINGs: no
         * LOST push meanwhile */
        static const char *const lost[] = {"* LOST"};
        char lines[1][IT_LINE];
        uint64_t at[1] = {0};
        size_t got = it_wait_prefixes(&holder, 1, lost, lines, at, 1500);
        ck_assert_msg(got == 0, "after master %d forgot: '%s'", i, lines[0]);
        for (int m = 0; m <= i; m++) {
            ck_assert(it_redis_cmd(redis[m].port, reply, sizeof reply, "GET lockd:lock:" RES));
            ck_assert_msg(strcmp(reply, g.token) == 0,
                          "master %d holds '%s' after master %d forgot, want the token %s", m,
                          reply, i, g.token);
            ck_assert(it_redis_cmd(redis[m].port, reply, sizeof reply, "PTTL lockd:lock:" RES));
            long long pttl = atoll(reply + 1);
            ck_assert_msg(pttl > 0 && pttl <= LEASE_MS, "master %d: PTTL %lld", m, pttl);
        }
    }
    /* a key someone else wrote is not taken over: an intruder on master 0 stays */
    ck_assert(it_redis_cmd(redis[0].port, reply, sizeof reply,
                           "SET lockd:lock:" RES " intruder PX 60000"));
    th_sleep_ms(1500);
    ck_assert(it_redis_cmd(redis[0].port, reply, sizeof reply, "GET lockd:lock:" RES));
    ck_assert_str_eq(reply, "intruder");
    th_close(&holder);
}
END_TEST

int main(void)
{
    return it_main("it_renew_restores", test_renew_restores, 30, NULL);
}
