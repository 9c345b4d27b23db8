/*
 * cx_load_counter: the counter workload of chaos_load (see the header). Each client runs
 * one op at a time through an explicit state machine; every path that got the lock
 * releases it, and every op that started writes exactly one history line.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_lockclient.h"
#include "cm_log.h"
#include "cm_time.h"
#include "cx_load_counter.h"
#include "cx_load_pg.h"
#include "lg_rng.h"

#define CC_FAIL_PAUSE_MS 50 /* after a failed op, so a dead lockd or DB is not hammered */
#define CC_START_POLL_MS 50
#define CC_START_MAX_MS  10000

/* the read claims the fence (see the header): 0 rows means a newer holder was here */
static const char SQL_READ[] = "UPDATE chaos_counters SET last_fence = $2"
                               " WHERE id = $1 AND last_fence <= $2 RETURNING value";
static const char SQL_WRITE[] = "UPDATE chaos_counters SET value = $2, last_fence = $3"
                                " WHERE id = $1 AND last_fence <= $3";

typedef enum cc_state {
    CC_THINK,   /* between ops; the timer starts the next */
    CC_ACQUIRE, /* ACQUIRE Counter:<id> sent */
    CC_READ,    /* holding the lock, the fenced read in flight */
    CC_SLEEP,   /* holding the lock, the unguarded pause between read and write */
    CC_CHECK,   /* careful client: PING in flight, to see the session (and lock) still live */
    CC_WRITE,   /* UPDATE with the fence in flight */
    CC_IDLE,    /* stopped */
} cc_state;

typedef struct cc_client {
    cx_counter *w;
    uint32_t num; /* client number in the history */
    cm_lockclient *lc;
    cx_pg *pg;
    uint64_t rng;
    cc_state state;
    struct event *timer;
    bool started;                  /* the first op has started */
    uint64_t start_deadline;       /* cm_now_ms by which it starts, connected or not */
    char server[CM_HOST_MAX + 16]; /* the lockd this session tries first */
    /* the op in flight */
    uint64_t id;
    uint64_t start_ms;
    uint32_t counter;
    char resource[32];
    bool granted;
    bool lost;
    bool have_read; /* the fenced read answered: the op claimed its fence */
    char token[CM_LOCKP_TOKEN_LEN + 1];
    uint64_t fence;
    long long read;
} cc_client;

struct cx_counter {
    struct event_base *base;
    cx_hwriter *hist;
    cx_counter_opts o;
    cc_client *clients;
    void (*on_idle)(void *arg);
    void *arg;
    int marker_sleeping, marker_held; /* last published; -1: nothing yet */
};

static void client_think(cc_client *cl, uint32_t ms);

/* Publishes "sleeping=N held=M" (see the header) when it changed. A small local file
 * written by a tool, not a daemon: the blocking write is fine. */
static void marker_update(cx_counter *w)
{
    char tmp[4096], line[64];
    int sleeping = 0, held = 0;
    if (!w->o.marker)
        return;
    for (uint32_t i = 0; i < w->o.clients; i++) {
        sleeping += w->clients[i].state == CC_SLEEP || w->clients[i].state == CC_CHECK;
        held += w->clients[i].granted;
    }
    if (sleeping == w->marker_sleeping && held == w->marker_held)
        return;
    int len = snprintf(line, sizeof(line), "sleeping=%d held=%d\n", sleeping, held);
    snprintf(tmp, sizeof(tmp), "%s.tmp", w->o.marker);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fwrite(line, 1, (size_t)len, f) == (size_t)len;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, w->o.marker) != 0) {
        log_warn("marker %s: cannot write", w->o.marker);
        return;
    }
    w->marker_sleeping = sleeping;
    w->marker_held = held;
}

bool cx_counter_idle(const cx_counter *c)
{
    for (uint32_t i = 0; i < c->o.clients; i++)
        if (c->clients[i].state != CC_IDLE)
            return false;
    return true;
}

