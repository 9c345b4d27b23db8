/*
 * cx_load: chaos_load, the chaos suite's load driver. main() owns the command line; this
 * file owns the booking workload: C concurrent load clients (the loadgen library's
 * lg_driver runs them, their connections, the seat maps at start, the duration, the
 * signals and the stop) booking seats on a hot performance and on others, cancelling
 * what this run booked and reading seat maps, against several reserved servers. Every
 * op is one history line (cx_history_writer) written when it ends. The counter workload
 * (cx_load_counter) runs on the same loop when --lockd and --database are given; with
 * --hold-share, a share of the ops are seat-hold ops (cx_load_holds); with --lock-clients, the
 * plain lock clients of the lock workload (cx_load_locks) loop on lockd alongside.
 *
 * Determinism: each client draws from its own PRNG seeded by (--seed, client number), a
 * fixed number of draws per op, so a seed fixes every client's sequence of intended ops
 * (kind, server, performance, user, seats); only what the servers answer varies.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_flags.h"
#include "cm_lockhist.h"
#include "cm_log.h"
#include "cm_parse.h"
#include "cm_time.h"
#include "cx_cli.h"
#include "cx_history_writer.h"
#include "cx_load_counter.h"
#include "cx_load_holds.h"
#include "cx_load_locks.h"
#include "lg_driver.h"
#include "lg_rng.h"
#include "lg_seatmap.h"

#define MAX_SEATS_PER_BOOK 3
#define SETUP_DEADLINE_MS  30000 /* seat maps at start: servers may still be coming up */
#define SETUP_RETRY_MS     200
#define PAUSE_NO_ANSWER_MS 50    /* after status 0: a dead server is not hammered */
#define PAUSE_BUSY_MS      20    /* after a 503 */
#define STOP_GRACE_MS      15000 /* in-flight ops past the stop get this long, then unknown */
#define LD_TOKEN_MAX       130   /* a bearer token (reserved's: 64 hex digits) and its NUL */

/* OP_HOLDS: a hold op, cx_load_holds' from its start to its history line */
typedef enum op_kind { OP_BOOK, OP_CANCEL, OP_READ, OP_HOLDS } op_kind;
static const char *const OP_NAMES[] = {"book", "cancel", "read_seats", "hold"};

typedef struct resv {
    long long id, perf, user;
    long long seats[MAX_SEATS_PER_BOOK];
    int nseats;
} resv;

struct load;

/* One booking load client's workload state; its connections and phase are lg_driver's. */
typedef struct ld_client {
    uint32_t num;
    uint64_t rng;
    /* the op in flight */
    uint64_t id;
    uint64_t start_ms;
    op_kind kind;
    size_t server;
    resv r; /* book: what is asked; cancel: the target */
} ld_client;

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
    const char *token_file; /* --token-file: an admin's bearer token, acting for --users */
    uint32_t hold_share;    /* --hold-share: percent of ops that are hold ops (0: none) */
    uint32_t client_base;
    bool have_client_base;
    uint32_t lock_clients;    /* --lock-clients: the lock workload's clients (0: none) */
    uint32_t lock_resources;  /* --lock-resources: chaos:lk:0..M-1 */
    uint64_t lock_lease_ms;   /* --lock-lease-ms: 0 = watchdog */
    const char *lock_history; /* --lock-history: their lock events */
    cm_log_level log_level;
} load_opts;

typedef struct load {
    struct event_base *base;
    const load_opts *o;
    lg_driver *d;
    cx_hwriter *hist;
    cx_counter *counter;
    cx_holds *holds; /* NULL without --hold-share */
    cx_locks *locks; /* NULL without --lock-clients */
    ld_client *clients;
    uint32_t n_clients; /* booking clients: 0 without --servers */
    int64_t *map_ids;   /* [0]: hot, then --perfs */
    lg_seatmap *maps;   /* [n_maps] */
    size_t n_maps;
    resv *pool; /* confirmed by this run and not yet picked for a cancel */
    size_t n_pool, cap_pool;
    char (*server_names)[CM_HOST_MAX + 16];
    uint64_t setup_deadline;
    int rc;
    uint64_t t0;
    uint64_t book_ok, cancel_ok;
    char token[LD_TOKEN_MAX]; /* from --token-file; "" = requests carry none */
} load;

