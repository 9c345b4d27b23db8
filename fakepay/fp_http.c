/*
 * fp_http: routing, request validation, JSON replies (jansson only) and the
 * latency knob. A held-back reply is a heap struct with its own evtimer in a list;
 * when its client disconnects meanwhile, libevent 2.1 detaches the request (it is
 * not freed before the user replies) and frees it on the send, so the timer can
 * always send. On stop every held-back reply is sent at once.
 */
#include "fp_http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_time.h"

#define HEADERS_MAX     (16 * 1024)
#define EVHTTP_BODY_MAX (1024 * 1024) /* beyond this evhttp itself answers 413 (not JSON) */
#define IDLE_TIMEOUT_S  60

typedef struct fp_pending {
    fp_http *h;
    struct evhttp_request *req;
    struct evbuffer *body;
    struct event *timer;
    int code;
    struct fp_pending *prev;
    struct fp_pending *next;
} fp_pending;

struct fp_http {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    fp_store *store;
    fp_knobs knobs;
    fp_pending *pending; /* held-back replies, newest first */
    uint64_t failed;     /* 503s from the fail rate */
    uint64_t replayed;   /* POSTs answered from the idempotency index */
    uint64_t rejected;   /* 4xx error replies (bad requests, not declines) */
};

/* Every error code fakepay can return, so each status has exactly one name. */
#define E_BAD_REQUEST "BAD_REQUEST"
#define E_NOT_FOUND   "NOT_FOUND"
#define E_METHOD      "METHOD_NOT_ALLOWED"
#define E_DECLINED    "NOT_CANCELLABLE"
#define E_TOO_LARGE   "TOO_LARGE"
#define E_MISMATCH    "IDEMPOTENCY_MISMATCH"
#define E_UNAVAILABLE "UNAVAILABLE"
#define E_FULL        "STORE_FULL"
#define E_INTERNAL    "INTERNAL"

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 402:
        return "Payment Required";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static void pending_unlink(fp_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->h->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

static void pending_send(fp_pending *p)
{
    pending_unlink(p);
    evhttp_send_reply(p->req, p->code, reason_phrase(p->code), p->body);
    evbuffer_free(p->body);
    event_free(p->timer);
    free(p);
}

static void pending_cb(evutil_socket_t fd, short what, void *arg)
{
    pending_send(arg);
}

/* Sends code + body (JSON, stolen) now, or after the latency knob when delayed. */
static void reply_json(fp_http *h, struct evhttp_request *req, int code, json_t *body, bool delayed)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    fp_pending *p = NULL;

    json_decref(body);
    if (!buf || !text) {
        log_error("out of memory building a %d reply", code);
        free(text);
        if (buf)
            evbuffer_free(buf);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(buf, text, strlen(text));
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (delayed && h->knobs.latency_ms > 0) {
        p = calloc(1, sizeof(*p));
        if (p)
            p->timer = evtimer_new(h->base, pending_cb, p);
        if (p && p->timer) {
            struct timeval tv = cm_tv_from_ms(h->knobs.latency_ms);
            p->h = h;
            p->req = req;
            p->body = buf;
            p->code = code;
            p->next = h->pending;
            if (h->pending)
                h->pending->prev = p;
            h->pending = p;
            evtimer_add(p->timer, &tv);
            return;
        }
        log_warn("out of memory holding a reply back: sending it now");
        free(p);
    }
    evhttp_send_reply(req, code, reason_phrase(code), buf);
    evbuffer_free(buf);
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    default:
        return "OTHER";
    }
}

static void reply_error(fp_http *h, struct evhttp_request *req, bool delayed, int code,
                        const char *err, const char *fmt, ...) CM_PRINTF(6, 7);

static void reply_error(fp_http *h, struct evhttp_request *req, bool delayed, int code,
                        const char *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (code >= 400 && code < 500)
        h->rejected++;
    log_debug("%s %s -> %d %s: %s", method_name(evhttp_request_get_command(req)),
              evhttp_request_get_uri(req), code, err, msg);
    reply_json(h, req, code, json_pack("{s:{s:s,s:s}}", "error", "code", err, "message", msg),
               delayed);
}

static void format_rfc3339(uint64_t wall_ms, char *buf, size_t len)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    char base[32];
    gmtime_r(&secs, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03uZ", base, (unsigned)(wall_ms % 1000));
}

