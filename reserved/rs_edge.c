/*
 * rs_edge: see rs_edge.h. The head gate rests on two public hooks of libevent 2.1: the
 * bufferevent evhttp gets from us (evhttp_set_bevcb), whose read watermarks keep
 * evhttp's read callback from running (low above high) while the socket is still read
 * up to max_header_bytes + 1 bytes, and a callback on that bufferevent's input buffer,
 * which sees every read before evhttp does. The connection's evhttp_connection is only
 * known once evhttp has set its own callbacks on the bufferevent, right after the accept:
 * a one-shot "capture" event picks it up there and installs the close callback.
 */
#include "rs_edge.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_strbuf.h"
#include "cm_time.h"
#include "rs_utf8.h"

#define ACCEPT_BACKOFF_MS 100   /* accept paused this long after EMFILE and the like */
#define RATE_LOG_MS       10000 /* at most one accept-error line this often */
#define EDGE_HEADER       "X-Reserved-Edge"
#define SECRET_HEX        32
#define HASH_BUCKETS      4096

/* Where a connection is in its current request's head. */
typedef enum ec_state {
    EC_NEW,        /* accepted; evhttp's connection not picked up yet (capture pending) */
    EC_HEAD,       /* gated: the head is held back from evhttp until complete and checked;
                      the deadline runs from the accept or the head's first byte */
    EC_PASSED,     /* the checked head went to evhttp, which reads the body */
    EC_DISPATCHED, /* the request is with rs_http's handler until its answer is written */
    EC_PIPELINED,  /* answered with bytes of a next request already buffered: evhttp parses
                      them ungated; the deadline runs, and closes the connection */
    EC_REFUSED,    /* the head was refused: evhttp has our verdict; the connection ends */
} ec_state;

static const char *const ec_names[] = {"new",        "head",      "passed",
                                       "dispatched", "pipelined", "refused"};

/* Why a head was refused (the verdict's reason on the wire). */
typedef enum edge_reason {
    ER_HEAD_TOO_LARGE, /* 431 */
    ER_TIMEOUT,        /* 408 */
    ER_BAD_LINE,       /* 400: the request line */
    ER_BAD_TARGET,     /* 400: the request target is not UTF-8 or has control bytes */
    ER_BAD_HEADER,     /* 400: a header line */
    ER_BAD_LENGTH,     /* 400: Content-Length */
    ER_BODY_TOO_LARGE, /* 413 */
    ER_EXPECT,         /* 417 */
    ER_METHOD,         /* 501 */
    ER_N
} edge_reason;

typedef struct rs_edge_conn rs_edge_conn;
struct rs_edge_conn {
    rs_edge *e;
    ec_state state;
    struct bufferevent *bev;         /* evhttp's; ours to find the connection by */
    struct evhttp_connection *evcon; /* NULL until captured */
    struct evbuffer_cb_entry *in_cb; /* on bev's input */
    struct event *capture;           /* one-shot, right after the accept */
    struct event *deadline;          /* header_timeout_ms for the current head */
    rs_edge_conn *hnext;             /* hash chain by bev */
    rs_edge_conn *prev, *next;       /* every connection */
};

struct rs_edge {
    struct event_base *base;
    struct evhttp *http;
    rs_edge_opts o;
    rs_edge_close_fn on_close;
    void *on_close_arg;
    char secret[SECRET_HEX + 1];
    struct evconnlistener *lev; /* borrowed; NULL when detached */
    struct event *backoff;      /* accept paused after a descriptor shortage */
    bool full;                  /* accept paused at max_connections */
    bool paused;                /* the listener is disabled */
    bool backing_off;
    uint64_t last_log_ms;
    uint64_t errors_unlogged;
    rs_edge_conn *hash[HASH_BUCKETS];
    rs_edge_conn *all;
    size_t nconns;
    uint64_t refused[ER_N];
    uint64_t accept_pauses;
    uint64_t full_pauses;
};

/* ---- connection states ---- */

static bool ec_legal(ec_state from, ec_state to)
{
    switch (from) {
    case EC_NEW:
        return to == EC_HEAD;
    case EC_HEAD:
        return to == EC_PASSED || to == EC_REFUSED;
    case EC_PASSED:
        return to == EC_DISPATCHED;
    case EC_DISPATCHED:
        return to == EC_HEAD || to == EC_PIPELINED;
    case EC_PIPELINED:
        return to == EC_DISPATCHED;
    case EC_REFUSED:
        return false;
    }
    return false;
}

