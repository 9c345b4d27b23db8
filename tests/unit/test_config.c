/*
 * test_config: the table-driven YAML config (cm_config): good files, errors
 * that name file, line and key, flag overrides that leave the target alone on
 * error, defaults, and freeing (leaks show up under -DSANITIZE=ON).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_config.h"
#include "cm_log.h"

typedef struct test_cfg {
    cm_addr listen;
    cm_addr metrics;
    char *auth;
    cm_addr_list redis;
    int64_t timeout_ms;
    double drift;
    bool verbose;
    int mode;
    int level;
    int64_t deep;
} test_cfg;

static const char *const modes[] = {"lockd", "db", NULL};

static const cm_cfg_key keys[] = {
    {.path = "listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(test_cfg, listen),
     .defval = "127.0.0.1:7380"},
    {.path = "metrics_listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(test_cfg, metrics),
     .defval = "",
     .optional = true},
    {.path = "auth", .type = CM_CFG_STRING, .offset = offsetof(test_cfg, auth), .secret = true},
    {.path = "redis",
     .type = CM_CFG_ADDR_LIST,
     .offset = offsetof(test_cfg, redis),
     .defval = "127.0.0.1:6380,127.0.0.1:6381"},
    {.path = "redlock.redis_timeout_ms",
     .type = CM_CFG_INT,
     .offset = offsetof(test_cfg, timeout_ms),
     .defval = "50",
     .imin = 1,
     .imax = 60000},
    {.path = "redlock.clock_drift_factor",
     .type = CM_CFG_DOUBLE,
     .offset = offsetof(test_cfg, drift),
     .defval = "0.01",
     .dmin = 0,
     .dmax = 0.5},
    {.path = "verbose", .type = CM_CFG_BOOL, .offset = offsetof(test_cfg, verbose)},
    {.path = "lock.mode",
     .type = CM_CFG_ENUM,
     .offset = offsetof(test_cfg, mode),
     .defval = "lockd",
     .enum_values = modes},
    {.path = "log.level",
     .type = CM_CFG_LOGLEVEL,
     .offset = offsetof(test_cfg, level),
     .defval = "info"},
    {.path = "a.b.c",
     .type = CM_CFG_INT,
     .offset = offsetof(test_cfg, deep),
     .imin = -5,
     .imax = 5},
};
#define NKEYS CM_ARRAY_LEN(keys)

static test_cfg cfg;
static char err[512];

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    err[0] = '\0';
    cm_cfg_defaults(keys, NKEYS, &cfg);
}

static void teardown(void)
{
    cm_cfg_free(keys, NKEYS, &cfg);
}

/* Loads yaml into target as file name; the message goes to err. */
static cm_rc load_into(const cm_cfg_key *table, size_t n, void *target, const char *name,
                       const char *yaml)
{
    return cm_cfg_load_string(table, n, target, yaml, strlen(yaml), name, err, sizeof(err));
}

static cm_rc load(const char *yaml)
{
    return load_into(keys, NKEYS, &cfg, "t.yaml", yaml);
}

/* Asserts that rc is a failure with exactly the message want. */
static void assert_error(cm_rc rc, const char *want)
{
    ck_assert_int_eq(rc, CM_ERR);
    ck_assert_str_eq(err, want);
}

static void assert_load_error(const char *yaml, const char *want)
{
    assert_error(load(yaml), want);
}

START_TEST(test_defaults)
{
    ck_assert_str_eq(cfg.listen.host, "127.0.0.1");
    ck_assert_int_eq(cfg.listen.port, 7380);
    ck_assert_int_eq(cfg.metrics.port, 0);
    ck_assert_ptr_nonnull(cfg.auth);
    ck_assert_str_eq(cfg.auth, "");
    ck_assert_uint_eq(cfg.redis.count, 2);
    ck_assert_int_eq(cfg.redis.items[1].port, 6381);
    ck_assert_int_eq(cfg.timeout_ms, 50);
    ck_assert_double_eq_tol(cfg.drift, 0.01, 1e-12);
    ck_assert(!cfg.verbose);
    ck_assert_int_eq(cfg.mode, 0);
    ck_assert_int_eq(cfg.level, CM_LOG_INFO);
    ck_assert_int_eq(cfg.deep, 0);
    /* Defaults again over loaded values: frees and resets. */
    ck_assert_int_eq(load("auth: x\nredis: [h:1]\n"), CM_OK);
    cm_cfg_defaults(keys, NKEYS, &cfg);
    ck_assert_str_eq(cfg.auth, "");
    ck_assert_uint_eq(cfg.redis.count, 2);
}
END_TEST

