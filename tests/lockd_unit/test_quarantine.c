/*
 * test_quarantine: lk_quarantine's rule without a network (issue 15 §2): what INFO says
 * (run_id, uptime, aof_enabled), what counts as durable, which returns are quarantined
 * (a new run_id without durable data; at lockd's start a master that is not durable and
 * has been up for less than limits.max_lease_ms; a master that dropped inside its
 * quarantine, always), the legal state moves, the time bound and how many other masters
 * the fence restore must read so that every majority that held a fence keeps a member
 * among them.
 */
#include <check.h>
#include <string.h>

#include "lk_quarantine.h"
#include "unit_run.h"

#define INFO_SERVER                                                                                \
    "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"                                \
    "run_id:3dc2102951976a0a495272a3a2035350eb922dc1\r\ntcp_port:6379\r\n"                         \
    "uptime_in_seconds:42\r\nuptime_in_days:0\r\n"
#define INFO_PERSIST "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n"

START_TEST(test_parse_info)
{
    lk_quar_probe p = {.uptime_s = -1};
    lk_quar_parse_info(INFO_SERVER, &p);
    ck_assert_str_eq(p.run_id, "3dc2102951976a0a495272a3a2035350eb922dc1");
    ck_assert_int_eq(p.uptime_s, 42);
    ck_assert(!p.aof_enabled);
    lk_quar_parse_info(INFO_PERSIST, &p); /* the second reply keeps the first's fields */
    ck_assert(p.aof_enabled);
    ck_assert_str_eq(p.run_id, "3dc2102951976a0a495272a3a2035350eb922dc1");
    lk_quar_probe q = {.uptime_s = -1};
    lk_quar_parse_info("# Persistence\r\naof_enabled:0\r\n", &q);
    lk_quar_parse_info(NULL, &q);
    ck_assert(!q.aof_enabled);
    ck_assert_str_eq(q.run_id, "");
    ck_assert_int_eq(q.uptime_s, -1);
    /* "master_run_id:" of a replica's section is not the run_id */
    lk_quar_probe r = {.uptime_s = -1};
    lk_quar_parse_info("# Replication\r\nmaster_run_id:abc\r\n", &r);
    ck_assert_str_eq(r.run_id, "");
}
END_TEST

START_TEST(test_durable_needs_aof_and_fsync_always)
{
    lk_quar_probe p = {.aof_enabled = true, .fsync_always = true};
    ck_assert(lk_quar_durable(&p));
    p.fsync_always = false; /* everysec: up to a second of writes lost on a crash */
    ck_assert(!lk_quar_durable(&p));
    p = (lk_quar_probe){.fsync_always = true}; /* CONFIG says always, but no AOF */
    ck_assert(!lk_quar_durable(&p));
}
END_TEST

START_TEST(test_return_rule)
{
    const char *known = "aaaa";
    lk_quar_probe same = {.run_id = "aaaa", .uptime_s = 1};
    lk_quar_probe other = {.run_id = "bbbb", .uptime_s = 1};
    lk_quar_probe none = {.uptime_s = -1}; /* INFO refused */
    lk_quar_probe durable = {.run_id = "bbbb", .aof_enabled = true, .fsync_always = true};
    /* a reconnect to the same process: counted at once, durable or not */
    ck_assert(!lk_quar_must_quarantine(LKQ_DOWN, known, &same, 60000));
    /* a new process without durable data: it forgot */
    ck_assert(lk_quar_must_quarantine(LKQ_DOWN, known, &other, 60000));
    ck_assert(lk_quar_must_quarantine(LKQ_DOWN, known, &none, 60000));
    ck_assert(lk_quar_must_quarantine(LKQ_DOWN, "", &same, 60000));
    /* a new process on its AOF with appendfsync always: it remembers */
    ck_assert(!lk_quar_must_quarantine(LKQ_DOWN, known, &durable, 60000));
    /* back inside its quarantine: it still owes the rest, whatever it says */
    ck_assert(lk_quar_must_quarantine(LKQ_QUAR_DOWN, known, &same, 60000));
    ck_assert(lk_quar_must_quarantine(LKQ_QUAR_DOWN, known, &durable, 60000));
}
END_TEST