static void ec_move(rs_edge_conn *c, ec_state to)
{
    bool legal = ec_legal(c->state, to);
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("edge conn %p: %s -> %s", (void *)c, ec_names[c->state], ec_names[to]);
    c->state = to;
}

static size_t bucket_of(const struct bufferevent *bev)
{
    uintptr_t v = (uintptr_t)bev;
    return (size_t)((v >> 4) ^ (v >> 16)) % HASH_BUCKETS;
}

static rs_edge_conn *conn_find(const rs_edge *e, const struct bufferevent *bev)
{
    for (rs_edge_conn *c = e->hash[bucket_of(bev)]; c; c = c->hnext)
        if (c->bev == bev)
            return c;
    return NULL;
}

/* ---- the listener ---- */

static void listener_update(rs_edge *e)
{
    if (!e->lev)
        return;
    bool was_full = e->full;
    e->full = e->nconns >= e->o.max_connections;
    if (e->full && !was_full) {
        e->full_pauses++;
        log_warn("%zu connections (limits.max_connections): not accepting until one closes",
                 e->nconns);
    }
    bool pause = e->full || e->backing_off;
    if (pause == e->paused)
        return;
    e->paused = pause;
    if (pause)
        evconnlistener_disable(e->lev);
    else
        evconnlistener_enable(e->lev);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    rs_edge *e = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    e->backing_off = false;
    listener_update(e);
}

/* The listener's error callback gets the listener's argument, which is evhttp's: the
 * rs_edge in charge of the (one) listener is found here instead. */
static rs_edge *listener_edge;

/* accept() failed with something other than EAGAIN/EINTR/ECONNABORTED. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    rs_edge *e = listener_edge;
    CM_UNUSED(arg);
    if (!e || e->lev != lev)
        return;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = cm_tv_from_ms(ACCEPT_BACKOFF_MS);
    uint64_t now = cm_now_ms();

    e->accept_pauses++;
    e->errors_unlogged++;
    if (e->last_log_ms == 0 || now - e->last_log_ms >= RATE_LOG_MS) {
        log_warn("accept: %s (%zu connections open): pausing accept for %d ms (%" PRIu64
                 " such errors since the last line)",
                 strerror(err), e->nconns, ACCEPT_BACKOFF_MS, e->errors_unlogged);
        e->last_log_ms = now;
        e->errors_unlogged = 0;
    }
    /* Whatever the error, retrying at once is what spins: wait, then try again. */
    e->backing_off = true;
    evtimer_add(e->backoff, &tv);
    listener_update(e);
}

void rs_edge_attach_listener(rs_edge *e, struct evconnlistener *lev)
{
    e->lev = lev;
    listener_edge = e;
    evconnlistener_set_error_cb(lev, on_accept_error);
    listener_update(e);
}

void rs_edge_detach_listener(rs_edge *e)
{
    if (e->lev)
        evconnlistener_set_error_cb(e->lev, NULL);
    if (listener_edge == e)
        listener_edge = NULL;
    e->lev = NULL;
    e->paused = false;
    evtimer_del(e->backoff);
    e->backing_off = false;
}

/* ---- the head gate ---- */

static void gate(struct bufferevent *bev, size_t max_header)
{
    /* Read at most max + 1 bytes; evhttp's read callback needs max + 2: never. */
    bufferevent_setwatermark(bev, EV_READ, max_header + 2, max_header + 1);
}

static void ungate(struct bufferevent *bev)
{
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
}

static void deadline_start(rs_edge_conn *c)
{
    struct timeval tv = cm_tv_from_ms(c->e->o.header_timeout_ms);
    evtimer_add(c->deadline, &tv);
}

#define ORIGIN_MAX 256

/* The client's Origin, kept for the verdict's CORS headers when it is plain printable
 * ASCII (it goes into a header line of ours). */
typedef struct edge_origin {
    char value[ORIGIN_MAX + 1]; /* "" = none */
} edge_origin;

static void origin_keep(edge_origin *o, const unsigned char *v, size_t n)
{
    if (n == 0 || n > ORIGIN_MAX)
        return;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7E)
            return;
    memcpy(o->value, v, n);
    o->value[n] = '\0';
}