/* ---- stop (lg_workload.stopping, .others_idle) ---- */

static void on_stopping(void *arg, const char *why, int sig)
{
    load *L = arg;
    CM_UNUSED(sig);
    log_info("stopping: %s", why);
    cx_hwriter_stop(L->hist);
    if (L->counter)
        cx_counter_stop(L->counter);
    if (L->locks)
        cx_locks_stop(L->locks);
}

static bool others_idle(void *arg)
{
    load *L = arg;
    return (!L->counter || cx_counter_idle(L->counter)) && (!L->locks || cx_locks_idle(L->locks));
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
static void op_record(load *L, ld_client *c, const cm_httpc_resp *resp, json_t *body)
{
    int status = resp ? resp->status : 0;
    const char *outcome = status == 0 ? "unknown" : (status / 100 == 2 ? "ok" : "fail");
    json_t *rec = json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:s}", "type", "op", "id", (json_int_t)c->id,
                            "client", (json_int_t)c->num, "op", OP_NAMES[c->kind], "start_ms",
                            (json_int_t)c->start_ms, "end_ms", (json_int_t)cx_hwriter_now(L->hist),
                            "server", L->server_names[c->server]);
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
    cx_hwriter_write(L->hist, rec);
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

/* lg_workload.answered: the op's line; the pause before the client's next op. */
static uint64_t op_done(void *arg, uint32_t client, const cm_httpc_resp *resp)
{
    load *L = arg;
    ld_client *c = &L->clients[client];
    if (c->kind == OP_HOLDS) {
        cx_hold_booked b;
        if (cx_holds_answered(L->holds, client, resp, c->id, c->start_ms,
                              L->server_names[c->server], &b)) {
            resv r = {.id = b.id, .perf = b.perf, .user = b.user, .nseats = b.nseats};
            memcpy(r.seats, b.seats, sizeof(r.seats));
            pool_add(L, &r); /* its cancel gives the seats back like any booking's */
        }
        return resp->status == 0 ? PAUSE_NO_ANSWER_MS * 1000
                                 : (resp->status == 503 ? PAUSE_BUSY_MS * 1000 : 0);
    }
    json_t *body = resp->status ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;

    if (L->holds && c->kind == OP_READ && c->r.perf == L->map_ids[0] && resp->status == 200)
        cx_holds_seen_map(L->holds, resp->body, resp->body_len);
    if (c->kind == OP_BOOK && resp->status == 201) {
        json_t *id = json_object_get(body, "id");
        c->r.id = json_is_integer(id) ? (long long)json_integer_value(id) : 0;
        if (c->r.id > 0)
            pool_add(L, &c->r);
        L->book_ok++;
    }
    if (c->kind == OP_CANCEL && resp->status == 200)
        L->cancel_ok++;
    op_record(L, c, resp, body);
    json_decref(body);
    if (resp->status == 0)
        return PAUSE_NO_ANSWER_MS * 1000;
    if (resp->status == 503)
        return PAUSE_BUSY_MS * 1000;
    return 0;
}

/* lg_workload.abandoned: ops still in flight when the loop ends get their line
 * (unknown): a booking that was sent may have been made, and the checker must not see it
 * as never asked for. */
static void op_abandoned(void *arg, uint32_t client)
{
    load *L = arg;
    ld_client *c = &L->clients[client];
    if (c->kind == OP_HOLDS)
        (void)cx_holds_answered(L->holds, client, NULL, c->id, c->start_ms,
                                L->server_names[c->server], &(cx_hold_booked){0});
    else
        op_record(L, c, NULL, NULL);
}

/* ---- the op mix ---- */

