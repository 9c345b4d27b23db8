/*
 * cm_lockclient: the async LOCKP client (contract in cm_lockclient.h). Owns the session state
 * machine (connect -> HELLO -> AUTH -> ready), the table of tagged requests (tags are decimal
 * request ids), the list of locks granted through the current session with their local deadlines
 * (one timer each), keep-alive PINGs and liveness by bytes received (one timer), per-request
 * client-side timeouts and the endpoint failover with backoff. The types it shares with the
 * with_lock guard (cm_lockclient_guard.c) are in cm_lockclient_int.h; the blocking wrapper lives in
 * cm_lockclient_sync.c.
 * Times are CLOCK_MONOTONIC microseconds (cm_now_us).
 *
 * Re-entrancy: every libevent entry point brackets its work with lc_enter/lc_leave, and
 * every user callback runs inside such a bracket, so cm_lockclient_free called from a
 * callback only marks the client; the last lc_leave destroys it.
 */
#include "cm_lockclient.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "cm_lockclient_int.h"
#include "cm_log.h"
#include "cm_time.h"

#define LC_BACKOFF_MIN_MS       50
#define LC_DEFAULT_CONNECT_MS   1000
#define LC_DEFAULT_SLACK_MS     3000
#define LC_DEFAULT_RECONNECT_MS 2000
#define LC_DEFAULT_PING_MS      3333  /* used only if HELLO reported no session timeout */
#define LC_MIN_PING_US          20000 /* the ping interval's floor (SPEC §3b rules shorten it) */
#define LC_MIN_DEAD_MS          200   /* the client timeout's floor */
#define LC_MARGIN_MAX_US        50000 /* the deadline margin: 5% of the validity, at most this */
#define LC_FROZEN_RECHECK_US    1000  /* dead lockd, but bytes wait unread: read them first */
#define LC_BUCKETS_MIN          16
#define LC_REQ_LINE_MAX         (CM_LOCKP_RESOURCE_MAX + CM_LOCKP_TOKEN_LEN + 96)

static void lc_session_down(cm_lockclient *c, const char *why);
static void lc_send(cm_lockclient *c, lc_req *r);

/* ---------------------------------------------------------------- lifetime */

void lc_enter(cm_lockclient *c)
{
    c->depth++;
}

static void lc_destroy(cm_lockclient *c);

/* Returns false when the client was destroyed (the caller must not touch it). */
bool lc_leave(cm_lockclient *c)
{
    c->depth--;
    if (c->depth == 0 && c->free_pending) {
        lc_destroy(c);
        return false;
    }
    return true;
}

bool lc_alive(const cm_lockclient *c)
{
    return !c->free_pending;
}

/* ---------------------------------------------------------------- completing requests */

/* Removes r and runs its callback (unless internal, cancelled or the client is being
 * freed), then frees it. */
static void lc_complete(cm_lockclient *c, lc_req *r, const cm_lock_result *res)
{
    lc_table_remove(c, r);
    if (r->kind == LC_PING && r->internal)
        c->ping_outstanding = false;
    if (!r->internal && !r->cancelled && r->cb != NULL && lc_alive(c))
        r->cb(r->arg, res);
    lc_req_free(r);
}

void lc_result_init(cm_lock_result *res, cm_lock_status st, const char *code, const char *message)
{
    memset(res, 0, sizeof(*res));
    res->status = st;
    snprintf(res->code, sizeof(res->code), "%s", code != NULL ? code : "");
    res->message = message != NULL ? message : "";
    res->line = "";
}

static void lc_fail(cm_lockclient *c, lc_req *r, const char *code, const char *message)
{
    cm_lock_result res;
    lc_result_init(&res, CM_LOCK_ERROR, code, message);
    lc_complete(c, r, &res);
}

/* ---------------------------------------------------------------- grants */

lc_grant *lc_grant_find(const cm_lockclient *c, const char *resource, const char *token)
{
    for (lc_grant *g = c->grants; g != NULL; g = g->next)
        if (strcmp(g->token, token) == 0 && strcmp(g->resource, resource) == 0)
            return g;
    return NULL;
}

static void lc_grant_unlink(cm_lockclient *c, lc_grant *g)
{
    if (g->prev != NULL)
        g->prev->next = g->next;
    else
        c->grants = g->next;
    if (g->next != NULL)
        g->next->prev = g->prev;
    g->prev = g->next = NULL;
    evtimer_del(g->timer);
}

static void lc_grant_free(lc_grant *g)
{
    event_free(g->timer);
    free(g);
}

/* The holder's own stop time (opts.stop_margin_ms), at most a tenth of the validity. */
static uint64_t lc_stop_margin_us(const cm_lockclient *c, uint64_t validity_ms)
{
    return CM_MIN((uint64_t)c->stop_margin_ms * 1000, validity_ms * 100);
}

/* bound + validity, less a margin for our own wake-up latency (a loaded machine runs a
 * timer late; the lost callback must still come first): 5% of the validity, <= 50 ms;
 * less the holder's stop margin. */
static uint64_t lc_deadline_from(const cm_lockclient *c, uint64_t bound_us, uint64_t validity_ms)
{
    uint64_t v_us = validity_ms * 1000;
    return bound_us + v_us - CM_MIN(v_us / 20, (uint64_t)LC_MARGIN_MAX_US) -
           lc_stop_margin_us(c, validity_ms);
}

/* The session bound (SPEC §3; docs/protocol.md "Lost locks"): lockd ends a session that
 * sent nothing for session.timeout_ms and hands its locks to the next waiter at once. Its
 * silence timer starts at its last receipt, which comes after our last send, so no lock of
 * this session outlives the last send + the session timeout, less the same margins as a
 * validity (5% of it, at most 50 ms; the stop margin). A holder that is stopped (SIGSTOP, a
 * VM stall) right after its grant would otherwise keep a deadline of up to a whole validity
 * past the moment lockd hands its lock on. It moves with every send (a PING every third of
 * the timeout at most while a lock is held), so a live client loses nothing. */
static uint64_t lc_session_bound(const cm_lockclient *c)
{
    if (c->session_timeout_ms == 0)
        return UINT64_MAX; /* no timeout from HELLO: lockd never ends the session for silence */
    return lc_deadline_from(c, c->sess_tx_us, c->session_timeout_ms);
}

