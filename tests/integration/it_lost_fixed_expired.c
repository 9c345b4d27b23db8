/*
 * it_lost_fixed_expired: a fixed lease (ACQUIRE with lease_ms 600) that runs out without
 * RENEW ends with `* LOST <res> <token> expired` to its holder, and that push arrives
 * before the lock is granted to a waiter on the same lockd (local handoff) or on another
 * lockd (SPEC 2b's ordering promise; issue 12 item 4: before, the lease ended without any
 * push while others were granted the lock).
 */
#include "it_fixed.h"

#include <stdio.h>
#include <string.h>

START_TEST(test_lost_fixed_expired)
{
    it_fixed_run run;
    it_fixed_scenario(600, IT_FAST_YAML, &run);
    for (int i = 0; i < 2; i++) {
        char want[IT_LINE];
        it_grant g;
        snprintf(want, sizeof want, "* LOST Performance:fixed-%d %s expired", i, run.token[i]);
        ck_assert_msg(run.push_us[i] != 0, "holder %d: no LOST push", i);
        ck_assert_msg(strcmp(run.push[i], want) == 0, "holder %d: '%s', want '%s'", i, run.push[i],
                      want);
        ck_assert_msg(it_classify(run.grant[i], "w", &g) == IT_OK, "waiter %d: '%s'", i,
                      run.grant[i]);
        ck_assert_msg(run.push_us[i] < run.grant_us[i], "waiter %d granted before the LOST push",
                      i);
    }
}
END_TEST

int main(void)
{
    return it_main("it_lost_fixed_expired", test_lost_fixed_expired, 30, NULL);
}
