/*
 * cx_load_locks: the plain lock clients of chaos_load (contract in cx_load_locks.h). Owns the
 * clients' small loop (lk_state), their timers and sessions, and the lock history they share.
 */
#include "cx_load_locks.h"

#include <assert.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_lockclient.h"
#include "cm_lockhist.h"
#include "cm_log.h"
#include "cm_time.h"
#include "lg_rng.h"

#define LK_PAUSE_MIN_MS     1
#define LK_PAUSE_MAX_MS     5
#define LK_PAUSE_REFUSED_MS 50 /* after a refusal (NOQUORUM, not connected): no hammering */
#define LK_RES_MAX          48

typedef enum lk_state {
    LK_PAUSE,     /* between loops: the timer starts the next ACQUIRE */
    LK_ACQUIRING, /* an ACQUIRE is out */
    LK_HOLDING,   /* granted: the timer ends the hold */
    LK_RELEASING, /* the RELEASE is out */
    LK_DONE,      /* stopped: nothing out, nothing held */
    LK_NSTATES
} lk_state;

static const char *const lk_state_names[LK_NSTATES] = {"pause", "acquiring", "holding", "releasing",
                                                       "done"};

#define LK_TO(s) (1u << (s))
/* The legal moves: lk_moves[from] has the bit of every state it may go to. */
static const unsigned lk_moves[LK_NSTATES] = {
    [LK_PAUSE] = LK_TO(LK_ACQUIRING) | LK_TO(LK_DONE),
    /* granted; not granted; granted after the stop (given back); not granted after it */
    [LK_ACQUIRING] = LK_TO(LK_HOLDING) | LK_TO(LK_PAUSE) | LK_TO(LK_RELEASING) | LK_TO(LK_DONE),
    /* the hold ends (or the stop); the lock was lost meanwhile */
    [LK_HOLDING] = LK_TO(LK_RELEASING) | LK_TO(LK_PAUSE),
    [LK_RELEASING] = LK_TO(LK_PAUSE) | LK_TO(LK_DONE),
    [LK_DONE] = 0,
};

typedef struct lk_client {
    cx_locks *w;
    uint32_t num;
    lk_state state;
    uint64_t rng;
    cm_lockclient *lc;
    struct event *timer;
    char res[LK_RES_MAX];
    char token[CM_LOCKP_TOKEN_LEN + 1];
} lk_client;

struct cx_locks {
    cx_locks_opts o;
    lk_client *clients;
    cm_lockhist *hist;
    bool stopping;
    bool idle_told;
    void (*on_idle)(void *arg);
    void *arg;
    uint64_t grants, releases, lost, refused;
};

static void lk_move(lk_client *cl, lk_state to)
{
    bool legal = to < LK_NSTATES && (lk_moves[cl->state] & LK_TO(to)) != 0;
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("lock client %u: %s -> %s", cl->num, lk_state_names[cl->state], lk_state_names[to]);
    cl->state = to;
}

static void lk_check_idle(cx_locks *w)
{
    if (!w->stopping || w->idle_told || !cx_locks_idle(w))
        return;
    w->idle_told = true;
    if (w->on_idle != NULL)
        w->on_idle(w->arg);
}

static void lk_arm(lk_client *cl, uint64_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    evtimer_add(cl->timer, &tv);
}

/* The loop goes on after a pause, or ends when the workload stops. */
static void lk_next(lk_client *cl, uint64_t pause_ms)
{
    if (cl->w->stopping) {
        lk_move(cl, LK_DONE);
        lk_check_idle(cl->w);
        return;
    }
    lk_move(cl, LK_PAUSE);
    lk_arm(cl, pause_ms);
}

static uint64_t lk_pause_ms(lk_client *cl)
{
    return LK_PAUSE_MIN_MS + lg_rng_below(&cl->rng, LK_PAUSE_MAX_MS - LK_PAUSE_MIN_MS + 1);
}

static void lk_released(void *arg, const cm_lock_result *res)
{
    lk_client *cl = arg;
    CM_UNUSED(res); /* LOST or an error: either way the lock is not ours any more */
    lk_next(cl, lk_pause_ms(cl));
}

static void lk_release(lk_client *cl)
{
    lk_move(cl, LK_RELEASING);
    cl->w->releases++;
    if (cm_lockclient_release(cl->lc, cl->res, cl->token, lk_released, cl) != CM_OK)
        lk_next(cl, LK_PAUSE_REFUSED_MS);
}

static void lk_granted(void *arg, const cm_lock_result *res)
{
    lk_client *cl = arg;
    /* the hold is drawn whatever the answer: a fixed number of draws per loop */
    uint64_t hold = CX_LOCKS_HOLD_MIN_MS +
                    lg_rng_below(&cl->rng, CX_LOCKS_HOLD_MAX_MS - CX_LOCKS_HOLD_MIN_MS + 1);
    if (res->status != CM_LOCK_OK) {
        if (res->status != CM_LOCK_TIMEOUT)
            cl->w->refused++;
        lk_next(cl, res->status == CM_LOCK_TIMEOUT ? lk_pause_ms(cl) : LK_PAUSE_REFUSED_MS);
        return;
    }
    cl->w->grants++;
    snprintf(cl->token, sizeof(cl->token), "%s", res->token);
    if (cl->w->stopping) {
        lk_release(cl);
        return;
    }
    lk_move(cl, LK_HOLDING);
    lk_arm(cl, hold);
}

