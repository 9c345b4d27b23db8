/*
 * rs_metrics: reserved's counters and histograms (one global: one process, one loop);
 * rendered on GET /metrics together with rs_http's per-route counters.
 */
#ifndef RS_METRICS_H
#define RS_METRICS_H

#include <stdint.h>
#include "cm_hist.h"
#include "cm_strbuf.h"

typedef struct rs_metrics {
    uint64_t bookings_confirmed;      /* 201 */
    uint64_t bookings_seat_taken;     /* 409 SEAT_TAKEN */
    uint64_t bookings_sold_out;       /* 409 SOLD_OUT */
    uint64_t bookings_declined;       /* 402 */
    uint64_t bookings_busy;           /* 503 BUSY (lock wait timed out) */
    uint64_t bookings_unavailable;    /* 503 UNAVAILABLE */
    uint64_t bookings_fence_rejected; /* fence check found a newer holder: rolled back */
    uint64_t bookings_lock_lost;      /* LOST push during a booking: rolled back */
    uint64_t bookings_idempotent_replays;
    uint64_t cancellations;
    uint64_t guard_capacity;    /* performances_capacity_guard fired (bug signal) */
    uint64_t guard_seat_unique; /* reservation_seats_one_confirmed fired (bug signal) */
    uint64_t guard_other;       /* any other CHECK constraint fired */
    uint64_t payments_approved;
    uint64_t payments_declined;
    uint64_t payments_failed;    /* unknown outcome (5xx, timeout) */
    uint64_t payments_cancelled; /* compensations done (rollback or reconciler) */
    uint64_t reconciler_runs;
    uint64_t reconciler_cancelled; /* orphans cancelled by the reconciler */
    uint64_t batches;              /* batches that got their lock and ran (rs_batch) */
    uint64_t batch_bookings;       /* bookings in those batches */
    cm_hist batch_size;            /* bookings per batch ("seconds" hold the count) */
    cm_hist booking_latency;       /* POST reservations: received -> answered */
    cm_hist lock_wait;             /* ACQUIRE sent -> granted (or db row lock wait) */
} rs_metrics;

extern rs_metrics rs_stats;

void rs_metrics_init(void);
/* Appends rs_stats plus DB pool gauges (in use, up, size) in Prometheus text. */
void rs_metrics_render(cm_strbuf *out);

#endif
