/*
 * cx_load_holds: the seat-hold ops of chaos_load (see cx_load_holds.h). Each client's hold
 * goes through hx_move, the one place that changes its state.
 */
#include "cx_load_holds.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_log.h"
#include "lg_rng.h"

/* Of the ops on which a holding client acts on its hold: book below BOOK_PCT, release
 * below RELEASE_PCT, leave it to expire above (the sweeper's work). */
#define BOOK_PCT    40
#define RELEASE_PCT 70

typedef enum hx_state {
    HX_IDLE = 0,  /* no hold of its own (or one left to expire): may take one */
    HX_TAKING,    /* POST /performances/{id}/holds in flight */
    HX_HOLDING,   /* an acknowledged hold, not yet acted on */
    HX_BOOKING,   /* POST /performances/{id}/reservations {"holdId"} in flight */
    HX_RELEASING, /* DELETE /holds/{id} in flight */
} hx_state;

static const char *const HX_NAMES[] = {"idle", "taking", "holding", "booking", "releasing"};

typedef struct hx_client {
    hx_state state;
    long long hold; /* the hold (HOLDING, BOOKING, RELEASING); 0 otherwise */
    long long user; /* its user, from the 201 (the admin's id) */
    long long seats[CX_HOLD_MAX_SEATS];
    int nseats;
    int64_t expires_ms;  /* expiresAt on the run's clock (ms since the epoch) */
    char expires_at[40]; /* expiresAt as the server wrote it */
} hx_client;

struct cx_holds {
    cx_hwriter *hist;
    hx_client *c;
    uint32_t n;
    long long hot;
    const lg_seatmap *map;
    unsigned share_pct;
    long long *free_ids; /* seats of the hot performance free at the last read */
    size_t n_free;
    uint64_t taken, held, booked, released, left; /* ops and their results, for the summary */
};

/* The one state change of a client's hold; asserts the move is legal. */
static void hx_move(hx_client *c, uint32_t num, hx_state to)
{
    static const unsigned legal[] = {
        [HX_IDLE] = 1u << HX_TAKING,
        [HX_TAKING] = 1u << HX_HOLDING | 1u << HX_IDLE,
        [HX_HOLDING] = 1u << HX_BOOKING | 1u << HX_RELEASING | 1u << HX_IDLE,
        [HX_BOOKING] = 1u << HX_IDLE,
        [HX_RELEASING] = 1u << HX_IDLE,
    };
    assert(legal[c->state] & (1u << to));
    (void)legal; /* a Release build has no assert */
    log_debug("client %u hold %lld: %s -> %s", num, c->hold, HX_NAMES[c->state], HX_NAMES[to]);
    c->state = to;
    if (to == HX_IDLE)
        c->hold = 0;
}

cx_holds *cx_holds_new(cx_hwriter *hist, uint32_t clients, long long hot, const lg_seatmap *map,
                       unsigned share_pct)
{
    cx_holds *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->c = calloc(clients + 1, sizeof(*h->c));
    h->free_ids = calloc(map->n + 1, sizeof(*h->free_ids));
    if (!h->c || !h->free_ids) {
        cx_holds_free(h);
        return NULL;
    }
    h->hist = hist;
    h->n = clients;
    h->hot = hot;
    h->map = map;
    h->share_pct = share_pct;
    for (size_t i = 0; i < map->n; i++) /* the map at start: its free seats */
        if (map->avail[i])
            h->free_ids[h->n_free++] = map->ids[i];
    return h;
}

void cx_holds_free(cx_holds *h)
{
    if (!h)
        return;
    free(h->c);
    free(h->free_ids);
    free(h);
}

void cx_holds_seen_map(cx_holds *h, const char *body, size_t len)
{
    lg_seatmap m = {0};
    if (lg_seatmap_parse(&m, body, len) != CM_OK)
        return;
    h->n_free = 0;
    for (size_t i = 0; i < m.n && h->n_free < h->map->n; i++)
        if (m.avail[i])
            h->free_ids[h->n_free++] = m.ids[i];
    lg_seatmap_clear(&m);
}

static json_t *seats_json(const long long *seats, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(seats[i]));
    return a;
}

/* k distinct seats (fewer when draws collide) among those last seen free, or among all the
 * hot performance's seats when none was seen free: the server says which are taken. */
