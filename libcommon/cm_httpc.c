/*
 * cm_httpc: the keep-alive HTTP/1.1 client on a bufferevent (see the header for the
 * contract). A request moves IDLE -> SENT -> BODY -> IDLE, or IDLE -> FAILING -> IDLE when
 * it could not even be sent (the zero-delay timer reports it, so the callback never runs
 * inside cm_httpc_request); httpc_move asserts each move.
 */
#include "cm_httpc.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cm_log.h"
#include "cm_time.h"

#define HTTPC_MAX_HEAD (16 * 1024)
/* libevent reads at most 16 KiB a call by default: a large hall's seat map (megabytes)
 * then takes hundreds of reads, each a wakeup of this loop. Up to this much at once. */
#define HTTPC_MAX_SINGLE_READ (256 * 1024)
#define HTTPC_HOST_MAX        300

typedef enum httpc_state {
    HTTPC_IDLE,    /* no request; bev is connected (keep-alive) or NULL */
    HTTPC_SENT,    /* request written (or queued until connected); reading the head */
    HTTPC_BODY,    /* head parsed; reading body_want bytes */
    HTTPC_FAILING, /* failed before anything was sent; the zero timer reports it */
} httpc_state;

static const char *const httpc_state_name[] = {"idle", "sent", "body", "failing"};

struct cm_httpc {
    struct event_base *base;
    char *host;                   /* as given, for the resolver */
    char hosthdr[HTTPC_HOST_MAX]; /* Host: header value */
    struct sockaddr_storage sa;   /* numeric hosts: resolved once */
    int salen;                    /* 0: resolve host at each connect */
    int port;
    uint32_t timeout_ms;
    size_t max_body;
    bool close_each; /* opts.close */
    bool skip_ok;    /* opts.skip_ok_body */
    struct bufferevent *bev;
    struct event *timer;
    httpc_state state;
    const char *fail_why; /* HTTPC_FAILING */
    cm_httpc_cb cb;
    void *arg;
    int status;
    size_t body_want;
    size_t body_skipped; /* of body_want, dropped so far (skip_ok and a 2xx status) */
    bool close_after;    /* the answer says the server closes (HTTP/1.0, Connection: close) */
    bool in_cb;          /* inside the user's callback: a free is deferred */
    bool dead;           /* freed inside the callback */
};

/* Only asserts call it: unused where NDEBUG is set (Release builds). */
__attribute__((unused)) static bool httpc_move_ok(httpc_state from, httpc_state to)
{
    switch (to) {
    case HTTPC_IDLE:
        return from != HTTPC_IDLE;
    case HTTPC_SENT:
    case HTTPC_FAILING:
        return from == HTTPC_IDLE;
    case HTTPC_BODY:
        return from == HTTPC_SENT;
    }
    return false;
}

/* The one place the request state changes. */
static void httpc_move(cm_httpc *h, httpc_state to)
{
    assert(httpc_move_ok(h->state, to));
    log_debug("httpc %s:%d: %s -> %s", h->host, h->port, httpc_state_name[h->state],
              httpc_state_name[to]);
    h->state = to;
}

static void drop_conn(cm_httpc *h)
{
    if (h->bev) {
        bufferevent_free(h->bev);
        h->bev = NULL;
    }
}

static void really_free(cm_httpc *h)
{
    drop_conn(h);
    if (h->timer)
        event_free(h->timer);
    free(h->host);
    free(h);
}

/* Ends the request in flight: back to IDLE first, so the callback may start the next
 * request on this client or free it. */
static void finish(cm_httpc *h, int status, const char *error, char *body, size_t body_len)
{
    cm_httpc_cb cb = h->cb;
    void *arg = h->arg;
    cm_httpc_resp r = {.status = status,
                       .error = error,
                       .body = body ? body : "",
                       .body_len = body_len,
                       .skipped = h->body_skipped};
    evtimer_del(h->timer);
    httpc_move(h, HTTPC_IDLE);
    h->cb = NULL;
    h->arg = NULL;
    if (status == 0 || h->close_after || h->close_each)
        drop_conn(h);
    h->in_cb = true;
    cb(arg, &r);
    h->in_cb = false;
    free(body);
    if (h->dead)
        really_free(h);
}

