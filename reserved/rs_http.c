/*
 * rs_http: see rs_http.h. evhttp owns the sockets and the evhttp_request; this module
 * owns the rs_req wrapped around each one, from dispatch until the handler's single
 * answer.
 *
 * Client disconnects: libevent 2.1 stops reading a connection while its request waits
 * for our answer, so it only notices a peer that left when the answer is written. We
 * watch the socket ourselves with EV_CLOSED (epoll's RDHUP). A peer that closed and one
 * that only half-closed after a complete request (HTTP/1.0 style, "nc -N") look the
 * same there, and the second still reads: the answer is therefore always written (with
 * "Connection: close"), and counted as an answer to a client that had closed its side.
 * Should libevent itself fail the connection first (a timeout), it detaches the request
 * and calls the close callback (rs_edge's, which calls conn_closed here), which marks
 * the rs_req gone; evhttp_send_reply then frees the detached request without writing.
 * evhttp_free frees pending requests outright: rs_http_free therefore forgets every
 * rs_req's evhttp_request first. So does conn_closed for a request still attached to the
 * closing connection (a stream we close ourselves, or one whose end is being written):
 * evhttp frees it right after.
 *
 * Streams (rs_stream_*) use evhttp_send_reply_start / _chunk / _end. While a reply is being
 * written evhttp keeps reading the socket only to see it close: a peer that leaves fails
 * the connection (EOF, or a write error), which detaches the request and calls
 * conn_closed. The EV_CLOSED watch stays on while streaming and closes the connection
 * itself, because the read stops once a few KiB of the client's bytes are buffered (read
 * watermark). A stream is its own phase of the rs_req (req_phase); its on_gone callback
 * runs from its own event, activated by conn_closed, never inside libevent's close.
 *
 * What reaches evhttp is first checked by rs_edge (head size, deadline, connection cap,
 * a head evhttp would answer with its own HTML page): a refused head comes to dispatch
 * as a verdict, answered here as a JSON error like every other answer.
 */
#include "rs_http.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cm_hist.h"
#include "cm_log.h"
#include "cm_strbuf.h"
#include "cm_time.h"
#include "rs_cors.h"
#include "rs_edge.h"
#include "rs_utf8.h"

#define RS_MAX_IDS           4
#define RS_MAX_SEGMENTS      8
#define RS_STATUS_MAX        600
#define IDLE_TIMEOUT_S       60
#define MSG_MAX              512
#define STREAM_INPUT_MAX     4096 /* a stream's client bytes read and kept at most (ignored) */
#define SINGLE_WRITE_DEFAULT (16 * 1024)  /* libevent's bound on one write call */
#define REPLY_SINGLE_WRITE   (256 * 1024) /* ours, for an answer longer than that */

/* Request counters of one route (or of a pseudo-route for answers before dispatch). */
typedef struct rs_route_stats {
    const char *name;
    const char *method;
    uint64_t by_status[RS_STATUS_MAX];
    cm_hist latency;
} rs_route_stats;

struct rs_http {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    size_t max_body;
    bool stopping;
    const rs_route **routes; /* borrowed entries */
    rs_route_stats **stats;  /* parallel to routes */
    size_t nroutes;
    rs_route_stats unrouted; /* 404 / 405 / 413 / 400 before any handler, edge verdicts */
    rs_route_stats options;  /* OPTIONS on a served path: 204, or 403 to a CORS preflight */
    const rs_cors *cors;     /* borrowed; NULL: CORS off */
    rs_edge *edge;           /* owned */
    rs_gate gate;            /* NULL: every route is public */
    rs_req *live;            /* requests not answered yet */
    size_t in_flight;
    size_t sending;   /* answers handed to evhttp and not completely written yet */
    uint64_t dropped; /* answers to clients that had closed (or half-closed) their side */
};

/* Where a request is in its answer. Moved only by req_move. */
typedef enum req_phase {
    RQ_WORKING,   /* the handler works on it; answered and freed by req_finish */
    RQ_STREAMING, /* a stream: headers sent (unless the client was gone), pieces follow */
    RQ_ENDING,    /* a stream's end is being written: freed when written or the
                     connection closes */
    RQ_NPHASES
} req_phase;

static const char *const req_phase_names[RQ_NPHASES] = {"working", "streaming", "ending"};

struct rs_req {
    rs_http *h;
    req_phase phase;
    struct evhttp_request *ereq;     /* NULL after rs_http_free detached it */
    struct evhttp_connection *evcon; /* NULL once the client is gone */
    rs_route_stats *stats;
    int64_t ids[RS_MAX_IDS];
    int nids;
    struct evkeyvalq query;
    char *body; /* copy of the body, NUL-terminated */
    size_t body_len;
    json_t *json;
    void *data;
    const rs_route *route; /* the matched route, run by rs_http_admit */
    rs_caller caller;
    struct event *watch;       /* EV_CLOSED on the client's socket while we work */
    bool gone;                 /* the connection is gone: the answer cannot be written */
    bool peer_closed;          /* the client closed its side: answered, then the connection goes */
    bool close;                /* answer with "Connection: close" (an edge verdict) */
    bool cors_refused;         /* a refused preflight: no Access-Control-Allow-Origin */
    struct event *gone_ev;     /* a stream's: runs on_gone from the loop; owned */
    bool chunked;              /* a stream's body is chunked (HTTP/1.1) */
    rs_stream_gone_fn on_gone; /* NULL once run (or not a stream) */
    void *gone_arg;
    uint64_t start_us;
    rs_req *prev;
    rs_req *next;
};