static void pick_seats(ld_client *c, const lg_seatmap *m)
{
    int want = 1 + (int)lg_rng_below(&c->rng, MAX_SEATS_PER_BOOK);
    c->r.nseats = 0;
    for (int i = 0; i < want; i++) {
        long long s = m->ids[lg_rng_below(&c->rng, m->n)];
        bool dup = false;
        for (int k = 0; k < c->r.nseats; k++)
            dup = dup || c->r.seats[k] == s;
        if (!dup)
            c->r.seats[c->r.nseats++] = s;
    }
}

/* lg_workload.next: the client's next op, drawn from its PRNG. */
static lg_next op_start(void *arg, uint32_t client, lg_request *req)
{
    load *L = arg;
    ld_client *c = &L->clients[client];
    const load_opts *o = L->o;

    if (!cx_hwriter_begin(L->hist, &c->id)) {
        if (cx_hwriter_stopping(L->hist))
            lg_driver_stop(L->d, "max requests reached");
        return LG_DONE;
    }
    /* a fixed number of draws per op, whatever the kind: the sequence depends on the seed */
    uint64_t dice = lg_rng_below(&c->rng, 100);
    size_t other = L->n_maps > 1 ? 1 + lg_rng_below(&c->rng, L->n_maps - 1) : 0;
    size_t any = lg_rng_below(&c->rng, L->n_maps);
    uint64_t pick = lg_rng_below(&c->rng, UINT32_MAX);
    c->server = lg_rng_below(&c->rng, L->o->n_servers);
    memset(&c->r, 0, sizeof(c->r));
    c->r.user = o->user_first + (long long)lg_rng_below(&c->rng, (uint64_t)o->user_count);
    req->server = c->server;
    req->token = L->token[0] != '\0' ? L->token : NULL;
    if (L->holds && cx_holds_next(L->holds, client, &c->rng, req)) {
        c->kind = OP_HOLDS;
        c->start_ms = cx_hwriter_now(L->hist);
        return LG_SEND;
    }
    if (dice < 75) {
        size_t m = dice < 60 ? 0 : other;
        c->kind = OP_BOOK;
        c->r.perf = L->map_ids[m];
        pick_seats(c, &L->maps[m]);
        /* a quarter of the hot bookings aim at seats another user holds: they must fail */
        if (m == 0 && L->holds && pick % 4 == 0)
            (void)cx_holds_target(L->holds, pick / 4, c->r.seats, &c->r.nseats);
    } else if (dice < 85 && L->n_pool > 0) {
        size_t k = pick % L->n_pool;
        c->kind = OP_CANCEL;
        c->r = L->pool[k];
        L->pool[k] = L->pool[--L->n_pool]; /* never two cancels of one reservation at once */
    } else {
        c->kind = OP_READ;
        c->r.perf = L->map_ids[dice < 85 ? 0 : any];
    }
    c->start_ms = cx_hwriter_now(L->hist);
    if (c->kind == OP_BOOK) {
        json_t *j =
            json_pack("{s:I,s:o}", "userId", (json_int_t)c->r.user, "seatIds", seats_json(&c->r));
        req->body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(j);
        req->method = "POST";
        snprintf(req->path, sizeof(req->path), "/performances/%lld/reservations", c->r.perf);
        if (!req->body) {
            cm_httpc_resp r = {.status = 0, .error = "client", .body = ""};
            op_record(L, c, &r, NULL);
            req->wait_us = PAUSE_NO_ANSWER_MS * 1000;
            return LG_WAIT;
        }
    } else if (c->kind == OP_CANCEL) {
        req->method = "DELETE";
        snprintf(req->path, sizeof(req->path), "/reservations/%lld", c->r.id);
    } else {
        req->method = "GET";
        snprintf(req->path, sizeof(req->path), "/performances/%lld/seats", c->r.perf);
    }
    return LG_SEND;
}

/* ---- setup: seat maps, then the workloads ---- */

static void counter_idle_cb(void *arg)
{
    load *L = arg;
    if (!lg_driver_stopping(L->d) && cx_hwriter_stopping(L->hist))
        lg_driver_stop(L->d, "max requests reached");
    lg_driver_check_done(L->d);
}

/* lg_workload.started: the seat maps are in; the counter workload starts with the
 * booking clients. */
