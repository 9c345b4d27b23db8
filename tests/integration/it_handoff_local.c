/*
 * it_handoff_local: a waiter on the same lockd gets the lock within 5 ms of the
 * holder's RELEASE. Measured from the moment RELEASE is sent by the holder until the
 * waiter's OK is read, over 21 trials: the median (p50) must be under 5 ms and the
 * worst trial under 20 ms (one slow trial on a busy 2-core machine is tolerated in
 * the tail, a polling handoff is not).
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>

#define TRIALS 21

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

START_TEST(test_handoff_local)
{
    th_conn holder, waiter;
    uint64_t us[TRIALS];
    it_connect(&holder, lockd.port, "holder");
    it_connect(&waiter, lockd.port, "waiter");
    for (int i = 0; i < TRIALS; i++) {
        us[i] = it_handoff_trial(&holder, &waiter, "Performance:handoff", 20);
    }
    uint64_t worst = it_max(us, TRIALS), p50 = it_median(us, TRIALS);
    fprintf(stderr, "it_handoff_local: p50 %" PRIu64 " us, worst %" PRIu64 " us\n", p50, worst);
    ck_assert_msg(p50 < 5000, "handoff p50 %" PRIu64 " us >= 5 ms", p50);
    ck_assert_msg(worst < 20000, "handoff worst %" PRIu64 " us >= 20 ms", worst);
    th_close(&holder);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_handoff_local", test_handoff_local, 50, setup);
}
