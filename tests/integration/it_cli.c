/*
 * it_cli: lockd's command line and config handling (SPEC §5): --help and --version exit
 * 0, --help starts with the synopsis the docs copy; a bad flag, a flag with a bad value,
 * an unknown key, a wrong type or an out-of-range value each exit 2 with a message that
 * names the file, the line and the key (exact texts); a YAML syntax error is reported as
 * one with libyaml's line and column; a missing `redis` list is an error naming the file;
 * lockd runs on --redis without a file; --check-config validates a good file (exit 0,
 * prints the effective values) and flags override file keys. Nothing is started for
 * bad input.
 */
#include "it_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct bad_config {
    const char *yaml;
    const char *expect; /* the whole message after "lockd: <file>" */
} bad_config;

static const bad_config bad_configs[] = {
    {"redis: [127.0.0.1:6380]\nlisten: 127.0.0.1:99999\n",
     ":2: key 'listen': must be host:port (port out of range 1..65535)"},
    {"redis: [127.0.0.1:6380]\nbogus: 1\n", ":2: unknown key 'bogus'"},
    {"redis: [127.0.0.1:6380]\nsession: {timeout_ms: fast}\n",
     ":2: key 'session.timeout_ms': must be an integer in 100..86400000"},
    {"redis: [127.0.0.1:6380]\n\nredlock:\n  redis_timeout_ms: -5\n",
     ":4: key 'redlock.redis_timeout_ms': must be an integer in 1..60000"},
    {"redis: [127.0.0.1:6380]\nredlock: {clock_drift_factor: 7}\n",
     ":2: key 'redlock.clock_drift_factor': must be a number in 0..0.5"},
    {"redis: [not-an-address]\n",
     ":1: key 'redis': must be a list of host:port (item 1: missing ':port')"},
    {"redis: [127.0.0.1:6380]\nlog: {level: loud}\n",
     ":2: key 'log.level': must be one of error, warn, info, debug"},
    {"redis: [127.0.0.1:6380]\nwatchdog: {lease_ms: 1000, extra: 2}\n",
     ":2: unknown key 'watchdog.extra'"},
    {"redis: [127.0.0.1:6380]\nlisten: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
     ":3: duplicate key 'listen' (first at line 2)"},
    /* YAML syntax errors: libyaml's words, line and column. The case first: the
     * unclosed '[' used to be reported as a bad list item. */
    {"listen: 127.0.0.1:7380\nredis: [127.0.0.1:1, 127.0.0.1:2\nlog: {level: info}\n",
     ":3:4: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
     "sequence started at line 2 column 8)"},
    {"redis: [127.0.0.1:6380\n", ":2:1: YAML syntax error: did not find expected ',' or ']' "
                                 "(while parsing a flow sequence started at line 1 column 8)"},
    {"redis: [127.0.0.1:6380]\nauth: \"open\n",
     ":3:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar "
     "started at line 2 column 7)"},
    {"redis: [127.0.0.1:6380]\n\tlisten: 127.0.0.1:1\n",
     ":2:1: YAML syntax error: found character that cannot start any token (while scanning for "
     "the next token started at line 2 column 1)"},
    {"- 127.0.0.1:6380\n", ":1: top level must be a mapping of keys"},
    /* Required and cross-key checks made after loading name the file and line too. */
    {"listen: 127.0.0.1:7380\n", ": key 'redis' is missing: at least one Redis master is required"},
    {"", ": key 'redis' is missing: at least one Redis master is required"},
    {"listen: 127.0.0.1:7380\nredis: []\n",
     ":2: key 'redis': at least one Redis master is required"},
    {"redis: [127.0.0.1:6380]\nwatchdog:\n  lease_ms: 5000\nlimits: {max_lease_ms: 1000}\n",
     ":3: key 'watchdog.lease_ms': must not exceed limits.max_lease_ms (1000)"},
    {"redis: [127.0.0.1:6380]\nlimits: {max_lease_ms: 1000}\n",
     ":2: key 'limits.max_lease_ms': must not be below watchdog.lease_ms (10000)"},
};

