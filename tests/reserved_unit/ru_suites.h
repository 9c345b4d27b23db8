/*
 * ru_suites: the suites of test_reserved_unit, one per file; main.c runs them all (or
 * the one tcase CK_RUN_CASE names: ctest runs one entry per tcase).
 */
#ifndef RU_SUITES_H
#define RU_SUITES_H

#include <check.h>
#include <signal.h>

#include <stddef.h>

/* One test in its own tcase; the ctest entry of the same name runs it (CMakeLists.txt
 * reads the names from the {"name", test_...} lines of these tables). */
typedef struct ru_case {
    const char *name;
    const TTest *test;
    int signal; /* 0, or the signal the test must die of */
} ru_case;

/* The signal a test of an illegal state move dies of: SIGABRT from assert(); 0 in a
 * build without assertions (NDEBUG: release builds), where such a test has nothing to
 * check. */
#ifdef NDEBUG
#define RU_ABORT_SIGNAL 0
#else
#define RU_ABORT_SIGNAL SIGABRT
#endif

Suite *ru_suite(const char *name, const ru_case *cases, size_t n);

Suite *ru_perflock_suite(void);
Suite *ru_bkphase_suite(void);
Suite *ru_cm_hash_suite(void);
Suite *ru_batch_suite(void);
Suite *ru_pay_suite(void);
Suite *ru_pwhash_suite(void);
Suite *ru_ratelimit_suite(void);
Suite *ru_utf8_suite(void);
Suite *ru_seatlist_suite(void);

#endif
