/*
 * fp_store: fakepay's in-memory state. Owns every payment (an array indexed by the
 * number in its id "pay_<n>", so lookup by id is O(1)), the idempotency index
 * (Idempotency-Key -> payment) and the reference index (reference -> its payments,
 * oldest first). Nothing is ever deleted; the store is bounded by max_payments.
 * Pointers to payments handed out stay valid only until the next fp_store_add.
 */
#ifndef FP_STORE_H
#define FP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm_core.h"

#define FP_ID_MAX        32  /* "pay_" + 20 digits + NUL fits */
#define FP_KEY_MAX       255 /* longest Idempotency-Key accepted */
#define FP_REFERENCE_MAX 255 /* longest reference accepted */
#define FP_CURRENCY      "KRW"

typedef enum fp_status {
    FP_APPROVED = 0,
    FP_DECLINED = 1,
    FP_CANCELLED = 2,
} fp_status;
#define FP_STATUS_COUNT 3

typedef struct fp_payment {
    uint32_t seq;             /* the n in "pay_<n>", 1-based */
    fp_status status;         /* now */
    fp_status first_status;   /* the outcome the first POST got: what a replay returns */
    int64_t amount;           /* KRW, > 0 */
    char *reference;          /* owned */
    char *idem_key;           /* owned */
    uint64_t created_wall_ms; /* wall clock, for createdAt only */
    uint32_t next_same_ref;   /* seq of the next payment with this reference, 0 = none */
} fp_payment;

typedef struct fp_store fp_store;

/* What an Idempotency-Key means for a new POST /payments. */
typedef enum fp_key_match {
    FP_KEY_NEW = 0,      /* never seen: decide an outcome */
    FP_KEY_SAME = 1,     /* seen with the same amount and reference: replay *out */
    FP_KEY_MISMATCH = 2, /* seen with a different body: 422 */
} fp_key_match;

typedef enum fp_cancel_rc {
    FP_CANCEL_OK = 0,        /* now CANCELLED (or already was) */
    FP_CANCEL_NOT_FOUND = 1, /* no such id */
    FP_CANCEL_DECLINED = 2,  /* a declined payment has nothing to cancel */
} fp_cancel_rc;

/* max_payments >= 1. NULL on allocation failure. */
fp_store *fp_store_new(size_t max_payments);
void fp_store_free(fp_store *st);

size_t fp_store_count(const fp_store *st);
bool fp_store_full(const fp_store *st);
/* Payment counts by fp_status, indexed by the enum value. */
void fp_store_counts(const fp_store *st, size_t out[FP_STATUS_COUNT]);

/* Looks key up and compares the request with the stored one. */
fp_key_match fp_store_match_key(const fp_store *st, const char *key, int64_t amount,
                                const char *reference, const fp_payment **out);
/* Records a decided payment (APPROVED or DECLINED). CM_AGAIN when the store is full,
 * CM_ERR when out of memory; strings are copied. */
cm_rc fp_store_add(fp_store *st, fp_status status, int64_t amount, const char *reference,
                   const char *key, const fp_payment **out) CM_MUSTCHECK;
/* Looks a payment up by its id string ("pay_<n>" exactly); NULL when unknown. */
const fp_payment *fp_store_get(const fp_store *st, const char *id);
fp_cancel_rc fp_store_cancel(fp_store *st, const char *id, const fp_payment **out);

/* Iteration: every payment by seq (1..count), or the ones of one reference, oldest first. */
const fp_payment *fp_store_at(const fp_store *st, size_t seq);
const fp_payment *fp_store_first_ref(const fp_store *st, const char *reference);
const fp_payment *fp_store_next_ref(const fp_store *st, const fp_payment *p);

/* "pay_<seq>" into buf (FP_ID_MAX bytes); returns buf. */
const char *fp_payment_id(const fp_payment *p, char *buf, size_t buflen);
const char *fp_status_name(fp_status s);

#endif