/* Replaces the held-back head by our verdict and lets evhttp read it. */
static void refuse(rs_edge_conn *c, edge_reason why, int64_t num, const edge_origin *origin,
                   bool trigger)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bool has_origin = origin != NULL && origin->value[0] != '\0';
    c->e->refused[why]++;
    ec_move(c, EC_REFUSED);
    evtimer_del(c->deadline);
    evbuffer_drain(in, evbuffer_get_length(in));
    /* Outside a read the socket bufferevent keeps its input's end frozen. */
    if (trigger)
        evbuffer_unfreeze(in, 0);
    int added = evbuffer_add_printf(in,
                                    "GET / HTTP/1.1\r\n" EDGE_HEADER ": %s %d %" PRId64
                                    "\r\n%s%s%sConnection: close\r\n\r\n",
                                    c->e->secret, (int)why, num, has_origin ? "Origin: " : "",
                                    has_origin ? origin->value : "", has_origin ? "\r\n" : "");
    if (trigger)
        evbuffer_freeze(in, 0);
    if (added < 0) {
        log_error("out of memory for a refusal: closing the connection");
        evhttp_connection_free(c->evcon); /* its close callback frees c */
        return;
    }
    ungate(c->bev);
    if (trigger)
        bufferevent_trigger(c->bev, EV_READ, 0);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    rs_edge_conn *c = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    if (c->state == EC_HEAD) {
        refuse(c, ER_TIMEOUT, 0, NULL, true);
    } else if (c->state == EC_PIPELINED) {
        /* evhttp has parsed part of it: no verdict can replace it, so the connection
         * goes (its close callback frees c) */
        c->e->refused[ER_TIMEOUT]++;
        log_debug("edge conn %p: pipelined head too slow, closing", (void *)c);
        evhttp_connection_free(c->evcon);
    }
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool method_served(const unsigned char *m, size_t n)
{
    static const char *const served[] = {"GET",   "POST",    "PUT", "DELETE",
                                         "PATCH", "OPTIONS", "HEAD"};
    for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++)
        if (strlen(served[i]) == n && memcmp(served[i], m, n) == 0)
            return true;
    return false;
}

/* "METHOD SP target SP HTTP/d.d" */
static bool check_request_line(const unsigned char *p, size_t n, edge_reason *why)
{
    const unsigned char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p) {
        *why = ER_BAD_LINE;
        return false;
    }
    size_t mlen = (size_t)(sp1 - p);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar(p[i])) {
            *why = ER_BAD_LINE;
            return false;
        }
    const unsigned char *t = sp1 + 1;
    const unsigned char *sp2 = memchr(t, ' ', n - (size_t)(t - p));
    if (!sp2 || sp2 == t) {
        *why = ER_BAD_LINE;
        return false;
    }
    const unsigned char *v = sp2 + 1;
    size_t vlen = n - (size_t)(v - p);
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9') {
        *why = ER_BAD_LINE;
        return false;
    }
    size_t tlen = (size_t)(sp2 - t);
    for (size_t i = 0; i < tlen; i++)
        if (t[i] <= 0x20 || t[i] == 0x7F) {
            *why = ER_BAD_TARGET;
            return false;
        }
    if (!rs_utf8_valid((const char *)t, tlen)) {
        *why = ER_BAD_TARGET;
        return false;
    }
    if (!method_served(p, mlen)) {
        *why = ER_METHOD;
        return false;
    }
    return true;
}

static bool header_is(const unsigned char *p, size_t namelen, const char *name)
{
    return strlen(name) == namelen && strncasecmp((const char *)p, name, namelen) == 0;
}

/* One header line "name: value" (no CR/LF); folded lines are evhttp's. */
static bool check_header(const rs_edge *e, const unsigned char *p, size_t n, edge_reason *why,
                         int64_t *num, edge_origin *origin)
{
    const unsigned char *colon = memchr(p, ':', n);
    if (!colon || colon == p) {
        *why = ER_BAD_HEADER;
        return false;
    }
    size_t nlen = (size_t)(colon - p);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar(p[i])) {
            *why = ER_BAD_HEADER;
            return false;
        }
    const unsigned char *v = colon + 1;
    const unsigned char *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (header_is(p, nlen, "Content-Length")) {
        int64_t len = 0;
        if (vlen == 0 || vlen > 18) {
            *why = vlen == 0 ? ER_BAD_LENGTH : ER_BODY_TOO_LARGE;
            *num = -1;
            return false;
        }
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9') {
                *why = ER_BAD_LENGTH;
                return false;
            }
            len = len * 10 + (v[i] - '0');
        }
        if ((uint64_t)len > (uint64_t)e->o.max_body_bytes + RS_EDGE_BODY_SLACK) {
            *why = ER_BODY_TOO_LARGE;
            *num = len;
            return false;
        }
    } else if (header_is(p, nlen, "Origin")) {
        origin_keep(origin, v, vlen);
    } else if (header_is(p, nlen, "Expect")) {
        if (vlen != 12 || strncasecmp((const char *)v, "100-continue", 12) != 0) {
            *why = ER_EXPECT;
            return false;
        }
    }
    return true;
}

