/*
 * rs_utf8: the UTF-8 check every header value and text parameter passes before it reaches
 * PostgreSQL (which refuses what it refuses: a 400, not a 503), and the character count
 * the length limits of names, rows, searches and passwords are stated in.
 */
#include "ru_suites.h"
#include "rs_utf8.h"

#include <string.h>

#define CASE(s) (s), sizeof(s) - 1

START_TEST(test_valid)
{
    ck_assert(rs_utf8_valid(CASE("")));
    ck_assert(rs_utf8_valid(CASE("plain ASCII")));
    ck_assert(rs_utf8_valid(CASE("\xC3\xA9t\xC3\xA9"))); /* été */
    ck_assert(rs_utf8_valid(CASE("\xE2\x82\xAC")));      /* € */
    ck_assert(rs_utf8_valid(CASE("\xF0\x9F\x8E\xAB")));  /* U+1F3AB, a ticket */
    ck_assert(rs_utf8_valid(CASE("\xF4\x8F\xBF\xBF")));  /* U+10FFFF */
    ck_assert(!rs_utf8_valid(CASE("a\0b")));             /* NUL */
    ck_assert(!rs_utf8_valid(CASE("\x80")));             /* a continuation first */
    ck_assert(!rs_utf8_valid(CASE("\xC0\xAF")));         /* overlong '/' */
    ck_assert(!rs_utf8_valid(CASE("\xE0\x80\xAF")));     /* overlong, 3 bytes */
    ck_assert(!rs_utf8_valid(CASE("\xED\xA0\x80")));     /* a surrogate */
    ck_assert(!rs_utf8_valid(CASE("\xF4\x90\x80\x80"))); /* above U+10FFFF */
    ck_assert(!rs_utf8_valid(CASE("\xE2\x82")));         /* cut short */
    ck_assert(!rs_utf8_valid(CASE("\xFF")));
}
END_TEST

START_TEST(test_chars)
{
    ck_assert_uint_eq(rs_utf8_chars(CASE("")), 0);
    ck_assert_uint_eq(rs_utf8_chars(CASE("abc")), 3);
    ck_assert_uint_eq(rs_utf8_chars(CASE("\xC3\xA9t\xC3\xA9")), 3);
    ck_assert_uint_eq(rs_utf8_chars(CASE("\xF0\x9F\x8E\xAB\xE2\x82\xAC")), 2);
    /* the length given counts, not a NUL */
    ck_assert_uint_eq(rs_utf8_chars("\xC3\xA9xyz", 2), 1);
}
END_TEST

Suite *ru_utf8_suite(void)
{
    const ru_case cases[] = {
        {"utf8_valid", test_valid, 0},
        {"utf8_chars", test_chars, 0},
    };
    return ru_suite("utf8", cases, sizeof(cases) / sizeof(cases[0]));
}
