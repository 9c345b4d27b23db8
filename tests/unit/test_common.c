/*
 * test_common: the small libcommon modules: addresses, string buffers,
 * histograms, randomness, logging and clocks.
 */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_addr.h"
#include "cm_hist.h"
#include "cm_log.h"
#include "cm_rand.h"
#include "cm_strbuf.h"
#include "cm_time.h"

static void assert_addr_ok(const char *text, const char *host, int port)
{
    cm_addr a;
    char err[128] = "";
    ck_assert_msg(cm_addr_parse(text, &a, err, sizeof(err)) == CM_OK, "%s: %s", text, err);
    ck_assert_str_eq(a.host, host);
    ck_assert_int_eq(a.port, port);
}

static void assert_addr_bad(const char *text, const char *why)
{
    cm_addr a = {"unchanged", 1};
    char err[128] = "";
    ck_assert_msg(cm_addr_parse(text, &a, err, sizeof(err)) == CM_ERR, "%s parsed", text);
    ck_assert_msg(strstr(err, why) != NULL, "%s: '%s' lacks '%s'", text, err, why);
    ck_assert_str_eq(a.host, "unchanged");
}

START_TEST(test_addr_parse)
{
    assert_addr_ok("127.0.0.1:7380", "127.0.0.1", 7380);
    assert_addr_ok("localhost:1", "localhost", 1);
    assert_addr_ok("redis-1.example:65535", "redis-1.example", 65535);
    assert_addr_ok("[::1]:6379", "::1", 6379);
    assert_addr_ok("[fe80::1%eth0]:80", "fe80::1%eth0", 80);
    assert_addr_ok("h:00080", "h", 80);
    assert_addr_bad("", "empty");
    assert_addr_bad("localhost", "missing ':port'");
    assert_addr_bad(":80", "empty host");
    assert_addr_bad("h:", "empty port");
    assert_addr_bad("h:0", "out of range");
    assert_addr_bad("h:65536", "out of range");
    assert_addr_bad("h:99999999999999999999", "out of range");
    assert_addr_bad("h:8x", "not a number");
    assert_addr_bad("h:-1", "not a number");
    assert_addr_bad("::1:80", "brackets");
    assert_addr_bad("[::1]", "missing ':port'");
    assert_addr_bad("[::1]:", "empty port");
    assert_addr_bad("[::1:80", "missing ']'");
    assert_addr_bad("[]:80", "bad IPv6");
    assert_addr_bad("h h:80", "bad character");
}
END_TEST

START_TEST(test_addr_list_and_format)
{
    cm_addr *items = NULL;
    size_t n = 0;
    char err[128], buf[CM_HOST_MAX + 16];

    ck_assert_int_eq(cm_addr_parse_list("a:1,[::1]:2,c:3", &items, &n, err, sizeof(err)), CM_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(items[1].host, "::1");
    ck_assert_int_eq(items[2].port, 3);
    ck_assert_str_eq(cm_addr_format(&items[0], buf, sizeof(buf)), "a:1");
    ck_assert_str_eq(cm_addr_format(&items[1], buf, sizeof(buf)), "[::1]:2");
    free(items);

    ck_assert_int_eq(cm_addr_parse_list("a:1,,b:2", &items, &n, err, sizeof(err)), CM_ERR);
    ck_assert_str_eq(err, "item 2 '': empty address");
    ck_assert_int_eq(cm_addr_parse_list("a:1,", &items, &n, err, sizeof(err)), CM_ERR);
    ck_assert_int_eq(cm_addr_parse_list("", &items, &n, err, sizeof(err)), CM_ERR);
    ck_assert_int_eq(cm_addr_parse_list("a:1,b", &items, &n, err, sizeof(err)), CM_ERR);
    ck_assert_str_eq(err, "item 2 'b': missing ':port'");
}
END_TEST

START_TEST(test_strbuf)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    ck_assert_str_eq(cm_strbuf_str(&sb), "");
    cm_strbuf_reset(&sb); /* on an empty buffer too */
    for (int i = 0; i < 100; i++)
        cm_strbuf_printf(&sb, "%d,", i);
    ck_assert_uint_eq(sb.len, strlen(sb.data));
    ck_assert_uint_eq(sb.len, 10 * 2 + 90 * 3);
    ck_assert(strncmp(sb.data, "0,1,2,", 6) == 0);
    ck_assert(strcmp(sb.data + sb.len - 3, "99,") == 0);
    cm_strbuf_append(&sb, "xyz", 2);
    ck_assert_str_eq(sb.data + sb.len - 2, "xy");

    size_t cap = sb.cap;
    cm_strbuf_reset(&sb);
    ck_assert_uint_eq(sb.len, 0);
    ck_assert_uint_eq(sb.cap, cap);
    ck_assert_str_eq(cm_strbuf_str(&sb), "");
    cm_strbuf_append(&sb, "", 0);
    ck_assert_str_eq(cm_strbuf_str(&sb), "");

    char big[5000];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cm_strbuf_printf(&sb, "<%s>", big);
    ck_assert_uint_eq(sb.len, sizeof(big) + 1);
    cm_strbuf_free(&sb);
    ck_assert_ptr_null(sb.data);
    ck_assert_uint_eq(sb.len, 0);
}
END_TEST