/* Asserts that out holds the line "lockd: <first><second>". */
static void assert_line(const char *out, const char *first, const char *second)
{
    char want[1024];
    snprintf(want, sizeof want, "lockd: %s%s\n", first, second);
    ck_assert_msg(strstr(out, want) != NULL, "'%s' not in '%s'", want, out);
}

START_TEST(test_cli)
{
    char out[8192];

    ck_assert_int_eq(it_run_lockd((char *[]){"--help", NULL}, out, sizeof out), 0);
    /* The synopsis (the docs copy it) and the --config line, as decided for issue 9. */
    const char *help_head =
        "usage: lockd --config FILE [--listen H:P] [--redis H:P,H:P,...] [--metrics-listen H:P]\n"
        "             [--log-level L] [--check-config] [--help] [--version]\n"
        "\n"
        "  --config FILE         YAML config, keys below (optional when --redis is given)\n";
    ck_assert_msg(strncmp(out, help_head, strlen(help_head)) == 0, "--help starts '%s'", out);
    ck_assert_ptr_nonnull(strstr(out, "session.timeout_ms"));
    ck_assert_int_eq(it_run_lockd((char *[]){"--version", NULL}, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, BOOKING_VERSION));

    ck_assert_int_eq(it_run_lockd((char *[]){"--frobnicate", NULL}, out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "--frobnicate"));
    ck_assert_int_eq(
        it_run_lockd((char *[]){"--config", "/nonexistent/lockd.yaml", NULL}, out, sizeof out), 2);
    assert_line(out, "/nonexistent/lockd.yaml", ": cannot open: No such file or directory");
    char dir[300];
    snprintf(dir, sizeof dir, "%s", th_tmpdir()); /* a new directory each call */
    ck_assert_int_eq(it_run_lockd((char *[]){"--config", dir, NULL}, out, sizeof out), 2);
    assert_line(out, dir, ": is a directory, not a config file");

    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        const char *path = it_write_yaml(bad_configs[i].yaml);
        int rc = it_run_lockd((char *[]){"--config", (char *)path, NULL}, out, sizeof out);
        ck_assert_msg(rc == 2, "config %zu: exit %d, output '%s'", i, rc, out);
        assert_line(out, path, bad_configs[i].expect);
        /* a config error is no usage error: no usage text after it */
        ck_assert_msg(strstr(out, "usage:") == NULL, "config %zu: usage shown: '%s'", i, out);
    }

    /* No file: the defaults and --redis; without --redis the message says what to give. */
    ck_assert_int_eq(it_run_lockd((char *[]){"--check-config", NULL}, out, sizeof out), 2);
    assert_line(out, "command line",
                ": key 'redis' is missing: at least one Redis master is required (give --redis "
                "H:P,... or --config FILE)");
    ck_assert_int_eq(it_run_lockd((char *[]){"--redis", "127.0.0.1:6390", "--check-config", NULL},
                                  out, sizeof out),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\nredis = 127.0.0.1:6390\n"));
    ck_assert_ptr_nonnull(strstr(out, "listen = 127.0.0.1:7380\n"));
    /* A flag that empties a required key is named. */
    const char *nofile = it_write_yaml("redis: [127.0.0.1:6380]\n");
    ck_assert_int_eq(
        it_run_lockd((char *[]){"--config", (char *)nofile, "--redis", "", NULL}, out, sizeof out),
        2);
    assert_line(out, "--redis", ": key 'redis': at least one Redis master is required");

    /* A good file: --check-config prints the effective values; a flag overrides a key. */
    const char *good = it_write_yaml("redis: [127.0.0.1:6380, 127.0.0.1:6381, 127.0.0.1:6382]\n"
                                     "session: {timeout_ms: 4321}\nauth: Sesame-77\n");
    ck_assert_int_eq(it_run_lockd((char *[]){"--config", (char *)good, "--check-config", "--listen",
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
    ck_assert_int_eq(it_run_lockd((char *[]){"--config", (char *)good, "--listen", "nowhere",
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
