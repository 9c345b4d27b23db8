/*
 * cx_snap: the final state the checker compares the history with: the booking database
 * (reservations with their seats, performances, double-sold seats, chaos counters), the
 * payment gateway's list of payments and reserved's guard counters; the seat holds of
 * SPEC §9 (holds, hold_seats) when the schema has them. Everything is read
 * once, blocking, into arrays owned by the cx_snap (freed by cx_snap_free). Reservations
 * are sorted by id and payments by reference, for bsearch.
 */
#ifndef CX_SNAP_H
#define CX_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm_core.h"

typedef struct cx_res {
    int64_t id;
    int64_t perf;
    int64_t user;
    bool confirmed;    /* status CONFIRMED (else CANCELLED) */
    char *payment_id;  /* NULL when the column is NULL (owned) */
    char *payment_ref; /* payment_reference, NULL when NULL (owned) */
    int64_t *seats;    /* sorted ascending (owned) */
    size_t n_seats;
} cx_res;

typedef struct cx_perf {
    int64_t id;
    int64_t total;           /* total_capacity */
    int64_t remaining;       /* remaining_capacity */
    int64_t venue_seats;     /* seats of its venue */
    int64_t confirmed_seats; /* seats in CONFIRMED reservations */
} cx_perf;

typedef struct cx_dup {
    int64_t perf;
    int64_t seat;
    int64_t count; /* CONFIRMED reservations holding it (> 1) */
} cx_dup;

typedef struct cx_counter {
    int64_t id;
    int64_t value;
} cx_counter;

typedef struct cx_payment {
    char *id;        /* owned */
    char *status;    /* APPROVED | DECLINED | CANCELLED (owned) */
    char *reference; /* owned */
} cx_payment;

typedef struct cx_guard {
    char server[64];
    bool fetched; /* false: /metrics could not be read */
    char err[128];
    char detail[256]; /* "capacity=0 seat_unique=0 other=0" */
    uint64_t total;
} cx_guard;

typedef enum cx_hold_status {
    CX_HOLD_ACTIVE = 0, /* holding its seats until expires_at */
    CX_HOLD_BOOKED,     /* a booking took its seats */
    CX_HOLD_RELEASED,   /* DELETE /holds/{id} */
    CX_HOLD_EXPIRED,    /* the sweeper ended it */
    CX_HOLD_UNKNOWN,    /* a status this checker does not know */
} cx_hold_status;

typedef struct cx_hold {
    int64_t id, perf, user;
    cx_hold_status status;
    int64_t past_ms; /* how far past its expires_at the snapshot is (negative: before it) */
} cx_hold;

typedef struct cx_hold_seat {
    int64_t hold, perf, seat;
    bool active; /* the seat is held through this row */
} cx_hold_seat;

/* A seat in an active hold of one user and in a CONFIRMED reservation of another. */
typedef struct cx_held_sold {
    int64_t perf, seat, hold, holder, reservation, buyer;
} cx_held_sold;

typedef struct cx_snap {
    cx_res *res;
    size_t n_res;
    cx_perf *perfs;
    size_t n_perfs;
    cx_dup *dups;
    size_t n_dups;
    bool have_counters; /* the chaos_counters table exists */
    cx_counter *counters;
    size_t n_counters;
    bool have_payments; /* the payment list was read */
    cx_payment *payments;
    size_t n_payments;
    cx_guard *guards; /* one per --reserved server */
    size_t n_guards;
    bool have_holds; /* the holds tables exist */
    cx_hold *holds;  /* sorted by id */
    size_t n_holds;
    cx_hold_seat *hold_seats; /* sorted by (hold, seat) */
    size_t n_hold_seats;
    cx_held_sold *held_sold;
    size_t n_held_sold;
} cx_snap;

/* Reads the booking database (blocking libpq). CM_ERR with a reason when it cannot. */
cm_rc cx_snap_load_db(cx_snap *s, const char *conninfo, char *err, size_t errlen) CM_MUSTCHECK;
/* GET <url>/payments. CM_ERR with a reason when there is no 200 JSON list. */
cm_rc cx_snap_load_payments(cx_snap *s, const char *url, char *err, size_t errlen) CM_MUSTCHECK;
/* GET /metrics of each "h:p" in the comma-separated list and sums reserved_guard_* counters.
 * A server that does not answer is recorded as not fetched (the check reports n/a). */
void cx_snap_load_guards(cx_snap *s, const char *list);
void cx_snap_free(cx_snap *s);

/* The reservation with this id, or NULL. */
const cx_res *cx_snap_res(const cx_snap *s, int64_t id);
/* The hold with this id, or NULL. */
const cx_hold *cx_snap_hold(const cx_snap *s, int64_t id);

#endif
