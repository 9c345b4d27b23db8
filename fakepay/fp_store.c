/*
 * fp_store: payments in one growing array (seq n lives at items[n - 1]) plus three
 * cm_hash string maps to a seq: Idempotency-Key -> its payment, reference -> the first
 * and -> the last payment with it (the tail a new one is chained to). A seq is stored as
 * the map's value (uintptr_t, never 0), not a pointer, because the array moves when it
 * grows. Map keys are borrowed from the payments, whose strings live until
 * fp_store_free.
 */
#include "fp_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_hash.h"
#include "cm_time.h"

struct fp_store {
    fp_payment *items;
    size_t count;
    size_t cap;
    size_t max;
    size_t by_status[FP_STATUS_COUNT];
    cm_hash *by_key;    /* Idempotency-Key -> seq */
    cm_hash *ref_first; /* reference -> seq of its first payment */
    cm_hash *ref_last;  /* reference -> seq of its last payment */
};

#define SEQ_VALUE(seq) ((void *)(uintptr_t)(seq))

/* key -> seq, after cm_hash_reserve made room: cannot fail (a failure is a bug). */
static void map_put(cm_hash *m, const char *key, uint32_t seq)
{
    if (cm_hash_put_str(m, key, SEQ_VALUE(seq)) != CM_OK)
        abort();
}

/* The seq a map holds for key, 0 when none. */
static uint32_t map_seq(const cm_hash *m, const char *key)
{
    return (uint32_t)(uintptr_t)cm_hash_get_str(m, key);
}

fp_store *fp_store_new(size_t max_payments)
{
    if (max_payments == 0 || max_payments > UINT32_MAX - 1)
        return NULL;
    fp_store *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->max = max_payments;
    st->by_key = cm_hash_new(CM_HASH_STR);
    st->ref_first = cm_hash_new(CM_HASH_STR);
    st->ref_last = cm_hash_new(CM_HASH_STR);
    if (!st->by_key || !st->ref_first || !st->ref_last) {
        fp_store_free(st);
        return NULL;
    }
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
    cm_hash_free(st->by_key);
    cm_hash_free(st->ref_first);
    cm_hash_free(st->ref_last);
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
    uint32_t seq = map_seq(st->by_key, key);
    *out = NULL;
    if (seq == 0)
        return FP_KEY_NEW;
    *out = &st->items[seq - 1];
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
    if (cm_hash_reserve(st->by_key, 1) != CM_OK || cm_hash_reserve(st->ref_first, 1) != CM_OK ||
        cm_hash_reserve(st->ref_last, 1) != CM_OK)
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
    uint32_t last = map_seq(st->ref_last, p->reference);
    if (last != 0)
        st->items[last - 1].next_same_ref = p->seq;
    else
        map_put(st->ref_first, p->reference, p->seq);
    map_put(st->ref_last, p->reference, p->seq);
    map_put(st->by_key, p->idem_key, p->seq);
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
    uint32_t seq = map_seq(st->ref_first, reference);
    return seq != 0 ? &st->items[seq - 1] : NULL;
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