static void pick_free(const cx_holds *h, hx_client *c, const uint64_t *p, int k)
{
    const bool view = h->n_free > 0;
    size_t n = view ? h->n_free : h->map->n;
    c->nseats = 0;
    for (int i = 0; i < k; i++) {
        long long s = view ? h->free_ids[p[i] % n] : h->map->ids[p[i] % n];
        bool dup = false;
        for (int j = 0; j < c->nseats; j++)
            dup = dup || c->seats[j] == s;
        if (!dup)
            c->seats[c->nseats++] = s;
    }
}

bool cx_holds_next(cx_holds *h, uint32_t client, uint64_t *rng, lg_request *req)
{
    hx_client *c = &h->c[client];
    /* a fixed number of draws per call, whatever is decided */
    uint64_t dice = lg_rng_below(rng, 100), act = lg_rng_below(rng, 100);
    int k = 1 + (int)lg_rng_below(rng, CX_HOLD_MAX_SEATS);
    uint64_t p[CX_HOLD_MAX_SEATS];
    for (int i = 0; i < CX_HOLD_MAX_SEATS; i++)
        p[i] = lg_rng_below(rng, UINT32_MAX);

    assert(c->state == HX_IDLE || c->state == HX_HOLDING); /* one op in flight per client */
    if (dice >= h->share_pct)
        return false;
    if (c->state == HX_IDLE) {
        pick_free(h, c, p, k);
        json_t *j = json_pack("{s:o}", "seatIds", seats_json(c->seats, c->nseats));
        req->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!req->body)
            return false; /* out of memory: an ordinary op instead */
        req->method = "POST";
        snprintf(req->path, sizeof(req->path), "/performances/%lld/holds", h->hot);
        hx_move(c, client, HX_TAKING);
        h->taken++;
        return true;
    }
    if (act >= RELEASE_PCT) { /* left to expire: the sweeper must give its seats back */
        h->left++;
        hx_move(c, client, HX_IDLE);
        return false;
    }
    if (act < BOOK_PCT) {
        char body[64];
        snprintf(body, sizeof(body), "{\"holdId\":%lld}", c->hold);
        req->body = strdup(body);
        if (!req->body)
            return false;
        req->method = "POST";
        snprintf(req->path, sizeof(req->path), "/performances/%lld/reservations", h->hot);
        hx_move(c, client, HX_BOOKING);
    } else {
        req->method = "DELETE";
        snprintf(req->path, sizeof(req->path), "/holds/%lld", c->hold);
        hx_move(c, client, HX_RELEASING);
    }
    return true;
}

/* "2026-12-06T03:07:26.123456Z" (rs_rfc3339) as Unix milliseconds; -1 when not that form. */
static int64_t rfc3339_ms(const char *s)
{
    struct tm tm;
    int frac_len = 0;
    unsigned frac = 0;
    char z = 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        const char *q = ++p;
        while (*q >= '0' && *q <= '9') {
            if (frac_len < 3) {
                frac = frac * 10 + (unsigned)(*q - '0');
                frac_len++;
            }
            q++;
        }
        p = q;
    }
    while (frac_len > 0 && frac_len < 3) {
        frac *= 10;
        frac_len++;
    }
    z = *p;
    if (z != 'Z')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + frac;
}

/* expiresAt on the run's clock: the wall clock of this host (the servers run here) read
 * now, against the monotonic clock of the history. */
static int64_t run_clock_ms(const cx_hwriter *hist, int64_t wall_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return (int64_t)cx_hwriter_now(hist) + (wall_ms - now_wall);
}

/* A 201's hold: its id, user, seats and expiry into c; false when the body lacks them. */
static bool take_hold(const cx_holds *h, hx_client *c, json_t *body)
{
    json_t *id = json_object_get(body, "id"), *seats = json_object_get(body, "seatIds");
    const char *exp = json_string_value(json_object_get(body, "expiresAt"));
    int64_t wall = exp ? rfc3339_ms(exp) : -1;
    if (!json_is_integer(id) || wall < 0)
        return false;
    c->hold = (long long)json_integer_value(id);
    c->user = (long long)json_integer_value(json_object_get(body, "userId"));
    snprintf(c->expires_at, sizeof(c->expires_at), "%s", exp);
    c->expires_ms = run_clock_ms(h->hist, wall);
    if (json_is_array(seats) && json_array_size(seats) > 0 &&
        json_array_size(seats) <= CX_HOLD_MAX_SEATS) {
        c->nseats = 0;
        for (size_t i = 0; i < json_array_size(seats); i++)
            c->seats[c->nseats++] = (long long)json_integer_value(json_array_get(seats, i));
    }
    return true;
}

