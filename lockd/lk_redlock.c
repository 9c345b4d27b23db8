/*
 * lk_redlock: Redlock over N Redis masters (see lk_redlock.h for the contract).
 *
 * Owns, per master, one command context and one pub/sub context (hiredis async on
 * the libevent loop), their reconnect timers and the health check that drops a
 * master whose replies stopped coming; owns every round (lk_rl_op) until its last
 * hiredis callback has run.
 *
 * The scripts and the commands that carry them are lk_rlcmd's.
 *
 * Batching: a round does not send its own command. op_send puts the round's slot for
 * a master on that master's pend list and makes the flush event active; the flush
 * runs after the other callbacks of the loop pass and sends each master's list as
 * ONE call of the batch script (at most RL_BATCH_MAX entries each), whose reply
 * carries every entry's own answer; a list of one goes as that round's own script. So N rounds that
 * start in one pass cost each master one EVALSHA, not N, and a lone round waits for nothing but the
 * end of the pass. A round still decides on its own: per master, per phase, with its own timer; a
 * batch that comes back late is late for every round it carries.
 *
 * Lifetimes: every batch call (rl_batch) holds pointers to slots embedded in their
 * ops, and each op holds one reference per slot queued on a pend list or carried by
 * a batch whose callback has not run, plus one while the round is open. hiredis runs
 * every pending callback exactly once (with a NULL reply on disconnect or free), so
 * the op is freed only after the last of them. A master
 * context is only ever freed from a timer or from lk_redlock_free, never from inside
 * one of its own callbacks.
 */
#include "lk_redlock.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "cm_sha1.h"
#include "cm_time.h"
#include "lk_quarantine.h"
#include "lk_rlcmd.h"
#include "lk_stale.h"

#define RL_BACKOFF_MIN_MS 50
#define RL_BACKOFF_MAX_MS 1000
#define RL_STUCK_FACTOR   3 /* × redis_timeout_ms without a reply: drop the context */
#define RL_MAX_RESOURCE   256
#define RL_MAX_TOKEN      128
#define RL_MAX_HOLDER     160 /* "<name> <lockd-id>" of the owner key */
#define RL_FENCE_DIGITS   24
#define RL_BATCH_MAX      128 /* rounds per script call: bounds one call's time in Redis */

/* ---- types ---- */

typedef enum rl_kind { OP_ACQUIRE, OP_RENEW, OP_RELEASE } rl_kind;

/* Where a round is in its life; op_set_state moves it and asserts the move. */
typedef enum rl_op_state {
    OPS_NEW,      /* made by op_new, about to be queued or launched */
    OPS_QUEUED,   /* waiting in rl->admit for room under max_inflight: nothing sent yet */
    OPS_SENT,     /* launched: commands out, round timer armed, counted in rl->inflight */
    OPS_NOQUORUM, /* launched with fewer than a quorum of masters up: nothing was sent, the
                     NOQUORUM outcome is deferred to the loop (counted in rl->inflight) */
    OPS_DONE,     /* outcome decided and callback run (or a cancelled round dropped from
                     the queue); only late hiredis replies still hold references */
} rl_op_state;

typedef enum rl_phase {
    PH_MAIN = 0,  /* the lock/renew/release script */
    PH_FENCE = 1, /* acquire only: fence write-back */
} rl_phase;

/* Start-up: settling until the masters' first connection attempts have told whether a
 * quorum can be reached (master_settle). */
typedef enum rl_start_state { RL_START_SETTLING, RL_START_SETTLED } rl_start_state;

typedef enum rl_slot_state {
    SL_IDLE,    /* nothing sent to this master in this phase */
    SL_WAIT,    /* sent, no reply yet */
    SL_YES,     /* granted / renewed / answered / fence acked */
    SL_NO,      /* a definite no: another token holds it (acquire), not ours (renew) */
    SL_UNKNOWN, /* NULL reply or error: the command may or may not have run */
} rl_slot_state;

typedef struct rl_slot {
    lk_rl_op *op;
    uint32_t idx;   /* master index */
    uint8_t phase;  /* rl_phase this command belongs to; replies of a past phase are late */
    uint8_t state;  /* rl_slot_state */
    uint64_t value; /* acquire: fence when YES, PTTL when NO */
} rl_slot;

typedef struct rl_conn {
    struct rl_master *m;
    redisAsyncContext *ac; /* NULL while disconnected; hiredis frees it, we only drop */
    bool is_sub;
    bool ready;              /* subscribed (pub/sub) or scripts loaded (command) */
    uint64_t since_us;       /* when the current context was started */
    unsigned loads_left;     /* command context: SCRIPT LOAD replies still due */
    bool load_failed;        /* a SCRIPT LOAD came back with an error */
    uint32_t backoff_ms;     /* next reconnect delay (before jitter) */
    struct event *reconnect; /* one-shot backoff timer */
} rl_conn;

typedef struct rl_master {
    lk_redlock *rl;
    cm_addr addr;
    char name[CM_HOST_MAX + 16];
    bool up;              /* command context connected and scripts loaded */
    bool settled;         /* its first command connection attempt has ended, either way */
    rl_conn cmd;          /* scripts */
    rl_conn sub;          /* SUBSCRIBE <prefix>released */
    uint64_t inflight;    /* commands queued on cmd without a callback yet */
    uint64_t progress_us; /* last reply on cmd, or when inflight went 0 -> 1 */
    rl_slot **pend;       /* slots waiting for this pass's batch call (each holds an op ref) */
    size_t n_pend, cap_pend;
    lk_stale stale; /* our tokens a handoff could not replace here: released when
                       the master is up again */
} rl_master;

