/*
 * test_loadgen: the load generators' engine (tools/ lg_driver) against a tiny evhttp
 * server in this process over loopback: seat maps first (a retry goes on, a failure
 * ends the setup), every client's requests until it has nothing left, the duration
 * stop, and the grace time after which requests still in flight are abandoned.
 */
#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lg_driver.h"
#include "lg_seatmap.h"
#include "unit_run.h"

#define CLIENTS 4

typedef struct world {
    struct event_base *base;
    struct evhttp *http;
    cm_addr server;
    int map_calls, map_retries_left;
    bool map_fail;
    int started, stopping;
    char why[64];
    int sent[CLIENTS], answered[CLIENTS], abandoned;
    int per_client; /* requests each client sends, then LG_DONE; 0: forever */
    const char *path;
    lg_seatmap map;
    lg_driver *d;
} world;

static void serve(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    (void)arg;
    if (strcmp(uri, "/slow") == 0)
        return; /* never answered */
    struct evbuffer *out = evbuffer_new();
    if (strstr(uri, "/seats") != NULL)
        evbuffer_add_printf(out, "{\"seats\":[{\"id\":7,\"available\":true},"
                                 "{\"id\":3,\"available\":false}]}");
    else
        evbuffer_add_printf(out, "{}");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void world_init(world *w)
{
    memset(w, 0, sizeof(*w));
    w->base = event_base_new();
    w->http = evhttp_new(w->base);
    evhttp_set_gencb(w->http, serve, w);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(w->http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
    snprintf(w->server.host, sizeof(w->server.host), "127.0.0.1");
    w->server.port = ntohs(sin.sin_port);
    w->path = "/echo";
}

static lg_next on_next(void *arg, uint32_t client, lg_request *req)
{
    world *w = arg;
    if (w->per_client > 0 && w->sent[client] == w->per_client)
        return LG_DONE;
    w->sent[client]++;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "%s", w->path);
    req->body = strdup("{\"a\":1}");
    req->server = 0;
    return LG_SEND;
}

static uint64_t on_answered(void *arg, uint32_t client, const cm_httpc_resp *resp)
{
    world *w = arg;
    ck_assert_int_eq(resp->status, 200);
    w->answered[client]++;
    return w->per_client > 0 ? 0 : 1000; /* forever: a little pause */
}

static void on_abandoned(void *arg, uint32_t client)
{
    world *w = arg;
    ck_assert_int_eq(w->sent[client], w->answered[client] + 1);
    w->abandoned++;
}

static void on_started(void *arg)
{
    world *w = arg;
    ck_assert_int_eq(w->map_calls, 1 + 1); /* one retried, then the accepted answer */
    w->started++;
}

static void on_stopping(void *arg, const char *why, int sig)
{
    world *w = arg;
    ck_assert_int_eq(sig, 0);
    snprintf(w->why, sizeof(w->why), "%s", why);
    w->stopping++;
}

static lg_map_verdict on_map(void *arg, size_t i, const cm_httpc_resp *resp)
{
    world *w = arg;
    ck_assert_uint_eq(i, 0);
    w->map_calls++;
    if (w->map_fail)
        return LG_MAP_FAIL;
    if (w->map_retries_left > 0) {
        w->map_retries_left--;
        return LG_MAP_RETRY;
    }
    ck_assert_int_eq(lg_seatmap_parse(&w->map, resp->body, resp->body_len), CM_OK);
    return LG_MAP_OK;
}

static const lg_workload WORKLOAD = {.next = on_next,
                                     .answered = on_answered,
                                     .abandoned = on_abandoned,
                                     .started = on_started,
                                     .stopping = on_stopping,
                                     .map = on_map};

/* Runs the driver to its end with the given duration and grace. */
static void run(world *w, uint64_t duration_ms, uint32_t grace_ms)
{
    const lg_driver_opts o = {.servers = &w->server,
                              .nservers = 1,
                              .clients = CLIENTS,
                              .timeout_ms = 5000,
                              .map_timeout_ms = 5000,
                              .map_retry_ms = 10,
                              .duration_ms = duration_ms,
                              .grace_ms = grace_ms};
    static const int64_t perfs[] = {1};
    w->map_retries_left = 1;
    w->d = lg_driver_new(w->base, &o, &WORKLOAD, w);
    ck_assert_ptr_nonnull(w->d);
    ck_assert_int_eq(lg_driver_start(w->d, perfs, 1), CM_OK);
    ck_assert_int_eq(w->map_calls, 0); /* never inside the start */
    event_base_dispatch(w->base);
}

static void world_free(world *w)
{
    lg_driver_free(w->d);
    lg_seatmap_clear(&w->map);
    evhttp_free(w->http);
    event_base_free(w->base);
}

START_TEST(test_until_nothing_left)
{
    world w;
    world_init(&w);
    w.per_client = 5;
    run(&w, 60000, 0);
    ck_assert(lg_driver_setup_done(w.d) && !lg_driver_setup_failed(w.d));
    ck_assert_int_eq(w.started, 1);
    ck_assert_uint_eq(w.map.n, 2);
    ck_assert(w.map.ids[0] == 7 && w.map.avail[0] && !w.map.avail[1]);
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(w.answered[i], 5);
    ck_assert_int_eq(w.stopping, 0); /* ended because every client was done */
    ck_assert_uint_eq(lg_driver_abandon(w.d), 0);
    world_free(&w);
}
END_TEST

START_TEST(test_duration)
{
    world w;
    world_init(&w);
    run(&w, 200, 0);
    ck_assert_int_eq(w.stopping, 1);
    ck_assert_str_eq(w.why, "duration reached");
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_int_gt(w.answered[i], 3);
        ck_assert_int_eq(w.sent[i], w.answered[i]); /* in-flight requests finished */
    }
    world_free(&w);
}
END_TEST

START_TEST(test_grace_abandons)
{
    world w;
    world_init(&w);
    w.path = "/slow";
    run(&w, 100, 100);
    ck_assert_int_eq(w.stopping, 1);
    ck_assert_uint_eq(lg_driver_abandon(w.d), CLIENTS);
    ck_assert_int_eq(w.abandoned, CLIENTS);
    world_free(&w);
}
END_TEST

START_TEST(test_map_fail)
{
    world w;
    world_init(&w);
    w.map_fail = true;
    run(&w, 60000, 0);
    ck_assert(lg_driver_setup_failed(w.d) && !lg_driver_setup_done(w.d));
    ck_assert_int_eq(w.started, 0);
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(w.sent[i], 0);
    world_free(&w);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_until_nothing_left, test_duration, test_grace_abandons,
                                  test_map_fail};
    return unit_run("loadgen", tests, sizeof(tests) / sizeof(tests[0]), 20);
}