START_TEST(test_good_yaml)
{
    const char *yaml = "# lockd config\n"
                       "listen: 0.0.0.0:7381   # trailing comment\n"
                       "metrics_listen: \"[::1]:9380\"\n"
                       "auth: \"s3 cret\"\n"
                       "redis:\n"
                       "  - 127.0.0.1:7001\n"
                       "  - 127.0.0.1:7002\n"
                       "  - 127.0.0.1:7003\n"
                       "redlock:\n"
                       "  redis_timeout_ms: 75\n"
                       "  clock_drift_factor: 0.02\n"
                       "verbose: yes\n"
                       "lock:\n"
                       "  mode: db\n"
                       "log: {level: DEBUG}\n"
                       "a: {b: {c: -5}}\n";
    ck_assert_int_eq(load(yaml), CM_OK);
    ck_assert_str_eq(cfg.listen.host, "0.0.0.0");
    ck_assert_int_eq(cfg.listen.port, 7381);
    ck_assert_str_eq(cfg.metrics.host, "::1");
    ck_assert_int_eq(cfg.metrics.port, 9380);
    ck_assert_str_eq(cfg.auth, "s3 cret");
    ck_assert_uint_eq(cfg.redis.count, 3);
    ck_assert_int_eq(cfg.redis.items[2].port, 7003);
    ck_assert_int_eq(cfg.timeout_ms, 75);
    ck_assert_double_eq_tol(cfg.drift, 0.02, 1e-12);
    ck_assert(cfg.verbose);
    ck_assert_int_eq(cfg.mode, 1);
    ck_assert_int_eq(cfg.level, CM_LOG_DEBUG);
    ck_assert_int_eq(cfg.deep, -5);
}
END_TEST

START_TEST(test_flow_map_and_lists)
{
    ck_assert_int_eq(load("redlock: {redis_timeout_ms: 20, clock_drift_factor: 0}\n"
                          "redis: [127.0.0.1:6380, '[::1]:6381', localhost:6382]\n"),
                     CM_OK);
    ck_assert_int_eq(cfg.timeout_ms, 20);
    ck_assert_double_eq(cfg.drift, 0);
    ck_assert_uint_eq(cfg.redis.count, 3);
    ck_assert_str_eq(cfg.redis.items[1].host, "::1");
    ck_assert_str_eq(cfg.redis.items[2].host, "localhost");
    /* One comma-separated string is a list too. */
    ck_assert_int_eq(load("redis: \"h1:1,h2:2\"\n"), CM_OK);
    ck_assert_uint_eq(cfg.redis.count, 2);
    ck_assert_str_eq(cfg.redis.items[1].host, "h2");
    ck_assert_int_eq(load("redis: h3:3\n"), CM_OK);
    ck_assert_uint_eq(cfg.redis.count, 1);
    ck_assert_int_eq(load("redis: []\n"), CM_OK);
    ck_assert_uint_eq(cfg.redis.count, 0);
}
END_TEST

START_TEST(test_unknown_key_with_line)
{
    assert_load_error("listen: h:1\n\n\nlistn: h:2\n", "t.yaml:4: unknown key 'listn'");
    assert_load_error("redlock:\n  redis_timeout_ms: 5\n  retry_ms: 3\n",
                      "t.yaml:3: unknown key 'redlock.retry_ms'");
    assert_load_error("a: {b: {d: 1}}\n", "t.yaml:1: unknown key 'a.b.d'");
    assert_load_error("nosuch: {x: 1}\n", "t.yaml:1: unknown key 'nosuch'");
}
END_TEST

