/*
 * rs_pay: the payment gateway client (SPEC §7) on libcommon's HTTP client (cm_httpc).
 *
 * Owns: the parsed gateway URL and every request in flight, each with its own cm_httpc
 * in close mode (one connection per request, closed after the answer). Why one
 * connection per request and not a keep-alive pool: a slow charge must not delay an
 * unrelated cancel, and a pooled connection the gateway closes while idle would turn a
 * charge into an unknown outcome; loopback connects are cheap next to a payment round
 * trip.
 *
 * Contract: a call that returns CM_OK runs its callback exactly once, from the loop,
 * never inside the call (cm_httpc reports a request that cannot be sent from a timer, as
 * status 0: UNKNOWN). rs_pay_free drops what is still in flight without calling back.
 * A gateway host that is not a numeric address is resolved once, when rs_pay is made at
 * start (pay_resolve_once), so no payment blocks the loop on the resolver.
 */
#include "rs_pay.h"

#include <arpa/inet.h>
#include <event2/http.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_httpc.h"
#include "cm_log.h"

#define RS_PAY_PATH_MAX 512
#define RS_PAY_MAX_BODY (4u * 1024 * 1024) /* a longer answer is an unknown outcome */

typedef struct pay_req {
    rs_pay *p;
    rs_pay_call kind;
    rs_pay_cb cb;
    void *arg;
    cm_httpc *http;              /* this request's connection; freed with the request */
    struct pay_req *prev, *next; /* in p->reqs */
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

/* Unlinks and frees r (its cm_httpc is freed when this, its callback, returns), then
 * calls back: the callback may start new requests or free p. */
static void pay_finish(pay_req *r, rs_pay_outcome outcome, const char *payment_id)
{
    rs_pay_cb cb = r->cb;
    void *arg = r->arg;
    pay_unlink(r);
    cm_httpc_free(r->http);
    free(r);
    cb(arg, outcome, payment_id);
}

/* The id of a gateway answer when it fits RS_PAY_ID_MAX: copied into id (else ""). */
static bool pay_id_fits(const char *pid, char *id, size_t idlen)
{
    id[0] = '\0';
    if (pid == NULL)
        return true;
    size_t n = strlen(pid);
    if (n > RS_PAY_ID_MAX || n >= idlen) {
        log_error("payment gateway: a payment id of %zu bytes, longer than %d: treated as a "
                  "gateway error",
                  n, RS_PAY_ID_MAX);
        return false;
    }
    memcpy(id, pid, n + 1);
    return true;
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
            if (st != NULL && strcmp(st, order[k].status) == 0)
                return pay_id_fits(pid, id, idlen) ? order[k].outcome : RS_PAY_UNKNOWN;
        }
    }
    return RS_PAY_NOT_FOUND;
}

rs_pay_outcome rs_pay_parse(rs_pay_call call, int status, const char *body, size_t len, char *id,
                            size_t idlen)
{
    rs_pay_outcome outcome = RS_PAY_UNKNOWN;
    json_t *o = status != 0 && body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *pid = json_string_value(json_object_get(o, "id"));
    id[0] = '\0';
    switch (call) {
    case RS_PAY_CALL_CHARGE:
        if (status == 201 && pid != NULL && pid[0] != '\0')
            outcome = pay_id_fits(pid, id, idlen) ? RS_PAY_APPROVED : RS_PAY_UNKNOWN;
        else if (status == 402)
            outcome = RS_PAY_DECLINED;
        break;
    case RS_PAY_CALL_CANCEL:
        if (status == 200)
            outcome = RS_PAY_CANCELLED; /* its id names nothing new: not kept when too long */
        else if (status == 404)
            outcome = RS_PAY_NOT_FOUND;
        else if (status == 409)
            outcome = RS_PAY_DECLINED; /* a declined payment has nothing to cancel */
        if (outcome == RS_PAY_CANCELLED && !pay_id_fits(pid, id, idlen))
            id[0] = '\0';
        break;
    case RS_PAY_CALL_LOOKUP:
        if (status == 200 && json_is_array(json_object_get(o, "items")))
            outcome = pay_pick(json_object_get(o, "items"), id, idlen);
        break;
    }
    json_decref(o);
    return outcome;
}

static void pay_done(void *arg, const cm_httpc_resp *resp)
{
    pay_req *r = arg;
    char id[RS_PAY_ID_MAX + 1];
    rs_pay_outcome outcome =
        rs_pay_parse(r->kind, resp->status, resp->body, resp->body_len, id, sizeof(id));
    if (outcome == RS_PAY_UNKNOWN)
        log_warn("payment gateway: %s answered %d",
                 r->kind == RS_PAY_CALL_CHARGE   ? "charge"
                 : r->kind == RS_PAY_CALL_CANCEL ? "cancel"
                                                 : "lookup",
                 resp->status);
    pay_finish(r, outcome, id);
}

