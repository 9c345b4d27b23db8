/*
 * lk_rlmaster: each Redis master's two connections for lk_redlock (hiredis async on the
 * libevent loop): the command one, which loads the scripts and carries the rounds, and
 * the pub/sub one, which hears releases and wanted notices. Owns their connect, their
 * reconnect backoff with jitter, the health check that drops a master whose replies
 * stopped coming, a master's up/down (through lk_quarantine), the tokens left to release
 * when it comes back (lk_stale), and when start-up has settled. A context is only ever
 * freed from a timer or from lk_redlock_free, never from inside its own callbacks.
 */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_time.h"
#include "lk_quarantine.h"
#include "lk_rlcmd.h"
#include "lk_rlint.h"
#include "lk_stale.h"

/* Sends the release script for token on master m (arg), fire and forget (compare-token:
 * it deletes only where that token still holds the lock). */
static void stale_send(void *arg, const char *resource, const char *token)
{
    rl_master *m = arg;
    lk_redlock *rl = m->rl;
    char key[RL_MAX_RESOURCE + 256];
    int n = snprintf(key, sizeof key, "%slock:%s", rl->prefix, resource);
    if (n < 0 || (size_t)n >= sizeof key || m->cmd.ac == NULL) {
        return;
    }
    (void)redisAsyncCommand(m->cmd.ac, NULL, NULL, "EVALSHA %s 1 %b %b %b %s",
                            rl->sha[LK_RLCMD_RELEASE], key, (size_t)n, token, strlen(token),
                            rl->channel, rl->channel_len, resource);
}

/* Token of resource may still hold the lock on master i: released there now when the
 * master is up, else when it comes back (lk_stale; beyond its bound the TTL does it). */
void lk_rlm_stale_release(lk_redlock *rl, size_t i, const char *resource, const char *token)
{
    rl_master *m = &rl->masters[i];
    if (m->up && m->cmd.ac != NULL) {
        stale_send(m, resource, token);
    } else if (!lk_stale_add(&m->stale, resource, token)) {
        log_debug("redis master %s: stale token of %s left to its TTL", m->name, resource);
    }
}

/* m's first command connection attempt has ended: it counts (connected, scripts loaded,
 * out of a quarantine, which at start lasts only until its fences are raised), or the
 * attempt failed. Start-up is settled when every master's has, when a quorum counts, or
 * as soon as so many failed that no quorum is possible (a quarantine then waits for
 * masters that are not there, and NOQUORUM is the true answer). */
static void master_settle(rl_master *m, bool failed)
{
    lk_redlock *rl = m->rl;
    if (m->settled)
        return;
    m->settled = true;
    assert(rl->n_settled < rl->n);
    rl->n_settled++;
    rl->n_first_failed += failed;
    if (rl->start == RL_START_SETTLING && (rl->n_settled == rl->n || rl->up >= rl->quorum ||
                                           rl->n_first_failed > rl->n - rl->quorum)) {
        rl->start = RL_START_SETTLED;
        if (!rl->freeing && rl->on_settled)
            rl->on_settled(rl->cb_arg);
    }
}

void lk_rlm_set_up(rl_master *m, bool up)
{
    lk_redlock *rl = m->rl;
    if (!up)
        lk_quar_down(rl->quar, (size_t)(m - rl->masters));
    if (m->up == up) {
        return;
    }
    m->up = up;
    if (up) {
        rl->up++;
    } else {
        rl->up--;
    }
    log_info("redis master %s is %s (%zu/%zu up)", m->name, up ? "up" : "down", rl->up, rl->n);
    if (up) {
        lk_stale_drain(&m->stale, stale_send, m);
    }
    if (!rl->freeing && rl->on_masters) {
        rl->on_masters(rl->cb_arg, rl->up, rl->n);
    }
    if (up)
        master_settle(m, false);
}