START_TEST(test_wrong_type)
{
    assert_load_error("verbose: true\nredlock: {redis_timeout_ms: fast}\n",
                      "t.yaml:2: key 'redlock.redis_timeout_ms': must be an integer in 1..60000");
    assert_load_error("redlock: 5\n", "t.yaml:1: key 'redlock': must be a mapping");
    assert_load_error("listen: [h:1]\n", "t.yaml:1: key 'listen': must be host:port");
    assert_load_error("listen: {h: 1}\n", "t.yaml:1: key 'listen': must be host:port");
    assert_load_error("verbose: maybe\n", "t.yaml:1: key 'verbose': must be true or false");
    assert_load_error("lock: {mode: file}\n",
                      "t.yaml:1: key 'lock.mode': must be one of lockd, db");
    assert_load_error("log:\n  level: loud\n",
                      "t.yaml:2: key 'log.level': must be one of error, warn, info, debug");
    assert_load_error("listen: localhost\n",
                      "t.yaml:1: key 'listen': must be host:port (missing ':port')");
    assert_load_error("listen: \"\"\n",
                      "t.yaml:1: key 'listen': must be host:port (empty address)");
    assert_load_error("redis:\n  - h:1\n  - h:x\n",
                      "t.yaml:3: key 'redis': must be a list of host:port (item 2: port is not "
                      "a number)");
    assert_load_error("redis: [h:1, [h:2]]\n",
                      "t.yaml:1: key 'redis': must be a list of host:port");
    assert_load_error("auth: [a]\n", "t.yaml:1: key 'auth': must be a string");
}
END_TEST

START_TEST(test_out_of_range)
{
    assert_load_error("redlock:\n  redis_timeout_ms: 0\n",
                      "t.yaml:2: key 'redlock.redis_timeout_ms': must be an integer in 1..60000");
    assert_load_error("redlock:\n  redis_timeout_ms: 60001\n",
                      "t.yaml:2: key 'redlock.redis_timeout_ms': must be an integer in 1..60000");
    assert_load_error("redlock: {redis_timeout_ms: 99999999999999999999}\n",
                      "t.yaml:1: key 'redlock.redis_timeout_ms': must be an integer in 1..60000");
    assert_load_error("redlock: {clock_drift_factor: 0.6}\n",
                      "t.yaml:1: key 'redlock.clock_drift_factor': must be a number in 0..0.5");
    assert_load_error("redlock: {clock_drift_factor: nan}\n",
                      "t.yaml:1: key 'redlock.clock_drift_factor': must be a number in 0..0.5");
    assert_load_error("a: {b: {c: 6}}\n", "t.yaml:1: key 'a.b.c': must be an integer in -5..5");
    assert_load_error("listen: h:65536\n",
                      "t.yaml:1: key 'listen': must be host:port (port out of range 1..65535)");
    ck_assert_int_eq(load("redlock:\n  redis_timeout_ms: 60000\n"), CM_OK);
    ck_assert_int_eq(cfg.timeout_ms, 60000);
}
END_TEST

/* Syntax errors are reported as such, with libyaml's problem, line and column (1-based)
 * and its context, before any value is looked at, and change nothing. */
START_TEST(test_syntax_error_line)
{
    int port = cfg.listen.port;
    /* The case: an unclosed '[' used to read as a bad list item. */
    assert_load_error("listen: 127.0.0.1:9\nredis: [127.0.0.1:1, 127.0.0.1:2\nlog: {level: info}\n",
                      "t.yaml:3:4: YAML syntax error: did not find expected ',' or ']' (while "
                      "parsing a flow sequence started at line 2 column 8)");
    ck_assert_int_eq(cfg.listen.port, port);
    assert_load_error("auth: x\nverbose: on\nredis: [h:1\n",
                      "t.yaml:4:1: YAML syntax error: did not find expected ',' or ']' (while "
                      "parsing a flow sequence started at line 3 column 8)");
    assert_load_error("log: {level: info\n", "t.yaml:2:1: YAML syntax error: did not find "
                                             "expected ',' or '}' (while parsing a flow mapping "
                                             "started at line 1 column 6)");
    /* An unclosed quote runs to the end of the file. */
    assert_load_error("listen: \"127.0.0.1:1\nauth: x\n",
                      "t.yaml:3:1: YAML syntax error: found unexpected end of stream (while "
                      "scanning a quoted scalar started at line 1 column 9)");
    assert_load_error("auth: 'abc\n", "t.yaml:2:1: YAML syntax error: found unexpected end of "
                                      "stream (while scanning a quoted scalar started at line 1 "
                                      "column 7)");
    /* A tab where YAML wants indentation. */
    assert_load_error("listen: h:1\n\tauth: x\n",
                      "t.yaml:2:1: YAML syntax error: found a tab character that violates "
                      "indentation (while scanning a plain scalar started at line 1 column 9)");
    /* Bad indentation, no context from libyaml. */
    assert_load_error("listen: h:1\nauth: x: y\n", "t.yaml:2:8: YAML syntax error: mapping "
                                                   "values are not allowed in this context");
    assert_load_error("log:\n  level: info\n   x: 1\n", "t.yaml:3:5: YAML syntax error: mapping "
                                                        "values are not allowed in this context");
    assert_load_error("redis:\n  - h:1\n - h:2\n",
                      "t.yaml:3:2: YAML syntax error: did not find expected key (while parsing a "
                      "block mapping started at line 1 column 1)");
    /* Reader errors have only an offset: the position is counted from it. */
    assert_load_error("auth: \"a\xff\"\n",
                      "t.yaml:1:9: YAML syntax error: invalid leading UTF-8 octet (0xFF)");
    assert_load_error("auth: \"\xc3\xa9t\xc3\xa9\"\nverbose: \x01\n",
                      "t.yaml:2:10: YAML syntax error: control characters are not allowed (0x01)");
    /* A value error after a syntax error: the syntax error is the one reported. */
    assert_load_error("listen: nohost\nredis: [h:1\n",
                      "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' (while "
                      "parsing a flow sequence started at line 2 column 8)");
    ck_assert_int_eq(cfg.listen.port, port);
}
END_TEST

