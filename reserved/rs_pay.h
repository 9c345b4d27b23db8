/*
 * rs_pay: the payment gateway client (SPEC §7) on libcommon's HTTP client (cm_httpc),
 * used by the booking pipeline and by the reconciler that cancels payments a crash left
 * behind (issue 3 §3).
 * Every call is asynchronous; callbacks run exactly once from the loop.
 */
#ifndef RS_PAY_H
#define RS_PAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
typedef struct rs_pay rs_pay;

typedef enum rs_pay_outcome {
    RS_PAY_APPROVED,  /* 201: payment_id set */
    RS_PAY_DECLINED,  /* 402 */
    RS_PAY_CANCELLED, /* cancel: 200 */
    RS_PAY_NOT_FOUND, /* lookup: no payment with that reference */
    RS_PAY_UNKNOWN,   /* 5xx, timeout, connection error: the outcome is not known */
} rs_pay_outcome;

typedef void (*rs_pay_cb)(void *arg, rs_pay_outcome outcome, const char *payment_id);

/* The longest payment id kept, in bytes: every buffer that holds one is RS_PAY_ID_MAX + 1
 * bytes (rs_bk's, rs_reconcile's). A gateway answer whose id is longer is a gateway
 * error, never a truncated id (whose refund would cancel nothing): a charge's outcome is
 * then RS_PAY_UNKNOWN (compensated by its reference, as a charge that got no answer), a
 * lookup's RS_PAY_UNKNOWN too (its payment cannot be named to cancel it); a cancel's id
 * is not used. 63: what every buffer held before the bound was checked. */
#define RS_PAY_ID_MAX 63

/* Which call an answer is to (rs_pay_parse). */
typedef enum rs_pay_call { RS_PAY_CALL_CHARGE, RS_PAY_CALL_CANCEL, RS_PAY_CALL_LOOKUP } rs_pay_call;

/* The outcome of the gateway's answer to call: HTTP status (0: no answer) and body (len
 * bytes, may be NULL). The payment id, when the outcome has one, into id (idlen >=
 * RS_PAY_ID_MAX + 1), else "". Pure: the tests feed it answers fakepay never gives. */
rs_pay_outcome rs_pay_parse(rs_pay_call call, int status, const char *body, size_t len, char *id,
                            size_t idlen);

/* Whether url is one rs_pay_new takes: http://host[:port][/path]. When not, why says so. */
bool rs_pay_url_ok(const char *url, char *why, size_t whylen);
rs_pay *rs_pay_new(struct event_base *base, const char *url, uint32_t timeout_ms) CM_MUSTCHECK;
void rs_pay_free(rs_pay *p);
/* POST /payments with Idempotency-Key = reference (a retry with the same reference is safe). */
cm_rc rs_pay_charge(rs_pay *p, const char *reference, int64_t amount, rs_pay_cb cb,
                    void *arg) CM_MUSTCHECK;
/* POST /payments/{id}/cancel (idempotent). */
cm_rc rs_pay_cancel(rs_pay *p, const char *payment_id, rs_pay_cb cb, void *arg) CM_MUSTCHECK;
/* GET /payments?reference=R: APPROVED/CANCELLED/DECLINED with its id, or NOT_FOUND. */
cm_rc rs_pay_lookup(rs_pay *p, const char *reference, rs_pay_cb cb, void *arg) CM_MUSTCHECK;

#endif