/* A send moves the session bound only while it has not passed: after a longer silence (a
 * pause) lockd may have ended the session, and a send proves nothing until lockd answers it.
 * Else a grant read just after a pause took its bound from the PING the waking loop sent. */
static void lc_session_sent(cm_lockclient *c, uint64_t now)
{
    c->sess_tx_us = now < lc_session_bound(c) ? now : c->sess_tx_us;
}

/* lockd answered a request sent at sent_us (not ERR SESSION): its silence timer restarted then. */
static void lc_session_alive(cm_lockclient *c, uint64_t sent_us)
{
    c->sess_tx_us = CM_MAX(c->sess_tx_us, sent_us);
}

/* When the lock is lost locally unless extended (SPEC §3b), never after the session bound. A
 * watchdog lease lives on while lockd answers: lockd renews every third of its lease and
 * pushes LOST before it gives one up, so a lockd seen alive at A (alive_sent_us) has renewed
 * at or after A - lease/3 and its keys last until about A + 2/3 lease; half the validity
 * leaves a sixth of it for round trips and drift. A deadline that passed before a send moved
 * the session bound stays where it was (lc_freeze_passed). */
static uint64_t lc_grant_deadline(const lc_grant *g)
{
    uint64_t d = g->base_deadline_us;
    if (g->frozen_us != 0)
        return g->frozen_us;
    if (g->lease_ms == 0)
        d = CM_MAX(d, g->c->alive_sent_us + g->validity_ms * 1000 / 2 -
                          lc_stop_margin_us(g->c, g->validity_ms));
    return CM_MIN(d, lc_session_bound(g->c));
}

/* Called before a send moves the session bound (last_tx_us): a lock whose deadline has passed
 * already must not come back to life with it (lockd may have ended the session in between;
 * its timer runs late only because our loop did not run). Only the session bound moves with
 * a send, so nothing can revive unless that bound has passed. */
static void lc_freeze_passed(cm_lockclient *c, uint64_t now)
{
    if (c->grants == NULL || now < lc_session_bound(c))
        return;
    for (lc_grant *g = c->grants; g != NULL; g = g->next)
        if (g->frozen_us == 0 && now >= lc_grant_deadline(g))
            g->frozen_us = lc_grant_deadline(g);
}

static void lc_grant_arm(lc_grant *g)
{
    uint64_t now = cm_now_us(), at = lc_grant_deadline(g);
    struct timeval tv = {0, 0};
    if (at > now) {
        tv.tv_sec = (time_t)((at - now) / 1000000);
        tv.tv_usec = (suseconds_t)((at - now) % 1000000);
    }
    evtimer_add(g->timer, &tv);
}

static void lc_grant_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Tells the lock-history hook (cm_lockclient_on_event) about g: what happened and, for a
 * grant or a deadline move, the deadline now in force. */
static void lc_event(cm_lockclient *c, lc_grant *g, cm_lock_event_kind kind, const char *reason)
{
    if (c->event_cb == NULL)
        return;
    cm_lock_event ev = {
        .kind = kind,
        .resource = g->resource,
        .token = g->token,
        .fence = g->fence,
        .t_us = cm_now_us(),
        .reason = reason != NULL ? reason : "",
        .session = g->session,
    };
    if (kind == CM_LOCK_EV_GRANT || kind == CM_LOCK_EV_RENEW)
        ev.deadline_us = g->told_deadline_us = lc_grant_deadline(g);
    else if (kind == CM_LOCK_EV_LOST)
        ev.deadline_us = lc_grant_deadline(g); /* the one in force: it may be past */
    c->event_cb(c->event_arg, &ev);
}

/* A deadline moves whenever lockd answers (a watchdog lease) and whenever we send (the
 * session bound): a history learns of it once it has moved by a quarter of the session
 * timeout or of the validity, whichever is smaller. The deadline it last recorded is never
 * later than the real one (both only move forward between lines; a RENEW reply writes its
 * line) and stays in the future while the client runs: the session bound is at least two
 * thirds of the timeout less the margin ahead (a PING every third), the watchdog's half the
 * validity less a sixth, so the record trails by at most a quarter, at one line per quarter. */
static void lc_event_deadline_moves(cm_lockclient *c)
{
    if (c->event_cb == NULL)
        return;
    for (lc_grant *g = c->grants; g != NULL; g = g->next) {
        uint64_t step_ms = g->validity_ms;
        if (c->session_timeout_ms != 0)
            step_ms = CM_MIN(step_ms, c->session_timeout_ms);
        if (g->frozen_us == 0 && lc_grant_deadline(g) >= g->told_deadline_us + step_ms * 1000 / 4)
            lc_event(c, g, CM_LOCK_EV_RENEW, NULL);
    }
}

/* A new hold or waiting ACQUIRE needs PINGs every us: wake the keep-alive timer now if
 * it sleeps on a longer interval (it recomputes the interval itself). */
static void lc_ping_shorten(cm_lockclient *c, uint64_t us)
{
    struct timeval now = {0, 0};
    if (c->state == LC_READY && CM_MAX(us, (uint64_t)LC_MIN_PING_US) < c->ping_cur_us) {
        c->ping_cur_us = CM_MAX(us, (uint64_t)LC_MIN_PING_US);
        evtimer_add(c->ping_timer, &now);
    }
}

/* Tracks a grant whose reply came after bound_us; NULL if its deadline has passed
 * already (or out of memory: then it is lost at once). */
static lc_grant *lc_grant_add(cm_lockclient *c, const char *resource, const char *token,
                              uint64_t fence, uint64_t lease_ms, uint64_t validity_ms,
                              uint64_t bound_us)
{
    lc_grant *g = calloc(1, sizeof(*g));
    if (g == NULL || (g->timer = evtimer_new(c->base, lc_grant_timer_cb, g)) == NULL) {
        log_error("lockclient: out of memory tracking a grant of %s", resource);
        free(g);
        return NULL;
    }
    snprintf(g->resource, sizeof(g->resource), "%s", resource);
    snprintf(g->token, sizeof(g->token), "%s", token);
    g->c = c;
    g->fence = fence;
    snprintf(g->session, sizeof(g->session), "%s", c->session);
    g->lease_ms = lease_ms;
    g->validity_ms = validity_ms;
    g->base_deadline_us = lc_deadline_from(c, bound_us, validity_ms);
    if (cm_now_us() >= lc_grant_deadline(g)) {
        lc_grant_free(g);
        return NULL;
    }
    g->next = c->grants;
    if (c->grants != NULL)
        c->grants->prev = g;
    c->grants = g;
    lc_grant_arm(g);
    if (lease_ms == 0)
        lc_ping_shorten(c, validity_ms * 1000 / 6);
    return g;
}

