/*
 * it_revoke: REVOKE <resource> (SPEC 2b). Only a session that sent AUTH <admin_auth> may
 * (others: ERR NOAUTH; with admin_auth empty nobody may). A holder on the revoking lockd
 * is told `* LOST <res> <token> revoked` before anyone else is granted the lock, the
 * reply is `OK <fence>` with a fence above the holder's, and the waiter is granted with a
 * fence above that. A holder on another lockd is told `* LOST <res> <token> revoked`
 * within about one renewal period (its renewal finds the tombstone), and its waiter there
 * is granted. Nothing held: `OK -`. lockd_revocations_total counts the two revocations.
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YAML IT_FAST_YAML "admin_auth: adm1n\n"

START_TEST(test_revoke)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b, c;
    th_conn conn[4], admin, user, nobody;
    it_grant g1, g2;
    char line[IT_LINE], want[IT_LINE], lines[4][IT_LINE], pfx[4][64];
    const char *pfxp[4];
    uint64_t at_us[4];
    unsigned long long f1, f2;
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, YAML);
    it_lockd_start(&b, redis, 3, YAML);
    /* conn: 0 holder of X on A, 1 waiter for X on A, 2 holder of Y on B, 3 waiter for Y on B */
    it_connect(&conn[0], a.port, "h1");
    it_connect(&conn[1], a.port, "w1");
    it_connect(&conn[2], b.port, "h2");
    it_connect(&conn[3], b.port, "w2");
    it_connect(&admin, a.port, "admin");
    it_connect(&user, a.port, "user");
    ck_assert(it_acquire(&conn[0], "a", "X", 0, 0, 2000, &g1, line, sizeof line) == IT_OK);
    ck_assert(it_acquire(&conn[2], "a", "Y", 0, 0, 2000, &g2, line, sizeof line) == IT_OK);
    ck_assert(th_send(&conn[1], "w ACQUIRE X 0 10000"));
    ck_assert(th_send(&conn[3], "w ACQUIRE Y 0 10000"));
    th_sleep_ms(100);

    /* not admin: refused, nothing changes */
    ck_assert(th_request(&user, "r", line, sizeof line, 2000, "REVOKE X"));
    ck_assert_msg(strncmp(line, "r ERR NOAUTH ", 13) == 0, "'%s'", line);
    ck_assert(th_request(&user, "x", line, sizeof line, 2000, "AUTH wrong"));
    ck_assert(th_request(&user, "r", line, sizeof line, 2000, "REVOKE X"));
    ck_assert_msg(strncmp(line, "r ERR NOAUTH ", 13) == 0, "'%s'", line);
    ck_assert(th_request(&admin, "x", line, sizeof line, 2000, "AUTH adm1n"));
    ck_assert_str_eq(line, "x OK");

    /* the holder on this lockd: LOST revoked first, then the waiter's grant */
    ck_assert(th_send(&admin, "r REVOKE X"));
    snprintf(pfx[0], sizeof pfx[0], "* LOST X ");
    snprintf(pfx[1], sizeof pfx[1], "w ");
    for (int i = 0; i < 2; i++)
        pfxp[i] = pfx[i];
    ck_assert_uint_eq(it_wait_prefixes(conn, 2, pfxp, lines, at_us, 3000), 2);
    ck_assert(it_wait_reply(&admin, "r", line, sizeof line, 2000));
    ck_assert_msg(sscanf(line, "r OK %llu", &f1) == 1, "'%s'", line);
    snprintf(want, sizeof want, "* LOST X %s revoked", g1.token);
    ck_assert_str_eq(lines[0], want);
    it_grant gw;
    ck_assert_msg(it_classify(lines[1], "w", &gw) == IT_OK, "waiter on A: '%s'", lines[1]);
    ck_assert_msg(at_us[0] < at_us[1], "waiter granted before the holder heard LOST");
    ck_assert_uint_gt(f1, g1.fence);
    ck_assert_uint_gt(gw.fence, f1);

    /* the holder on another lockd: told at its next renewal (every 500 ms) */
    uint64_t t0 = th_now_us();
    ck_assert(th_request(&admin, "r", line, sizeof line, 2000, "REVOKE Y"));
    ck_assert_msg(sscanf(line, "r OK %llu", &f2) == 1, "'%s'", line);
    ck_assert_uint_gt(f2, g2.fence);
    snprintf(pfx[2], sizeof pfx[2], "* LOST Y ");
    snprintf(pfx[3], sizeof pfx[3], "w ");
    for (int i = 2; i < 4; i++)
        pfxp[i] = pfx[i];
    ck_assert_uint_eq(it_wait_prefixes(conn + 2, 2, pfxp + 2, lines + 2, at_us + 2, 3000), 2);
    uint64_t ms = (at_us[2] - t0) / 1000;
    fprintf(stderr, "it_revoke: holder on B told %" PRIu64 " ms after the REVOKE: '%s'\n", ms,
            lines[2]);
    snprintf(want, sizeof want, "* LOST Y %s revoked", g2.token);
    ck_assert_str_eq(lines[2], want);
    ck_assert_msg(ms < IT_WATCHDOG_LEASE_MS / 3 + 500, "told %" PRIu64 " ms after", ms);
    ck_assert_msg(it_classify(lines[3], "w", &gw) == IT_OK, "waiter on B: '%s'", lines[3]);
    ck_assert_uint_gt(gw.fence, f2);

    /* nothing held */
    ck_assert(th_request(&admin, "r", line, sizeof line, 2000, "REVOKE Z"));
    ck_assert_str_eq(line, "r OK -");
    char *page = it_http_get(a.metrics_port, "/metrics", 2000);
    ck_assert_msg(page && strstr(page, "\nlockd_revocations_total 2\n"), "revocations not 2");
    ck_assert_msg(strstr(page, "lockd_lost_total{reason=\"revoked\"} 1\n"), "local LOST not 1");
    free(page);

    /* admin_auth empty: nobody may */
    it_lockd_start(&c, redis, 3, IT_FAST_YAML);
    it_connect(&nobody, c.port, "admin");
    ck_assert(th_request(&nobody, "x", line, sizeof line, 2000, "AUTH adm1n"));
    ck_assert(th_request(&nobody, "r", line, sizeof line, 2000, "REVOKE X"));
    ck_assert_msg(strncmp(line, "r ERR NOAUTH ", 13) == 0, "'%s'", line);
    for (int i = 0; i < 4; i++)
        th_close(&conn[i]);
    th_close(&admin);
    th_close(&user);
    th_close(&nobody);
}
END_TEST

int main(void)
{
    return it_main("it_revoke", test_revoke, 30, NULL);
}
