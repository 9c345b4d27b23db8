/*
 * it_handoff_remote: a waiter on lockd B gets the lock within 100 ms of the holder's
 * RELEASE through lockd A (same 3 masters): the wake-up goes through Redis pub/sub, the
 * bounded poll is only the safety net. Measured from the RELEASE send to the waiter's
 * OK, over 11 trials; every trial must be under 100 ms.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>

#define TRIALS 11

static th_redis redis[3];
static th_lockd lockd[2];

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd[0], redis, 3, IT_FAST_YAML);
    it_lockd_start(&lockd[1], redis, 3, IT_FAST_YAML);
}

START_TEST(test_handoff_remote)
{
    th_conn holder, waiter;
    uint64_t us[TRIALS];
    it_connect(&holder, lockd[0].port, "holder-a");
    it_connect(&waiter, lockd[1].port, "waiter-b");
    for (int i = 0; i < TRIALS; i++) {
        /* 50 ms: lockd B has made its first attempt and is waiting for a wake-up. */
        us[i] = it_handoff_trial(&holder, &waiter, "Performance:remote", 50);
    }
    uint64_t worst = it_max(us, TRIALS), p50 = it_median(us, TRIALS);
    fprintf(stderr, "it_handoff_remote: p50 %" PRIu64 " us, worst %" PRIu64 " us\n", p50, worst);
    ck_assert_msg(worst < 100000, "remote handoff worst %" PRIu64 " us >= 100 ms", worst);
    th_close(&holder);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_handoff_remote", test_handoff_remote, 50, setup);
}