static void fail(cm_httpc *h, const char *why)
{
    drop_conn(h);
    finish(h, 0, why, NULL, 0);
}

/* Parses the status line and the headers we need; NULL when the head is good, else the
 * reason. */
static const char *parse_head(cm_httpc *h, char *head)
{
    char *save = NULL;
    char *line = strtok_r(head, "\r\n", &save);
    int minor;
    long long clen = -1;

    if (!line || sscanf(line, "HTTP/1.%d %d", &minor, &h->status) != 2 || h->status < 100 ||
        h->status > 999)
        return "protocol";
    h->close_after = minor == 0;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        if (!colon)
            return "protocol";
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Content-Length") == 0) {
            char *end;
            clen = strtoll(v, &end, 10);
            if (end == v || clen < 0)
                return "protocol";
            if ((unsigned long long)clen > h->max_body)
                return "too_large";
        } else if (strcasecmp(line, "Connection") == 0) {
            if (strcasecmp(v, "close") == 0)
                h->close_after = true;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            return "protocol"; /* chunked replies are not part of what we talk to */
        }
    }
    h->body_want = clen < 0 ? 0 : (size_t)clen;
    if (clen < 0 && h->status >= 200 && h->status != 204 && h->status != 304)
        return "protocol";
    return NULL;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    cm_httpc *h = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    if (h->state == HTTPC_IDLE) {
        /* bytes nobody asked for: the connection is out of step, drop it */
        drop_conn(h);
        return;
    }
    if (h->state == HTTPC_SENT) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (evbuffer_get_length(in) > HTTPC_MAX_HEAD)
                fail(h, "protocol");
            return;
        }
        size_t hlen = (size_t)end.pos + 4;
        if (hlen > HTTPC_MAX_HEAD) {
            fail(h, "protocol");
            return;
        }
        char *head = malloc(hlen + 1);
        if (!head) {
            fail(h, "protocol");
            return;
        }
        evbuffer_remove(in, head, hlen);
        head[hlen] = '\0';
        const char *bad = parse_head(h, head);
        free(head);
        if (bad) {
            fail(h, bad);
            return;
        }
        if (h->status < 200) { /* 1xx: the real answer follows */
            h->close_after = false;
            read_cb(bev, arg);
            return;
        }
        httpc_move(h, HTTPC_BODY);
    }
    if (h->skip_ok && h->status / 100 == 2) {
        size_t take = evbuffer_get_length(in);
        if (take > h->body_want - h->body_skipped)
            take = h->body_want - h->body_skipped; /* more is out of step: left for IDLE */
        evbuffer_drain(in, take);
        h->body_skipped += take;
        if (h->body_skipped == h->body_want)
            finish(h, h->status, NULL, NULL, 0);
        return;
    }
    if (evbuffer_get_length(in) < h->body_want)
        return;
    char *body = malloc(h->body_want + 1);
    if (!body) {
        fail(h, "protocol");
        return;
    }
    evbuffer_remove(in, body, h->body_want);
    body[h->body_want] = '\0';
    finish(h, h->status, NULL, body, h->body_want);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    cm_httpc *h = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (h->state == HTTPC_IDLE) {
        drop_conn(h); /* the server closed an idle keep-alive connection */
        return;
    }
    if (what & BEV_EVENT_ERROR)
        fail(h, (what & (BEV_EVENT_READING | BEV_EVENT_WRITING)) ? "reset" : "connect");
    else if (what & BEV_EVENT_EOF)
        fail(h, "eof");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cm_httpc *h = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    if (h->state == HTTPC_FAILING)
        fail(h, h->fail_why);
    else if (h->state != HTTPC_IDLE)
        fail(h, "timeout");
}