void lk_rlm_quar_count(void *arg, size_t i) /* lk_quarantine lets master i count */
{
    lk_redlock *rl = arg;
    lk_rlm_set_up(&rl->masters[i], true);
}

static void conn_schedule_reconnect(rl_conn *c)
{
    lk_redlock *rl = c->m->rl;
    if (rl->freeing) {
        return;
    }
    if (!c->is_sub)
        master_settle(c->m, true); /* a failed attempt ends it too */
    /* Jitter in [delay/2, delay] keeps several lockds from reconnecting in lockstep. */
    uint32_t delay = cm_rand_range(c->backoff_ms / 2, c->backoff_ms);
    c->backoff_ms = CM_MIN(c->backoff_ms * 2, RL_BACKOFF_MAX_MS);
    struct timeval tv = cm_tv_from_ms(delay);
    event_add(c->reconnect, &tv);
}

void lk_rlm_inflight_add(rl_master *m)
{
    if (m->inflight++ == 0) {
        m->progress_us = cm_now_us();
    }
}

void lk_rlm_inflight_done(rl_master *m, bool replied)
{
    m->inflight--;
    if (replied) {
        m->progress_us = cm_now_us();
    }
}

/* hiredis callback for SCRIPT LOAD: the master is usable once all have been loaded. */
static void script_loaded_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    rl_conn *c = privdata;
    redisReply *reply = r;
    lk_rlm_inflight_done(c->m, reply != NULL);
    if (reply == NULL || c->ac != ac || c->m->rl->freeing) {
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis master %s: SCRIPT LOAD failed: %s", c->m->name, reply->str);
        c->load_failed = true;
    }
    if (--c->loads_left == 0 && !c->load_failed) {
        c->backoff_ms = RL_BACKOFF_MIN_MS;
        c->ready = true;
        lk_quar_ready(c->m->rl->quar, (size_t)(c->m - c->m->rl->masters), ac);
    }
}

/* hiredis callback for every reply on the pub/sub context. */
static void sub_message_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    rl_conn *c = privdata;
    redisReply *reply = r;
    lk_redlock *rl = c->m->rl;
    if (reply == NULL || rl->freeing || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return;
    }
    const redisReply *kind = reply->element[0];
    const redisReply *payload = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING) {
        return;
    }
    if (strcmp(kind->str, "subscribe") == 0) {
        c->backoff_ms = RL_BACKOFF_MIN_MS;
        c->ready = true;
    } else if (strcmp(kind->str, "message") == 0 && payload->type == REDIS_REPLY_STRING) {
        lk_rlcmd_notice(payload->str, rl->on_released, rl->on_wanted, rl->cb_arg);
    }
}

static void conn_connect_cb(const redisAsyncContext *ac, int status)
{
    rl_conn *c = ac->data;
    if (c->ac != ac) {
        return; /* a context we already dropped */
    }
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this callback. */
        log_debug("redis master %s: connect failed: %s", c->m->name, ac->errstr);
        c->ac = NULL;
        conn_schedule_reconnect(c);
        return;
    }
    log_debug("redis master %s: %s connection open", c->m->name, c->is_sub ? "pub/sub" : "command");
}

static void conn_disconnect_cb(const redisAsyncContext *ac, int status)
{
    rl_conn *c = ac->data;
    if (c->ac != ac) {
        return; /* dropped by us: the dropper scheduled the reconnect */
    }
    /* hiredis frees the context right after this callback. */
    if (status != REDIS_OK && !c->m->rl->freeing) {
        log_warn("redis master %s: %s connection lost: %s", c->m->name,
                 c->is_sub ? "pub/sub" : "command", ac->errstr);
    }
    c->ac = NULL;
    if (!c->is_sub) {
        lk_rlm_set_up(c->m, false);
    }
    conn_schedule_reconnect(c);
}

/* Starts a non-blocking connect and queues the first commands; hiredis sends them
 * once connected, and Redis runs them before anything queued later. */
