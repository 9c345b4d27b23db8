/*
 * it_holder_killed: a holder process (a forked child that connected, acquired with a
 * watchdog lease and then just PINGs) is SIGKILLed; the waiter on another connection
 * gets the lock within 100 ms of the kill: the kernel closes the dead process's socket
 * and lockd releases a session's locks as soon as it ends.
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>

#define RES "Performance:killed"

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

START_TEST(test_holder_killed)
{
    it_holder h;
    th_conn waiter;
    char line[512];
    it_grant g;
    it_holder_start(&h, lockd.port, RES);
    it_connect(&waiter, lockd.port, "waiter");
    ck_assert(th_send(&waiter, "w ACQUIRE %s 0 10000", RES));
    th_sleep_ms(100);
    ck_assert_msg(!th_recv(&waiter, line, sizeof line, 0), "waiter got '%s' while held", line);

    uint64_t t0 = th_now_us();
    kill(h.pid, SIGKILL);
    ck_assert_msg(it_wait_reply(&waiter, "w", line, sizeof line, 3000), "waiter got nothing");
    uint64_t took = th_now_us() - t0;
    it_holder_reap(&h);
    fprintf(stderr, "it_holder_killed: waiter granted %" PRIu64 " us after SIGKILL\n", took);
    ck_assert_msg(it_classify(line, "w", &g) == IT_OK, "waiter got '%s'", line);
    ck_assert_uint_gt(g.fence, h.grant.fence);
    ck_assert_msg(took < 100000, "waiter granted %" PRIu64 " us after SIGKILL (>= 100 ms)", took);
    ck_assert_int_eq(it_release(&waiter, "r", RES, g.token, 2000), IT_OK);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_holder_killed", test_holder_killed, 50, setup);
}