/* Writes the op's line; write is NULL before the UPDATE was tried. Then releases the
 * lock (if held) and pauses before the next op. */
static void op_end(cc_client *cl, const char *outcome, const char *code, const char *write,
                   long long wrote)
{
    cx_counter *w = cl->w;
    json_t *rec =
        json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:s,s:I}", "type", "op", "id", (json_int_t)cl->id,
                  "client", (json_int_t)cl->num, "op", "counter_incr", "start_ms",
                  (json_int_t)cl->start_ms, "end_ms", (json_int_t)cx_hwriter_now(w->hist), "server",
                  cl->server, "counter", (json_int_t)cl->counter);
    if (rec && cl->granted)
        json_object_set_new(rec, "fence", json_integer((json_int_t)cl->fence));
    if (rec && cl->granted && cl->have_read)
        json_object_set_new(rec, "read", json_integer(cl->read));
    if (rec && cl->granted && write) {
        json_object_set_new(rec, "wrote", json_integer(wrote));
        json_object_set_new(rec, "write", json_string(write));
    }
    if (rec) {
        json_object_set_new(rec, "outcome", json_string(outcome));
        json_object_set_new(rec, "code", json_string(code));
        json_object_set_new(rec, "lost", json_boolean(cl->lost));
        cx_hwriter_write(w->hist, rec);
    }
    if (cl->granted && cm_lockclient_release(cl->lc, cl->resource, cl->token, NULL, NULL) != CM_OK)
        log_debug("counter client %u: release not sent", cl->num);
    cl->granted = false;
    client_think(cl, strcmp(outcome, "ok") == 0 ? 0 : CC_FAIL_PAUSE_MS);
    marker_update(w);
}

static void write_cb(void *arg, cx_pg_status st, const PGresult *res, const char *err)
{
    cc_client *cl = arg;
    long long wrote = cl->read + 1;
    if (st == CX_PG_OK) {
        bool applied = strcmp(PQcmdTuples((PGresult *)res), "1") == 0;
        op_end(cl, applied ? "ok" : "fail", applied ? "" : "STALE_FENCE",
               applied ? "applied" : "rejected", wrote);
    } else {
        log_debug("counter client %u: UPDATE: %s", cl->num, err);
        /* an error answer did not apply; no answer may have */
        op_end(cl, st == CX_PG_ERROR ? "fail" : "unknown", "DB", "error", wrote);
    }
}

static void sleep_done(cc_client *cl)
{
    char idv[16], val[32], fence[32];
    const char *params[3] = {idv, val, fence};
    snprintf(idv, sizeof(idv), "%u", cl->counter);
    snprintf(val, sizeof(val), "%lld", cl->read + 1);
    snprintf(fence, sizeof(fence), "%" PRIu64, cl->fence);
    cl->state = CC_WRITE;
    marker_update(cl->w); /* before the send: "sleeping" must mean "write not sent" */
    if (cx_pg_query(cl->pg, SQL_WRITE, 3, params, cl->w->o.timeout_ms, write_cb, cl) != CM_OK)
        op_end(cl, "fail", "DB_DOWN", NULL, 0);
}

/* A careful client's last look before the write. A LOST push or the session's end is
 * delivered before the PING's answer on the same connection, so an OK here means the lock
 * was ours when lockd answered -- and the write may still arrive late, which only the
 * fence catches. After a long pause the timer may fire before the socket's EOF is read:
 * this round trip is what makes the client notice. */
static void check_cb(void *arg, const cm_lock_result *r)
{
    cc_client *cl = arg;
    if (cl->state != CC_CHECK)
        return;
    if (cl->lost || r->status != CM_LOCK_OK)
        op_end(cl, "fail", "LOST", NULL, 0);
    else
        sleep_done(cl);
}

