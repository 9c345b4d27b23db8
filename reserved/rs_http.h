/*
 * rs_http: the HTTP front of reserved on libevent's evhttp. Owns the listener, the route
 * table, the per-request context (rs_req), JSON bodies (jansson only: no JSON is ever
 * built by hand), the SPEC §6 error shape, the body limit (413 TOO_LARGE), 404/405, and
 * request counting by route and status for /metrics, and OPTIONS: 204 with "Allow" on
 * every served path (RFC 9110 §9.3.7), CORS preflights and CORS headers on every answer
 * by the policy of rs_cors.
 *
 * Lifetime: every handler gets an rs_req and must answer it exactly once with one of the
 * rs_reply_* functions, now or later (after DB / lock / payment callbacks), or with a
 * stream (rs_stream_start, then exactly one rs_stream_end or rs_stream_abort). A client
 * may disconnect while the request waits: rs_req_gone() turns true once the connection is
 * gone, the answer is then dropped, but the handler still answers (that frees the
 * rs_req). A client that only closed its side still gets the answer. Work already done in
 * the database is not undone because the client left. An rs_req counts in
 * rs_http_in_flight from its arrival until its answer is written (or dropped): a stream
 * until its end is written, so a graceful stop waits for the streams too; whoever owns
 * streams ends them when the stop begins.
 */
#ifndef RS_HTTP_H
#define RS_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "rs_blob.h"
#include "rs_edge.h"

struct event_base;
typedef struct rs_req rs_req;
typedef struct rs_http rs_http;

typedef enum rs_method { RS_GET, RS_POST, RS_PATCH, RS_DELETE } rs_method;
typedef void (*rs_handler)(rs_req *r);

/* Who may call a route (SPEC §6a). The zero value needs a token: a route whose table
 * line forgets its access is closed, not open. */
typedef enum rs_access {
    RS_ACCESS_USER = 0, /* a valid token of any role */
    RS_ACCESS_PUBLIC,   /* anyone; a valid token is still read (the rate bucket, the caller) */
    RS_ACCESS_ADMIN,    /* a valid token of an admin (403 FORBIDDEN for a customer) */
} rs_access;

typedef struct rs_route {
    rs_method method;
    const char *pattern; /* "/performances/{id}/seats": {id} matches a positive int64 */
    const char *name;    /* route label in metrics, e.g. "performance_seats" */
    rs_handler handler;
    rs_access access;
} rs_route;

/* The authenticated caller of a request, set by the gate before the handler runs. */
typedef enum rs_role {
    RS_ROLE_NONE = 0, /* no valid token: an anonymous caller of a public route */
    RS_ROLE_CUSTOMER, /* books, reads and cancels only its own */
    RS_ROLE_ADMIN,    /* the catalogue, and acts for any user */
} rs_role;

typedef struct rs_caller {
    rs_role role;
    int64_t user_id;              /* 0 when role is RS_ROLE_NONE */
    unsigned char token_hash[32]; /* SHA-256 of the bearer token (logout deletes by it) */
} rs_caller;

/* The gate runs between routing and the handler: it decides (now or after a lookup)
 * and either answers r itself (401, 403, 429) or sets the caller and calls
 * rs_http_admit(r). Without a gate every route runs as RS_ACCESS_PUBLIC. */
typedef void (*rs_gate)(rs_req *r, rs_access access);

struct rs_cors;
/* limits: the HTTP limits of SPEC §6a (copied). cors (borrowed, must outlive h) may be
 * NULL: CORS off. */
rs_http *rs_http_new(struct event_base *base, const rs_edge_opts *limits,
                     const struct rs_cors *cors) CM_MUSTCHECK;
/* Routes are borrowed (static tables); may be called several times before listen. */
void rs_http_add_routes(rs_http *h, const rs_route *routes, size_t n);
cm_rc rs_http_listen(rs_http *h, const cm_addr *addr) CM_MUSTCHECK;
void rs_http_set_gate(rs_http *h, rs_gate gate);
/* The gate's yes: runs the routed handler of r. */
void rs_http_admit(rs_req *r);
/* Stop accepting; in-flight requests still get their answers. */
void rs_http_stop_accepting(rs_http *h);
/* Requests accepted and not answered yet (graceful stop waits for 0). */
size_t rs_http_in_flight(const rs_http *h);
void rs_http_free(rs_http *h);
/* Appends request counters and latency histograms in Prometheus text. */
struct cm_strbuf;
void rs_http_metrics(const rs_http *h, struct cm_strbuf *out);

/* ---- inside handlers ---- */
/* The i-th {id} of the matched pattern. */
int64_t rs_req_id(const rs_req *r, int i);
/* Query parameter (decoded) or NULL. */
const char *rs_req_query(const rs_req *r, const char *name);
const char *rs_req_header(const rs_req *r, const char *name);
/* The body parsed as a JSON object. NULL when it is not: then the 400 was already sent
 * and the handler must return without answering again. Borrowed (freed with r). */