START_TEST(test_hist_cumulative)
{
    cm_hist h;
    cm_strbuf sb = CM_STRBUF_INIT;

    cm_hist_init_latency(&h);
    ck_assert_uint_eq(h.n, 16);
    cm_hist_observe_us(&h, 50);       /* <= 0.0001 */
    cm_hist_observe_us(&h, 100);      /* exactly on the 0.0001 bound */
    cm_hist_observe_us(&h, 300);      /* 0.0005 */
    cm_hist_observe_us(&h, 2000000);  /* 2.5 */
    cm_hist_observe_us(&h, 20000000); /* +Inf */
    cm_hist_format(&h, "lockd_handoff_seconds", "Handoff latency.", "", &sb);
    const char *s = cm_strbuf_str(&sb);
    const char *head = "# HELP lockd_handoff_seconds Handoff latency.\n"
                       "# TYPE lockd_handoff_seconds histogram\n"
                       "lockd_handoff_seconds_bucket{le=\"0.0001\"} 2\n"
                       "lockd_handoff_seconds_bucket{le=\"0.00025\"} 2\n"
                       "lockd_handoff_seconds_bucket{le=\"0.0005\"} 3\n";
    ck_assert_msg(strncmp(s, head, strlen(head)) == 0, "%s", s);
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_bucket{le=\"1\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_bucket{le=\"2.5\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_bucket{le=\"10\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_bucket{le=\"+Inf\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_sum 22.00045\n"));
    ck_assert_ptr_nonnull(strstr(s, "lockd_handoff_seconds_count 5\n"));

    /* Without help: no header lines, labels joined with le. */
    cm_strbuf_reset(&sb);
    cm_hist_format(&h, "rtt_seconds", NULL, "master=\"127.0.0.1:6380\"", &sb);
    s = cm_strbuf_str(&sb);
    ck_assert_ptr_null(strstr(s, "#"));
    head = "rtt_seconds_bucket{master=\"127.0.0.1:6380\",le=\"0.0001\"} 2\n";
    ck_assert_msg(strncmp(s, head, strlen(head)) == 0, "%s", s);
    ck_assert_ptr_nonnull(strstr(s, "rtt_seconds_count{master=\"127.0.0.1:6380\"} 5\n"));
    cm_strbuf_free(&sb);

    double bounds[] = {0.001, 0.01};
    cm_hist_init(&h, bounds, 2);
    cm_hist_observe_us(&h, 5000);
    ck_assert_uint_eq(h.counts[0], 0);
    ck_assert_uint_eq(h.counts[1], 1);
    ck_assert_uint_eq(h.counts[2], 0);
}
END_TEST