static void start_workloads(void *arg)
{
    load *L = arg;
    const load_opts *o = L->o;
    L->t0 = cm_now_ms();
    if (o->hold_share > 0 && L->n_clients > 0) {
        L->holds = cx_holds_new(L->hist, L->n_clients, L->map_ids[0], &L->maps[0], o->hold_share);
        if (!L->holds) {
            log_error("out of memory at start");
            L->rc = 1;
            event_base_loopbreak(L->base);
        }
    }
    if (o->lock_clients > 0) {
        char src[64];
        cm_lockhist_src_from_path(o->lock_history, src, sizeof(src));
        cx_locks_opts lo = {.lockd = o->lockd,
                            .n_lockd = o->n_lockd,
                            .clients = o->lock_clients,
                            .resources = o->lock_resources,
                            .lease_ms = o->lock_lease_ms,
                            .wait_ms = 2000,
                            .seed = o->seed,
                            .history = o->lock_history,
                            .src = src};
        L->locks = cx_locks_new(L->base, &lo, counter_idle_cb, L);
        if (!L->locks) {
            log_error("cannot start the lock workload");
            L->rc = 1;
            event_base_loopbreak(L->base);
        }
    }
    if (o->n_lockd > 0 && o->database != NULL) {
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
    log_info("running %" PRIu64 " s: %u booking clients on %zu servers, %u counter clients, %u "
             "lock clients",
             o->duration_s, o->n_servers ? o->clients : 0, o->n_servers,
             o->n_lockd && o->database ? o->counter_clients : 0, o->lock_clients);
}

/* lg_workload.map: servers may still be coming up, so anything but a 404 or an empty map
 * is asked again (of the next server) until the setup deadline. */
static lg_map_verdict setup_done(void *arg, size_t i, const cm_httpc_resp *resp)
{
    load *L = arg;
    long long id = (long long)L->map_ids[i];

    if (resp->status == 200 && lg_seatmap_parse(&L->maps[i], resp->body, resp->body_len) == CM_OK) {
        log_info("performance %lld: %zu seats", id, L->maps[i].n);
        return LG_MAP_OK;
    }
    if (resp->status == 200 || resp->status == 404) {
        log_error("performance %lld: %s", id,
                  resp->status == 404 ? "not found" : "no seats in its seat map");
        L->rc = 1;
        return LG_MAP_FAIL;
    }
    if (cm_now_ms() > L->setup_deadline) {
        log_error("seat map of performance %lld: no answer from any server within %d ms", id,
                  SETUP_DEADLINE_MS);
        L->rc = 1;
        return LG_MAP_FAIL;
    }
    return LG_MAP_RETRY;
}

static const lg_workload LOAD_WORKLOAD = {
    .next = op_start,
    .answered = op_done,
    .abandoned = op_abandoned,
    .started = start_workloads,
    .stopping = on_stopping,
    .others_idle = others_idle,
    .map = setup_done,
};

/* The first line of path (the token, SPEC §6a) into out; false (logged) when there is none. */
static bool read_token(const char *path, char out[LD_TOKEN_MAX])
{
    FILE *f = fopen(path, "r");
    bool ok = f != NULL && fgets(out, LD_TOKEN_MAX, f) != NULL;
    if (f != NULL)
        fclose(f);
    if (ok)
        out[strcspn(out, "\r\n")] = '\0';
    if (!ok || out[0] == '\0') {
        log_error("--token-file %s: no token on its first line", path);
        return false;
    }
    return true;
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
    if (o->token_file != NULL && !read_token(o->token_file, L.token)) {
        L.rc = 1;
        goto done;
    }
    L.hist = cx_hwriter_open(o->out, epoch, o->max_requests, err, sizeof(err));
    if (!L.hist) {
        fprintf(stderr, "chaos_load: --out %s\n", err);
        L.rc = 1;
        goto done;
    }
    L.n_maps = o->n_servers ? 1 + o->n_perfs : 0;
    L.n_clients = o->n_servers ? o->clients : 0;
    L.map_ids = calloc(L.n_maps + 1, sizeof(*L.map_ids));
    L.maps = calloc(L.n_maps + 1, sizeof(*L.maps));
    L.clients = calloc(o->clients + 1, sizeof(*L.clients));
    L.server_names = calloc(o->n_servers + 1, sizeof(*L.server_names));
    if (!L.base || !L.map_ids || !L.maps || !L.clients || !L.server_names) {
        log_error("out of memory at start");
        L.rc = 1;
        goto done;
    }
    for (size_t i = 0; i < o->n_servers; i++)
        cm_addr_format(&o->servers[i], L.server_names[i], sizeof(L.server_names[i]));
    for (size_t i = 0; i < L.n_maps; i++)
        L.map_ids[i] = i == 0 ? o->hot : o->perfs[i - 1];
    for (uint32_t i = 0; i < L.n_clients; i++) {
        L.clients[i].num = i;
        L.clients[i].rng = lg_rng_seed(o->seed, i);
    }
    const lg_driver_opts lo = {.servers = o->servers,
                               .nservers = o->n_servers,
                               .clients = L.n_clients,
                               .timeout_ms = o->timeout_ms,
                               .map_timeout_ms = o->timeout_ms,
                               .map_retry_ms = SETUP_RETRY_MS,
                               .duration_ms = o->duration_s * 1000,
                               .grace_ms = STOP_GRACE_MS,
                               .second_signal_breaks = true};
    L.d = lg_driver_new(L.base, &lo, &LOAD_WORKLOAD, &L);
    if (!L.d) {
        log_error("out of memory at start");
        L.rc = 1;
        goto done;
    }
    L.setup_deadline = cm_now_ms() + SETUP_DEADLINE_MS;
    if (lg_driver_start(L.d, L.map_ids, L.n_maps) != CM_OK) {
        log_error("cannot start the run");
        L.rc = 1;
        goto done;
    }
    if (event_base_dispatch(L.base) < 0)
        L.rc = 1;
    lg_driver_abandon(L.d);
    if (L.counter)
        cx_counter_abort(L.counter);
    {
        char sum[256], hsum[160] = "", lsum[200] = "";
        cx_hwriter_summary(L.hist, sum, sizeof(sum));
        if (L.holds)
            cx_holds_summary(L.holds, hsum, sizeof(hsum));
        if (L.locks)
            cx_locks_summary(L.locks, lsum, sizeof(lsum));
        fprintf(stderr,
                "chaos_load: %s book_ok=%" PRIu64 " cancel_ok=%" PRIu64
                " %s%s%s elapsed_ms=%" PRIu64 " rc=%d\n",
                sum, L.book_ok, L.cancel_ok, hsum, hsum[0] && lsum[0] ? " " : "", lsum,
                L.t0 ? cm_now_ms() - L.t0 : 0, L.rc);
    }
done:
    cx_locks_free(L.locks); /* closes its sessions: lockd releases what they held */
    cx_counter_free(L.counter);
    cx_holds_free(L.holds);
    lg_driver_free(L.d);
    for (size_t i = 0; L.maps && i < L.n_maps; i++)
        lg_seatmap_clear(&L.maps[i]);
    free(L.maps);
    free(L.map_ids);
    free(L.clients);
    free(L.pool);
    free(L.server_names);
    cx_hwriter_close(L.hist);
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
            "       chaos_load --lockd H:P,... --lock-clients N --lock-history FILE --duration S\n"
            "                  --out FILE [lock options]   (the lock workload alone)\n"
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
            "  --token-file FILE     first line: an admin's bearer token, sent with every\n"
            "                        request (it books for the --users); none: no token\n"
            "  --hold-share PCT      seat holds (SPEC §9) on the hot performance: PCT%% of\n"
            "                        a client's ops take a hold, or act on the one it has\n"
            "                        (book it, release it or leave it to expire) (0: none)\n"
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
            "  --lock-clients N      the lock workload: N plain lock clients, each its own\n"
            "                        session to one of --lockd, loop ACQUIRE chaos:lk:<i> (one\n"
            "                        of --lock-resources), hold 5-50 ms, RELEASE; they never\n"
            "                        check fences (the lock-history checker's target)\n"
            "  --lock-resources M    resources chaos:lk:0..M-1 (4)\n"
            "  --lock-lease-ms MS    lease of their locks, 0: watchdog (0)\n"
            "  --lock-history FILE   their lock events, JSON lines appended; \"src\" is the\n"
            "                        file's name without a leading locks- and .jsonl\n"
            "  --log-level L         error|warn|info|debug (warn)\n"
            "  --help, --version\n");
}

