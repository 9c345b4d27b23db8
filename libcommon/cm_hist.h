/*
 * cm_hist: the project's latency histograms, plain data owned by their embedder (no
 * allocation, nothing to free):
 *  - cm_hist: fixed buckets with Prometheus text output, for the daemons' /metrics.
 *    Buckets are upper bounds in seconds (le="..."), cumulative on output.
 *  - cm_histq: log-linear buckets for quantiles, for the benchmarks (bookbench,
 *    lockbench): 64 sub-buckets per power of two of microseconds, so any quantile is
 *    within 1.6% of the exact one, and the exact maximum. 32 KiB each.
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

#define CM_HISTQ_SUB_BITS 6
#define CM_HISTQ_SUB      (1u << CM_HISTQ_SUB_BITS)
#define CM_HISTQ_BUCKETS  (64 * CM_HISTQ_SUB)

typedef struct cm_histq {
    uint64_t b[CM_HISTQ_BUCKETS]; /* counts per bucket */
    uint64_t n;                   /* samples */
    uint64_t max_us;              /* exact largest sample */
} cm_histq;

/* Zero it (memset or = {0}) before the first add. */
void cm_histq_add(cm_histq *h, uint64_t us);
/* The q-quantile (0 < q <= 1) in microseconds: the middle of the bucket holding the
 * sample of rank ceil(q * n), never above the exact maximum; 0 without samples. */
double cm_histq_quantile_us(const cm_histq *h, double q);

#endif
