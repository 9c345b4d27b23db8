/*
 * bookbench: a booking load generator for reserved (issue 3 §7, §8). C closed-loop clients
 * share one libevent loop; each owns one keep-alive HTTP connection (cx_http, the chaos
 * tools' client) to one of the servers, round robin, and sends its next request as soon
 * as the last one is answered. Three classes of request:
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
 *
 * Reports per class: requests by outcome (201/200, SEAT_TAKEN, SOLD_OUT, 402, BUSY,
 * UNAVAILABLE, other, no answer), throughput (all and successful per second) and latency
 * p50/p99/max of the answered requests. The table shows only the classes that sent
 * requests and the outcomes that happened (the others are named on one line); every
 * figure, zeros included, goes to one `RESULT key=value ...` line with --result-line (for
 * scripts) and to JSON with --json. Exit 0 after a run, 1 when the setup failed
 * (a seat map could not be read), 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "cm_addr.h"
#include "cm_time.h"
#include "cx_load_http.h"
#include "cx_load_rng.h"

#define BB_MAX_SEATS_PER_REQ 10
#define BB_SETUP_TIMEOUT_MS  30000
/* Latency histogram: 64 sub-buckets per power of two of microseconds (<1.6% error). */
#define BB_SUB_BITS 6
#define BB_SUB      (1u << BB_SUB_BITS)
#define BB_BUCKETS  (64 * BB_SUB)

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

typedef struct bb_lat {
    uint64_t b[BB_BUCKETS];
    uint64_t n, max_us;
} bb_lat;

typedef struct bb_stats {
    uint64_t n[OUT_N];
    uint64_t total;
    bb_lat all; /* every answered request */
    bb_lat ok;  /* successful ones only */
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
    cx_http *h;
    uint64_t rng;
    bb_class cls; /* of the request in flight */
    bb_perf *perf;
    uint32_t picked[BB_MAX_SEATS_PER_REQ]; /* seat indexes of the booking in flight */
    int npicked;
    uint64_t t0_us;
    uint64_t next_us;   /* --rate: not before this */
    struct event *pace; /* --rate: fires at next_us */
    bool busy;
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
    int seats_min, seats_max;
    const char *json_path;
    bool result_line; /* --result-line: the RESULT line for scripts */
    bb_perf *perfs;   /* [0] = hot, [1..] = background */
    size_t nperfs;
    bb_client *c;
    cx_http *setup_h;
    size_t setup_next;
    bool setup_failed;
    bool stopping;
    int inflight;
    uint64_t issued;
    uint64_t t_start_us, t_last_us;
    struct event *stop_timer, *ev_int, *ev_term;
    bb_stats st[BB_NCLASS];
    bb_stats *hot_by_server; /* [nservers]: shows a server whose hot bookings starve */
};

/* ---- latency histogram ---- */

static uint32_t lat_bucket(uint64_t us)
{
    if (us < BB_SUB)
        return (uint32_t)us;
    int e = 63 - __builtin_clzll(us); /* us in [2^e, 2^(e+1)), e >= BB_SUB_BITS */
    uint32_t sub = (uint32_t)(us >> (e - BB_SUB_BITS)) & (BB_SUB - 1);
    uint32_t i = (uint32_t)(e - BB_SUB_BITS + 1) * BB_SUB + sub;
    return i < BB_BUCKETS ? i : BB_BUCKETS - 1;
}

/* The middle of bucket i, in microseconds. */
static double lat_value(uint32_t i)
{
    if (i < BB_SUB)
        return i;
    int e = (int)(i / BB_SUB) - 1 + BB_SUB_BITS;
    double lo = ldexp(1.0, e) + (double)(i % BB_SUB) * ldexp(1.0, e - BB_SUB_BITS);
    return lo + ldexp(1.0, e - BB_SUB_BITS) / 2;
}

static void lat_add(bb_lat *l, uint64_t us)
{
    l->b[lat_bucket(us)]++;
    l->n++;
    if (us > l->max_us)
        l->max_us = us;
}