/* One batch script call on one master: the slots it carries, in ARGV order. It holds
 * one reference on each slot's op and is freed by its hiredis callback, which runs
 * exactly once. */
typedef struct rl_batch {
    lk_redlock *rl;
    uint32_t idx;      /* master index */
    bool eval_retried; /* NOSCRIPT already made us resend it as EVAL */
    uint64_t sent_us;  /* for the per-master round-trip histogram */
    size_t n;
    rl_slot *slots[]; /* n */
} rl_batch;

struct lk_rl_op {
    lk_redlock *rl;
    TAILQ_ENTRY(lk_rl_op) link; /* rl->ops while the round is open */
    lk_rl_cb cb;
    void *arg;
    struct event timer; /* round timer; also made active for a deferred outcome */
    rl_kind kind;
    rl_phase phase;
    rl_op_state state;
    bool cancelled;              /* cb must not run */
    bool best_effort;            /* launch even without a quorum of masters up (internal unlocks) */
    bool handoff_granted;        /* a granted takeover from prev: masters that did not answer
                                    yes may still hold prev (see op_clean) */
    TAILQ_ENTRY(lk_rl_op) qlink; /* rl->admit while queued */
    uint32_t refs;               /* 1 until DONE + 1 per command whose callback has not run */
    uint32_t yes;      /* slots of the current phase in SL_YES (plus pre-acked for PH_FENCE) */
    uint32_t wait;     /* slots of the current phase in SL_WAIT */
    uint32_t no;       /* slots of the current phase in SL_NO */
    uint32_t revoked;  /* renew: of those, masters holding a REVOKE's tombstone of token */
    uint64_t start_us; /* round start, for validity */
    uint64_t lease_ms;
    uint64_t fence; /* acquire: largest fence among granting masters */
    char fence_txt[RL_FENCE_DIGITS];
    const char *resource;
    const char *token;
    const char *prev; /* "" when none */
    const char *lock_key;
    const char *fence_key;
    const char *owner_key; /* acquire: <prefix>owner:<resource>, for SHOW */
    const char *holder;    /* acquire: "<name> <lockd-id>" for the owner key, or "" */
    size_t resource_len, token_len, prev_len, lock_key_len, fence_key_len, owner_key_len,
        holder_len;
    rl_slot *slots; /* 2 × n_masters: PH_MAIN then PH_FENCE */
    /* slots and the strings follow in the same allocation */
};

TAILQ_HEAD(rl_op_list, lk_rl_op);

struct lk_redlock {
    struct event_base *base;
    rl_master *masters;
    size_t n;
    size_t quorum;
    size_t up;
    char *prefix;
    size_t prefix_len;
    char *channel; /* <prefix>released */
    size_t channel_len;
    uint32_t timeout_ms;
    double drift;
    lk_rl_released_cb on_released;
    lk_rl_released_cb on_wanted;
    lk_rl_masters_cb on_masters;
    void (*on_settled)(void *arg);
    size_t n_settled;      /* masters whose first attempt has ended */
    size_t n_first_failed; /* of those, the ones whose first attempt failed */
    rl_start_state start;
    void *cb_arg;
    char sha[LK_RLCMD_NSCRIPTS][41];
    const struct timeval *round_tv; /* libevent common timeout: O(1) add/del */
    struct event *health;
    struct rl_op_list ops; /* open rounds, queued ones included */
    size_t pending;
    /* Batching: rounds (and fence write-backs) started in one loop pass wait in each
     * master's pend list; this event, made active by the first of them, sends each
     * master's list as one script call after the pass's other callbacks. */
    struct event *flush;
    bool flush_armed;
    /* Admission: at most max_inflight rounds are sent and open at once, the rest wait
     * in admit (FIFO), so an overload queues here instead of past redis_timeout_ms in
     * the masters, where every round would time out, unlock, and be tried again. */
    uint32_t max_inflight; /* 0: no limit */
    size_t inflight;
    struct rl_op_list admit;
    size_t queued;
    bool freeing; /* lk_redlock_free is running: callbacks only drop references */
    lk_rl_stats stats;
    lk_quar *quar; /* which masters may count (lk_quarantine): they become up through it */
};

/* ---- masters ---- */

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
static void stale_release(lk_redlock *rl, size_t i, const char *resource, const char *token)
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

static void master_set_up(rl_master *m, bool up)
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

static void quar_count(void *arg, size_t i) /* lk_quarantine lets master i count */
{
    lk_redlock *rl = arg;
    master_set_up(&rl->masters[i], true);
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

static void cmd_inflight_add(rl_master *m)
{
    if (m->inflight++ == 0) {
        m->progress_us = cm_now_us();
    }
}

static void cmd_inflight_done(rl_master *m, bool replied)
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
    cmd_inflight_done(c->m, reply != NULL);
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
        master_set_up(c->m, false);
    }
    conn_schedule_reconnect(c);
}

/* Starts a non-blocking connect and queues the first commands; hiredis sends them
 * once connected, and Redis runs them before anything queued later. */
static void conn_start(rl_conn *c)
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
            cmd_inflight_add(m);
        } else {
            c->load_failed = true;
        }
    }
}

static void conn_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_start(arg);
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
        master_set_up(c->m, false);
    }
    redisAsyncFree(ac);
    conn_schedule_reconnect(c);
}

