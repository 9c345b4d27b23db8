/*
 * it_cli: lockd's command line and config handling (SPEC §5): --help and --version exit
 * 0; a bad flag, a flag with a bad value, an unknown key, a wrong type or an out-of-range
 * value each exit 2 with a message that names the file, the line and the key; a missing
 * `redis` list is an error; --check-config validates a good file (exit 0, prints the
 * effective values) and flags override file keys. Nothing is started for bad input.
 */
#include "it_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs lockd with args, returns its exit code; its stdout+stderr go into out. */
static int run_lockd(char *const *args, char *out, size_t outlen)
{
    char log[300];
    char *argv[16];
    size_t n = 0;
    snprintf(log, sizeof log, "%s/out.log", th_tmpdir());
    argv[n++] = (char *)th_bin("lockd");
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = th_spawn(argv, log);
    int status = th_wait_exit(pid, 10000);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *write_yaml(const char *text)
{
    static char path[300];
    snprintf(path, sizeof path, "%s/lockd.yaml", th_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

typedef struct bad_config {
    const char *yaml;
    const char *expect; /* substring of the error after "<file>:" */
} bad_config;

static const bad_config bad_configs[] = {
    {"redis: [127.0.0.1:6380]\nlisten: 127.0.0.1:99999\n", ":2: key 'listen'"},
    {"redis: [127.0.0.1:6380]\nbogus: 1\n", ":2: unknown key 'bogus'"},
    {"redis: [127.0.0.1:6380]\nsession: {timeout_ms: fast}\n", "key 'session.timeout_ms'"},
    {"redis: [127.0.0.1:6380]\n\nredlock:\n  redis_timeout_ms: -5\n",
     ":4: key 'redlock.redis_timeout_ms'"},
    {"redis: [127.0.0.1:6380]\nredlock: {clock_drift_factor: 7}\n",
     "key 'redlock.clock_drift_factor'"},
    {"redis: [not-an-address]\n", "key 'redis'"},
    {"redis: [127.0.0.1:6380]\nlog: {level: loud}\n", "key 'log.level'"},
    {"redis: [127.0.0.1:6380]\nwatchdog: {lease_ms: 1000, extra: 2}\n",
     "unknown key 'watchdog.extra'"},
    {"redis: [127.0.0.1:6380\n", ":"}, /* YAML syntax error: still file:line */
    {"listen: 127.0.0.1:7380\n", "redis"},
};

START_TEST(test_cli)
{
    char out[8192];

    ck_assert_int_eq(run_lockd((char *[]){"--help", NULL}, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage"));
    ck_assert_ptr_nonnull(strstr(out, "session.timeout_ms"));
    ck_assert_int_eq(run_lockd((char *[]){"--version", NULL}, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, BOOKING_VERSION));

    ck_assert_int_eq(run_lockd((char *[]){"--frobnicate", NULL}, out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "--frobnicate"));
    ck_assert_int_eq(
        run_lockd((char *[]){"--config", "/nonexistent/lockd.yaml", NULL}, out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "/nonexistent/lockd.yaml"));

    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        const char *path = write_yaml(bad_configs[i].yaml);
        int rc = run_lockd((char *[]){"--config", (char *)path, NULL}, out, sizeof out);
        ck_assert_msg(rc == 2, "config %zu: exit %d, output '%s'", i, rc, out);
        ck_assert_msg(strstr(out, path) != NULL, "config %zu: file not named in '%s'", i, out);
        ck_assert_msg(strstr(out, bad_configs[i].expect) != NULL, "config %zu: '%s' not in '%s'", i,
                      bad_configs[i].expect, out);
    }

    /* A good file: --check-config prints the effective values; a flag overrides a key. */
    const char *good = write_yaml("redis: [127.0.0.1:6380, 127.0.0.1:6381, 127.0.0.1:6382]\n"
                                  "session: {timeout_ms: 4321}\nauth: Sesame-77\n");
    ck_assert_int_eq(run_lockd((char *[]){"--config", (char *)good, "--check-config", "--listen",
                                          "127.0.0.1:7999", NULL},
                               out, sizeof out),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "4321"));
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.1:7999"));
    ck_assert_ptr_nonnull(strstr(out, "127.0.0.1:6382"));
    /* the AUTH secret is not printed, only that it is set */
    ck_assert_ptr_nonnull(strstr(out, "auth = (hidden)"));
    ck_assert_ptr_null(strstr(out, "Sesame-77"));
    /* A flag with a bad value is named. */
    ck_assert_int_eq(run_lockd((char *[]){"--config", (char *)good, "--listen", "nowhere",
                                          "--check-config", NULL},
                               out, sizeof out),
                     2);
    ck_assert_ptr_nonnull(strstr(out, "--listen"));
}
END_TEST

int main(void)
{
    return it_main("cli", test_cli, 60, NULL);
}
