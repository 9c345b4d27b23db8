/*
 * it_handoff_partial_cleanup: a local handoff that reaches only 2 of 3 masters (lockd's
 * connection to the third was just killed with CLIENT KILL, so the takeover cannot reach
 * it) still grants the waiter, and the old holder's token is removed from the third
 * master as soon as lockd is connected to it again, not left there until its TTL
 * (issue 12 item 6). The watchdog lease is 1500 ms: before the fix the old token stayed
 * there for about that long.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define RES "Performance:partial"

START_TEST(test_handoff_partial_cleanup)
{
    th_redis redis[3] = {{0}};
    th_lockd a;
    th_conn holder, waiter;
    it_grant g, gw;
    char line[IT_LINE], reply[128];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_connect(&holder, a.port, "holder");
    it_connect(&waiter, a.port, "waiter");
    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    ck_assert(th_send(&waiter, "w ACQUIRE " RES " 0 5000"));
    th_sleep_ms(100);
    ck_assert(it_redis_cmd(redis[2].port, reply, sizeof reply, "GET lockd:lock:" RES));
    ck_assert_str_eq(reply, g.token);
    /* lockd's command and pub/sub connections to master 2 go; it reconnects in ~50 ms */
    ck_assert(it_redis_cmd(redis[2].port, reply, sizeof reply, "CLIENT KILL TYPE normal"));
    ck_assert(it_redis_cmd(redis[2].port, reply, sizeof reply, "CLIENT KILL TYPE pubsub"));
    ck_assert(th_send(&holder, "r RELEASE " RES " %s", g.token));
    ck_assert_msg(it_wait_reply(&waiter, "w", line, sizeof line, 3000), "waiter not granted");
    ck_assert_msg(it_classify(line, "w", &gw) == IT_OK, "waiter: '%s'", line);
    uint64_t t0 = th_now_us();
    bool clean = false;
    while (!clean && th_now_us() - t0 < 700000) {
        ck_assert(it_redis_cmd(redis[2].port, reply, sizeof reply, "GET lockd:lock:" RES));
        clean = strcmp(reply, g.token) != 0;
        if (!clean)
            th_sleep_ms(10);
    }
    fprintf(stderr,
            "it_handoff_partial_cleanup: master 2 holds '%s' %" PRIu64
            " ms after the handoff (old token %s, new %s)\n",
            reply, (th_now_us() - t0) / 1000, g.token, gw.token);
    ck_assert_msg(clean, "the old token is still on master 2 700 ms after the handoff");
    th_close(&holder);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_handoff_partial_cleanup", test_handoff_partial_cleanup, 30, NULL);
}
