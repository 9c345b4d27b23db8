/*
 * test_lockhist: cm_lockhist's line format (docs/chaos.md, "Lock histories"): each event
 * kind's line exactly, quotes and backslashes escaped, a line cut short still one JSON object
 * with its newline, the process name from a file's name, and lines appended whole to a file.
 * No network.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_lockhist.h"
#include "unit_run.h"

static cm_lock_event ev_of(cm_lock_event_kind kind)
{
    cm_lock_event ev = {.kind = kind,
                        .resource = "Performance:7",
                        .token = "0123456789abcdef0123456789abcdef",
                        .fence = 18446744073709551615ull,
                        .t_us = 1234567,
                        .deadline_us = 4234567,
                        .reason = "lockd_dead",
                        .session = "42"};
    return ev;
}

START_TEST(test_line_per_event)
{
    char buf[CM_LOCKHIST_LINE_MAX];
    cm_lock_event ev = ev_of(CM_LOCK_EV_GRANT);
    size_t n = cm_lockhist_format(buf, sizeof(buf), "reserved1", "42", &ev);
    ck_assert_str_eq(buf, "{\"src\":\"reserved1\",\"res\":\"Performance:7\",\"ev\":\"grant\","
                          "\"sess\":\"42\",\"fence\":\"18446744073709551615\",\"t_us\":1234567,"
                          "\"deadline_us\":4234567}\n");
    ck_assert_uint_eq(n, strlen(buf));
    ev = ev_of(CM_LOCK_EV_RENEW);
    cm_lockhist_format(buf, sizeof(buf), "load", "c3/9", &ev);
    ck_assert_str_eq(buf, "{\"src\":\"load\",\"res\":\"Performance:7\",\"ev\":\"renew\","
                          "\"sess\":\"c3/9\",\"fence\":\"18446744073709551615\",\"t_us\":1234567,"
                          "\"deadline_us\":4234567}\n");
    /* release: no deadline, no reason */
    ev = ev_of(CM_LOCK_EV_RELEASE);
    cm_lockhist_format(buf, sizeof(buf), "load", "c3/9", &ev);
    ck_assert_str_eq(buf,
                     "{\"src\":\"load\",\"res\":\"Performance:7\",\"ev\":\"release\","
                     "\"sess\":\"c3/9\",\"fence\":\"18446744073709551615\",\"t_us\":1234567}\n");
    /* lost: its reason, no deadline */
    ev = ev_of(CM_LOCK_EV_LOST);
    cm_lockhist_format(buf, sizeof(buf), "load", "c3/9", &ev);
    ck_assert_str_eq(buf, "{\"src\":\"load\",\"res\":\"Performance:7\",\"ev\":\"lost\","
                          "\"sess\":\"c3/9\",\"fence\":\"18446744073709551615\",\"t_us\":1234567,"
                          "\"reason\":\"lockd_dead\"}\n");
    ck_assert_str_eq(cm_lockhist_ev_name(CM_LOCK_EV_LOST), "lost");
}
END_TEST

START_TEST(test_escapes_and_cut)
{
    char buf[CM_LOCKHIST_LINE_MAX], small[48];
    cm_lock_event ev = ev_of(CM_LOCK_EV_RELEASE);
    ev.resource = "a\"b\\c";
    cm_lockhist_format(buf, sizeof(buf), "p", "s", &ev);
    ck_assert_msg(strstr(buf, "\"res\":\"a\\\"b\\\\c\"") != NULL, "%s", buf);
    /* too long for the buffer: cut, but closed and ended */
    size_t n = cm_lockhist_format(small, sizeof(small), "reserved1", "42", &ev);
    ck_assert_uint_lt(n, sizeof(small));
    ck_assert_uint_eq(n, strlen(small));
    ck_assert(small[n - 2] == '}' && small[n - 1] == '\n');
}
END_TEST

START_TEST(test_src_from_path)
{
    char src[64];
    cm_lockhist_src_from_path("/out/locks-reserved2.jsonl", src, sizeof(src));
    ck_assert_str_eq(src, "reserved2");
    cm_lockhist_src_from_path("locks-load.jsonl", src, sizeof(src));
    ck_assert_str_eq(src, "load");
    cm_lockhist_src_from_path("/x/history.log", src, sizeof(src));
    ck_assert_str_eq(src, "history.log");
    cm_lockhist_src_from_path("/x/locks-.jsonl", src, sizeof(src));
    ck_assert_str_eq(src, "locks-");
    cm_lockhist_src_from_path("", src, sizeof(src));
    ck_assert_str_eq(src, "");
}
END_TEST

START_TEST(test_record_appends)
{
    char path[] = "/tmp/test_lockhist_XXXXXX", err[256], line[CM_LOCKHIST_LINE_MAX];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "old\n", 4), 4);
    close(fd);
    cm_lockhist *h = cm_lockhist_open(path, "load", err, sizeof(err));
    ck_assert_ptr_nonnull(h);
    cm_lock_event ev = ev_of(CM_LOCK_EV_GRANT);
    cm_lockhist_record(h, "c1/2", &ev);
    ev = ev_of(CM_LOCK_EV_RELEASE);
    cm_lockhist_record(h, "c1/2", &ev);
    ck_assert_uint_eq(cm_lockhist_lines(h), 2);
    ck_assert_uint_eq(cm_lockhist_errors(h), 0);
    cm_lockhist_close(h);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert(fgets(line, sizeof(line), f) && strcmp(line, "old\n") == 0); /* appended */
    ck_assert(fgets(line, sizeof(line), f) && strstr(line, "\"ev\":\"grant\"") != NULL);
    ck_assert(fgets(line, sizeof(line), f) && strstr(line, "\"ev\":\"release\"") != NULL);
    ck_assert(fgets(line, sizeof(line), f) == NULL);
    fclose(f);
    unlink(path);
    ck_assert_ptr_null(cm_lockhist_open("/nonexistent-dir/x.jsonl", "p", err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent-dir/x.jsonl") != NULL, "%s", err);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_line_per_event, test_escapes_and_cut, test_src_from_path,
                                  test_record_appends};
    return unit_run("lockhist", tests, sizeof(tests) / sizeof(tests[0]), 10);
}
