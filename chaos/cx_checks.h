/*
 * cx_checks: the safety and liveness checks of the chaos suite (issue 4 §3), as pure
 * functions of the history (cx_history) and the final state (cx_snap). Each check fills
 * one cx_result: PASS/FAIL, a one-line figure and a detail listing the first offenders.
 * A check whose input was not given (no payment list, no reserved metrics, no counter ops)
 * passes with an "n/a" figure; every other input can make it fail.
 */
#ifndef CX_CHECKS_H
#define CX_CHECKS_H

#include <stdbool.h>
#include <stdint.h>

#include "cm_strbuf.h"
#include "cx_history.h"
#include "cx_snap.h"

enum {
    CX_CHECK_DOUBLE_SALE = 0,
    CX_CHECK_CAPACITY,
    CX_CHECK_LOST_ACK,
    CX_CHECK_PAYMENTS,
    CX_CHECK_COUNTER,
    CX_CHECK_FENCES,
    CX_CHECK_GUARDS,
    CX_CHECK_LIVENESS,
    CX_CHECK_HOLDS_EXCLUSIVE, /* cx_checks_holds */
    CX_CHECK_HOLDS_EXPIRE,    /* cx_checks_holds */
    CX_CHECK_COUNT,
};

#define CX_MAX_KINDS 32

typedef struct cx_result {
    const char *name; /* no_double_sale, capacity, ... (static) */
    bool pass;
    char figure[256]; /* the headline numbers */
    cm_strbuf detail; /* the first offenders, "; "-separated (owned) */
    size_t notes;     /* offenders listed in detail */
    size_t omitted;   /* offenders not listed (past the cap) */
} cx_result;

/* Recovery time per fault kind, filled by the liveness check. */
typedef struct cx_recovery {
    char kind[32];
    size_t count;       /* faults of this kind */
    int64_t max_ms;     /* worst recovery among the faults that recovered */
    size_t unrecovered; /* faults with no ok booking after them */
} cx_recovery;

typedef struct cx_checks {
    cx_result r[CX_CHECK_COUNT];
    cx_recovery kinds[CX_MAX_KINDS];
    size_t n_kinds;
} cx_checks;

typedef struct cx_check_opts {
    int64_t recovery_bound_ms; /* liveness bound per fault */
    bool guards_given;         /* --reserved was given: the guard counters were fetched */
} cx_check_opts;

/* Runs every check; h and s are read only. */
void cx_checks_run(cx_checks *c, const cx_history *h, const cx_snap *s, const cx_check_opts *o);
bool cx_checks_all_pass(const cx_checks *c);
void cx_checks_free(cx_checks *c);

#endif
