/*
 * test_reserved_unit: network-free tests of reserved's rules and of cm_hash. Check
 * forks each test, so a test that aborts (an assertion on purpose) fails alone.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "cm_log.h"
#include "rs_metrics.h"
#include "ru_suites.h"

Suite *ru_suite(const char *name, const ru_case *cases, size_t n)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].signal != 0)
            tcase_add_test_raise_signal(tc, cases[i].test, cases[i].signal);
        else
            tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    cm_log_init("reserved_unit", CM_LOG_WARN);
    rs_metrics_init();
    SRunner *sr = srunner_create(ru_perflock_suite());
    srunner_add_suite(sr, ru_bkphase_suite());
    srunner_add_suite(sr, ru_cm_hash_suite());
    srunner_add_suite(sr, ru_batch_suite());
    srunner_add_suite(sr, ru_pay_suite());
    srunner_add_suite(sr, ru_pwhash_suite());
    srunner_add_suite(sr, ru_ratelimit_suite());
    srunner_add_suite(sr, ru_utf8_suite());
    srunner_add_suite(sr, ru_seatlist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    /* a CK_RUN_CASE naming no case runs nothing: a failure, not a pass (a binary older
     * than its ctest entries, a renamed case) */
    int ran = srunner_ntests_run(sr);
    srunner_free(sr);
    if (ran == 0)
        fprintf(stderr, "no test ran (CK_RUN_CASE=%s)\n",
                getenv("CK_RUN_CASE") ? getenv("CK_RUN_CASE") : "");
    return failed == 0 && ran > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
