/*
 * fp_store: payments in one growing array (seq n lives at items[n - 1]) plus two
 * open-addressing string maps (linear probing, grown at half load) from an
 * Idempotency-Key and from a reference to a seq. Map keys are borrowed from the
 * payments, whose strings live until fp_store_free.
 */
#include "fp_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_time.h"

#define MAP_MIN_SLOTS 64

typedef struct map_slot {
    const char *key; /* NULL = empty; borrowed from a payment */
    uint32_t first;  /* seq */
    uint32_t last;   /* seq (reference map: the tail to append to) */
} map_slot;

typedef struct str_map {
    map_slot *slots;
    size_t cap; /* power of two */
    size_t used;
} str_map;

struct fp_store {
    fp_payment *items;
    size_t count;
    size_t cap;
    size_t max;
    size_t by_status[FP_STATUS_COUNT];
    str_map by_key;
    str_map by_ref;
};

/* FNV-1a: short keys, no adversary worth defending against in a test double. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static map_slot *map_find(const str_map *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->slots[i].key) {
        if (strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static map_slot *map_probe_empty(map_slot *slots, size_t cap, const char *key)
{
    size_t i = (size_t)hash_str(key) & (cap - 1);
    while (slots[i].key)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Makes room for one more key, so that the insert after it cannot fail. */
static cm_rc map_reserve(str_map *m)
{
    if ((m->used + 1) * 2 <= m->cap)
        return CM_OK;
    size_t ncap = m->cap ? m->cap * 2 : MAP_MIN_SLOTS;
    map_slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return CM_ERR;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key)
            *map_probe_empty(ns, ncap, m->slots[i].key) = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return CM_OK;
}

/* Inserts a key known to be absent, after map_reserve. */
static void map_insert(str_map *m, const char *key, uint32_t seq)
{
    map_slot *s = map_probe_empty(m->slots, m->cap, key);
    s->key = key;
    s->first = seq;
    s->last = seq;
    m->used++;
}

fp_store *fp_store_new(size_t max_payments)
{
    if (max_payments == 0 || max_payments > UINT32_MAX - 1)
        return NULL;
    fp_store *st = calloc(1, sizeof(*st));
    if (st)
        st->max = max_payments;
    return st;
}

void fp_store_free(fp_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->count; i++) {
        free(st->items[i].reference);
        free(st->items[i].idem_key);
    }
    free(st->items);
    free(st->by_key.slots);
    free(st->by_ref.slots);
    free(st);
}

size_t fp_store_count(const fp_store *st)
{
    return st->count;
}

bool fp_store_full(const fp_store *st)
{
    return st->count >= st->max;
}

void fp_store_counts(const fp_store *st, size_t out[FP_STATUS_COUNT])
{
    memcpy(out, st->by_status, sizeof(st->by_status));
}

const fp_payment *fp_store_at(const fp_store *st, size_t seq)
{
    return seq >= 1 && seq <= st->count ? &st->items[seq - 1] : NULL;
}

fp_key_match fp_store_match_key(const fp_store *st, const char *key, int64_t amount,
                                const char *reference, const fp_payment **out)
{
    const map_slot *s = map_find(&st->by_key, key);
    *out = NULL;
    if (!s)
        return FP_KEY_NEW;
    *out = &st->items[s->first - 1];
    if ((*out)->amount == amount && strcmp((*out)->reference, reference) == 0)
        return FP_KEY_SAME;
    return FP_KEY_MISMATCH;
}

cm_rc fp_store_add(fp_store *st, fp_status status, int64_t amount, const char *reference,
                   const char *key, const fp_payment **out)
{
    fp_payment *p;
    *out = NULL;
    if (st->count >= st->max)
        return CM_AGAIN;
    if (st->count == st->cap) {
        size_t ncap = st->cap ? CM_MIN(st->cap * 2, st->max) : CM_MIN((size_t)1024, st->max);
        fp_payment *ni = realloc(st->items, ncap * sizeof(*ni));
        if (!ni)
            return CM_ERR;
        st->items = ni;
        st->cap = ncap;
    }
    /* Every allocation happens before the first change, so a failure leaves no trace. */
    if (map_reserve(&st->by_key) != CM_OK || map_reserve(&st->by_ref) != CM_OK)
        return CM_ERR;
    p = &st->items[st->count];
    memset(p, 0, sizeof(*p));
    p->reference = strdup(reference);
    p->idem_key = strdup(key);
    if (!p->reference || !p->idem_key) {
        free(p->reference);
        free(p->idem_key);
        return CM_ERR;
    }
    p->seq = (uint32_t)st->count + 1;
    p->status = status;
    p->first_status = status;
    p->amount = amount;
    p->created_wall_ms = cm_wall_ms();
    map_insert(&st->by_key, p->idem_key, p->seq);
    map_slot *r = map_find(&st->by_ref, p->reference);
    if (r) {
        st->items[r->last - 1].next_same_ref = p->seq;
        r->last = p->seq;
    } else {
        map_insert(&st->by_ref, p->reference, p->seq);
    }
    st->count++;
    st->by_status[status]++;
    *out = p;
    return CM_OK;
}

/* Only the canonical spelling "pay_<n>" (no sign, no leading zero) names a payment. */
static fp_payment *store_lookup(const fp_store *st, const char *id)
{
    uint64_t n = 0;
    const char *d;
    if (strncmp(id, "pay_", 4) != 0)
        return NULL;
    d = id + 4;
    if (*d < '1' || *d > '9')
        return NULL;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || n > UINT32_MAX)
            return NULL;
        n = n * 10 + (uint64_t)(*d - '0');
    }
    return n >= 1 && n <= st->count ? &st->items[n - 1] : NULL;
}

const fp_payment *fp_store_get(const fp_store *st, const char *id)
{
    return store_lookup(st, id);
}

fp_cancel_rc fp_store_cancel(fp_store *st, const char *id, const fp_payment **out)
{
    fp_payment *p = store_lookup(st, id);
    *out = p;
    if (!p)
        return FP_CANCEL_NOT_FOUND;
    if (p->status == FP_DECLINED)
        return FP_CANCEL_DECLINED;
    if (p->status == FP_APPROVED) {
        st->by_status[FP_APPROVED]--;
        st->by_status[FP_CANCELLED]++;
        p->status = FP_CANCELLED;
    }
    return FP_CANCEL_OK;
}

const fp_payment *fp_store_first_ref(const fp_store *st, const char *reference)
{
    const map_slot *s = map_find(&st->by_ref, reference);
    return s ? &st->items[s->first - 1] : NULL;
}

const fp_payment *fp_store_next_ref(const fp_store *st, const fp_payment *p)
{
    return p->next_same_ref ? &st->items[p->next_same_ref - 1] : NULL;
}

const char *fp_payment_id(const fp_payment *p, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "pay_%u", (unsigned)p->seq);
    return buf;
}

const char *fp_status_name(fp_status s)
{
    switch (s) {
    case FP_APPROVED:
        return "APPROVED";
    case FP_DECLINED:
        return "DECLINED";
    case FP_CANCELLED:
        return "CANCELLED";
    }
    return "UNKNOWN";
}