/* "ID,ID,..." of positive ids into a malloc'ed array. */
static bool parse_ids(const char *s, long long **out, size_t *n)
{
    uint64_t *v;
    size_t k;
    if (!cm_parse_u64_list(s, 1, INT64_MAX, &v, &k))
        return false;
    long long *ids = calloc(k, sizeof(*ids));
    for (size_t i = 0; ids && i < k; i++)
        ids[i] = (long long)v[i];
    free(v);
    if (!ids)
        return false;
    free(*out);
    *out = ids;
    *n = k;
    return true;
}

static bool parse_ids_flag(const char *v, void *dst, char *why, size_t whylen)
{
    load_opts *o = dst;
    (void)why;
    (void)whylen;
    return parse_ids(v, &o->perfs, &o->n_perfs);
}

/* "MIN:MAX" milliseconds, MIN <= MAX <= 60000. */
static bool parse_sleep(const char *s, void *dst, char *why, size_t whylen)
{
    load_opts *o = dst;
    uint64_t a, b;
    (void)why;
    (void)whylen;
    if (!cm_parse_u64_pair(s, ':', 0, 60000, &a, &b) || a > b)
        return false;
    o->counter_sleep_min = (uint32_t)a;
    o->counter_sleep_max = (uint32_t)b;
    return true;
}