START_TEST(test_duplicates_and_shapes)
{
    assert_load_error("listen: h:1\nauth: a\nlisten: h:2\n",
                      "t.yaml:3: duplicate key 'listen' (first at line 1)");
    assert_load_error("redlock: {redis_timeout_ms: 1}\nredlock: {clock_drift_factor: 0}\n",
                      "t.yaml:2: duplicate key 'redlock' (first at line 1)");
    assert_load_error("redlock:\n  redis_timeout_ms: 1\n\n  redis_timeout_ms: 2\n",
                      "t.yaml:4: duplicate key 'redlock.redis_timeout_ms' (first at line 2)");
    assert_load_error("hello\n", "t.yaml:1: top level must be a mapping of keys");
    assert_load_error("\n\n[a, b]\n", "t.yaml:3: top level must be a mapping of keys");
    assert_load_error("{listen: h:1, redlock: [1]}\n",
                      "t.yaml:1: key 'redlock': must be a mapping");
    assert_load_error("? [a]\n: b\n", "t.yaml:1: mapping keys must be plain names");
    assert_load_error("- a\n- b\n", "t.yaml:1: top level must be a mapping of keys");
    assert_load_error("listen: h:1\n---\nauth: x\n", "t.yaml:2: only one YAML document is allowed");
    assert_load_error("listen: &x h:1\nauth: *x\n",
                      "t.yaml:2: key 'auth': aliases are not supported");
    /* Empty documents change nothing. */
    int port = cfg.listen.port;
    ck_assert_int_eq(load(""), CM_OK);
    ck_assert_int_eq(load("# only a comment\n"), CM_OK);
    ck_assert_int_eq(load("---\n"), CM_OK);
    ck_assert_int_eq(cfg.listen.port, port);
}
END_TEST

START_TEST(test_file_load_and_missing)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *yaml = "listen: 127.0.0.1:9999\nredlock:\n  redis_timeout_ms: 0\n";
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ck_assert_int_eq(cm_cfg_load_file(keys, NKEYS, &cfg, path, err, sizeof(err)), CM_ERR);
    char want[600];
    snprintf(want, sizeof(want),
             "%s:3: key 'redlock.redis_timeout_ms': must be an integer in "
             "1..60000",
             path);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(cfg.listen.port, 9999); /* partly updated: documented */
    unlink(path);

    ck_assert_int_eq(cm_cfg_load_file(keys, NKEYS, &cfg, "/nonexistent/x.yaml", err, sizeof(err)),
                     CM_ERR);
    ck_assert_str_eq(err, "/nonexistent/x.yaml: cannot open: No such file or directory");
    ck_assert_int_eq(cm_cfg_load_file(keys, NKEYS, &cfg, "/tmp", err, sizeof(err)), CM_ERR);
    ck_assert_str_eq(err, "/tmp: is a directory, not a config file");
}
END_TEST