void lk_rlm_conn_start(rl_conn *c)
{
    rl_master *m = c->m;
    lk_redlock *rl = m->rl;
    redisAsyncContext *ac = redisAsyncConnect(m->addr.host, m->addr.port);
    if (ac == NULL) {
        conn_schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        log_debug("redis master %s: connect: %s", m->name, ac->errstr);
        redisAsyncFree(ac);
        conn_schedule_reconnect(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, rl->base) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_schedule_reconnect(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, conn_connect_cb);
    redisAsyncSetDisconnectCallback(ac, conn_disconnect_cb);
    c->ac = ac;
    c->ready = false;
    c->since_us = cm_now_us();
    if (c->is_sub) {
        if (redisAsyncCommand(ac, sub_message_cb, c, "SUBSCRIBE %b", rl->channel,
                              rl->channel_len) != REDIS_OK) {
            log_warn("redis master %s: SUBSCRIBE could not be queued", m->name);
        }
        return;
    }
    lk_quar_send_probe(rl->quar, (size_t)(m - rl->masters), ac); /* answered before the loads */
    c->loads_left = LK_RLCMD_NSCRIPTS;
    c->load_failed = false;
    for (int i = 0; i < LK_RLCMD_NSCRIPTS; i++) {
        if (redisAsyncCommand(ac, script_loaded_cb, c, "SCRIPT LOAD %s", lk_rlcmd_script_text[i]) ==
            REDIS_OK) {
            lk_rlm_inflight_add(m);
        } else {
            c->load_failed = true;
        }
    }
}

void lk_rlm_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_rlm_conn_start(arg);
}

/* Drops a live context from a timer (never from inside its own callbacks): its pending
 * callbacks run now with NULL replies, then a reconnect is scheduled. */
static void conn_drop(rl_conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL) {
        return;
    }
    c->ac = NULL;
    if (!c->is_sub) {
        lk_rlm_set_up(c->m, false);
    }
    redisAsyncFree(ac);
    conn_schedule_reconnect(c);
}

/* A master that has owed replies for RL_STUCK_FACTOR rounds is stopped or cut off:
 * dropping it bounds the commands piling up in hiredis and lets it count as down. */
void lk_rlm_health_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_redlock *rl = arg;
    uint64_t now = cm_now_us();
    uint64_t limit = (uint64_t)rl->timeout_ms * RL_STUCK_FACTOR * 1000u;
    for (size_t i = 0; i < rl->n; i++) {
        rl_master *m = &rl->masters[i];
        if (m->cmd.ac != NULL && m->inflight > 0 && now - m->progress_us > limit) {
            log_warn("redis master %s: no reply for %llu ms with %llu commands pending; "
                     "reconnecting",
                     m->name, (unsigned long long)((now - m->progress_us) / 1000),
                     (unsigned long long)m->inflight);
            conn_drop(&m->cmd);
        }
        /* A command connection whose SCRIPT LOADs failed (a master still loading its
         * AOF answers -LOADING) or never completed would stay "not up" for good:
         * bound its handshake too, and try again with backoff. */
        if (m->cmd.ac != NULL && !m->cmd.ready && m->inflight == 0 &&
            now - m->cmd.since_us > limit) {
            log_warn("redis master %s: command connection not ready after %llu ms; "
                     "reconnecting",
                     m->name, (unsigned long long)((now - m->cmd.since_us) / 1000));
            conn_drop(&m->cmd);
        }
        /* A pub/sub connect that never completes (SYN into a black hole) has no
         * command to time out: bound the handshake the same way. */
        if (m->sub.ac != NULL && !m->sub.ready && now - m->sub.since_us > limit) {
            log_warn("redis master %s: pub/sub connection not ready after %llu ms; reconnecting",
                     m->name, (unsigned long long)((now - m->sub.since_us) / 1000));
            conn_drop(&m->sub);
        }
    }
}
