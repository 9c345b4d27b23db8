/*
 * it_fairness: busy sessions on lockd A do not starve a waiter that queues on lockd B.
 * Two shapes, each run in turn:
 * - a chain: four sessions on A take turns on one resource without pause (each ACQUIREs
 *   again right after its RELEASE, so A always has a local waiter and could hand the
 *   lock over forever);
 * - a single session on A that ACQUIREs again right after each RELEASE: A has no local
 *   waiter at the release, so the lock goes back to Redis, and A's fresh attempt (its
 *   ACQUIRE comes in the same write as the RELEASE, as from a booking server that serves
 *   a queue of requests under one grant) would beat B's pub/sub wake-up and polls every
 *   time.
 * The session on B must get the lock within 1.5 s. B's waiters announce themselves
 * ("want" notice through Redis), and A then yields: a long chain releases through Redis,
 * and a release without local waiter gives B a head start before A's next attempt.
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define RES        "Performance:fair"
#define CHAIN_MAX  4
#define CHAIN_SECS 6

/* One busy session: acquire, hold hold_ms, release, again, until the deadline. With
 * pipelined, the RELEASE and the next ACQUIRE go out in one write (as a client that
 * serves a queue of its own under the lock sends them), so lockd reads both at once. */
static void chain_member(int port, int id, int hold_ms, bool pipelined)
{
    th_conn c;
    char name[32], line[IT_LINE];
    snprintf(name, sizeof name, "chain%d", id);
    it_connect(&c, port, name);
    uint64_t deadline = th_now_ms() + CHAIN_SECS * 1000;
    it_grant g;
    if (it_acquire(&c, "a", RES, 10000, 10000, 12000, &g, line, sizeof line) != IT_OK)
        _exit(1);
    while (th_now_ms() < deadline) {
        th_sleep_ms(hold_ms);
        if (pipelined) {
            if (!th_send(&c, "r RELEASE %s %s\na ACQUIRE %s 10000 10000", RES, g.token, RES) ||
                !th_recv_prefix(&c, "r ", line, sizeof line, 2000) || strcmp(line, "r OK") != 0 ||
                !th_recv_prefix(&c, "a ", line, sizeof line, 12000) ||
                it_classify(line, "a", &g) != IT_OK)
                _exit(1);
            continue;
        }
        if (it_release(&c, "r", RES, g.token, 2000) != IT_OK ||
            it_acquire(&c, "a", RES, 10000, 10000, 12000, &g, line, sizeof line) != IT_OK)
            _exit(1);
    }
    if (it_release(&c, "r", RES, g.token, 2000) != IT_OK)
        _exit(1);
    _exit(0);
}

/* members sessions busy on lockd A; a waiter on lockd B must not starve. */
static void check_remote_waiter(const th_lockd *a, const th_lockd *b, int members, int hold_ms,
                                bool pipelined)
{
    pid_t kids[CHAIN_MAX];
    for (int i = 0; i < members; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0)
            chain_member(a->port, i, hold_ms, pipelined);
    }
    th_sleep_ms(500); /* the chain is running: A hands the lock from member to member */

    th_conn w;
    char line[IT_LINE];
    it_grant g;
    it_connect(&w, b->port, "remote-waiter");
    /* The chain really holds it: one attempt without waiting fails. */
    it_reply rep = it_acquire(&w, "t", RES, 10000, 0, 2000, &g, line, sizeof line);
    ck_assert_msg(rep == IT_TIMEOUT, "lock not held by the chain: '%s'", line);
    uint64_t t0 = th_now_us();
    ck_assert(th_send(&w, "w ACQUIRE %s 10000 5000", RES));
    /* it_wait_reply PINGs meanwhile: the waiting session lives by traffic. */
    ck_assert_msg(it_wait_reply(&w, "w", line, sizeof line, 6000), "no reply");
    rep = it_classify(line, "w", &g);
    uint64_t waited_ms = (th_now_us() - t0) / 1000;
    fprintf(stderr,
            "it_fairness: %d busy on lockd A: waiter on lockd B got '%s' after %" PRIu64 " ms\n",
            members, line, waited_ms);
    ck_assert_msg(rep == IT_OK, "remote waiter starved: '%s'", line);
    ck_assert_msg(waited_ms < 1500, "remote waiter waited %" PRIu64 " ms", waited_ms);
    ck_assert_int_eq(it_release(&w, "r", RES, g.token, 2000), IT_OK);

    th_close(&w);
    int failed = 0;
    for (int i = 0; i < members; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ck_assert_int_eq(failed, 0);
}

START_TEST(test_fairness)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b;
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_lockd_start(&b, redis, 3, IT_FAST_YAML);
    check_remote_waiter(&a, &b, CHAIN_MAX, 2, false);
    check_remote_waiter(&a, &b, 1, 30, true);
}
END_TEST

int main(void)
{
    return it_main("fairness", test_fairness, 90, NULL);
}