static const char *method_label(rs_method m)
{
    switch (m) {
    case RS_GET:
        return "GET";
    case RS_POST:
        return "POST";
    case RS_PATCH:
        return "PATCH";
    case RS_DELETE:
        return "DELETE";
    }
    return "?";
}

static void conn_closed(struct evhttp_connection *evcon, void *arg);

static void req_move(rs_req *r, req_phase to)
{
    bool legal = (r->phase == RQ_WORKING && to == RQ_STREAMING) ||
                 (r->phase == RQ_STREAMING && to == RQ_ENDING);
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("request %p: %s -> %s", (void *)r, req_phase_names[r->phase], req_phase_names[to]);
    r->phase = to;
}

rs_http *rs_http_new(struct event_base *base, const rs_edge_opts *limits, const rs_cors *cors)
{
    rs_http *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->base = base;
    h->max_body = limits->max_body_bytes;
    h->cors = cors;
    h->unrouted.name = "unrouted";
    h->unrouted.method = "ANY";
    cm_hist_init_latency(&h->unrouted.latency);
    h->options.name = "options";
    h->options.method = "OPTIONS";
    cm_hist_init_latency(&h->options.latency);
    h->http = evhttp_new(base);
    if (!h->http) {
        free(h);
        return NULL;
    }
    h->edge = rs_edge_new(base, h->http, limits, conn_closed, h);
    if (!h->edge) {
        evhttp_free(h->http);
        free(h);
        return NULL;
    }
    return h;
}

void rs_http_add_routes(rs_http *h, const rs_route *routes, size_t n)
{
    const rs_route **r = realloc(h->routes, (h->nroutes + n) * sizeof(*r));
    rs_route_stats **s = r ? realloc(h->stats, (h->nroutes + n) * sizeof(*s)) : NULL;
    if (r)
        h->routes = r;
    if (!r || !s)
        fatal("out of memory adding routes");
    h->stats = s;
    for (size_t i = 0; i < n; i++) {
        rs_route_stats *st = calloc(1, sizeof(*st));
        if (!st)
            fatal("out of memory adding routes");
        st->name = routes[i].name;
        st->method = method_label(routes[i].method);
        cm_hist_init_latency(&st->latency);
        h->routes[h->nroutes] = &routes[i];
        h->stats[h->nroutes] = st;
        h->nroutes++;
    }
}

/* ---- answering ---- */

static void req_unlink(rs_req *r)
{
    rs_http *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->in_flight--;
}

static void req_free(rs_req *r)
{
    if (r->watch)
        event_free(r->watch);
    if (r->gone_ev)
        event_free(r->gone_ev);
    evhttp_clear_headers(&r->query);
    json_decref(r->json);
    free(r->body);
    free(r);
}

static void on_reply_written(struct evhttp_request *ereq, void *arg)
{
    rs_http *h = arg;
    if (h->sending > 0)
        h->sending--;
    rs_edge_answered(h->edge, ereq);
}

/* Counts r's answer (its status, and its latency up to now) for /metrics. */
static void req_count(rs_req *r, int status)
{
    rs_route_stats *st = r->stats ? r->stats : &r->h->unrouted;
    if (status > 0 && status < RS_STATUS_MAX)
        st->by_status[status]++;
    cm_hist_observe_us(&st->latency, cm_now_us() - r->start_us);
}

/* The single exit of every request but a stream: counts it, sends (or drops) the answer,
 * frees r. ctype NULL: no body (204). Every answer gets the CORS headers its Origin calls
 * for. */
static void req_finish(rs_req *r, int status, struct evbuffer *body, const char *ctype,
                       const char *hname, const char *hval)
{
    assert(r->phase == RQ_WORKING);
    req_count(r, status);
    if (r->watch) {
        event_free(r->watch);
        r->watch = NULL;
    }
    if (r->gone || r->peer_closed)
        r->h->dropped++;
    if (r->ereq) {
        if (!r->gone) {
            struct evkeyvalq *out = evhttp_request_get_output_headers(r->ereq);
            if (ctype)
                evhttp_add_header(out, "Content-Type", ctype);
            if (hname)
                evhttp_add_header(out, hname, hval);
            if (r->h->stopping || r->close || r->peer_closed)
                evhttp_add_header(out, "Connection", "close");
            rs_cors_answer_headers(r->h->cors, rs_req_header(r, "Origin"), r->cors_refused, out);
        }
        if (!r->gone) {
            /* A graceful stop must not exit while this answer still sits in an output
             * buffer: count it until evhttp says it is written. */
            r->h->sending++;
            evhttp_request_set_on_complete_cb(r->ereq, on_reply_written, r->h);
        }
        /* A large hall's seat map is megabytes: in libevent's 16 KiB writes, hundreds of
         * calls, each waking the client for a piece. In the booking benchmark's mixed
         * shape, reads' p99 fell from 84-96 to 47-64 ms (docs/performance.md). */
        if (!r->gone && r->evcon && body && evbuffer_get_length(body) > SINGLE_WRITE_DEFAULT)
            bufferevent_set_max_single_write(evhttp_connection_get_bufferevent(r->evcon),
                                             REPLY_SINGLE_WRITE);
        /* For a request whose client left, this frees the detached request unsent. */
        evhttp_send_reply(r->ereq, status, NULL, r->gone ? NULL : body); /* libevent's phrase */
    }
    req_unlink(r);
    req_free(r);
}

