/*
 * rs_ratelimit: token buckets in a cm_hash (key -> bucket) plus a binary min-heap of the
 * buckets ordered by the time each is full again (contract in rs_ratelimit.h).
 *
 * Why a heap and not an LRU list: the bucket to forget first is the one that is full (or
 * nearest to full), and that is not always the least recently used one: a key that
 * emptied its bucket a while ago is still owed its wait, while a key that took one token
 * a moment ago may already be full again. The heap's top is always the best victim.
 */
#include "rs_ratelimit.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cm_hash.h"
#include "cm_log.h"
#include "cm_strbuf.h"

#define RATE_ONE        1000000000ull /* one token, in the unit the buckets count in */
#define RATE_MAX        1e9           /* per_s and burst at most: burst * RATE_ONE fits */
#define RATE_SWEEP_STEP 2 /* full buckets dropped per take: more than one take can add */

typedef struct rate_bucket {
    uint64_t level;   /* billionths of a token at last_ms */
    uint64_t last_ms; /* when level was computed */
    uint64_t full_ms; /* when level reaches burst (the heap's order) */
    size_t heap;      /* index in r->heap */
    char key[];       /* copy of the key; the table's key points here */
} rate_bucket;

struct rs_rate {
    uint64_t rate;    /* billionths of a token per ms; 0: no limit */
    uint64_t burst;   /* billionths of a token */
    uint64_t fill_ms; /* empty to full */
    size_t max_keys;
    cm_hash *keys;      /* key -> rate_bucket */
    rate_bucket **heap; /* cap slots (grown up to max_keys); heap[0] is full soonest */
    size_t cap;
    size_t n; /* buckets */
    rs_rate_stats stats;
};

static uint64_t div_ceil(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

rs_rate *rs_rate_new(const rs_rate_opts *o)
{
    bool limit = o->per_s > 0;
    if (!(o->per_s >= 0 && o->per_s <= RATE_MAX) || /* also refuses NaN */
        (limit && !(o->burst >= 1 && o->burst <= RATE_MAX && o->max_keys >= 1))) {
        log_error("rate limit: bad options (per_s %g, burst %g, max_keys %zu)", o->per_s, o->burst,
                  o->max_keys);
        return NULL;
    }
    rs_rate *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (!limit)
        return r;
    r->rate = (uint64_t)(o->per_s * (double)(RATE_ONE / 1000) + 0.5);
    r->burst = (uint64_t)(o->burst * (double)RATE_ONE + 0.5);
    if (r->rate == 0) {
        log_error("rate limit: per_s %g is below one token in 1000 s", o->per_s);
        free(r);
        return NULL;
    }
    r->fill_ms = div_ceil(r->burst, r->rate);
    r->max_keys = o->max_keys;
    r->keys = cm_hash_new(CM_HASH_STR);
    if (r->keys == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

/* ---- the heap ---- */

static void heap_set(rs_rate *r, size_t i, rate_bucket *b)
{
    r->heap[i] = b;
    b->heap = i;
}

static void heap_up(rs_rate *r, size_t i)
{
    rate_bucket *b = r->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (r->heap[parent]->full_ms <= b->full_ms)
            break;
        heap_set(r, i, r->heap[parent]);
        i = parent;
    }
    heap_set(r, i, b);
}

static void heap_down(rs_rate *r, size_t i)
{
    rate_bucket *b = r->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->n)
            break;
        if (c + 1 < r->n && r->heap[c + 1]->full_ms < r->heap[c]->full_ms)
            c++;
        if (b->full_ms <= r->heap[c]->full_ms)
            break;
        heap_set(r, i, r->heap[c]);
        i = c;
    }
    heap_set(r, i, b);
}

/* b's full_ms changed: back to its place. */
static void heap_fix(rs_rate *r, rate_bucket *b)
{
    heap_up(r, b->heap);
    heap_down(r, b->heap);
}

/* Forgets the bucket full soonest (the heap's top). */
static void drop_top(rs_rate *r, uint64_t now_ms)
{
    assert(r->n > 0);
    rate_bucket *b = r->heap[0];
    if (b->full_ms <= now_ms) {
        r->stats.expired++;
    } else {
        r->stats.evictions++;
        log_debug("rate limit: table full (%zu keys), forgot a bucket %llu ms before it was full",
                  r->n, (unsigned long long)(b->full_ms - now_ms));
    }
    void *gone = cm_hash_del_str(r->keys, b->key);
    assert(gone == b);
    CM_UNUSED(gone);
    r->n--;
    if (r->n > 0) {
        heap_set(r, 0, r->heap[r->n]);
        heap_down(r, 0);
    }
    free(b);
}