/* The head p[0..n) (up to and with its empty line): whether evhttp may have it. */
static bool check_head(const rs_edge *e, const unsigned char *p, size_t n, edge_reason *why,
                       int64_t *num, edge_origin *origin)
{
    size_t start = 0;
    bool first = true;
    bool ok = true;
    while (start < n) {
        const unsigned char *nl = memchr(p + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - p) : n;
        size_t len = end - start;
        if (len > 0 && p[start + len - 1] == '\r')
            len--;
        if (len == 0)
            return !first ? ok : (*why = ER_BAD_LINE, false);
        if (first) {
            if (!check_request_line(p + start, len, why))
                return false;
            first = false;
        } else if (p[start] != ' ' && p[start] != '\t') {
            /* after the first bad line the rest is still read, for its Origin (the
             * verdict's CORS headers) */
            edge_reason w = ER_BAD_HEADER;
            int64_t nm = 0;
            if (!check_header(e, p + start, len, &w, &nm, origin) && ok) {
                ok = false;
                *why = w;
                *num = nm;
            }
        }
        start = end + 1;
    }
    return ok;
}

/* Where the head ends (just past its empty line) in p[0..n), or 0 while incomplete. */
static size_t head_end(const unsigned char *p, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        size_t len = i - line;
        if (len > 0 && p[i - 1] == '\r')
            len--;
        if (len == 0)
            return i + 1; /* an empty line: the end (or, first, a malformed request line) */
        line = i + 1;
    }
    return 0;
}

/* Every change of the input buffer; reads add to it before evhttp sees them. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    rs_edge_conn *c = arg;
    rs_edge *e = c->e;
    if (info->n_added == 0 || c->state != EC_HEAD)
        return;
    if (!evtimer_pending(c->deadline, NULL))
        deadline_start(c); /* the first byte of a kept-alive connection's next head */
    size_t have = evbuffer_get_length(in);
    size_t look = have < e->o.max_header_bytes + 1 ? have : e->o.max_header_bytes + 1;
    const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)look);
    size_t end = p ? head_end(p, look) : 0;
    if (end == 0) {
        if (have > e->o.max_header_bytes)
            refuse(c, ER_HEAD_TOO_LARGE, 0, NULL, false);
        return; /* the socket's read callback goes on after us; evhttp stays gated */
    }
    edge_reason why = ER_BAD_LINE;
    int64_t num = 0;
    edge_origin origin = {.value = ""};
    if (!check_head(e, p, end, &why, &num, &origin)) {
        refuse(c, why, num, &origin, false);
        return;
    }
    evtimer_del(c->deadline);
    ec_move(c, EC_PASSED);
    ungate(c->bev); /* the socket's read callback calls evhttp's right after us */
}

/* ---- connections ---- */

static void conn_free(rs_edge_conn *c)
{
    rs_edge *e = c->e;
    rs_edge_conn **pp = &e->hash[bucket_of(c->bev)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    if (c->prev)
        c->prev->next = c->next;
    else
        e->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    e->nconns--;
    if (c->in_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    if (c->capture)
        event_free(c->capture);
    if (c->deadline)
        event_free(c->deadline);
    free(c);
    listener_update(e);
}

static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    rs_edge_conn *c = arg;
    rs_edge *e = c->e;
    log_debug("edge conn %p: closed in state %s", (void *)c, ec_names[c->state]);
    e->on_close(evcon, e->on_close_arg);
    conn_free(c);
}

/* Right after the accept: evhttp has set its callbacks (argument: its connection). */
static void on_capture(evutil_socket_t fd, short what, void *arg)
{
    rs_edge_conn *c = arg;
    bufferevent_data_cb readcb = NULL;
    void *cbarg = NULL;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    bufferevent_getcb(c->bev, &readcb, NULL, NULL, &cbarg);
    struct bufferevent *bev = c->bev;
    if (readcb == NULL || cbarg == NULL) {
        /* evhttp dropped the connection while accepting it (bufferevent_free clears the
         * callbacks; our reference kept the memory) */
        conn_free(c);
        bufferevent_decref(bev);
        return;
    }
    c->evcon = cbarg;
    evhttp_connection_set_closecb(c->evcon, on_conn_closed, c);
    ec_move(c, EC_HEAD);
    bufferevent_decref(bev);
    /* bytes may have come with the accept: look at them now */
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) > 0) {
        struct evbuffer_cb_info info = {.orig_size = 0, .n_added = evbuffer_get_length(in)};
        on_input(in, &info, c);
        if (c->state != EC_HEAD)
            bufferevent_trigger(bev, EV_READ, 0);
    }
}