/* Writes text to a new temporary file; path gets its name. */
static void temp_file(char *path, const char *text)
{
    strcpy(path, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

START_TEST(test_empty_file)
{
    char path[64];
    int port = cfg.listen.port;
    temp_file(path, "");
    ck_assert_int_eq(cm_cfg_load_file(keys, NKEYS, &cfg, path, err, sizeof(err)), CM_OK);
    ck_assert_int_eq(cfg.listen.port, port);
    unlink(path);
    temp_file(path, "# nothing set yet\n\n");
    ck_assert_int_eq(cm_cfg_load_file(keys, NKEYS, &cfg, path, err, sizeof(err)), CM_OK);
    ck_assert_int_eq(cfg.listen.port, port);
    ck_assert_uint_eq(cm_cfg_file_line(path, "listen"), 0);
    unlink(path);
}
END_TEST

/* cm_cfg_file_line: where a key stands, for checks made after loading. */
START_TEST(test_file_line)
{
    char path[64];
    temp_file(path, "# lockd\n"
                    "listen: h:1\n"
                    "redis:\n"
                    "  - a:1\n"
                    "  - b:2\n"
                    "redlock: {retry: [1, {x: 2}], redis_timeout_ms: 5}\n"
                    "a:\n"
                    "  b:\n"
                    "\n"
                    "    c: 3\n"
                    "log: {level: info}\n");
    ck_assert_uint_eq(cm_cfg_file_line(path, "listen"), 2);
    ck_assert_uint_eq(cm_cfg_file_line(path, "redis"), 3);
    ck_assert_uint_eq(cm_cfg_file_line(path, "redlock.redis_timeout_ms"), 6);
    ck_assert_uint_eq(cm_cfg_file_line(path, "a.b.c"), 10);
    ck_assert_uint_eq(cm_cfg_file_line(path, "a.b"), 8);
    ck_assert_uint_eq(cm_cfg_file_line(path, "log.level"), 11);
    ck_assert_uint_eq(cm_cfg_file_line(path, "auth"), 0);
    ck_assert_uint_eq(cm_cfg_file_line(path, "redlock.x"), 0);
    ck_assert_uint_eq(cm_cfg_file_line("/nonexistent/x.yaml", "listen"), 0);
    unlink(path);
}
END_TEST

START_TEST(test_set_flags)
{
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "listen", "[::1]:7000", "--listen", err, sizeof(err)), CM_OK);
    ck_assert_str_eq(cfg.listen.host, "::1");
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "redis", "a:1,b:2,c:3", "--redis", err, sizeof(err)), CM_OK);
    ck_assert_uint_eq(cfg.redis.count, 3);
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "log.level", "warn", "--log-level", err, sizeof(err)), CM_OK);
    ck_assert_int_eq(cfg.level, CM_LOG_WARN);
    ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "auth", "new", "--auth", err, sizeof(err)),
                     CM_OK);
    ck_assert_str_eq(cfg.auth, "new");
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "metrics_listen", "", "--metrics-listen", err, sizeof(err)),
        CM_OK);
    ck_assert_int_eq(cfg.metrics.port, 0);
}
END_TEST

START_TEST(test_set_errors_leave_target)
{
    test_cfg before = cfg;
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "redis", "a:1,,b:2", "--redis", err, sizeof(err)), CM_ERR);
    ck_assert_msg(strncmp(err, "--redis: key 'redis': must be a list of host:port", 49) == 0, "%s",
                  err);
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "listen", "nohost", "--listen", err, sizeof(err)), CM_ERR);
    ck_assert_str_eq(err, "--listen: key 'listen': must be host:port (missing ':port')");
    ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "redlock.redis_timeout_ms", "-1", "--timeout",
                                err, sizeof(err)),
                     CM_ERR);
    ck_assert_int_eq(
        cm_cfg_set(keys, NKEYS, &cfg, "log.level", "loud", "--log-level", err, sizeof(err)),
        CM_ERR);
    ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "nosuch", "1", "--nosuch", err, sizeof(err)),
                     CM_ERR);
    ck_assert_str_eq(err, "--nosuch: unknown key 'nosuch'");
    ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "redlock", "1", "--redlock", err, sizeof(err)),
                     CM_ERR);
    /* Same pointers and values: nothing was freed or replaced. */
    ck_assert_int_eq(memcmp(&before, &cfg, sizeof(cfg)), 0);
}
END_TEST