/* Tells the guard (if any) and the user that the lock is gone; frees g (already unlinked). */
static void lc_grant_lost(cm_lockclient *c, lc_grant *g, const char *reason, bool local)
{
    cm_lock_lost_info info = {g->resource, g->token, reason, local};
    lc_event(c, g, CM_LOCK_EV_LOST, reason);
    log_warn("lockclient: lock %s lost (%s%s)", g->resource, reason,
             local ? ", noticed by the client" : "");
    if (g->guard != NULL && lc_alive(c))
        lg_on_lost(g->guard);
    if (c->lost_cb != NULL && lc_alive(c))
        c->lost_cb(c->lost_arg, g->resource, g->token);
    if (c->lost_info_cb != NULL && lc_alive(c))
        c->lost_info_cb(c->lost_info_arg, &info);
    lc_grant_free(g);
}

static lc_req *lc_submit(cm_lockclient *c, lc_kind kind, const char *resource, const char *token,
                         uint64_t lease_ms, uint64_t wait_ms, cm_lock_cb cb, void *arg,
                         bool internal);

/* Gives a lock back without waiting for the answer (it is no longer ours to use). */
static void lc_release_internal(cm_lockclient *c, const char *resource, const char *token)
{
    if (c->state == LC_READY &&
        lc_submit(c, LC_RELEASE, resource, token, 0, 0, NULL, NULL, true) == NULL)
        log_warn("lockclient: could not send the RELEASE of %s", resource);
}

/* The local deadline (SPEC §3b): unless it moved (a watchdog lease whose lockd answered
 * meanwhile, a renewal), the lock is lost here, whatever lockd says. */
static void lc_grant_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lc_grant *g = arg;
    cm_lockclient *c = g->c;
    char resource[CM_LOCKP_RESOURCE_MAX + 1], token[CM_LOCKP_TOKEN_LEN + 1];
    if (cm_now_us() < lc_grant_deadline(g)) {
        lc_grant_arm(g);
        return;
    }
    lc_enter(c);
    snprintf(resource, sizeof(resource), "%s", g->resource);
    snprintf(token, sizeof(token), "%s", g->token);
    lc_grant_unlink(c, g);
    lc_grant_lost(c, g, "deadline", true);
    if (lc_alive(c) && !c->keep_lost_locks)
        lc_release_internal(c, resource, token);
    lc_leave(c);
}

/* ---------------------------------------------------------------- sending */

static void lc_send(cm_lockclient *c, lc_req *r)
{
    char buf[LC_REQ_LINE_MAX + LC_SECRET_MAX];
    char tag[24];
    size_t n = 0;

    snprintf(tag, sizeof(tag), "%llu", (unsigned long long)r->id);
    switch (r->kind) {
    case LC_HELLO:
        n = cm_lockp_format(buf, sizeof(buf), tag, "HELLO %s", c->name);
        break;
    case LC_AUTH:
        n = cm_lockp_format(buf, sizeof(buf), tag, "AUTH %s", c->auth);
        break;
    case LC_PING:
        n = cm_lockp_format(buf, sizeof(buf), tag, "PING");
        break;
    case LC_ACQUIRE:
        n = cm_lockp_format(buf, sizeof(buf), tag, "ACQUIRE %s %llu %llu", r->resource,
                            (unsigned long long)r->lease_ms, (unsigned long long)r->wait_ms);
        break;
    case LC_RENEW:
        n = cm_lockp_format(buf, sizeof(buf), tag, "RENEW %s %s %llu", r->resource, r->token,
                            (unsigned long long)r->lease_ms);
        break;
    case LC_RELEASE:
        n = cm_lockp_format(buf, sizeof(buf), tag, "RELEASE %s %s", r->resource, r->token);
        break;
    case LC_INFO:
        n = cm_lockp_format(buf, sizeof(buf), tag, "INFO");
        break;
    case LC_SHOW:
    case LC_REVOKE: /* the admin verbs of SPEC §2b: a resource and nothing else */
        n = cm_lockp_format(buf, sizeof(buf), tag, "%s %s", r->kind == LC_SHOW ? "SHOW" : "REVOKE",
                            r->resource);
        break;
    }
    if (r->kind == LC_ACQUIRE && r->lease_ms > 0 && r->wait_ms > 0)
        lc_ping_shorten(c, r->lease_ms * 1000 / 4);
    r->sent = true;
    /* before the write: lockd can only read it later, so a deadline counted from here
     * never ends after lockd's */
    r->sent_us = cm_now_us();
    lc_freeze_passed(c, r->sent_us);
    lc_session_sent(c, r->sent_us);
    c->last_tx_us = r->sent_us;
    lc_event_deadline_moves(c);
    if (n == 0 || bufferevent_write(c->bev, buf, n) != 0)
        log_warn("lockclient: could not queue request %s", tag);
}

static void lc_req_timer_cb(evutil_socket_t fd, short what, void *arg);

/* Creates a request, files it and sends it (or queues it, or fails it later). */
static lc_req *lc_submit(cm_lockclient *c, lc_kind kind, const char *resource, const char *token,
                         uint64_t lease_ms, uint64_t wait_ms, cm_lock_cb cb, void *arg,
                         bool internal)
{
    lc_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->timer = evtimer_new(c->base, lc_req_timer_cb, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }
    r->id = ++c->next_id;
    r->kind = kind;
    r->internal = internal;
    r->cb = cb;
    r->arg = arg;
    r->lease_ms = lease_ms;
    r->wait_ms = wait_ms;
    r->c = c;
    if (resource != NULL)
        snprintf(r->resource, sizeof(r->resource), "%s", resource);
    if (token != NULL)
        snprintf(r->token, sizeof(r->token), "%s", token);
    lc_table_add(c, r);

    uint64_t timeout_ms = c->slack_ms + (kind == LC_ACQUIRE ? wait_ms : 0);
    if (kind == LC_HELLO || kind == LC_AUTH) {
        /* the connect timer bounds the handshake */
    } else if (c->state == LC_BACKOFF) {
        snprintf(r->early_code, sizeof(r->early_code), "NOTCONNECTED");
        timeout_ms = 0;
    }
    if (kind != LC_HELLO && kind != LC_AUTH) {
        struct timeval tv = cm_tv_from_ms(timeout_ms);
        evtimer_add(r->timer, &tv);
    }
    if (c->state == LC_READY || ((kind == LC_HELLO || kind == LC_AUTH) && c->bev != NULL))
        lc_send(c, r);
    return r;
}

