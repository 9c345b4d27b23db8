/*
 * lk_ops: the real operations table (see lk_ops.h): each entry forwards to lk_redlock or
 * to libevent. A timer is one heap block holding its libevent event; timer_free
 * releases it.
 */
#include "lk_ops.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <time.h>

#include "cm_time.h"
#include "lk_rlquery.h"

struct lk_timer {
    struct event ev;
    lk_timer_fn fn;
    void *arg;
};

static lk_round *rl_acquire(void *ctx, const char *resource, const char *token,
                            const char *prev_token, const char *holder, uint64_t lease_ms,
                            lk_rl_cb cb, void *arg)
{
    lk_ops_env *env = ctx;
    return (lk_round *)lk_redlock_acquire_as(env->rl, resource, token, prev_token, holder, lease_ms,
                                             cb, arg);
}

static lk_qround *rl_show(void *ctx, const char *resource, lk_rlq_cb cb, void *arg)
{
    lk_ops_env *env = ctx;
    return (lk_qround *)lk_rlq_show(env->rl, resource, cb, arg);
}

static lk_qround *rl_revoke(void *ctx, const char *resource, lk_rlq_cb cb, void *arg)
{
    lk_ops_env *env = ctx;
    return (lk_qround *)lk_rlq_revoke(env->rl, resource, cb, arg);
}

static void rl_query_cancel(void *ctx, lk_qround *q)
{
    (void)ctx;
    lk_rlq_cancel((lk_rlq *)q);
}

static lk_round *rl_renew(void *ctx, const char *resource, const char *token, uint64_t lease_ms,
                          lk_rl_cb cb, void *arg)
{
    lk_ops_env *env = ctx;
    return (lk_round *)lk_redlock_renew(env->rl, resource, token, lease_ms, cb, arg);
}

static void rl_release(void *ctx, const char *resource, const char *token)
{
    lk_ops_env *env = ctx;
    (void)lk_redlock_release(env->rl, resource, token, NULL, NULL);
}

static void rl_cancel(void *ctx, lk_round *round)
{
    (void)ctx;
    lk_redlock_cancel((lk_rl_op *)round);
}

static void rl_publish_wanted(void *ctx, const char *resource, uint64_t oldest_ms, const char *from,
                              uint64_t seq)
{
    lk_ops_env *env = ctx;
    lk_redlock_publish_wanted(env->rl, resource, oldest_ms, from, seq);
}

static bool rl_has_quorum(void *ctx)
{
    lk_ops_env *env = ctx;
    return lk_redlock_has_quorum(env->rl);
}

static size_t rl_quorum(void *ctx)
{
    lk_ops_env *env = ctx;
    return lk_redlock_quorum(env->rl);
}

static uint64_t ev_now_us(void *ctx)
{
    (void)ctx;
    return cm_now_us();
}

static uint64_t wall_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ev_timer_fire(evutil_socket_t fd, short what, void *arg)
{
    lk_timer *t = arg;
    (void)fd;
    (void)what;
    t->fn(t->arg);
}

static lk_timer *ev_timer_new(void *ctx, lk_timer_fn fn, void *arg)
{
    lk_ops_env *env = ctx;
    lk_timer *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    evtimer_assign(&t->ev, env->base, ev_timer_fire, t);
    return t;
}

static void ev_timer_arm(lk_timer *t, uint64_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    evtimer_add(&t->ev, &tv);
}

static void ev_timer_stop(lk_timer *t)
{
    event_del(&t->ev);
}

static void ev_timer_free(lk_timer *t)
{
    if (!t)
        return;
    event_del(&t->ev);
    free(t);
}

const lk_ops lk_ops_redlock = {
    .acquire = rl_acquire,
    .renew = rl_renew,
    .release = rl_release,
    .cancel = rl_cancel,
    .show = rl_show,
    .revoke = rl_revoke,
    .query_cancel = rl_query_cancel,
    .publish_wanted = rl_publish_wanted,
    .has_quorum = rl_has_quorum,
    .quorum = rl_quorum,
    .now_us = ev_now_us,
    .wall_ms = wall_ms,
    .timer_new = ev_timer_new,
    .timer_arm = ev_timer_arm,
    .timer_stop = ev_timer_stop,
    .timer_free = ev_timer_free,
};
