/*
 * cx_load: chaos_load, the chaos suite's load driver. main() owns the command line, the
 * event loop, the signals and the run's stop order; this file also owns the booking
 * workload: C concurrent HTTP clients (cx_load_http) booking seats on a hot performance
 * and on others, cancelling what this run booked and reading seat maps, against several
 * reserved servers. Every op is one history line (cx_load_hist) written when it ends.
 * The counter workload (cx_load_counter) runs on the same loop when --lockd is given.
 *
 * Determinism: each client draws from its own PRNG seeded by (--seed, client number), a
 * fixed number of draws per op, so a seed fixes every client's sequence of intended ops
 * (kind, server, performance, user, seats); only what the servers answer varies.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_log.h"
#include "cm_time.h"
#include "cx_cli.h"
#include "cx_load_counter.h"
#include "cx_load_hist.h"
#include "cx_load_http.h"
#include "cx_load_rng.h"

#define MAX_SEATS_PER_BOOK 3
#define SETUP_DEADLINE_MS  30000 /* seat maps at start: servers may still be coming up */
#define SETUP_RETRY_MS     200
#define PAUSE_NO_ANSWER_MS 50    /* after status 0: a dead server is not hammered */
#define PAUSE_BUSY_MS      20    /* after a 503 */
#define STOP_GRACE_MS      15000 /* in-flight ops past the stop get this long, then unknown */

typedef enum op_kind { OP_BOOK, OP_CANCEL, OP_READ } op_kind;
static const char *const OP_NAMES[] = {"book", "cancel", "read_seats"};

typedef struct perf_map {
    long long id;
    long long *seats;
    size_t n;
} perf_map;

typedef struct resv {
    long long id, perf, user;
    long long seats[MAX_SEATS_PER_BOOK];
    int nseats;
} resv;

typedef enum bk_state {
    BK_THINK, /* between ops; the timer starts the next */
    BK_BUSY,  /* a request in flight */
    BK_IDLE,  /* stopped */
} bk_state;

struct load;

typedef struct bk_client {
    struct load *L;
    uint32_t num;
    uint64_t rng;
    bk_state state;
    struct event *timer;
    cx_http **conns; /* one keep-alive connection per server, lazily connected */
    /* the op in flight */
    uint64_t id;
    uint64_t start_ms;
    op_kind kind;
    size_t server;
    resv r; /* book: what is asked; cancel: the target */
} bk_client;

typedef struct load_opts {
    cm_addr *servers;
    size_t n_servers;
    uint64_t duration_s;
    uint64_t seed;
    const char *out;
    uint64_t epoch_ms;
    bool have_epoch;
    uint32_t clients;
    long long hot;
    long long *perfs;
    size_t n_perfs;
    long long user_first;
    long long user_count;
    uint64_t max_requests;
    uint32_t timeout_ms;
    cm_addr *lockd;
    size_t n_lockd;
    uint32_t counters;
    const char *database;
    uint32_t counter_clients;
    uint64_t counter_lease_ms;
    uint32_t counter_sleep_min, counter_sleep_max;
    bool counter_ignore_lost;
    const char *counter_marker;
    uint32_t client_base;
    bool have_client_base;
    cm_log_level log_level;
} load_opts;

typedef struct load {
    struct event_base *base;
    const load_opts *o;
    cx_hist *hist;
    cx_counter *counter;
    bk_client *clients;
    uint32_t n_clients; /* booking clients: 0 without --servers */
    perf_map *maps;     /* [0]: hot, then --perfs */
    size_t n_maps;
    resv *pool; /* confirmed by this run and not yet picked for a cancel */
    size_t n_pool, cap_pool;
    char (*server_names)[CM_HOST_MAX + 16];
    /* setup */
    cx_http *setup;
    size_t setup_map;
    size_t setup_try;
    uint64_t setup_deadline;
    struct event *setup_timer;
    /* stop */
    struct event *stop_timer;
    struct event *grace_timer;
    struct event *sig_term, *sig_int;
    bool stopping;
    int rc;
    uint64_t t0;
    uint64_t book_ok, cancel_ok;
} load;

static void client_think(bk_client *c, uint32_t ms);

/* ---- stop ---- */

static bool all_idle(const load *L)
{
    for (uint32_t i = 0; i < L->n_clients; i++)
        if (L->clients[i].state != BK_IDLE)
            return false;
    return !L->counter || cx_counter_idle(L->counter);
}