/* The q-quantile in milliseconds (0 without samples); never above the exact maximum. */
static double lat_ms(const bb_lat *l, double q)
{
    if (l->n == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)l->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < BB_BUCKETS; i++) {
        seen += l->b[i];
        if (seen >= rank) {
            double v = lat_value(i);
            return (v < (double)l->max_us ? v : (double)l->max_us) / 1000.0;
        }
    }
    return (double)l->max_us / 1000.0;
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
static bool perf_load(bb_perf *p, const char *body)
{
    bool ok = false;
    json_t *root = json_loads(body, 0, NULL);
    json_t *seats = json_object_get(root, "seats");
    size_t n = json_array_size(seats), i;
    json_t *s;
    if (!json_is_array(seats) || n == 0 || n > UINT32_MAX / 2)
        goto done;
    p->seat = calloc(n, sizeof(*p->seat));
    p->free = calloc(n, sizeof(*p->free));
    p->pos = calloc(n, sizeof(*p->pos));
    if (p->seat == NULL || p->free == NULL || p->pos == NULL)
        goto done;
    json_array_foreach(seats, i, s)
    {
        json_t *id = json_object_get(s, "id");
        if (!json_is_integer(id))
            goto done;
        p->seat[i] = json_integer_value(id);
    }
    p->nseat = (uint32_t)n;
    qsort(p->seat, n, sizeof(*p->seat), cmp_i64);
    for (i = 0; i < n; i++)
        p->pos[i] = UINT32_MAX;
    json_array_foreach(seats, i, s)
    {
        uint32_t si;
        if (json_is_true(json_object_get(s, "available")) &&
            perf_index(p, json_integer_value(json_object_get(s, "id")), &si) &&
            p->pos[si] == UINT32_MAX) {
            p->pos[si] = p->nfree;
            p->free[p->nfree++] = si;
        }
    }
    p->sold_out = p->nfree == 0;
    ok = true;
done:
    json_decref(root);
    return ok;
}

/* ---- the run ---- */

static void client_next(bb_client *c);

static void bb_finish_if_idle(bb *b)
{
    if (b->inflight == 0)
        event_base_loopbreak(b->base);
}

static void bb_stop(bb *b)
{
    if (b->stopping)
        return;
    b->stopping = true;
    bb_finish_if_idle(b);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bb_stop(arg);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    bb *b = arg;
    fprintf(stderr, "bookbench: signal %d, stopping (in-flight requests finish)\n", (int)fd);
    bb_stop(b);
}

static double rng_unit(uint64_t *s)
{
    return (double)cx_rng_below(s, 1u << 30) / (double)(1u << 30);
}

/* A random background performance with free seats, or NULL. */
static bb_perf *pick_bg(bb_client *c)
{
    bb *b = c->b;
    size_t nbg = b->nperfs - 1;
    if (nbg == 0)
        return NULL;
    for (int tries = 0; tries < 8; tries++) {
        bb_perf *p = &b->perfs[1 + cx_rng_below(&c->rng, nbg)];
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
    if (c->cls == BB_HOT && hot->sold_out)
        c->cls = BB_BG;
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
        c->perf = &b->perfs[cx_rng_below(&c->rng, b->nperfs)];
    }
    return true;
}