cm_httpc *cm_httpc_new(struct event_base *base, const char *host, int port,
                       const cm_httpc_opts *opts)
{
    char text[HTTPC_HOST_MAX];
    if (host == NULL || port < 1 || port > 65535)
        return NULL;
    const char *num = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    bool v6 = strchr(num, ':') != NULL;
    cm_httpc *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->base = base;
    h->port = port;
    h->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : CM_HTTPC_DEFAULT_TIMEOUT_MS;
    h->max_body = opts && opts->max_body ? opts->max_body : CM_HTTPC_DEFAULT_MAX_BODY;
    h->close_each = opts && opts->close;
    h->skip_ok = opts && opts->skip_ok_body;
    h->host = strdup(host);
    snprintf(h->hosthdr, sizeof(h->hosthdr), v6 ? "[%s]:%d" : "%s:%d", num, port);
    snprintf(text, sizeof(text), v6 ? "[%s]:%d" : "%s:%d", num, port);
    h->salen = (int)sizeof(h->sa);
    if (evutil_parse_sockaddr_port(text, (struct sockaddr *)&h->sa, &h->salen) != 0)
        h->salen = 0; /* a name: resolved at each connect */
    h->timer = evtimer_new(base, timer_cb, h);
    if (!h->timer || !h->host) {
        really_free(h);
        return NULL;
    }
    return h;
}

void cm_httpc_free(cm_httpc *h)
{
    if (!h)
        return;
    if (h->in_cb) {
        h->dead = true; /* finish() frees it when the callback returns */
        h->cb = NULL;
        return;
    }
    really_free(h);
}

bool cm_httpc_busy(const cm_httpc *h)
{
    return h->state != HTTPC_IDLE || h->dead;
}

/* Where to connect: the cached numeric address, or the resolver's first answer. */
static bool httpc_sockaddr(cm_httpc *h, struct sockaddr_storage *sa, int *salen)
{
    if (h->salen > 0) {
        memcpy(sa, &h->sa, sizeof(*sa));
        *salen = h->salen;
        return true;
    }
    struct evutil_addrinfo hints, *res = NULL;
    char port[8];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", h->port);
    if (evutil_getaddrinfo(h->host, port, &hints, &res) != 0 || res == NULL)
        return false;
    bool ok = res->ai_addrlen <= sizeof(*sa);
    if (ok) {
        memcpy(sa, res->ai_addr, res->ai_addrlen);
        *salen = (int)res->ai_addrlen;
    }
    evutil_freeaddrinfo(res);
    return ok;
}

/* Reports a request that could not be sent from the zero timer (never inside the call). */
static cm_rc httpc_fail_later(cm_httpc *h, const char *why)
{
    struct timeval now = {0, 0};
    drop_conn(h);
    httpc_move(h, HTTPC_FAILING);
    h->fail_why = why;
    evtimer_add(h->timer, &now);
    return CM_OK;
}

cm_rc cm_httpc_request(cm_httpc *h, const char *method, const char *path, const char *json_body,
                       const char *const *headers, cm_httpc_cb cb, void *arg)
{
    struct timeval tv;
    if (cm_httpc_busy(h) || !cb || !method || !path)
        return CM_ERR;
    h->cb = cb;
    h->arg = arg;
    h->status = 0;
    h->body_want = 0;
    h->body_skipped = 0;
    h->close_after = false;
    if (!h->bev) {
        struct sockaddr_storage sa;
        int salen = 0;
        h->bev = bufferevent_socket_new(h->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!h->bev)
            return CM_ERR;
        bufferevent_setcb(h->bev, read_cb, NULL, event_cb, h);
        bufferevent_set_max_single_read(h->bev, HTTPC_MAX_SINGLE_READ);
        bufferevent_enable(h->bev, EV_READ | EV_WRITE);
        if (!httpc_sockaddr(h, &sa, &salen) ||
            bufferevent_socket_connect(h->bev, (struct sockaddr *)&sa, salen) != 0)
            return httpc_fail_later(h, "connect");
    }
    struct evbuffer *out = bufferevent_get_output(h->bev);
    size_t blen = json_body ? strlen(json_body) : 0;
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n", method, path,
                        h->hosthdr, h->close_each ? "close" : "keep-alive");
    for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
        evbuffer_add_printf(out, "%s: %s\r\n", headers[i], headers[i + 1]);
    if (json_body)
        evbuffer_add_printf(out, "Content-Type: application/json\r\n");
    evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", blen);
    if (blen)
        evbuffer_add(out, json_body, blen);
    httpc_move(h, HTTPC_SENT);
    tv = cm_tv_from_ms(h->timeout_ms);
    evtimer_add(h->timer, &tv);
    return CM_OK;
}
