/*
 * rs_utf8: whether bytes are valid UTF-8 (RFC 3629: shortest form only, no surrogates,
 * nothing above U+10FFFF), the check PostgreSQL makes of every text parameter. Why here:
 * a header value goes to the database as text, and bytes PostgreSQL refuses there failed
 * the statement, which the client saw as 503 "retry" for a request no retry can mend;
 * checked first, they are the client's 400. Pure: nothing owned.
 */
#ifndef RS_UTF8_H
#define RS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the len bytes at s are valid UTF-8 without NUL. */
bool rs_utf8_valid(const char *s, size_t len);

/* Characters (code points) of the len bytes at s, valid UTF-8 (jansson's strings are, and
 * the database counts length() in characters): the bytes that are not continuations. */
size_t rs_utf8_chars(const char *s, size_t len);

#endif