static void lk_acquire(lk_client *cl)
{
    snprintf(cl->res, sizeof(cl->res), "chaos:lk:%" PRIu64,
             lg_rng_below(&cl->rng, cl->w->o.resources));
    lk_move(cl, LK_ACQUIRING);
    if (cm_lockclient_acquire(cl->lc, cl->res, cl->w->o.lease_ms, cl->w->o.wait_ms, lk_granted, cl,
                              NULL) != CM_OK) {
        cl->w->refused++;
        lk_next(cl, LK_PAUSE_REFUSED_MS);
    }
}

static void lk_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_client *cl = arg;
    CM_UNUSED(fd);
    CM_UNUSED(what);
    if (cl->state == LK_PAUSE)
        lk_acquire(cl);
    else if (cl->state == LK_HOLDING)
        lk_release(cl);
}

/* The client library told us the lock is gone (and gives it back itself): the hold ends. */
static void lk_lost(void *arg, const char *resource, const char *token)
{
    lk_client *cl = arg;
    if (cl->state != LK_HOLDING || strcmp(token, cl->token) != 0)
        return;
    log_debug("lock client %u: %s lost while held", cl->num, resource);
    cl->w->lost++;
    evtimer_del(cl->timer);
    lk_next(cl, LK_PAUSE_REFUSED_MS);
}

cx_locks *cx_locks_new(struct event_base *base, const cx_locks_opts *o, void (*on_idle)(void *arg),
                       void *arg)
{
    char err[320];
    cm_addr *eps = NULL;
    cx_locks *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->o = *o;
    w->o.lockd = NULL; /* borrowed only here: each client copies its endpoints */
    w->on_idle = on_idle;
    w->arg = arg;
    w->hist = cm_lockhist_open(o->history, o->src, err, sizeof(err));
    if (w->hist == NULL) {
        log_error("--lock-history %s", err);
        goto fail;
    }
    w->clients = calloc(o->clients, sizeof(*w->clients));
    eps = calloc(o->n_lockd, sizeof(*eps));
    if (w->clients == NULL || eps == NULL)
        goto fail;
    for (uint32_t i = 0; i < o->clients; i++) {
        lk_client *cl = &w->clients[i];
        char name[32];
        cl->w = w;
        cl->num = i;
        cl->state = LK_PAUSE;
        cl->rng = lg_rng_seed(o->seed, 2000000 + i);
        /* spread the sessions over the lockds; each fails over to the rest */
        for (size_t k = 0; k < o->n_lockd; k++)
            eps[k] = o->lockd[(i + k) % o->n_lockd];
        snprintf(name, sizeof(name), "chaos-lock-%u", i);
        cm_lockclient_opts lo = {.endpoints = eps, .n_endpoints = o->n_lockd, .client_name = name};
        cl->lc = cm_lockclient_new(base, &lo);
        cl->timer = evtimer_new(base, lk_timer_cb, cl);
        if (cl->lc == NULL || cl->timer == NULL)
            goto fail;
        snprintf(name, sizeof(name), "c%u", i);
        if (cm_lockhist_attach(w->hist, cl->lc, name) != CM_OK)
            goto fail;
        cm_lockclient_on_lost(cl->lc, lk_lost, cl);
        lk_arm(cl, lk_pause_ms(cl)); /* the first ACQUIRE waits for the session (or retries) */
    }
    free(eps);
    return w;
fail:
    free(eps);
    cx_locks_free(w);
    return NULL;
}

void cx_locks_stop(cx_locks *w)
{
    w->stopping = true;
    for (uint32_t i = 0; i < w->o.clients; i++) {
        lk_client *cl = &w->clients[i];
        if (cl->state == LK_PAUSE) {
            evtimer_del(cl->timer);
            lk_move(cl, LK_DONE);
        } else if (cl->state == LK_HOLDING) {
            evtimer_del(cl->timer);
            lk_release(cl);
        }
    }
    lk_check_idle(w);
}

bool cx_locks_idle(const cx_locks *w)
{
    for (uint32_t i = 0; i < w->o.clients; i++)
        if (w->clients[i].state != LK_DONE)
            return false;
    return true;
}

void cx_locks_summary(const cx_locks *w, char *buf, size_t len)
{
    snprintf(buf, len,
             "lock_grants=%" PRIu64 " lock_releases=%" PRIu64 " lock_lost=%" PRIu64
             " lock_refused=%" PRIu64 " history_lines=%" PRIu64,
             w->grants, w->releases, w->lost, w->refused,
             w->hist != NULL ? cm_lockhist_lines(w->hist) : 0);
}

void cx_locks_free(cx_locks *w)
{
    if (w == NULL)
        return;
    for (uint32_t i = 0; w->clients != NULL && i < w->o.clients; i++) {
        lk_client *cl = &w->clients[i];
        if (cl->lc != NULL)
            cm_lockclient_free(cl->lc); /* records the release of a lock still held */
        if (cl->timer != NULL)
            event_free(cl->timer);
    }
    free(w->clients);
    cm_lockhist_close(w->hist); /* after the clients: they record into it until freed */
    free(w);
}