static json_t *payment_json(const fp_payment *p)
{
    char id[FP_ID_MAX], created[48];
    fp_payment_id(p, id, sizeof(id));
    format_rfc3339(p->created_wall_ms, created, sizeof(created));
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "id", id, "status", fp_status_name(p->status),
                     "amount", (json_int_t)p->amount, "currency", FP_CURRENCY, "reference",
                     p->reference, "createdAt", created);
}

static json_t *knobs_json(const fp_knobs *k)
{
    return json_pack("{s:f,s:f,s:I}", "declineRate", k->decline_rate, "failRate", k->fail_rate,
                     "latencyMs", (json_int_t)k->latency_ms);
}

/* Parses the request body as a JSON object; on failure replies 400/413 and returns NULL. */
static json_t *read_body(fp_http *h, struct evhttp_request *req, bool delayed)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *root;

    if (len > FP_BODY_MAX) {
        reply_error(h, req, delayed, 413, E_TOO_LARGE, "body is %zu bytes, the limit is %d", len,
                    FP_BODY_MAX);
        return NULL;
    }
    const char *data = len ? (const char *)evbuffer_pullup(in, (ssize_t)len) : "";
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        reply_error(h, req, delayed, 400, E_BAD_REQUEST, "body is not valid JSON: %s (line %d)",
                    jerr.text, jerr.line);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        reply_error(h, req, delayed, 400, E_BAD_REQUEST, "body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A uniform draw in [0, 1) from the seeded process PRNG. */
static double draw(void)
{
    return (double)cm_rand_range(0, UINT32_MAX) / 4294967296.0;
}

/* The reason a POST /payments body is invalid, or NULL when it is valid. */
static const char *check_payment(json_t *root, int64_t *amount, const char **reference)
{
    json_t *a = json_object_get(root, "amount");
    json_t *c = json_object_get(root, "currency");
    json_t *r = json_object_get(root, "reference");
    if (!a)
        return "missing field 'amount'";
    if (!json_is_integer(a))
        return "'amount' must be an integer";
    if (json_integer_value(a) <= 0)
        return "'amount' must be greater than 0";
    if (!c)
        return "missing field 'currency'";
    if (!json_is_string(c))
        return "'currency' must be a string";
    if (strcmp(json_string_value(c), FP_CURRENCY) != 0)
        return "'currency' must be \"" FP_CURRENCY "\"";
    if (!r)
        return "missing field 'reference'";
    if (!json_is_string(r))
        return "'reference' must be a string";
    if (json_string_length(r) == 0 || json_string_length(r) > FP_REFERENCE_MAX)
        return "'reference' must have 1 to 255 characters";
    *amount = (int64_t)json_integer_value(a);
    *reference = json_string_value(r);
    return NULL;
}

static void payments_create(fp_http *h, struct evhttp_request *req)
{
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    const char *reference = NULL, *why;
    const fp_payment *p = NULL;
    int64_t amount = 0;
    json_t *root;

    if (!key || !*key) {
        reply_error(h, req, true, 400, E_BAD_REQUEST, "missing Idempotency-Key header");
        return;
    }
    if (strlen(key) > FP_KEY_MAX) {
        reply_error(h, req, true, 400, E_BAD_REQUEST, "Idempotency-Key longer than %d bytes",
                    FP_KEY_MAX);
        return;
    }
    root = read_body(h, req, true);
    if (!root)
        return;
    why = check_payment(root, &amount, &reference);
    if (why) {
        reply_error(h, req, true, 400, E_BAD_REQUEST, "%s", why);
        goto out;
    }
    switch (fp_store_match_key(h->store, key, amount, reference, &p)) {
    case FP_KEY_SAME:
        h->replayed++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Idempotent-Replayed", "true");
        reply_json(h, req, p->first_status == FP_APPROVED ? 201 : 402, payment_json(p), true);
        goto out;
    case FP_KEY_MISMATCH:
        reply_error(h, req, true, 422, E_MISMATCH,
                    "Idempotency-Key was used with a different amount or reference");
        goto out;
    case FP_KEY_NEW:
        break;
    }
    if (fp_store_full(h->store)) {
        reply_error(h, req, true, 503, E_FULL, "the store holds its maximum of %zu payments",
                    fp_store_count(h->store));
        goto out;
    }
    /* Always two draws, so the sequence does not shift when a knob changes. */
    double f = draw(), d = draw();
    if (f < h->knobs.fail_rate) {
        h->failed++;
        reply_error(h, req, true, 503, E_UNAVAILABLE, "gateway failure (fail rate %g)",
                    h->knobs.fail_rate);
        goto out;
    }
    fp_status st = d < h->knobs.decline_rate ? FP_DECLINED : FP_APPROVED;
    cm_rc rc = fp_store_add(h->store, st, amount, reference, key, &p);
    if (rc != CM_OK) {
        reply_error(h, req, true, 503, rc == CM_AGAIN ? E_FULL : E_INTERNAL,
                    "cannot record the payment");
        goto out;
    }
    log_debug("payment pay_%u %s amount=%lld reference=%s", (unsigned)p->seq, fp_status_name(st),
              (long long)amount, reference);
    reply_json(h, req, st == FP_APPROVED ? 201 : 402, payment_json(p), true);
out:
    json_decref(root);
}

static void payments_list(fp_http *h, struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    const char *reference = NULL;
    json_t *items = json_array();

    /* Parsing "" still initialises params, so the find and clear below are always valid. */
    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        json_decref(items);
        reply_error(h, req, true, 400, E_BAD_REQUEST, "malformed query string");
        return;
    }
    reference = evhttp_find_header(&params, "reference");
    if (reference) {
        for (const fp_payment *p = fp_store_first_ref(h->store, reference); p;
             p = fp_store_next_ref(h->store, p))
            json_array_append_new(items, payment_json(p));
    } else {
        for (size_t i = 1; i <= fp_store_count(h->store); i++)
            json_array_append_new(items, payment_json(fp_store_at(h->store, i)));
    }
    evhttp_clear_headers(&params);
    reply_json(h, req, 200, json_pack("{s:o}", "items", items), true);
}