START_TEST(test_dump)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(load("auth: pw\nverbose: on\n"), CM_OK);
    cm_cfg_dump(keys, NKEYS, &cfg, f);
    fclose(f);
    ck_assert_str_eq(text, "listen = 127.0.0.1:7380\n"
                           "metrics_listen = \n"
                           "auth = (hidden)\n"
                           "redis = 127.0.0.1:6380,127.0.0.1:6381\n"
                           "redlock.redis_timeout_ms = 50\n"
                           "redlock.clock_drift_factor = 0.01\n"
                           "verbose = true\n"
                           "lock.mode = lockd\n"
                           "log.level = info\n"
                           "a.b.c = 0\n");
    free(text);
    /* an empty secret is shown empty: "not set" is worth knowing and gives nothing away */
    f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "auth", "", "--auth", err, sizeof(err)), CM_OK);
    cm_cfg_dump(keys, NKEYS, &cfg, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "\nauth = \n"));
    free(text);
}
END_TEST

/* Many loads, failures and overrides on one target: all memory comes back
 * (LeakSanitizer fails the run otherwise under -DSANITIZE=ON). */
START_TEST(test_no_leaks)
{
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(load("auth: a\nredis: [h:1, h:2]\n"), CM_OK);
        ck_assert_int_eq(load("auth: b\nredis: [h:1, bad]\n"), CM_ERR);
        ck_assert_int_eq(load("auth: c\nredis: [h:1\n"), CM_ERR);
        ck_assert_int_eq(load("auth: d\nredis: x:1,y:2\nnope: 1\n"), CM_ERR);
        ck_assert_int_eq(cm_cfg_set(keys, NKEYS, &cfg, "auth", "e", NULL, err, sizeof(err)), CM_OK);
    }
    ck_assert_str_eq(cfg.auth, "e");
    ck_assert_uint_eq(cfg.redis.count, 2);
    cm_cfg_free(keys, NKEYS, &cfg);
    ck_assert_ptr_null(cfg.auth);
    ck_assert_ptr_null(cfg.redis.items);
    cm_cfg_free(keys, NKEYS, &cfg); /* twice is harmless */
}
END_TEST

/* A second table for the per-key validators and the string list type. */
typedef struct v_cfg {
    char *database;
    cm_str_list origins;
    int64_t even;
    cm_str_list names;
} v_cfg;

static cm_rc check_conninfo(const void *value, char *why, size_t whylen)
{
    const char *s = *(char *const *)value;
    if (s[0] == '\0' || strchr(s, '=') != NULL)
        return CM_OK;
    snprintf(why, whylen, "not a libpq conninfo: missing \"=\" after \"%s\"", s);
    return CM_ERR;
}

static cm_rc check_origins(const void *value, char *why, size_t whylen)
{
    const cm_str_list *l = value;
    for (size_t i = 0; i < l->count; i++) {
        if (strncmp(l->items[i], "http://", 7) != 0 && strncmp(l->items[i], "https://", 8) != 0) {
            snprintf(why, whylen, "'%s' is not an http(s) origin", l->items[i]);
            return CM_ERR;
        }
    }
    return CM_OK;
}

static cm_rc check_even(const void *value, char *why, size_t whylen)
{
    if (*(const int64_t *)value % 2 == 0)
        return CM_OK;
    snprintf(why, whylen, "must be even");
    return CM_ERR;
}

static const cm_cfg_key vkeys[] = {
    {.path = "database",
     .type = CM_CFG_STRING,
     .offset = offsetof(v_cfg, database),
     .validate = check_conninfo},
    {.path = "cors.allow_origins",
     .type = CM_CFG_STRING_LIST,
     .offset = offsetof(v_cfg, origins),
     .defval = "",
     .validate = check_origins},
    {.path = "even",
     .type = CM_CFG_INT,
     .offset = offsetof(v_cfg, even),
     .defval = "2",
     .imin = 0,
     .imax = 100,
     .validate = check_even},
    {.path = "names",
     .type = CM_CFG_STRING_LIST,
     .offset = offsetof(v_cfg, names),
     .defval = "a, b ,c"},
};
#define NVKEYS CM_ARRAY_LEN(vkeys)

static v_cfg vcfg;

static void vsetup(void)
{
    memset(&vcfg, 0, sizeof(vcfg));
    err[0] = '\0';
    cm_cfg_defaults(vkeys, NVKEYS, &vcfg);
}

static void vteardown(void)
{
    cm_cfg_free(vkeys, NVKEYS, &vcfg);
}

static cm_rc vload(const char *yaml)
{
    return load_into(vkeys, NVKEYS, &vcfg, "r1.yaml", yaml);
}

