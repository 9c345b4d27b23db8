/*
 * lg_driver: the load generators' client pool and run (see the header). Each client's
 * phase is one lg_client_state; client_move is the only place it changes and asserts
 * that the move is legal.
 */
#include "lg_driver.h"

#include <assert.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"

#define LG_SEND_FAIL_PAUSE_US 1000 /* after a request that could not even be sent */
#define LG_BEARER_MAX         160  /* "Bearer " and a token (64 hex digits for reserved) */
/* The setup's seat maps: a hall of 120,000 seats (bench/booking.sh's distinct shape) is
 * about 12 MB of JSON, past cm_httpc's default limit. */
#define LG_MAP_MAX_BODY (64u * 1024 * 1024)

typedef enum lg_client_state {
    LG_C_IDLE,     /* not started yet, or finished (nothing to send, or the run stopped) */
    LG_C_CHOOSING, /* inside workload->next: neither waiting nor in flight */
    LG_C_BUSY,     /* a request in flight on conns[server] */
    LG_C_THINK,    /* between requests: the timer starts the next */
} lg_client_state;

static const char *const client_state_name[] = {"idle", "choosing", "busy", "think"};

typedef struct lg_client {
    lg_driver *d;
    uint32_t num;
    lg_client_state state;
    struct event *timer;
    cm_httpc **conns; /* [nservers], each made on first use */
} lg_client;

struct lg_driver {
    struct event_base *base;
    lg_driver_opts o;
    const lg_workload *w;
    void *ctx;
    lg_client *c;
    /* setup */
    const int64_t *perfs; /* borrowed from lg_driver_start's caller */
    size_t nperfs, map_next, map_try;
    cm_httpc *map_conn;
    size_t map_conn_server;
    bool setup_done, setup_failed;
    /* run */
    bool stopping, started;
    struct event *map_timer, *stop_timer, *grace_timer, *sig_int, *sig_term;
};

/* Only asserts call it: unused where NDEBUG is set (Release builds). */
__attribute__((unused)) static bool client_move_ok(lg_client_state from, lg_client_state to)
{
    switch (to) {
    case LG_C_CHOOSING:
        return from == LG_C_IDLE || from == LG_C_THINK || from == LG_C_BUSY;
    case LG_C_BUSY:
        return from == LG_C_CHOOSING;
    case LG_C_THINK:
        return from == LG_C_CHOOSING || from == LG_C_BUSY;
    case LG_C_IDLE:
        return from != LG_C_IDLE;
    }
    return false;
}

/* The one place a client's state changes. */
static void client_move(lg_client *c, lg_client_state to)
{
    assert(client_move_ok(c->state, to));
    log_debug("load client %u: %s -> %s", c->num, client_state_name[c->state],
              client_state_name[to]);
    c->state = to;
}

static bool all_idle(const lg_driver *d)
{
    for (uint32_t i = 0; i < d->o.clients; i++)
        if (d->c[i].state != LG_C_IDLE)
            return false;
    return !d->w->others_idle || d->w->others_idle(d->ctx);
}

void lg_driver_check_done(lg_driver *d)
{
    if ((d->stopping || (d->started && d->o.clients > 0)) && all_idle(d))
        event_base_loopbreak(d->base);
}

/* The stop, from the workload (sig 0), the duration timer or a signal. */
static void driver_stop(lg_driver *d, const char *why, int sig)
{
    if (d->stopping)
        return;
    d->stopping = true;
    if (d->w->stopping)
        d->w->stopping(d->ctx, why, sig);
    for (uint32_t i = 0; i < d->o.clients; i++) {
        lg_client *c = &d->c[i];
        if (c->state == LG_C_THINK) {
            evtimer_del(c->timer);
            client_move(c, LG_C_IDLE);
        }
    }
    if (d->o.grace_ms > 0) {
        struct timeval tv = cm_tv_from_ms(d->o.grace_ms);
        evtimer_add(d->grace_timer, &tv);
    }
    if (!d->setup_done)
        event_base_loopbreak(d->base); /* nothing ran yet: nothing to wait for */
    lg_driver_check_done(d);
}

void lg_driver_stop(lg_driver *d, const char *why)
{
    driver_stop(d, why, 0);
}

bool lg_driver_stopping(const lg_driver *d)
{
    return d->stopping;
}

/* ---- the clients ---- */

static void client_next(lg_client *c);