/* jansson hands the dump over a token at a time; evbuffer_add per token costs more than
 * the dump itself, so tokens gather in a block first. */
typedef struct {
    struct evbuffer *out;
    size_t used;
    char block[16384];
} dump_sink;

static int dump_flush(dump_sink *d)
{
    int rc = d->used ? evbuffer_add(d->out, d->block, d->used) : 0;
    d->used = 0;
    return rc;
}

static int dump_to_sink(const char *chunk, size_t len, void *arg)
{
    dump_sink *d = arg;
    if (d->used + len > sizeof(d->block) && dump_flush(d) != 0)
        return -1;
    if (len > sizeof(d->block))
        return evbuffer_add(d->out, chunk, len);
    memcpy(d->block + d->used, chunk, len);
    d->used += len;
    return 0;
}

void rs_reply_json_hdr(rs_req *r, int status, json_t *body, const char *hname, const char *hval)
{
    /* dumped straight into the answer's buffer: no intermediate string to grow and copy
     * (a seat map is close to a megabyte) */
    struct evbuffer *buf = evbuffer_new();
    static dump_sink sink; /* one event loop: never in use twice at once */
    sink.out = buf;
    sink.used = 0;
    if (!buf || !body ||
        json_dump_callback(body, dump_to_sink, &sink, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
        dump_flush(&sink) != 0) {
        log_error("out of memory building a %d answer", status);
        status = 500;
        if (buf)
            evbuffer_drain(buf, evbuffer_get_length(buf));
    }
    json_decref(body);
    req_finish(r, status, buf, "application/json", hname, hval);
    if (buf)
        evbuffer_free(buf);
}

void rs_reply_json(rs_req *r, int status, json_t *body)
{
    rs_reply_json_hdr(r, status, body, NULL, NULL);
}

/* The SPEC §6 error body; extra fields (stolen) are merged into the error object. */
static void reply_error_v(rs_req *r, int status, const char *code, json_t *extra, const char *hname,
                          const char *hval, const char *fmt, va_list ap)
{
    char msg[MSG_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* jansson refuses a string that is not UTF-8 (a message quoting a client's bytes):
     * the error would become an empty 500 */
    if (!rs_utf8_valid(msg, strlen(msg)))
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    json_t *err = json_pack("{s:s,s:s}", "code", code, "message", msg);
    if (err && extra)
        json_object_update(err, extra);
    json_decref(extra);
    if (status >= 500)
        log_warn("answer %d %s: %s", status, code, msg);
    else
        log_debug("answer %d %s: %s", status, code, msg);
    rs_reply_json_hdr(r, status, err ? json_pack("{s:o}", "error", err) : NULL, hname, hval);
}

void rs_reply_error(rs_req *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(r, status, code, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

void rs_reply_error_extra(rs_req *r, int status, const char *code, json_t *extra, const char *fmt,
                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(r, status, code, extra, NULL, NULL, fmt, ap);
    va_end(ap);
}

void rs_reply_text(rs_req *r, int status, const char *content_type, const char *text, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf)
        evbuffer_add(buf, text, len);
    req_finish(r, buf ? status : 500, buf, content_type, NULL, NULL);
    if (buf)
        evbuffer_free(buf);
}

static void blob_written(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    rs_blob_unref(arg);
}

void rs_reply_blob(rs_req *r, int status, const char *content_type, rs_blob *b)
{
    struct evbuffer *buf = evbuffer_new();
    /* the reference moves with the bytes: evhttp moves the chain into the connection's
     * output, and frees it (calling blob_written) once written or dropped */
    bool ok = buf && evbuffer_add_reference(buf, rs_blob_data(b), rs_blob_len(b), blob_written,
                                            rs_blob_ref(b)) == 0;
    if (buf && !ok)
        rs_blob_unref(b); /* the reference the chain did not take */
    if (ok)
        req_finish(r, status, buf, content_type, NULL, NULL);
    else
        rs_reply_error(r, 500, "INTERNAL", "out of memory");
    if (buf)
        evbuffer_free(buf);
}

void rs_req_add_header(rs_req *r, const char *name, const char *value)
{
    if (r->ereq && !r->gone)
        evhttp_add_header(evhttp_request_get_output_headers(r->ereq), name, value);
}

/* ---- request accessors ---- */

int64_t rs_req_id(const rs_req *r, int i)
{
    return i >= 0 && i < r->nids ? r->ids[i] : 0;
}

const char *rs_req_query(const rs_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

const char *rs_req_header(const rs_req *r, const char *name)
{
    return r->ereq ? evhttp_find_header(evhttp_request_get_input_headers(r->ereq), name) : NULL;
}

const char *rs_req_body(const rs_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body;
}

bool rs_req_gone(const rs_req *r)
{
    return r->gone;
}

void rs_req_set_data(rs_req *r, void *data)
{
    r->data = data;
}

void *rs_req_data(const rs_req *r)
{
    return r->data;
}

json_t *rs_req_json(rs_req *r)
{
    json_error_t jerr;
    json_t *root;

    if (r->json)
        return r->json;
    if (r->body_len == 0) {
        rs_reply_error(r, 400, "BAD_REQUEST", "a JSON object body is required");
        return NULL;
    }
    root = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rs_reply_error(r, 400, "BAD_REQUEST", "body is not valid JSON: %s (line %d, column %d)",
                       jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rs_reply_error(r, 400, "BAD_REQUEST", "body must be a JSON object");
        return NULL;
    }
    r->json = root;
    return root;
}

bool rs_json_get_string(rs_req *r, json_t *obj, const char *key, bool required, size_t max_len,
                        const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required)
            return true;
        rs_reply_error(r, 400, "BAD_REQUEST", "field '%s' is required", key);
        return false;
    }
    if (!json_is_string(v)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field '%s' must be a string", key);
        return false;
    }
    size_t n = rs_utf8_chars(json_string_value(v), json_string_length(v));
    if (n == 0 || n > max_len) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field '%s' must be 1..%zu characters", key, max_len);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool rs_json_get_int(rs_req *r, json_t *obj, const char *key, bool required, int64_t min,
                     int64_t max, int64_t *out, bool *present)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v)) {
        if (!required)
            return true;
        rs_reply_error(r, 400, "BAD_REQUEST", "field '%s' is required", key);
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field '%s' must be an integer in %lld..%lld", key,
                       (long long)min, (long long)max);
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    if (present)
        *present = true;
    return true;
}