/* A master that has owed replies for RL_STUCK_FACTOR rounds is stopped or cut off:
 * dropping it bounds the commands piling up in hiredis and lets it count as down. */
static void health_cb(evutil_socket_t fd, short what, void *arg)
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

/* ---- rounds ---- */

/* A round's last reply is in: a token of ours that should be gone may sit on some master
 * until its TTL, and every waiter with it (issue 12 item 6): release it there now, or when
 * the master is back. After a granted handoff, the previous holder's token wherever the
 * takeover got neither yes nor no; after a release that went out (also the unlock of a
 * failed acquire), the token wherever the delete got no answer: the master was down when
 * it was sent (a health check had just dropped a slow one) or its connection dropped. */
static void op_clean(const lk_rl_op *op)
{
    lk_redlock *rl = op->rl;
    bool sent = false;
    for (size_t i = 0; i < rl->n; i++)
        sent |= op->slots[i].state != SL_IDLE;
    if (!op->handoff_granted && !(op->kind == OP_RELEASE && sent))
        return;
    for (size_t i = 0; i < rl->n; i++) {
        uint8_t st = op->slots[i].state;
        if (st != SL_YES && st != SL_NO)
            stale_release(rl, i, op->resource, op->handoff_granted ? op->prev : op->token);
    }
}

static void op_unref(lk_rl_op *op)
{
    if (--op->refs == 0) {
        if (!op->rl->freeing) {
            op_clean(op);
        }
        free(op);
    }
}

static const char *const op_state_name[] = {"new", "queued", "sent", "noquorum", "done"};
static const char *const op_kind_name[] = {"acquire", "renew", "release"};

/* The one place a round changes state: asserts that the move is legal. */
static void op_set_state(lk_rl_op *op, rl_op_state to)
{
    rl_op_state from = op->state;
    bool legal = false;
    switch (from) {
    case OPS_NEW:
        legal = to == OPS_QUEUED || to == OPS_SENT || to == OPS_NOQUORUM;
        break;
    case OPS_QUEUED:
        legal = to == OPS_SENT || to == OPS_NOQUORUM || to == OPS_DONE;
        break;
    case OPS_SENT:
    case OPS_NOQUORUM:
        legal = to == OPS_DONE;
        break;
    case OPS_DONE:
        break;
    }
    assert(legal && "illegal Redlock round state change");
    (void)legal;
    op->state = to;
    log_debug("redlock %s %s: %s -> %s", op_kind_name[op->kind], op->resource, op_state_name[from],
              op_state_name[to]);
}

/* Launched rounds count against max_inflight until they are done. */
static bool op_launched(const lk_rl_op *op)
{
    return op->state == OPS_SENT || op->state == OPS_NOQUORUM;
}

static void op_release_token(lk_redlock *rl, const lk_rl_op *op);
static void rl_admit(lk_redlock *rl);

/* Decides the outcome of an open op, runs its callback and closes the round. */
static void op_finish(lk_rl_op *op, lk_rl_outcome outcome, int64_t retry_after_ms)
{
    lk_redlock *rl = op->rl;
    lk_rl_result res = {.outcome = outcome, .revoked = outcome == LK_RL_HELD && op->revoked > 0};
    if (outcome == LK_RL_GRANTED && op->kind != OP_RELEASE) {
        int64_t elapsed_ms = (int64_t)((cm_now_us() - op->start_us) / 1000u);
        int64_t drift = (int64_t)((double)op->lease_ms * rl->drift) + 2;
        lk_quar_note_lease(rl->quar, op->lease_ms);
        res.validity_ms = (int64_t)op->lease_ms - elapsed_ms - drift;
        if (res.validity_ms <= 0) {
            res.outcome = outcome = LK_RL_FAILED; /* too slow: the lease may be gone */
            res.validity_ms = 0;
        }
    }
    if (op_launched(op)) {
        rl->inflight--;
    }
    op_set_state(op, OPS_DONE);
    event_del(&op->timer);
    TAILQ_REMOVE(&rl->ops, op, link);
    rl->pending--;
    if (outcome != LK_RL_GRANTED) {
        rl->stats.failed_total++;
    }
    if (op->kind == OP_ACQUIRE) {
        op->handoff_granted = outcome == LK_RL_GRANTED && !op->cancelled && op->prev_len > 0;
        if (outcome == LK_RL_GRANTED) {
            res.fence = op->fence;
        } else {
            res.retry_after_ms = outcome == LK_RL_HELD ? CM_MAX(retry_after_ms, 0) : 0;
        }
        bool unknown = false;
        for (size_t i = 0; i < rl->n; i++) {
            uint8_t st = op->slots[i].state;
            unknown |= st == SL_YES || st == SL_WAIT || st == SL_UNKNOWN;
        }
        /* Unlock everywhere unless every master said a definite no; a cancelled grant
         * is given back too. Sent before the callback so it is ordered first. */
        if ((outcome != LK_RL_GRANTED && outcome != LK_RL_NOQUORUM && unknown) ||
            (outcome == LK_RL_GRANTED && op->cancelled)) {
            op_release_token(rl, op);
        }
    }
    if (!op->cancelled && op->cb) {
        op->cb(op->arg, &res);
    }
    op_unref(op);
    rl_admit(rl);
}

