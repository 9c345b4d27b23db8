/*
 * fp_http: fakepay's HTTP API (SPEC §7) on one evhttp server. Owns the evhttp
 * instance, the runtime knobs (decline rate, fail rate, latency) and the replies
 * held back by the latency knob (each on its own evtimer). Borrows the store.
 *
 *   POST /payments                 201 approved | 402 declined | 503 failed (fail rate)
 *   GET  /payments[?reference=R]   200 {"items":[payment]}
 *   GET  /payments/{id}            200 payment
 *   POST /payments/{id}/cancel     200 payment (idempotent) | 404 | 409 when declined
 *   GET  /healthz, GET /stats, GET|POST /admin/config (knobs; never delayed)
 *
 * Outcomes come from the process PRNG (cm_rand, seeded by main): two draws per new
 * payment (fail, then decline), none for a replay, so one seed gives one sequence.
 * A 503 from the fail rate is not recorded: the payment did not happen, and a retry
 * with the same Idempotency-Key gets a fresh decision. A replay returns the first
 * status code and the payment as it is now (so a cancelled one says CANCELLED).
 */
#ifndef FP_HTTP_H
#define FP_HTTP_H

#include <event2/event.h>
#include <stdint.h>

#include "cm_addr.h"
#include "cm_core.h"
#include "fp_store.h"

#define FP_BODY_MAX       (64 * 1024) /* larger bodies get 413 TOO_LARGE */
#define FP_LATENCY_MAX_MS 600000

typedef struct fp_knobs {
    double decline_rate; /* 0..1: share of new payments declined (402) */
    double fail_rate;    /* 0..1: share of new payments failed (503), drawn first */
    uint32_t latency_ms; /* every /payments reply is held back this long */
} fp_knobs;

typedef struct fp_http fp_http;

/* Binds listen on base; NULL (after logging why) when the address cannot be bound. */
fp_http *fp_http_new(struct event_base *base, const cm_addr *listen, fp_store *store,
                     const fp_knobs *knobs);
/* Graceful stop: closes the listening socket and sends every held-back reply now. */
void fp_http_stop(fp_http *h);
/* Frees the server, its connections and any reply still held back. NULL is fine. */
void fp_http_free(fp_http *h);

#endif
