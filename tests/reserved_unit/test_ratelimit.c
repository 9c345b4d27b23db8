/*
 * test_ratelimit: the token buckets of rs_ratelimit (limits.rate_per_token, rate_per_ip)
 * with a made-up clock: the burst edge and the wait a refused take reports, the refill
 * from elapsed time without drift, the bound on the keys held (full buckets forgotten
 * first), and per_s 0 (no limit).
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "cm_strbuf.h"
#include "rs_ratelimit.h"
#include "ru_suites.h"

static rs_rate *rate_new(double per_s, double burst, size_t max_keys)
{
    rs_rate_opts o = {.per_s = per_s, .burst = burst, .max_keys = max_keys};
    rs_rate *r = rs_rate_new(&o);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* One take of a script: at now_ms, key's take answers want (0: allowed, else the wait). */
typedef struct take_step {
    const char *key;
    uint64_t now_ms;
    uint64_t want;
} take_step;

static void run_takes(rs_rate *r, const take_step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t got = rs_rate_take(r, steps[i].key, steps[i].now_ms);
        ck_assert_msg(got == steps[i].want, "step %zu: take of %s at %llu ms: %llu, want %llu", i,
                      steps[i].key, (unsigned long long)steps[i].now_ms, (unsigned long long)got,
                      (unsigned long long)steps[i].want);
    }
}

#define TAKES(r, ...)                                                                              \
    do {                                                                                           \
        const take_step steps_[] = {__VA_ARGS__};                                                  \
        run_takes((r), steps_, sizeof(steps_) / sizeof(steps_[0]));                                \
    } while (0)

/* Burst N at one ms: takes 1..N pass, N+1 is refused with the time one token takes to
 * come (100 ms at 10/s), one ms before that still refused, at it allowed. Another key
 * has its own bucket, and starts full. A fractional burst holds its whole tokens. */
START_TEST(test_edge)
{
    rs_rate *r = rate_new(10, 5, 100);
    TAKES(r, {"k", 1000, 0}, {"k", 1000, 0}, {"k", 1000, 0}, {"k", 1000, 0}, {"k", 1000, 0},
          {"k", 1000, 100}, {"k", 1099, 1}, {"k", 1100, 0}, {"k", 1100, 100});
    TAKES(r, {"other", 1100, 0}, {"other", 1100, 0}, {"other", 1100, 0}, {"other", 1100, 0},
          {"other", 1100, 0}, {"other", 1100, 100});
    ck_assert_uint_eq(rs_rate_get_stats(r).limited, 4);
    rs_rate_free(r);
    rs_rate *half = rate_new(1, 2.5, 10);
    TAKES(half, {"k", 0, 0}, {"k", 0, 0}, {"k", 0, 500}); /* 0.5 held, 0.5 to come at 1/s */
    rs_rate_free(half);
    /* a wait that is not a whole number of ms is rounded up: at 3/s a token takes 333.3 ms */
    rs_rate *third = rate_new(3, 1, 10);
    TAKES(third, {"k", 0, 0}, {"k", 0, 334}, {"k", 333, 1}, {"k", 334, 0});
    rs_rate_free(third);
    rs_rate_opts bad[] = {{-1, 5, 10}, {1, 0.5, 10}, {1, 5, 0}, {1e-9, 5, 10}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_ptr_null(rs_rate_new(&bad[i]));
}
END_TEST

/* Refill from elapsed time: partial waits, a refill capped at the burst, a clock that
 * goes back gives nothing, fractional rates, and no drift: at 1.1/s polled every ms for
 * 10 s, exactly 11 takes pass (a double adding 0.0011 token a ms gets 10). */
START_TEST(test_refill)
{
    rs_rate *r = rate_new(2, 3, 100);
    TAKES(r, {"k", 0, 0}, {"k", 0, 0}, {"k", 0, 0}, {"k", 0, 500}, {"k", 250, 250}, {"k", 500, 0},
          {"k", 500, 500}, {"k", 1000000, 0}, {"k", 1000000, 0}, {"k", 1000000, 0},
          {"k", 1000000, 500}, {"k", 999000, 500});
    rs_rate_free(r);
    /* Buckets full again are forgotten two a take (sweeping on the way): with ten full
     * ones ahead of it, "p" is still held when it comes back, and its refill too stops at
     * the burst, both after less than the time to fill (at 1000) and after more (at
     * 1000000; its four takes at 1000 swept eight of the ten). */
    rs_rate *held = rate_new(2, 3, 100);
    char key[8];
    for (uint64_t t = 0; t < 10; t++) {
        snprintf(key, sizeof(key), "f%d", (int)t);
        ck_assert_uint_eq(rs_rate_take(held, key, t), 0);
    }
    TAKES(held, {"p", 20, 0}, {"p", 1000, 0}, {"p", 1000, 0}, {"p", 1000, 0}, {"p", 1000, 500},
          {"p", 1000000, 0}, {"p", 1000000, 0}, {"p", 1000000, 0}, {"p", 1000000, 500});
    rs_rate_free(held);
    rs_rate *slow = rate_new(0.5, 1, 10);
    TAKES(slow, {"k", 7, 0}, {"k", 7, 2000}, {"k", 1007, 1000}, {"k", 2007, 0});
    rs_rate_free(slow);
    /* burst 2, taken at once as the first token is there: the bucket is never full, so no
     * fraction of a token is cut at the burst */
    rs_rate *r11 = rate_new(1.1, 2, 10);
    TAKES(r11, {"k", 0, 0}, {"k", 0, 0});
    int passed = 0;
    for (uint64_t t = 1; t <= 10000; t++)
        passed += rs_rate_take(r11, "k", t) == 0;
    ck_assert_int_eq(passed, 11);
    rs_rate_free(r11);
}
END_TEST

/* 100,000 distinct keys through a table of 1,000: it never holds more, every new key
 * starts full (passes), and busy buckets were evicted (counted, in the metrics too).
 * Then the rule of what goes first: a full bucket, even a recently used one, before an
 * older bucket still owed its wait. */
START_TEST(test_bounded_keys)
{
    rs_rate *r = rate_new(1, 5, 1000);
    char key[32];
    size_t most = 0, refused = 0; /* no ck_assert in the loop: Check logs each one */
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        refused += rs_rate_take(r, key, (uint64_t)i / 100) != 0;
        most = rs_rate_count(r) > most ? rs_rate_count(r) : most;
    }
    ck_assert_uint_eq(refused, 0);
    ck_assert_uint_eq(most, 1000);
    ck_assert_uint_eq(rs_rate_count(r), 1000);
    ck_assert_uint_gt(rs_rate_get_stats(r).evictions, 0);
    cm_strbuf sb = CM_STRBUF_INIT;
    rs_rate_metrics(r, "ip", &sb);
    ck_assert_ptr_nonnull(strstr(cm_strbuf_str(&sb), "reserved_rate_keys{bucket=\"ip\"} 1000\n"));
    char line[96];
    snprintf(line, sizeof(line), "reserved_rate_evictions_total{bucket=\"ip\"} %llu\n",
             (unsigned long long)rs_rate_get_stats(r).evictions);
    ck_assert_ptr_nonnull(strstr(cm_strbuf_str(&sb), line));
    cm_strbuf_free(&sb);
    /* quiet for the refill time: sweeping on the way empties the table (one take a second
     * keeps "again" passing) */
    for (int i = 0; i < 1000; i++)
        refused += rs_rate_take(r, "again", 1000000 + 1000 * (uint64_t)i) != 0;
    ck_assert_uint_eq(refused, 0);
    ck_assert_uint_le(rs_rate_count(r), 1);
    rs_rate_free(r);

    /* 1/s, burst 2, two keys at most. "old" empties its bucket at 0 (full again at 2000);
     * "new" takes one token at 100 (full again at 1100). At 1500 a third key comes: "new"
     * is full, so it goes, not "old", which still owes its wait. */
    rs_rate *two = rate_new(1, 2, 2);
    TAKES(two, {"old", 0, 0}, {"old", 0, 0}, {"new", 100, 0}, {"third", 1500, 0});
    ck_assert_uint_eq(rs_rate_count(two), 2);
    ck_assert_uint_eq(rs_rate_get_stats(two).evictions, 0);
    TAKES(two, {"old", 1500, 0}, {"old", 1500, 500}); /* 1.5 tokens by now */
    rs_rate_free(two);
}
END_TEST

