/*
 * fpt: the old names of the fakepay tests' HTTP client and Check main, kept only for
 * tests/chaos_tools/test_chaos_tools.c until it uses th_http.h and th_check.h itself
 * (its owner changes that file). New code: th_http.h, th_fakepay.h, th_check.h.
 */
#ifndef FPT_H
#define FPT_H

#include <stddef.h>

#include "th_check.h"
#include "th_http.h"

typedef th_http_resp fpt_resp;
typedef th_case fpt_case;

static inline void fpt_request(int port, const char *method, const char *path, const char *key,
                               const char *body, fpt_resp *r)
{
    th_http_request(port, method, path, key, body, r);
}

static inline long long fpt_int(const fpt_resp *r, const char *field)
{
    return th_http_int(r, field);
}

static inline void fpt_resp_free(fpt_resp *r)
{
    th_http_resp_free(r);
}

/* The arguments (--list, a case name) are read from /proc/self/cmdline. */
static inline int fpt_main(const char *suite, const fpt_case *cases, size_t n, double timeout_s)
{
    return th_check_main(suite, cases, n, timeout_s, 0, NULL);
}

#endif