/* What slot s sends: its round's step on its master, for lk_rlcmd. */
static lk_rlcmd_entry slot_entry(const rl_slot *s)
{
    const lk_rl_op *op = s->op;
    int kind = s->phase == PH_FENCE     ? LK_RLCMD_FENCE
               : op->kind == OP_ACQUIRE ? LK_RLCMD_ACQUIRE
               : op->kind == OP_RENEW   ? LK_RLCMD_RENEW
                                        : LK_RLCMD_RELEASE;
    return (lk_rlcmd_entry){.kind = kind,
                            .lock_key = op->lock_key,
                            .lock_key_len = op->lock_key_len,
                            .fence_key = op->fence_key,
                            .fence_key_len = op->fence_key_len,
                            .owner_key = op->owner_key,
                            .owner_key_len = op->owner_key_len,
                            .holder = op->holder,
                            .holder_len = op->holder_len,
                            .token = op->token,
                            .token_len = op->token_len,
                            .prev = op->prev,
                            .prev_len = op->prev_len,
                            .resource = op->resource,
                            .resource_len = op->resource_len,
                            .fence_txt = op->fence_txt,
                            .lease_ms = op->lease_ms};
}

/* Builds the call of b, as EVALSHA or (after NOSCRIPT) EVAL (lk_rlcmd_format). */
static int batch_format(const rl_batch *b, bool eval, char **out)
{
    lk_rlcmd_entry one = {0}, *e = b->n == 1 ? &one : calloc(b->n, sizeof(*e));
    if (e == NULL)
        return -1;
    for (size_t k = 0; k < b->n; k++)
        e[k] = slot_entry(b->slots[k]);
    int rc = lk_rlcmd_format(e, b->n, b->rl->channel, b->rl->channel_len,
                             (const char(*)[41])b->rl->sha, eval, out);
    if (e != &one)
        free(e);
    return rc;
}

/* Queues op's command of the current phase for master i's batch of this pass. False
 * when the master is not up (it counts as a no). */
static bool op_send(lk_rl_op *op, size_t i)
{
    lk_redlock *rl = op->rl;
    rl_master *m = &rl->masters[i];
    rl_slot *s = &op->slots[op->phase * rl->n + i];
    if (!m->up || m->cmd.ac == NULL) {
        return false;
    }
    if (m->n_pend == m->cap_pend) {
        size_t cap = m->cap_pend ? 2 * m->cap_pend : 16;
        rl_slot **p = realloc(m->pend, cap * sizeof *p);
        if (p == NULL) {
            return false;
        }
        m->pend = p;
        m->cap_pend = cap;
    }
    m->pend[m->n_pend++] = s;
    s->state = SL_WAIT;
    op->wait++;
    op->refs++;
    if (!rl->flush_armed) {
        rl->flush_armed = true;
        event_active(rl->flush, EV_TIMEOUT, 1);
    }
    return true;
}

/* Re-checks an open op after a reply: completes it once the outcome is known. */
static void op_advance(lk_rl_op *op);

/* Sends the fence write-back to every master that did not already return t, or
 * grants at once when the granting masters agreed. */
static void op_fence_phase(lk_rl_op *op)
{
    lk_redlock *rl = op->rl;
    uint32_t have = 0;
    for (size_t i = 0; i < rl->n; i++) {
        const rl_slot *s = &op->slots[i];
        have += s->state == SL_YES && s->value == op->fence;
    }
    if (have >= rl->quorum) {
        op_finish(op, LK_RL_GRANTED, 0);
        return;
    }
    /* Masters that returned t hold >= t already; the rest get "fence = max(fence, t)". */
    rl->stats.fence_writebacks_total++;
    op->phase = PH_FENCE;
    op->yes = have;
    op->wait = 0;
    op->no = 0;
    snprintf(op->fence_txt, sizeof op->fence_txt, "%llu", (unsigned long long)op->fence);
    for (size_t i = 0; i < rl->n; i++) {
        const rl_slot *s = &op->slots[i];
        if (!(s->state == SL_YES && s->value == op->fence)) {
            op_send(op, i);
        }
    }
    event_del(&op->timer);
    event_add(&op->timer, rl->round_tv);
    op_advance(op);
}

static void op_advance(lk_rl_op *op)
{
    lk_redlock *rl = op->rl;
    if (op->state != OPS_SENT) {
        return;
    }
    if (op->yes >= rl->quorum) {
        if (op->kind == OP_ACQUIRE && op->phase == PH_MAIN) {
            op_fence_phase(op);
        } else {
            op_finish(op, LK_RL_GRANTED, 0);
        }
    } else if (op->yes + op->wait < rl->quorum) {
        /* Quorum impossible. HELD when some master saw another holder (the round ends
         * at the first moment quorum is out of reach, so "held on a majority" cannot be
         * waited for); FAILED when only timeouts, errors and down masters stood in the
         * way. */
        lk_rl_outcome o = LK_RL_FAILED;
        int64_t retry = 0;
        if (op->kind == OP_RENEW) {
            /* A renewal refused by a majority is a loss at once (HELD); refusals short of
             * a majority with answers still due wait for them (at most the round timer),
             * so that a refusal is not mistaken for a timeout (FAILED: retry). */
            if (op->no >= rl->quorum) {
                o = LK_RL_HELD;
            } else if (op->wait > 0 && op->no + op->wait >= rl->quorum) {
                return;
            }
        }
        if (op->kind == OP_ACQUIRE && op->phase == PH_MAIN && op->no > 0) {
            o = LK_RL_HELD;
            retry = INT64_MAX;
            for (size_t i = 0; i < rl->n; i++) {
                if (op->slots[i].state == SL_NO) {
                    retry = CM_MIN(retry, (int64_t)op->slots[i].value);
                }
            }
        }
        op_finish(op, o, retry);
    }
}