/* per_s 0: every take passes, nothing is stored, nothing is counted. */
START_TEST(test_off)
{
    rs_rate_opts o = {.per_s = 0, .burst = 0, .max_keys = 0};
    rs_rate *r = rs_rate_new(&o);
    ck_assert_ptr_nonnull(r);
    char key[32];
    size_t refused = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i % 7);
        refused += rs_rate_take(r, key, 5) != 0;
    }
    ck_assert_uint_eq(refused, 0);
    ck_assert_uint_eq(rs_rate_count(r), 0);
    ck_assert_uint_eq(rs_rate_get_stats(r).limited, 0);
    /* both tables on one page: each family once, with both buckets */
    rs_rate *on = rate_new(1, 1, 10);
    TAKES(on, {"t", 0, 0}, {"t", 0, 1000});
    const rs_rate *rates[] = {on, r};
    const char *names[] = {"token", "ip"};
    cm_strbuf sb = CM_STRBUF_INIT;
    rs_rate_metrics_all(rates, names, 2, &sb);
    const char *text = cm_strbuf_str(&sb);
    const char *first = strstr(text, "# TYPE reserved_rate_limited_total counter\n");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + 1, "# TYPE reserved_rate_limited_total"));
    ck_assert_ptr_nonnull(strstr(text, "reserved_rate_limited_total{bucket=\"token\"} 1\n"
                                       "reserved_rate_limited_total{bucket=\"ip\"} 0\n"));
    cm_strbuf_free(&sb);
    rs_rate_free(on);
    rs_rate_free(r);
}
END_TEST

Suite *ru_ratelimit_suite(void)
{
    const ru_case cases[] = {
        {"ratelimit_edge", test_edge, 0},
        {"ratelimit_refill", test_refill, 0},
        {"ratelimit_bounded_keys", test_bounded_keys, 0},
        {"ratelimit_off", test_off, 0},
    };
    return ru_suite("ratelimit", cases, sizeof(cases) / sizeof(cases[0]));
}
