/*
 * th_check: see th_check.h.
 */
#include "th_check.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"

/* The fixtures of the run and the case they are for: Check's fixtures take no argument,
 * and they run in the parent in case order (one case per process under ctest). */
static const th_case *cur_cases;
static size_t cur_n;
static size_t cur_idx;
static void (*cur_setup)(const char *name);
static void (*cur_teardown)(void);

static void setup_case(void)
{
    if (cur_setup != NULL && cur_idx < cur_n)
        cur_setup(cur_cases[cur_idx].name);
}

/* Moves on to the next selected case (the setup of the next TCase follows). */
static void teardown_case(void)
{
    if (cur_teardown != NULL)
        cur_teardown();
    th_stop_all();
    cur_idx++;
}

/* argv[1] from /proc/self/cmdline into buf ("" when there is none). */
static const char *first_arg(char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (f == NULL)
        return buf;
    size_t got = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[got] = '\0';
    size_t skip = strlen(buf) + 1; /* the program name */
    if (skip >= got)
        return "";
    return buf + skip;
}

int th_check_main(const char *suite, const th_case *cases, size_t n, double timeout_s, int argc,
                  char **argv)
{
    return th_check_main_fx(suite, cases, n, timeout_s, NULL, NULL, argc, argv);
}

int th_check_main_fx(const char *suite, const th_case *cases, size_t n, double timeout_s,
                     void (*setup)(const char *name), void (*teardown)(void), int argc, char **argv)
{
    char cmdline[4096];
    const char *arg = argv ? (argc > 1 ? argv[1] : "") : first_arg(cmdline, sizeof cmdline);
    if (strcmp(arg, "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", cases[i].name);
        return EXIT_SUCCESS;
    }
    if (strcmp(arg, "--world-up") == 0)
        return th_world_up() ? EXIT_SUCCESS : EXIT_FAILURE;
    if (strcmp(arg, "--world-down") == 0)
        return th_world_down() ? EXIT_SUCCESS : EXIT_FAILURE;
    signal(SIGPIPE, SIG_IGN);
    const char *only = arg[0] != '\0' ? arg : getenv("CK_RUN_CASE");
    Suite *s = suite_create(suite);
    cur_cases = cases;
    cur_n = n;
    cur_idx = 0;
    cur_setup = setup;
    cur_teardown = teardown;
    bool one = only != NULL && only[0] != '\0';
    for (size_t i = 0; i < n; i++) {
        if (one && strcmp(only, cases[i].name) != 0)
            continue;
        if (one)
            cur_idx = i;
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_unchecked_fixture(tc, setup_case, teardown_case);
        tcase_set_timeout(tc, timeout_s);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    int ran = srunner_ntests_run(sr);
    srunner_free(sr);
    th_stop_all();
    return failed == 0 && ran > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
