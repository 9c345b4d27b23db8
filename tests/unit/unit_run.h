/*
 * unit_run: the main() of the newer unit tests: one Check suite of one test case holding
 * the given tests, run; exit status 0 when every test passed.
 */
#ifndef UNIT_RUN_H
#define UNIT_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int unit_run(const char *name, const TTest *const *tests, size_t n, int timeout_s)
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    for (size_t i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
