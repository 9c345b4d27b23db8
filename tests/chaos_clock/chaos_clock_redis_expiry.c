/*
 * chaos_clock_redis_expiry: libcx_clock.so moves a real redis-server's expiries (issue 15
 * §1). A redis-server under the shim starts, answers commands and shuts down cleanly;
 * SET k v PX 10000, then its offset file says +20000 ms: k is gone within 1 s, while the
 * same key on a redis-server without the shim stays. A key set after the jump lasts what
 * it asks, relative to the shifted clock, and that clock runs at the normal rate. A
 * redis-server started before its offset file exists runs at offset 0 and takes the
 * offset once the file appears.
 */
#include "cc_shim.h"
#include "it_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* PTTL of key on port, as a number (-2: no key, -1: no expiry). */
static long long pttl(int port, const char *key)
{
    char out[128];
    ck_assert_msg(it_redis_cmd(port, out, sizeof out, "PTTL %s", key), "PTTL on %d failed", port);
    ck_assert_msg(out[0] == ':', "PTTL %s on %d: '%s'", key, port, out);
    return atoll(out + 1);
}

static void cmd_is(int port, const char *want, const char *cmd)
{
    char out[256];
    ck_assert_msg(it_redis_cmd(port, out, sizeof out, "%s", cmd), "'%s' on %d failed", cmd, port);
    ck_assert_msg(strcmp(out, want) == 0, "'%s' on %d: '%s', want '%s'", cmd, port, out, want);
}

START_TEST(test_redis_expiry)
{
    th_redis shifted = {0}, control = {0};
    shifted.aof = true; /* appendfsync always, as chaos/run runs its masters */
    const char *file = cc_offset_file_new();
    ck_assert_msg(cc_redis_start_shimmed(&shifted, file), "redis-server under %s did not start",
                  cc_shim_lib());
    ck_assert(th_redis_start(&control));
    ck_assert_msg(cc_shim_loaded(shifted.pid), "%s is not mapped in redis-server", cc_shim_lib());

    /* its commands work under the shim */
    cmd_is(shifted.port, "+PONG", "PING");
    cmd_is(shifted.port, "+OK", "SET plain v");
    cmd_is(shifted.port, "v", "GET plain");
    cmd_is(shifted.port, ":1", "INCR n");
    cmd_is(shifted.port, ":1", "HSET h f v");
    cmd_is(shifted.port, ":1", "EVAL return(1) 0");
    for (int i = 0; i < 2; i++) {
        int port = i ? control.port : shifted.port;
        cmd_is(port, "+OK", "SET k v PX 10000");
        long long t = pttl(port, "k");
        ck_assert_msg(t > 9000 && t <= 10000, "PTTL k before the jump on %d: %lld", port, t);
    }

    uint64_t jumped = th_now_ms();
    cc_offset_set(file, 20000);
    long long t = 0;
    while ((t = pttl(shifted.port, "k")) != -2 && th_now_ms() - jumped < 1000)
        th_sleep_ms(10);
    ck_assert_msg(t == -2, "k still there 1 s after a +20000 ms jump (PTTL %lld)", t);
    fprintf(stderr, "k gone %llu ms after the jump\n", (unsigned long long)(th_now_ms() - jumped));
    cmd_is(shifted.port, "$-1", "GET k");
    t = pttl(control.port, "k");
    ck_assert_msg(t > 8000, "the control key went too (PTTL %lld)", t);
    cmd_is(control.port, "v", "GET k");
    cmd_is(shifted.port, "v", "GET plain"); /* keys without expiry stay */

    /* after the jump: a new key lasts what it asks, and the clock runs at its rate */
    cmd_is(shifted.port, "+OK", "SET k2 v PX 10000");
    t = pttl(shifted.port, "k2");
    ck_assert_msg(t > 9000 && t <= 10000, "PTTL k2 after the jump: %lld", t);
    /* between two PTTLs 0.5 s apart its clock moved as much as the real one: each PTTL ran
     * between the moments taken around it (+-2 ms of rounding) */
    uint64_t a0 = th_now_ms();
    long long p0 = pttl(shifted.port, "k2");
    uint64_t a1 = th_now_ms();
    th_sleep_ms(500);
    uint64_t b0 = th_now_ms();
    long long p1 = pttl(shifted.port, "k2");
    uint64_t b1 = th_now_ms();
    long long moved = p0 - p1;
    ck_assert_msg(moved + 2 >= (long long)(b0 - a1) && moved <= (long long)(b1 - a0) + 2,
                  "its clock moved %lld ms while %llu..%llu ms passed", moved,
                  (unsigned long long)(b0 - a1), (unsigned long long)(b1 - a0));

    /* no offset file yet: offset 0; once the file appears the shim maps it (it looks again
     * at most every 200 ms) and the jump takes effect */
    th_redis late = {0};
    char late_file[600];
    snprintf(late_file, sizeof late_file, "%s.late", file);
    ck_assert(cc_redis_start_shimmed(&late, late_file));
    cmd_is(late.port, "+OK", "SET k v PX 10000");
    t = pttl(late.port, "k");
    ck_assert_msg(t > 9000 && t <= 10000, "PTTL k without an offset file: %lld", t);
    FILE *f = fopen(late_file, "w");
    ck_assert(f != NULL);
    fprintf(f, "%-20d\n", 20000);
    fclose(f);
    jumped = th_now_ms();
    while ((t = pttl(late.port, "k")) != -2 && th_now_ms() - jumped < 1000)
        th_sleep_ms(10);
    ck_assert_msg(t == -2, "k still there 1 s after its offset file appeared (PTTL %lld)", t);

    /* and it stops cleanly: SIGTERM, exit 0 */
    int st = th_stop(shifted.pid, true, 5000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "redis-server under the shim did not exit 0 on SIGTERM (status %d)", st);
    shifted.pid = 0;
}
END_TEST

int main(void)
{
    return it_main("chaos_clock_redis_expiry", test_redis_expiry, 30, NULL);
}
