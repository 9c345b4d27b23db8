/*
 * it_fairness: a busy chain of local handoffs on lockd A does not starve a waiter that
 * queues on lockd B. Four sessions on A take turns on one resource without pause (each
 * ACQUIREs again right after its RELEASE, so A always has a local waiter and could hand
 * the lock over forever); a session on B then ACQUIREs the same resource and must get it
 * within 1.5 s. B's waiters announce themselves ("want" notice through Redis), and A's
 * chain then yields. Fences stay increasing across the two lockds.
 */
#include "it_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define RES        "Performance:fair"
#define CHAIN      4
#define CHAIN_SECS 6

/* One session of the chain: acquire, hold 2 ms, release, again, until the deadline. */
static void chain_member(int port, int id)
{
    th_conn c;
    char name[32], line[IT_LINE];
    snprintf(name, sizeof name, "chain%d", id);
    it_connect(&c, port, name);
    uint64_t deadline = th_now_ms() + CHAIN_SECS * 1000;
    while (th_now_ms() < deadline) {
        it_grant g;
        if (it_acquire(&c, "a", RES, 10000, 10000, 12000, &g, line, sizeof line) != IT_OK)
            _exit(1);
        th_sleep_ms(2);
        if (it_release(&c, "r", RES, g.token, 2000) != IT_OK)
            _exit(1);
    }
    _exit(0);
}

START_TEST(test_fairness)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b;
    pid_t kids[CHAIN];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_lockd_start(&b, redis, 3, IT_FAST_YAML);
    for (int i = 0; i < CHAIN; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0)
            chain_member(a.port, i);
    }
    th_sleep_ms(500); /* the chain is running: A hands the lock from member to member */

    th_conn w;
    char line[IT_LINE];
    it_grant g;
    it_connect(&w, b.port, "remote-waiter");
    /* The chain really holds it: one attempt without waiting fails. */
    it_reply rep = it_acquire(&w, "t", RES, 10000, 0, 2000, &g, line, sizeof line);
    ck_assert_msg(rep == IT_TIMEOUT, "lock not held by the chain: '%s'", line);
    uint64_t t0 = th_now_us();
    ck_assert(th_send(&w, "w ACQUIRE %s 10000 5000", RES));
    /* it_wait_reply PINGs meanwhile: the waiting session lives by traffic. */
    ck_assert_msg(it_wait_reply(&w, "w", line, sizeof line, 6000), "no reply");
    rep = it_classify(line, "w", &g);
    uint64_t waited_ms = (th_now_us() - t0) / 1000;
    fprintf(stderr, "it_fairness: waiter on lockd B got '%s' after %" PRIu64 " ms\n", line,
            waited_ms);
    ck_assert_msg(rep == IT_OK, "remote waiter starved: '%s'", line);
    ck_assert_msg(waited_ms < 1500, "remote waiter waited %" PRIu64 " ms", waited_ms);
    ck_assert_int_eq(it_release(&w, "r", RES, g.token, 2000), IT_OK);

    int failed = 0;
    for (int i = 0; i < CHAIN; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ck_assert_int_eq(failed, 0);
}
END_TEST

int main(void)
{
    return it_main("fairness", test_fairness, 60, NULL);
}