/* Routes /payments/{id} and /payments/{id}/cancel; rest points after "/payments/". */
static void payment_one(fp_http *h, struct evhttp_request *req, const char *rest)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *slash = strchr(rest, '/');
    char id[FP_ID_MAX];
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const fp_payment *p = NULL;

    if (idlen == 0 || idlen >= sizeof(id) || (slash && strcmp(slash, "/cancel") != 0)) {
        reply_error(h, req, true, 404, E_NOT_FOUND, "no such resource");
        return;
    }
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if (!slash) {
        if (cmd != EVHTTP_REQ_GET) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
            reply_error(h, req, true, 405, E_METHOD, "use GET");
            return;
        }
        p = fp_store_get(h->store, id);
        if (!p)
            reply_error(h, req, true, 404, E_NOT_FOUND, "no payment '%s'", id);
        else
            reply_json(h, req, 200, payment_json(p), true);
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply_error(h, req, true, 405, E_METHOD, "use POST");
        return;
    }
    switch (fp_store_cancel(h->store, id, &p)) {
    case FP_CANCEL_OK:
        log_debug("payment %s cancelled", id);
        reply_json(h, req, 200, payment_json(p), true);
        break;
    case FP_CANCEL_NOT_FOUND:
        reply_error(h, req, true, 404, E_NOT_FOUND, "no payment '%s'", id);
        break;
    case FP_CANCEL_DECLINED:
        reply_error(h, req, true, 409, E_DECLINED, "payment '%s' was declined", id);
        break;
    }
}

static void stats(fp_http *h, struct evhttp_request *req)
{
    size_t n[FP_STATUS_COUNT];
    fp_store_counts(h->store, n);
    reply_json(h, req, 200,
               json_pack("{s:I,s:{s:I,s:I,s:I},s:I,s:I,s:I,s:o}", "payments",
                         (json_int_t)fp_store_count(h->store), "byStatus", "APPROVED",
                         (json_int_t)n[FP_APPROVED], "DECLINED", (json_int_t)n[FP_DECLINED],
                         "CANCELLED", (json_int_t)n[FP_CANCELLED], "failed", (json_int_t)h->failed,
                         "replayed", (json_int_t)h->replayed, "rejected", (json_int_t)h->rejected,
                         "config", knobs_json(&h->knobs)),
               false);
}

/* Reads a rate field into *out when present; the reason it is invalid otherwise. */
static const char *check_rate(json_t *root, const char *name, double *out)
{
    json_t *v = json_object_get(root, name);
    if (!v)
        return NULL;
    if (!json_is_number(v) || json_number_value(v) < 0.0 || json_number_value(v) > 1.0)
        return "rates must be numbers from 0 to 1";
    *out = json_number_value(v);
    return NULL;
}