/* evhttp's bufferevent callback: a connection was just accepted. */
static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    rs_edge *e = arg;
    rs_edge_conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c || !bev) {
        free(c);
        if (bev)
            bufferevent_free(bev);
        log_error("out of memory for a connection");
        return NULL; /* evhttp makes its own, ungated */
    }
    c->e = e;
    c->state = EC_NEW;
    c->bev = bev;
    c->capture = event_new(base, -1, 0, on_capture, c);
    c->deadline = evtimer_new(base, on_deadline, c);
    c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    size_t b = bucket_of(bev);
    c->hnext = e->hash[b];
    e->hash[b] = c;
    c->next = e->all;
    if (e->all)
        e->all->prev = c;
    e->all = c;
    e->nconns++;
    if (!c->capture || !c->deadline || !c->in_cb) {
        log_error("out of memory for a connection");
        conn_free(c);
        bufferevent_free(bev);
        return NULL;
    }
    gate(bev, e->o.max_header_bytes);
    bufferevent_incref(bev); /* until the capture: memory stays valid whatever evhttp does */
    event_active(c->capture, 0, 0);
    deadline_start(c);
    listener_update(e); /* inside the accept loop: pausing stops it after this one */
    return bev;
}

/* ---- the verdict ---- */

bool rs_edge_verdict_of(const rs_edge *e, struct evhttp_request *ereq, rs_edge_verdict *v)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(ereq), EDGE_HEADER);
    int reason = -1;
    long long num = 0;
    if (!h || strncmp(h, e->secret, SECRET_HEX) != 0 ||
        sscanf(h + SECRET_HEX, " %d %lld", &reason, &num) != 2 || reason < 0 || reason >= ER_N)
        return false;
    switch ((edge_reason)reason) {
    case ER_HEAD_TOO_LARGE:
        *v = (rs_edge_verdict){.status = 431, .code = "HEADERS_TOO_LARGE"};
        snprintf(v->message, sizeof(v->message),
                 "the request line and headers exceed %zu bytes (limits.max_header_bytes)",
                 e->o.max_header_bytes);
        break;
    case ER_TIMEOUT:
        *v = (rs_edge_verdict){.status = 408, .code = "REQUEST_TIMEOUT"};
        snprintf(v->message, sizeof(v->message),
                 "the request line and headers did not arrive within %" PRIu32
                 " ms (limits.header_timeout_ms)",
                 e->o.header_timeout_ms);
        break;
    case ER_BAD_LINE:
        *v = (rs_edge_verdict){.status = 400, .code = "BAD_REQUEST"};
        snprintf(v->message, sizeof(v->message), "malformed request line");
        break;
    case ER_BAD_TARGET:
        *v = (rs_edge_verdict){.status = 400, .code = "BAD_REQUEST"};
        snprintf(v->message, sizeof(v->message),
                 "the request target must be UTF-8 without control characters");
        break;
    case ER_BAD_HEADER:
        *v = (rs_edge_verdict){.status = 400, .code = "BAD_REQUEST"};
        snprintf(v->message, sizeof(v->message), "malformed header line");
        break;
    case ER_BAD_LENGTH:
        *v = (rs_edge_verdict){.status = 400, .code = "BAD_REQUEST"};
        snprintf(v->message, sizeof(v->message), "malformed Content-Length");
        break;
    case ER_BODY_TOO_LARGE:
        *v = (rs_edge_verdict){.status = 413, .code = "TOO_LARGE"};
        if (num >= 0)
            snprintf(v->message, sizeof(v->message), "body is %lld bytes, the limit is %zu", num,
                     e->o.max_body_bytes);
        else
            snprintf(v->message, sizeof(v->message), "body is over the limit of %zu bytes",
                     e->o.max_body_bytes);
        break;
    case ER_EXPECT:
        *v = (rs_edge_verdict){.status = 417, .code = "EXPECTATION_FAILED"};
        snprintf(v->message, sizeof(v->message), "only Expect: 100-continue is supported");
        break;
    case ER_METHOD:
    case ER_N:
        *v = (rs_edge_verdict){.status = 501, .code = "NOT_IMPLEMENTED"};
        snprintf(v->message, sizeof(v->message), "this method is not served");
        break;
    }
    return true;
}

