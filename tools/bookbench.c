/*
 * bookbench: a booking load generator for reserved (issue 3 §7, §8): the workload and the
 * report; the clients, their connections and the run are the loadgen library's
 * (lg_driver). C closed-loop clients share one libevent loop; each talks to one of the
 * servers, round robin, over one keep-alive connection, and sends its next request as
 * soon as the last one is answered. Three classes of request:
 *   hot         POST /performances/{hot}/reservations with 1-3 random seats
 *   background  the same on a random performance of --background-perfs
 *   reads       GET /performances/{id}/seats of a random performance
 * Seat ids come from the seat maps fetched at start. Each performance keeps the list of
 * seats this run still believes free (a 201 or a SEAT_TAKEN answer removes seats), and
 * seats are drawn from it, so a storm sells a performance out instead of hammering taken
 * seats; clients drawing the same free seat at once still collide, like real users. A
 * performance that answers SOLD_OUT or has no free seat left gets no more bookings; when
 * nothing is left to send the run ends early.
 * With --rate R the clients are paced: each sends at most one request every C/R seconds
 * (C clients), so the offered load stays R requests/s whatever the servers do, as long as
 * they keep up; a closed loop without it sends more when answers come faster, which
 * moves CPU between the classes of a run.
 * With --hot-partition the hot performance's free seats are cut into C slices (lg_slices),
 * one per client: a client books only seats of its own slice, so no two clients ever ask
 * for the same seat (a sale without conflicts: every hot booking can succeed, and what is
 * measured is the lock and the database, not collisions). A client whose slice is used up
 * books no more hot seats.
 * Who books (SPEC §6a): with --tokens every request carries a bearer token, either one
 * admin's for all (it books for the --users by "userId") or each buyer's own (line i of
 * the file is user FIRST+i's), so each request costs the server its token lookup as a
 * real client's would.
 *
 * Reports per class: requests by outcome (201/200, SEAT_TAKEN, SOLD_OUT, 402, BUSY,
 * UNAVAILABLE, other, no answer), throughput (all and successful per second) and latency
 * p50/p99/max of the answered requests, and each server's share of the hot bookings (the
 * client -> server mapping is fixed, so the share follows how the servers are served,
 * not how the clients were dealt). The table shows only the classes that sent
 * requests and the outcomes that happened (the others are named on one line); every
 * figure, zeros included, goes to one `RESULT key=value ...` line with --result-line (for
 * scripts) and to JSON with --json. Exit 0 after a run, 1 when the setup failed
 * (a seat map could not be read), 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <jansson.h>

#include "cm_addr.h"
#include "cm_flags.h"
#include "cm_hist.h"
#include "cm_parse.h"
#include "cm_time.h"
#include "lg_driver.h"
#include "lg_rng.h"
#include "lg_seatmap.h"
#include "lg_slices.h"

#define BB_MAX_SEATS_PER_REQ 10
#define BB_SETUP_TIMEOUT_MS  30000
#define BB_TOKEN_MAX         256 /* a line of --tokens: a bearer token (reserved: 64 hex) */

typedef enum bb_class { BB_HOT, BB_BG, BB_READ, BB_NCLASS } bb_class;
static const char *const class_key[BB_NCLASS] = {"hot", "bg", "read"};
static const char *const class_title[BB_NCLASS] = {"hot bookings", "background bookings",
                                                   "seat-map reads"};

typedef enum bb_outcome {
    OUT_OK,          /* 201 booking, 200 read */
    OUT_SEAT_TAKEN,  /* 409 SEAT_TAKEN */
    OUT_SOLD_OUT,    /* 409 SOLD_OUT */
    OUT_DECLINED,    /* 402 PAYMENT_DECLINED */
    OUT_BUSY,        /* 503 BUSY: the lock wait ran out */
    OUT_UNAVAILABLE, /* 503 UNAVAILABLE: DB, lockd or gateway down */
    OUT_OTHER,       /* any other answer: a bug signal in a benchmark */
    OUT_NOANSWER,    /* timeout, reset, refused */
    OUT_N
} bb_outcome;
static const char *const out_key[OUT_N] = {"ok",   "seat_taken",  "sold_out", "declined",
                                           "busy", "unavailable", "other",    "noanswer"};
/* table column heads and widths; the names of outcomes that never happened */
static const char *const out_head[OUT_N] = {"ok",   "taken", "soldout", "402",
                                            "busy", "unavl", "other",   "noans"};
static const int out_width[OUT_N] = {7, 7, 7, 6, 6, 6, 6, 6};
static const char *const out_title[OUT_N] = {
    "ok",       "409 SEAT_TAKEN",  "409 SOLD_OUT",  "402 PAYMENT_DECLINED",
    "503 BUSY", "503 UNAVAILABLE", "other answers", "unanswered"};

typedef struct bb_stats {
    uint64_t n[OUT_N];
    uint64_t total;
    cm_histq all; /* latency of every answered request */
    cm_histq ok;  /* of the successful ones only */
} bb_stats;

