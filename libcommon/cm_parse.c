/*
 * cm_parse: strict number parsing (see the header). strtoull alone takes "-1" (as a huge
 * number), " 7" and "" (as 0): every function here checks the first character and the
 * end, and errno for overflow.
 */
#include "cm_parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool cm_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool cm_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    const char *digits = s != NULL && *s == '-' ? s + 1 : s;
    if (digits == NULL || *digits < '0' || *digits > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool cm_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (s == NULL || *s == '\0' || *s == ' ' || *s == '\t')
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

bool cm_parse_u64_pair(const char *s, char sep, uint64_t lo, uint64_t hi, uint64_t *a, uint64_t *b)
{
    char first[32];
    const char *mid = s != NULL ? strchr(s, sep) : NULL;
    if (mid == NULL || (size_t)(mid - s) >= sizeof(first))
        return false;
    memcpy(first, s, (size_t)(mid - s));
    first[mid - s] = '\0';
    uint64_t x, y;
    if (!cm_parse_u64(first, lo, hi, &x) || !cm_parse_u64(mid + 1, lo, hi, &y))
        return false;
    *a = x;
    *b = y;
    return true;
}

bool cm_parse_u64_list(const char *s, uint64_t lo, uint64_t hi, uint64_t **out, size_t *n)
{
    if (s == NULL || *s == '\0')
        return false;
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    uint64_t *v = calloc(cap, sizeof(*v));
    char *copy = strdup(s);
    size_t k = 0;
    bool ok = v != NULL && copy != NULL;
    for (char *item = copy; ok && item != NULL;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        ok = cm_parse_u64(item, lo, hi, &v[k++]);
        item = comma != NULL ? comma + 1 : NULL;
    }
    free(copy);
    if (!ok) {
        free(v);
        return false;
    }
    *out = v;
    *n = k;
    return true;
}