/* ---- dispatch ---- */

static bool method_of(enum evhttp_cmd_type cmd, rs_method *out)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        *out = RS_GET;
        return true;
    case EVHTTP_REQ_POST:
        *out = RS_POST;
        return true;
    case EVHTTP_REQ_PATCH:
        *out = RS_PATCH;
        return true;
    case EVHTTP_REQ_DELETE:
        *out = RS_DELETE;
        return true;
    default:
        return false;
    }
}

/* A path split at '/' into at most RS_MAX_SEGMENTS pointers into buf. */
typedef struct path_segs {
    char buf[1024];
    const char *seg[RS_MAX_SEGMENTS];
    size_t n;
    bool ok; /* false: too long or too many segments (matches nothing) */
} path_segs;

static void split_path(const char *path, path_segs *ps)
{
    ps->n = 0;
    ps->ok = false;
    if (!path || path[0] != '/' || strlen(path) >= sizeof(ps->buf))
        return;
    strcpy(ps->buf, path + 1);
    char *p = ps->buf;
    for (;;) {
        if (ps->n == RS_MAX_SEGMENTS)
            return;
        ps->seg[ps->n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    ps->ok = true;
}

/* A positive int64 in plain decimal ("0", "-1", "01x", "9223372036854775808" are not). */
static bool parse_id(const char *s, int64_t *out)
{
    char *end;
    if (s[0] < '1' || s[0] > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0)
        return false;
    *out = v;
    return true;
}

typedef enum shape_match { SHAPE_NO, SHAPE_YES, SHAPE_BAD_ID } shape_match;

/* Literal segments equal and {id} segments non-empty; ids are parsed into r when given. */
static shape_match match_shape(const char *pattern, const path_segs *ps, int64_t *ids, int *nids)
{
    path_segs pat;
    bool bad_id = false;
    split_path(pattern, &pat);
    if (!pat.ok || !ps->ok || pat.n != ps->n)
        return SHAPE_NO;
    *nids = 0;
    for (size_t i = 0; i < pat.n; i++) {
        if (strcmp(pat.seg[i], "{id}") == 0) {
            if (ps->seg[i][0] == '\0')
                return SHAPE_NO;
            int64_t v = 0;
            if (!parse_id(ps->seg[i], &v))
                bad_id = true;
            if (*nids < RS_MAX_IDS)
                ids[(*nids)++] = v;
        } else if (strcmp(pat.seg[i], ps->seg[i]) != 0) {
            return SHAPE_NO;
        }
    }
    return bad_id ? SHAPE_BAD_ID : SHAPE_YES;
}

/* evhttp closes a connection (rs_edge's close callback, inside evhttp_connection_free):
 * its requests lose it. A request still attached to it is freed by evhttp right after
 * (one detached by a failure is not): forget it. A stream learns it from the loop. */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    rs_http *h = arg;
    rs_req *next;
    for (rs_req *r = h->live; r; r = next) {
        next = r->next;
        if (r->evcon != evcon)
            continue;
        if (r->ereq && evhttp_request_get_connection(r->ereq) != NULL)
            r->ereq = NULL;
        if (r->watch) { /* on the socket about to close */
            event_free(r->watch);
            r->watch = NULL;
        }
        if (r->phase == RQ_ENDING) {
            /* the end of a stream was being written: nobody waits for it any more */
            log_debug("stream closed before its end was written");
            req_unlink(r);
            req_free(r);
            continue;
        }
        r->gone = true;
        r->evcon = NULL;
        if (r->phase == RQ_STREAMING && r->on_gone)
            event_active(r->gone_ev, EV_TIMEOUT, 0);
        log_debug("client left before its answer");
    }
}

/* Closes a stream's connection now (its client went or must go). r is gone from here
 * (on_gone follows, if still wanted); evhttp_connection_free frees the request, still
 * attached, and calls conn_closed, which no longer finds r on it. */
static void stream_close_conn(rs_req *r)
{
    struct evhttp_connection *evcon = r->evcon;
    assert(r->phase == RQ_STREAMING && evcon != NULL && !r->gone);
    if (r->watch) { /* on the socket about to close */
        event_free(r->watch);
        r->watch = NULL;
    }
    r->ereq = NULL;
    r->evcon = NULL;
    r->gone = true;
    if (r->on_gone)
        event_active(r->gone_ev, EV_TIMEOUT, 0);
    evhttp_connection_free(evcon);
}

/* The client closed its side while we work on its request: gone, or only half-closed
 * and still reading (nothing tells them apart before a write): it gets its answer. A
 * stream's client that closed its side is gone: a stream only ends when we end it. */
static void on_peer_closed(evutil_socket_t fd, short what, void *arg)
{
    rs_req *r = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    r->peer_closed = true;
    event_free(r->watch);
    r->watch = NULL;
    if (r->phase == RQ_STREAMING && r->evcon) {
        log_debug("stream client closed its side: closing the stream");
        stream_close_conn(r);
        return;
    }
    log_debug("client closed its side before its answer");
}

/* ---- streams ---- */

static void on_stream_gone(evutil_socket_t fd, short what, void *arg)
{
    rs_req *r = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    rs_stream_gone_fn fn = r->on_gone;
    r->on_gone = NULL;
    if (fn && r->phase == RQ_STREAMING)
        fn(r, r->gone_arg);
}

cm_rc rs_stream_start(rs_req *r, const char *content_type, rs_stream_gone_fn on_gone, void *arg)
{
    r->gone_ev = event_new(r->h->base, -1, 0, on_stream_gone, r);
    if (!r->gone_ev)
        return CM_ERR;
    req_move(r, RQ_STREAMING);
    req_count(r, 200);
    r->on_gone = on_gone;
    r->gone_arg = arg;
    if (r->gone || !r->ereq || !r->evcon) {
        event_active(r->gone_ev, EV_TIMEOUT, 0);
        return CM_OK;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->ereq);
    evhttp_add_header(out, "Content-Type", content_type);
    evhttp_add_header(out, "Cache-Control", "no-cache");
    rs_cors_answer_headers(r->h->cors, rs_req_header(r, "Origin"), false, out);
    evhttp_send_reply_start(r->ereq, 200, NULL);
    r->chunked = evhttp_find_header(out, "Transfer-Encoding") != NULL; /* evhttp's choice */
    /* silence is normal on a stream: no read timeout; a write stuck that long fails it */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
    struct timeval wtv = {IDLE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(bev, NULL, &wtv);
    bufferevent_setwatermark(bev, EV_READ, 0, STREAM_INPUT_MAX);
    return CM_OK;
}

void rs_stream_write(rs_req *r, struct evbuffer *buf)
{
    assert(r->phase == RQ_STREAMING);
    if (r->gone || !r->ereq || !r->evcon) {
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return;
    }
    evhttp_send_reply_chunk(r->ereq, buf);
    evbuffer_drain(buf, evbuffer_get_length(buf)); /* what evhttp did not take (no body) */
}

struct rs_stream_piece {
    size_t refs;
    size_t hlen;  /* of the chunk header ("<hex>\r\n") at the start of bytes */
    size_t len;   /* of the data after it (then "\r\n") */
    char bytes[]; /* header, data, "\r\n" */
};

rs_stream_piece *rs_stream_piece_new(const char *data, size_t len)
{
    char hdr[24];
    size_t hlen = (size_t)snprintf(hdr, sizeof hdr, "%zx\r\n", len);
    rs_stream_piece *p = malloc(sizeof(*p) + hlen + len + 2);
    if (!p)
        return NULL;
    p->refs = 1;
    p->hlen = hlen;
    p->len = len;
    memcpy(p->bytes, hdr, hlen);
    memcpy(p->bytes + hlen, data, len);
    memcpy(p->bytes + hlen + len, "\r\n", 2);
    return p;
}

void rs_stream_piece_unref(rs_stream_piece *p)
{
    if (p && --p->refs == 0)
        free(p);
}

static void piece_written(const void *data, size_t len, void *arg)
{
    CM_UNUSED(data);
    CM_UNUSED(len);
    rs_stream_piece_unref(arg);
}

/* Straight into the connection's output: evhttp_send_reply_start left writing enabled
 * with no callback to run once written, so the bufferevent sends whatever is added (what
 * evhttp_send_reply_chunk does, less its three allocations per write). */
void rs_stream_write_piece(rs_req *r, rs_stream_piece *p)
{
    assert(r->phase == RQ_STREAMING);
    if (r->gone || !r->ereq || !r->evcon || p->len == 0)
        return;
    struct evbuffer *out = bufferevent_get_output(evhttp_connection_get_bufferevent(r->evcon));
    const char *start = r->chunked ? p->bytes : p->bytes + p->hlen;
    size_t n = r->chunked ? p->hlen + p->len + 2 : p->len;
    p->refs++;
    if (evbuffer_add_reference(out, start, n, piece_written, p) != 0)
        p->refs--;
}

size_t rs_stream_unsent(const rs_req *r)
{
    if (r->gone || !r->evcon)
        return 0;
    return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(r->evcon)));
}