/* Sends one request; a failure to connect or an unanswered request is UNKNOWN, later. */
static cm_rc pay_send(rs_pay *p, rs_pay_call kind, const char *method, const char *path,
                      const char *idem_key, const char *body, rs_pay_cb cb, void *arg)
{
    const cm_httpc_opts opts = {
        .timeout_ms = p->timeout_ms, .max_body = RS_PAY_MAX_BODY, .close = true};
    const char *headers[] = {"Idempotency-Key", idem_key, NULL};
    pay_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CM_ERR;
    r->p = p;
    r->kind = kind;
    r->cb = cb;
    r->arg = arg;
    r->http = cm_httpc_new(p->base, p->host, p->port, &opts);
    if (r->http == NULL ||
        cm_httpc_request(r->http, method, path, body, idem_key != NULL ? headers : NULL, pay_done,
                         r) != CM_OK) {
        cm_httpc_free(r->http);
        free(r);
        return CM_ERR;
    }
    r->next = p->reqs;
    if (p->reqs != NULL)
        p->reqs->prev = r;
    p->reqs = r;
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

/* A gateway named by a host name is resolved once, here (rs_pay_new runs at start, before
 * the loop), so that no payment waits on the system resolver inside the event loop. A name
 * that does not resolve now is kept: cm_httpc then resolves it at each connect. A numeric
 * address and "localhost" (cm_httpc's 127.0.0.1) are left as they are. */
static void pay_resolve_once(rs_pay *p)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (strcmp(p->host, "localhost") == 0 || evutil_inet_pton(AF_INET, p->host, buf) == 1 ||
        evutil_inet_pton(AF_INET6, p->host, buf) == 1)
        return;
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char addr[INET6_ADDRSTRLEN] = "";
    if (evutil_getaddrinfo(p->host, NULL, &hints, &res) == 0 && res != NULL) {
        const void *a = res->ai_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
        if (evutil_inet_ntop(res->ai_family, a, addr, sizeof(addr)) == NULL)
            addr[0] = '\0';
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    char *numeric = addr[0] != '\0' ? strdup(addr) : NULL;
    if (numeric == NULL) {
        log_warn("payment gateway %s does not resolve now: resolving it at each payment", p->host);
        return;
    }
    log_info("payment gateway %s is %s (resolved once, at start)", p->host, numeric);
    free(p->host);
    p->host = numeric;
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
    /* "[::1]" in a URL is the address ::1 */
    size_t hl = strlen(host);
    p->host =
        host[0] == '[' && hl > 2 && host[hl - 1] == ']' ? strndup(host + 1, hl - 2) : strdup(host);
    const char *path = evhttp_uri_get_path(u);
    p->prefix = strdup(path != NULL ? path : "");
    if (p->host == NULL || p->prefix == NULL)
        goto fail;
    pay_resolve_once(p);
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
        cm_httpc_free(r->http); /* drops its request without calling back */
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
    cm_rc rc = pay_send(p, RS_PAY_CALL_CHARGE, "POST", path, reference, body, cb, arg);
    free(body);
    return rc;
}

/* A request whose path ends in one value, URI-encoded: fmt takes the prefix and it. */
static cm_rc pay_send_about(rs_pay *p, rs_pay_call kind, const char *method, const char *fmt,
                            const char *value, const char *body, rs_pay_cb cb, void *arg)
{
    if (p == NULL || value == NULL || cb == NULL)
        return CM_ERR;
    char *enc = evhttp_uriencode(value, -1, 0);
    if (enc == NULL)
        return CM_ERR;
    char path[RS_PAY_PATH_MAX];
    snprintf(path, sizeof(path), fmt, p->prefix, enc);
    free(enc);
    return pay_send(p, kind, method, path, NULL, body, cb, arg);
}

cm_rc rs_pay_cancel(rs_pay *p, const char *payment_id, rs_pay_cb cb, void *arg)
{
    if (payment_id != NULL && payment_id[0] == '\0')
        return CM_ERR;
    return pay_send_about(p, RS_PAY_CALL_CANCEL, "POST", "%s/payments/%s/cancel", payment_id, "{}",
                          cb, arg);
}

cm_rc rs_pay_lookup(rs_pay *p, const char *reference, rs_pay_cb cb, void *arg)
{
    return pay_send_about(p, RS_PAY_CALL_LOOKUP, "GET", "%s/payments?reference=%s", reference, NULL,
                          cb, arg);
}
