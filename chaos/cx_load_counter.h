/*
 * cx_load_counter: chaos_load's lock-safety workload (issue 4 §3). M clients, each with
 * its own lockd session (cm_lockclient) and its own PostgreSQL connection (cx_load_pg),
 * loop on: acquire Counter:<id> -> fenced read -> sleep (an unguarded read-modify-write)
 * -> UPDATE with the fence (applied / rejected) -> release, and write one counter_incr
 * line per op into the history. Counters are rows 1..K of chaos_counters (created by
 * chaos/run).
 *
 * The read claims the fence too (UPDATE ... SET last_fence = F WHERE last_fence <= F
 * RETURNING value): with a write-only fence, a stale holder's write that lands between
 * the new holder's read and write is accepted and then overwritten -- a lost update the
 * fence cannot stop. Claiming at read time makes every write of an older holder fail
 * once a newer holder has touched the counter.
 *
 * A careful client (the default) abandons the op when its lock is lost (LOST push or
 * session loss) before the write is sent, and PINGs lockd after its sleep to notice a
 * session that died while the process was paused. With ignore_lost it behaves like the naive
 * client of Kleppmann's critique: it sends its fenced write anyway, and only the store's
 * fence check stands between it and a lost update.
 *
 * marker: when set, the file is rewritten (write + rename, so a reader sees a whole
 * line) with "sleeping=N held=M" whenever those change: N clients hold their lock with
 * the read done and the write NOT yet sent, M clients hold a lock. chaos/run pauses the
 * process when N > 0 and re-reads the file once it is stopped.
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
#include "cx_history_writer.h"

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
    uint32_t sleep_min_ms, sleep_max_ms; /* between read and write; min <= max */
    bool ignore_lost;                    /* write even after the lock was lost */
    const char *marker;                  /* NULL: none; borrowed */
} cx_counter_opts;

/* on_idle runs once every client has stopped after cx_hwriter_stopping became true. */
cx_counter *cx_counter_new(struct event_base *base, cx_hwriter *hist, const cx_counter_opts *o,
                           void (*on_idle)(void *arg), void *arg) CM_MUSTCHECK;
/* Stops starting ops; clients in a think pause go idle at once. */
void cx_counter_stop(cx_counter *c);
/* At a hard stop: writes every op still in flight (unknown once its UPDATE was sent,
 * fail before) and leaves all clients idle. */
void cx_counter_abort(cx_counter *c);
bool cx_counter_idle(const cx_counter *c);
void cx_counter_free(cx_counter *c);

#endif
