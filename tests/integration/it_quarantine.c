/*
 * it_quarantine: a master that forgot, at the wrong moment (issue 15 §2). Three masters, m1
 * WITHOUT AOF, m0 and m2 with AOF + appendfsync always; two lockds, A and B.
 *   1. m2 is down; a session on A is granted R (4 times: the last one held with a fixed
 *      lease): the lock and its fence (4) live on m0 and m1 only. m2 comes back (on its AOF: it
 * never had R).
 *   2. m1 is SIGKILLed and restarted empty at once: R now lives on m0 alone.
 *   3. A session on B asks for R.
 * Guard off: m1 and m2 (both empty) grant it: two holders at once, with the same fence.
 * Guard on: B does not count m1 (a new run_id, not durable) in any quorum: no grant while
 * A's lease lasts; m1 leaves its quarantine only once that lease has passed on m0, with
 * its fence counter raised to m0's; then, with m0 gone, m1 and m2 alone grant R with a
 * fence ABOVE A's (without the restore they would both answer 1: no growth).
 */
#include "it_quarantine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it_common.h"

#define LEASE_MS 3000
#define RES      "Performance:amnesia"
#define YAML_ON                                                                                    \
    "session: {timeout_ms: 10000, lock_delay_ms: 0}\n"                                             \
    "redlock: {redis_timeout_ms: 100, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"
#define YAML_OFF                                                                                   \
    "session: {timeout_ms: 10000, lock_delay_ms: 0}\n"                                             \
    "redlock: {redis_timeout_ms: 100, retry_delay_ms: 20, clock_drift_factor: 0.01, "              \
    "quarantine: false}\n"

/* The value of key (" key=") in lockd's INFO on port, -1 when absent or no reply. */
static long long info_value(int port, const char *key)
{
    th_conn c;
    char line[2048], want[64];
    long long v = -1;
    if (!th_connect(&c, port))
        return -1;
    snprintf(want, sizeof want, " %s=", key);
    if (th_request(&c, "i", line, sizeof line, 2000, "INFO")) {
        const char *p = strstr(line, want);
        if (p != NULL)
            v = strtoll(p + strlen(want), NULL, 10);
    }
    th_close(&c);
    return v;
}

/* Polls INFO on port until key reaches want (timeout_ms at most); true when it did. */
static bool wait_info(int port, const char *key, long long want, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (info_value(port, key) != want) {
        if (th_now_ms() >= deadline)
            return false;
        th_sleep_ms(10);
    }
    return true;
}

/* Until both lockds have both their connections to the master on port again (INFO clients
 * counts them and this query's), then the time their script loads take. */
static void wait_reconnected(int port)
{
    char out[64];
    uint64_t deadline = th_now_ms() + 2000;
    for (;;) {
        /* the count as an integer reply (it_redis_cmd reads one line) */
        bool ok = it_redis_cmd(port, out, sizeof out,
                               "EVAL \"return(tonumber(string.match("
                               "redis.call('INFO','clients'),'connected_"
                               "clients:(%%d+)')))\" 0");
        if (ok && out[0] == ':' && atoi(out + 1) >= 5)
            break;
        ck_assert_msg(th_now_ms() < deadline, "the lockds did not reconnect to m1: '%s'", out);
        th_sleep_ms(10);
    }
    th_sleep_ms(200);
}