/* evhttp wrote a stream's end (evhttp_send_done): the request is done. */
static void on_stream_written(struct evhttp_request *ereq, void *arg)
{
    rs_req *r = arg;
    assert(r->phase == RQ_ENDING);
    rs_edge_answered(r->h->edge, ereq);
    r->ereq = NULL; /* evhttp frees it after this callback */
    req_unlink(r);
    req_free(r);
}

/* A stream whose client is gone: free the detached request (if any) and r. */
static void stream_free_gone(rs_req *r)
{
    if (r->ereq)
        evhttp_send_reply_end(r->ereq); /* no connection: frees the request */
    r->ereq = NULL;
    req_unlink(r);
    req_free(r);
}

void rs_stream_end(rs_req *r)
{
    assert(r->phase == RQ_STREAMING);
    if (r->gone || !r->ereq || !r->evcon) {
        stream_free_gone(r);
        return;
    }
    /* the connection may serve a next request: the idle rules again (rs_edge gates its
     * next head once the end is written) */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    evhttp_connection_set_timeout(r->evcon, IDLE_TIMEOUT_S);
    req_move(r, RQ_ENDING);
    evhttp_request_set_on_complete_cb(r->ereq, on_stream_written, r);
    /* may complete (on_stream_written frees r) before it returns */
    evhttp_send_reply_end(r->ereq);
}

