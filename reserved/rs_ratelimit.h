/*
 * rs_ratelimit: token buckets per key (a token's hash, a client IP), one table per use
 * (SPEC §6a: limits.rate_per_token, limits.rate_per_ip), in bounded memory.
 *
 * A bucket holds at most `burst` tokens and gains `per_s` tokens a second; each request
 * takes one. A new key starts full. A bucket that has refilled completely is the same as
 * no bucket, so the table forgets it: a few such buckets are dropped on every take, and
 * when the table holds max_keys buckets and a new key comes, the bucket that is full
 * soonest goes (a full one if any: nothing is lost; otherwise an eviction, counted, that
 * lets that key start again full).
 *
 * Tokens are counted in integers (billionths of a token) and the refill is computed from
 * the elapsed milliseconds, so no rounding adds up over many takes.
 *
 * Ownership: the table owns its buckets and their copies of the keys; the key passed to
 * rs_rate_take is only read during the call. Not thread-safe: one table belongs to one
 * event loop.
 */
#ifndef RS_RATELIMIT_H
#define RS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "cm_core.h"

struct cm_strbuf;

typedef struct rs_rate rs_rate;

typedef struct rs_rate_opts {
    double per_s;    /* tokens a second, 0.000001 .. 1e9; 0: no limit (take always passes,
                        nothing is stored) */
    double burst;    /* bucket size in tokens, 1 .. 1e9 (ignored when per_s is 0) */
    size_t max_keys; /* buckets kept at most, >= 1 (ignored when per_s is 0) */
} rs_rate_opts;

/* NULL on bad options (see rs_rate_opts) or out of memory. */
rs_rate *rs_rate_new(const rs_rate_opts *o) CM_MUSTCHECK;

/* Takes one token of key's bucket at now_ms (monotonic). 0: allowed. Else refused: the ms
 * until a token is there (the caller sends Retry-After: ceil(ms/1000), at least 1). A new
 * key starts full. Out of memory for a new key's bucket: allowed (a client is not refused
 * for the server's trouble), nothing stored. */
uint64_t rs_rate_take(rs_rate *r, const char *key, uint64_t now_ms);

/* Buckets held (<= max_keys). */
size_t rs_rate_count(const rs_rate *r);

typedef struct rs_rate_stats {
    uint64_t limited;   /* takes refused */
    uint64_t evictions; /* buckets dropped before they were full (table full of busy keys) */
    uint64_t expired;   /* full buckets dropped (nothing lost) */
} rs_rate_stats;
rs_rate_stats rs_rate_get_stats(const rs_rate *r);

/* NULL is fine. */
void rs_rate_free(rs_rate *r);

/* Prometheus text of one table: reserved_rate_limited_total{bucket="<name>"},
 * reserved_rate_keys{bucket=...}, reserved_rate_evictions_total{bucket=...}, each with its
 * HELP/TYPE lines. name: "token" | "ip". For several tables on one page use
 * rs_rate_metrics_all: Prometheus wants each family's lines together, HELP/TYPE once. */
void rs_rate_metrics(const rs_rate *r, const char *name, struct cm_strbuf *out);
/* The same for n tables, family by family; rates[i] may be NULL (skipped). */
void rs_rate_metrics_all(const rs_rate *const *rates, const char *const *names, size_t n,
                         struct cm_strbuf *out);

#endif