static void check_done(load *L)
{
    if (L->stopping && all_idle(L))
        event_base_loopexit(L->base, NULL);
}

static void stop_run(load *L, const char *why)
{
    struct timeval tv = cm_tv_from_ms(STOP_GRACE_MS);
    if (L->stopping)
        return;
    log_info("stopping: %s", why);
    L->stopping = true;
    cx_hist_stop(L->hist);
    for (uint32_t i = 0; i < L->n_clients; i++) {
        bk_client *c = &L->clients[i];
        if (c->state == BK_THINK) {
            evtimer_del(c->timer);
            c->state = BK_IDLE;
        }
    }
    if (L->counter)
        cx_counter_stop(L->counter);
    if (L->grace_timer)
        evtimer_add(L->grace_timer, &tv);
    check_done(L);
}

/* ---- history lines of the booking workload ---- */

static json_t *seats_json(const resv *r)
{
    json_t *a = json_array();
    for (int i = 0; a && i < r->nseats; i++)
        json_array_append_new(a, json_integer(r->seats[i]));
    return a;
}

static const char *error_code(json_t *body)
{
    const char *code = json_string_value(json_object_get(json_object_get(body, "error"), "code"));
    return code ? code : "";
}

/* Writes the op's line. resp NULL: the run stopped with the op in flight. */
static void op_record(bk_client *c, const cx_http_resp *resp, json_t *body)
{
    load *L = c->L;
    int status = resp ? resp->status : 0;
    const char *outcome = status == 0 ? "unknown" : (status / 100 == 2 ? "ok" : "fail");
    json_t *rec =
        json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:s}", "type", "op", "id", (json_int_t)c->id, "client",
                  (json_int_t)c->num, "op", OP_NAMES[c->kind], "start_ms", (json_int_t)c->start_ms,
                  "end_ms", (json_int_t)cx_hist_now(L->hist), "server", L->server_names[c->server]);
    if (!rec)
        return;
    json_object_set_new(rec, "perf", json_integer(c->r.perf));
    if (c->kind != OP_READ) {
        json_object_set_new(rec, "user", json_integer(c->r.user));
        json_object_set_new(rec, "seats", seats_json(&c->r));
    }
    if (c->kind == OP_CANCEL || c->r.id > 0)
        json_object_set_new(rec, "reservation", json_integer(c->r.id));
    json_object_set_new(rec, "status", json_integer(status));
    json_object_set_new(rec, "outcome", json_string(outcome));
    json_object_set_new(rec, "code", json_string(status ? error_code(body) : ""));
    if (c->kind == OP_BOOK) {
        const char *pay = json_string_value(json_object_get(body, "paymentId"));
        json_object_set_new(rec, "payment", pay && status == 201 ? json_string(pay) : json_null());
    }
    if (status == 0)
        json_object_set_new(rec, "error", json_string(resp ? resp->error : "stopped"));
    cx_hist_write(L->hist, rec);
}

static void pool_add(load *L, const resv *r)
{
    if (L->n_pool == L->cap_pool) {
        size_t cap = L->cap_pool ? L->cap_pool * 2 : 256;
        resv *np = realloc(L->pool, cap * sizeof(*np));
        if (!np)
            return; /* only fewer cancels */
        L->pool = np;
        L->cap_pool = cap;
    }
    L->pool[L->n_pool++] = *r;
}

static void op_done(void *arg, const cx_http_resp *resp)
{
    bk_client *c = arg;
    load *L = c->L;
    json_t *body = resp->status ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;

    if (c->kind == OP_BOOK && resp->status == 201) {
        json_t *id = json_object_get(body, "id");
        c->r.id = json_is_integer(id) ? (long long)json_integer_value(id) : 0;
        if (c->r.id > 0)
            pool_add(L, &c->r);
        L->book_ok++;
    }
    if (c->kind == OP_CANCEL && resp->status == 200)
        L->cancel_ok++;
    op_record(c, resp, body);
    json_decref(body);
    c->state = BK_THINK;
    if (resp->status == 0)
        client_think(c, PAUSE_NO_ANSWER_MS);
    else if (resp->status == 503)
        client_think(c, PAUSE_BUSY_MS);
    else
        client_think(c, 0);
}

/* ---- the op mix ---- */

