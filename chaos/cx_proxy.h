/*
 * cx_proxy: the chaos suite's TCP fault proxy (build/bin/chaos_proxy). One libevent loop;
 * each accepted connection becomes a link of two bufferevents (client side, upstream
 * side). Every chunk read from one side goes through a per-direction queue that can delay
 * it (latency + jitter, order kept) or hold it (blackhole); the faults are switched at run
 * time through a line protocol on a control port (see cx_proxy_command).
 *
 * Ownership: the proxy owns its links, listeners and timers; cx_proxy_free closes every
 * link. Memory is bounded: a direction whose held + unsent bytes exceed max_buffer drops
 * its link (counted as an overflow).
 */
#ifndef CX_PROXY_H
#define CX_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"

struct event_base;
typedef struct cx_proxy cx_proxy;

typedef struct cx_proxy_opts {
    cm_addr listen;    /* where clients connect */
    cm_addr upstream;  /* where links go */
    cm_addr control;   /* the control port; port 0: no control listener */
    uint64_t seed;     /* jitter PRNG seed */
    size_t max_buffer; /* per direction cap in bytes; 0: 1 MiB */
} cx_proxy_opts;

/* Binds the listeners (NULL on failure, reason logged). */
cx_proxy *cx_proxy_new(struct event_base *base, const cx_proxy_opts *opts) CM_MUSTCHECK;
void cx_proxy_free(cx_proxy *p);

/* Runs one control command line (no LF) and writes the reply ("OK ..." or "ERR ...", no
 * LF) into reply. Commands: latency MS [JITTER_MS], drop, blackhole on|off, refuse on|off,
 * reset, stats. */
void cx_proxy_command(cx_proxy *p, const char *line, char *reply, size_t replylen);

#endif