static void read_cb(void *arg, cx_pg_status st, const PGresult *res, const char *err)
{
    cc_client *cl = arg;
    const cx_counter_opts *o = &cl->w->o;
    /* one draw per op whatever happens: the seed fixes the sequence */
    uint64_t sleep_ms =
        o->sleep_min_ms + lg_rng_below(&cl->rng, o->sleep_max_ms - o->sleep_min_ms + 1);
    if (st != CX_PG_OK || PQntuples(res) != 1) {
        /* 0 rows: the counter exists (chaos/run made it) but a newer fence claimed it */
        log_debug("counter client %u: read: %s", cl->num, st == CX_PG_OK ? "stale fence" : err);
        op_end(cl, "fail", st == CX_PG_OK ? "STALE_FENCE_READ" : "DB", NULL, 0);
        return;
    }
    cl->read = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    cl->have_read = true;
    if (cl->lost && !o->ignore_lost) {
        op_end(cl, "fail", "LOST", NULL, 0);
        return;
    }
    cl->state = CC_SLEEP;
    struct timeval tv = cm_tv_from_ms(sleep_ms);
    evtimer_add(cl->timer, &tv);
    marker_update(cl->w);
}

static void acquire_cb(void *arg, const cm_lock_result *r)
{
    cc_client *cl = arg;
    char idv[16], fence[32];
    const char *params[2] = {idv, fence};

    if (r->status != CM_LOCK_OK) {
        op_end(cl, "fail", r->status == CM_LOCK_TIMEOUT ? "TIMEOUT" : r->code, NULL, 0);
        return;
    }
    cl->granted = true;
    cl->fence = r->fence;
    snprintf(cl->token, sizeof(cl->token), "%s", r->token);
    snprintf(idv, sizeof(idv), "%u", cl->counter);
    snprintf(fence, sizeof(fence), "%" PRIu64, cl->fence);
    cl->state = CC_READ;
    marker_update(cl->w);
    if (cx_pg_query(cl->pg, SQL_READ, 2, params, cl->w->o.timeout_ms, read_cb, cl) != CM_OK)
        op_end(cl, "fail", "DB_DOWN", NULL, 0);
}

static void op_start(cc_client *cl)
{
    cx_counter *w = cl->w;
    uint32_t counter = 1 + (uint32_t)lg_rng_below(&cl->rng, w->o.counters);
    if (!cx_hwriter_begin(w->hist, &cl->id)) {
        cl->state = CC_IDLE;
        if (cx_counter_idle(w))
            w->on_idle(w->arg);
        return;
    }
    cl->counter = counter;
    cl->start_ms = cx_hwriter_now(w->hist);
    cl->granted = cl->lost = cl->have_read = false;
    cl->fence = 0;
    cl->read = 0;
    snprintf(cl->resource, sizeof(cl->resource), "Counter:%u", counter);
    cl->state = CC_ACQUIRE;
    if (cm_lockclient_acquire(cl->lc, cl->resource, w->o.lease_ms, w->o.wait_ms, acquire_cb, cl,
                              NULL) != CM_OK)
        op_end(cl, "fail", "BADREQ", NULL, 0);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cc_client *cl = arg;
    if (cl->state == CC_SLEEP && cl->w->o.ignore_lost) {
        sleep_done(cl);
    } else if (cl->state == CC_SLEEP) {
        cl->state = CC_CHECK;
        if (cm_lockclient_ping(cl->lc, check_cb, cl) != CM_OK)
            op_end(cl, "fail", "LOST", NULL, 0);
    } else if (cl->state == CC_THINK) {
        /* the first op waits (boundedly) for the session and the DB connection, so a slow
         * start is not recorded as failed ops */
        bool up = cm_lockclient_connected(cl->lc) && cx_pg_ready(cl->pg);
        if (!cl->started && !up && cm_now_ms() < cl->start_deadline) {
            client_think(cl, CC_START_POLL_MS);
            return;
        }
        cl->started = true;
        op_start(cl);
    }
}

static void client_think(cc_client *cl, uint32_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    cl->state = CC_THINK;
    evtimer_add(cl->timer, &tv);
}

