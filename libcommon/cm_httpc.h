/*
 * cm_httpc: the project's HTTP/1.1 client on libevent, used by reserved's payment client
 * (rs_pay), the load generators (bookbench, chaos_load) and the tests. One cm_httpc is
 * one connection to one server with at most one request in flight: it connects lazily,
 * keeps the connection alive between requests (unless opts.close), reconnects on the
 * next request after any failure, and bounds every request with its own timer and every
 * answer with a size limit (a server that is paused, killed or partitioned, or that
 * answers too much, gives status 0 and a reason).
 *
 * Why our own client over a bufferevent rather than evhttp's client side: evhttp parses
 * every header into a list and allocates per request, which shows in a load generator's
 * figures, and it reports a refused connect, a reset and a timeout through one error
 * path; we need each named and the answer bounded.
 *
 * Answers must carry Content-Length (evhttp servers, ours, always send it for whole
 * replies); chunked or unbounded answers are a protocol error.
 *
 * Ownership: the client owns its connection, timer and buffers. A callback borrows the
 * response for the duration of the call only; it may start the next request on the same
 * client, or free the client (the free is then deferred until the callback returns).
 * cm_httpc_free drops a pending request without calling its callback.
 */
#ifndef CM_HTTPC_H
#define CM_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
typedef struct cm_httpc cm_httpc;

#define CM_HTTPC_DEFAULT_TIMEOUT_MS 10000
#define CM_HTTPC_DEFAULT_MAX_BODY   (8u * 1024 * 1024)

typedef struct cm_httpc_opts {
    uint32_t timeout_ms; /* per request, from the send to the whole answer; 0: default */
    size_t max_body;     /* a longer answer fails with "too_large"; 0: default (8 MiB) */
    bool close;          /* one connection per request (Connection: close), no keep-alive */
    /* A 2xx answer's body is dropped as it arrives instead of kept: the callback gets
     * an empty body and the length in resp.skipped. For a load generator that only
     * counts answers: a seat map of megabytes is never copied or held. Other answers
     * keep their bodies. */
    bool skip_ok_body;
} cm_httpc_opts;

typedef struct cm_httpc_resp {
    int status;        /* HTTP status; 0 when no complete answer came */
    const char *error; /* status 0: "timeout", "connect", "reset", "eof", "protocol",
                          "too_large"; NULL otherwise */
    const char *body;  /* NUL-terminated ("" when none, or skipped) */
    size_t body_len;
    size_t skipped; /* the bytes of a 2xx body dropped unread (opts.skip_ok_body) */
} cm_httpc_resp;

typedef void (*cm_httpc_cb)(void *arg, const cm_httpc_resp *resp);

/* host: a numeric IPv4/IPv6 address (no brackets), "localhost" (taken as 127.0.0.1), or a
 * name resolved with the system resolver at each connect (blocking: for loopback names in
 * configs only). NULL when out of memory or the port is not 1..65535. opts may be NULL. */
cm_httpc *cm_httpc_new(struct event_base *base, const char *host, int port,
                       const cm_httpc_opts *opts) CM_MUSTCHECK;
/* Frees the client and drops a request in flight without calling back. Inside the
 * client's own callback the free happens when the callback returns. NULL is a no-op. */
void cm_httpc_free(cm_httpc *h);
/* Whether a request is in flight (cm_httpc_request would refuse another). */
bool cm_httpc_busy(const cm_httpc *h);

/* Sends one request. json_body NULL: no body; otherwise sent as application/json.
 * headers: NULL or a NULL-terminated list of name, value, name, value, ... (borrowed for
 * the call). CM_ERR when a request is already in flight, cb is NULL or memory runs out
 * (callback not called); otherwise the callback runs exactly once, later, never inside
 * this call. */
cm_rc cm_httpc_request(cm_httpc *h, const char *method, const char *path, const char *json_body,
                       const char *const *headers, cm_httpc_cb cb, void *arg) CM_MUSTCHECK;

#endif
