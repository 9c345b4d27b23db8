/*
 * lk_redlock: Redlock over N Redis masters (see lk_redlock.h for the contract).
 *
 * Owns every round (lk_rl_op) until its last hiredis callback has run, the batching
 * of rounds into script calls, and the client's life (new, free). Each master's
 * connections are lk_rlmaster's; the types both share are in lk_rlint.h.
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
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cm_log.h"
#include "cm_sha1.h"
#include "cm_time.h"
#include "lk_quarantine.h"
#include "lk_rlcmd.h"
#include "lk_rlint.h"
#include "lk_stale.h"
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
            lk_rlm_stale_release(rl, i, op->resource, op->handoff_granted ? op->prev : op->token);
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
        lk_rlm_inflight_add(&b->rl->masters[b->idx]);
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
    lk_rlm_inflight_done(m, reply != NULL);
    if (!rl->freeing) {
        if (reply != NULL) {
            cm_hist_observe_us(&rl->stats.redis_rtt, cm_now_us() - b->sent_us);
        } else if (ac == m->cmd.ac) {
            /* The context is going away (its disconnect callback follows): stop using
             * it before the NULL replies below complete rounds that may start new ones. */
            lk_rlm_set_up(m, false);
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
            lk_rlm_inflight_add(m);
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
    lk_quar_opts q = {opts->quarantine,  rl->n, opts->max_lease_ms, rl->drift, prefix,
                      lk_rlm_quar_count, rl};
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
            conns[k]->reconnect = evtimer_new(base, lk_rlm_reconnect_cb, conns[k]);
            if (conns[k]->reconnect == NULL) {
                goto fail;
            }
        }
    }
    rl->flush = event_new(base, -1, 0, rl_flush_cb, rl);
    if (rl->flush == NULL) {
        goto fail;
    }
    rl->health = event_new(base, -1, EV_PERSIST, lk_rlm_health_cb, rl);
    struct timeval htv = cm_tv_from_ms(CM_MIN(1000u, CM_MAX(50u, rl->timeout_ms)));
    if (rl->health == NULL || event_add(rl->health, &htv) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < rl->n; i++) {
        lk_rlm_conn_start(&rl->masters[i].cmd);
        lk_rlm_conn_start(&rl->masters[i].sub);
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
