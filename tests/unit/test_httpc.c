/*
 * test_httpc: libcommon's HTTP client (cm_httpc) against a tiny evhttp server in this
 * process, on one event loop over loopback (no other server, no outside network):
 * keep-alive reuse, headers and JSON bodies, Connection: close mode, the timeout, a
 * refused connect, the size bound, a body of megabytes, 2xx bodies dropped unread
 * (skip_ok_body) while other answers keep theirs, and the callback contract (never inside
 * the call; a free inside the callback is deferred).
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cm_httpc.h"
#include "unit_run.h"

typedef struct world {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int last_peer_port; /* the client's port of the last request */
    int conns_seen;     /* connections seen (a new client port) */
    /* what the client got */
    int calls;
    int status;
    char error[32];
    char body[4096];
    size_t body_len;
    uint64_t body_hash; /* FNV-1a of the whole body */
    bool in_request;    /* inside cm_httpc_request: a callback now breaks the contract */
    bool skipping;      /* the client drops 2xx bodies (skip_ok_body) */
    size_t skipped;     /* the last answer's resp.skipped */
    cm_httpc *free_me;  /* freed by the callback itself */
} world;

static const char *hdr(struct evhttp_request *req, const char *name)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    return v ? v : "-";
}

/* /huge: HUGE_LEN bytes, byte i a hash of i (no period within the body), so that a chunk
 * read twice, skipped or out of order changes the hash of what arrived. */
#define HUGE_LEN (3 * 1024 * 1024 + 17)
static uint64_t fnv1a(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static char huge_at(size_t i)
{
    uint64_t z = (uint64_t)i + 0x9E3779B97F4A7C15ULL; /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (char)('a' + (z ^ (z >> 31)) % 26);
}

static void huge_body(struct evbuffer *out)
{
    char block[4096];
    for (size_t i = 0; i < HUGE_LEN; i += sizeof(block)) {
        size_t n = HUGE_LEN - i < sizeof(block) ? HUGE_LEN - i : sizeof(block);
        for (size_t k = 0; k < n; k++)
            block[k] = huge_at(i + k);
        evbuffer_add(out, block, n);
    }
}

static void serve(struct evhttp_request *req, void *arg)
{
    world *w = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *peer = NULL;
    ev_uint16_t peer_port = 0;
    evhttp_connection_get_peer(conn, &peer, &peer_port);
    if (peer_port != w->last_peer_port) {
        w->conns_seen++;
        w->last_peer_port = peer_port;
    }
    if (strcmp(uri, "/slow") == 0)
        return; /* never answered: evhttp_free drops it */
    struct evbuffer *out = evbuffer_new();
    if (strcmp(uri, "/big") == 0) {
        for (int i = 0; i < 2000; i++)
            evbuffer_add(out, "x", 1);
    } else if (strcmp(uri, "/huge") == 0) {
        huge_body(out);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        char body[256] = "";
        evbuffer_remove(in, body, n < sizeof(body) - 1 ? n : sizeof(body) - 1);
        evbuffer_add_printf(out, "%s|%s|%s|%s|%s",
                            evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET",
                            hdr(req, "Idempotency-Key"), hdr(req, "Content-Type"),
                            hdr(req, "Connection"), body);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, strcmp(uri, "/missing") == 0 ? 404 : 200, "OK", out);
    evbuffer_free(out);
}

static void world_init(world *w)
{
    memset(w, 0, sizeof(*w));
    w->base = event_base_new();
    w->http = evhttp_new(w->base);
    ck_assert_ptr_nonnull(w->http);
    evhttp_set_gencb(w->http, serve, w);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(w->http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len), 0);
    w->port = ntohs(sin.sin_port);
}

static void world_free(world *w)
{
    evhttp_free(w->http);
    event_base_free(w->base);
}

static void on_resp(void *arg, const cm_httpc_resp *r)
{
    world *w = arg;
    ck_assert_msg(!w->in_request, "callback ran inside cm_httpc_request");
    w->calls++;
    w->status = r->status;
    snprintf(w->error, sizeof(w->error), "%s", r->error ? r->error : "");
    snprintf(w->body, sizeof(w->body), "%s", r->body);
    w->body_len = r->body_len;
    w->body_hash = fnv1a(14695981039346656037ULL, r->body, r->body_len);
    ck_assert_uint_eq(strlen(r->body), r->body_len);
    w->skipped = r->skipped;
    ck_assert(r->skipped == 0 || (w->skipping && r->status / 100 == 2 && r->body_len == 0));
    if (w->free_me != NULL) {
        cm_httpc_free(w->free_me); /* deferred until this returns */
        w->free_me = NULL;
    }
    event_base_loopbreak(w->base);
}