static void client_think(lg_client *c, uint64_t us)
{
    lg_driver *d = c->d;
    if (d->stopping) {
        client_move(c, LG_C_IDLE);
        lg_driver_check_done(d);
        return;
    }
    if (us == 0 && c->state == LG_C_BUSY) {
        client_next(c); /* the hot path of a closed loop: no timer round */
        return;
    }
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    client_move(c, LG_C_THINK);
    evtimer_add(c->timer, &tv);
}

static void on_answer(void *arg, const cm_httpc_resp *resp)
{
    lg_client *c = arg;
    lg_driver *d = c->d;
    assert(c->state == LG_C_BUSY);
    uint64_t pause = d->w->answered(d->ctx, c->num, resp);
    client_think(c, pause);
}

/* Asks the workload for the client's next request and sends it. */
static void client_next(lg_client *c)
{
    lg_driver *d = c->d;
    lg_request req;
    if (d->stopping) {
        if (c->state != LG_C_IDLE)
            client_move(c, LG_C_IDLE);
        lg_driver_check_done(d);
        return;
    }
    client_move(c, LG_C_CHOOSING);
    memset(&req, 0, sizeof(req));
    switch (d->w->next(d->ctx, c->num, &req)) {
    case LG_DONE:
        free(req.body);
        client_move(c, LG_C_IDLE);
        lg_driver_check_done(d);
        return;
    case LG_WAIT:
        free(req.body);
        client_think(c, req.wait_us);
        return;
    case LG_SEND:
        break;
    }
    assert(req.server < d->o.nservers && req.method != NULL);
    cm_httpc **conn = &c->conns[req.server];
    if (*conn == NULL) {
        const cm_httpc_opts ho = {.timeout_ms = d->o.timeout_ms,
                                  .skip_ok_body = d->o.skip_ok_bodies};
        const cm_addr *s = &d->o.servers[req.server];
        *conn = cm_httpc_new(d->base, s->host, s->port, &ho);
    }
    client_move(c, LG_C_BUSY);
    char bearer[LG_BEARER_MAX];
    const char *auth[] = {"Authorization", bearer, NULL, NULL};
    if (req.token != NULL)
        snprintf(bearer, sizeof(bearer), "Bearer %s", req.token);
    if (*conn == NULL || cm_httpc_request(*conn, req.method, req.path, req.body,
                                          req.token != NULL ? auth : NULL, on_answer, c) != CM_OK) {
        const cm_httpc_resp r = {.status = 0, .error = "client", .body = ""};
        free(req.body);
        uint64_t pause = d->w->answered(d->ctx, c->num, &r);
        /* never at once: a send that keeps failing must not recurse */
        client_think(c, pause > LG_SEND_FAIL_PAUSE_US ? pause : LG_SEND_FAIL_PAUSE_US);
        return;
    }
    free(req.body);
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    client_next(arg);
}

/* ---- the run ---- */

static void start_clients(lg_driver *d)
{
    struct timeval tv = cm_tv_from_ms(d->o.duration_ms);
    d->setup_done = true;
    d->started = true;
    evtimer_add(d->stop_timer, &tv);
    if (d->w->started)
        d->w->started(d->ctx);
    for (uint32_t i = 0; i < d->o.clients && !d->stopping; i++)
        client_next(&d->c[i]);
    lg_driver_check_done(d);
}

static void map_fetch(lg_driver *d);

static void on_map(void *arg, const cm_httpc_resp *resp)
{
    lg_driver *d = arg;
    struct timeval tv = cm_tv_from_ms(d->o.map_retry_ms);
    switch (d->w->map(d->ctx, d->map_next, resp)) {
    case LG_MAP_OK:
        d->map_next++;
        map_fetch(d);
        return;
    case LG_MAP_RETRY:
        d->map_try++;
        evtimer_add(d->map_timer, &tv);
        return;
    case LG_MAP_FAIL:
        d->setup_failed = true;
        event_base_loopbreak(d->base);
        return;
    }
}

