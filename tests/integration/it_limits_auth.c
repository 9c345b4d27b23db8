/*
 * it_limits_auth: with `auth` set, ACQUIRE before AUTH gets ERR NOAUTH, AUTH with a
 * wrong secret gets ERR AUTH (and the session goes on), the right secret gets OK and
 * then locks work. limits.max_lease_ms / max_wait_ms: one over gets ERR LIMIT, the
 * limit itself is allowed. A second ACQUIRE of a resource by the session that holds it
 * gets ERR HELD (locks are not reentrant), also when it would wait.
 */
#include "it_common.h"

#include <stdio.h>
#include <string.h>

#define RES "Performance:limits"

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3,
                   IT_FAST_YAML "auth: \"s3cret\"\n"
                                "limits: {max_lease_ms: 5000, max_wait_ms: 2000}\n");
}

static bool starts(const char *line, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(line, prefix, n) == 0 && (line[n] == '\0' || line[n] == ' ');
}

START_TEST(test_limits_auth)
{
    th_conn c, other;
    char line[IT_LINE];
    it_grant g, g2;
    ck_assert(th_connect(&c, lockd.port));
    ck_assert(th_request(&c, "t1", line, sizeof line, 2000, "ACQUIRE %s 1000 0", RES));
    ck_assert_msg(starts(line, "t1 ERR NOAUTH"), "before AUTH: '%s'", line);
    ck_assert(th_request(&c, "t2", line, sizeof line, 2000, "AUTH wrong-secret"));
    ck_assert_msg(starts(line, "t2 ERR AUTH"), "wrong secret: '%s'", line);
    ck_assert(th_request(&c, "t3", line, sizeof line, 2000, "ACQUIRE %s 1000 0", RES));
    ck_assert_msg(starts(line, "t3 ERR NOAUTH"), "after a wrong AUTH: '%s'", line);
    ck_assert(th_request(&c, "t4", line, sizeof line, 2000, "AUTH s3cret"));
    ck_assert_str_eq(line, "t4 OK");

    ck_assert(th_request(&c, "l1", line, sizeof line, 2000, "ACQUIRE %s 5001 0", RES));
    ck_assert_msg(starts(line, "l1 ERR LIMIT"), "lease over max_lease_ms: '%s'", line);
    ck_assert(th_request(&c, "l2", line, sizeof line, 2000, "ACQUIRE %s 1000 2001", RES));
    ck_assert_msg(starts(line, "l2 ERR LIMIT"), "wait over max_wait_ms: '%s'", line);
    ck_assert_msg(it_acquire(&c, "l3", RES, 5000, 2000, 3000, &g, line, sizeof line) == IT_OK,
                  "at the limits: '%s'", line);

    ck_assert(th_request(&c, "d1", line, sizeof line, 2000, "ACQUIRE %s 1000 0", RES));
    ck_assert_msg(starts(line, "d1 ERR HELD"), "second ACQUIRE, no wait: '%s'", line);
    uint64_t t0 = th_now_ms();
    ck_assert(th_request(&c, "d2", line, sizeof line, 3000, "ACQUIRE %s 1000 1500", RES));
    ck_assert_msg(starts(line, "d2 ERR HELD"), "second ACQUIRE with wait: '%s'", line);
    ck_assert_msg(th_now_ms() - t0 < 1000, "HELD should come at once, not after wait_ms");

    /* Another authenticated session is unaffected and sees the lock taken. */
    ck_assert(th_connect(&other, lockd.port));
    ck_assert(th_request(&other, "o1", line, sizeof line, 2000, "AUTH s3cret"));
    ck_assert_str_eq(line, "o1 OK");
    ck_assert_int_eq(it_acquire(&other, "o2", RES, 1000, 0, 2000, &g2, line, sizeof line),
                     IT_TIMEOUT);
    ck_assert_int_eq(it_release(&c, "r", RES, g.token, 2000), IT_OK);
    ck_assert_int_eq(it_acquire(&other, "o3", RES, 1000, 0, 2000, &g2, line, sizeof line), IT_OK);
    ck_assert_int_eq(it_release(&other, "r", RES, g2.token, 2000), IT_OK);
    th_close(&c);
    th_close(&other);
}
END_TEST

int main(void)
{
    return it_main("it_limits_auth", test_limits_auth, 50, setup);
}