static const char *error_code(json_t *body)
{
    const char *code = json_string_value(json_object_get(json_object_get(body, "error"), "code"));
    return code ? code : "";
}

bool cx_holds_answered(cx_holds *h, uint32_t client, const cm_httpc_resp *resp, uint64_t op_id,
                       uint64_t start_ms, const char *server, cx_hold_booked *booked)
{
    hx_client *c = &h->c[client];
    int status = resp ? resp->status : 0;
    json_t *body = status ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *op = c->state == HX_TAKING ? "hold" : c->state == HX_BOOKING ? "book" : "release";
    bool ok = status / 100 == 2, got = false;

    assert(c->state == HX_TAKING || c->state == HX_BOOKING || c->state == HX_RELEASING);
    if (c->state == HX_TAKING && status == 201)
        got = take_hold(h, c, body);
    json_t *rec = json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:s,s:I}", "type", "op", "id",
                            (json_int_t)op_id, "client", (json_int_t)client, "op", op, "start_ms",
                            (json_int_t)start_ms, "end_ms", (json_int_t)cx_hwriter_now(h->hist),
                            "server", server, "perf", (json_int_t)h->hot);
    if (rec) {
        if (c->state != HX_TAKING || got)
            json_object_set_new(rec, "user", json_integer(c->user));
        json_object_set_new(rec, "seats", seats_json(c->seats, c->nseats));
        if (c->hold > 0)
            json_object_set_new(rec, "hold", json_integer(c->hold));
        if (got) {
            json_object_set_new(rec, "expires_at", json_string(c->expires_at));
            json_object_set_new(rec, "expires_ms", json_integer(c->expires_ms));
        }
        if (c->state == HX_BOOKING) {
            json_t *id = json_object_get(body, "id");
            const char *pay = json_string_value(json_object_get(body, "paymentId"));
            if (status == 201 && json_is_integer(id))
                json_object_set(rec, "reservation", id);
            json_object_set_new(rec, "payment",
                                pay && status == 201 ? json_string(pay) : json_null());
        }
        json_object_set_new(rec, "status", json_integer(status));
        json_object_set_new(rec, "outcome",
                            json_string(status == 0 ? "unknown"
                                        : ok        ? "ok"
                                                    : "fail"));
        json_object_set_new(rec, "code", json_string(status ? error_code(body) : ""));
        if (status == 0)
            json_object_set_new(rec, "error", json_string(resp ? resp->error : "stopped"));
        cx_hwriter_write(h->hist, rec);
    }

    bool made = false;
    if (c->state == HX_TAKING) {
        if (got)
            h->held++;
        hx_move(c, client, got ? HX_HOLDING : HX_IDLE);
    } else if (c->state == HX_BOOKING) {
        json_t *id = json_object_get(body, "id");
        made = status == 201 && json_is_integer(id);
        if (made) {
            h->booked++;
            *booked = (cx_hold_booked){.id = (long long)json_integer_value(id),
                                       .perf = h->hot,
                                       .user = c->user,
                                       .nseats = c->nseats};
            memcpy(booked->seats, c->seats, sizeof(booked->seats));
        }
        hx_move(c, client, HX_IDLE);
    } else {
        h->released += ok;
        hx_move(c, client, HX_IDLE);
    }
    json_decref(body);
    return made;
}

bool cx_holds_target(const cx_holds *h, uint64_t pick, long long *seats, int *nseats)
{
    for (uint32_t i = 0; i < h->n; i++) {
        const hx_client *c = &h->c[(pick + i) % h->n];
        if (c->state == HX_HOLDING && c->nseats > 0) {
            memcpy(seats, c->seats, sizeof(c->seats[0]) * (size_t)c->nseats);
            *nseats = c->nseats;
            return true;
        }
    }
    return false;
}

void cx_holds_summary(const cx_holds *h, char *buf, size_t len)
{
    snprintf(buf, len,
             "holds=%" PRIu64 " held=%" PRIu64 " hold_booked=%" PRIu64 " released=%" PRIu64
             " left_to_expire=%" PRIu64,
             h->taken, h->held, h->booked, h->released, h->left);
}
