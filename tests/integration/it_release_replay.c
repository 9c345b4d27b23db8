/*
 * it_release_replay: a RELEASE that reaches only the master that is up is sent again to the
 * others when they are back, instead of leaving the lock there until its TTL with every
 * waiter stuck behind it. Seen in bench/booking.sh on a loaded machine: two masters paused
 * for ~200 ms, lockd's health check dropped them, a hot performance's lock was released
 * meanwhile, and its keys on those two masters kept the lock for the rest of the watchdog
 * lease (10 s): every booking of the performance waited, then got 503 BUSY.
 * Here: two masters SIGSTOPped, a second session's ACQUIRE makes lockd find them stuck and
 * drop them, the holder releases (one master is up: best effort), the masters continue;
 * the key must be gone from them within 1.5 s (before the fix: the rest of a 6 s lease).
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define RES "Performance:replay"

/* Whether every one of masters [from, to) has no key for RES (polls up to ms). */
static bool key_gone(th_redis *redis, int from, int to, int ms, char *reply, size_t cap)
{
    uint64_t t0 = th_now_us();
    for (;;) {
        bool gone = true;
        for (int i = from; i < to && gone; i++) {
            ck_assert(it_redis_cmd(redis[i].port, reply, cap, "GET lockd:lock:" RES));
            gone = strcmp(reply, "$-1") == 0;
        }
        if (gone || th_now_us() - t0 > (uint64_t)ms * 1000)
            return gone;
        th_sleep_ms(10);
    }
}

START_TEST(test_release_replay)
{
    th_redis redis[3] = {{0}};
    th_lockd a;
    th_conn holder, other;
    it_grant g;
    char line[IT_LINE], reply[128];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3,
                   "session: {timeout_ms: 20000, lock_delay_ms: 0}\n"
                   "watchdog: {lease_ms: 6000}\n"
                   "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20}\n");
    it_connect(&holder, a.port, "holder");
    it_connect(&other, a.port, "other");
    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    ck_assert(kill(redis[1].pid, SIGSTOP) == 0 && kill(redis[2].pid, SIGSTOP) == 0);
    /* commands owed by the stopped masters: lockd drops them after 3 x redis_timeout_ms */
    ck_assert(th_send(&other, "o ACQUIRE Performance:other 0 0"));
    ck_assert_msg(it_wait_reply(&other, "o", line, sizeof line, 3000), "no reply to o");
    th_sleep_ms(200);
    ck_assert(th_send(&holder, "r RELEASE %s %s", RES, g.token));
    ck_assert_msg(it_wait_reply(&holder, "r", line, sizeof line, 3000), "no reply to RELEASE");
    th_sleep_ms(50);
    ck_assert(key_gone(redis, 0, 1, 500, reply, sizeof reply)); /* the master that was up */
    ck_assert(kill(redis[1].pid, SIGCONT) == 0 && kill(redis[2].pid, SIGCONT) == 0);
    uint64_t t0 = th_now_us();
    bool gone = key_gone(redis, 1, 3, 1500, reply, sizeof reply);
    it_redis_cmd(redis[1].port, line, sizeof line, "PTTL lockd:lock:" RES);
    fprintf(stderr,
            "it_release_replay: key %s %" PRIu64 " ms after the masters continued (PTTL %s)\n",
            gone ? "gone" : "still there", (th_now_us() - t0) / 1000, line);
    ck_assert_msg(gone, "the released lock is still on a master that was back (PTTL %s)", line);
    th_close(&holder);
    th_close(&other);
}
END_TEST

int main(void)
{
    return it_main("it_release_replay", test_release_replay, 40, NULL);
}