void rs_stream_abort(rs_req *r)
{
    assert(r->phase == RQ_STREAMING);
    if (r->gone || !r->ereq || !r->evcon) {
        stream_free_gone(r);
        return;
    }
    r->on_gone = NULL;    /* finished by its owner: nobody to tell */
    stream_close_conn(r); /* r->ereq forgotten: evhttp freed it */
    stream_free_gone(r);
}

/* Starts watching for the client leaving, where the backend can tell (epoll can). */
static void req_watch(rs_req *r)
{
    struct bufferevent *bev = r->evcon ? evhttp_connection_get_bufferevent(r->evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || !(event_base_get_features(r->h->base) & EV_FEATURE_EARLY_CLOSE))
        return;
    r->watch = event_new(r->h->base, fd, EV_CLOSED, on_peer_closed, r);
    if (r->watch && event_add(r->watch, NULL) != 0) {
        event_free(r->watch);
        r->watch = NULL;
    }
}

static rs_req *req_new(rs_http *h, struct evhttp_request *ereq)
{
    rs_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->h = h;
    r->ereq = ereq;
    r->start_us = cm_now_us();
    TAILQ_INIT(&r->query);
    r->evcon = evhttp_request_get_connection(ereq);
    r->next = h->live;
    if (h->live)
        h->live->prev = r;
    h->live = r;
    h->in_flight++;
    return r;
}

/* Copies the body out of evhttp so it stays readable whatever happens to the request. */
static bool req_copy_body(rs_req *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ereq);
    size_t len = evbuffer_get_length(in);
    r->body = malloc(len + 1);
    if (!r->body)
        return false;
    if (len > 0 && evbuffer_copyout(in, r->body, len) != (ev_ssize_t)len)
        return false;
    r->body[len] = '\0';
    r->body_len = len;
    return true;
}

/* "GET, PATCH, OPTIONS": the methods of the routes of this shape (ps NULL: of every
 * route), then OPTIONS, which every served path answers. */
static void allowed_methods(const rs_http *h, const path_segs *ps, char *allow, size_t len)
{
    allow[0] = '\0';
    for (size_t i = 0; i < h->nroutes; i++) {
        int64_t ids[RS_MAX_IDS];
        int nids;
        if (ps != NULL && match_shape(h->routes[i]->pattern, ps, ids, &nids) == SHAPE_NO)
            continue;
        const char *m = method_label(h->routes[i]->method);
        if (strstr(allow, m))
            continue;
        size_t used = strlen(allow);
        snprintf(allow + used, len - used, "%s, ", m);
    }
    size_t used = strlen(allow);
    snprintf(allow + used, len - used, "OPTIONS");
}

/* An error answer that also says which methods the path serves. */
static void reply_error_allow(rs_req *r, int status, const char *code, const char *allow,
                              const char *fmt, ...) CM_PRINTF(5, 6);

static void reply_error_allow(rs_req *r, int status, const char *code, const char *allow,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(r, status, code, NULL, "Allow", allow, fmt, ap);
    va_end(ap);
}

/* Whether method is one of the comma-separated list (exact tokens: methods are
 * case-sensitive). */