/* Records master s->idx's answer for s (a slot of its op's current phase, still open)
 * and lets the round move on. */
static void slot_answer(rl_slot *s, rl_slot_state st, long long value)
{
    lk_rl_op *op = s->op;
    op->wait--;
    if (op->kind == OP_ACQUIRE && s->phase == PH_MAIN && st != SL_UNKNOWN) {
        s->value = value > 0 ? (uint64_t)value : 0;
        if (st == SL_YES && s->value > op->fence) {
            op->fence = s->value;
        }
    }
    s->state = (uint8_t)st;
    op->yes += st == SL_YES;
    op->no += st == SL_NO;
    op->revoked += op->kind == OP_RENEW && st == SL_NO && value == 1;
    op_advance(op);
}

/* Entry k of a batch reply: what it says about slot s (lk_rlcmd_answer). */
static rl_slot_state batch_entry(const rl_slot *s, const redisReply *reply, size_t k, size_t n,
                                 long long *value)
{
    lk_rlcmd_entry e = slot_entry(s);
    int a = lk_rlcmd_answer(e.kind, reply, k, n, value);
    return a == LK_RLCMD_YES ? SL_YES : a == LK_RLCMD_NO ? SL_NO : SL_UNKNOWN;
}

static void batch_reply_cb(redisAsyncContext *ac, void *r, void *privdata);

/* A NOSCRIPT reply means the master lost its scripts (SCRIPT FLUSH, restart behind a
 * proxy): load it again and resend the batch once as EVAL, with the entries whose
 * rounds are still waiting for them (the others are dropped: late). */
static bool batch_retry_eval(rl_batch *b, redisAsyncContext *ac)
{
    size_t live = 0;
    for (size_t k = 0; k < b->n; k++) {
        rl_slot *s = b->slots[k];
        if (s->op->state == OPS_SENT && s->op->phase == s->phase) {
            b->slots[live++] = s;
        } else {
            op_unref(s->op);
        }
    }
    b->n = live;
    b->eval_retried = true;
    if (live == 0) {
        free(b);
        return true;
    }
    char *cmd = NULL;
    int len = batch_format(b, true, &cmd);
    bool ok =
        len > 0 && redisAsyncFormattedCommand(ac, batch_reply_cb, b, cmd, (size_t)len) == REDIS_OK;
    redisFreeCommand(cmd);
    if (ok) {
        cmd_inflight_add(&b->rl->masters[b->idx]);
        for (int i = 0; i < LK_RLCMD_NSCRIPTS; i++) {
            if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", lk_rlcmd_script_text[i]) !=
                REDIS_OK) {
                break;
            }
        }
    }
    return ok;
}

/* hiredis callback of every batch call; privdata is the batch. Each entry whose round
 * still waits for this phase gets its own answer; late ones only drop references. */
static void batch_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    rl_batch *b = privdata;
    lk_redlock *rl = b->rl;
    redisReply *reply = r;
    rl_master *m = &rl->masters[b->idx];
    cmd_inflight_done(m, reply != NULL);
    if (!rl->freeing) {
        if (reply != NULL) {
            cm_hist_observe_us(&rl->stats.redis_rtt, cm_now_us() - b->sent_us);
        } else if (ac == m->cmd.ac) {
            /* The context is going away (its disconnect callback follows): stop using
             * it before the NULL replies below complete rounds that may start new ones. */
            master_set_up(m, false);
        }
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
            if (!b->eval_retried && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
                batch_retry_eval(b, ac)) {
                return; /* the EVAL took over the batch and its references */
            }
            log_warn("redis master %s: script error: %s", m->name, reply->str);
        }
    }
    for (size_t k = 0; k < b->n; k++) {
        rl_slot *s = b->slots[k];
        lk_rl_op *op = s->op;
        if (!rl->freeing && op->state == OPS_SENT && op->phase == s->phase) {
            long long value;
            rl_slot_state st = batch_entry(s, reply, k, b->n, &value);
            slot_answer(s, st, value);
        } else if (!rl->freeing && s->phase == PH_MAIN && s->state == SL_WAIT) {
            /* A late answer: kept for op_clean (whether a master took the handoff). */
            long long value;
            s->state = (uint8_t)batch_entry(s, reply, k, b->n, &value);
        }
        op_unref(op);
    }
    free(b);
}

/* Sends master i's slots of this pass as batch calls of at most RL_BATCH_MAX entries.
 * The list is taken off the master first: rounds that the failures below complete
 * may start new ones, which queue for the next flush. */