static void lc_req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lc_req *r = arg;
    cm_lockclient *c = r->c;
    lc_enter(c);
    if (r->early_code[0] != '\0') {
        lc_fail(c, r, r->early_code, "not connected to any lockd");
    } else {
        bool drop = r->sent && c->state == LC_READY;
        lc_fail(c, r, "CLIENT_TIMEOUT", "no reply from lockd in time");
        /* lockd stopped answering: its session (and any late grant) must not outlive this */
        if (drop && lc_alive(c) && c->state == LC_READY)
            lc_session_down(c, "a request timed out");
    }
    lc_leave(c);
}

/* ---------------------------------------------------------------- session */

static void lc_arm_ping_us(cm_lockclient *c, uint64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    c->tick_due_us = cm_now_us() + us;
    evtimer_add(c->ping_timer, &tv);
}

static void lc_ready(cm_lockclient *c)
{
    char addr[CM_HOST_MAX + 16];
    c->state = LC_READY;
    evtimer_del(c->conn_timer);
    c->round_fails = 0;
    c->backoff_ms = LC_BACKOFF_MIN_MS;
    c->ping_ms = c->ping_opt_ms != 0          ? c->ping_opt_ms
                 : c->session_timeout_ms >= 3 ? c->session_timeout_ms / 3
                                              : LC_DEFAULT_PING_MS;
    /* two thirds of the session timeout: lockd, which PINGs nobody, must have answered
     * the PING sent after a third of it by then */
    c->dead_ms =
        CM_MAX(c->session_timeout_ms >= 3 ? c->session_timeout_ms * 2 / 3 : LC_DEFAULT_PING_MS * 2,
               (uint64_t)LC_MIN_DEAD_MS);
    c->last_rx_us = CM_MAX(c->last_rx_us, cm_now_us());
    log_debug("lockclient: session ready on %s (ping every %llu ms, lockd dead after %llu ms "
              "of silence)",
              cm_addr_format(&c->eps[c->ep_idx].addr, addr, sizeof(addr)),
              (unsigned long long)c->ping_ms, (unsigned long long)c->dead_ms);
    for (lc_req *r = c->qhead; r != NULL; r = r->qnext)
        if (!r->sent && r->early_code[0] == '\0')
            lc_send(c, r);
    lc_arm_ping_us(c, 0);
    if (c->state_cb != NULL)
        c->state_cb(c->state_arg, true);
}

/* SPEC §3b's ping interval: a third of the session timeout (also while a lock is held when
 * opts.ping_interval_ms asks for more: every deadline is bounded by the last send + the
 * timeout); a sixth of the validity while a watchdog lease is held (its deadline moves only
 * with answers); a quarter of the lease while a fixed-lease ACQUIRE waits (the grant's
 * deadline counts from the last answer before it, which must not be long before lockd
 * granted). */
static uint64_t lc_ping_interval_us(const cm_lockclient *c)
{
    uint64_t us = c->ping_ms * 1000;
    if (c->grants != NULL && c->session_timeout_ms >= 3)
        us = CM_MIN(us, c->session_timeout_ms * 1000 / 3);
    for (const lc_grant *g = c->grants; g != NULL; g = g->next)
        if (g->lease_ms == 0)
            us = CM_MIN(us, g->validity_ms * 1000 / 6);
    for (const lc_req *r = c->qhead; r != NULL; r = r->qnext)
        if (r->kind == LC_ACQUIRE && r->sent && r->lease_ms > 0 && r->wait_ms > 0)
            us = CM_MIN(us, r->lease_ms * 1000 / 4);
    return CM_MAX(us, (uint64_t)LC_MIN_PING_US);
}

/* True when bytes from lockd wait unread in the socket: we were frozen or slow, not lockd. */
static bool lc_input_pending(const cm_lockclient *c)
{
    int n = 0;
    evutil_socket_t fd = c->bev != NULL ? bufferevent_getfd(c->bev) : -1;
    return fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Keep-alive and liveness (SPEC §3b): PING when nothing was received or sent for the
 * ping interval; a lockd that sent nothing for dead_ms is dead, even while we keep
 * sending: the session goes and every lock taken through it is lost at once. */
static void lc_ping_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cm_lockclient *c = arg;
    if (c->state != LC_READY)
        return;
    lc_enter(c);
    uint64_t now = cm_now_us(), dead_us = c->dead_ms * 1000;
    uint64_t ping_us = lc_ping_interval_us(c);
    c->ping_cur_us = ping_us;
    if (now > c->tick_due_us + dead_us / 2) {
        /* this tick is very late: our loop did not run (the blocking wrapper between
         * calls, or this process was stopped), so lockd's silence tells nothing; it gets
         * a PING and a full client timeout to answer. The locks' deadlines do not move. */
        log_debug("lockclient: keep-alive ran %llu ms late",
                  (unsigned long long)((now - c->tick_due_us) / 1000));
        c->last_rx_us = now - ping_us;
    }
    if (now - c->last_rx_us >= dead_us) {
        if (lc_input_pending(c)) {
            lc_arm_ping_us(c, LC_FROZEN_RECHECK_US);
        } else {
            char why[64];
            snprintf(why, sizeof(why), "lockd sent nothing for %llu ms",
                     (unsigned long long)((now - c->last_rx_us) / 1000));
            c->down_reason = "lockd_dead";
            lc_session_down(c, why);
        }
        lc_leave(c);
        return;
    }
    if (!c->ping_outstanding &&
        (now - c->last_rx_us >= ping_us || now - c->last_tx_us >= ping_us)) {
        c->ping_outstanding = true;
        if (lc_submit(c, LC_PING, NULL, NULL, 0, 0, NULL, NULL, true) == NULL)
            c->ping_outstanding = false;
    }
    uint64_t next = c->last_rx_us + dead_us;
    if (!c->ping_outstanding)
        next = CM_MIN(next, CM_MIN(c->last_rx_us, c->last_tx_us) + ping_us);
    /* at most half an interval: a new hold may shorten the interval meanwhile */
    lc_arm_ping_us(c, CM_MIN(next > now ? next - now : 0, ping_us / 2));
    lc_leave(c);
}