static char *booking_body(bb_client *c)
{
    bb *b = c->b;
    bb_perf *p = c->perf;
    int k = b->seats_min + (int)cx_rng_below(&c->rng, (uint64_t)(b->seats_max - b->seats_min + 1));
    if ((uint32_t)k > p->nfree)
        k = (int)p->nfree;
    c->npicked = 0;
    /* k <= 10 distinct positions of free[]: rejection is cheap. */
    while (c->npicked < k) {
        uint32_t si = p->free[cx_rng_below(&c->rng, p->nfree)];
        bool dup = false;
        for (int i = 0; i < c->npicked; i++)
            dup = dup || c->picked[i] == si;
        if (!dup)
            c->picked[c->npicked++] = si;
    }
    json_t *ids = json_array();
    for (int i = 0; i < c->npicked; i++)
        json_array_append_new(ids, json_integer(p->seat[c->picked[i]]));
    int64_t user = b->users_first + (int64_t)cx_rng_below(&c->rng, (uint64_t)b->users_count);
    json_t *o = json_pack("{s:I,s:o}", "userId", (json_int_t)user, "seatIds", ids);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static bb_outcome classify(bb_class cls, const cx_http_resp *r, json_t **err_out)
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

static void on_answer(void *arg, const cx_http_resp *r)
{
    bb_client *c = arg;
    bb *b = c->b;
    uint64_t now = cm_now_us(), us = now - c->t0_us;
    bb_stats *st = &b->st[c->cls];
    json_t *err = NULL;
    bb_outcome o = classify(c->cls, r, &err);
    st->n[o]++;
    st->total++;
    if (o != OUT_NOANSWER)
        lat_add(&st->all, us);
    if (c->cls == BB_HOT) {
        bb_stats *hs = &b->hot_by_server[(size_t)c->idx % b->nservers];
        hs->n[o]++;
        hs->total++;
        if (o != OUT_NOANSWER)
            lat_add(&hs->all, us);
    }
    if (o == OUT_OK)
        lat_add(&st->ok, us);
    b->t_last_us = now;
    if (c->cls != BB_READ) {
        bb_perf *p = c->perf;
        if (o == OUT_OK) {
            for (int i = 0; i < c->npicked; i++)
                perf_take(p, c->picked[i]);
        } else if (o == OUT_SEAT_TAKEN) {
            size_t i;
            json_t *id;
            uint32_t si;
            json_array_foreach(json_object_get(err, "seatIds"), i, id)
            {
                if (perf_index(p, json_integer_value(id), &si))
                    perf_take(p, si);
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
    c->busy = false;
    b->inflight--;
    client_next(c);
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_next(arg);
}

static void client_next(bb_client *c)
{
    bb *b = c->b;
    char path[96];
    char *body = NULL;
    if (b->pace_us > 0 && !b->stopping) {
        uint64_t now = cm_now_us();
        if (now < c->next_us) {
            struct timeval tv = {(time_t)((c->next_us - now) / 1000000),
                                 (suseconds_t)((c->next_us - now) % 1000000)};
            evtimer_add(c->pace, &tv);
            return;
        }
        /* no burst to catch up after a slow answer: at most one slot is made good */
        c->next_us = (c->next_us + b->pace_us < now ? now : c->next_us + b->pace_us);
    }
    if (b->stopping || (b->max_requests && b->issued >= b->max_requests) || !choose(c)) {
        bb_finish_if_idle(b);
        return;
    }
    if (c->cls == BB_READ) {
        snprintf(path, sizeof(path), "/performances/%" PRId64 "/seats", c->perf->id);
    } else {
        snprintf(path, sizeof(path), "/performances/%" PRId64 "/reservations", c->perf->id);
        body = booking_body(c);
        if (body == NULL) {
            fprintf(stderr, "bookbench: out of memory\n");
            bb_stop(b);
            return;
        }
    }
    c->t0_us = cm_now_us();
    if (cx_http_request(c->h, body ? "POST" : "GET", path, body, on_answer, c) != CM_OK) {
        fprintf(stderr, "bookbench: client %d cannot send\n", c->idx);
        free(body);
        bb_finish_if_idle(b);
        return;
    }
    free(body);
    c->busy = true;
    b->inflight++;
    b->issued++;
}

static void start_clients(bb *b)
{
    struct timeval tv = cm_tv_from_ms(b->duration_s * 1000);
    b->t_start_us = b->t_last_us = cm_now_us();
    evtimer_add(b->stop_timer, &tv);
    for (int i = 0; i < b->nclients; i++)
        client_next(&b->c[i]);
    bb_finish_if_idle(b);
}

static void fetch_next_map(bb *b);

static void on_map(void *arg, const cx_http_resp *r)
{
    bb *b = arg;
    bb_perf *p = &b->perfs[b->setup_next];
    if (r->status != 200 || !perf_load(p, r->body)) {
        fprintf(stderr, "bookbench: GET /performances/%" PRId64 "/seats: %d %s %.200s\n", p->id,
                r->status, r->status ? "" : r->error, r->body ? r->body : "");
        b->setup_failed = true;
        event_base_loopbreak(b->base);
        return;
    }
    b->setup_next++;
    fetch_next_map(b);
}

/* The seat maps one after another on one connection, then the storm. */
static void fetch_next_map(bb *b)
{
    char path[96];
    if (b->setup_next == b->nperfs) {
        start_clients(b);
        return;
    }
    snprintf(path, sizeof(path), "/performances/%" PRId64 "/seats", b->perfs[b->setup_next].id);
    if (cx_http_request(b->setup_h, "GET", path, NULL, on_map, b) != CM_OK) {
        b->setup_failed = true;
        event_base_loopbreak(b->base);
    }
}

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
    printf(" hot_all_sold=%d hot_all_sold_ms=%" PRIu64 "\n", hot->sold_out ? 1 : 0,
           hot->sold_out ? hot->sold_out_ms : 0);
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
    const bb_perf *hot = &b->perfs[0];
    printf("hot performance %" PRId64 ": %u seats, %u still free by this run's count%s\n", hot->id,
           hot->nseat, hot->nfree, hot->sold_out ? " (sold out)" : "");
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
          "                 [--json FILE] [--result-line] [--help] [--version]\n"
          "  Closed-loop booking load on reserved. Each client sends its next request when\n"
          "  the last is answered: a read with probability --reads-share, a background\n"
          "  booking with --background-share (default 0.25 each when background\n"
          "  performances are given, else 0), otherwise a hot booking. Stops after S seconds,\n"
          "  N requests, or when nothing is left to book. --rate R paces the clients to at\n"
          "  most R requests/s in all (each client one request every C/R s).\n"
          "  Prints a table of the classes that sent requests (columns: the outcomes that\n"
          "  happened). --result-line adds one `RESULT key=value ...` line with every\n"
          "  figure, zeros included, for scripts; --json FILE writes them as JSON.\n",
          f);
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_share(const char *s, double *out)
{
    char *end;
    if (s == NULL)
        return false;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

static bool parse_perfs(bb *b, const char *list)
{
    const char *p = list;
    while (*p) {
        char *end;
        errno = 0;
        long long id = strtoll(p, &end, 10);
        if (errno || end == p || id <= 0 || (*end && *end != ','))
            return false;
        bb_perf *np = realloc(b->perfs, (b->nperfs + 1) * sizeof(*np));
        if (np == NULL)
            return false;
        b->perfs = np;
        memset(&b->perfs[b->nperfs], 0, sizeof(bb_perf));
        b->perfs[b->nperfs++].id = id;
        p = *end ? end + 1 : end;
    }
    return true;
}

static int parse_args(bb *b, int argc, char **argv)
{
    const char *servers = NULL, *hot = NULL, *bg = NULL, *users = NULL;
    double bg_share = -1, reads_share = -1;
    uint64_t v, rate = 0;
    char err[256];
    b->duration_s = 10;
    b->timeout_ms = 10000;
    b->seats_min = 1;
    b->seats_max = 3;
    b->seed = 1;
    b->nclients = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--version") == 0) {
            printf("bookbench %s\n", BOOKING_VERSION);
            exit(0);
        } else if (strcmp(a, "--servers") == 0) {
            ok = (servers = val) != NULL;
        } else if (strcmp(a, "--clients") == 0) {
            ok = parse_u64(val, 1, 100000, &v);
            b->nclients = (int)v;
        } else if (strcmp(a, "--duration") == 0) {
            ok = parse_u64(val, 1, 86400, &b->duration_s);
        } else if (strcmp(a, "--requests") == 0) {
            ok = parse_u64(val, 1, UINT64_MAX, &b->max_requests);
        } else if (strcmp(a, "--hot-perf") == 0) {
            ok = (hot = val) != NULL;
        } else if (strcmp(a, "--background-perfs") == 0) {
            ok = (bg = val) != NULL;
        } else if (strcmp(a, "--background-share") == 0) {
            ok = parse_share(val, &bg_share);
        } else if (strcmp(a, "--reads-share") == 0) {
            ok = parse_share(val, &reads_share);
        } else if (strcmp(a, "--users") == 0) {
            ok = (users = val) != NULL;
        } else if (strcmp(a, "--seats-min") == 0) {
            ok = parse_u64(val, 1, BB_MAX_SEATS_PER_REQ, &v);
            b->seats_min = (int)v;
        } else if (strcmp(a, "--seats-max") == 0) {
            ok = parse_u64(val, 1, BB_MAX_SEATS_PER_REQ, &v);
            b->seats_max = (int)v;
        } else if (strcmp(a, "--seed") == 0) {
            ok = parse_u64(val, 0, UINT64_MAX, &b->seed);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            ok = parse_u64(val, 1, 600000, &b->timeout_ms);
        } else if (strcmp(a, "--rate") == 0) {
            ok = parse_u64(val, 1, 1000000, &rate);
        } else if (strcmp(a, "--result-line") == 0) {
            b->result_line = true;
            continue;
        } else if (strcmp(a, "--json") == 0) {
            ok = (b->json_path = val) != NULL;
        } else {
            fprintf(stderr, "bookbench: unknown argument %s\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "bookbench: bad or missing value for %s\n", a);
            return 2;
        }
        i++;
    }
    if (servers == NULL || hot == NULL || users == NULL) {
        usage(stderr);
        return 2;
    }
    if (cm_addr_parse_list(servers, &b->servers, &b->nservers, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "bookbench: --servers: %s\n", err);
        return 2;
    }
    if (!parse_perfs(b, hot) || b->nperfs != 1 || (bg && !parse_perfs(b, bg))) {
        fprintf(stderr, "bookbench: --hot-perf takes one id, --background-perfs a list of ids\n");
        return 2;
    }
    char *colon = strchr(users, ':');
    char *end;
    b->users_first = strtoll(users, &end, 10);
    if (colon == NULL || end != colon || b->users_first <= 0 ||
        !parse_u64(colon + 1, 1, INT32_MAX, &v)) {
        fprintf(stderr, "bookbench: --users wants FIRST:COUNT, e.g. 1:100\n");
        return 2;
    }
    b->users_count = (int64_t)v;
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
    if (b->c) {
        for (int i = 0; i < b->nclients; i++) {
            cx_http_free(b->c[i].h);
            if (b->c[i].pace)
                event_free(b->c[i].pace);
        }
        free(b->c);
    }
    cx_http_free(b->setup_h);
    for (size_t i = 0; i < b->nperfs; i++) {
        free(b->perfs[i].seat);
        free(b->perfs[i].free);
        free(b->perfs[i].pos);
    }
    free(b->perfs);
    free(b->servers);
    free(b->hot_by_server);
    if (b->stop_timer)
        event_free(b->stop_timer);
    if (b->ev_int)
        event_free(b->ev_int);
    if (b->ev_term)
        event_free(b->ev_term);
    if (b->base)
        event_base_free(b->base);
    free(b);
}

int main(int argc, char **argv)
{
    int rc = 1;
    bb *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    rc = parse_args(b, argc, argv);
    if (rc != 0)
        goto done;
    rc = 1;
    b->base = event_base_new();
    b->c = calloc((size_t)b->nclients, sizeof(*b->c));
    b->hot_by_server = calloc(b->nservers, sizeof(*b->hot_by_server));
    if (b->base == NULL || b->c == NULL || b->hot_by_server == NULL)
        goto done;
    b->setup_h = cx_http_new(b->base, &b->servers[0], BB_SETUP_TIMEOUT_MS);
    if (b->setup_h == NULL) {
        fprintf(stderr, "bookbench: --servers must be numeric loopback addresses\n");
        rc = 2;
        goto done;
    }
    for (int i = 0; i < b->nclients; i++) {
        bb_client *c = &b->c[i];
        c->b = b;
        c->idx = i;
        c->rng = cx_rng_seed(b->seed, (uint64_t)i);
        c->h = cx_http_new(b->base, &b->servers[(size_t)i % b->nservers], (uint32_t)b->timeout_ms);
        c->pace = evtimer_new(b->base, on_pace, c);
        if (c->pace == NULL)
            goto done;
        /* spread the first requests over one interval, so the paced load starts smooth */
        c->next_us = cm_now_us() + b->pace_us * (uint64_t)i / (uint64_t)b->nclients;
        if (c->h == NULL) {
            fprintf(stderr, "bookbench: --servers must be numeric loopback addresses\n");
            rc = 2;
            goto done;
        }
    }
    b->stop_timer = evtimer_new(b->base, on_stop_timer, b);
    b->ev_int = evsignal_new(b->base, SIGINT, on_signal, b);
    b->ev_term = evsignal_new(b->base, SIGTERM, on_signal, b);
    if (b->stop_timer == NULL || b->ev_int == NULL || b->ev_term == NULL)
        goto done;
    event_add(b->ev_int, NULL);
    event_add(b->ev_term, NULL);
    fetch_next_map(b);
    event_base_dispatch(b->base);
    if (b->setup_failed || b->setup_next < b->nperfs) /* failed or interrupted */
        goto done;
    report(b);
    rc = 0;
done:
    bb_free(b);
    return rc;
}
