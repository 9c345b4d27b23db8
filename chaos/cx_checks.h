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

/* ---- The lock-history checks (cx_checks_locks.c, issue 15 §3) ----
 * Per resource, over every lock history given (--locks): a holder is one grant (src, sess,
 * res, fence) and its interval runs from its grant to the earliest of its release, its LOST
 * and its last local deadline (the lost line's deadline, when it has one: the deadline that
 * ended it; a holder whose process a kill_* fault killed ends at the kill). locks_exclusive:
 * no two intervals overlap; locks_fence_order: fences strictly increase in grant order;
 * locks_lost_first: a holder that neither released nor overlapped the next grant was told
 * LOST before it, or its own deadline ended it before it (its lost line says so: a process
 * that was stopped is told when it runs again). What happens inside a by-design window (a
 * fault with "breaks_redlock": from its start to its end + CX_LOCK_WINDOW_TAIL_MS) is
 * expected: listed and counted, never a failure. A pause of a holder's process (Kleppmann's
 * paused client) is no excuse: the client's deadline, bounded by its session's timeout, ends
 * before lockd can hand the lock on (docs/protocol.md "Lost locks"). */
enum {
    CX_LOCK_CHECK_EXCLUSIVE = 0,
    CX_LOCK_CHECK_FENCE_ORDER,
    CX_LOCK_CHECK_LOST_FIRST,
    CX_LOCK_CHECK_COUNT,
};

#define CX_LOCK_WINDOW_TAIL_MS 5000 /* the longest lease: an overlap may last this past a fault */
#define CX_LOCK_KILL_SLACK_MS  100  /* a kill's recorded start may trail the death by this */
#define CX_LOCK_EXPECTED_MAX   64   /* expected findings listed one by one (the rest counted) */

/* A finding inside a by-design window. */
typedef struct cx_lock_expected {
    const char *check; /* locks_exclusive, ... (static) */
    char why[128];     /* "by design: <kind> on <target>" */
    char res[64];
    char first[96], second[96]; /* "src sess fence N" of the two holders */
    int64_t at_us;              /* when it began (CLOCK_MONOTONIC) */
    int64_t len_us;             /* how long the two held at once (0: not an overlap) */
} cx_lock_expected;

typedef struct cx_lock_checks {
    cx_result r[CX_LOCK_CHECK_COUNT];
    bool given;       /* --locks was given */
    size_t events;    /* lines read */
    size_t grants;    /* holders checked */
    size_t resources; /* distinct resources */
    size_t killed;    /* holders ended by a kill fault */
    size_t overlaps, overlaps_expected, regressions, regressions_expected;
    size_t late_lost, late_lost_expected, lost_checked; /* lost_checked: holders it applies to */
    size_t lost_by_deadline;    /* of lost_checked: told after the next grant, ended before it by
                                   their own deadline (a stopped process) */
    cx_lock_expected *expected; /* [n_expected] (owned) */
    size_t n_expected, expected_omitted;
} cx_lock_checks;

typedef struct cx_lock_check_opts {
    bool given;       /* --locks */
    bool have_epoch;  /* --epoch-ms: faults.jsonl's ms are since this CLOCK_MONOTONIC ms */
    int64_t epoch_ms; /* (without it no fault window can be placed: none is) */
} cx_lock_check_opts;

/* Runs the three lock checks on h's lock events and faults; c (the other checks, already
 * run) tells whether the bookings stayed safe where overlaps were expected. */
void cx_checks_locks_run(cx_lock_checks *lc, const cx_history *h, const cx_checks *c,
                         const cx_lock_check_opts *o);
bool cx_checks_locks_pass(const cx_lock_checks *lc);
void cx_checks_locks_free(cx_lock_checks *lc);

/* Runs every check; h and s are read only. */
void cx_checks_run(cx_checks *c, const cx_history *h, const cx_snap *s, const cx_check_opts *o);
bool cx_checks_all_pass(const cx_checks *c);
void cx_checks_free(cx_checks *c);

#endif
