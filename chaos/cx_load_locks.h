/*
 * cx_load_locks: chaos_load's lock workload (issue 15 §3): N plain lock clients, each its own
 * lockd session (cm_lockclient, its first endpoint spread over the lockds given, failing over
 * to the rest), loop: ACQUIRE a resource drawn from chaos:lk:0..M-1 (contended), hold it 5-50
 * ms, RELEASE it; pause 1-5 ms (50 ms after a refusal). Every lock event of every client goes
 * to one lock history (cm_lockhist, --lock-history) for chaos_check's lock checks.
 *
 * These clients do NOT check fences, nor anything else: they trust the lock (a lost lock is
 * only given up, by the client library). They are the target of the lock-history checker,
 * which judges the service by what such clients experienced.
 *
 * Determinism: each client draws from its own PRNG seeded by (seed, 2000000 + client), a fixed
 * number of draws per loop, so a seed fixes every client's sequence of resources and holds.
 *
 * Ownership: the workload owns its clients and the history; cx_locks_free closes the sessions
 * (their locks are released by lockd) and then the history.
 */
#ifndef CX_LOAD_LOCKS_H
#define CX_LOAD_LOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"

struct event_base;
typedef struct cx_locks cx_locks;

#define CX_LOCKS_HOLD_MIN_MS 5
#define CX_LOCKS_HOLD_MAX_MS 50

typedef struct cx_locks_opts {
    const cm_addr *lockd; /* copied */
    size_t n_lockd;
    uint32_t clients;   /* N >= 1 */
    uint32_t resources; /* M >= 1: chaos:lk:0 .. chaos:lk:M-1 */
    uint64_t lease_ms;  /* 0: watchdog lease */
    uint64_t wait_ms;   /* of an ACQUIRE */
    uint64_t seed;
    const char *history; /* the lock history file (appended) */
    const char *src;     /* "src" of its lines */
} cx_locks_opts;

/* Starts the clients at once. on_idle runs once every client has stopped after cx_locks_stop.
 * NULL (logged) when the history cannot be opened or out of memory. */
cx_locks *cx_locks_new(struct event_base *base, const cx_locks_opts *o, void (*on_idle)(void *arg),
                       void *arg) CM_MUSTCHECK;
/* Stops starting loops: a held lock is released at once, an ACQUIRE's answer is waited for. */
void cx_locks_stop(cx_locks *l);
bool cx_locks_idle(const cx_locks *l);
/* "lock_grants=G lock_releases=R lock_lost=L lock_refused=F history_lines=H". */
void cx_locks_summary(const cx_locks *l, char *buf, size_t len);
void cx_locks_free(cx_locks *l);

#endif