static bool method_listed(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; n > 0 && (p = strstr(p, method)) != NULL; p += n) {
        bool starts = p == list || p[-1] == ' ';
        if (starts && (p[n] == '\0' || p[n] == ','))
            return true;
    }
    return false;
}

/*
 * OPTIONS on a served path (RFC 9110 §9.3.7): 204 with "Allow". A CORS preflight (Origin
 * and Access-Control-Request-Method, CORS on) gets, for an allowed origin and a method
 * the path serves, 204 with the preflight headers of rs_cors; otherwise 403 FORBIDDEN
 * without Access-Control-Allow-Origin, so the browser refuses the request it announced.
 * With CORS off a preflight is a plain OPTIONS: its answer has no CORS header, which a
 * browser reads as a refusal too.
 */
static void answer_options(rs_req *r, const path_segs *ps, const char *path)
{
    rs_http *h = r->h;
    const char *origin = rs_req_header(r, "Origin");
    const char *want = rs_req_header(r, "Access-Control-Request-Method");
    char allow[64];

    allowed_methods(h, ps, allow, sizeof(allow));
    r->stats = &h->options;
    if (!rs_cors_on(h->cors) || origin == NULL || want == NULL) {
        req_finish(r, 204, NULL, NULL, "Allow", allow);
        return;
    }
    if (rs_cors_allow_origin(h->cors, origin) == NULL) {
        r->cors_refused = true;
        reply_error_allow(r, 403, "FORBIDDEN", allow,
                          "origin %s may not call this API (cors.allow_origins)", origin);
        return;
    }
    if (!method_listed(allow, want)) {
        r->cors_refused = true;
        reply_error_allow(r, 403, "FORBIDDEN", allow, "%s is not served on %s (allowed: %s)", want,
                          path, allow);
        return;
    }
    rs_cors_preflight_headers(allow, evhttp_request_get_output_headers(r->ereq));
    req_finish(r, 204, NULL, NULL, "Allow", allow);
}

static void dispatch(struct evhttp_request *ereq, void *arg)
{
    rs_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ereq);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    rs_req *r = req_new(h, ereq);
    path_segs ps;
    rs_method m = RS_GET;
    bool known_method;
    bool shape_found = false;
    bool id_ok = false; /* some route's shape matched with valid ids */

    if (!r) {
        log_error("out of memory for a request");
        evhttp_send_error(ereq, 500, NULL);
        return;
    }
    if (!req_copy_body(r)) {
        rs_reply_error(r, 500, "INTERNAL", "out of memory");
        return;
    }
    rs_edge_verdict verdict;
    if (rs_edge_verdict_of(h->edge, ereq, &verdict)) {
        r->close = true;
        rs_reply_error(r, verdict.status, verdict.code, "%s", verdict.message);
        return;
    }
    rs_edge_dispatched(h->edge, ereq);
    if (h->stopping) {
        rs_reply_error(r, 503, "UNAVAILABLE", "the server is stopping");
        return;
    }
    if (r->body_len > h->max_body) {
        rs_reply_error(r, 413, "TOO_LARGE", "body is %zu bytes, the limit is %zu", r->body_len,
                       h->max_body);
        return;
    }
    if (query && evhttp_parse_query_str(query, &r->query) != 0) {
        rs_reply_error(r, 400, "BAD_REQUEST", "malformed query string");
        return;
    }
    if (evhttp_request_get_command(ereq) == EVHTTP_REQ_OPTIONS && path && strcmp(path, "*") == 0) {
        /* "OPTIONS *": the server as a whole (RFC 9110 §9.3.7) */
        char allow[64];
        allowed_methods(h, NULL, allow, sizeof(allow));
        r->stats = &h->options;
        req_finish(r, 204, NULL, NULL, "Allow", allow);
        return;
    }
    split_path(path, &ps);
    known_method = method_of(evhttp_request_get_command(ereq), &m);
    for (size_t i = 0; i < h->nroutes; i++) {
        const rs_route *rt = h->routes[i];
        shape_match sm = match_shape(rt->pattern, &ps, r->ids, &r->nids);
        if (sm == SHAPE_NO)
            continue;
        shape_found = true;
        id_ok = id_ok || sm == SHAPE_YES;
        if (!known_method || rt->method != m)
            continue;
        r->stats = h->stats[i];
        if (sm == SHAPE_BAD_ID) {
            rs_reply_error(r, 404, "NOT_FOUND", "no such resource: %s", path);
            return;
        }
        req_watch(r);
        r->route = rt;
        if (h->gate)
            h->gate(r, rt->access);
        else
            rt->handler(r);
        return;
    }
    if (evhttp_request_get_command(ereq) == EVHTTP_REQ_OPTIONS && shape_found) {
        if (id_ok)
            answer_options(r, &ps, path);
        else
            rs_reply_error(r, 404, "NOT_FOUND", "no such resource: %s", path);
        return;
    }
    if (shape_found) {
        char allow[64];
        allowed_methods(h, &ps, allow, sizeof(allow));
        reply_error_allow(r, 405, "METHOD_NOT_ALLOWED", allow,
                          "%s is not allowed on %s (allowed: %s)",
                          known_method ? method_label(m) : "this method", path, allow);
        return;
    }
    rs_reply_error(r, 404, "NOT_FOUND", "no such path: %s", path ? path : "?");
}