static rs_edge_conn *conn_of(const rs_edge *e, struct evhttp_request *ereq)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ereq);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? conn_find(e, bev) : NULL;
}

void rs_edge_dispatched(rs_edge *e, struct evhttp_request *ereq)
{
    rs_edge_conn *c = conn_of(e, ereq);
    if (!c || (c->state != EC_PASSED && c->state != EC_PIPELINED))
        return;
    evtimer_del(c->deadline);
    ec_move(c, EC_DISPATCHED);
}

void rs_edge_answered(rs_edge *e, struct evhttp_request *ereq)
{
    rs_edge_conn *c = conn_of(e, ereq);
    if (!c || c->state != EC_DISPATCHED)
        return;
    /* evhttp reads the next head right after this (its deferred read of what is
     * buffered ignores watermarks): a buffered one cannot be held back any more. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        ec_move(c, EC_PIPELINED);
        deadline_start(c);
        return;
    }
    ec_move(c, EC_HEAD);
    gate(c->bev, e->o.max_header_bytes);
}

/* ---- the module ---- */

rs_edge *rs_edge_new(struct event_base *base, struct evhttp *http, const rs_edge_opts *o,
                     rs_edge_close_fn on_close, void *arg)
{
    unsigned char raw[SECRET_HEX / 2];
    rs_edge *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->base = base;
    e->http = http;
    e->o = *o;
    e->on_close = on_close;
    e->on_close_arg = arg;
    e->backoff = evtimer_new(base, on_backoff, e);
    if (!e->backoff || cm_rand_bytes(raw, sizeof(raw)) != CM_OK) {
        rs_edge_free(e);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(e->secret + 2 * i, 3, "%02x", raw[i]);
    evhttp_set_bevcb(http, on_new_bev, e);
    /* evhttp counts a head without its line ends: never more than ours */
    evhttp_set_max_headers_size(http, (ev_ssize_t)o->max_header_bytes);
    return e;
}

size_t rs_edge_connections(const rs_edge *e)
{
    return e->nconns;
}

void rs_edge_metrics(const rs_edge *e, cm_strbuf *out)
{
    static const char *const names[ER_N] = {"head_too_large", "head_timeout", "bad_line",
                                            "bad_target",     "bad_header",   "bad_length",
                                            "body_too_large", "expect",       "method"};
    cm_strbuf_printf(out,
                     "# HELP reserved_http_connections open client connections\n"
                     "# TYPE reserved_http_connections gauge\n"
                     "reserved_http_connections %zu\n",
                     e->nconns);
    cm_strbuf_printf(out, "# HELP reserved_http_heads_refused_total request heads refused at "
                          "the edge, by reason\n# TYPE reserved_http_heads_refused_total "
                          "counter\n");
    for (int i = 0; i < ER_N; i++)
        cm_strbuf_printf(out, "reserved_http_heads_refused_total{reason=\"%s\"} %" PRIu64 "\n",
                         names[i], e->refused[i]);
    cm_strbuf_printf(out,
                     "# HELP reserved_http_accept_pauses_total accept paused, by cause\n"
                     "# TYPE reserved_http_accept_pauses_total counter\n"
                     "reserved_http_accept_pauses_total{cause=\"accept_error\"} %" PRIu64 "\n"
                     "reserved_http_accept_pauses_total{cause=\"max_connections\"} %" PRIu64 "\n",
                     e->accept_pauses, e->full_pauses);
}

void rs_edge_free(rs_edge *e)
{
    if (!e)
        return;
    /* After evhttp_free: what is left was never captured (evhttp closed the rest). */
    while (e->all) {
        rs_edge_conn *c = e->all;
        struct bufferevent *bev = c->bev;
        bool held = c->state == EC_NEW;
        e->lev = NULL;
        conn_free(c);
        if (held)
            bufferevent_decref(bev);
    }
    if (e->backoff)
        event_free(e->backoff);
    free(e);
}
