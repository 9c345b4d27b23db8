/*
 * cm_hist: fixed-bucket latency histograms and their Prometheus text form, and the
 * log-linear quantile histogram of the benchmarks (see the header).
 * The structs are plain data owned by their embedder; no allocation.
 */
#include "cm_hist.h"

#include <stdio.h>
#include <string.h>

static const double hist_latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};

void cm_hist_init(cm_hist *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    if (n > CM_HIST_MAX_BUCKETS)
        n = CM_HIST_MAX_BUCKETS;
    memcpy(h->bounds, bounds, n * sizeof(*bounds));
    h->n = n;
}

void cm_hist_init_latency(cm_hist *h)
{
    cm_hist_init(h, hist_latency_bounds, CM_ARRAY_LEN(hist_latency_bounds));
}

void cm_hist_observe_us(cm_hist *h, uint64_t us)
{
    double secs = (double)us / 1e6;
    size_t i = 0;
    while (i < h->n && secs > h->bounds[i])
        i++;
    h->counts[i]++; /* i == n is the +Inf bucket */
    h->count++;
    h->sum += secs;
}

/* `name_bucket{labels,le="x"}`: the label set joins the user's labels and le. */
static void hist_bucket_line(cm_strbuf *out, const char *name, const char *labels, const char *le,
                             uint64_t cum)
{
    cm_strbuf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels,
                     labels[0] != '\0' ? "," : "", le, (unsigned long long)cum);
}

void cm_hist_format(const cm_hist *h, const char *name, const char *help, const char *labels,
                    cm_strbuf *out)
{
    uint64_t cum = 0;
    char le[32];

    if (labels == NULL)
        labels = "";
    if (help != NULL) {
        cm_strbuf_printf(out, "# HELP %s %s\n", name, help);
        cm_strbuf_printf(out, "# TYPE %s histogram\n", name);
    }
    for (size_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        snprintf(le, sizeof(le), "%g", h->bounds[i]);
        hist_bucket_line(out, name, labels, le, cum);
    }
    cum += h->counts[h->n];
    hist_bucket_line(out, name, labels, "+Inf", cum);
    if (labels[0] != '\0') {
        cm_strbuf_printf(out, "%s_sum{%s} %.9g\n", name, labels, h->sum);
        cm_strbuf_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
    } else {
        cm_strbuf_printf(out, "%s_sum %.9g\n", name, h->sum);
        cm_strbuf_printf(out, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

/* ---- cm_histq ---- */

/* Values below CM_HISTQ_SUB us have a bucket each; above, us in [2^e, 2^(e+1)) falls in
 * one of CM_HISTQ_SUB equal slices of that octave. */
static uint32_t histq_bucket(uint64_t us)
{
    if (us < CM_HISTQ_SUB)
        return (uint32_t)us;
    int e = 63 - __builtin_clzll(us); /* e >= CM_HISTQ_SUB_BITS */
    uint32_t sub = (uint32_t)(us >> (e - CM_HISTQ_SUB_BITS)) & (CM_HISTQ_SUB - 1);
    uint32_t i = (uint32_t)(e - CM_HISTQ_SUB_BITS + 1) * CM_HISTQ_SUB + sub;
    return i < CM_HISTQ_BUCKETS ? i : CM_HISTQ_BUCKETS - 1;
}

/* The middle of bucket i, in microseconds. */
static double histq_value(uint32_t i)
{
    if (i < CM_HISTQ_SUB)
        return i;
    int e = (int)(i / CM_HISTQ_SUB) - 1 + CM_HISTQ_SUB_BITS;
    double slice = (double)(1ull << (e - CM_HISTQ_SUB_BITS));
    return (double)(1ull << e) + (double)(i % CM_HISTQ_SUB) * slice + slice / 2;
}

void cm_histq_add(cm_histq *h, uint64_t us)
{
    h->b[histq_bucket(us)]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

double cm_histq_quantile_us(const cm_histq *h, double q)
{
    if (h->n == 0)
        return 0;
    double r = q * (double)h->n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++; /* ceil without libm */
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < CM_HISTQ_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double v = histq_value(i);
            return v < (double)h->max_us ? v : (double)h->max_us;
        }
    }
    return (double)h->max_us;
}
