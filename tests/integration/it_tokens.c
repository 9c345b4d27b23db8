/*
 * it_tokens: RENEW and RELEASE act only on a lock this session holds with that token.
 * A wrong token, another session's (valid) token and a double RELEASE all get LOST and
 * change nothing: the lock stays held (others still get TIMEOUT) and the owner's own
 * RENEW and RELEASE are OK afterwards.
 */
#include "it_common.h"

#include <stdio.h>
#include <string.h>

#define RES "Performance:tokens"

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

/* The lock is still held by someone: a no-wait ACQUIRE from probe gets TIMEOUT. */
static void assert_still_held(th_conn *probe, const char *when)
{
    char line[IT_LINE];
    ck_assert_msg(it_acquire(probe, "x", RES, 1000, 0, 2000, NULL, line, sizeof line) == IT_TIMEOUT,
                  "%s: lock not held any more ('%s')", when, line);
}

START_TEST(test_tokens)
{
    th_conn owner, other, probe;
    it_grant g, g2;
    char line[IT_LINE];
    const char *wrong = "0123456789abcdef0123456789abcdef";
    it_connect(&owner, lockd.port, "owner");
    it_connect(&other, lockd.port, "other");
    it_connect(&probe, lockd.port, "probe");
    ck_assert_int_eq(it_acquire(&owner, "a", RES, 10000, 0, 2000, &g, line, sizeof line), IT_OK);
    ck_assert_str_ne(g.token, wrong);

    /* Wrong token, from the owner's own session. */
    ck_assert_int_eq(it_renew(&owner, "n1", RES, wrong, 10000, 2000), IT_LOST);
    ck_assert_int_eq(it_release(&owner, "r1", RES, wrong, 2000), IT_LOST);
    /* The right token on the wrong resource. */
    ck_assert_int_eq(it_release(&owner, "r2", "Performance:other", g.token, 2000), IT_LOST);
    assert_still_held(&probe, "after wrong tokens");

    /* The owner's token from another session. */
    ck_assert_int_eq(it_renew(&other, "n2", RES, g.token, 10000, 2000), IT_LOST);
    ck_assert_int_eq(it_release(&other, "r3", RES, g.token, 2000), IT_LOST);
    assert_still_held(&probe, "after another session's RELEASE");

    /* Owner unaffected. */
    ck_assert_int_eq(it_renew(&owner, "n3", RES, g.token, 10000, 2000), IT_OK);
    ck_assert_int_eq(it_release(&owner, "r4", RES, g.token, 2000), IT_OK);
    /* Double RELEASE: LOST, not an error, and the session goes on. */
    ck_assert_int_eq(it_release(&owner, "r5", RES, g.token, 2000), IT_LOST);
    ck_assert_int_eq(it_renew(&owner, "n4", RES, g.token, 10000, 2000), IT_LOST);
    ck_assert(it_ping(&owner, "p", 2000));

    /* A stale token must not touch the next holder's lock either. */
    ck_assert_int_eq(it_acquire(&other, "b", RES, 10000, 0, 2000, &g2, line, sizeof line), IT_OK);
    ck_assert_uint_gt(g2.fence, g.fence);
    ck_assert_int_eq(it_release(&owner, "r6", RES, g.token, 2000), IT_LOST);
    assert_still_held(&probe, "after a stale RELEASE");
    ck_assert_int_eq(it_release(&other, "r7", RES, g2.token, 2000), IT_OK);
    th_close(&owner);
    th_close(&other);
    th_close(&probe);
}
END_TEST

int main(void)
{
    return it_main("it_tokens", test_tokens, 50, setup);
}