typedef struct bb_perf {
    int64_t id;
    int64_t *seat; /* seat ids, ascending */
    uint32_t nseat;
    uint32_t *free; /* indexes into seat[] believed free, in no order */
    uint32_t *pos;  /* seat index -> position in free[], UINT32_MAX when taken */
    uint32_t nfree;
    bool sold_out; /* SOLD_OUT answered or nothing free: no more bookings */
    uint64_t sold_out_ms;
} bb_perf;

typedef struct bb bb;

typedef struct bb_client {
    bb *b;
    int idx;
    uint64_t rng;
    bb_class cls; /* of the request in flight */
    bb_perf *perf;
    uint32_t picked[BB_MAX_SEATS_PER_REQ]; /* seat indexes of the booking in flight */
    int npicked;
    uint64_t t0_us;
    uint64_t next_us; /* --rate: not before this */
    int64_t user;     /* of the booking in flight: its token is the request's */
} bb_client;

struct bb {
    struct event_base *base;
    cm_addr *servers;
    size_t nservers;
    int nclients;
    uint64_t duration_s, max_requests, timeout_ms, seed;
    double bg_share, reads_share;
    uint64_t pace_us; /* --rate R: one request per client every clients / R; 0: closed loop */
    int64_t users_first, users_count;
    char **tokens;  /* --tokens FILE: one (an admin's, for every user) or one per user */
    size_t ntokens; /* 0: requests carry no token */
    int seats_min, seats_max;
    const char *json_path;
    bool result_line;   /* --result-line: the RESULT line for scripts */
    bool hot_partition; /* --hot-partition: each client books from its own slice */
    bool setup_error;   /* the run could not start (out of memory): exit 1 */
    lg_slices slices;   /* --hot-partition: slice i is client i's hot seats */
    bb_perf *perfs;     /* [0] = hot, [1..] = background */
    size_t nperfs;
    bb_client *c;
    lg_driver *d;
    uint64_t issued;
    uint64_t t_start_us, t_last_us;
    bb_stats st[BB_NCLASS];
    bb_stats *hot_by_server; /* [nservers]: shows a server whose hot bookings starve */
};

/* The q-quantile of l in milliseconds (0 without samples). */
static double lat_ms(const cm_histq *l, double q)
{
    return cm_histq_quantile_us(l, q) / 1000.0;
}

/* ---- free seats ---- */

static void perf_take(bb_perf *p, uint32_t si)
{
    uint32_t at = p->pos[si];
    if (at == UINT32_MAX)
        return;
    uint32_t last = p->free[--p->nfree];
    p->free[at] = last;
    p->pos[last] = at;
    p->pos[si] = UINT32_MAX;
}

static bool perf_index(const bb_perf *p, int64_t id, uint32_t *out)
{
    uint32_t lo = 0, hi = p->nseat;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->seat[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < p->nseat && p->seat[lo] == id) {
        *out = lo;
        return true;
    }
    return false;
}

