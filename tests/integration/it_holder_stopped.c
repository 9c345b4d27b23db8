/*
 * it_holder_stopped: a holder process whose TCP connection stays open but which stops
 * talking (SIGSTOP) loses its lock after about session.timeout_ms (1000 ms here): the
 * waiter must get it between 0.8x and 2.5x the timeout after the stop (never on TCP
 * liveness alone, never before the session is dead). Once continued (SIGCONT), the old
 * holder gets LOST for RENEW and for RELEASE with its old token.
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define RES "Performance:stopped"

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

START_TEST(test_holder_stopped)
{
    it_holder h;
    th_conn waiter;
    char line[512];
    it_grant g;
    it_holder_start(&h, lockd.port, RES);
    it_connect(&waiter, lockd.port, "waiter");
    /* A fixed lease for the waiter, so that its RENEW below is well defined. */
    ck_assert(th_send(&waiter, "w ACQUIRE %s 10000 10000", RES));
    /* Held across several session timeouts while the holder PINGs: liveness works. */
    ck_assert_msg(!it_wait_reply(&waiter, "w", line, sizeof line, 2 * IT_SESSION_TIMEOUT_MS),
                  "waiter got '%s' while the holder was alive", line);

    uint64_t t0 = th_now_ms();
    kill(h.pid, SIGSTOP);
    ck_assert_msg(it_wait_reply(&waiter, "w", line, sizeof line, 4 * IT_SESSION_TIMEOUT_MS),
                  "waiter got nothing within 4x session.timeout_ms");
    uint64_t took = th_now_ms() - t0;
    fprintf(stderr, "it_holder_stopped: waiter granted %" PRIu64 " ms after SIGSTOP\n", took);
    ck_assert_msg(it_classify(line, "w", &g) == IT_OK, "waiter got '%s'", line);
    ck_assert_uint_gt(g.fence, h.grant.fence);
    ck_assert_msg(took >= IT_SESSION_TIMEOUT_MS * 8 / 10 && took <= IT_SESSION_TIMEOUT_MS * 5 / 2,
                  "granted %" PRIu64 " ms after SIGSTOP, not within [0.8, 2.5] x %d ms", took,
                  IT_SESSION_TIMEOUT_MS);

    kill(h.pid, SIGCONT);
    char report[256];
    ck_assert_msg(it_holder_check(&h, report, sizeof report, 8000), "holder did not report");
    fprintf(stderr, "it_holder_stopped: continued holder: %s\n", report);
    ck_assert_msg(strncmp(report, "RENEW=LOST RELEASE=LOST ", 24) == 0, "holder: %s", report);
    it_holder_reap(&h);

    /* The new holder is unaffected by the old holder's attempts. */
    ck_assert_int_eq(it_renew(&waiter, "n", RES, g.token, 5000, 2000), IT_OK);
    ck_assert_int_eq(it_release(&waiter, "r", RES, g.token, 2000), IT_OK);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_holder_stopped", test_holder_stopped, 50, setup);
}
