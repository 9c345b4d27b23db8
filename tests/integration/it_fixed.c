/*
 * it_fixed: the fixed-lease scenario (see it_fixed.h).
 */
#include "it_fixed.h"

#include <stdio.h>
#include <string.h>

void it_fixed_scenario(uint64_t lease_ms, const char *yaml, it_fixed_run *out)
{
    static th_redis redis[3];
    th_lockd a, b;
    th_conn c[4]; /* holders of X0, X1 on A; waiter for X0 on A; waiter for X1 on B */
    char lines[4][IT_LINE], prefix[4][64], line[IT_LINE];
    const char *pfx[4];
    uint64_t at_us[4];
    const char *res[2] = {"Performance:fixed-0", "Performance:fixed-1"};
    memset(out, 0, sizeof *out);
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, yaml);
    it_lockd_start(&b, redis, 3, yaml);
    for (int i = 0; i < 2; i++) {
        it_grant g;
        it_connect(&c[i], a.port, "holder");
        ck_assert_msg(it_acquire(&c[i], "a", res[i], lease_ms, 0, 2000, &g, line, sizeof line) ==
                          IT_OK,
                      "holder %d: '%s'", i, line);
        out->granted_us[i] = th_now_us();
        out->validity_ms[i] = g.validity_ms;
        snprintf(out->token[i], sizeof out->token[i], "%s", g.token);
    }
    it_connect(&c[2], a.port, "waiter-a");
    it_connect(&c[3], b.port, "waiter-b");
    for (int i = 0; i < 2; i++) {
        ck_assert(th_send(&c[2 + i], "w ACQUIRE %s 0 %llu", res[i],
                          (unsigned long long)(lease_ms + 3000)));
        snprintf(prefix[i], sizeof prefix[i], "* LOST %s ", res[i]);
        snprintf(prefix[2 + i], sizeof prefix[2 + i], "w ");
    }
    for (int i = 0; i < 4; i++)
        pfx[i] = prefix[i];
    it_wait_prefixes(c, 4, pfx, lines, at_us, (int)lease_ms + 3000);
    for (int i = 0; i < 2; i++) {
        snprintf(out->push[i], sizeof out->push[i], "%.*s", (int)sizeof out->push[i] - 1,
                 at_us[i] ? lines[i] : "");
        out->push_us[i] = at_us[i];
        snprintf(out->grant[i], sizeof out->grant[i], "%.*s", (int)sizeof out->grant[i] - 1,
                 lines[2 + i]);
        out->grant_us[i] = at_us[2 + i];
        fprintf(stderr,
                "it_fixed: %s (validity %llu ms): push '%s' at +%lld ms, waiter on %s '%s' at "
                "+%lld ms\n",
                res[i], (unsigned long long)out->validity_ms[i], out->push[i],
                at_us[i] ? (long long)(at_us[i] - out->granted_us[i]) / 1000 : -1, i ? "B" : "A",
                lines[2 + i],
                at_us[2 + i] ? (long long)(at_us[2 + i] - out->granted_us[i]) / 1000 : -1);
    }
    for (int i = 0; i < 4; i++)
        th_close(&c[i]);
}
