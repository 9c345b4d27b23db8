/*
 * cx_history: reads the chaos history (history.jsonl: one "op" record per line, written by
 * chaos_load) and the fault log (faults.jsonl, written by chaos/run) into plain arrays.
 * The arrays and every string in them belong to the cx_history; cx_history_free frees all.
 * Lines that are not JSON objects, or records of an unknown type, are counted in bad_lines
 * (a truncated last line after a kill is normal and must not stop the checker).
 * Lock histories (cm_lockhist's lines, from reserved and chaos_load's lock workload) load
 * into lock_events with cx_history_load_locks; their strings are interned in strs.
 */
#ifndef CX_HISTORY_H
#define CX_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm_core.h"

typedef enum cx_kind {
    CX_OP_BOOK = 0,
    CX_OP_CANCEL,
    CX_OP_READ_SEATS,
    CX_OP_COUNTER_INCR,
    CX_OP_HOLD,    /* POST /performances/{id}/holds (SPEC §9) */
    CX_OP_RELEASE, /* DELETE /holds/{id} */
    CX_OP_OTHER,
} cx_kind;

typedef enum cx_outcome {
    CX_OK = 0,  /* 2xx answer */
    CX_FAIL,    /* a definite error answer */
    CX_UNKNOWN, /* no answer: the effect may or may not have happened */
} cx_outcome;

typedef enum cx_write {
    CX_WRITE_NONE = 0, /* no write attempted (lock not acquired, read failed) */
    CX_WRITE_APPLIED,  /* the fenced UPDATE changed one row */
    CX_WRITE_REJECTED, /* the fence refused it: a stale holder */
    CX_WRITE_ERROR,    /* the UPDATE failed or its answer was lost: may or may not have applied */
} cx_write;

typedef struct cx_op {
    int64_t id;
    int64_t client;
    cx_kind kind;
    cx_outcome outcome;
    int64_t start_ms;
    int64_t end_ms;
    int status;     /* HTTP status, 0 when no answer */
    int64_t perf;   /* book, hold, release */
    int64_t user;   /* book, hold (its user, from the 201), release */
    int64_t *seats; /* book, hold, release: sorted ascending (owned) */
    size_t n_seats;
    int64_t reservation; /* cancel target, or the id a 201 returned; 0 when absent */
    char *payment;       /* paymentId of a 201, NULL when absent (owned) */
    char code[32];       /* error code of the body, "" when none */
    char server[64];
    int64_t hold;       /* hold: the id a 201 returned; release and book by holdId: the hold */
    int64_t expires_ms; /* hold (201): its expiresAt on the run's clock */
    int64_t counter;    /* counter_incr */
    uint64_t fence;     /* counter_incr: 0 when no lock was granted */
    bool has_read;      /* counter_incr: "read" present: its fenced read claimed the counter */
    bool lost;          /* counter_incr: the client saw its lock lost during the op */
    cx_write write;
} cx_op;

typedef struct cx_fault {
    char kind[32];
    char target[64];
    int64_t start_ms;
    int64_t end_ms;
    char note[160];
    bool breaks_redlock; /* "breaks_redlock": true: lock overlaps are expected in its window */
} cx_fault;

typedef enum cx_lock_ev {
    CX_LK_GRANT = 0, /* the client got the lock */
    CX_LK_RENEW,     /* its local deadline moved */
    CX_LK_RELEASE,   /* the client gave it back */
    CX_LK_LOST,      /* the client was told (or decided) it is gone */
} cx_lock_ev;

/* One line of a lock history; strings are indexes into cx_history.strs. */
typedef struct cx_lock_event {
    uint32_t src, res, sess, reason;
    cx_lock_ev ev;
    uint64_t fence;
    int64_t t_us;        /* CLOCK_MONOTONIC at the client */
    int64_t deadline_us; /* grant, renew: the client's local deadline; 0 otherwise */
    uint32_t file;       /* which history (order of loading), for the order of its lines */
    uint32_t line;
} cx_lock_event;

typedef struct cx_history {
    cx_op *ops;
    size_t n_ops;
    cx_fault *faults;
    size_t n_faults;
    size_t bad_lines;
    cx_lock_event *lock_events;
    size_t n_lock_events;
    size_t lock_files;
    size_t lock_bad_lines;
    char **strs; /* interned strings of the lock events (owned); strs[0] is "" */
    size_t n_strs;
    struct cm_hash *str_ids; /* string -> index + 1 */
} cx_history;

#define CX_HISTORY_INIT                                                                            \
    {                                                                                              \
        NULL, 0, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, NULL                                          \
    }

/* Appends the op (and fault) records of a JSON-lines file. CM_ERR (with errno set and a reason
 * in err) only when the file cannot be read; malformed lines are counted, not fatal. */
cm_rc cx_history_load(cx_history *h, const char *path, char *err, size_t errlen) CM_MUSTCHECK;
/* Appends the lines of a lock history (cm_lockhist's format). Same errors as above; lines
 * that are not lock events are counted in lock_bad_lines. */
cm_rc cx_history_load_locks(cx_history *h, const char *path, char *err, size_t errlen) CM_MUSTCHECK;
/* The interned string i of a lock event. */
const char *cx_history_str(const cx_history *h, uint32_t i);
void cx_history_free(cx_history *h);

const char *cx_kind_name(cx_kind k);
const char *cx_outcome_name(cx_outcome o);

#endif