/* One request, the loop run until its answer. */
static void roundtrip(world *w, cm_httpc *h, const char *method, const char *path, const char *body,
                      const char *const *headers)
{
    int calls = w->calls;
    w->in_request = true;
    ck_assert_int_eq(cm_httpc_request(h, method, path, body, headers, on_resp, w), CM_OK);
    w->in_request = false;
    ck_assert(cm_httpc_busy(h) || w->free_me != NULL);
    event_base_dispatch(w->base);
    ck_assert_int_eq(w->calls, calls + 1);
}

START_TEST(test_keepalive_headers_json)
{
    world w;
    world_init(&w);
    cm_httpc *h = cm_httpc_new(w.base, "127.0.0.1", w.port, NULL);
    ck_assert_ptr_nonnull(h);
    const char *headers[] = {"Idempotency-Key", "ref-1", NULL};
    roundtrip(&w, h, "POST", "/echo", "{\"a\":1}", headers);
    ck_assert_int_eq(w.status, 200);
    ck_assert_str_eq(w.body, "POST|ref-1|application/json|keep-alive|{\"a\":1}");
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_str_eq(w.body, "GET|-|-|keep-alive|");
    roundtrip(&w, h, "GET", "/missing", NULL, NULL);
    ck_assert_int_eq(w.status, 404);   /* an answer, whatever its status */
    ck_assert_int_eq(w.conns_seen, 1); /* three requests, one connection */
    /* one request in flight at a time */
    ck_assert_int_eq(cm_httpc_request(h, "GET", "/echo", NULL, NULL, on_resp, &w), CM_OK);
    ck_assert_int_eq(cm_httpc_request(h, "GET", "/echo", NULL, NULL, on_resp, &w), CM_ERR);
    event_base_dispatch(w.base);
    cm_httpc_free(h);
    world_free(&w);
}
END_TEST

START_TEST(test_close_mode)
{
    world w;
    world_init(&w);
    const cm_httpc_opts o = {.close = true};
    cm_httpc *h = cm_httpc_new(w.base, "localhost", w.port, &o);
    ck_assert_ptr_nonnull(h);
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_str_eq(w.body, "GET|-|-|close|");
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    ck_assert_int_eq(w.conns_seen, 2); /* a new connection per request */
    cm_httpc_free(h);
    world_free(&w);
}
END_TEST

/* A client on port with opts whose GET path fails with error; returned for more use. */
static cm_httpc *fails_with(world *w, int port, const cm_httpc_opts *o, const char *path,
                            const char *error)
{
    cm_httpc *h = cm_httpc_new(w->base, "127.0.0.1", port, o);
    ck_assert_ptr_nonnull(h);
    roundtrip(w, h, "GET", path, NULL, NULL);
    ck_assert_int_eq(w->status, 0);
    ck_assert_str_eq(w->error, error);
    return h;
}

START_TEST(test_timeout)
{
    world w;
    world_init(&w);
    const cm_httpc_opts o = {.timeout_ms = 100};
    cm_httpc *h = fails_with(&w, w.port, &o, "/slow", "timeout");
    /* the client reconnects for the next request */
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    cm_httpc_free(h);
    world_free(&w);
}
END_TEST

START_TEST(test_refused)
{
    world w;
    world_init(&w);
    /* a port that was just free: bind, read it, close */
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    evutil_closesocket(fd);
    cm_httpc_free(fails_with(&w, ntohs(sin.sin_port), NULL, "/echo", "connect"));
    ck_assert_ptr_null(cm_httpc_new(w.base, "127.0.0.1", 0, NULL));
    world_free(&w);
}
END_TEST