static void master_flush(lk_redlock *rl, size_t i)
{
    rl_master *m = &rl->masters[i];
    rl_slot **pend = m->pend;
    size_t n = m->n_pend;
    m->pend = NULL;
    m->n_pend = m->cap_pend = 0;
    for (size_t at = 0; at < n;) {
        size_t cnt = CM_MIN(n - at, (size_t)RL_BATCH_MAX);
        rl_batch *b = malloc(sizeof *b + cnt * sizeof b->slots[0]);
        bool sent = false;
        if (b != NULL) {
            *b = (rl_batch){.rl = rl, .idx = (uint32_t)i, .sent_us = cm_now_us(), .n = cnt};
            memcpy(b->slots, pend + at, cnt * sizeof b->slots[0]);
            char *cmd = NULL;
            int len = batch_format(b, false, &cmd);
            sent = len > 0 && m->up && m->cmd.ac != NULL &&
                   redisAsyncFormattedCommand(m->cmd.ac, batch_reply_cb, b, cmd, (size_t)len) ==
                       REDIS_OK;
            redisFreeCommand(cmd);
        }
        if (sent) {
            cmd_inflight_add(m);
            rl->stats.batch_calls_total++;
            rl->stats.batch_entries_total += cnt;
        } else {
            /* Not sent (the master went down meanwhile, or out of memory): no answer. */
            free(b);
            for (size_t k = at; k < at + cnt; k++) {
                lk_rl_op *op = pend[k]->op;
                if (op->state == OPS_SENT && op->phase == pend[k]->phase) {
                    slot_answer(pend[k], SL_UNKNOWN, 0);
                }
                op_unref(op);
            }
        }
        at += cnt;
    }
    free(pend);
}

/* The flush event: every master's batch of this pass goes out. */
static void rl_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_redlock *rl = arg;
    rl->flush_armed = false;
    for (size_t i = 0; i < rl->n && !rl->freeing; i++) {
        master_flush(rl, i);
    }
}

/* The round timer: decide with what has arrived. Also the deferred outcome path. */
static void op_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_rl_op *op = arg;
    if (op->state == OPS_NOQUORUM) {
        op_finish(op, LK_RL_NOQUORUM, 0);
        return;
    }
    if (op->state != OPS_SENT) {
        return;
    }
    /* Whatever is still outstanding counts as a no from here on. */
    op->wait = 0;
    op_advance(op);
}

static lk_rl_op *op_new(lk_redlock *rl, rl_kind kind, const char *resource, const char *token,
                        const char *prev, const char *holder, uint64_t lease_ms, lk_rl_cb cb,
                        void *arg)
{
    size_t res_len = strlen(resource), tok_len = strlen(token);
    size_t prev_len = prev ? strlen(prev) : 0, holder_len = holder ? strlen(holder) : 0;
    size_t key_len = rl->prefix_len + 6 + res_len; /* "lock:" / "fence:" / "owner:" */
    size_t slots_sz = 2 * rl->n * sizeof(rl_slot);
    size_t total =
        sizeof(lk_rl_op) + slots_sz + res_len + tok_len + prev_len + holder_len + 3 * key_len + 7;
    lk_rl_op *op = malloc(total);
    if (op == NULL) {
        return NULL;
    }
    memset(op, 0, sizeof *op);
    op->rl = rl;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->lease_ms = lease_ms;
    op->slots = (rl_slot *)(op + 1);
    for (size_t i = 0; i < 2 * rl->n; i++) {
        op->slots[i] = (rl_slot){.op = op,
                                 .idx = (uint32_t)(i % rl->n),
                                 .phase = (uint8_t)(i / rl->n),
                                 .state = SL_IDLE};
    }
    char *p = (char *)op->slots + slots_sz;
#define PUT(field, src, n)                                                                         \
    do {                                                                                           \
        op->field = p;                                                                             \
        op->field##_len = (n);                                                                     \
        memcpy(p, (src), (n));                                                                     \
        p[(n)] = '\0';                                                                             \
        p += (n) + 1;                                                                              \
    } while (0)
    PUT(resource, resource, res_len);
    PUT(token, token, tok_len);
    PUT(prev, prev ? prev : "", prev_len);
    PUT(holder, holder ? holder : "", holder_len);
#undef PUT
    op->lock_key = p;
    op->lock_key_len = (size_t)sprintf(p, "%slock:%s", rl->prefix, resource);
    p += op->lock_key_len + 1;
    op->fence_key = p;
    op->fence_key_len = (size_t)sprintf(p, "%sfence:%s", rl->prefix, resource);
    p += op->fence_key_len + 1;
    op->owner_key = p;
    op->owner_key_len = (size_t)sprintf(p, "%sowner:%s", rl->prefix, resource);
    op->refs = 1;
    op->state = OPS_NEW;
    event_assign(&op->timer, rl->base, -1, 0, op_timer_cb, op);
    TAILQ_INSERT_TAIL(&rl->ops, op, link);
    rl->pending++;
    return op;
}

/* Queues a round's command for every master that is up (this pass's flush sends it in
 * each master's batch), or defers NOQUORUM. The round's time (validity, round timer)
 * starts here, not while it was queued for admission. */
static void op_launch(lk_rl_op *op)
{
    lk_redlock *rl = op->rl;
    rl->inflight++;
    op->start_us = cm_now_us();
    if (rl->up < rl->quorum && !op->best_effort) {
        op_set_state(op, OPS_NOQUORUM);
        event_active(&op->timer, EV_TIMEOUT, 1);
        return;
    }
    op_set_state(op, OPS_SENT);
    for (size_t i = 0; i < rl->n; i++) {
        op_send(op, i);
    }
    if (op->wait < rl->quorum) {
        /* Masters went down meanwhile: fail from the loop, not from here. */
        event_active(&op->timer, EV_TIMEOUT, 1);
    } else {
        event_add(&op->timer, rl->round_tv);
    }
}

/* Launches queued rounds while there is room, oldest first. A cancelled acquire or
 * renew that never went out is dropped (nothing to undo); a release still goes. */
