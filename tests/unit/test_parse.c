/*
 * test_parse: libcommon's strict number parsing (cm_parse) and the benchmarks' quantile
 * histogram (cm_histq). No network.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "cm_hist.h"
#include "cm_parse.h"
#include "unit_run.h"

START_TEST(test_u64)
{
    uint64_t v = 7;
    ck_assert(cm_parse_u64("0", 0, 10, &v) && v == 0);
    ck_assert(cm_parse_u64("10", 0, 10, &v) && v == 10);
    ck_assert(cm_parse_u64("007", 0, 10, &v) && v == 7);
    ck_assert(cm_parse_u64("18446744073709551615", 0, UINT64_MAX, &v) && v == UINT64_MAX);
    v = 42;
    /* each of these is what strtoull alone would take */
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "11", "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!cm_parse_u64(bad[i], 0, 10, &v), "'%s' parsed", bad[i]);
    ck_assert(!cm_parse_u64(NULL, 0, 10, &v));
    /* strtoull reads "-1" as UINT64_MAX: refused even where that is in range */
    ck_assert(!cm_parse_u64("-1", 0, UINT64_MAX, &v));
    ck_assert(!cm_parse_u64(" 1", 0, UINT64_MAX, &v));
    ck_assert(!cm_parse_u64("0", 1, 10, &v));
    ck_assert_uint_eq(v, 42); /* untouched on failure */
}
END_TEST

START_TEST(test_i64)
{
    int64_t v = 0;
    ck_assert(cm_parse_i64("-5", -10, 10, &v) && v == -5);
    ck_assert(cm_parse_i64("9223372036854775807", 0, INT64_MAX, &v) && v == INT64_MAX);
    ck_assert(cm_parse_i64("-9223372036854775808", INT64_MIN, 0, &v) && v == INT64_MIN);
    ck_assert(!cm_parse_i64("-11", -10, 10, &v));
    ck_assert(!cm_parse_i64("--1", -10, 10, &v));
    ck_assert(!cm_parse_i64("-", -10, 10, &v));
    ck_assert(!cm_parse_i64("+1", -10, 10, &v));
    ck_assert(!cm_parse_i64("9223372036854775808", 0, INT64_MAX, &v));
}
END_TEST

START_TEST(test_double)
{
    double v = -1;
    ck_assert(cm_parse_double("0", 0, 1, &v) && v == 0);
    ck_assert(cm_parse_double("0.25", 0, 1, &v) && v == 0.25);
    ck_assert(cm_parse_double("1", 0, 1, &v) && v == 1);
    const char *bad[] = {"", " 0.5", "0.5 ", "1.5", "-0.1", "nan", "inf", "0.5x", "1e999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!cm_parse_double(bad[i], 0, 1, &v), "'%s' parsed", bad[i]);
}
END_TEST

START_TEST(test_pair_and_list)
{
    uint64_t a = 0, b = 0, *ids = NULL;
    size_t n = 0;
    ck_assert(cm_parse_u64_pair("1:100", ':', 1, 1000, &a, &b) && a == 1 && b == 100);
    ck_assert(!cm_parse_u64_pair("1:", ':', 1, 1000, &a, &b));
    ck_assert(!cm_parse_u64_pair(":1", ':', 1, 1000, &a, &b));
    ck_assert(!cm_parse_u64_pair("1-2", ':', 1, 1000, &a, &b));
    ck_assert(!cm_parse_u64_pair("0:2", ':', 1, 1000, &a, &b));
    ck_assert(!cm_parse_u64_pair("1:2:3", ':', 1, 1000, &a, &b));

    ck_assert(cm_parse_u64_list("5", 1, 10, &ids, &n) && n == 1 && ids[0] == 5);
    free(ids);
    ck_assert(cm_parse_u64_list("1,2,3", 1, 10, &ids, &n) && n == 3 && ids[2] == 3);
    free(ids);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "1,0", "1,11", "1, 2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!cm_parse_u64_list(bad[i], 1, 10, &ids, &n), "'%s' parsed", bad[i]);
}
END_TEST

START_TEST(test_histq)
{
    static cm_histq h; /* 32 KiB: not on the stack */
    ck_assert(cm_histq_quantile_us(&h, 0.5) == 0);
    for (uint64_t us = 1; us <= 10000; us++)
        cm_histq_add(&h, us);
    ck_assert_uint_eq(h.n, 10000);
    ck_assert_uint_eq(h.max_us, 10000);
    /* exact quantiles are 5000, 9900, 10000: within 1.6% */
    double p50 = cm_histq_quantile_us(&h, 0.5), p99 = cm_histq_quantile_us(&h, 0.99);
    ck_assert_msg(p50 > 5000 * 0.984 && p50 < 5000 * 1.016, "p50 %f", p50);
    ck_assert_msg(p99 > 9900 * 0.984 && p99 < 9900 * 1.016, "p99 %f", p99);
    ck_assert(cm_histq_quantile_us(&h, 1.0) <= 10000); /* never above the maximum */
    /* small values are exact */
    static cm_histq s;
    cm_histq_add(&s, 3);
    cm_histq_add(&s, 7);
    ck_assert(cm_histq_quantile_us(&s, 0.5) == 3);
    ck_assert(cm_histq_quantile_us(&s, 1.0) == 7);
    /* the largest values land in the last octave, not past the array */
    static cm_histq big;
    cm_histq_add(&big, UINT64_MAX);
    ck_assert(cm_histq_quantile_us(&big, 0.5) > 9.2e18);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_u64, test_i64, test_double, test_pair_and_list, test_histq};
    return unit_run("parse", tests, sizeof(tests) / sizeof(tests[0]), 0);
}
