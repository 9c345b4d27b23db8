/*
 * rs_edge: the HTTP edge of reserved in front of evhttp (SPEC §6a "HTTP limits"). Owns
 * one rs_edge_conn per accepted connection (from evhttp's bufferevent callback until
 * evhttp's close callback), the listener's pause and resume, and the head gate:
 *   - limits.max_header_bytes: the request line and headers of a request are held back
 *     from evhttp (read watermarks) until they are complete, so they never take more
 *     than that much memory; beyond it the request gets 431 HEADERS_TOO_LARGE.
 *   - limits.header_timeout_ms: one deadline for the whole head, from the accept (first
 *     request) or its first byte (the next ones on a kept-alive connection): 408.
 *   - the head is checked before evhttp parses it, so that what evhttp would answer with
 *     its own HTML page gets the SPEC §6 JSON error instead: a malformed request line or
 *     header line or a request target that is not UTF-8 (400), a Content-Length more
 *     than RS_EDGE_BODY_SLACK above limits.max_body_bytes (413 TOO_LARGE), an Expect
 *     other than 100-continue (417), a method nobody serves (501). A body up to the slack
 *     above the limit is still read (rs_http answers its 413 after it): a client that
 *     sends its whole body before reading gets the answer instead of a reset.
 *   - limits.max_connections: at that many connections the listener is paused until one
 *     closes; accept failing for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM)
 *     pauses it for ACCEPT_BACKOFF_MS instead of retrying at once (no spinning), with
 *     one log line per RATE_LOG_MS.
 * A refused head is replaced, in evhttp's input, by a small request of our own that
 * carries a per-process secret and the verdict (X-Reserved-Edge): evhttp parses it and
 * hands it to rs_http's dispatch, which answers it through the one JSON error path
 * (rs_edge_verdict) with "Connection: close". The gate closes again once an answer is
 * written, unless bytes of a next request are buffered already (pipelining): evhttp
 * then parses that head ungated, bounded by its own header limit (the same value) and by
 * the deadline, on which the connection is closed without an answer.
 *
 * Lifetime: the rs_edge_conn is freed in evhttp's close callback for its connection
 * (or, should evhttp drop the connection while accepting it, at the capture event that
 * follows the accept); rs_edge_free frees what is left after evhttp_free.
 */
#ifndef RS_EDGE_H
#define RS_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
struct evhttp;
struct evhttp_connection;
struct evhttp_request;
struct evconnlistener;
typedef struct rs_edge rs_edge;

/* How far above limits.max_body_bytes a body is still read before its 413 (evhttp's own
 * body limit is the sum). */
#define RS_EDGE_BODY_SLACK (1024 * 1024)

typedef struct rs_edge_opts {
    size_t max_header_bytes;    /* limits.max_header_bytes */
    uint32_t header_timeout_ms; /* limits.header_timeout_ms */
    size_t max_connections;     /* limits.max_connections */
    size_t max_body_bytes;      /* limits.max_body_bytes (+ RS_EDGE_BODY_SLACK: 413 at once) */
} rs_edge_opts;

/* Called when evhttp closes a connection (before it frees its requests). */
typedef void (*rs_edge_close_fn)(struct evhttp_connection *evcon, void *arg);

/* Installs itself on http (its bufferevent callback and header limit). */
rs_edge *rs_edge_new(struct event_base *base, struct evhttp *http, const rs_edge_opts *o,
                     rs_edge_close_fn on_close, void *arg) CM_MUSTCHECK;
/* Takes charge of the listener's pauses (borrowed; detach before it is freed). */
void rs_edge_attach_listener(rs_edge *e, struct evconnlistener *lev);
void rs_edge_detach_listener(rs_edge *e);

/* A refused head's verdict: status, code and message for the JSON error. */
typedef struct rs_edge_verdict {
    int status;
    const char *code;
    char message[160];
} rs_edge_verdict;
/* Whether ereq is a refused head put in by the gate (then *v says the answer). */
bool rs_edge_verdict_of(const rs_edge *e, struct evhttp_request *ereq, rs_edge_verdict *v);
/* ereq's head and body are read and its handler runs (the deadline stops). */
void rs_edge_dispatched(rs_edge *e, struct evhttp_request *ereq);
/* ereq's answer is written: gate its connection's next head. */
void rs_edge_answered(rs_edge *e, struct evhttp_request *ereq);

size_t rs_edge_connections(const rs_edge *e);
/* Connections refused at the gate and accept pauses, for /metrics. */
struct cm_strbuf;
void rs_edge_metrics(const rs_edge *e, struct cm_strbuf *out);
void rs_edge_free(rs_edge *e);

#endif