json_t *rs_req_json(rs_req *r);
/* Raw body bytes (for hashing idempotent requests). */
const char *rs_req_body(const rs_req *r, size_t *len);
bool rs_req_gone(const rs_req *r);
/* The caller the gate set (role RS_ROLE_NONE before, or on a public route without a
 * valid token). */
const rs_caller *rs_req_caller(const rs_req *r);
void rs_req_set_caller(rs_req *r, const rs_caller *c);
/* The client's address as text ("127.0.0.1", "::1"; "" when unknown). */
const char *rs_req_peer(const rs_req *r);
/* Opaque per-request slot for the handler's own state. */
void rs_req_set_data(rs_req *r, void *data);
void *rs_req_data(const rs_req *r);

/* Answers. body is stolen (json_decref'd). extra_header may be NULL ("Retry-After: 1"). */
void rs_reply_json(rs_req *r, int status, json_t *body);
void rs_reply_json_hdr(rs_req *r, int status, json_t *body, const char *hname, const char *hval);
/* {"error":{"code":code,"message":...}} */
void rs_reply_error(rs_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, with extra fields merged into the error object (stolen), e.g. {"seatIds":[..]}. */
void rs_reply_error_extra(rs_req *r, int status, const char *code, json_t *extra, const char *fmt,
                          ...) __attribute__((format(printf, 5, 6)));
void rs_reply_text(rs_req *r, int status, const char *content_type, const char *text, size_t len);
/* rs_reply_text of b's bytes without copying them: the answer holds a reference to b
 * until it is written (or dropped). */
void rs_reply_blob(rs_req *r, int status, const char *content_type, rs_blob *b);
/* One more header on r's answer, sent by the rs_reply_* call that follows (copied; a
 * value with CR or LF is refused by evhttp and left out). */
void rs_req_add_header(rs_req *r, const char *name, const char *value);

/* ---- streaming answers (Server-Sent Events, SPEC §8) ----
 * rs_stream_start answers r with 200 and its headers now (content_type, "Cache-Control:
 * no-cache", the CORS headers) and a body that follows in pieces (rs_stream_write): chunked
 * for HTTP/1.1, ended by closing the connection for HTTP/1.0. From then on:
 *   - the handler still owns r and must finish it exactly once: rs_stream_end (the body
 *     ends; r is freed once its last byte is written, or at once when the client is gone)
 *     or rs_stream_abort (the connection is closed now, unsent bytes dropped, r freed);
 *     r must not be used after either;
 *   - on_gone(r, arg) runs at most once, from the loop and never inside an rs_http call,
 *     when the client has gone (it closed the connection or its side of it, or a write
 *     failed or made no progress for the idle timeout); the handler then finishes r
 *     (rs_stream_end). It does not run after rs_stream_end / rs_stream_abort;
 *   - the idle timeout does not apply: a stream may stay silent; the client's bytes are
 *     no longer read beyond a few KiB (a stream has no further request);
 *   - r counts in rs_http_in_flight until it is finished (see Lifetime).
 * rs_stream_abort must not be called from inside a libevent callback of r's own
 * connection (it frees the connection). */
typedef void (*rs_stream_gone_fn)(rs_req *r, void *arg);
/* CM_ERR (nothing sent, no stream: answer r as usual) only when out of memory. A client
 * already gone gets no headers: on_gone follows. */
cm_rc rs_stream_start(rs_req *r, const char *content_type, rs_stream_gone_fn on_gone,
                      void *arg) CM_MUSTCHECK;
struct evbuffer;
/* Moves buf's bytes (references included) to the end of the stream; dropped when the
 * client is gone. */
void rs_stream_write(rs_req *r, struct evbuffer *buf);
/* Bytes meant for many streams (an event to every subscriber), framed once (as an
 * HTTP/1.1 chunk too) and written to each stream as a reference into one shared block: no
 * copy and one evbuffer chain per stream. Reference-counted: the creator's reference is
 * dropped with rs_stream_piece_unref, each write holds one until its bytes are written or
 * dropped. NULL when out of memory. */
typedef struct rs_stream_piece rs_stream_piece;
rs_stream_piece *rs_stream_piece_new(const char *data, size_t len);
void rs_stream_piece_unref(rs_stream_piece *p);
/* Appends p to the stream (dropped when the client is gone). */
void rs_stream_write_piece(rs_req *r, rs_stream_piece *p);
/* Bytes of the stream not written to the socket yet (0 once the client is gone): the
 * measure of a slow reader. */
size_t rs_stream_unsent(const rs_req *r);
void rs_stream_end(rs_req *r);
void rs_stream_abort(rs_req *r);

/* ---- JSON field helpers: each returns false after answering 400 BAD_REQUEST with a
 * message naming the field ("field 'seatIds' must be an array of integers"). ---- */
bool rs_json_get_string(rs_req *r, json_t *obj, const char *key, bool required, size_t max_len,
                        const char **out);
bool rs_json_get_int(rs_req *r, json_t *obj, const char *key, bool required, int64_t min,
                     int64_t max, int64_t *out, bool *present);

#endif