static void lost_cb(void *arg, const char *resource, const char *token)
{
    cc_client *cl = arg;
    if (!cl->granted || strcmp(token, cl->token) != 0)
        return;
    cl->lost = true;
    log_debug("counter client %u: lost %s%s", cl->num, resource,
              cl->w->o.ignore_lost ? " (ignored)" : "");
    /* a careful client gives up before its write; a read in flight ends in read_cb, a
     * write already sent cannot be called back */
    if (!cl->w->o.ignore_lost && cl->state == CC_SLEEP) {
        evtimer_del(cl->timer);
        op_end(cl, "fail", "LOST", NULL, 0);
    }
}

cx_counter *cx_counter_new(struct event_base *base, cx_hwriter *hist, const cx_counter_opts *o,
                           void (*on_idle)(void *arg), void *arg)
{
    cx_counter *c = calloc(1, sizeof(*c));
    cm_addr *eps = NULL;
    if (!c)
        return NULL;
    c->base = base;
    c->hist = hist;
    c->o = *o;
    c->on_idle = on_idle;
    c->arg = arg;
    c->marker_sleeping = c->marker_held = -1;
    c->clients = calloc(o->clients, sizeof(*c->clients));
    eps = calloc(o->n_lockd, sizeof(*eps));
    if (!c->clients || !eps)
        goto fail;
    for (uint32_t i = 0; i < o->clients; i++) {
        cc_client *cl = &c->clients[i];
        char name[32];
        cl->w = c;
        cl->num = o->client_base + i;
        cl->state = CC_IDLE;
        cl->rng = lg_rng_seed(o->seed, 1000000 + i);
        /* spread the sessions over the lockds; each fails over to the rest */
        for (size_t k = 0; k < o->n_lockd; k++)
            eps[k] = o->lockd[(i + k) % o->n_lockd];
        cm_addr_format(&eps[0], cl->server, sizeof(cl->server));
        snprintf(name, sizeof(name), "chaos-counter-%u", i);
        cm_lockclient_opts lo = {.endpoints = eps, .n_endpoints = o->n_lockd, .client_name = name};
        cl->lc = cm_lockclient_new(base, &lo);
        cl->pg = cx_pg_new(base, o->conninfo);
        cl->timer = evtimer_new(base, timer_cb, cl);
        if (!cl->lc || !cl->pg || !cl->timer)
            goto fail;
        cm_lockclient_on_lost(cl->lc, lost_cb, cl);
        cl->start_deadline = cm_now_ms() + CC_START_MAX_MS;
        client_think(cl, CC_START_POLL_MS);
    }
    free(eps);
    return c;
fail:
    free(eps);
    cx_counter_free(c);
    return NULL;
}

void cx_counter_stop(cx_counter *c)
{
    for (uint32_t i = 0; i < c->o.clients; i++) {
        cc_client *cl = &c->clients[i];
        if (cl->state == CC_THINK) {
            evtimer_del(cl->timer);
            cl->state = CC_IDLE;
        }
    }
}

void cx_counter_abort(cx_counter *c)
{
    cx_counter_stop(c);
    for (uint32_t i = 0; i < c->o.clients; i++) {
        cc_client *cl = &c->clients[i];
        if (cl->state == CC_IDLE)
            continue;
        evtimer_del(cl->timer);
        if (cl->state == CC_WRITE)
            op_end(cl, "unknown", "STOPPED", "error", cl->read + 1);
        else
            op_end(cl, "fail", "STOPPED", NULL, 0);
        evtimer_del(cl->timer);
        cl->state = CC_IDLE;
    }
}

void cx_counter_free(cx_counter *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; c->clients && i < c->o.clients; i++) {
        cc_client *cl = &c->clients[i];
        if (cl->lc)
            cm_lockclient_free(cl->lc);
        cx_pg_free(cl->pg);
        if (cl->timer)
            event_free(cl->timer);
    }
    free(c->clients);
    free(c);
}