static void pick_seats(bk_client *c, const perf_map *m)
{
    int want = 1 + (int)cx_rng_below(&c->rng, MAX_SEATS_PER_BOOK);
    c->r.nseats = 0;
    for (int i = 0; i < want; i++) {
        long long s = m->seats[cx_rng_below(&c->rng, m->n)];
        bool dup = false;
        for (int k = 0; k < c->r.nseats; k++)
            dup = dup || c->r.seats[k] == s;
        if (!dup)
            c->r.seats[c->r.nseats++] = s;
    }
}

static void op_start(bk_client *c)
{
    load *L = c->L;
    const load_opts *o = L->o;
    char path[128];
    char *body = NULL;
    const char *method = "GET";

    if (L->stopping || !cx_hist_begin(L->hist, &c->id)) {
        c->state = BK_IDLE;
        check_done(L);
        if (!L->stopping && cx_hist_stopping(L->hist))
            stop_run(L, "max requests reached");
        return;
    }
    /* a fixed number of draws per op, whatever the kind: the sequence depends on the seed */
    uint64_t dice = cx_rng_below(&c->rng, 100);
    size_t other = L->n_maps > 1 ? 1 + cx_rng_below(&c->rng, L->n_maps - 1) : 0;
    size_t any = cx_rng_below(&c->rng, L->n_maps);
    uint64_t pick = cx_rng_below(&c->rng, UINT32_MAX);
    c->server = cx_rng_below(&c->rng, L->o->n_servers);
    memset(&c->r, 0, sizeof(c->r));
    c->r.user = o->user_first + (long long)cx_rng_below(&c->rng, (uint64_t)o->user_count);
    if (dice < 75) {
        const perf_map *m = &L->maps[dice < 60 ? 0 : other];
        c->kind = OP_BOOK;
        c->r.perf = m->id;
        pick_seats(c, m);
    } else if (dice < 85 && L->n_pool > 0) {
        size_t k = pick % L->n_pool;
        c->kind = OP_CANCEL;
        c->r = L->pool[k];
        L->pool[k] = L->pool[--L->n_pool]; /* never two cancels of one reservation at once */
    } else {
        c->kind = OP_READ;
        c->r.perf = L->maps[dice < 85 ? 0 : any].id;
    }
    c->start_ms = cx_hist_now(L->hist);
    c->state = BK_BUSY;
    if (c->kind == OP_BOOK) {
        json_t *j =
            json_pack("{s:I,s:o}", "userId", (json_int_t)c->r.user, "seatIds", seats_json(&c->r));
        body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(j);
        method = "POST";
        snprintf(path, sizeof(path), "/performances/%lld/reservations", c->r.perf);
    } else if (c->kind == OP_CANCEL) {
        method = "DELETE";
        snprintf(path, sizeof(path), "/reservations/%lld", c->r.id);
    } else {
        snprintf(path, sizeof(path), "/performances/%lld/seats", c->r.perf);
    }
    if ((c->kind == OP_BOOK && !body) ||
        cx_http_request(c->conns[c->server], method, path, body, op_done, c) != CM_OK) {
        cx_http_resp r = {.status = 0, .error = "client", .body = ""};
        op_record(c, &r, NULL);
        client_think(c, PAUSE_NO_ANSWER_MS);
    }
    free(body);
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    op_start(arg);
}

static void client_think(bk_client *c, uint32_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    if (c->L->stopping) {
        c->state = BK_IDLE;
        check_done(c->L);
        return;
    }
    c->state = BK_THINK;
    evtimer_add(c->timer, &tv);
}

/* ---- setup: seat maps, then the workloads ---- */

static void counter_idle_cb(void *arg)
{
    load *L = arg;
    if (!L->stopping && cx_hist_stopping(L->hist))
        stop_run(L, "max requests reached");
    check_done(L);
}