static cm_rc vset(const char *key, const char *value, const char *origin)
{
    return cm_cfg_set(vkeys, NVKEYS, &vcfg, key, value, origin, err, sizeof(err));
}

static void assert_vload_error(const char *yaml, const char *want)
{
    assert_error(vload(yaml), want);
}

START_TEST(test_validator_yaml)
{
    ck_assert_int_eq(vload("database: \"host=db dbname=booking\"\n"), CM_OK);
    ck_assert_str_eq(vcfg.database, "host=db dbname=booking");
    char *before = vcfg.database;
    /* The line of the value, the key, the validator's reason; the target is unchanged. */
    assert_vload_error("even: 4\n\ndatabase: booking\n",
                       "r1.yaml:3: key 'database': not a libpq conninfo: missing \"=\" after "
                       "\"booking\"");
    ck_assert_ptr_eq(vcfg.database, before);
    ck_assert_str_eq(vcfg.database, "host=db dbname=booking");
    /* Range first, then the validator. */
    assert_vload_error("even: 101\n", "r1.yaml:1: key 'even': must be an integer in 0..100");
    assert_vload_error("even: 3\n", "r1.yaml:1: key 'even': must be even");
    /* A sequence: the line where it starts. */
    assert_vload_error("cors:\n  allow_origins:\n    - http://a.example\n    - ftp://b\n",
                       "r1.yaml:3: key 'cors.allow_origins': 'ftp://b' is not an http(s) origin");
    assert_vload_error("cors: {allow_origins: \"http://a, b\"}\n",
                       "r1.yaml:1: key 'cors.allow_origins': 'b' is not an http(s) origin");
    ck_assert_uint_eq(vcfg.origins.count, 0);
}
END_TEST

START_TEST(test_validator_flag)
{
    ck_assert_int_eq(vset("database", "booking", "--database"), CM_ERR);
    ck_assert_str_eq(err, "--database: key 'database': not a libpq conninfo: missing \"=\" after "
                          "\"booking\"");
    ck_assert_str_eq(vcfg.database, "");
    ck_assert_int_eq(vset("even", "7", "--even"), CM_ERR);
    ck_assert_str_eq(err, "--even: key 'even': must be even");
    ck_assert_int_eq(vcfg.even, 2);
    ck_assert_int_eq(vset("cors.allow_origins", "http://a,https://b,mailto:x", "--cors"), CM_ERR);
    ck_assert_str_eq(err, "--cors: key 'cors.allow_origins': 'mailto:x' is not an http(s) origin");
    ck_assert_uint_eq(vcfg.origins.count, 0);
    /* The empty value reaches the validator too (here it is allowed). */
    ck_assert_int_eq(vset("database", "", "--database"), CM_OK);
    ck_assert_int_eq(vset("database", "dbname=x", "--database"), CM_OK);
    ck_assert_str_eq(vcfg.database, "dbname=x");
    ck_assert_int_eq(vset("even", "8", "--even"), CM_OK);
    ck_assert_int_eq(vcfg.even, 8);
}
END_TEST