static void rl_admit(lk_redlock *rl)
{
    while (!rl->freeing && !TAILQ_EMPTY(&rl->admit) &&
           (rl->max_inflight == 0 || rl->inflight < rl->max_inflight)) {
        lk_rl_op *op = TAILQ_FIRST(&rl->admit);
        TAILQ_REMOVE(&rl->admit, op, qlink);
        rl->queued--;
        if (op->cancelled && op->kind != OP_RELEASE) {
            op_set_state(op, OPS_DONE);
            TAILQ_REMOVE(&rl->ops, op, link);
            rl->pending--;
            op_unref(op);
            continue;
        }
        op_launch(op);
    }
}

/* Starts a round now, or queues it behind the others when max_inflight are out.
 * best_effort (internal unlocks): send to whatever is up even without a quorum. */
static lk_rl_op *op_start(lk_redlock *rl, rl_kind kind, const char *resource, const char *token,
                          const char *prev, const char *holder, uint64_t lease_ms, lk_rl_cb cb,
                          void *arg, bool best_effort)
{
    if (rl == NULL || resource == NULL || token == NULL || rl->freeing ||
        strlen(resource) > RL_MAX_RESOURCE || strlen(token) > RL_MAX_TOKEN ||
        (prev && strlen(prev) > RL_MAX_TOKEN) || (holder && strlen(holder) > RL_MAX_HOLDER)) {
        return NULL;
    }
    lk_rl_op *op = op_new(rl, kind, resource, token, prev, holder, lease_ms, cb, arg);
    if (op == NULL) {
        return NULL;
    }
    rl->stats.rounds_total++;
    op->best_effort = best_effort;
    if (rl->queued > 0 || (rl->max_inflight != 0 && rl->inflight >= rl->max_inflight)) {
        op_set_state(op, OPS_QUEUED);
        TAILQ_INSERT_TAIL(&rl->admit, op, qlink);
        rl->queued++;
        return op;
    }
    op_launch(op);
    return op;
}

/* Unlock-all after a failed or cancelled acquire: a release round nobody waits for. */
static void op_release_token(lk_redlock *rl, const lk_rl_op *op)
{
    if (op_start(rl, OP_RELEASE, op->resource, op->token, NULL, NULL, 0, NULL, NULL, true) ==
        NULL) {
        log_warn("redlock: could not unlock %s (the lease will expire)", op->resource);
    }
}

/* ---- public API ---- */

lk_redlock *lk_redlock_new(struct event_base *base, const lk_redlock_opts *opts)
{
    lk_redlock *rl = calloc(1, sizeof *rl);
    if (rl == NULL || opts->n_masters == 0 || opts->n_masters > UINT32_MAX / 4) {
        goto fail;
    }
    rl->base = base;
    rl->n = opts->n_masters;
    rl->quorum = rl->n / 2 + 1;
    rl->timeout_ms = opts->redis_timeout_ms ? opts->redis_timeout_ms : 50;
    rl->drift = opts->clock_drift_factor;
    rl->on_released = opts->on_released;
    rl->on_wanted = opts->on_wanted;
    rl->on_masters = opts->on_masters;
    rl->on_settled = opts->on_settled;
    rl->cb_arg = opts->cb_arg;
    rl->max_inflight = opts->max_inflight_rounds;
    TAILQ_INIT(&rl->ops);
    TAILQ_INIT(&rl->admit);
    cm_hist_init_latency(&rl->stats.redis_rtt);
    const char *prefix = opts->key_prefix ? opts->key_prefix : "";
    rl->prefix = strdup(prefix);
    rl->prefix_len = strlen(prefix);
    rl->channel_len = rl->prefix_len + strlen("released");
    rl->channel = malloc(rl->channel_len + 1);
    rl->masters = calloc(rl->n, sizeof *rl->masters);
    if (rl->prefix == NULL || rl->channel == NULL || rl->masters == NULL) {
        goto fail;
    }
    snprintf(rl->channel, rl->channel_len + 1, "%sreleased", prefix);
    for (int i = 0; i < LK_RLCMD_NSCRIPTS; i++) {
        cm_sha1_hex(lk_rlcmd_script_text[i], strlen(lk_rlcmd_script_text[i]), rl->sha[i]);
    }
    lk_quar_opts q = {opts->quarantine, rl->n, opts->max_lease_ms, rl->drift, prefix,
                      quar_count,       rl};
    rl->quar = lk_quar_new(base, &q);
    struct timeval tv = cm_tv_from_ms(rl->timeout_ms);
    rl->round_tv = event_base_init_common_timeout(base, &tv);
    if (rl->round_tv == NULL || rl->quar == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < rl->n; i++) {
        rl_master *m = &rl->masters[i];
        m->rl = rl;
        m->addr = opts->masters[i];
        cm_addr_format(&m->addr, m->name, sizeof m->name);
        lk_quar_set_name(rl->quar, i, m->name);
        rl_conn *conns[2] = {&m->cmd, &m->sub};
        for (int k = 0; k < 2; k++) {
            conns[k]->m = m;
            conns[k]->is_sub = k == 1;
            conns[k]->backoff_ms = RL_BACKOFF_MIN_MS;
            conns[k]->reconnect = evtimer_new(base, conn_reconnect_cb, conns[k]);
            if (conns[k]->reconnect == NULL) {
                goto fail;
            }
        }
    }
    rl->flush = event_new(base, -1, 0, rl_flush_cb, rl);
    if (rl->flush == NULL) {
        goto fail;
    }
    rl->health = event_new(base, -1, EV_PERSIST, health_cb, rl);
    struct timeval htv = cm_tv_from_ms(CM_MIN(1000u, CM_MAX(50u, rl->timeout_ms)));
    if (rl->health == NULL || event_add(rl->health, &htv) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < rl->n; i++) {
        conn_start(&rl->masters[i].cmd);
        conn_start(&rl->masters[i].sub);
    }
    return rl;
fail:
    lk_redlock_free(rl);
    return NULL;
}

