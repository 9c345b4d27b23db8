/*
 * cx_load_http: a small non-blocking HTTP/1.1 client for chaos_load. One cx_http is one
 * keep-alive connection to one server with at most one request in flight; it connects
 * lazily, reconnects on the next request after any failure, and bounds every request
 * with its own timer (a server that is paused, killed or partitioned gives status 0).
 *
 * Ownership: the client owns its buffers; a callback borrows the response for the
 * duration of the call only, and may start the next request on the same client.
 * cx_http_free drops a pending request without calling its callback.
 */
#ifndef CX_LOAD_HTTP_H
#define CX_LOAD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"

struct event_base;
typedef struct cx_http cx_http;

typedef struct cx_http_resp {
    int status;        /* HTTP status; 0 when no complete answer came */
    const char *error; /* status 0: "timeout", "connect", "reset", "eof", "protocol" */
    const char *body;  /* NUL-terminated */
    size_t body_len;
} cx_http_resp;

typedef void (*cx_http_cb)(void *arg, const cx_http_resp *resp);

/* server must be a numeric loopback address (or localhost). NULL on a bad address. */
cx_http *cx_http_new(struct event_base *base, const cm_addr *server,
                     uint32_t timeout_ms) CM_MUSTCHECK;
void cx_http_free(cx_http *h);
/* Sends one request (body NULL: none; JSON otherwise). CM_ERR when a request is already
 * in flight or memory runs out (callback not called); otherwise the callback runs
 * exactly once, later, never inside this call. */
cm_rc cx_http_request(cx_http *h, const char *method, const char *path, const char *body,
                      cx_http_cb cb, void *arg) CM_MUSTCHECK;

#endif