/* The seat maps one after another; a retry goes to the next server. */
static void map_fetch(lg_driver *d)
{
    char path[96];
    if (d->stopping)
        return;
    if (d->map_next == d->nperfs) {
        cm_httpc_free(d->map_conn);
        d->map_conn = NULL;
        start_clients(d);
        return;
    }
    size_t server = d->map_try % d->o.nservers;
    if (d->map_conn != NULL && d->map_conn_server != server) {
        cm_httpc_free(d->map_conn);
        d->map_conn = NULL;
    }
    if (d->map_conn == NULL) {
        const cm_httpc_opts ho = {.timeout_ms = d->o.map_timeout_ms, .max_body = LG_MAP_MAX_BODY};
        const cm_addr *s = &d->o.servers[server];
        d->map_conn = cm_httpc_new(d->base, s->host, s->port, &ho);
        d->map_conn_server = server;
    }
    snprintf(path, sizeof(path), "/performances/%lld/seats", (long long)d->perfs[d->map_next]);
    if (d->map_conn == NULL ||
        cm_httpc_request(d->map_conn, "GET", path, NULL, NULL, on_map, d) != CM_OK) {
        log_error("out of memory");
        d->setup_failed = true;
        event_base_loopbreak(d->base);
    }
}

static void map_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    map_fetch(arg);
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    lg_driver_stop(arg, "duration reached");
}

static void grace_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lg_driver *d = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    log_warn("ops still in flight %u ms after the stop: recorded as unknown", d->o.grace_ms);
    event_base_loopbreak(d->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    lg_driver *d = arg;
    CM_UNUSED(what);
    if (d->stopping) {
        if (d->o.second_signal_breaks) {
            log_warn("signal %d again: stopping now", (int)sig);
            event_base_loopbreak(d->base);
        }
        return;
    }
    driver_stop(d, sig == SIGTERM ? "SIGTERM" : "SIGINT", (int)sig);
}

lg_driver *lg_driver_new(struct event_base *base, const lg_driver_opts *o, const lg_workload *w,
                         void *ctx)
{
    lg_driver *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->base = base;
    d->o = *o;
    d->w = w;
    d->ctx = ctx;
    d->c = calloc(o->clients + 1, sizeof(*d->c));
    d->map_timer = evtimer_new(base, map_timer_cb, d);
    d->stop_timer = evtimer_new(base, stop_timer_cb, d);
    d->grace_timer = evtimer_new(base, grace_timer_cb, d);
    d->sig_int = evsignal_new(base, SIGINT, signal_cb, d);
    d->sig_term = evsignal_new(base, SIGTERM, signal_cb, d);
    if (!d->c || !d->map_timer || !d->stop_timer || !d->grace_timer || !d->sig_int ||
        !d->sig_term || evsignal_add(d->sig_int, NULL) != 0 || evsignal_add(d->sig_term, NULL) != 0)
        goto fail;
    for (uint32_t i = 0; i < o->clients; i++) {
        lg_client *c = &d->c[i];
        c->d = d;
        c->num = i;
        c->state = LG_C_IDLE;
        c->timer = evtimer_new(base, client_timer_cb, c);
        c->conns = calloc(o->nservers + 1, sizeof(*c->conns));
        if (!c->timer || !c->conns)
            goto fail;
    }
    return d;
fail:
    lg_driver_free(d);
    return NULL;
}

void lg_driver_free(lg_driver *d)
{
    if (d == NULL)
        return;
    for (uint32_t i = 0; d->c && i < d->o.clients; i++) {
        lg_client *c = &d->c[i];
        for (size_t s = 0; c->conns && s < d->o.nservers; s++)
            cm_httpc_free(c->conns[s]);
        free(c->conns);
        if (c->timer)
            event_free(c->timer);
    }
    free(d->c);
    cm_httpc_free(d->map_conn);
    struct event *evs[] = {d->map_timer, d->stop_timer, d->grace_timer, d->sig_int, d->sig_term};
    for (size_t i = 0; i < CM_ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    free(d);
}

cm_rc lg_driver_start(lg_driver *d, const int64_t *perfs, size_t nperfs)
{
    if (d->o.nservers == 0 && d->o.clients > 0)
        return CM_ERR;
    d->perfs = perfs;
    d->nperfs = nperfs;
    if (nperfs > 0 && (d->w->map == NULL || d->o.nservers == 0))
        return CM_ERR;
    struct timeval now = {0, 0};
    evtimer_add(d->map_timer, &now); /* from the loop, never inside this call */
    return CM_OK;
}

bool lg_driver_setup_failed(const lg_driver *d)
{
    return d->setup_failed;
}

bool lg_driver_setup_done(const lg_driver *d)
{
    return d->setup_done;
}

uint32_t lg_driver_abandon(lg_driver *d)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->o.clients; i++) {
        lg_client *c = &d->c[i];
        if (c->state != LG_C_BUSY)
            continue;
        if (d->w->abandoned)
            d->w->abandoned(d->ctx, c->num);
        client_move(c, LG_C_IDLE);
        n++;
    }
    return n;
}
