/*
 * rs_pay: the payment gateway client (SPEC §7) on evhttp's client side.
 *
 * Owns: the parsed gateway URL and every request in flight (one evhttp connection per
 * request, freed by libevent when the request completes: evhttp_connection_free_on_completion).
 * Why one connection per request and not a pool: evhttp serialises requests on a
 * connection, and a slow charge must not delay an unrelated cancel; loopback connects
 * are cheap next to a payment round trip.
 *
 * Contract: a call that returns CM_OK runs its callback exactly once, from the loop,
 * never inside the call (a request that cannot even be sent is reported UNKNOWN from a
 * zero-delay timer). rs_pay_free drops what is still in flight without calling back.
 * The gateway host must be a numeric address or a name resolvable without DNS traffic
 * (evhttp is given no evdns base), which is what the configs use (loopback).
 */
#include "rs_pay.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"
#include "rs_metrics.h"

#define RS_PAY_ID_MAX   64
#define RS_PAY_PATH_MAX 512

typedef enum pay_kind { PAY_CHARGE, PAY_CANCEL, PAY_LOOKUP } pay_kind;

typedef struct pay_req {
    rs_pay *p;
    pay_kind kind;
    rs_pay_cb cb;
    void *arg;
    struct evhttp_connection *conn; /* freed by libevent on completion */
    struct event *defer;            /* a request that could not be sent reports from here */
    struct pay_req *prev, *next;    /* in p->reqs */
} pay_req;

struct rs_pay {
    struct event_base *base;
    char *host;
    int port;
    char *prefix; /* URL path without the trailing '/', "" for the root */
    uint32_t timeout_ms;
    pay_req *reqs; /* in flight */
};

static void pay_unlink(pay_req *r)
{
    rs_pay *p = r->p;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        p->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Unlinks and frees r, then calls back: the callback may start new requests or free p. */
static void pay_finish(pay_req *r, rs_pay_outcome outcome, const char *payment_id)
{
    rs_pay_cb cb = r->cb;
    void *arg = r->arg;
    pay_unlink(r);
    if (r->defer != NULL)
        event_free(r->defer);
    free(r);
    cb(arg, outcome, payment_id);
}

static json_t *pay_body_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > 4 * 1024 * 1024)
        return NULL;
    const char *data = (const char *)evbuffer_pullup(in, (ssize_t)len);
    if (data == NULL)
        return NULL;
    return json_loadb(data, len, 0, NULL);
}

/* Picks the payment a lookup by reference stands for: an approved one first (it is the
 * one to cancel), then a cancelled one, then a declined one. */
static rs_pay_outcome pay_pick(json_t *items, char *id, size_t idlen)
{
    static const struct {
        const char *status;
        rs_pay_outcome outcome;
    } order[] = {{"APPROVED", RS_PAY_APPROVED},
                 {"CANCELLED", RS_PAY_CANCELLED},
                 {"DECLINED", RS_PAY_DECLINED}};
    for (size_t k = 0; k < CM_ARRAY_LEN(order); k++) {
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            const char *st = json_string_value(json_object_get(it, "status"));
            const char *pid = json_string_value(json_object_get(it, "id"));
            if (st != NULL && strcmp(st, order[k].status) == 0) {
                snprintf(id, idlen, "%s", pid != NULL ? pid : "");
                return order[k].outcome;
            }
        }
    }
    return RS_PAY_NOT_FOUND;
}

