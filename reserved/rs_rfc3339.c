/*
 * rs_rfc3339: the RFC 3339 input check (contract in rs_rfc3339.h). The range is checked on
 * the UTC instant in whole seconds: the offset is whole minutes and the bounds whole
 * days, so the fraction matters only when PostgreSQL would round it up to a whole second.
 */
#include "rs_rfc3339.h"

#include <stddef.h>
#include <stdint.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* n decimal digits at s into *out. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from a fixed origin to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil), shifted 400 years so that every year 0..9999 divides as a positive
 * number. Only differences are used. */
static int64_t civil_days(int64_t y, int64_t m, int64_t d)
{
    y += 400 - (m <= 2);
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy;
}

/* Whether the fraction (its digits from f, n of them) rounds up to a whole second at
 * microseconds: six nines and a seventh digit of 5 or more (PostgreSQL rounds). */
static bool fraction_carries(const char *f, size_t n)
{
    if (n <= 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (f[i] != '9')
            return false;
    return f[6] >= '5';
}

bool rs_rfc3339_ok(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    const char *p = s + 19;
    bool carry = false;
    if (*p == '.') {
        const char *f = ++p;
        while (is_digit(*p))
            p++;
        if (p == f)
            return false;
        carry = fraction_carries(f, (size_t)(p - f));
    }
    int off_min = 0;
    if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
        off_min = 0;
    } else {
        int oh, om;
        if ((p[0] != '+' && p[0] != '-') || !digits(p + 1, 2, &oh) || p[3] != ':' ||
            !digits(p + 4, 2, &om) || p[6] != '\0')
            return false;
        off_min = (oh * 60 + om) * (p[0] == '-' ? -1 : 1);
    }
    /* hour 24 and second 60 roll over as PostgreSQL rolls them; an impossible month or
     * day gives some instant, and PostgreSQL refuses the text anyway */
    int64_t utc = ((civil_days(y, mo, d) * 24 + h) * 60 + mi - off_min) * 60 + sec + carry;
    int64_t lo = civil_days(1, 1, 1) * 86400;
    int64_t hi = civil_days(10000, 1, 1) * 86400;
    return utc >= lo && utc < hi;
}