static void start_workloads(load *L)
{
    const load_opts *o = L->o;
    struct timeval dur = cm_tv_from_ms(o->duration_s * 1000);
    evtimer_add(L->stop_timer, &dur);
    L->t0 = cm_now_ms();
    for (uint32_t i = 0; i < L->n_clients; i++)
        client_think(&L->clients[i], 0);
    if (o->n_lockd > 0) {
        cx_counter_opts co = {.lockd = o->lockd,
                              .n_lockd = o->n_lockd,
                              .conninfo = o->database,
                              .counters = o->counters,
                              .clients = o->counter_clients,
                              .client_base = o->have_client_base ? o->client_base
                                             : o->n_servers > 0  ? o->clients
                                                                 : 0,
                              .lease_ms = o->counter_lease_ms,
                              .wait_ms = 2000,
                              .timeout_ms = o->timeout_ms,
                              .seed = o->seed,
                              .sleep_min_ms = o->counter_sleep_min,
                              .sleep_max_ms = o->counter_sleep_max,
                              .ignore_lost = o->counter_ignore_lost,
                              .marker = o->counter_marker};
        L->counter = cx_counter_new(L->base, L->hist, &co, counter_idle_cb, L);
        if (!L->counter) {
            log_error("cannot start the counter workload");
            L->rc = 1;
            event_base_loopbreak(L->base);
        }
    }
    log_info("running %" PRIu64 " s: %u booking clients on %zu servers, %u counter clients",
             o->duration_s, o->n_servers ? o->clients : 0, o->n_servers,
             o->n_lockd ? o->counter_clients : 0);
}

static void setup_next(load *L);

static bool parse_map(perf_map *m, const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    json_t *seats = json_object_get(j, "seats");
    size_t n = json_array_size(seats);
    m->seats = n ? calloc(n, sizeof(*m->seats)) : NULL;
    m->n = 0;
    for (size_t i = 0; m->seats && i < n; i++) {
        json_t *id = json_object_get(json_array_get(seats, i), "id");
        if (json_is_integer(id))
            m->seats[m->n++] = (long long)json_integer_value(id);
    }
    json_decref(j);
    return m->n > 0;
}

static void setup_done(void *arg, const cx_http_resp *resp)
{
    load *L = arg;
    perf_map *m = &L->maps[L->setup_map];
    struct timeval tv = cm_tv_from_ms(SETUP_RETRY_MS);

    if (resp->status == 200 && parse_map(m, resp->body, resp->body_len)) {
        log_info("performance %lld: %zu seats", m->id, m->n);
        L->setup_map++;
        setup_next(L);
        return;
    }
    free(m->seats);
    m->seats = NULL;
    if (resp->status == 200 || resp->status == 404) {
        log_error("performance %lld: %s", m->id,
                  resp->status == 404 ? "not found" : "no seats in its seat map");
        L->rc = 1;
        event_base_loopbreak(L->base);
        return;
    }
    if (cm_now_ms() > L->setup_deadline) {
        log_error("seat map of performance %lld: no answer from any server within %d ms", m->id,
                  SETUP_DEADLINE_MS);
        L->rc = 1;
        event_base_loopbreak(L->base);
        return;
    }
    L->setup_try++;
    evtimer_add(L->setup_timer, &tv);
}

static void setup_next(load *L)
{
    char path[96];
    if (L->setup_map == L->n_maps) {
        cx_http_free(L->setup);
        L->setup = NULL;
        start_workloads(L);
        return;
    }
    cx_http_free(L->setup);
    L->setup =
        cx_http_new(L->base, &L->o->servers[L->setup_try % L->o->n_servers], L->o->timeout_ms);
    snprintf(path, sizeof(path), "/performances/%lld/seats", L->maps[L->setup_map].id);
    if (!L->setup || cx_http_request(L->setup, "GET", path, NULL, setup_done, L) != CM_OK) {
        log_error("out of memory");
        L->rc = 1;
        event_base_loopbreak(L->base);
    }
}

static void setup_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    setup_next(arg);
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    stop_run(arg, "duration reached");
}