static void pay_done(struct evhttp_request *req, void *arg)
{
    pay_req *r = arg;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    rs_pay_outcome outcome = RS_PAY_UNKNOWN;
    char id[RS_PAY_ID_MAX] = "";
    json_t *body = req != NULL && code != 0 ? pay_body_json(req) : NULL;
    const char *pid = json_string_value(json_object_get(body, "id"));

    r->conn = NULL; /* libevent frees it once this callback returns */
    switch (r->kind) {
    case PAY_CHARGE:
        if (code == 201 && pid != NULL && pid[0] != '\0') {
            outcome = RS_PAY_APPROVED;
            snprintf(id, sizeof(id), "%s", pid);
        } else if (code == 402) {
            outcome = RS_PAY_DECLINED;
        }
        break;
    case PAY_CANCEL:
        if (code == 200) {
            outcome = RS_PAY_CANCELLED;
            snprintf(id, sizeof(id), "%s", pid != NULL ? pid : "");
        } else if (code == 404) {
            outcome = RS_PAY_NOT_FOUND;
        } else if (code == 409) {
            outcome = RS_PAY_DECLINED; /* a declined payment has nothing to cancel */
        }
        break;
    case PAY_LOOKUP:
        if (code == 200 && json_is_array(json_object_get(body, "items")))
            outcome = pay_pick(json_object_get(body, "items"), id, sizeof(id));
        break;
    }
    if (outcome == RS_PAY_UNKNOWN)
        log_warn("payment gateway: %s answered %d",
                 r->kind == PAY_CHARGE   ? "charge"
                 : r->kind == PAY_CANCEL ? "cancel"
                                         : "lookup",
                 code);
    json_decref(body);
    pay_finish(r, outcome, id);
}

static void pay_defer_fire(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    pay_finish(arg, RS_PAY_UNKNOWN, "");
}

/* Sends one request; on any local failure the outcome is UNKNOWN from a timer. */
static cm_rc pay_send(rs_pay *p, pay_kind kind, enum evhttp_cmd_type cmd, const char *path,
                      const char *idem_key, const char *body, rs_pay_cb cb, void *arg)
{
    pay_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CM_ERR;
    r->p = p;
    r->kind = kind;
    r->cb = cb;
    r->arg = arg;
    r->next = p->reqs;
    if (p->reqs != NULL)
        p->reqs->prev = r;
    p->reqs = r;

    struct evhttp_request *req = NULL;
    r->conn = evhttp_connection_base_new(p->base, NULL, p->host, (unsigned short)p->port);
    if (r->conn == NULL)
        goto fail;
    struct timeval tv = cm_tv_from_ms(p->timeout_ms);
    evhttp_connection_set_timeout_tv(r->conn, &tv);
    evhttp_connection_set_retries(r->conn, 0);
    req = evhttp_request_new(pay_done, r);
    if (req == NULL)
        goto fail;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300];
    snprintf(hostport, sizeof(hostport), "%s:%d", p->host, p->port);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Connection", "close");
    if (idem_key != NULL)
        evhttp_add_header(h, "Idempotency-Key", idem_key);
    if (body != NULL) {
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    evhttp_connection_free_on_completion(r->conn);
    if (evhttp_make_request(r->conn, req, cmd, path) != 0) {
        req = NULL; /* evhttp_make_request frees the request when it fails */
        goto fail;
    }
    return CM_OK;
fail:
    if (req != NULL)
        evhttp_request_free(req);
    if (r->conn != NULL)
        evhttp_connection_free(r->conn);
    r->conn = NULL;
    struct timeval now = {0, 0};
    r->defer = evtimer_new(p->base, pay_defer_fire, r);
    if (r->defer == NULL || evtimer_add(r->defer, &now) != 0) {
        pay_unlink(r);
        if (r->defer != NULL)
            event_free(r->defer);
        free(r);
        return CM_ERR;
    }
    return CM_OK;
}

bool rs_pay_url_ok(const char *url, char *why, size_t whylen)
{
    struct evhttp_uri *u = url != NULL ? evhttp_uri_parse(url) : NULL;
    const char *scheme = u != NULL ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u != NULL ? evhttp_uri_get_host(u) : NULL;
    bool ok = false;
    if (u == NULL)
        snprintf(why, whylen, "'%s' is not a URL", url != NULL ? url : "");
    else if (scheme == NULL || strcmp(scheme, "http") != 0)
        snprintf(why, whylen, "'%s': only http:// is supported", url);
    else if (host == NULL || host[0] == '\0')
        snprintf(why, whylen, "'%s' has no host (http://host[:port][/path])", url);
    else if (evhttp_uri_get_query(u) != NULL || evhttp_uri_get_fragment(u) != NULL ||
             evhttp_uri_get_userinfo(u) != NULL)
        snprintf(why, whylen, "'%s': no user, query or fragment (http://host[:port][/path])", url);
    else
        ok = true;
    if (u != NULL)
        evhttp_uri_free(u);
    return ok;
}

