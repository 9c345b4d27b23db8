/*
 * test_lockp: the LOCKP/1 codec (SPEC §2). A table of malformed request lines
 * with the status, tag and reason each must produce; well-formed lines for
 * every verb; reply parsing and formatting.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_lockp.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

/* A literal with its exact length, so lines may hold NUL bytes. */
#define LIT(s) (s), sizeof(s) - 1

typedef struct bad_line {
    const char *tmpl; /* literal line, or a template with one "%s" */
    size_t tmpl_len;
    char fill; /* when fill_n > 0: "%s" becomes fill_n copies of fill */
    size_t fill_n;
    cm_lockp_parse_status status;
    const char *tag; /* expected req.tag ("" for BADREQ_NOTAG) */
    const char *why; /* expected substring of the error text */
} bad_line;

static const bad_line bad_lines[] = {
    /* empty and blank lines */
    {LIT(""), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "empty line"},
    {LIT("\r"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "empty line"},
    {LIT(" "), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "tag"},
    {LIT("    "), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "tag"},
    {LIT(" t1 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "tag"},
    /* bad tags */
    {LIT("%s PING"), 'a', 33, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("t/1 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("t:1 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("* PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("t\xc3\xa4 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("t1\tPING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("\0t1 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("t1\0 PING"), 0, 0, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    {LIT("%s"), 'a', 5000, CM_LOCKP_BADREQ_NOTAG, "", "bad tag"},
    /* verbs */
    {LIT("t1"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing verb"},
    {LIT("t1 FOO"), 0, 0, CM_LOCKP_BADREQ, "t1", "unknown verb"},
    {LIT("t1 ACQUIREX r 1 1"), 0, 0, CM_LOCKP_BADREQ, "t1", "unknown verb"},
    {LIT("t1 PIN"), 0, 0, CM_LOCKP_BADREQ, "t1", "unknown verb"},
    /* argument counts */
    {LIT("t1 ACQUIRE"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 ACQUIRE r"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 ACQUIRE r 10"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 ACQUIRE r 10 0 9"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 PING extra"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 INFO x"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 QUIT now"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 HELLO"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 HELLO a b"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 AUTH"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 AUTH a b"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 RENEW r " TOKEN), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 RENEW r " TOKEN " 1 2"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 RELEASE r"), 0, 0, CM_LOCKP_BADREQ, "t1", "missing argument"},
    {LIT("t1 RELEASE r " TOKEN " x"), 0, 0, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    {LIT("t1 PING %s"), 'x', 5000, CM_LOCKP_BADREQ, "t1", "too many arguments"},
    /* numbers */
    {LIT("t1 ACQUIRE r abc 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    {LIT("t1 ACQUIRE r 10 x1"), 0, 0, CM_LOCKP_BADREQ, "t1", "wait_ms is not a number"},
    {LIT("t1 ACQUIRE r -1 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    {LIT("t1 ACQUIRE r 10 -5"), 0, 0, CM_LOCKP_BADREQ, "t1", "wait_ms is not a number"},
    {LIT("t1 ACQUIRE r +1 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    {LIT("t1 ACQUIRE r 1.5 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    {LIT("t1 ACQUIRE r 0x10 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    {LIT("t1 ACQUIRE r 18446744073709551616 0"), 0, 0, CM_LOCKP_BADREQ, "t1",
     "lease_ms is too large"},
    {LIT("t1 ACQUIRE r 1 99999999999999999999999"), 0, 0, CM_LOCKP_BADREQ, "t1",
     "wait_ms is too large"},
    {LIT("t1 RENEW r " TOKEN " -5"), 0, 0, CM_LOCKP_BADREQ, "t1", "lease_ms is not a number"},
    /* resources */
    {LIT("t1 ACQUIRE %s 1 0"), 'r', 257, CM_LOCKP_BADREQ, "t1", "resource too long"},
    {LIT("t1 ACQUIRE %s 1 0"), 'r', 300, CM_LOCKP_BADREQ, "t1", "resource too long"},
    {LIT("t1 ACQUIRE %s 1 0"), 'r', 5000, CM_LOCKP_BADREQ, "t1", "resource too long"},
    {LIT("t1 RELEASE %s " TOKEN), 'r', 257, CM_LOCKP_BADREQ, "t1", "resource too long"},
    /* bytes outside printable ASCII */
    {LIT("t1 PING\0"), 0, 0, CM_LOCKP_BADREQ, "t1", "NUL"},
    {LIT("t1 ACQUIRE r\0x 1 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "NUL"},
    {LIT("t1 ACQUIRE Perf\xc3\xa4 1 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    {LIT("t1 HELLO \xff\xfe"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    {LIT("t1 PING\t"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    {LIT("t1 PI\rNG"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    {LIT("t1 PING\r\r"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    {LIT("t1 PING\n"), 0, 0, CM_LOCKP_BADREQ, "t1", "printable"},
    /* spacing */
    {LIT("t1  PING"), 0, 0, CM_LOCKP_BADREQ, "t1", "space"},
    {LIT("t1 PING "), 0, 0, CM_LOCKP_BADREQ, "t1", "space"},
    {LIT("t1 PING \r"), 0, 0, CM_LOCKP_BADREQ, "t1", "space"},
    {LIT("t1 ACQUIRE r  1 0"), 0, 0, CM_LOCKP_BADREQ, "t1", "space"},
    {LIT("t1 "), 0, 0, CM_LOCKP_BADREQ, "t1", "space"},
    /* tokens */
    {LIT("t1 RELEASE r 0123456789abcdef0123456789abcde"), 0, 0, CM_LOCKP_BADREQ, "t1", "bad token"},
    {LIT("t1 RELEASE r 0123456789ABCDEF0123456789abcdef"), 0, 0, CM_LOCKP_BADREQ, "t1",
     "bad token"},
    {LIT("t1 RELEASE r " TOKEN "0"), 0, 0, CM_LOCKP_BADREQ, "t1", "bad token"},
    {LIT("t1 RENEW r 0123456789abcdef0123456789abcdeg 10"), 0, 0, CM_LOCKP_BADREQ, "t1",
     "bad token"},
    /* HELLO name and AUTH secret lengths */
    {LIT("t1 HELLO %s"), 'n', 65, CM_LOCKP_BADREQ, "t1", "client name too long"},
    {LIT("t1 AUTH %s"), 's', 257, CM_LOCKP_BADREQ, "t1", "secret too long"},
};

/* Builds the line of a table row into a malloc'ed buffer. */
static char *bad_line_build(const bad_line *b, size_t *len)
{
    if (b->fill_n == 0) {
        char *s = malloc(b->tmpl_len + 1);
        ck_assert_ptr_nonnull(s);
        memcpy(s, b->tmpl, b->tmpl_len + 1);
        *len = b->tmpl_len;
        return s;
    }
    const char *mark = strstr(b->tmpl, "%s");
    ck_assert_ptr_nonnull(mark);
    size_t head = (size_t)(mark - b->tmpl), tail = b->tmpl_len - head - 2;
    char *s = malloc(head + b->fill_n + tail + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, b->tmpl, head);
    memset(s + head, b->fill, b->fill_n);
    memcpy(s + head + b->fill_n, mark + 2, tail + 1);
    *len = head + b->fill_n + tail;
    return s;
}

static void assert_err_text(const char *err)
{
    ck_assert_uint_gt(strlen(err), 0);
    for (const char *p = err; *p != '\0'; p++)
        ck_assert_msg(*p >= 0x20 && *p <= 0x7e, "error text has byte 0x%02x", (unsigned char)*p);
}

START_TEST(test_bad_line_table)
{
    const bad_line *b = &bad_lines[_i];
    size_t len;
    char *line = bad_line_build(b, &len);
    cm_lockp_request req;
    char err[128];
    cm_lockp_parse_status st = cm_lockp_parse_request(line, len, &req, err, sizeof(err));
    ck_assert_msg(st == b->status, "row %d '%.60s': status %d, want %d (%s)", _i, b->tmpl, (int)st,
                  (int)b->status, err);
    ck_assert_str_eq(req.tag, b->tag);
    assert_err_text(err);
    ck_assert_msg(strstr(err, b->why) != NULL, "row %d: error '%s' lacks '%s'", _i, err, b->why);
    free(line);
}
END_TEST

START_TEST(test_table_is_large)
{
    ck_assert_uint_ge(CM_ARRAY_LEN(bad_lines), 40);
}
END_TEST

/* Parses a well-formed line and returns the request. */
static cm_lockp_request parse_ok(const char *line, size_t len)
{
    cm_lockp_request req;
    char err[128] = "";
    cm_lockp_parse_status st = cm_lockp_parse_request(line, len, &req, err, sizeof(err));
    ck_assert_msg(st == CM_LOCKP_OK, "'%.80s' -> %d (%s)", line, (int)st, err);
    return req;
}

START_TEST(test_ok_every_verb)
{
    cm_lockp_request r;

    r = parse_ok(LIT("t1 HELLO myclient-1"));
    ck_assert_int_eq(r.verb, CM_VERB_HELLO);
    ck_assert_uint_eq(r.text_len, 10);
    ck_assert_int_eq(memcmp(r.text, "myclient-1", 10), 0);

    r = parse_ok(LIT("t2 AUTH s3cr3t!:x"));
    ck_assert_int_eq(r.verb, CM_VERB_AUTH);
    ck_assert_uint_eq(r.text_len, 9);
    ck_assert_int_eq(memcmp(r.text, "s3cr3t!:x", 9), 0);

    r = parse_ok(LIT("a.b_c-D9 PING"));
    ck_assert_int_eq(r.verb, CM_VERB_PING);
    ck_assert_str_eq(r.tag, "a.b_c-D9");

    r = parse_ok(LIT("t3 ACQUIRE Performance:42 0 5000"));
    ck_assert_int_eq(r.verb, CM_VERB_ACQUIRE);
    ck_assert_str_eq(r.resource, "Performance:42");
    ck_assert_uint_eq(r.lease_ms, 0);
    ck_assert_uint_eq(r.wait_ms, 5000);

    r = parse_ok(LIT("t4 RENEW Performance:42 " TOKEN " 30000"));
    ck_assert_int_eq(r.verb, CM_VERB_RENEW);
    ck_assert_str_eq(r.resource, "Performance:42");
    ck_assert_str_eq(r.token, TOKEN);
    ck_assert_uint_eq(r.lease_ms, 30000);

    r = parse_ok(LIT("t5 RELEASE Performance:42 " TOKEN));
    ck_assert_int_eq(r.verb, CM_VERB_RELEASE);
    ck_assert_str_eq(r.token, TOKEN);

    r = parse_ok(LIT("t6 INFO"));
    ck_assert_int_eq(r.verb, CM_VERB_INFO);
    r = parse_ok(LIT("t7 QUIT"));
    ck_assert_int_eq(r.verb, CM_VERB_QUIT);
}
END_TEST

START_TEST(test_ok_case_cr_numbers)
{
    cm_lockp_request r;
    r = parse_ok(LIT("t1 ping"));
    ck_assert_int_eq(r.verb, CM_VERB_PING);
    r = parse_ok(LIT("t1 AcQuIrE r 1 2"));
    ck_assert_int_eq(r.verb, CM_VERB_ACQUIRE);
    r = parse_ok(LIT("t1 PING\r"));
    ck_assert_int_eq(r.verb, CM_VERB_PING);
    r = parse_ok(LIT("t1 ACQUIRE r 18446744073709551615 007\r"));
    ck_assert_uint_eq(r.lease_ms, UINT64_MAX);
    ck_assert_uint_eq(r.wait_ms, 7);
    /* Never reads past len: the bytes after it are not part of the line. */
    r = parse_ok("t1 PINGGARBAGE", 7);
    ck_assert_int_eq(r.verb, CM_VERB_PING);
}
END_TEST

START_TEST(test_ok_limits)
{
    char line[600];
    char res[CM_LOCKP_RESOURCE_MAX + 1];
    cm_lockp_request r;

    memset(res, '~', CM_LOCKP_RESOURCE_MAX);
    res[CM_LOCKP_RESOURCE_MAX] = '\0';
    snprintf(line, sizeof(line), "t1 ACQUIRE %s 1 0", res);
    r = parse_ok(line, strlen(line));
    ck_assert_str_eq(r.resource, res);

    snprintf(line, sizeof(line), "%.32s PING", "abcdefghijklmnopqrstuvwxyz0123456789");
    r = parse_ok(line, strlen(line));
    ck_assert_uint_eq(strlen(r.tag), 32);

    snprintf(line, sizeof(line), "t1 HELLO %.64s", res);
    r = parse_ok(line, strlen(line));
    ck_assert_uint_eq(r.text_len, 64);

    snprintf(line, sizeof(line), "t1 AUTH %s", res);
    r = parse_ok(line, strlen(line));
    ck_assert_uint_eq(r.text_len, 256);
}
END_TEST

START_TEST(test_validators)
{
    ck_assert(cm_lockp_valid_tag(LIT("a")));
    ck_assert(!cm_lockp_valid_tag(LIT("")));
    ck_assert(!cm_lockp_valid_tag(LIT("a b")));
    ck_assert(cm_lockp_valid_resource(LIT("Performance:42")));
    ck_assert(!cm_lockp_valid_resource(LIT("a b")));
    ck_assert(!cm_lockp_valid_resource(LIT("")));
    ck_assert(cm_lockp_valid_token(LIT(TOKEN)));
    ck_assert(!cm_lockp_valid_token(LIT("0123456789abcdef0123456789abcdeF")));
    ck_assert_str_eq(cm_lockp_verb_name(CM_VERB_ACQUIRE), "ACQUIRE");
    ck_assert_str_eq(cm_lockp_verb_name(CM_VERB_QUIT), "QUIT");
}
END_TEST

START_TEST(test_parse_u64)
{
    uint64_t v = 1;
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("0"), &v), CM_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("18446744073709551615"), &v), CM_OK);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("00042"), &v), CM_OK);
    ck_assert_uint_eq(v, 42);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("18446744073709551616"), &v), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("99999999999999999999"), &v), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT(""), &v), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("-1"), &v), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT("+1"), &v), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_u64(LIT(" 1"), &v), CM_ERR);
    ck_assert_uint_eq(v, 42); /* unchanged on error */
}
END_TEST

START_TEST(test_format)
{
    char buf[64];
    ck_assert_uint_eq(cm_lockp_format(buf, sizeof(buf), "t1", "OK %s", "PONG"), 11);
    ck_assert_str_eq(buf, "t1 OK PONG\n");
    ck_assert_uint_eq(cm_lockp_format(buf, sizeof(buf), NULL, "LOST %s %s", "r", "x"), 11);
    ck_assert_str_eq(buf, "* LOST r x\n");
    /* "t1 OK PONG\n" needs 12 bytes with the NUL. */
    ck_assert_uint_eq(cm_lockp_format(buf, 12, "t1", "OK PONG"), 11);
    ck_assert_uint_eq(cm_lockp_format(buf, 11, "t1", "OK PONG"), 0);
    ck_assert_uint_eq(cm_lockp_format(buf, 2, "t1", "OK"), 0);
}
END_TEST

START_TEST(test_reply_grant)
{
    cm_lockp_reply rep;
    char token[CM_LOCKP_TOKEN_LEN + 1];
    uint64_t fence = 0, validity = 0;
    const char line[] = "t9 OK " TOKEN " 42 9990\r";

    ck_assert_int_eq(cm_lockp_parse_reply(line, sizeof(line) - 1, &rep), CM_OK);
    ck_assert(!rep.is_push);
    ck_assert_str_eq(rep.tag, "t9");
    ck_assert_str_eq(rep.word, "OK");
    ck_assert_uint_eq(rep.rest_len, 32 + 1 + 2 + 1 + 4);
    ck_assert_int_eq(cm_lockp_parse_grant(rep.rest, rep.rest_len, token, &fence, &validity), CM_OK);
    ck_assert_str_eq(token, TOKEN);
    ck_assert_uint_eq(fence, 42);
    ck_assert_uint_eq(validity, 9990);

    ck_assert_int_eq(cm_lockp_parse_grant(LIT(TOKEN " 42"), token, &fence, &validity), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_grant(LIT(TOKEN " 42 1 1"), token, &fence, &validity), CM_ERR);
    ck_assert_int_eq(
        cm_lockp_parse_grant(LIT(TOKEN " 18446744073709551616 1"), token, &fence, &validity),
        CM_ERR);
    ck_assert_int_eq(
        cm_lockp_parse_grant(LIT("0123456789ABCDEF0123456789abcdef 1 1"), token, &fence, &validity),
        CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_grant(LIT(TOKEN "  1 1"), token, &fence, &validity), CM_ERR);
}
END_TEST

START_TEST(test_reply_push_and_words)
{
    cm_lockp_reply rep;
    char res[CM_LOCKP_RESOURCE_MAX + 1], token[CM_LOCKP_TOKEN_LEN + 1];

    ck_assert_int_eq(cm_lockp_parse_reply(LIT("* LOST Performance:42 " TOKEN), &rep), CM_OK);
    ck_assert(rep.is_push);
    ck_assert_str_eq(rep.tag, "*");
    ck_assert_str_eq(rep.word, "LOST");
    ck_assert_int_eq(cm_lockp_parse_lost(rep.rest, rep.rest_len, res, token), CM_OK);
    ck_assert_str_eq(res, "Performance:42");
    ck_assert_str_eq(token, TOKEN);
    ck_assert_int_eq(cm_lockp_parse_lost(LIT("r"), res, token), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_lost(LIT("r badtoken"), res, token), CM_ERR);

    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 OK"), &rep), CM_OK);
    ck_assert_str_eq(rep.word, "OK");
    ck_assert_str_eq(rep.rest, "");
    ck_assert_uint_eq(rep.rest_len, 0);

    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 TIMEOUT\r"), &rep), CM_OK);
    ck_assert_str_eq(rep.word, "TIMEOUT");
    ck_assert_uint_eq(rep.rest_len, 0);

    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 ERR BADREQ unknown verb"), &rep), CM_OK);
    ck_assert_str_eq(rep.word, "ERR");
    ck_assert_uint_eq(rep.rest_len, strlen("BADREQ unknown verb"));
    ck_assert_int_eq(memcmp(rep.rest, "BADREQ unknown verb", rep.rest_len), 0);

    ck_assert_int_eq(cm_lockp_parse_reply(LIT("* ERR BADREQ empty line"), &rep), CM_OK);
    ck_assert(rep.is_push);
    ck_assert_str_eq(rep.word, "ERR");
}
END_TEST

START_TEST(test_reply_malformed)
{
    cm_lockp_reply rep;
    ck_assert_int_eq(cm_lockp_parse_reply(LIT(""), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 "), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("bad/tag OK"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1  OK"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 AVERYLONGWORDINDEED"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 OK\x01"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("t1 OK\0x"), &rep), CM_ERR);
    ck_assert_int_eq(cm_lockp_parse_reply(LIT("** OK"), &rep), CM_ERR);
}
END_TEST

static Suite *lockp_suite(void)
{
    Suite *s = suite_create("lockp");
    TCase *tc = tcase_create("request");
    tcase_add_loop_test(tc, test_bad_line_table, 0, (int)CM_ARRAY_LEN(bad_lines));
    tcase_add_test(tc, test_table_is_large);
    tcase_add_test(tc, test_ok_every_verb);
    tcase_add_test(tc, test_ok_case_cr_numbers);
    tcase_add_test(tc, test_ok_limits);
    tcase_add_test(tc, test_validators);
    tcase_add_test(tc, test_parse_u64);
    suite_add_tcase(s, tc);
    tc = tcase_create("reply");
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_reply_grant);
    tcase_add_test(tc, test_reply_push_and_words);
    tcase_add_test(tc, test_reply_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(lockp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