START_TEST(test_start_rule)
{
    lk_quar_probe young = {.run_id = "aaaa", .uptime_s = 59};
    lk_quar_probe old = {.run_id = "aaaa", .uptime_s = 60};
    lk_quar_probe unknown = {.run_id = "aaaa", .uptime_s = -1};
    lk_quar_probe durable = {.run_id = "aaaa", .aof_enabled = true, .fsync_always = true};
    /* lockd's start: no run_id known; a master that restarted less than a lease ago may
     * have forgotten a lock that still runs */
    ck_assert(lk_quar_must_quarantine(LKQ_NEW, "", &young, 60000));
    ck_assert(!lk_quar_must_quarantine(LKQ_NEW, "", &old, 60000));
    ck_assert(lk_quar_must_quarantine(LKQ_NEW, "", &unknown, 60000));
    ck_assert(!lk_quar_must_quarantine(LKQ_NEW, "", &durable, 60000));
}
END_TEST

START_TEST(test_moves)
{
    ck_assert(lk_quar_legal(LKQ_NEW, LKQ_COUNTED));
    ck_assert(lk_quar_legal(LKQ_NEW, LKQ_QUARANTINED));
    ck_assert(lk_quar_legal(LKQ_COUNTED, LKQ_DOWN));
    ck_assert(lk_quar_legal(LKQ_DOWN, LKQ_COUNTED));
    ck_assert(lk_quar_legal(LKQ_DOWN, LKQ_QUARANTINED));
    ck_assert(lk_quar_legal(LKQ_QUARANTINED, LKQ_COUNTED));
    ck_assert(lk_quar_legal(LKQ_QUARANTINED, LKQ_QUAR_DOWN));
    ck_assert(lk_quar_legal(LKQ_QUAR_DOWN, LKQ_QUARANTINED));
    /* a master dropped inside its quarantine cannot skip the rest of it */
    ck_assert(!lk_quar_legal(LKQ_QUAR_DOWN, LKQ_COUNTED));
    ck_assert(!lk_quar_legal(LKQ_QUAR_DOWN, LKQ_DOWN));
    /* a counted master is never quarantined without a return in between */
    ck_assert(!lk_quar_legal(LKQ_COUNTED, LKQ_QUARANTINED));
    ck_assert(!lk_quar_legal(LKQ_COUNTED, LKQ_NEW));
    ck_assert(!lk_quar_legal(LKQ_DOWN, LKQ_QUAR_DOWN));
    ck_assert(!lk_quar_legal(LKQ_QUARANTINED, LKQ_DOWN));
}
END_TEST

START_TEST(test_bound)
{
    /* min(limits.max_lease_ms, largest lease granted) + drift allowance */
    ck_assert_uint_eq(lk_quar_bound_ms(3600000, 3000, 0.01), 3000 + 30 + 2);
    ck_assert_uint_eq(lk_quar_bound_ms(2000, 3000, 0.01), 2000 + 20 + 2);
    ck_assert_uint_eq(lk_quar_bound_ms(3600000, 0, 0.01), 0); /* nothing granted here */
}
END_TEST

START_TEST(test_reads_needed)
{
    /* every majority that held a fence, minus the master that forgot, meets the set read */
    ck_assert_uint_eq(lk_quar_reads_needed(1), 0);
    ck_assert_uint_eq(lk_quar_reads_needed(2), 1);
    ck_assert_uint_eq(lk_quar_reads_needed(3), 2);
    ck_assert_uint_eq(lk_quar_reads_needed(4), 2);
    ck_assert_uint_eq(lk_quar_reads_needed(5), 3);
    for (size_t n = 2; n <= 9; n++) {
        size_t quorum = n / 2 + 1, others = n - 1, need = lk_quar_reads_needed(n);
        /* a majority without the forgetful master has quorum - 1 others; the unread
         * others (others - need) must be too few to hold all of them */
        ck_assert_msg(others - need < quorum - 1, "n=%zu: %zu unread of %zu others", n,
                      others - need, others);
        ck_assert(need <= others);
    }
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_parse_info,  test_durable_needs_aof_and_fsync_always,
                                  test_return_rule, test_start_rule,
                                  test_moves,       test_bound,
                                  test_reads_needed};
    return unit_run("lockd_quarantine_rule", tests, sizeof(tests) / sizeof(tests[0]), 0);
}
