/*
 * cx_snap: the final state the checker compares the history with: the booking database
 * (reservations with their seats, performances, double-sold seats, chaos counters), the
 * payment gateway's list of payments and reserved's guard counters. Everything is read
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

#endif