void it_quarantine_story(bool guard, bool restart_b)
{
    th_redis m[3] = {{.aof = true}, {.aof = false}, {.aof = true}};
    th_lockd a, b;
    th_conn ca, cb;
    it_grant ga, gb;
    char line[IT_LINE];
    const char *yaml = guard ? YAML_ON : YAML_OFF;
    it_redis_start_n(m, 3);
    it_lockd_start(&a, m, 3, yaml);
    it_lockd_start(&b, m, 3, yaml);
    it_connect(&ca, a.port, "holder-a");
    it_connect(&cb, b.port, "holder-b");

    /* 1. m2 down: R is granted on m0 and m1 */
    th_redis_kill(&m[2]);
    ck_assert_msg(wait_info(a.port, "masters_up", 2, 3000), "lockd A still sees m2 up");
    /* a few grants first, so that m0 and m1 hold a fence (4) that the masters which never
     * saw them cannot reach by themselves (m2 is bumped once by B's refused attempt) */
    for (int i = 0; i < 3; i++) {
        ck_assert(it_acquire(&ca, "w", RES, LEASE_MS, 0, 2000, &ga, line, sizeof line) == IT_OK);
        ck_assert(it_release(&ca, "x", RES, ga.token, 2000) == IT_OK);
    }
    uint64_t t_a = th_now_ms();
    ck_assert_msg(it_acquire(&ca, "a", RES, LEASE_MS, 0, 2000, &ga, line, sizeof line) == IT_OK,
                  "A's grant: '%s'", line);
    ck_assert(th_redis_start(&m[2]));
    ck_assert_msg(wait_info(b.port, "masters_up", 3, 3000), "lockd B does not count m2 again");

    /* 2. m1 forgets: SIGKILL, and back at once on the same port, empty, without AOF (with
     * restart_b, lockd B is SIGKILLed just before and starts again just after: it has never
     * seen m1's old run_id) */
    if (restart_b) {
        th_close(&cb);
        th_stop(b.pid, false, 2000);
    }
    th_redis_kill(&m[1]);
    ck_assert(th_redis_start(&m[1]));
    if (restart_b) {
        ck_assert(th_lockd_restart(&b));
        it_connect(&cb, b.port, "holder-b");
    }
    char reply[128];
    ck_assert(it_redis_cmd(m[1].port, reply, sizeof reply, "EXISTS lockd:lock:" RES));
    ck_assert_str_eq(reply, ":0"); /* it forgot A's lock (lockd A may restore its fence) */
    /* B reconnects (backoff 25-50 ms, then the probe and the script loads) */
    bool quarantined = false;
    if (guard)
        quarantined = wait_info(b.port, "masters_quarantined", 1, 1500);
    else
        wait_reconnected(m[1].port);
    ck_assert_msg(th_now_ms() < t_a + LEASE_MS - 1000, "too slow: A's lease is nearly over");
    long long up_b = info_value(b.port, "masters_up");
    fprintf(stderr, "it_quarantine(%s): A holds R fence %" PRIu64 "; B sees masters_up=%lld\n",
            guard ? "on" : "off", ga.fence, up_b);

    /* 3. a session on B asks for R while A's lease lasts */
    it_reply r = it_acquire(&cb, "b", RES, LEASE_MS, 0, 2000, &gb, line, sizeof line);
    uint64_t t_b = th_now_ms();
    if (!guard) {
        ck_assert_msg(r == IT_OK, "guard off: B was not granted R: '%s'", line);
        ck_assert_msg(t_b < t_a + LEASE_MS, "B's grant came after A's lease");
        fprintf(stderr,
                "it_quarantine(off): TWO HOLDERS: A fence %" PRIu64 " (lease until +%d ms), "
                "B fence %" PRIu64 " granted at +%" PRIu64 " ms\n",
                ga.fence, LEASE_MS, gb.fence, t_b - t_a);
        ck_assert_msg(gb.fence <= ga.fence, "the fence grew (%" PRIu64 " -> %" PRIu64 ")", ga.fence,
                      gb.fence);
        th_close(&ca);
        th_close(&cb);
        return;
    }
    ck_assert_msg(r != IT_OK, "guard on: B was granted R while A holds it: '%s'", line);
    ck_assert_msg(quarantined, "lockd B did not quarantine m1");
    ck_assert_int_eq(up_b, 2);
    /* m1 counts again only once A's lease has run out on m0 */
    ck_assert_msg(wait_info(b.port, "masters_quarantined", 0, LEASE_MS + 3000),
                  "m1 never left its quarantine");
    uint64_t t_out = th_now_ms();
    fprintf(stderr,
            "it_quarantine(on): m1 counted again %" PRIu64 " ms after A's grant (lease %d)\n",
            t_out - t_a, LEASE_MS);
    ck_assert_msg(t_out >= t_a + LEASE_MS - 50, "m1 counted again %" PRIu64 " ms after the grant",
                  t_out - t_a);
    /* m0 goes: m1 (restored) and m2 alone must give a fence above A's */
    th_redis_kill(&m[0]);
    ck_assert_msg(wait_info(b.port, "masters_up", 2, 3000), "lockd B still sees m0 up");
    ck_assert_msg(it_acquire(&cb, "c", RES, LEASE_MS, 2000, 4000, &gb, line, sizeof line) == IT_OK,
                  "B after the lease: '%s'", line);
    fprintf(stderr,
            "it_quarantine(on): B granted R at +%" PRIu64 " ms, fence %" PRIu64 " (A's %" PRIu64
            ")\n",
            th_now_ms() - t_a, gb.fence, ga.fence);
    ck_assert_msg(gb.fence > ga.fence, "the fence did not grow: A %" PRIu64 ", B %" PRIu64,
                  ga.fence, gb.fence);
    /* m1 quarantined on B at B's start (not durable, up for less than limits.max_lease_ms:
     * it may have forgotten just before) and, without a restart of B, on its return */
    char *page = it_http_get(b.metrics_port, "/metrics", 2000);
    ck_assert_msg(page &&
                      strstr(page, restart_b ? "\nlockd_quarantines_total 1\n"
                                             : "\nlockd_quarantines_total 2\n") &&
                      strstr(page, "\nlockd_masters_quarantined 0\n"),
                  "metrics page without the quarantine figures: %s",
                  page ? strstr(page, "lockd_masters_quarantined") : "(none)");
    free(page);
    th_close(&ca);
    th_close(&cb);
}