/* ---- buckets ---- */

/* Brings b's level to now_ms (a clock that went back adds nothing). */
static void refill(const rs_rate *r, rate_bucket *b, uint64_t now_ms)
{
    if (now_ms <= b->last_ms)
        return;
    uint64_t elapsed = now_ms - b->last_ms;
    /* elapsed < fill_ms keeps elapsed * rate below burst + rate: no overflow */
    if (elapsed >= r->fill_ms)
        b->level = r->burst;
    else
        b->level = CM_MIN(r->burst, b->level + elapsed * r->rate);
    b->last_ms = now_ms;
}

static rate_bucket *bucket_new(rs_rate *r, const char *key, uint64_t now_ms)
{
    if (r->n == r->max_keys)
        drop_top(r, now_ms);
    if (r->n == r->cap) {
        size_t cap = CM_MIN(r->max_keys, CM_MAX((size_t)64, 2 * r->cap));
        rate_bucket **heap = realloc(r->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return NULL;
        r->heap = heap;
        r->cap = cap;
    }
    size_t len = strlen(key);
    rate_bucket *b = malloc(sizeof(*b) + len + 1);
    if (b == NULL)
        return NULL;
    memcpy(b->key, key, len + 1);
    b->level = r->burst;
    b->last_ms = now_ms;
    b->full_ms = now_ms;
    if (cm_hash_put_str(r->keys, b->key, b) != CM_OK) {
        free(b);
        return NULL;
    }
    heap_set(r, r->n++, b);
    heap_up(r, b->heap);
    return b;
}

uint64_t rs_rate_take(rs_rate *r, const char *key, uint64_t now_ms)
{
    if (r->rate == 0)
        return 0;
    /* Sweep on the way: buckets full again are the same as none. */
    for (int i = 0; i < RATE_SWEEP_STEP && r->n > 0 && r->heap[0]->full_ms <= now_ms; i++)
        drop_top(r, now_ms);
    rate_bucket *b = cm_hash_get_str(r->keys, key);
    if (b == NULL) {
        b = bucket_new(r, key, now_ms);
        if (b == NULL) {
            log_warn("rate limit: out of memory for a new key: allowed");
            return 0;
        }
    }
    refill(r, b, now_ms);
    uint64_t wait = 0;
    if (b->level >= RATE_ONE) {
        b->level -= RATE_ONE;
    } else {
        wait = div_ceil(RATE_ONE - b->level, r->rate);
        r->stats.limited++;
    }
    b->full_ms = b->last_ms + div_ceil(r->burst - b->level, r->rate);
    heap_fix(r, b);
    return wait;
}

size_t rs_rate_count(const rs_rate *r)
{
    return r->n;
}

void rs_rate_free(rs_rate *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->heap[i]);
    cm_hash_free(r->keys);
    free(r->heap);
    free(r);
}

rs_rate_stats rs_rate_get_stats(const rs_rate *r)
{
    return r->stats;
}

typedef struct rate_family {
    const char *name;
    const char *type;
    const char *help;
} rate_family;

static uint64_t family_value(const rs_rate *r, size_t f)
{
    switch (f) {
    case 0:
        return r->stats.limited;
    case 1:
        return r->n;
    default:
        return r->stats.evictions;
    }
}

void rs_rate_metrics_all(const rs_rate *const *rates, const char *const *names, size_t n,
                         struct cm_strbuf *out)
{
    static const rate_family families[] = {
        {"reserved_rate_limited_total", "counter", "requests refused by a rate limit (429)"},
        {"reserved_rate_keys", "gauge", "rate limit buckets held"},
        {"reserved_rate_evictions_total", "counter",
         "rate limit buckets forgotten before they were full (table full)"},
    };
    for (size_t f = 0; f < CM_ARRAY_LEN(families); f++) {
        cm_strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                         families[f].name, families[f].type);
        for (size_t i = 0; i < n; i++) {
            if (rates[i] != NULL)
                cm_strbuf_printf(out, "%s{bucket=\"%s\"} %llu\n", families[f].name, names[i],
                                 (unsigned long long)family_value(rates[i], f));
        }
    }
}

void rs_rate_metrics(const rs_rate *r, const char *name, struct cm_strbuf *out)
{
    rs_rate_metrics_all(&r, &name, 1, out);
}
