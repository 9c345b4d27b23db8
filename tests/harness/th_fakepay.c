/*
 * th_fakepay: see th_fakepay.h.
 */
#include "th_fakepay.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TH_FAKEPAY_MAX_ARGS 32

static void start_argv(th_fakepay *s, char **extra, size_t n_extra)
{
    th_server_spawn(s, "fakepay", extra, n_extra);
    if (!th_server_wait_up(s, 15000)) {
        th_dump_log(s->log, 30);
        ck_abort_msg("fakepay did not start on port %d", s->port);
    }
}

void th_fakepay_start(th_fakepay *s, ...)
{
    char *extra[TH_FAKEPAY_MAX_ARGS];
    va_list ap;
    va_start(ap, s);
    size_t n = th_va_args(ap, extra, TH_FAKEPAY_MAX_ARGS);
    va_end(ap);
    start_argv(s, extra, n);
}

void th_fakepay_start_args(th_fakepay *s, const char *args)
{
    char copy[512], *extra[TH_FAKEPAY_MAX_ARGS];
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", args ? args : "");
    for (char *tok = strtok(copy, " "); tok && n < TH_FAKEPAY_MAX_ARGS; tok = strtok(NULL, " "))
        extra[n++] = tok;
    start_argv(s, extra, n);
}

void th_fakepay_stop_clean(th_fakepay *s)
{
    th_server_stop_clean(s, 5000);
}