void rs_http_set_gate(rs_http *h, rs_gate gate)
{
    h->gate = gate;
}

void rs_http_admit(rs_req *r)
{
    assert(r->route != NULL);
    r->route->handler(r);
}

const rs_caller *rs_req_caller(const rs_req *r)
{
    return &r->caller;
}

void rs_req_set_caller(rs_req *r, const rs_caller *c)
{
    r->caller = *c;
}

const char *rs_req_peer(const rs_req *r)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    if (!r->evcon)
        return "";
    evhttp_connection_get_peer(r->evcon, &host, &port);
    return host ? host : "";
}

cm_rc rs_http_listen(rs_http *h, const cm_addr *addr)
{
    ev_ssize_t limit = (ev_ssize_t)(h->max_body + RS_EDGE_BODY_SLACK);
    evhttp_set_gencb(h->http, dispatch, h);
    evhttp_set_timeout(h->http, IDLE_TIMEOUT_S);
    evhttp_set_max_body_size(h->http, limit);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    h->bound = evhttp_bind_socket_with_handle(h->http, addr->host, (ev_uint16_t)addr->port);
    if (!h->bound) {
        char a[CM_HOST_MAX + 16];
        log_error("cannot listen on %s: %s", cm_addr_format(addr, a, sizeof(a)), strerror(errno));
        return CM_ERR;
    }
    rs_edge_attach_listener(h->edge, evhttp_bound_socket_get_listener(h->bound));
    return CM_OK;
}

void rs_http_stop_accepting(rs_http *h)
{
    h->stopping = true;
    if (h->bound) {
        rs_edge_detach_listener(h->edge);
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
}

size_t rs_http_in_flight(const rs_http *h)
{
    return h->in_flight + h->sending;
}

void rs_http_free(rs_http *h)
{
    if (!h)
        return;
    /* Requests still unanswered: evhttp_free frees their evhttp_requests, so forget them. */
    while (h->live) {
        rs_req *r = h->live;
        log_warn("request unanswered at shutdown (route %s)", r->stats ? r->stats->name : "-");
        req_unlink(r);
        req_free(r);
    }
    if (h->bound)
        rs_edge_detach_listener(h->edge);
    if (h->http)
        evhttp_free(h->http); /* closes every connection: rs_edge frees its own with them */
    rs_edge_free(h->edge);
    for (size_t i = 0; i < h->nroutes; i++)
        free(h->stats[i]);
    free(h->stats);
    free(h->routes);
    free(h);
}

static void stats_render(const rs_route_stats *st, cm_strbuf *out)
{
    for (int code = 0; code < RS_STATUS_MAX; code++) {
        if (st->by_status[code] == 0)
            continue;
        cm_strbuf_printf(out,
                         "reserved_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\","
                         "class=\"%dxx\"} %llu\n",
                         st->name, st->method, code, code / 100,
                         (unsigned long long)st->by_status[code]);
    }
}

/* One histogram family for every route: HELP/TYPE only before the first series. */
static void hist_render(const rs_route_stats *st, bool first, cm_strbuf *out)
{
    char labels[160];
    cm_strbuf tmp = CM_STRBUF_INIT;
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"", st->name, st->method);
    cm_hist_format(&st->latency, "reserved_http_request_seconds",
                   "HTTP request latency, received to answered", labels, &tmp);
    for (const char *line = cm_strbuf_str(&tmp); *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (first || line[0] != '#')
            cm_strbuf_append(out, line, len);
        line += len;
    }
    cm_strbuf_free(&tmp);
}

void rs_http_metrics(const rs_http *h, cm_strbuf *out)
{
    bool first = true;
    cm_strbuf_printf(out, "# HELP reserved_http_requests_total HTTP requests answered, by route "
                          "and status\n# TYPE reserved_http_requests_total counter\n");
    for (size_t i = 0; i < h->nroutes; i++)
        stats_render(h->stats[i], out);
    stats_render(&h->unrouted, out);
    stats_render(&h->options, out);
    cm_strbuf_printf(out,
                     "# HELP reserved_http_in_flight requests accepted and not answered\n"
                     "# TYPE reserved_http_in_flight gauge\nreserved_http_in_flight %zu\n",
                     h->in_flight);
    cm_strbuf_printf(out,
                     "# HELP reserved_http_answers_dropped_total answers to clients that had "
                     "closed their side first (sent all the same: a half-closed one reads "
                     "them)\n# TYPE reserved_http_answers_dropped_total counter\n"
                     "reserved_http_answers_dropped_total %llu\n",
                     (unsigned long long)h->dropped);
    rs_edge_metrics(h->edge, out);
    for (size_t i = 0; i < h->nroutes + 2; i++) {
        const rs_route_stats *st = i < h->nroutes    ? h->stats[i]
                                   : i == h->nroutes ? &h->unrouted
                                                     : &h->options;
        if (st->latency.count == 0)
            continue;
        hist_render(st, first, out);
        first = false;
    }
}