static void lc_schedule_retry(cm_lockclient *c, uint64_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    evtimer_add(c->retry_timer, &tv);
}

/*
 * The session (or the attempt to make one) is gone: pick the next endpoint, fail the
 * requests sent through it with DISCONNECTED, and report every lock granted through it
 * as lost (lockd releases a session's locks when the session ends). After a whole
 * round of failed attempts, back off and fail the queued requests with NOTCONNECTED.
 */
static void lc_session_down(cm_lockclient *c, const char *why)
{
    char addr[CM_HOST_MAX + 16];
    bool was_ready = c->state == LC_READY;
    bool backoff = false;
    lc_req *failed = NULL, **ftail = &failed;
    const char *reason = c->down_reason != NULL ? c->down_reason : "disconnected";

    c->down_reason = NULL;
    cm_addr_format(&c->eps[c->ep_idx].addr, addr, sizeof(addr));
    if (was_ready)
        log_warn("lockclient: session with lockd %s lost: %s", addr, why);
    else
        log_info("lockclient: cannot reach lockd %s: %s", addr, why);
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    evtimer_del(c->conn_timer);
    evtimer_del(c->ping_timer);
    c->ping_outstanding = false;

    if (!was_ready)
        c->round_fails++;
    c->ep_idx = (c->ep_idx + 1) % c->n_eps;
    if (c->round_fails >= c->n_eps) {
        backoff = true;
        c->round_fails = 0;
        c->state = LC_BACKOFF;
        lc_schedule_retry(c, c->backoff_ms);
        c->backoff_ms = CM_MIN(c->backoff_ms * 2, c->reconnect_max_ms);
    } else {
        c->state = LC_CONNECTING;
        lc_schedule_retry(c, 0);
    }

    /* Detach first: the callbacks below may submit new requests. */
    for (lc_req *r = c->qhead, *next; r != NULL; r = next) {
        next = r->qnext;
        if (r->sent || (backoff && r->early_code[0] == '\0')) {
            if (!r->sent)
                snprintf(r->early_code, sizeof(r->early_code), "NOTCONNECTED");
            lc_table_remove(c, r);
            *ftail = r;
            ftail = &r->qnext;
        }
    }
    lc_grant *grants = c->grants;
    c->grants = NULL;

    if ((was_ready || backoff) && c->state_cb != NULL && lc_alive(c))
        c->state_cb(c->state_arg, false);
    while (grants != NULL) {
        lc_grant *g = grants;
        grants = g->next;
        g->prev = g->next = NULL;
        evtimer_del(g->timer);
        lc_grant_lost(c, g, reason, true);
    }
    while (failed != NULL) {
        lc_req *r = failed;
        failed = r->qnext;
        cm_lock_result res;
        if (r->sent && c->expired[0] != '\0')
            lc_result_init(&res, CM_LOCK_ERROR, "SESSION", c->expired);
        else if (r->sent)
            lc_result_init(&res, CM_LOCK_ERROR, "DISCONNECTED", "the lockd session ended");
        else
            lc_result_init(&res, CM_LOCK_ERROR, "NOTCONNECTED", "not connected to any lockd");
        if (r->kind == LC_PING && r->internal)
            c->ping_outstanding = false;
        if (!r->internal && !r->cancelled && r->cb != NULL && lc_alive(c))
            r->cb(r->arg, &res);
        lc_req_free(r);
    }
}

static void lc_read_cb(struct bufferevent *bev, void *arg);
static void lc_event_cb(struct bufferevent *bev, short what, void *arg);
static void lc_connected(cm_lockclient *c);

static void lc_connect(cm_lockclient *c)
{
    lc_endpoint *ep = &c->eps[c->ep_idx];
    struct timeval tv = cm_tv_from_ms(c->connect_timeout_ms);
    int one = 1, rc;

    c->state = LC_CONNECTING;
    c->expired[0] = '\0'; /* a new session */
    c->last_rx_us = c->alive_sent_us = c->sess_tx_us = cm_now_us();
    int fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        lc_session_down(c, strerror(errno));
        return;
    }
    /* one small line per request: never let Nagle hold it back */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        lc_session_down(c, "out of memory");
        return;
    }
    bufferevent_setcb(c->bev, lc_read_cb, NULL, lc_event_cb, c);
    evtimer_add(c->conn_timer, &tv);
    c->in_connect = true;
    c->early_what = 0;
    rc = bufferevent_socket_connect(c->bev, (struct sockaddr *)&ep->sa, (int)ep->salen);
    c->in_connect = false;
    if (rc != 0 || (c->early_what != 0 && !(c->early_what & BEV_EVENT_CONNECTED)))
        lc_session_down(c, "connect failed");
    else if (c->early_what & BEV_EVENT_CONNECTED)
        lc_connected(c);
}

static void lc_retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cm_lockclient *c = arg;
    lc_enter(c);
    lc_connect(c);
    lc_leave(c);
}

static void lc_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cm_lockclient *c = arg;
    lc_enter(c);
    if (c->state == LC_CONNECTING || c->state == LC_HANDSHAKE)
        lc_session_down(c, "connect/handshake timeout");
    lc_leave(c);
}

static void lc_connected(cm_lockclient *c)
{
    c->state = LC_HANDSHAKE;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (lc_submit(c, LC_HELLO, NULL, NULL, 0, 0, NULL, NULL, true) == NULL)
        lc_session_down(c, "out of memory");
}

static void lc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    cm_lockclient *c = arg;
    if (c->in_connect) {
        /* reported from inside bufferevent_socket_connect: lc_connect handles it */
        c->early_what = what;
        return;
    }
    lc_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        lc_connected(c);
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        lc_session_down(c, (what & BEV_EVENT_EOF) ? "closed by lockd"
                           : err != 0             ? evutil_socket_error_to_string(err)
                                                  : "socket error");
    }
    lc_leave(c);
}

