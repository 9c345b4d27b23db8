/*
 * cx_load_http: chaos_load's keep-alive HTTP/1.1 client on a bufferevent (see the header).
 * Responses must carry Content-Length (evhttp servers always send it for whole replies);
 * anything else is a protocol error, reported as status 0.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cm_time.h"
#include "cx_load_http.h"

#define CX_HTTP_MAX_HEAD (16 * 1024)
#define CX_HTTP_MAX_BODY (8 * 1024 * 1024)

typedef enum cx_http_state {
    CX_HTTP_IDLE,    /* no request; bev may be connected (keep-alive) or NULL */
    CX_HTTP_HEAD,    /* request sent (or queued until connected), reading the head */
    CX_HTTP_BODY,    /* head parsed, reading body_want bytes */
    CX_HTTP_FAILING, /* failed before anything was sent; the timer delivers it */
} cx_http_state;

struct cx_http {
    struct event_base *base;
    struct sockaddr_storage sa;
    int salen;
    char host[CM_HOST_MAX + 16];
    uint32_t timeout_ms;
    struct bufferevent *bev;
    struct event *timer;
    cx_http_state state;
    const char *fail_why; /* CX_HTTP_FAILING */
    cx_http_cb cb;
    void *arg;
    int status;
    size_t body_want;
    bool close_after;
};

static void drop_conn(cx_http *h)
{
    if (h->bev) {
        bufferevent_free(h->bev);
        h->bev = NULL;
    }
}

/* Ends the request in flight: resets the state first, so the callback may start the
 * next request on this client. */
static void finish(cx_http *h, int status, const char *error, char *body, size_t body_len)
{
    cx_http_cb cb = h->cb;
    void *arg = h->arg;
    cx_http_resp r = {
        .status = status, .error = error, .body = body ? body : "", .body_len = body_len};
    evtimer_del(h->timer);
    h->state = CX_HTTP_IDLE;
    h->cb = NULL;
    h->arg = NULL;
    if (status == 0 || h->close_after)
        drop_conn(h);
    cb(arg, &r);
    free(body);
}

static void fail(cx_http *h, const char *why)
{
    drop_conn(h);
    finish(h, 0, why, NULL, 0);
}

/* Parses the status line and the headers we need. false on a malformed head. */
static bool parse_head(cx_http *h, char *head)
{
    char *save = NULL;
    char *line = strtok_r(head, "\r\n", &save);
    int minor;
    long long clen = -1;

    if (!line || sscanf(line, "HTTP/1.%d %d", &minor, &h->status) != 2 || h->status < 100 ||
        h->status > 999)
        return false;
    h->close_after = minor == 0;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        if (!colon)
            return false;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Content-Length") == 0) {
            char *end;
            clen = strtoll(v, &end, 10);
            if (end == v || clen < 0 || clen > CX_HTTP_MAX_BODY)
                return false;
        } else if (strcasecmp(line, "Connection") == 0) {
            if (strcasecmp(v, "close") == 0)
                h->close_after = true;
        } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
            return false; /* chunked replies are not part of what we talk to */
        }
    }
    h->body_want = clen < 0 ? 0 : (size_t)clen;
    if (clen < 0 && h->status >= 200 && h->status != 204 && h->status != 304)
        return false;
    return true;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    cx_http *h = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    if (h->state == CX_HTTP_IDLE) {
        /* bytes nobody asked for: the connection is out of step, drop it */
        drop_conn(h);
        return;
    }
    if (h->state == CX_HTTP_HEAD) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (evbuffer_get_length(in) > CX_HTTP_MAX_HEAD)
                fail(h, "protocol");
            return;
        }
        size_t hlen = (size_t)end.pos + 4;
        if (hlen > CX_HTTP_MAX_HEAD) {
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
        bool ok = parse_head(h, head);
        free(head);
        if (!ok) {
            fail(h, "protocol");
            return;
        }
        if (h->status < 200) { /* 1xx: the real answer follows */
            h->close_after = false;
            read_cb(bev, arg);
            return;
        }
        h->state = CX_HTTP_BODY;
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
    cx_http *h = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (h->state == CX_HTTP_IDLE) {
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
    cx_http *h = arg;
    if (h->state == CX_HTTP_FAILING)
        fail(h, h->fail_why);
    else if (h->state != CX_HTTP_IDLE)
        fail(h, "timeout");
}

cx_http *cx_http_new(struct event_base *base, const cm_addr *server, uint32_t timeout_ms)
{
    char text[CM_HOST_MAX + 16];
    const char *host = strcmp(server->host, "localhost") == 0 ? "127.0.0.1" : server->host;
    cx_http *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->base = base;
    h->timeout_ms = timeout_ms;
    snprintf(text, sizeof(text), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, server->port);
    snprintf(h->host, sizeof(h->host), "%s", text);
    h->salen = (int)sizeof(h->sa);
    h->timer = evtimer_new(base, timer_cb, h);
    if (!h->timer || evutil_parse_sockaddr_port(text, (struct sockaddr *)&h->sa, &h->salen) != 0) {
        cx_http_free(h);
        return NULL;
    }
    return h;
}

void cx_http_free(cx_http *h)
{
    if (!h)
        return;
    drop_conn(h);
    if (h->timer)
        event_free(h->timer);
    free(h);
}

cm_rc cx_http_request(cx_http *h, const char *method, const char *path, const char *body,
                      cx_http_cb cb, void *arg)
{
    struct timeval tv;
    if (h->state != CX_HTTP_IDLE || !cb)
        return CM_ERR;
    h->cb = cb;
    h->arg = arg;
    h->status = 0;
    h->body_want = 0;
    h->close_after = false;
    if (!h->bev) {
        h->bev = bufferevent_socket_new(h->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!h->bev)
            return CM_ERR;
        bufferevent_setcb(h->bev, read_cb, NULL, event_cb, h);
        bufferevent_enable(h->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&h->sa, h->salen) != 0) {
            drop_conn(h);
            h->state = CX_HTTP_FAILING;
            h->fail_why = "connect";
            tv = cm_tv_from_ms(0);
            evtimer_add(h->timer, &tv);
            return CM_OK;
        }
    }
    struct evbuffer *out = bufferevent_get_output(h->bev);
    size_t blen = body ? strlen(body) : 0;
    evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n", method,
                        path, h->host);
    if (body)
        evbuffer_add_printf(out, "Content-Type: application/json\r\n");
    evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", blen);
    if (blen)
        evbuffer_add(out, body, blen);
    h->state = CX_HTTP_HEAD;
    tv = cm_tv_from_ms(h->timeout_ms);
    evtimer_add(h->timer, &tv);
    return CM_OK;
}
