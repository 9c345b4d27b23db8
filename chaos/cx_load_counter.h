/*
 * cx_load_counter: chaos_load's lock-safety workload (issue 4 §3). M clients, each with
 * its own lockd session (cm_lockclient) and its own PostgreSQL connection (cx_load_pg),
 * loop on: acquire Counter:<id> -> SELECT value -> sleep a few ms (an unguarded
 * read-modify-write) -> UPDATE with the fence (applied / rejected) -> release, and write
 * one counter_incr line per op into the history. Counters are rows 1..K of
 * chaos_counters (created by chaos/run).
 *
 * Ownership: the workload owns its clients; cx_counter_free closes the sessions.
 */
#ifndef CX_LOAD_COUNTER_H
#define CX_LOAD_COUNTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "cx_load_hist.h"

struct event_base;
typedef struct cx_counter cx_counter;

typedef struct cx_counter_opts {
    const cm_addr *lockd; /* copied */
    size_t n_lockd;
    const char *conninfo;
    uint32_t counters;    /* K >= 1 */
    uint32_t clients;     /* M >= 1 */
    uint32_t client_base; /* history client number of the first counter client */
    uint64_t lease_ms;    /* 0: watchdog */
    uint64_t wait_ms;
    uint32_t timeout_ms; /* per SQL statement */
    uint64_t seed;
} cx_counter_opts;

/* on_idle runs once every client has stopped after cx_hist_stopping became true. */
cx_counter *cx_counter_new(struct event_base *base, cx_hist *hist, const cx_counter_opts *o,
                           void (*on_idle)(void *arg), void *arg) CM_MUSTCHECK;
/* Stops starting ops; clients in a think pause go idle at once. */
void cx_counter_stop(cx_counter *c);
/* At a hard stop: writes every op still in flight (unknown once its UPDATE was sent,
 * fail before) and leaves all clients idle. */
void cx_counter_abort(cx_counter *c);
bool cx_counter_idle(const cx_counter *c);
void cx_counter_free(cx_counter *c);

#endif