static void grace_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    load *L = arg;
    log_warn("ops still in flight %d ms after the stop: recorded as unknown", STOP_GRACE_MS);
    event_base_loopbreak(L->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    load *L = arg;
    if (L->stopping) {
        log_warn("signal %d again: stopping now", (int)sig);
        event_base_loopbreak(L->base);
        return;
    }
    stop_run(L, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Ops still in flight when the loop ends get their line (unknown): a booking that was
 * sent may have been made, and the checker must not see it as never asked for. */
static void flush_in_flight(load *L)
{
    for (uint32_t i = 0; i < L->n_clients; i++)
        if (L->clients[i].state == BK_BUSY) {
            op_record(&L->clients[i], NULL, NULL);
            L->clients[i].state = BK_IDLE;
        }
    if (L->counter)
        cx_counter_abort(L->counter);
}

static int run(const load_opts *o)
{
    load L;
    char err[256];
    uint64_t epoch = o->have_epoch ? o->epoch_ms : cm_now_ms();

    memset(&L, 0, sizeof(L));
    L.o = o;
    L.rc = 0;
    L.base = event_base_new();
    L.hist = cx_hist_open(o->out, epoch, o->max_requests, err, sizeof(err));
    if (!L.hist) {
        fprintf(stderr, "chaos_load: --out %s\n", err);
        L.rc = 1;
        goto done;
    }
    L.n_maps = o->n_servers ? 1 + o->n_perfs : 0;
    L.n_clients = o->n_servers ? o->clients : 0;
    L.maps = calloc(L.n_maps + 1, sizeof(*L.maps));
    L.clients = calloc(o->clients + 1, sizeof(*L.clients));
    L.server_names = calloc(o->n_servers + 1, sizeof(*L.server_names));
    L.stop_timer = L.base ? evtimer_new(L.base, stop_timer_cb, &L) : NULL;
    L.grace_timer = L.base ? evtimer_new(L.base, grace_timer_cb, &L) : NULL;
    L.setup_timer = L.base ? evtimer_new(L.base, setup_timer_cb, &L) : NULL;
    L.sig_term = L.base ? evsignal_new(L.base, SIGTERM, signal_cb, &L) : NULL;
    L.sig_int = L.base ? evsignal_new(L.base, SIGINT, signal_cb, &L) : NULL;
    if (!L.base || !L.maps || !L.clients || !L.server_names || !L.stop_timer || !L.grace_timer ||
        !L.setup_timer || !L.sig_term || !L.sig_int || evsignal_add(L.sig_term, NULL) != 0 ||
        evsignal_add(L.sig_int, NULL) != 0) {
        log_error("out of memory at start");
        L.rc = 1;
        goto done;
    }
    for (size_t i = 0; i < o->n_servers; i++)
        cm_addr_format(&o->servers[i], L.server_names[i], sizeof(L.server_names[i]));
    for (size_t i = 0; i < L.n_maps; i++)
        L.maps[i].id = i == 0 ? o->hot : o->perfs[i - 1];
    for (uint32_t i = 0; i < L.n_clients; i++) {
        bk_client *c = &L.clients[i];
        c->L = &L;
        c->num = i;
        c->state = BK_IDLE;
        c->rng = cx_rng_seed(o->seed, i);
        c->timer = evtimer_new(L.base, client_timer_cb, c);
        c->conns = calloc(o->n_servers, sizeof(*c->conns));
        if (!c->timer || !c->conns) {
            L.rc = 1;
            goto done;
        }
        for (size_t s = 0; s < o->n_servers; s++)
            if (!(c->conns[s] = cx_http_new(L.base, &o->servers[s], o->timeout_ms))) {
                log_error("bad server address %s", L.server_names[s]);
                L.rc = 1;
                goto done;
            }
    }
    L.setup_deadline = cm_now_ms() + SETUP_DEADLINE_MS;
    if (L.n_maps)
        setup_next(&L);
    else
        start_workloads(&L);
    if (L.rc == 0 && event_base_dispatch(L.base) < 0)
        L.rc = 1;
    flush_in_flight(&L);
    {
        char sum[256];
        cx_hist_summary(L.hist, sum, sizeof(sum));
        fprintf(stderr,
                "chaos_load: %s book_ok=%" PRIu64 " cancel_ok=%" PRIu64 " elapsed_ms=%" PRIu64
                " rc=%d\n",
                sum, L.book_ok, L.cancel_ok, L.t0 ? cm_now_ms() - L.t0 : 0, L.rc);
    }
done:
    cx_counter_free(L.counter);
    cx_http_free(L.setup);
    for (uint32_t i = 0; i < L.n_clients; i++) {
        bk_client *c = &L.clients[i];
        for (size_t s = 0; c->conns && s < o->n_servers; s++)
            cx_http_free(c->conns[s]);
        free(c->conns);
        if (c->timer)
            event_free(c->timer);
    }
    for (size_t i = 0; L.maps && i < L.n_maps; i++)
        free(L.maps[i].seats);
    free(L.maps);
    free(L.clients);
    free(L.pool);
    free(L.server_names);
    struct event *evs[] = {L.stop_timer, L.grace_timer, L.setup_timer, L.sig_term, L.sig_int};
    for (size_t i = 0; i < CM_ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    cx_hist_close(L.hist);
    if (L.base)
        event_base_free(L.base);
    return L.rc;
}

/* ---- command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chaos_load --servers H:P,... --duration S --out FILE --hot-perf ID\n"
            "                  --perfs ID,... --users FIRST:COUNT [options]\n"
            "       chaos_load --lockd H:P,... --database CONNINFO --duration S --out FILE\n"
            "                  [counter options]   (the counter workload alone)\n"
            "       chaos_load --now-ms     (prints CLOCK_MONOTONIC in ms: the run's epoch)\n"
            "  --servers H:P,...     reserved servers (loopback)\n"
            "  --duration S          stop starting ops after S seconds (1..86400)\n"
            "  --seed N              one seed, one sequence of intended ops per client (1)\n"
            "  --out FILE            history, JSON lines appended (one per op, at its end)\n"
            "  --epoch-ms E          CLOCK_MONOTONIC ms of the run start (now)\n"
            "  --clients C           concurrent booking clients, 1..4096 (16)\n"
            "  --hot-perf ID         the performance that gets ~60%% of the bookings\n"
            "  --perfs ID,...        the other performances (~15%% of the bookings)\n"
            "  --users FIRST:COUNT   user ids to book as\n"
            "  --max-requests N      stop after N ops in all (no limit)\n"
            "  --timeout-ms MS       per request; no answer in time: outcome unknown (5000)\n"
            "  --lockd H:P,...       run the counter workload through these lockd\n"
            "  --counters K          counters 1..K in chaos_counters (4)\n"
            "  --database CONNINFO   libpq conninfo of the booking database (with --lockd)\n"
            "  --counter-clients M   counter clients, each its own lockd session (4)\n"
            "  --counter-lease-ms MS lease of a counter lock, 0: watchdog (0)\n"
            "  --counter-sleep-ms MIN:MAX  pause between a counter's read and write (1:10)\n"
            "  --counter-ignore-lost a naive counter client: a lost lock (LOST push, session\n"
            "                        loss) does not stop the op in progress; its fenced write\n"
            "                        is still sent after the sleep (Kleppmann's scenario)\n"
            "  --counter-marker FILE publish \"sleeping=N held=M\" (counter clients holding\n"
            "                        a lock with the write not yet sent / holding a lock)\n"
            "  --client-base N       history number of the first counter client\n"
            "                        (default: after the booking clients)\n"
            "  --log-level L         error|warn|info|debug (warn)\n"
            "  --help, --version\n");
}

/* "ID,ID,..." of positive ids into a malloc'ed array. */
static bool parse_ids(const char *s, long long **out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    long long *ids = calloc(cap, sizeof(*ids));
    char *copy = strdup(s);
    char *save = NULL;
    size_t k = 0;
    bool ok = ids && copy && *s && s[strlen(s) - 1] != ',';
    for (char *t = ok ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (!cx_cli_u64(t, 1, INT64_MAX, &v)) {
            ok = false;
            break;
        }
        ids[k++] = (long long)v;
    }
    free(copy);
    if (!ok || k != cap) {
        free(ids);
        return false;
    }
    free(*out);
    *out = ids;
    *n = k;
    return true;
}

static bool parse_addrs(const char *flag, const char *s, cm_addr **out, size_t *n)
{
    char err[256];
    cm_addr *a = NULL;
    size_t k = 0;
    if (cm_addr_parse_list(s, &a, &k, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "chaos_load: %s '%s': %s\n", flag, s, err);
        return false;
    }
    for (size_t i = 0; i < k; i++)
        if (!cx_cli_loopback(&a[i])) {
            fprintf(stderr, "chaos_load: %s '%s': loopback addresses only\n", flag, s);
            free(a);
            return false;
        }
    free(*out);
    *out = a;
    *n = k;
    return true;
}

enum {
    OPT_SERVERS = 1,
    OPT_DURATION,
    OPT_SEED,
    OPT_OUT,
    OPT_EPOCH,
    OPT_CLIENTS,
    OPT_HOT,
    OPT_PERFS,
    OPT_USERS,
    OPT_MAXREQ,
    OPT_TIMEOUT,
    OPT_LOCKD,
    OPT_COUNTERS,
    OPT_DATABASE,
    OPT_CCLIENTS,
    OPT_CLEASE,
    OPT_CSLEEP,
    OPT_CIGNORE,
    OPT_CMARKER,
    OPT_CBASE,
    OPT_LOG,
    OPT_NOW,
    OPT_HELP,
    OPT_VERSION
};

/* Numeric flags: option, name, bounds, destination width. */
typedef struct num_flag {
    int opt;
    const char *name;
    uint64_t lo, hi;
} num_flag;

static const num_flag NUM_FLAGS[] = {
    {OPT_DURATION, "--duration", 1, 86400},       {OPT_SEED, "--seed", 0, UINT64_MAX},
    {OPT_EPOCH, "--epoch-ms", 0, UINT64_MAX},     {OPT_CLIENTS, "--clients", 1, 4096},
    {OPT_HOT, "--hot-perf", 1, INT64_MAX},        {OPT_MAXREQ, "--max-requests", 1, UINT64_MAX},
    {OPT_TIMEOUT, "--timeout-ms", 10, 600000},    {OPT_COUNTERS, "--counters", 1, 1000000},
    {OPT_CCLIENTS, "--counter-clients", 1, 1024}, {OPT_CLEASE, "--counter-lease-ms", 0, 3600000},
    {OPT_CBASE, "--client-base", 0, 1000000},
};

static bool set_num(load_opts *o, int opt, uint64_t v)
{
    switch (opt) {
    case OPT_DURATION:
        o->duration_s = v;
        break;
    case OPT_SEED:
        o->seed = v;
        break;
    case OPT_EPOCH:
        o->epoch_ms = v;
        o->have_epoch = true;
        break;
    case OPT_CLIENTS:
        o->clients = (uint32_t)v;
        break;
    case OPT_HOT:
        o->hot = (long long)v;
        break;
    case OPT_MAXREQ:
        o->max_requests = v;
        break;
    case OPT_TIMEOUT:
        o->timeout_ms = (uint32_t)v;
        break;
    case OPT_COUNTERS:
        o->counters = (uint32_t)v;
        break;
    case OPT_CCLIENTS:
        o->counter_clients = (uint32_t)v;
        break;
    case OPT_CLEASE:
        o->counter_lease_ms = v;
        break;
    case OPT_CBASE:
        o->client_base = (uint32_t)v;
        o->have_client_base = true;
        break;
    default:
        return false;
    }
    return true;
}

/* "A:B", both integers in lo..hi. */
static bool parse_pair(const char *s, uint64_t lo, uint64_t hi, uint64_t *a, uint64_t *b)
{
    char first[32];
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(first))
        return false;
    memcpy(first, s, (size_t)(colon - s));
    first[colon - s] = '\0';
    return cx_cli_u64(first, lo, hi, a) && cx_cli_u64(colon + 1, lo, hi, b);
}

/* "MIN:MAX" milliseconds, MIN <= MAX <= 60000. */
static bool parse_sleep(const char *s, load_opts *o)
{
    uint64_t a, b;
    if (!parse_pair(s, 0, 60000, &a, &b) || a > b)
        return false;
    o->counter_sleep_min = (uint32_t)a;
    o->counter_sleep_max = (uint32_t)b;
    return true;
}

static bool parse_users(const char *s, load_opts *o)
{
    uint64_t f, n;
    if (!parse_pair(s, 1, INT64_MAX / 2, &f, &n))
        return false;
    o->user_first = (long long)f;
    o->user_count = (long long)n;
    return true;
}

/* 0: run; 1: served (--help, --version, --now-ms); 2: usage error (printed). */
static int parse_args(int argc, char **argv, load_opts *o)
{
    static const struct option longopts[] = {
        {"servers", required_argument, NULL, OPT_SERVERS},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"seed", required_argument, NULL, OPT_SEED},
        {"out", required_argument, NULL, OPT_OUT},
        {"epoch-ms", required_argument, NULL, OPT_EPOCH},
        {"clients", required_argument, NULL, OPT_CLIENTS},
        {"hot-perf", required_argument, NULL, OPT_HOT},
        {"perfs", required_argument, NULL, OPT_PERFS},
        {"users", required_argument, NULL, OPT_USERS},
        {"max-requests", required_argument, NULL, OPT_MAXREQ},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"lockd", required_argument, NULL, OPT_LOCKD},
        {"counters", required_argument, NULL, OPT_COUNTERS},
        {"database", required_argument, NULL, OPT_DATABASE},
        {"counter-clients", required_argument, NULL, OPT_CCLIENTS},
        {"counter-lease-ms", required_argument, NULL, OPT_CLEASE},
        {"counter-sleep-ms", required_argument, NULL, OPT_CSLEEP},
        {"counter-ignore-lost", no_argument, NULL, OPT_CIGNORE},
        {"counter-marker", required_argument, NULL, OPT_CMARKER},
        {"client-base", required_argument, NULL, OPT_CBASE},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"now-ms", no_argument, NULL, OPT_NOW},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    bool have_users = false, have_hot = false;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const num_flag *nf = NULL;
        for (size_t i = 0; i < CM_ARRAY_LEN(NUM_FLAGS); i++)
            if (NUM_FLAGS[i].opt == c)
                nf = &NUM_FLAGS[i];
        if (nf) {
            uint64_t v;
            if (!cx_cli_u64(optarg, nf->lo, nf->hi, &v)) {
                fprintf(stderr,
                        "chaos_load: %s '%s': want an integer from %" PRIu64 " to %" PRIu64 "\n",
                        nf->name, optarg, nf->lo, nf->hi);
                return 2;
            }
            (void)set_num(o, c, v);
            have_hot = have_hot || c == OPT_HOT;
            continue;
        }
        switch (c) {
        case OPT_SERVERS:
            if (!parse_addrs("--servers", optarg, &o->servers, &o->n_servers))
                return 2;
            break;
        case OPT_LOCKD:
            if (!parse_addrs("--lockd", optarg, &o->lockd, &o->n_lockd))
                return 2;
            break;
        case OPT_OUT:
            o->out = optarg;
            break;
        case OPT_DATABASE:
            o->database = optarg;
            break;
        case OPT_CSLEEP:
            if (!parse_sleep(optarg, o)) {
                fprintf(stderr,
                        "chaos_load: --counter-sleep-ms '%s': want MIN:MAX, 0 <= MIN <= MAX <= "
                        "60000\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_CIGNORE:
            o->counter_ignore_lost = true;
            break;
        case OPT_CMARKER:
            o->counter_marker = optarg;
            break;
        case OPT_PERFS:
            if (!parse_ids(optarg, &o->perfs, &o->n_perfs)) {
                fprintf(stderr, "chaos_load: --perfs '%s': want ID,ID,... (positive)\n", optarg);
                return 2;
            }
            break;
        case OPT_USERS:
            if (!parse_users(optarg, o)) {
                fprintf(stderr, "chaos_load: --users '%s': want FIRST:COUNT (positive)\n", optarg);
                return 2;
            }
            have_users = true;
            break;
        case OPT_LOG:
            if (cm_log_level_parse(optarg, &o->log_level) != CM_OK) {
                fprintf(stderr, "chaos_load: --log-level '%s': want error|warn|info|debug\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_NOW:
            printf("%" PRIu64 "\n", cm_now_ms());
            return 1;
        case OPT_HELP:
            usage(stdout);
            return 1;
        case OPT_VERSION:
            printf("chaos_load %s\n", BOOKING_VERSION);
            return 1;
        case ':':
            fprintf(stderr, "chaos_load: %s needs a value\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            fprintf(stderr, "chaos_load: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    const char *missing = NULL;
    if (optind < argc) {
        fprintf(stderr, "chaos_load: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!o->duration_s)
        missing = "--duration S";
    else if (!o->out)
        missing = "--out FILE";
    else if (!o->n_servers && !o->n_lockd)
        missing = "--servers H:P,... (or --lockd for the counter workload alone)";
    else if (o->n_servers && !have_hot)
        missing = "--hot-perf ID";
    else if (o->n_servers && !have_users)
        missing = "--users FIRST:COUNT";
    else if (o->n_lockd && !o->database)
        missing = "--database CONNINFO (with --lockd)";
    if (missing) {
        fprintf(stderr, "chaos_load: %s is required\n", missing);
        usage(stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    load_opts o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.seed = 1;
    o.clients = 16;
    o.timeout_ms = 5000;
    o.counters = 4;
    o.counter_clients = 4;
    o.counter_sleep_min = 1;
    o.counter_sleep_max = 10;
    o.log_level = CM_LOG_WARN;
    rc = parse_args(argc, argv, &o);
    if (rc == 0) {
        cm_log_init("chaos_load", o.log_level);
        signal(SIGPIPE, SIG_IGN);
        rc = run(&o);
    } else if (rc == 1) {
        rc = 0;
    }
    free(o.servers);
    free(o.lockd);
    free(o.perfs);
    return rc;
}