/* ---------------------------------------------------------------- replies */

static void lc_handle_push(cm_lockclient *c, const cm_lockp_reply *rep)
{
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
    char token[CM_LOCKP_TOKEN_LEN + 1];
    char reason[CM_LOCKP_REASON_MAX + 1];

    if (strcmp(rep->word, "LOST") == 0) {
        if (cm_lockp_parse_lost_reason(rep->rest, rep->rest_len, resource, token, reason) !=
            CM_OK) {
            log_warn("lockclient: malformed LOST push");
            return;
        }
        lc_grant *g = lc_grant_find(c, resource, token);
        if (g == NULL)
            return; /* released meanwhile */
        lc_grant_unlink(c, g);
        lc_grant_lost(c, g, reason[0] != '\0' ? reason : "lost", false);
    } else if (strcmp(rep->word, "ERR") == 0 && rep->rest_len > 8 &&
               strncmp(rep->rest, "SESSION ", 8) == 0) {
        /* lockd ended the session (silent for session.timeout_ms) and closes it next;
         * its LOSTs and ERR SESSION replies came first. End it here with that reason. */
        snprintf(c->expired, sizeof(c->expired), "session %.*s", (int)(rep->rest_len - 8),
                 rep->rest + 8);
        c->down_reason = "session";
        lc_session_down(c, c->expired);
    } else if (strcmp(rep->word, "ERR") == 0) {
        log_warn("lockclient: lockd error: %s", rep->rest);
    } else {
        log_debug("lockclient: ignoring push %s", rep->word);
    }
}

static void lc_handle_handshake(cm_lockclient *c, lc_req *r, const cm_lockp_reply *rep)
{
    bool ok = strcmp(rep->word, "OK") == 0;
    lc_kind kind = r->kind;
    if (ok && kind == LC_HELLO) {
        const char *sp = memchr(rep->rest, ' ', rep->rest_len);
        uint64_t t = 0;
        if (sp == NULL ||
            cm_lockp_parse_u64(sp + 1, rep->rest_len - (size_t)(sp + 1 - rep->rest), &t) != CM_OK) {
            lc_complete(c, r, NULL);
            lc_session_down(c, "malformed HELLO reply");
            return;
        }
        c->session_timeout_ms = t;
        snprintf(c->session, sizeof(c->session), "%.*s",
                 (int)CM_MIN((size_t)(sp - rep->rest), sizeof(c->session) - 1), rep->rest);
    }
    lc_complete(c, r, NULL);
    if (!ok) {
        log_error("lockclient: lockd refused %s: %s", kind == LC_HELLO ? "HELLO" : "AUTH",
                  rep->rest);
        lc_session_down(c, "handshake refused");
    } else if (kind == LC_HELLO && c->auth[0] != '\0') {
        if (lc_submit(c, LC_AUTH, NULL, NULL, 0, 0, NULL, NULL, true) == NULL)
            lc_session_down(c, "out of memory");
    } else {
        lc_ready(c);
    }
}

/* An ACQUIRE was granted (its reply written after bound): track the lock with its local
 * deadline, or give it back at once when nobody wants it or the deadline has passed
 * already (a grant that came too late is answered TIMEOUT). */
static void lc_granted(cm_lockclient *c, lc_req *r, cm_lock_result *res, uint64_t bound)
{
    if (r->cancelled || r->internal) {
        lc_release_internal(c, r->resource, res->token); /* nobody wants it any more */
        return;
    }
    lc_grant *g =
        lc_grant_add(c, r->resource, res->token, res->fence, r->lease_ms, res->validity_ms, bound);
    if (g != NULL) {
        lc_event(c, g, CM_LOCK_EV_GRANT, NULL);
        return;
    }
    log_warn("lockclient: grant of %s came after its local deadline (validity %llu ms)",
             r->resource, (unsigned long long)res->validity_ms);
    lc_release_internal(c, r->resource, res->token);
    lc_result_init(res, CM_LOCK_TIMEOUT, "", "granted after its validity ran out");
}

/* A RENEW came back: OK moves the local deadline to bound + the new validity; LOST (or an
 * OK for a lock lost locally while the RENEW flew) means the lock is gone. */
static void lc_renewed(cm_lockclient *c, lc_req *r, cm_lock_result *res, uint64_t bound)
{
    lc_grant *g = lc_grant_find(c, r->resource, r->token);
    if (res->status == CM_LOCK_OK && g == NULL) {
        lc_result_init(res, CM_LOCK_LOST, "", "the lock was lost before the renewal came back");
    } else if (res->status == CM_LOCK_OK) {
        g->validity_ms = res->validity_ms;
        g->base_deadline_us = lc_deadline_from(c, bound, res->validity_ms);
        if (r->lease_ms > 0)
            g->lease_ms = r->lease_ms;
        lc_grant_arm(g);
        lc_event(c, g, CM_LOCK_EV_RENEW, NULL);
    } else if (res->status == CM_LOCK_LOST && g != NULL) {
        lc_grant_unlink(c, g);
        lc_grant_lost(c, g, "lost", false);
    }
}