static bool parse_users(const char *s, void *dst, char *why, size_t whylen)
{
    load_opts *o = dst;
    uint64_t f, n;
    (void)why;
    (void)whylen;
    if (!cm_parse_u64_pair(s, ':', 1, INT64_MAX / 2, &f, &n))
        return false;
    o->user_first = (long long)f;
    o->user_count = (long long)n;
    return true;
}

/* 0: run; 1: served (--help, --version, --now-ms); 2: usage error (printed). */
static int parse_args(int argc, char **argv, load_opts *o)
{
    bool have_users = false, have_hot = false, now_ms = false;
    cx_addr_list servers = {NULL, 0}, lockd = {NULL, 0};
    uint64_t hot = 0, clients = o->clients, timeout = o->timeout_ms, counters = o->counters;
    uint64_t cclients = o->counter_clients, cbase = 0, hold_share = 0;
    uint64_t lclients = 0, lresources = o->lock_resources;
    const cm_flag flags[] = {
        {.name = "servers",
         .type = CM_FLAG_CUSTOM,
         .dst = &servers,
         .parse = cx_cli_parse_loopback_list},
        {.name = "duration", .type = CM_FLAG_U64, .dst = &o->duration_s, .lo = 1, .hi = 86400},
        {.name = "seed", .type = CM_FLAG_U64, .dst = &o->seed, .lo = 0, .hi = UINT64_MAX},
        {.name = "out", .type = CM_FLAG_STRING, .dst = &o->out},
        {.name = "epoch-ms",
         .type = CM_FLAG_U64,
         .dst = &o->epoch_ms,
         .lo = 0,
         .hi = UINT64_MAX,
         .seen = &o->have_epoch},
        {.name = "clients", .type = CM_FLAG_U64, .dst = &clients, .lo = 1, .hi = 4096},
        {.name = "hot-perf",
         .type = CM_FLAG_U64,
         .dst = &hot,
         .lo = 1,
         .hi = INT64_MAX,
         .seen = &have_hot},
        {.name = "perfs",
         .type = CM_FLAG_CUSTOM,
         .dst = o,
         .parse = parse_ids_flag,
         .want = "ID,ID,... (positive)"},
        {.name = "users",
         .type = CM_FLAG_CUSTOM,
         .dst = o,
         .parse = parse_users,
         .want = "FIRST:COUNT (positive)",
         .seen = &have_users},
        {.name = "max-requests",
         .type = CM_FLAG_U64,
         .dst = &o->max_requests,
         .lo = 1,
         .hi = UINT64_MAX},
        {.name = "timeout-ms", .type = CM_FLAG_U64, .dst = &timeout, .lo = 10, .hi = 600000},
        {.name = "lockd",
         .type = CM_FLAG_CUSTOM,
         .dst = &lockd,
         .parse = cx_cli_parse_loopback_list},
        {.name = "counters", .type = CM_FLAG_U64, .dst = &counters, .lo = 1, .hi = 1000000},
        {.name = "database", .type = CM_FLAG_STRING, .dst = &o->database},
        {.name = "counter-clients", .type = CM_FLAG_U64, .dst = &cclients, .lo = 1, .hi = 1024},
        {.name = "counter-lease-ms",
         .type = CM_FLAG_U64,
         .dst = &o->counter_lease_ms,
         .lo = 0,
         .hi = 3600000},
        {.name = "counter-sleep-ms",
         .type = CM_FLAG_CUSTOM,
         .dst = o,
         .parse = parse_sleep,
         .want = "MIN:MAX, 0 <= MIN <= MAX <= 60000"},
        {.name = "counter-ignore-lost", .type = CM_FLAG_SWITCH, .dst = &o->counter_ignore_lost},
        {.name = "counter-marker", .type = CM_FLAG_STRING, .dst = &o->counter_marker},
        {.name = "token-file", .type = CM_FLAG_STRING, .dst = &o->token_file},
        {.name = "hold-share", .type = CM_FLAG_U64, .dst = &hold_share, .lo = 0, .hi = 100},
        {.name = "client-base",
         .type = CM_FLAG_U64,
         .dst = &cbase,
         .lo = 0,
         .hi = 1000000,
         .seen = &o->have_client_base},
        {.name = "lock-clients", .type = CM_FLAG_U64, .dst = &lclients, .lo = 1, .hi = 1024},
        {.name = "lock-resources", .type = CM_FLAG_U64, .dst = &lresources, .lo = 1, .hi = 1000000},
        {.name = "lock-lease-ms",
         .type = CM_FLAG_U64,
         .dst = &o->lock_lease_ms,
         .lo = 0,
         .hi = 3600000},
        {.name = "lock-history", .type = CM_FLAG_STRING, .dst = &o->lock_history},
        {.name = "log-level", .type = CM_FLAG_LOG_LEVEL, .dst = &o->log_level},
        {.name = "now-ms", .type = CM_FLAG_SWITCH, .dst = &now_ms},
    };
    const cm_flags_spec spec = {
        .prog = "chaos_load", .flags = flags, .nflags = CM_ARRAY_LEN(flags), .usage = usage};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, NULL);
    o->servers = servers.a;
    o->n_servers = servers.n;
    o->lockd = lockd.a;
    o->n_lockd = lockd.n;
    if (res == CM_FLAGS_DONE)
        return 1;
    if (res == CM_FLAGS_USAGE)
        return 2;
    if (now_ms) {
        printf("%" PRIu64 "\n", cm_now_ms());
        return 1;
    }
    o->hot = (long long)hot;
    o->clients = (uint32_t)clients;
    o->timeout_ms = (uint32_t)timeout;
    o->counters = (uint32_t)counters;
    o->counter_clients = (uint32_t)cclients;
    o->client_base = (uint32_t)cbase;
    o->hold_share = (uint32_t)hold_share;
    o->lock_clients = (uint32_t)lclients;
    o->lock_resources = (uint32_t)lresources;
    const char *missing = NULL;
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
    else if (o->n_lockd && !o->database && !o->lock_clients)
        missing = "--database CONNINFO (with --lockd)";
    else if (o->lock_clients && !o->n_lockd)
        missing = "--lockd H:P,... (with --lock-clients)";
    else if (o->lock_clients && !o->lock_history)
        missing = "--lock-history FILE (with --lock-clients)";
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
    o.lock_resources = 4;
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