static int cmp_token(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(test_rand_tokens)
{
    enum { N = 2000 };
    static char tokens[N][CM_TOKEN_HEX_LEN + 1];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cm_rand_token(tokens[i]), CM_OK);
        ck_assert_uint_eq(strlen(tokens[i]), 32);
        for (int j = 0; j < 32; j++) {
            char c = tokens[i][j];
            ck_assert((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        }
    }
    qsort(tokens, N, sizeof(tokens[0]), cmp_token);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(tokens[i - 1], tokens[i]);
}
END_TEST

START_TEST(test_rand_range)
{
    int seen[6] = {0};
    for (int i = 0; i < 6000; i++) {
        uint32_t v = cm_rand_range(5, 10);
        ck_assert_uint_ge(v, 5);
        ck_assert_uint_le(v, 10);
        seen[v - 5]++;
    }
    for (int i = 0; i < 6; i++)
        ck_assert_int_gt(seen[i], 500); /* ~1000 each */
    ck_assert_uint_eq(cm_rand_range(7, 7), 7);
    (void)cm_rand_range(0, UINT32_MAX);

    uint32_t a[8], b[8];
    cm_rand_seed(42);
    for (int i = 0; i < 8; i++)
        a[i] = cm_rand_range(0, 1000000);
    cm_rand_seed(42);
    for (int i = 0; i < 8; i++)
        b[i] = cm_rand_range(0, 1000000);
    ck_assert_int_eq(memcmp(a, b, sizeof(a)), 0);
}
END_TEST

START_TEST(test_log_level_parse)
{
    cm_log_level l = CM_LOG_ERROR;
    ck_assert_int_eq(cm_log_level_parse("debug", &l), CM_OK);
    ck_assert_int_eq(l, CM_LOG_DEBUG);
    ck_assert_int_eq(cm_log_level_parse("WARN", &l), CM_OK);
    ck_assert_int_eq(l, CM_LOG_WARN);
    ck_assert_int_eq(cm_log_level_parse("Info", &l), CM_OK);
    ck_assert_int_eq(l, CM_LOG_INFO);
    ck_assert_int_eq(cm_log_level_parse("error", &l), CM_OK);
    ck_assert_int_eq(l, CM_LOG_ERROR);
    ck_assert_int_eq(cm_log_level_parse("verbose", &l), CM_ERR);
    ck_assert_int_eq(cm_log_level_parse("", &l), CM_ERR);
    ck_assert_int_eq(cm_log_level_parse(NULL, &l), CM_ERR);
    ck_assert_int_eq(l, CM_LOG_ERROR);
    ck_assert_str_eq(cm_log_level_name(CM_LOG_WARN), "WARN");
}
END_TEST

/* Runs fn with stderr sent to a temp file and returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/test_common_log_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    fn();
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    off_t end = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)end + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(pread(fd, text, (size_t)end, 0), end);
    close(fd);
    return text;
}

static void log_some(void)
{
    cm_log_init("/usr/bin/test_common", CM_LOG_WARN);
    log_info("hidden %d", 1);
    log_warn("shown %d", 2);
    cm_log_set_level(CM_LOG_DEBUG);
    log_debug("debug %s", "line");
    cm_log_set_level(CM_LOG_INFO);
}

START_TEST(test_log_format_and_gate)
{
    char *text = capture_stderr(log_some);
    regex_t re;
    const char *pat = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                      "test_common\\[[0-9]+\\] WARN shown 2\n"
                      "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z test_common\\[[0-9]+\\] DEBUG "
                      "debug line\n$";
    ck_assert_int_eq(regcomp(&re, pat, REG_EXTENDED), 0);
    ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "log output:\n%s", text);
    regfree(&re);
    free(text);
}
END_TEST

START_TEST(test_time)
{
    uint64_t a = cm_now_ns(), ms = cm_now_ms(), us = cm_now_us();
    usleep(2000);
    ck_assert_uint_ge(cm_now_ns() - a, 2000000);
    ck_assert_uint_ge(cm_now_ms(), ms + 2);
    ck_assert_uint_ge(cm_now_us(), us + 2000);
    ck_assert_uint_gt(cm_wall_ms(), UINT64_C(1600000000000));
    struct timeval tv = cm_tv_from_ms(1500);
    ck_assert_int_eq(tv.tv_sec, 1);
    ck_assert_int_eq(tv.tv_usec, 500000);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("common");
    tcase_add_test(tc, test_addr_parse);
    tcase_add_test(tc, test_addr_list_and_format);
    tcase_add_test(tc, test_strbuf);
    tcase_add_test(tc, test_hist_cumulative);
    tcase_add_test(tc, test_rand_tokens);
    tcase_add_test(tc, test_rand_range);
    tcase_add_test(tc, test_log_level_parse);
    tcase_add_test(tc, test_log_format_and_gate);
    tcase_add_test(tc, test_time);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(common_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