static void lc_handle_line(cm_lockclient *c, char *line, size_t len)
{
    cm_lockp_reply rep;
    cm_lock_result res;
    uint64_t id;

    if (cm_lockp_parse_reply(line, len, &rep) != CM_OK) {
        log_warn("lockclient: malformed line from lockd");
        return;
    }
    if (rep.is_push) {
        lc_handle_push(c, &rep);
        return;
    }
    lc_req *r = NULL;
    if (cm_lockp_parse_u64(rep.tag, strlen(rep.tag), &id) == CM_OK)
        r = lc_table_find(c, id);
    if (r == NULL || !r->sent) {
        log_debug("lockclient: reply to unknown tag %s", rep.tag);
        return;
    }
    /* lockd writes replies in order: this one was written after r was sent, and after
     * every request answered before it was sent */
    uint64_t bound = CM_MAX(r->sent_us, c->alive_sent_us);
    c->alive_sent_us = bound;
    if (!(strcmp(rep.word, "ERR") == 0 && strncmp(rep.rest, "SESSION", 7) == 0))
        lc_session_alive(c, r->sent_us);
    lc_event_deadline_moves(c);
    if (r->kind == LC_HELLO || r->kind == LC_AUTH) {
        lc_handle_handshake(c, r, &rep);
        return;
    }

    lc_result_init(&res, CM_LOCK_ERROR, "BADREPLY", "malformed reply from lockd");
    if (strcmp(rep.word, "OK") == 0) {
        res.status = CM_LOCK_OK;
        res.code[0] = '\0';
        res.message = "";
        if (r->kind == LC_ACQUIRE) {
            if (cm_lockp_parse_grant(rep.rest, rep.rest_len, res.token, &res.fence,
                                     &res.validity_ms) != CM_OK)
                lc_result_init(&res, CM_LOCK_ERROR, "BADREPLY", "malformed grant from lockd");
        } else if (r->kind == LC_RENEW) {
            if (cm_lockp_parse_u64(rep.rest, rep.rest_len, &res.validity_ms) != CM_OK)
                lc_result_init(&res, CM_LOCK_ERROR, "BADREPLY", "malformed RENEW reply");
        } else if (r->kind == LC_REVOKE) {
            res.line = rep.rest;
            if (!(rep.rest_len == 1 && rep.rest[0] == '-') &&
                cm_lockp_parse_u64(rep.rest, rep.rest_len, &res.fence) != CM_OK)
                lc_result_init(&res, CM_LOCK_ERROR, "BADREPLY", "malformed REVOKE reply");
        } else {
            res.line = rep.rest;
        }
    } else if (strcmp(rep.word, "TIMEOUT") == 0) {
        lc_result_init(&res, CM_LOCK_TIMEOUT, "", "lock wait timed out");
    } else if (strcmp(rep.word, "LOST") == 0) {
        lc_result_init(&res, CM_LOCK_LOST, "", "the lock is not held by this session");
    } else if (strcmp(rep.word, "ERR") == 0) {
        const char *sp = memchr(rep.rest, ' ', rep.rest_len);
        size_t clen = sp != NULL ? (size_t)(sp - rep.rest) : rep.rest_len;
        res.status = CM_LOCK_ERROR;
        snprintf(res.code, sizeof(res.code), "%.*s", (int)CM_MIN(clen, sizeof(res.code) - 1),
                 rep.rest);
        res.message = sp != NULL ? sp + 1 : "";
    }

    if (r->kind == LC_ACQUIRE && res.status == CM_LOCK_OK)
        lc_granted(c, r, &res, bound);
    else if (r->kind == LC_RENEW)
        lc_renewed(c, r, &res, bound);
    lc_complete(c, r, &res);
}

static void lc_read_cb(struct bufferevent *bev, void *arg)
{
    cm_lockclient *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t eol_len = 0;

    lc_enter(c);
    c->last_rx_us = cm_now_us(); /* liveness is judged by bytes received (SPEC §3b) */
    while (lc_alive(c) && c->bev == bev) {
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > CM_LOCKP_MAX_LINE + 1)
                lc_session_down(c, "line too long from lockd");
            break;
        }
        if ((size_t)eol.pos > CM_LOCKP_MAX_LINE + 1) {
            lc_session_down(c, "line too long from lockd");
            break;
        }
        size_t len = (size_t)eol.pos;
        if (evbuffer_remove(in, c->line, len) != (int)len)
            break;
        evbuffer_drain(in, eol_len);
        if (len > 0 && c->line[len - 1] == '\r')
            len--;
        c->line[len] = '\0';
        lc_handle_line(c, c->line, len);
    }
    lc_leave(c);
}

/* ---------------------------------------------------------------- public API */