START_TEST(test_too_large)
{
    world w;
    world_init(&w);
    const cm_httpc_opts o = {.max_body = 1000};
    cm_httpc_free(fails_with(&w, w.port, &o, "/big", "too_large"));
    const cm_httpc_opts o2 = {.max_body = 2000};
    cm_httpc *h = cm_httpc_new(w.base, "127.0.0.1", w.port, &o2);
    roundtrip(&w, h, "GET", "/big", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    ck_assert_uint_eq(strlen(w.body), 2000);
    cm_httpc_free(h);
    world_free(&w);
}
END_TEST

/* A body of megabytes (a large hall's seat map) arrives over many reads: every byte once
 * and in order, twice on one connection, and the keep-alive connection serves the next
 * request. */
START_TEST(test_huge_body)
{
    world w;
    world_init(&w);
    const cm_httpc_opts o = {.max_body = 8 * 1024 * 1024};
    cm_httpc *h = cm_httpc_new(w.base, "127.0.0.1", w.port, &o);
    char *want = malloc(HUGE_LEN);
    ck_assert_ptr_nonnull(want);
    for (size_t i = 0; i < HUGE_LEN; i++)
        want[i] = huge_at(i);
    for (int round = 0; round < 2; round++) {
        roundtrip(&w, h, "GET", "/huge", NULL, NULL);
        ck_assert_int_eq(w.status, 200);
        ck_assert_uint_eq(w.body_len, HUGE_LEN);
        ck_assert_uint_eq(w.body_hash, fnv1a(14695981039346656037ULL, want, HUGE_LEN));
    }
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    ck_assert_int_eq(w.conns_seen, 1);
    free(want);
    cm_httpc_free(h);
    world_free(&w);
}
END_TEST

/* skip_ok_body: a 200's body of megabytes is counted, not kept, twice on one keep-alive
 * connection that stays in step; a 404 keeps its body; the size bound still holds. */
START_TEST(test_skip_ok_body)
{
    world w;
    world_init(&w);
    w.skipping = true;
    const cm_httpc_opts o = {.max_body = 8 * 1024 * 1024, .skip_ok_body = true};
    cm_httpc *h = cm_httpc_new(w.base, "127.0.0.1", w.port, &o);
    for (int round = 0; round < 2; round++) {
        roundtrip(&w, h, "GET", "/huge", NULL, NULL);
        ck_assert_int_eq(w.status, 200);
        ck_assert_uint_eq(w.skipped, HUGE_LEN);
        ck_assert_uint_eq(w.body_len, 0);
    }
    roundtrip(&w, h, "GET", "/missing", NULL, NULL);
    ck_assert_int_eq(w.status, 404);
    ck_assert_str_eq(w.body, "GET|-|-|keep-alive|");
    ck_assert_uint_eq(w.skipped, 0);
    roundtrip(&w, h, "GET", "/echo", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    ck_assert_uint_eq(w.skipped, strlen("GET|-|-|keep-alive|"));
    ck_assert_str_eq(w.body, "");
    ck_assert_int_eq(w.conns_seen, 1);
    cm_httpc_free(h);
    const cm_httpc_opts small = {.max_body = 1000, .skip_ok_body = true};
    cm_httpc_free(fails_with(&w, w.port, &small, "/big", "too_large"));
    world_free(&w);
}
END_TEST

START_TEST(test_free_in_callback)
{
    world w;
    world_init(&w);
    cm_httpc *h = cm_httpc_new(w.base, "127.0.0.1", w.port, NULL);
    ck_assert_ptr_nonnull(h);
    w.free_me = h;
    roundtrip(&w, h, "GET", "/echo", NULL, NULL); /* ASan reports a use after free */
    ck_assert_int_eq(w.status, 200);
    /* a free with a request in flight drops it without a callback */
    h = cm_httpc_new(w.base, "127.0.0.1", w.port, NULL);
    ck_assert_int_eq(cm_httpc_request(h, "GET", "/slow", NULL, NULL, on_resp, &w), CM_OK);
    int calls = w.calls;
    cm_httpc_free(h);
    struct timeval tv = {0, 50000};
    event_base_loopexit(w.base, &tv);
    event_base_dispatch(w.base);
    ck_assert_int_eq(w.calls, calls);
    world_free(&w);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_keepalive_headers_json,
                                  test_close_mode,
                                  test_timeout,
                                  test_refused,
                                  test_too_large,
                                  test_huge_body,
                                  test_skip_ok_body,
                                  test_free_in_callback};
    return unit_run("httpc", tests, sizeof(tests) / sizeof(tests[0]), 20);
}