rs_pay *rs_pay_new(struct event_base *base, const char *url, uint32_t timeout_ms)
{
    rs_pay *p = NULL;
    char why[512];
    if (!rs_pay_url_ok(url, why, sizeof(why))) {
        log_error("payment.url %s", why);
        return NULL;
    }
    struct evhttp_uri *u = evhttp_uri_parse(url);
    if (u == NULL)
        return NULL;
    const char *host = evhttp_uri_get_host(u);
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->base = base;
    p->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    p->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    p->host = strdup(host);
    const char *path = evhttp_uri_get_path(u);
    p->prefix = strdup(path != NULL ? path : "");
    if (p->host == NULL || p->prefix == NULL)
        goto fail;
    size_t n = strlen(p->prefix);
    while (n > 0 && p->prefix[n - 1] == '/')
        p->prefix[--n] = '\0';
    evhttp_uri_free(u);
    return p;
fail:
    evhttp_uri_free(u);
    rs_pay_free(p);
    return NULL;
}

void rs_pay_free(rs_pay *p)
{
    if (p == NULL)
        return;
    while (p->reqs != NULL) {
        pay_req *r = p->reqs;
        pay_unlink(r);
        if (r->conn != NULL)
            evhttp_connection_free(r->conn); /* frees its request without calling back */
        if (r->defer != NULL)
            event_free(r->defer);
        free(r);
    }
    free(p->host);
    free(p->prefix);
    free(p);
}

cm_rc rs_pay_charge(rs_pay *p, const char *reference, int64_t amount, rs_pay_cb cb, void *arg)
{
    if (p == NULL || reference == NULL || cb == NULL || amount < 0)
        return CM_ERR;
    json_t *o = json_pack("{s:I, s:s, s:s}", "amount", (json_int_t)amount, "currency", "KRW",
                          "reference", reference);
    char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (body == NULL)
        return CM_ERR;
    char path[RS_PAY_PATH_MAX];
    snprintf(path, sizeof(path), "%s/payments", p->prefix);
    cm_rc rc = pay_send(p, PAY_CHARGE, EVHTTP_REQ_POST, path, reference, body, cb, arg);
    free(body);
    return rc;
}

cm_rc rs_pay_cancel(rs_pay *p, const char *payment_id, rs_pay_cb cb, void *arg)
{
    if (p == NULL || payment_id == NULL || payment_id[0] == '\0' || cb == NULL)
        return CM_ERR;
    char *enc = evhttp_uriencode(payment_id, -1, 0);
    if (enc == NULL)
        return CM_ERR;
    char path[RS_PAY_PATH_MAX];
    snprintf(path, sizeof(path), "%s/payments/%s/cancel", p->prefix, enc);
    free(enc);
    return pay_send(p, PAY_CANCEL, EVHTTP_REQ_POST, path, NULL, "{}", cb, arg);
}

cm_rc rs_pay_lookup(rs_pay *p, const char *reference, rs_pay_cb cb, void *arg)
{
    if (p == NULL || reference == NULL || cb == NULL)
        return CM_ERR;
    char *enc = evhttp_uriencode(reference, -1, 0);
    if (enc == NULL)
        return CM_ERR;
    char path[RS_PAY_PATH_MAX];
    snprintf(path, sizeof(path), "%s/payments?reference=%s", p->prefix, enc);
    free(enc);
    return pay_send(p, PAY_LOOKUP, EVHTTP_REQ_GET, path, NULL, NULL, cb, arg);
}