static bool lc_valid_word(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static cm_rc lc_resolve(lc_endpoint *ep)
{
    struct addrinfo hints, *ai = NULL;
    char port[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", ep->addr.port);
    int rc = getaddrinfo(ep->addr.host, port, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        log_error("lockclient: cannot resolve %s: %s", ep->addr.host, gai_strerror(rc));
        return CM_ERR;
    }
    memcpy(&ep->sa, ai->ai_addr, ai->ai_addrlen);
    ep->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return CM_OK;
}

cm_lockclient *cm_lockclient_new(struct event_base *base, const cm_lockclient_opts *opts)
{
    cm_lockclient *c = NULL;
    struct sigaction sa;

    if (base == NULL || opts == NULL || opts->endpoints == NULL || opts->n_endpoints == 0)
        return NULL;
    if (opts->client_name != NULL && !lc_valid_word(opts->client_name, LC_NAME_MAX))
        return NULL;
    if (opts->auth != NULL && opts->auth[0] != '\0' && !lc_valid_word(opts->auth, LC_SECRET_MAX))
        return NULL;
    /* A write to a socket lockd closed must be an error we handle, not a dead process. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->base = base;
    c->n_eps = opts->n_endpoints;
    c->eps = calloc(c->n_eps, sizeof(*c->eps));
    if (c->eps == NULL)
        goto fail;
    for (size_t i = 0; i < c->n_eps; i++) {
        c->eps[i].addr = opts->endpoints[i];
        if (lc_resolve(&c->eps[i]) != CM_OK)
            goto fail;
    }
    snprintf(c->name, sizeof(c->name), "%s", opts->client_name ? opts->client_name : "client");
    snprintf(c->auth, sizeof(c->auth), "%s", opts->auth ? opts->auth : "");
    c->connect_timeout_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : LC_DEFAULT_CONNECT_MS;
    c->slack_ms = opts->request_slack_ms ? opts->request_slack_ms : LC_DEFAULT_SLACK_MS;
    c->ping_opt_ms = opts->ping_interval_ms;
    c->stop_margin_ms = opts->stop_margin_ms;
    c->keep_lost_locks = opts->keep_lost_locks;
    c->reconnect_max_ms = opts->reconnect_max_ms ? opts->reconnect_max_ms : LC_DEFAULT_RECONNECT_MS;
    c->reconnect_max_ms = CM_MAX(c->reconnect_max_ms, LC_BACKOFF_MIN_MS);
    c->backoff_ms = LC_BACKOFF_MIN_MS;
    c->nbuckets = LC_BUCKETS_MIN;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->retry_timer = evtimer_new(base, lc_retry_timer_cb, c);
    c->conn_timer = evtimer_new(base, lc_conn_timer_cb, c);
    c->ping_timer = evtimer_new(base, lc_ping_timer_cb, c);
    if (c->buckets == NULL || c->retry_timer == NULL || c->conn_timer == NULL ||
        c->ping_timer == NULL)
        goto fail;
    lc_enter(c);
    lc_connect(c);
    lc_leave(c);
    return c;
fail:
    if (c != NULL)
        lc_destroy(c);
    return NULL;
}

static void lc_destroy(cm_lockclient *c)
{
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    while (c->qhead != NULL) {
        lc_req *r = c->qhead;
        lc_table_remove(c, r);
        lc_req_free(r);
    }
    while (c->grants != NULL) {
        lc_grant *g = c->grants;
        lc_event(c, g, CM_LOCK_EV_RELEASE, NULL); /* the session closes: lockd releases it */
        lc_grant_unlink(c, g);
        lc_grant_free(g);
    }
    while (c->guards != NULL) {
        cm_lock_guard *g = c->guards;
        c->guards = g->next;
        free(g);
    }
    if (c->retry_timer != NULL)
        event_free(c->retry_timer);
    if (c->conn_timer != NULL)
        event_free(c->conn_timer);
    if (c->ping_timer != NULL)
        event_free(c->ping_timer);
    free(c->buckets);
    free(c->eps);
    free(c);
}

void cm_lockclient_free(cm_lockclient *c)
{
    if (c == NULL)
        return;
    if (c->depth > 0) {
        c->free_pending = true;
        return;
    }
    lc_destroy(c);
}

void cm_lockclient_on_lost(cm_lockclient *c, cm_lock_lost_cb cb, void *arg)
{
    c->lost_cb = cb;
    c->lost_arg = arg;
}

void cm_lockclient_on_lost_info(cm_lockclient *c, cm_lock_lost_info_cb cb, void *arg)
{
    c->lost_info_cb = cb;
    c->lost_info_arg = arg;
}

void cm_lockclient_on_state(cm_lockclient *c, cm_lock_state_cb cb, void *arg)
{
    c->state_cb = cb;
    c->state_arg = arg;
}

void cm_lockclient_on_event(cm_lockclient *c, cm_lock_event_cb cb, void *arg)
{
    c->event_cb = cb;
    c->event_arg = arg;
}

bool cm_lockclient_connected(const cm_lockclient *c)
{
    return c != NULL && c->state == LC_READY;
}

int cm_lockclient_fd(const cm_lockclient *c)
{
    return c != NULL && c->bev != NULL ? (int)bufferevent_getfd(c->bev) : -1;
}

static cm_rc lc_public_submit(cm_lockclient *c, lc_kind kind, const char *resource,
                              const char *token, uint64_t lease_ms, uint64_t wait_ms, cm_lock_cb cb,
                              void *arg, uint64_t *req_id)
{
    if (c == NULL || !lc_alive(c))
        return CM_ERR;
    if (resource != NULL && !cm_lockp_valid_resource(resource, strlen(resource)))
        return CM_ERR;
    if (token != NULL && !cm_lockp_valid_token(token, strlen(token)))
        return CM_ERR;
    lc_req *r = lc_submit(c, kind, resource, token, lease_ms, wait_ms, cb, arg, false);
    if (r == NULL)
        return CM_ERR;
    if (req_id != NULL)
        *req_id = r->id;
    return CM_OK;
}

cm_rc cm_lockclient_acquire(cm_lockclient *c, const char *resource, uint64_t lease_ms,
                            uint64_t wait_ms, cm_lock_cb cb, void *arg, uint64_t *req_id)
{
    if (resource == NULL)
        return CM_ERR;
    return lc_public_submit(c, LC_ACQUIRE, resource, NULL, lease_ms, wait_ms, cb, arg, req_id);
}

cm_rc cm_lockclient_renew(cm_lockclient *c, const char *resource, const char *token,
                          uint64_t lease_ms, cm_lock_cb cb, void *arg)
{
    if (resource == NULL || token == NULL)
        return CM_ERR;
    return lc_public_submit(c, LC_RENEW, resource, token, lease_ms, 0, cb, arg, NULL);
}

cm_rc cm_lockclient_release(cm_lockclient *c, const char *resource, const char *token,
                            cm_lock_cb cb, void *arg)
{
    if (resource == NULL || token == NULL)
        return CM_ERR;
    cm_rc rc = lc_public_submit(c, LC_RELEASE, resource, token, 0, 0, cb, arg, NULL);
    /* the caller gave the lock up: a later loss is no news to report */
    lc_grant *g = rc == CM_OK ? lc_grant_find(c, resource, token) : NULL;
    if (g != NULL) {
        lc_event(c, g, CM_LOCK_EV_RELEASE, NULL);
        lc_grant_unlink(c, g);
        lc_grant_free(g);
    }
    return rc;
}

cm_rc cm_lockclient_ping(cm_lockclient *c, cm_lock_cb cb, void *arg)
{
    return lc_public_submit(c, LC_PING, NULL, NULL, 0, 0, cb, arg, NULL);
}

cm_rc cm_lockclient_info(cm_lockclient *c, cm_lock_cb cb, void *arg)
{
    return lc_public_submit(c, LC_INFO, NULL, NULL, 0, 0, cb, arg, NULL);
}

cm_rc cm_lockclient_show(cm_lockclient *c, const char *resource, cm_lock_cb cb, void *arg)
{
    if (resource == NULL)
        return CM_ERR;
    return lc_public_submit(c, LC_SHOW, resource, NULL, 0, 0, cb, arg, NULL);
}

cm_rc cm_lockclient_revoke(cm_lockclient *c, const char *resource, cm_lock_cb cb, void *arg)
{
    if (resource == NULL)
        return CM_ERR;
    return lc_public_submit(c, LC_REVOKE, resource, NULL, 0, 0, cb, arg, NULL);
}

void cm_lockclient_cancel(cm_lockclient *c, uint64_t req_id)
{
    if (c == NULL)
        return;
    lc_req *r = lc_table_find(c, req_id);
    if (r == NULL || r->internal)
        return;
    if (r->sent) {
        r->cancelled = true; /* the reply still has to be read (and a grant given back) */
        return;
    }
    lc_table_remove(c, r);
    lc_req_free(r);
}
