/*
 * it_start_hold: a lockd that has just started holds new sessions in its listen backlog
 * until its masters' first connection attempts tell whether a quorum is reachable (a
 * quorum counts, every attempt ended, or too many failed; at most 1 s), so an ACQUIRE
 * sent the moment it (re)starts is granted instead of being answered NOQUORUM because
 * the masters are not connected yet. With masters that refuse connections it
 * still answers NOQUORUM at once; with a master that accepts and never answers, the hold
 * ends as soon as the others make a quorum; with two such masters of three it lasts its
 * whole bound, and the ACQUIRE is answered NOQUORUM.
 */
#include "it_common.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STARTS 12
#define MUTE_YAML                                                                                  \
    "session: {timeout_ms: 3000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 3000}\n"                                                                 \
    "redlock: {redis_timeout_ms: 500, quarantine: off}\n"

/* Connects to l the moment its port is up and sends HELLO + ACQUIRE without any wait;
 * the reply to the ACQUIRE, and how long it took, in ms. */
static uint64_t acquire_at_start(const th_lockd *l, const char *res, char *line, size_t len)
{
    th_conn c;
    uint64_t t0 = th_now_ms();
    ck_assert_msg(th_connect(&c, l->port), "cannot connect to lockd on %d", l->port);
    ck_assert(th_send(&c, "h HELLO starter"));
    ck_assert(th_send(&c, "a ACQUIRE %s 0 0", res));
    ck_assert_msg(it_wait_reply(&c, "a", line, len, 5000), "no reply to ACQUIRE");
    uint64_t took = th_now_ms() - t0;
    th_close(&c);
    return took;
}

START_TEST(test_start_hold)
{
    th_redis redis[3] = {{0}};
    char line[IT_LINE];
    it_redis_start_n(redis, 3);

    /* every master up: the first ACQUIRE after each start is granted */
    for (int i = 0; i < STARTS; i++) {
        th_lockd l;
        char res[64];
        snprintf(res, sizeof res, "Performance:start%d", i);
        ck_assert_msg(th_lockd_start(&l, redis, 3, IT_FAST_YAML), "lockd did not start");
        acquire_at_start(&l, res, line, sizeof line);
        it_grant g;
        if (it_classify(line, "a", &g) != IT_OK)
            th_dump_log(l.log, 30);
        ck_assert_msg(it_classify(line, "a", &g) == IT_OK, "start %d: '%s'", i, line);
        ck_assert_int_eq(th_stop(l.pid, true, 5000), 0);
    }

    /* two of three masters refuse connections: NOQUORUM, at once (no 1 s hold) */
    th_redis dead[3] = {redis[0], {0}, {0}};
    dead[1].port = th_free_port();
    dead[2].port = th_free_port();
    th_lockd l2;
    ck_assert(th_lockd_start(&l2, dead, 3, IT_FAST_YAML));
    uint64_t took = acquire_at_start(&l2, "Performance:dead", line, sizeof line);
    ck_assert_msg(strncmp(line, "a ERR NOQUORUM ", 15) == 0, "'%s'", line);
    ck_assert_msg(took < 800, "NOQUORUM after %llu ms", (unsigned long long)took);
    ck_assert_int_eq(th_stop(l2.pid, true, 5000), 0);

    /* one master accepts the connection and never answers (and is given up on only after
     * three rounds of 500 ms), quarantine off: the other two count at once, a quorum,
     * and the hold ends there */
    int mute = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    ck_assert(mute >= 0);
    ck_assert(bind(mute, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(listen(mute, 16) == 0);
    ck_assert(getsockname(mute, (struct sockaddr *)&sa, &salen) == 0);
    th_redis part[3] = {redis[0], redis[1], {0}};
    part[2].port = ntohs(sa.sin_port);
    th_lockd l3;
    ck_assert(th_lockd_start(&l3, part, 3, MUTE_YAML));
    took = acquire_at_start(&l3, "Performance:mute", line, sizeof line);
    it_grant g3;
    if (it_classify(line, "a", &g3) != IT_OK)
        th_dump_log(l3.log, 30);
    ck_assert_msg(it_classify(line, "a", &g3) == IT_OK, "'%s'", line);
    ck_assert_msg(took < 900, "granted after %llu ms", (unsigned long long)took);
    ck_assert_int_eq(th_stop(l3.pid, true, 5000), 0);

    /* two mute masters: nothing tells within the hold whether a quorum can be reached, so
     * sessions wait its whole bound (1 s from lockd's start, a little of which passed
     * before this connect), then get NOQUORUM */
    th_redis two_mute[3] = {redis[0], part[2], part[2]};
    th_lockd l4;
    ck_assert(th_lockd_start(&l4, two_mute, 3, MUTE_YAML));
    took = acquire_at_start(&l4, "Performance:mute2", line, sizeof line);
    ck_assert_msg(strncmp(line, "a ERR NOQUORUM ", 15) == 0, "'%s'", line);
    ck_assert_msg(took >= 500 && took < 1450, "NOQUORUM after %llu ms", (unsigned long long)took);
    ck_assert_int_eq(th_stop(l4.pid, true, 5000), 0);
    close(mute);
}
END_TEST

int main(void)
{
    return it_main("it_start_hold", test_start_hold, 60, NULL);
}