/* Validates the whole body before changing anything, so a bad field changes nothing. */
static void admin_config(fp_http *h, struct evhttp_request *req)
{
    fp_knobs k = h->knobs;
    const char *field, *why = NULL;
    json_t *v, *root;

    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        reply_json(h, req, 200, knobs_json(&h->knobs), false);
        return;
    }
    root = read_body(h, req, false);
    if (!root)
        return;
    json_object_foreach(root, field, v)
    {
        if (strcmp(field, "declineRate") != 0 && strcmp(field, "failRate") != 0 &&
            strcmp(field, "latencyMs") != 0) {
            reply_error(h, req, false, 400, E_BAD_REQUEST, "unknown field '%s'", field);
            goto out;
        }
    }
    why = check_rate(root, "declineRate", &k.decline_rate);
    if (!why)
        why = check_rate(root, "failRate", &k.fail_rate);
    v = json_object_get(root, "latencyMs");
    if (!why && v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > FP_LATENCY_MAX_MS)
            why = "'latencyMs' must be an integer from 0 to 600000";
        else
            k.latency_ms = (uint32_t)json_integer_value(v);
    }
    if (why) {
        reply_error(h, req, false, 400, E_BAD_REQUEST, "%s", why);
        goto out;
    }
    h->knobs = k;
    log_info("config: declineRate=%g failRate=%g latencyMs=%u", k.decline_rate, k.fail_rate,
             (unsigned)k.latency_ms);
    reply_json(h, req, 200, knobs_json(&h->knobs), false);
out:
    json_decref(root);
}

static bool method_ok(fp_http *h, struct evhttp_request *req, bool delayed, int allowed,
                      const char *allow)
{
    if ((int)evhttp_request_get_command(req) & allowed)
        return true;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(h, req, delayed, 405, E_METHOD, "use %s", allow);
    return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    fp_http *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    if (!path)
        path = "";
    if (strcmp(path, "/payments") == 0) {
        if (!method_ok(h, req, true, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "GET, POST"))
            return;
        if (evhttp_request_get_command(req) == EVHTTP_REQ_POST)
            payments_create(h, req);
        else
            payments_list(h, req);
    } else if (strncmp(path, "/payments/", 10) == 0) {
        payment_one(h, req, path + 10);
    } else if (strcmp(path, "/healthz") == 0) {
        if (method_ok(h, req, false, EVHTTP_REQ_GET, "GET"))
            reply_json(h, req, 200, json_pack("{s:s}", "status", "ok"), false);
    } else if (strcmp(path, "/stats") == 0) {
        if (method_ok(h, req, false, EVHTTP_REQ_GET, "GET"))
            stats(h, req);
    } else if (strcmp(path, "/admin/config") == 0) {
        if (method_ok(h, req, false, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "GET, POST"))
            admin_config(h, req);
    } else {
        reply_error(h, req, false, 404, E_NOT_FOUND, "no such resource");
    }
}

fp_http *fp_http_new(struct event_base *base, const cm_addr *listen, fp_store *store,
                     const fp_knobs *knobs)
{
    fp_http *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->base = base;
    h->store = store;
    h->knobs = *knobs;
    h->http = evhttp_new(base);
    if (!h->http)
        goto fail;
    /* Every method reaches on_request, so a wrong one gets our JSON 405. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(h->http, EVHTTP_BODY_MAX);
    evhttp_set_max_headers_size(h->http, HEADERS_MAX);
    evhttp_set_timeout(h->http, IDLE_TIMEOUT_S);
    evhttp_set_gencb(h->http, on_request, h);
    h->bound = evhttp_bind_socket_with_handle(h->http, listen->host, (ev_uint16_t)listen->port);
    if (!h->bound) {
        char a[CM_HOST_MAX + 16];
        log_error("cannot listen on %s", cm_addr_format(listen, a, sizeof(a)));
        goto fail;
    }
    return h;
fail:
    fp_http_free(h);
    return NULL;
}

void fp_http_stop(fp_http *h)
{
    if (h->bound) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
    while (h->pending)
        pending_send(h->pending);
}

void fp_http_free(fp_http *h)
{
    if (!h)
        return;
    /* Held-back replies go out first: evhttp_free would free their requests. */
    while (h->pending)
        pending_send(h->pending);
    if (h->http)
        evhttp_free(h->http);
    free(h);
}