static void perf_mark_sold_out(bb *b, bb_perf *p)
{
    if (!p->sold_out) {
        p->sold_out = true;
        p->sold_out_ms = (cm_now_us() - b->t_start_us) / 1000;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Fills p from a GET /performances/{id}/seats body. */
static bool perf_load(bb_perf *p, const char *body, size_t len)
{
    lg_seatmap m = {0};
    size_t n, i;
    if (lg_seatmap_parse(&m, body, len) != CM_OK)
        return false;
    n = m.n;
    p->seat = calloc(n, sizeof(*p->seat));
    p->free = calloc(n, sizeof(*p->free));
    p->pos = calloc(n, sizeof(*p->pos));
    if (p->seat == NULL || p->free == NULL || p->pos == NULL) {
        lg_seatmap_clear(&m);
        return false;
    }
    memcpy(p->seat, m.ids, n * sizeof(*p->seat));
    p->nseat = (uint32_t)n;
    qsort(p->seat, n, sizeof(*p->seat), cmp_i64);
    for (i = 0; i < n; i++)
        p->pos[i] = UINT32_MAX;
    for (i = 0; i < n; i++) {
        uint32_t si;
        if (m.avail[i] && perf_index(p, m.ids[i], &si) && p->pos[si] == UINT32_MAX) {
            p->pos[si] = p->nfree;
            p->free[p->nfree++] = si;
        }
    }
    p->sold_out = p->nfree == 0;
    lg_seatmap_clear(&m);
    return true;
}

/* ---- the run (the lg_workload callbacks) ---- */

static void on_stopping(void *arg, const char *why, int sig)
{
    (void)arg;
    (void)why;
    if (sig != 0)
        fprintf(stderr, "bookbench: signal %d, stopping (in-flight requests finish)\n", sig);
}

static double rng_unit(uint64_t *s)
{
    return (double)lg_rng_below(s, 1u << 30) / (double)(1u << 30);
}

/* A random background performance with free seats, or NULL. */
static bb_perf *pick_bg(bb_client *c)
{
    bb *b = c->b;
    size_t nbg = b->nperfs - 1;
    if (nbg == 0)
        return NULL;
    for (int tries = 0; tries < 8; tries++) {
        bb_perf *p = &b->perfs[1 + lg_rng_below(&c->rng, nbg)];
        if (!p->sold_out)
            return p;
    }
    for (size_t i = 1; i < b->nperfs; i++)
        if (!b->perfs[i].sold_out)
            return &b->perfs[i];
    return NULL;
}

/* Chooses the class and performance of the next request; false when nothing is left to
 * send (every performance sold out and no reads asked for). */
static bool choose(bb_client *c)
{
    bb *b = c->b;
    double r = rng_unit(&c->rng);
    bb_perf *hot = &b->perfs[0];
    if (r < b->reads_share) {
        c->cls = BB_READ;
    } else if (r < b->reads_share + b->bg_share && b->nperfs > 1) {
        c->cls = BB_BG;
    } else {
        c->cls = BB_HOT;
    }
    /* No hot seat left for this client: background bookings instead only where the run
     * asked for some (a hot-only client that went on with background bookings would
     * count them as its own and stretch the hot figures over time it did not sell). */
    if (c->cls == BB_HOT &&
        (hot->sold_out || (b->hot_partition && lg_slices_left(&b->slices, (uint32_t)c->idx) == 0)))
        c->cls = b->bg_share > 0 ? BB_BG : BB_READ;
    if (c->cls == BB_BG) {
        c->perf = pick_bg(c);
        if (c->perf == NULL)
            c->cls = BB_READ;
    } else if (c->cls == BB_HOT) {
        c->perf = hot;
    }
    if (c->cls == BB_READ) {
        /* Reads only where the run asked for reads, not as a filler once sold out. */
        if (b->reads_share <= 0)
            return false;
        c->perf = &b->perfs[lg_rng_below(&c->rng, b->nperfs)];
    }
    return true;
}

/* Whether the client's request draws its seats from its own slice (--hot-partition). */
static bool from_slice(const bb_client *c)
{
    return c->cls == BB_HOT && c->b->hot_partition;
}

static char *booking_body(bb_client *c)
{
    bb *b = c->b;
    bb_perf *p = c->perf;
    bool own = from_slice(c);
    uint32_t nfree = own ? lg_slices_left(&b->slices, (uint32_t)c->idx) : p->nfree;
    int k = b->seats_min + (int)lg_rng_below(&c->rng, (uint64_t)(b->seats_max - b->seats_min + 1));
    if ((uint32_t)k > nfree)
        k = (int)nfree;
    c->npicked = 0;
    /* k <= 10 distinct positions of the free list: rejection is cheap. */
    while (c->npicked < k) {
        uint32_t j = (uint32_t)lg_rng_below(&c->rng, nfree);
        uint32_t si = own ? lg_slices_get(&b->slices, (uint32_t)c->idx, j) : p->free[j];
        bool dup = false;
        for (int i = 0; i < c->npicked; i++)
            dup = dup || c->picked[i] == si;
        if (!dup)
            c->picked[c->npicked++] = si;
    }
    json_t *ids = json_array();
    for (int i = 0; i < c->npicked; i++)
        json_array_append_new(ids, json_integer(p->seat[c->picked[i]]));
    int64_t user = b->users_first + (int64_t)lg_rng_below(&c->rng, (uint64_t)b->users_count);
    c->user = user;
    json_t *o = json_pack("{s:I,s:o}", "userId", (json_int_t)user, "seatIds", ids);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static bb_outcome classify(bb_class cls, const cm_httpc_resp *r, json_t **err_out)
{
    *err_out = NULL;
    if (r->status == 0)
        return OUT_NOANSWER;
    if (r->status == (cls == BB_READ ? 200 : 201))
        return OUT_OK;
    if (r->status != 409 && r->status != 402 && r->status != 503)
        return OUT_OTHER;
    json_t *root = json_loads(r->body, 0, NULL);
    json_t *err = json_object_get(root, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    bb_outcome o = OUT_OTHER;
    if (code == NULL)
        o = OUT_OTHER;
    else if (r->status == 409 && strcmp(code, "SEAT_TAKEN") == 0)
        o = OUT_SEAT_TAKEN;
    else if (r->status == 409 && strcmp(code, "SOLD_OUT") == 0)
        o = OUT_SOLD_OUT;
    else if (r->status == 402)
        o = OUT_DECLINED;
    else if (r->status == 503 && strcmp(code, "BUSY") == 0)
        o = OUT_BUSY;
    else if (r->status == 503 && strcmp(code, "UNAVAILABLE") == 0)
        o = OUT_UNAVAILABLE;
    if (o == OUT_SEAT_TAKEN)
        *err_out = json_incref(err);
    json_decref(root);
    return o;
}

/* An answer: counted, and the free seats it tells of taken; the next request at once
 * (pacing is next_request's). */
static uint64_t on_answer(void *arg, uint32_t client, const cm_httpc_resp *r)
{
    bb *b = arg;
    bb_client *c = &b->c[client];
    uint64_t now = cm_now_us(), us = now - c->t0_us;
    bb_stats *st = &b->st[c->cls];
    json_t *err = NULL;
    bb_outcome o = classify(c->cls, r, &err);
    st->n[o]++;
    st->total++;
    if (o != OUT_NOANSWER)
        cm_histq_add(&st->all, us);
    if (c->cls == BB_HOT) {
        bb_stats *hs = &b->hot_by_server[(size_t)c->idx % b->nservers];
        hs->n[o]++;
        hs->total++;
        if (o != OUT_NOANSWER)
            cm_histq_add(&hs->all, us);
    }
    if (o == OUT_OK)
        cm_histq_add(&st->ok, us);
    b->t_last_us = now;
    if (c->cls != BB_READ) {
        bb_perf *p = c->perf;
        if (o == OUT_OK) {
            for (int i = 0; i < c->npicked; i++) {
                perf_take(p, c->picked[i]);
                if (from_slice(c))
                    lg_slices_remove(&b->slices, (uint32_t)c->idx, c->picked[i]);
            }
        } else if (o == OUT_SEAT_TAKEN) {
            size_t i;
            json_t *id;
            uint32_t si;
            json_array_foreach(json_object_get(err, "seatIds"), i, id)
            {
                if (perf_index(p, json_integer_value(id), &si)) {
                    perf_take(p, si);
                    if (from_slice(c))
                        lg_slices_remove(&b->slices, (uint32_t)c->idx, si);
                }
            }
        } else if (o == OUT_SOLD_OUT) {
            perf_mark_sold_out(b, p);
        }
        if (p->nfree == 0)
            perf_mark_sold_out(b, p);
    }
    json_decref(err);
    if (o == OUT_OTHER && b->st[c->cls].n[OUT_OTHER] <= 3)
        fprintf(stderr, "bookbench: %s answered %d: %.300s\n", class_key[c->cls], r->status,
                r->body ? r->body : "");
    return 0;
}

/* The client's next request: after its --rate slot, while there is something to book
 * (or reads were asked for) and --requests is not reached. */
static lg_next next_request(void *arg, uint32_t client, lg_request *req)
{
    bb *b = arg;
    bb_client *c = &b->c[client];
    if (b->pace_us > 0) {
        uint64_t now = cm_now_us();
        if (now < c->next_us) {
            req->wait_us = c->next_us - now;
            return LG_WAIT;
        }
        /* no burst to catch up after a slow answer: at most one slot is made good */
        c->next_us = (c->next_us + b->pace_us < now ? now : c->next_us + b->pace_us);
    }
    if ((b->max_requests && b->issued >= b->max_requests) || !choose(c))
        return LG_DONE;
    if (c->cls == BB_READ) {
        snprintf(req->path, sizeof(req->path), "/performances/%" PRId64 "/seats", c->perf->id);
        req->method = "GET";
        /* a logged-in buyer looking at the map: the client's own user's token */
        c->user = b->users_first + (int64_t)c->idx % b->users_count;
    } else {
        snprintf(req->path, sizeof(req->path), "/performances/%" PRId64 "/reservations",
                 c->perf->id);
        req->method = "POST";
        req->body = booking_body(c);
        if (req->body == NULL) {
            fprintf(stderr, "bookbench: out of memory\n");
            lg_driver_stop(b->d, "out of memory");
            return LG_DONE;
        }
    }
    req->server = (size_t)c->idx % b->nservers;
    if (b->ntokens > 0)
        req->token = b->tokens[b->ntokens == 1 ? 0 : (size_t)(c->user - b->users_first)];
    c->t0_us = cm_now_us();
    b->issued++;
    return LG_SEND;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* --hot-partition: the hot performance's free seats, in seat order, cut into one slice
 * per client. */
static bool make_slices(bb *b)
{
    const bb_perf *hot = &b->perfs[0];
    uint32_t *idx = malloc((hot->nfree ? hot->nfree : 1) * sizeof(*idx));
    if (idx == NULL)
        return false;
    memcpy(idx, hot->free, hot->nfree * sizeof(*idx));
    qsort(idx, hot->nfree, sizeof(*idx), cmp_u32);
    cm_rc rc = lg_slices_init(&b->slices, idx, hot->nfree, (uint32_t)b->nclients);
    free(idx);
    return rc == CM_OK;
}

static void on_started(void *arg)
{
    bb *b = arg;
    if (b->hot_partition && !make_slices(b)) {
        fprintf(stderr, "bookbench: out of memory\n");
        b->setup_error = true;
        lg_driver_stop(b->d, "out of memory");
    }
    b->t_start_us = b->t_last_us = cm_now_us();
    /* spread the first requests over one interval, so the paced load starts smooth */
    for (int i = 0; i < b->nclients; i++)
        b->c[i].next_us = b->t_start_us + b->pace_us * (uint64_t)i / (uint64_t)b->nclients;
}

/* The seat maps, one after another on one connection, before the storm. */
static lg_map_verdict on_map(void *arg, size_t i, const cm_httpc_resp *r)
{
    bb *b = arg;
    bb_perf *p = &b->perfs[i];
    if (r->status != 200 || !perf_load(p, r->body, r->body_len)) {
        fprintf(stderr, "bookbench: GET /performances/%" PRId64 "/seats: %d %s %.200s\n", p->id,
                r->status, r->status ? "" : r->error, r->body ? r->body : "");
        return LG_MAP_FAIL;
    }
    return LG_MAP_OK;
}

static const lg_workload bb_workload = {
    .next = next_request,
    .answered = on_answer,
    .stopping = on_stopping,
    .started = on_started,
    .map = on_map,
};

/* ---- report ---- */

static json_t *class_json(const bb *b, bb_class k, double secs)
{
    const bb_stats *s = &b->st[k];
    json_t *o = json_object(), *by = json_object();
    for (int i = 0; i < OUT_N; i++)
        json_object_set_new(by, out_key[i], json_integer((json_int_t)s->n[i]));
    json_object_set_new(o, "requests", json_integer((json_int_t)s->total));
    json_object_set_new(o, "by_outcome", by);
    json_object_set_new(o, "per_s", json_real((double)s->total / secs));
    json_object_set_new(o, "ok_per_s", json_real((double)s->n[OUT_OK] / secs));
    json_object_set_new(o, "p50_ms", json_real(lat_ms(&s->all, 0.50)));
    json_object_set_new(o, "p99_ms", json_real(lat_ms(&s->all, 0.99)));
    json_object_set_new(o, "max_ms", json_real((double)s->all.max_us / 1000.0));
    json_object_set_new(o, "ok_p50_ms", json_real(lat_ms(&s->ok, 0.50)));
    json_object_set_new(o, "ok_p99_ms", json_real(lat_ms(&s->ok, 0.99)));
    return o;
}

/* Server i's share of the hot bookings against an equal share (1.0: equal), through
 * min/max; false when no hot booking succeeded. */
static bool hot_shares(const bb *b, double *min_x, double *max_x)
{
    uint64_t sum = b->st[BB_HOT].n[OUT_OK];
    *min_x = *max_x = 0;
    if (sum == 0)
        return false;
    for (size_t i = 0; i < b->nservers; i++) {
        double x = (double)b->hot_by_server[i].n[OUT_OK] * (double)b->nservers / (double)sum;
        *min_x = i == 0 || x < *min_x ? x : *min_x;
        *max_x = i == 0 || x > *max_x ? x : *max_x;
    }
    return true;
}

/* "hot shares: r1 33.6% r2 33.4% r3 33.0% (...)": r1 is the first of --servers. Fair
 * means every share within 0.5x-1.5x of an equal one (the benchmark's bound). */
static void print_shares(const bb *b)
{
    double lo, hi, sum = (double)b->st[BB_HOT].n[OUT_OK];
    if (b->nservers < 2 || !hot_shares(b, &lo, &hi))
        return;
    printf("hot shares:");
    for (size_t i = 0; i < b->nservers; i++)
        printf(" r%zu %.1f%%", i + 1, 100.0 * (double)b->hot_by_server[i].n[OUT_OK] / sum);
    printf(" (equal %.1f%%; each within 0.5x-1.5x of it: %s, %.2fx-%.2fx)\n",
           100.0 / (double)b->nservers, lo >= 0.5 && hi <= 1.5 ? "yes" : "NO", lo, hi);
}

/* The machine-readable form (--result-line): every figure of every class, zeros included,
 * as one `RESULT key=value ...` line that scripts cut with sed. */
static void print_result_line(const bb *b, double secs)
{
    const bb_perf *hot = &b->perfs[0];
    printf("RESULT clients=%d servers=%zu elapsed_s=%.3f requests=%" PRIu64, b->nclients,
           b->nservers, secs, b->issued);
    for (int k = 0; k < BB_NCLASS; k++) {
        const bb_stats *s = &b->st[k];
        const char *n = class_key[k];
        printf(" %s_req=%" PRIu64, n, s->total);
        for (int i = 0; i < OUT_N; i++)
            printf(" %s_%s=%" PRIu64, n, out_key[i], s->n[i]);
        printf(" %s_per_s=%.1f %s_ok_per_s=%.1f %s_p50_ms=%.2f %s_p99_ms=%.2f %s_max_ms=%.2f", n,
               (double)s->total / secs, n, (double)s->n[OUT_OK] / secs, n, lat_ms(&s->all, 0.5), n,
               lat_ms(&s->all, 0.99), n, (double)s->all.max_us / 1000.0);
    }
    printf(" hot_all_sold=%d hot_all_sold_ms=%" PRIu64, hot->sold_out ? 1 : 0,
           hot->sold_out ? hot->sold_out_ms : 0);
    double lo, hi;
    hot_shares(b, &lo, &hi);
    printf(" hot_ok_by_server=");
    for (size_t i = 0; i < b->nservers; i++)
        printf("%s%" PRIu64, i ? "," : "", b->hot_by_server[i].n[OUT_OK]);
    printf(" hot_share_min=%.2f hot_share_max=%.2f hot_slices_empty=%" PRIu32 "\n", lo, hi,
           b->hot_partition ? lg_slices_empty(&b->slices) : 0);
}

/* The human form: one row per class that sent requests, one column per outcome that
 * happened in one of them; the outcomes that never happened are named on one line, so a
 * reader still sees that there was, say, no unanswered request. */
static void print_table(const bb *b, double secs)
{
    bool col[OUT_N] = {false}, any = false;
    for (int k = 0; k < BB_NCLASS; k++)
        for (int i = 0; i < OUT_N; i++)
            col[i] = col[i] || b->st[k].n[i] > 0;
    col[OUT_OK] = true;
    printf("%-20s %8s", "class", "requests");
    for (int i = 0; i < OUT_N; i++)
        if (col[i])
            printf(" %*s", out_width[i], out_head[i]);
    printf(" %9s %9s %8s %8s %8s\n", "req/s", "ok/s", "p50ms", "p99ms", "maxms");
    for (int k = 0; k < BB_NCLASS; k++) {
        const bb_stats *s = &b->st[k];
        if (s->total == 0)
            continue;
        printf("%-20s %8" PRIu64, class_title[k], s->total);
        for (int i = 0; i < OUT_N; i++)
            if (col[i])
                printf(" %*" PRIu64, out_width[i], s->n[i]);
        printf(" %9.1f %9.1f %8.2f %8.2f %8.2f\n", (double)s->total / secs,
               (double)s->n[OUT_OK] / secs, lat_ms(&s->all, 0.5), lat_ms(&s->all, 0.99),
               (double)s->all.max_us / 1000.0);
    }
    for (int i = 0; i < OUT_N; i++) {
        if (!col[i]) {
            printf("%s%s", any ? ", " : "none: ", out_title[i]);
            any = true;
        }
    }
    if (any)
        printf("\n");
}

static void report(const bb *b)
{
    double secs = (double)(b->t_last_us - b->t_start_us) / 1e6;
    if (secs < 1e-3)
        secs = 1e-3;
    printf("bookbench: %d clients on %zu server%s, %.2f s, %" PRIu64 " requests\n", b->nclients,
           b->nservers, b->nservers == 1 ? "" : "s", secs, b->issued);
    if (b->issued > 0)
        print_table(b, secs);
    for (size_t i = 0; i < b->nservers && b->nservers > 1 && b->st[BB_HOT].total > 0; i++) {
        const bb_stats *s = &b->hot_by_server[i];
        char addr[CM_HOST_MAX + 8];
        printf("  hot via %s: %" PRIu64 " requests, %" PRIu64 " created (%.1f/s), p50 %.2f ms, "
               "p99 %.2f ms, max %.2f ms\n",
               cm_addr_format(&b->servers[i], addr, sizeof(addr)), s->total, s->n[OUT_OK],
               (double)s->n[OUT_OK] / secs, lat_ms(&s->all, 0.5), lat_ms(&s->all, 0.99),
               (double)s->all.max_us / 1000.0);
    }
    print_shares(b);
    const bb_perf *hot = &b->perfs[0];
    printf("hot performance %" PRId64 ": %u seats, %u still free by this run's count%s\n", hot->id,
           hot->nseat, hot->nfree, hot->sold_out ? " (sold out)" : "");
    if (b->hot_partition)
        printf("hot seats in %d slices of ~%u, one per client (--hot-partition): %" PRIu32
               " clients used up their slice\n",
               b->nclients, b->slices.n ? b->slices.total / b->slices.n : 0,
               lg_slices_empty(&b->slices));
    if (b->result_line)
        print_result_line(b, secs);
    fflush(stdout);

    if (b->json_path) {
        json_t *o = json_object();
        json_object_set_new(o, "clients", json_integer(b->nclients));
        json_object_set_new(o, "servers", json_integer((json_int_t)b->nservers));
        json_object_set_new(o, "elapsed_s", json_real(secs));
        json_object_set_new(o, "requests", json_integer((json_int_t)b->issued));
        json_object_set_new(o, "hot_performance", json_integer(hot->id));
        json_object_set_new(o, "hot_seats", json_integer(hot->nseat));
        json_object_set_new(o, "hot_sold_out", json_boolean(hot->sold_out));
        json_t *by = json_array();
        for (size_t i = 0; i < b->nservers; i++)
            json_array_append_new(by, json_integer((json_int_t)b->hot_by_server[i].n[OUT_OK]));
        json_object_set_new(o, "hot_ok_by_server", by);
        json_object_set_new(o, "hot_partition", json_boolean(b->hot_partition));
        if (b->hot_partition)
            json_object_set_new(o, "hot_slices_empty",
                                json_integer((json_int_t)lg_slices_empty(&b->slices)));
        for (int k = 0; k < BB_NCLASS; k++)
            json_object_set_new(o, class_key[k], class_json(b, (bb_class)k, secs));
        if (json_dump_file(o, b->json_path, JSON_INDENT(2)) != 0)
            fprintf(stderr, "bookbench: cannot write %s\n", b->json_path);
        json_decref(o);
    }
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fputs("usage: bookbench --servers H:P[,H:P...] --clients C --duration S --hot-perf ID\n"
          "                 --users FIRST:COUNT [--requests N] [--background-perfs ID,ID,...]\n"
          "                 [--background-share F] [--reads-share F] [--seats-min N]\n"
          "                 [--seats-max N] [--seed N] [--timeout-ms MS] [--rate R]\n"
          "                 [--hot-partition] [--tokens FILE] [--json FILE]\n"
          "                 [--result-line] [--help] [--version]\n"
          "  Closed-loop booking load on reserved. Each client sends its next request when\n"
          "  the last is answered: a read with probability --reads-share, a background\n"
          "  booking with --background-share (default 0.25 each when background\n"
          "  performances are given, else 0), otherwise a hot booking. Stops after S seconds,\n"
          "  N requests, or when nothing is left to book. --rate R paces the clients to at\n"
          "  most R requests/s in all (each client one request every C/R s).\n"
          "  --hot-partition cuts the hot performance's free seats into C slices, one per\n"
          "  client, each booking only its own: no two clients ask for the same seat.\n"
          "  --tokens FILE: bearer tokens, one a line: one line (an admin's: every request\n"
          "  carries it, booking for the --users), or COUNT lines (line i is user FIRST+i's:\n"
          "  each booking carries its buyer's token, each read its client's user's).\n"
          "  Prints a table of the classes that sent requests (columns: the outcomes that\n"
          "  happened). --result-line adds one `RESULT key=value ...` line with every\n"
          "  figure, zeros included, for scripts; --json FILE writes them as JSON.\n",
          f);
}

/* Appends the ids of "ID,ID,..." (each positive) to b->perfs. */
static bool parse_perfs(bb *b, const char *list)
{
    uint64_t *ids;
    size_t n;
    if (!cm_parse_u64_list(list, 1, INT64_MAX, &ids, &n))
        return false;
    bb_perf *np = realloc(b->perfs, (b->nperfs + n) * sizeof(*np));
    if (np == NULL) {
        free(ids);
        return false;
    }
    b->perfs = np;
    memset(&b->perfs[b->nperfs], 0, n * sizeof(bb_perf));
    for (size_t i = 0; i < n; i++)
        b->perfs[b->nperfs++].id = (int64_t)ids[i];
    free(ids);
    return true;
}

/* The lines of path (each a token) into b->tokens; false (printed) when it cannot be read or
 * holds neither one token nor one per user. */
static bool read_tokens(bb *b, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[BB_TOKEN_MAX];
    if (f == NULL) {
        fprintf(stderr, "bookbench: --tokens %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t cap = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (b->ntokens == cap) {
            cap = cap ? 2 * cap : 64;
            char **nt = realloc(b->tokens, cap * sizeof(*nt));
            ok = nt != NULL;
            b->tokens = ok ? nt : b->tokens;
        }
        if (ok && (b->tokens[b->ntokens] = strdup(line)) != NULL)
            b->ntokens++;
        else
            ok = false;
    }
    fclose(f);
    if (ok && b->ntokens != 1 && b->ntokens != (size_t)b->users_count) {
        fprintf(stderr,
                "bookbench: --tokens %s: %zu tokens; want 1 or one per user (%" PRId64 ")\n", path,
                b->ntokens, b->users_count);
        return false;
    }
    if (!ok)
        fprintf(stderr, "bookbench: --tokens %s: out of memory\n", path);
    return ok;
}

/* 0: run; 1: --help/--version served; 2: usage error (printed). */
static int parse_args(bb *b, int argc, char **argv)
{
    const char *servers = NULL, *hot = NULL, *bg = NULL, *users = NULL, *tokens = NULL;
    double bg_share = -1, reads_share = -1;
    uint64_t v, rate = 0, clients = 64, seats_min = 1, seats_max = 3;
    char err[256];
    b->duration_s = 10;
    b->timeout_ms = 10000;
    b->seed = 1;
    const cm_flag flags[] = {
        {.name = "servers",
         .type = CM_FLAG_STRING,
         .dst = &servers,
         .required = true,
         .metavar = "H:P[,H:P...]"},
        {.name = "clients", .type = CM_FLAG_U64, .dst = &clients, .lo = 1, .hi = 100000},
        {.name = "duration", .type = CM_FLAG_U64, .dst = &b->duration_s, .lo = 1, .hi = 86400},
        {.name = "requests",
         .type = CM_FLAG_U64,
         .dst = &b->max_requests,
         .lo = 1,
         .hi = UINT64_MAX},
        {.name = "hot-perf",
         .type = CM_FLAG_STRING,
         .dst = &hot,
         .required = true,
         .metavar = "ID"},
        {.name = "background-perfs", .type = CM_FLAG_STRING, .dst = &bg},
        {.name = "background-share", .type = CM_FLAG_DOUBLE, .dst = &bg_share, .dlo = 0, .dhi = 1},
        {.name = "reads-share", .type = CM_FLAG_DOUBLE, .dst = &reads_share, .dlo = 0, .dhi = 1},
        {.name = "users",
         .type = CM_FLAG_STRING,
         .dst = &users,
         .required = true,
         .metavar = "FIRST:COUNT"},
        {.name = "seats-min",
         .type = CM_FLAG_U64,
         .dst = &seats_min,
         .lo = 1,
         .hi = BB_MAX_SEATS_PER_REQ},
        {.name = "seats-max",
         .type = CM_FLAG_U64,
         .dst = &seats_max,
         .lo = 1,
         .hi = BB_MAX_SEATS_PER_REQ},
        {.name = "seed", .type = CM_FLAG_U64, .dst = &b->seed, .lo = 0, .hi = UINT64_MAX},
        {.name = "timeout-ms", .type = CM_FLAG_U64, .dst = &b->timeout_ms, .lo = 1, .hi = 600000},
        {.name = "rate", .type = CM_FLAG_U64, .dst = &rate, .lo = 1, .hi = 1000000},
        {.name = "result-line", .type = CM_FLAG_SWITCH, .dst = &b->result_line},
        {.name = "hot-partition", .type = CM_FLAG_SWITCH, .dst = &b->hot_partition},
        {.name = "json", .type = CM_FLAG_STRING, .dst = &b->json_path, .metavar = "FILE"},
        {.name = "tokens", .type = CM_FLAG_STRING, .dst = &tokens, .metavar = "FILE"},
    };
    const cm_flags_spec spec = {
        .prog = "bookbench", .flags = flags, .nflags = CM_ARRAY_LEN(flags), .usage = usage};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, NULL);
    if (res != CM_FLAGS_RUN)
        return (int)res;
    b->nclients = (int)clients;
    b->seats_min = (int)seats_min;
    b->seats_max = (int)seats_max;
    if (cm_addr_parse_list(servers, &b->servers, &b->nservers, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "bookbench: --servers: %s\n", err);
        return 2;
    }
    if (!parse_perfs(b, hot) || b->nperfs != 1 || (bg && !parse_perfs(b, bg))) {
        fprintf(stderr, "bookbench: --hot-perf takes one id, --background-perfs a list of ids\n");
        return 2;
    }
    uint64_t first;
    if (!cm_parse_u64_pair(users, ':', 1, INT64_MAX, &first, &v) || v > INT32_MAX ||
        first > (uint64_t)INT64_MAX - v) {
        fprintf(stderr, "bookbench: --users wants FIRST:COUNT, e.g. 1:100\n");
        return 2;
    }
    b->users_first = (int64_t)first;
    b->users_count = (int64_t)v;
    if (tokens != NULL && !read_tokens(b, tokens))
        return 2;
    if (b->seats_min > b->seats_max) {
        fprintf(stderr, "bookbench: --seats-min is above --seats-max\n");
        return 2;
    }
    if (rate > 0)
        b->pace_us = (uint64_t)b->nclients * 1000000 / rate;
    double dflt = b->nperfs > 1 ? 0.25 : 0;
    b->bg_share = bg_share >= 0 ? bg_share : dflt;
    b->reads_share = reads_share >= 0 ? reads_share : dflt;
    if (b->bg_share + b->reads_share > 1) {
        fprintf(stderr, "bookbench: --background-share + --reads-share is above 1\n");
        return 2;
    }
    return 0;
}

static void bb_free(bb *b)
{
    lg_driver_free(b->d);
    free(b->c);
    for (size_t i = 0; i < b->nperfs; i++) {
        free(b->perfs[i].seat);
        free(b->perfs[i].free);
        free(b->perfs[i].pos);
    }
    free(b->perfs);
    free(b->servers);
    free(b->hot_by_server);
    for (size_t i = 0; i < b->ntokens; i++)
        free(b->tokens[i]);
    free(b->tokens);
    lg_slices_clear(&b->slices);
    if (b->base)
        event_base_free(b->base);
    free(b);
}

/* What bookbench has always taken: numeric addresses or localhost (no name lookups in a
 * benchmark). */
static bool numeric_host(const cm_addr *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return strcmp(a->host, "localhost") == 0 || inet_pton(AF_INET, a->host, buf) == 1 ||
           inet_pton(AF_INET6, a->host, buf) == 1;
}

int main(int argc, char **argv)
{
    int rc = 1;
    bb *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    rc = parse_args(b, argc, argv);
    if (rc != 0) {
        rc = rc == 1 ? 0 : rc;
        goto done;
    }
    rc = 1;
    for (size_t i = 0; i < b->nservers; i++) {
        if (!numeric_host(&b->servers[i])) {
            fprintf(stderr, "bookbench: --servers must be numeric loopback addresses\n");
            rc = 2;
            goto done;
        }
    }
    b->base = event_base_new();
    b->c = calloc((size_t)b->nclients, sizeof(*b->c));
    b->hot_by_server = calloc(b->nservers, sizeof(*b->hot_by_server));
    if (b->base == NULL || b->c == NULL || b->hot_by_server == NULL)
        goto done;
    for (int i = 0; i < b->nclients; i++) {
        bb_client *c = &b->c[i];
        c->b = b;
        c->idx = i;
        c->rng = lg_rng_seed(b->seed, (uint64_t)i);
    }
    const lg_driver_opts lo = {.servers = b->servers,
                               .nservers = b->nservers,
                               .clients = (uint32_t)b->nclients,
                               .timeout_ms = (uint32_t)b->timeout_ms,
                               .map_timeout_ms = BB_SETUP_TIMEOUT_MS,
                               .duration_ms = b->duration_s * 1000,
                               /* classify() reads only the bodies of refusals: a seat map
                                * of megabytes costs the load generator no copy */
                               .skip_ok_bodies = true};
    int64_t *ids = calloc(b->nperfs, sizeof(*ids));
    if (ids == NULL)
        goto done;
    for (size_t i = 0; i < b->nperfs; i++)
        ids[i] = b->perfs[i].id;
    b->d = lg_driver_new(b->base, &lo, &bb_workload, b);
    if (b->d == NULL || lg_driver_start(b->d, ids, b->nperfs) != CM_OK) {
        free(ids);
        goto done;
    }
    event_base_dispatch(b->base);
    free(ids);
    if (lg_driver_setup_failed(b->d) || !lg_driver_setup_done(b->d) || b->setup_error)
        goto done; /* failed or interrupted */
    report(b);
    rc = 0;
done:
    bb_free(b);
    return rc;
}