void lk_redlock_free(lk_redlock *rl)
{
    if (rl == NULL) {
        return;
    }
    rl->freeing = true;
    if (rl->health) {
        event_free(rl->health);
    }
    for (size_t i = 0; rl->masters && i < rl->n; i++) {
        rl_master *m = &rl->masters[i];
        rl_conn *conns[2] = {&m->cmd, &m->sub};
        for (int k = 0; k < 2; k++) {
            redisAsyncContext *ac = conns[k]->ac;
            conns[k]->ac = NULL;
            if (ac) {
                redisAsyncFree(ac); /* pending callbacks see rl->freeing */
            }
            if (conns[k]->reconnect) {
                event_free(conns[k]->reconnect);
            }
        }
    }
    /* Slots that never went out: their references go with them. */
    for (size_t i = 0; rl->masters && i < rl->n; i++) {
        rl_master *m = &rl->masters[i];
        for (size_t k = 0; k < m->n_pend; k++) {
            op_unref(m->pend[k]->op);
        }
        free(m->pend);
        lk_stale_clear(&m->stale);
    }
    if (rl->flush) {
        event_free(rl->flush);
    }
    /* Every command callback has run: only the rounds' own references are left. */
    while (!TAILQ_EMPTY(&rl->ops)) {
        lk_rl_op *op = TAILQ_FIRST(&rl->ops);
        TAILQ_REMOVE(&rl->ops, op, link);
        event_del(&op->timer);
        op_unref(op);
    }
    lk_quar_free(rl->quar); /* after the contexts: their callbacks have run */
    free(rl->masters);
    free(rl->channel);
    free(rl->prefix);
    free(rl);
}

size_t lk_redlock_masters_total(const lk_redlock *rl)
{
    return rl->n;
}

size_t lk_redlock_masters_up(const lk_redlock *rl)
{
    return rl->up;
}

size_t lk_redlock_quorum(const lk_redlock *rl)
{
    return rl->quorum;
}

bool lk_redlock_settled(const lk_redlock *rl)
{
    return rl->start == RL_START_SETTLED;
}

bool lk_redlock_has_quorum(const lk_redlock *rl)
{
    return rl->up >= rl->quorum;
}

const char *lk_redlock_master_name(const lk_redlock *rl, size_t i)
{
    return i < rl->n ? rl->masters[i].name : "";
}

bool lk_redlock_master_up(const lk_redlock *rl, size_t i)
{
    return i < rl->n && rl->masters[i].up;
}

lk_rl_op *lk_redlock_acquire(lk_redlock *rl, const char *resource, const char *token,
                             const char *prev_token, uint64_t lease_ms, lk_rl_cb cb, void *arg)
{
    return op_start(rl, OP_ACQUIRE, resource, token, prev_token, NULL, lease_ms, cb, arg, false);
}

lk_rl_op *lk_redlock_acquire_as(lk_redlock *rl, const char *resource, const char *token,
                                const char *prev_token, const char *holder, uint64_t lease_ms,
                                lk_rl_cb cb, void *arg)
{
    return op_start(rl, OP_ACQUIRE, resource, token, prev_token, holder, lease_ms, cb, arg, false);
}

lk_rl_op *lk_redlock_renew(lk_redlock *rl, const char *resource, const char *token,
                           uint64_t lease_ms, lk_rl_cb cb, void *arg)
{
    return op_start(rl, OP_RENEW, resource, token, NULL, NULL, lease_ms, cb, arg, false);
}

lk_rl_op *lk_redlock_release(lk_redlock *rl, const char *resource, const char *token, lk_rl_cb cb,
                             void *arg)
{
    /* Best effort: a release goes to every master that is up, quorum or not, so that
     * its keys do not linger to their TTL where it can reach them (issue 12 item 6). */
    return op_start(rl, OP_RELEASE, resource, token, NULL, NULL, 0, cb, arg, true);
}

void lk_redlock_cancel(lk_rl_op *op)
{
    if (op != NULL && op->state != OPS_DONE) {
        op->cancelled = true;
    }
}

const lk_rl_stats *lk_redlock_stats(const lk_redlock *rl)
{
    return &rl->stats;
}

const struct lk_quar *lk_redlock_quar(const lk_redlock *rl)
{
    return rl->quar;
}

size_t lk_redlock_pending(const lk_redlock *rl)
{
    return rl->pending;
}

size_t lk_redlock_queued(const lk_redlock *rl)
{
    return rl->queued;
}

struct redisAsyncContext *lk_redlock_master_ac(const lk_redlock *rl, size_t i)
{
    const rl_master *m = &rl->masters[i];
    return i < rl->n && m->up && !rl->freeing ? m->cmd.ac : NULL;
}

const char *lk_redlock_prefix(const lk_redlock *rl)
{
    return rl->prefix;
}

const char *lk_redlock_channel(const lk_redlock *rl)
{
    return rl->channel;
}

uint32_t lk_redlock_timeout_ms(const lk_redlock *rl)
{
    return rl->timeout_ms;
}

struct event_base *lk_redlock_base(const lk_redlock *rl)
{
    return rl->base;
}
