/*
 * cm_hist: a fixed-bucket latency histogram with Prometheus text output.
 * Buckets are upper bounds in seconds (le="..."), cumulative on output.
 */
#ifndef CM_HIST_H
#define CM_HIST_H

#include <stddef.h>
#include <stdint.h>
#include "cm_strbuf.h"

#define CM_HIST_MAX_BUCKETS 24

typedef struct cm_hist {
    double bounds[CM_HIST_MAX_BUCKETS];       /* ascending upper bounds in seconds */
    uint64_t counts[CM_HIST_MAX_BUCKETS + 1]; /* per bucket, last = +Inf */
    size_t n;
    uint64_t count;
    double sum; /* seconds */
} cm_hist;

/* Default latency buckets: 100us .. 10s. */
void cm_hist_init_latency(cm_hist *h);
void cm_hist_init(cm_hist *h, const double *bounds, size_t n);
void cm_hist_observe_us(cm_hist *h, uint64_t us);
/* Appends "# HELP/# TYPE" and the _bucket/_sum/_count lines. labels: "" or `master="x"`. */
void cm_hist_format(const cm_hist *h, const char *name, const char *help, const char *labels,
                    cm_strbuf *out);

#endif
