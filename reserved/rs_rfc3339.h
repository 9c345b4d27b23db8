/*
 * rs_rfc3339: which time texts reserved accepts (startsAt, the search's from and to, the
 * time inside a search cursor): the RFC 3339 shape
 * "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" whose UTC instant lies in years
 * 0001..9999. Why the range: every time is stored as a UTC instant and given back in UTC,
 * and outside those years that has no RFC 3339 form (to_char's "YYYY" of year 10000 is
 * five digits, of 1 BC "0001" without the era), so "9999-12-31T23:59:59-12:00" would be
 * stored as 10000-01-01T11:59:59Z and the cursor issued for that row rejected. Such an
 * input is refused (400), not clamped: a clamped time would be a different time.
 * PostgreSQL still checks the calendar (month 13, February 30: 22008); this keeps out
 * what it would accept but RFC 3339 cannot say ("today", "2026-12-01", "epoch").
 * Migration 070 keeps every other writer in the same range. Pure functions: nothing owned.
 */
#ifndef RS_RFC3339_H
#define RS_RFC3339_H

#include <stdbool.h>

/* Whether s has the shape above and its UTC instant (after PostgreSQL's rounding to
 * microseconds, and a leap second's roll-over) is in 0001-01-01T00:00:00Z ..
 * 9999-12-31T23:59:59.999999Z. */
bool rs_rfc3339_ok(const char *s);

#endif