START_TEST(test_string_list)
{
    /* Default "a, b ,c": spaces around items dropped. */
    ck_assert_uint_eq(vcfg.names.count, 3);
    ck_assert_str_eq(vcfg.names.items[1], "b");
    ck_assert_uint_eq(vcfg.origins.count, 0);
    ck_assert_ptr_null(vcfg.origins.items);
    ck_assert_int_eq(vload("names: [x, 'y, z', \" w \"]\n"
                           "cors:\n"
                           "  allow_origins:\n"
                           "    - http://localhost:5173\n"
                           "    - https://app.example\n"),
                     CM_OK);
    /* Sequence items are taken whole: a comma or spaces inside stay. */
    ck_assert_uint_eq(vcfg.names.count, 3);
    ck_assert_str_eq(vcfg.names.items[0], "x");
    ck_assert_str_eq(vcfg.names.items[1], "y, z");
    ck_assert_str_eq(vcfg.names.items[2], " w ");
    ck_assert_uint_eq(vcfg.origins.count, 2);
    ck_assert_str_eq(vcfg.origins.items[1], "https://app.example");
    /* One scalar: comma-separated. */
    ck_assert_int_eq(vload("names: p,q\n"), CM_OK);
    ck_assert_uint_eq(vcfg.names.count, 2);
    ck_assert_str_eq(vcfg.names.items[1], "q");
    ck_assert_int_eq(vload("names: single\n"), CM_OK);
    ck_assert_uint_eq(vcfg.names.count, 1);
    ck_assert_int_eq(vload("names: []\n"), CM_OK);
    ck_assert_uint_eq(vcfg.names.count, 0);
    ck_assert_int_eq(vload("names: \"\"\n"), CM_OK);
    ck_assert_uint_eq(vcfg.names.count, 0);
    ck_assert_int_eq(vset("names", "m, n", "--names"), CM_OK);
    ck_assert_uint_eq(vcfg.names.count, 2);
    ck_assert_str_eq(vcfg.names.items[1], "n");

    /* Errors name the item; the target keeps its list. */
    assert_vload_error("names: \"a,,b\"\n", "r1.yaml:1: key 'names': must be a list of strings "
                                            "(item 2 is empty)");
    assert_vload_error("names: \"a, \"\n", "r1.yaml:1: key 'names': must be a list of strings "
                                           "(item 2 is empty)");
    assert_vload_error("names:\n  - a\n  - ''\n", "r1.yaml:3: key 'names': must be a list of "
                                                  "strings (item 2 is empty)");
    assert_vload_error("names: [a, [b]]\n", "r1.yaml:1: key 'names': must be a list of strings");
    assert_vload_error("names: {a: b}\n", "r1.yaml:1: key 'names': must be a list of strings");
    ck_assert_int_eq(vset("names", ",", "--names"), CM_ERR);
    ck_assert_str_eq(err, "--names: key 'names': must be a list of strings (item 1 is empty)");
    ck_assert_uint_eq(vcfg.names.count, 2);
    ck_assert_str_eq(vcfg.names.items[0], "m");
}
END_TEST

START_TEST(test_string_list_dump_free)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(vload("database: dbname=x\n"
                           "cors: {allow_origins: [http://a:1, https://b]}\n"),
                     CM_OK);
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    cm_cfg_dump(vkeys, NVKEYS, &vcfg, f);
    fclose(f);
    ck_assert_str_eq(text, "database = dbname=x\n"
                           "cors.allow_origins = http://a:1,https://b\n"
                           "even = 2\n"
                           "names = a,b,c\n");
    free(text);
    /* Loads over loads, failures and defaults again: LeakSanitizer checks the rest. */
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(vload("names: [a, b]\ncors: {allow_origins: http://x}\n"), CM_OK);
        ck_assert_int_eq(vload("names: [a, '']\n"), CM_ERR);
        ck_assert_int_eq(vload("cors: {allow_origins: [http://x, y]}\n"), CM_ERR);
        ck_assert_int_eq(vset("names", "p,,q", "--names"), CM_ERR);
        ck_assert_int_eq(vset("cors.allow_origins", "http://z", "--cors"), CM_OK);
    }
    cm_cfg_defaults(vkeys, NVKEYS, &vcfg);
    ck_assert_uint_eq(vcfg.names.count, 3);
    cm_cfg_free(vkeys, NVKEYS, &vcfg);
    ck_assert_ptr_null(vcfg.names.items);
    ck_assert_uint_eq(vcfg.names.count, 0);
    ck_assert_ptr_null(vcfg.database);
    cm_cfg_free(vkeys, NVKEYS, &vcfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_good_yaml);
    tcase_add_test(tc, test_flow_map_and_lists);
    tcase_add_test(tc, test_unknown_key_with_line);
    tcase_add_test(tc, test_wrong_type);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_syntax_error_line);
    tcase_add_test(tc, test_duplicates_and_shapes);
    tcase_add_test(tc, test_file_load_and_missing);
    tcase_add_test(tc, test_empty_file);
    tcase_add_test(tc, test_file_line);
    tcase_add_test(tc, test_set_flags);
    tcase_add_test(tc, test_set_errors_leave_target);
    tcase_add_test(tc, test_dump);
    tcase_add_test(tc, test_no_leaks);
    suite_add_tcase(s, tc);
    TCase *tv = tcase_create("validate_and_string_list");
    tcase_add_checked_fixture(tv, vsetup, vteardown);
    tcase_add_test(tv, test_validator_yaml);
    tcase_add_test(tv, test_validator_flag);
    tcase_add_test(tv, test_string_list);
    tcase_add_test(tv, test_string_list_dump_free);
    suite_add_tcase(s, tv);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
