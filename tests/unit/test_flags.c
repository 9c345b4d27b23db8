/*
 * test_flags: cm_flags, the tools' table-driven command line: every type, "--x v" and
 * "--x=v", the error wording (captured from stderr), required flags, --help/--version,
 * and stopping at the first positional argument (lockctl's COMMAND). No network.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_addr.h"
#include "cm_flags.h"
#include "cm_log.h"
#include "unit_run.h"

typedef struct opts {
    bool sw;
    const char *str;
    uint64_t n;
    double share;
    cm_log_level level;
    cm_addr addr;
    int custom;
    bool n_seen;
} opts;

static int usage_calls;

static void usage(FILE *out)
{
    usage_calls++;
    fprintf(out, "usage: prog [flags]\n");
}

static bool parse_even(const char *v, void *dst, char *why, size_t whylen)
{
    int x = atoi(v);
    if (x % 2 != 0) {
        snprintf(why, whylen, "%d is odd", x);
        return false;
    }
    *(int *)dst = x;
    return true;
}

static char err_text[1024];

/* Parses argv (NULL-terminated) with the test table; stderr goes to err_text. */
static cm_flags_result parse(opts *o, bool stop, int *next, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog";
    while (*args != NULL)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    const cm_flag flags[] = {
        {.name = "sw", .type = CM_FLAG_SWITCH, .dst = &o->sw},
        {.name = "str", .type = CM_FLAG_STRING, .dst = &o->str, .required = true, .metavar = "S"},
        {.name = "n", .type = CM_FLAG_U64, .dst = &o->n, .lo = 1, .hi = 10, .seen = &o->n_seen},
        {.name = "share", .type = CM_FLAG_DOUBLE, .dst = &o->share, .dlo = 0, .dhi = 1},
        {.name = "log-level", .type = CM_FLAG_LOG_LEVEL, .dst = &o->level},
        {.name = "addr", .type = CM_FLAG_ADDR, .dst = &o->addr},
        {.name = "even", .type = CM_FLAG_CUSTOM, .dst = &o->custom, .parse = parse_even},
    };
    const cm_flags_spec spec = {.prog = "prog",
                                .flags = flags,
                                .nflags = sizeof(flags) / sizeof(flags[0]),
                                .usage = usage,
                                .stop_at_positional = stop};
    char path[] = "/tmp/test_flags_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cm_flags_result r = cm_flags_parse(&spec, argc, argv, 1, next);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, err_text, sizeof(err_text) - 1, 0);
    err_text[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return r;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

START_TEST(test_types)
{
    opts o = {0};
    int next = -1;
    ck_assert_int_eq(parse(&o, false, &next,
                           ARGS("--sw", "--str", "x", "--n=7", "--share", "0.5", "--log-level",
                                "debug", "--addr", "127.0.0.1:80", "--even", "4")),
                     CM_FLAGS_RUN);
    ck_assert(o.sw);
    ck_assert_str_eq(o.str, "x");
    ck_assert_uint_eq(o.n, 7);
    ck_assert(o.n_seen);
    ck_assert(o.share == 0.5);
    ck_assert_int_eq(o.level, CM_LOG_DEBUG);
    ck_assert_int_eq(o.addr.port, 80);
    ck_assert_int_eq(o.custom, 4);
    ck_assert_int_eq(next, 13);
    ck_assert_str_eq(err_text, "");
}
END_TEST

/* Each bad command line: USAGE and the exact first line on stderr. */
START_TEST(test_errors)
{
    static const struct {
        const char *args[4];
        const char *line;
        bool usage;
    } cases[] = {
        {{"--bogus"}, "prog: unknown option '--bogus'\n", true},
        {{"--st", "x"}, "prog: unknown option '--st'\n", true}, /* no abbreviations */
        {{"-s"}, "prog: unknown option '-s'\n", true},
        {{"--str"}, "prog: --str needs a value\n", true},
        {{"--str", "x", "extra"}, "prog: unexpected argument 'extra'\n", true},
        {{"--str", "x", "--n", "11"}, "prog: --n '11': want an integer from 1 to 10\n", false},
        {{"--str", "x", "--n", "-1"}, "prog: --n '-1': want an integer from 1 to 10\n", false},
        {{"--str", "x", "--share", "2"}, "prog: --share '2': want a number from 0 to 1\n", false},
        {{"--str", "x", "--log-level", "loud"},
         "prog: --log-level 'loud': want error|warn|info|debug\n",
         false},
        {{"--str", "x", "--even", "3"}, "prog: --even '3': 3 is odd\n", false},
        {{"--str", "x", "--sw=1"}, "prog: --sw takes no value\n", true},
        {{"--n", "2"}, "prog: --str S is required\n", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        opts o = {0};
        const char *args[5] = {0};
        memcpy(args, cases[i].args, sizeof(cases[i].args));
        usage_calls = 0;
        ck_assert_int_eq(parse(&o, false, NULL, args), CM_FLAGS_USAGE);
        ck_assert_msg(strncmp(err_text, cases[i].line, strlen(cases[i].line)) == 0,
                      "case %zu: got '%s' want '%s'", i, err_text, cases[i].line);
        ck_assert_int_eq(usage_calls, cases[i].usage ? 1 : 0);
    }
}
END_TEST

START_TEST(test_help_version_positional)
{
    opts o = {0};
    int next = -1;
    usage_calls = 0;
    ck_assert_int_eq(parse(&o, false, NULL, ARGS("--help")), CM_FLAGS_DONE);
    ck_assert_int_eq(usage_calls, 1);
    ck_assert_int_eq(parse(&o, false, NULL, ARGS("--version")), CM_FLAGS_DONE);
    /* stop at the first positional (or --) and say where */
    ck_assert_int_eq(parse(&o, true, &next, ARGS("--str", "x", "acquire", "--n", "99")),
                     CM_FLAGS_RUN);
    ck_assert_int_eq(next, 3);
    ck_assert_uint_eq(o.n, 0); /* not parsed past the stop */
    ck_assert_int_eq(parse(&o, true, &next, ARGS("--str", "y", "--", "cmd")), CM_FLAGS_RUN);
    ck_assert_int_eq(next, 3);
    ck_assert_str_eq(o.str, "y");
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_types, test_errors, test_help_version_positional};
    return unit_run("flags", tests, sizeof(tests) / sizeof(tests[0]), 0);
}
