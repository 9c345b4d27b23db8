/*
 * lk_rlquery: SHOW and REVOKE on the masters (see lk_rlquery.h). Rare admin requests:
 * plain EVAL per master (no script cache, no batching), nothing on the lock path. Also the
 * "want" notices to the other lockds: fire-and-forget PUBLISHes outside the rounds.
 */
#include "lk_rlquery.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_core.h"
#include "cm_lockp.h"
#include "cm_log.h"
#include "cm_time.h"
#include "lk_rlcmd.h"

#define RLQ_VALUE_MAX 200 /* lock values: tokens, tombstones */
#define RLQ_OWNER_MAX 300 /* owner key: "<token> <name> <lockd-id>" */
#define RLQ_KEY_MAX   512

/* KEYS lock, fence, owner: {value or '', PTTL, fence or '0', owner or ''}. */
static const char script_show[] =
    "return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1]), "
    "redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or ''}";
/* KEYS lock, fence; ARGV channel, resource: a live lock becomes the tombstone
 * "revoked:<value>" with its TTL (or goes when it has none), the fence is bumped and the
 * release published: {value, fence}; else {'', fence}. */
static const char script_revoke[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or string.sub(v, 1, 8) == 'revoked:' then "
    "return {'', redis.call('GET', KEYS[2]) or '0'} end "
    "local t = redis.call('PTTL', KEYS[1]) "
    "if t > 0 then redis.call('SET', KEYS[1], 'revoked:' .. v, 'PX', t) "
    "else redis.call('DEL', KEYS[1]) end "
    "redis.call('PUBLISH', ARGV[1], ARGV[2]) "
    "return {v, tostring(redis.call('INCR', KEYS[2]))}";
/* KEYS fence; ARGV t: fence = max(fence, t), compared as decimal strings. */
static const char script_fence_max[] = "local f = redis.call('GET', KEYS[1]) or '0' "
                                       "if #f < #ARGV[1] or (#f == #ARGV[1] and f < ARGV[1]) then "
                                       "redis.call('SET', KEYS[1], ARGV[1]) end return 1";

/* Where a query is: one phase of EVALs out, then done. */
typedef enum rlq_phase {
    RLQ_READ,     /* SHOW's read, or REVOKE's tombstone + fence bump, on every master up */
    RLQ_WRITE,    /* REVOKE: the largest fence written back to every master up */
    RLQ_FINISHED, /* decided, callback run (unless cancelled); late replies only unref */
} rlq_phase;

typedef struct rlq_slot {
    struct lk_rlq *q;
    uint32_t idx;
    uint8_t phase; /* the phase its command belongs to */
} rlq_slot;

typedef struct rlq_answer {
    bool got;
    char value[RLQ_VALUE_MAX + 1];
    int64_t pttl;
    uint64_t fence;
    char owner[RLQ_OWNER_MAX + 1];
} rlq_answer;

struct lk_rlq {
    lk_redlock *rl;
    bool revoke;
    bool cancelled;
    rlq_phase phase;
    lk_rlq_cb cb;
    void *arg;
    struct event *timer; /* the phase's bound; freed when finished */
    uint32_t refs;       /* 1 until finished + 1 per command whose callback has not run */
    size_t n, quorum;
    size_t sent, answered; /* of the current phase */
    uint64_t fence_t;      /* REVOKE: the largest bumped fence */
    char fence_txt[24];
    rlq_slot *slots;     /* 2 × n: RLQ_READ then RLQ_WRITE */
    rlq_answer *answers; /* n */
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
    char lock_key[RLQ_KEY_MAX], fence_key[RLQ_KEY_MAX], owner_key[RLQ_KEY_MAX];
};

static const char *const rlq_phase_name[] = {"read", "write", "finished"};

static void rlq_set_phase(lk_rlq *q, rlq_phase to)
{
    bool legal = (q->phase == RLQ_READ && (to == RLQ_WRITE || to == RLQ_FINISHED)) ||
                 (q->phase == RLQ_WRITE && to == RLQ_FINISHED);
    assert(legal && "illegal query phase change");
    (void)legal;
    log_debug("%s %s: %s -> %s", q->revoke ? "revoke" : "show", q->resource,
              rlq_phase_name[q->phase], rlq_phase_name[to]);
    q->phase = to;
}

static void rlq_unref(lk_rlq *q)
{
    if (--q->refs == 0) {
        free(q->slots);
        free(q->answers);
        free(q);
    }
}

static void rlq_finish(lk_rlq *q, const lk_rl_lockview *view)
{
    rlq_set_phase(q, RLQ_FINISHED);
    event_free(q->timer);
    q->timer = NULL;
    if (!q->cancelled && q->cb) {
        q->cb(q->arg, view);
    }
    rlq_unref(q);
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* SHOW's verdict from the answers: see lk_rl_lockview. */
static void rlq_show_decide(lk_rlq *q, lk_rl_lockview *v)
{
    uint64_t fences[64];
    size_t nf = 0, best = 0, best_at = 0;
    for (size_t i = 0; i < q->n; i++) {
        const rlq_answer *a = &q->answers[i];
        if (!a->got) {
            continue;
        }
        if (nf < CM_ARRAY_LEN(fences)) {
            fences[nf++] = a->fence;
        }
        if (a->value[0] == '\0' || strncmp(a->value, "revoked:", 8) == 0) {
            continue;
        }
        size_t same = 0;
        for (size_t k = 0; k < q->n; k++) {
            same += q->answers[k].got && strcmp(q->answers[k].value, a->value) == 0;
        }
        if (same > best) {
            best = same;
            best_at = i;
        }
    }
    qsort(fences, nf, sizeof fences[0], cmp_desc);
    v->fence = nf >= q->quorum ? fences[q->quorum - 1] : 0;
    v->held = best >= q->quorum;
    if (!v->held) {
        return;
    }
    const char *tok = q->answers[best_at].value;
    size_t tl = strlen(tok);
    int64_t ttl = INT64_MAX;
    for (size_t i = 0; i < q->n; i++) {
        const rlq_answer *a = &q->answers[i];
        if (!a->got || strcmp(a->value, tok) != 0) {
            continue;
        }
        ttl = CM_MIN(ttl, a->pttl);
        /* the owner key counts only when it names this token */
        if (strncmp(a->owner, tok, tl) == 0 && a->owner[tl] == ' ' && strcmp(v->holder, "-") == 0) {
            char name[LK_RLQ_NAME_MAX + 1], id[LK_RLQ_NAME_MAX + 1];
            if (sscanf(a->owner + tl + 1, "%64s %64s", name, id) == 2) {
                memcpy(v->holder, name, sizeof v->holder);
                memcpy(v->lockd, id, sizeof v->lockd);
            }
        }
    }
    v->ttl_ms = ttl > 0 && ttl != INT64_MAX ? (uint64_t)ttl : 0;
}

static void rlq_send_phase(lk_rlq *q);

/* The current phase is over (all answered, or its timer fired): decide or move on. */
static void rlq_phase_done(lk_rlq *q)
{
    lk_rl_lockview v = {.ok = q->answered >= q->quorum};
    snprintf(v.holder, sizeof v.holder, "-");
    snprintf(v.lockd, sizeof v.lockd, "-");
    if (q->phase == RLQ_WRITE || !v.ok) {
        v.held = q->revoke && q->fence_t > 0;
        v.fence = q->fence_t;
        rlq_finish(q, &v);
        return;
    }
    if (!q->revoke) {
        rlq_show_decide(q, &v);
        rlq_finish(q, &v);
        return;
    }
    for (size_t i = 0; i < q->n; i++) {
        const rlq_answer *a = &q->answers[i];
        if (a->got && a->value[0] != '\0') {
            q->fence_t = CM_MAX(q->fence_t, a->fence);
        }
    }
    if (q->fence_t == 0) {
        rlq_finish(q, &v); /* nothing held: no fence to raise */
        return;
    }
    snprintf(q->fence_txt, sizeof q->fence_txt, "%llu", (unsigned long long)q->fence_t);
    rlq_set_phase(q, RLQ_WRITE);
    rlq_send_phase(q);
}

static void rlq_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rlq_phase_done(arg);
}

static uint64_t reply_u64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    }
    return r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    snprintf(dst, cap, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
}

static void rlq_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    rlq_slot *s = privdata;
    lk_rlq *q = s->q;
    redisReply *reply = r;
    (void)ac;
    if (s->phase == q->phase && q->phase != RLQ_FINISHED) {
        rlq_answer *a = &q->answers[s->idx];
        bool good = false;
        if (q->phase == RLQ_WRITE) {
            good = reply != NULL && reply->type == REDIS_REPLY_INTEGER;
        } else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
                   reply->elements == (q->revoke ? 2u : 4u)) {
            good = true;
            copy_str(a->value, sizeof a->value, reply->element[0]);
            if (q->revoke) {
                a->fence = reply_u64(reply->element[1]);
            } else {
                a->pttl = reply->element[1]->type == REDIS_REPLY_INTEGER
                              ? (int64_t)reply->element[1]->integer
                              : -2;
                a->fence = reply_u64(reply->element[2]);
                copy_str(a->owner, sizeof a->owner, reply->element[3]);
            }
        }
        a->got = q->phase == RLQ_READ ? good : a->got;
        q->answered += good;
        if (--q->sent == 0) {
            rlq_phase_done(q);
        }
    }
    rlq_unref(q);
}

/* Sends the current phase's command to every master that is up and arms its bound. */
static void rlq_send_phase(lk_rlq *q)
{
    lk_redlock *rl = q->rl;
    q->sent = 0;
    q->answered = 0;
    for (size_t i = 0; i < q->n; i++) {
        redisAsyncContext *ac = lk_redlock_master_ac(rl, i);
        rlq_slot *s = &q->slots[(q->phase == RLQ_WRITE ? q->n : 0) + i];
        int rc;
        if (ac == NULL) {
            continue;
        }
        if (q->phase == RLQ_WRITE) {
            rc = redisAsyncCommand(ac, rlq_reply_cb, s, "EVAL %s 1 %s %s", script_fence_max,
                                   q->fence_key, q->fence_txt);
        } else if (q->revoke) {
            rc = redisAsyncCommand(ac, rlq_reply_cb, s, "EVAL %s 2 %s %s %s %s", script_revoke,
                                   q->lock_key, q->fence_key, lk_redlock_channel(rl), q->resource);
        } else {
            rc = redisAsyncCommand(ac, rlq_reply_cb, s, "EVAL %s 3 %s %s %s", script_show,
                                   q->lock_key, q->fence_key, q->owner_key);
        }
        if (rc == REDIS_OK) {
            q->sent++;
            q->refs++;
        }
    }
    if (q->sent == 0) {
        /* The read is decided from the loop, never from inside the starting call; the
         * write phase starts from a callback already: decide now (also while lk_redlock
         * is being freed, when nothing is up and the loop runs no more). */
        if (q->phase == RLQ_READ)
            event_active(q->timer, EV_TIMEOUT, 1);
        else
            rlq_phase_done(q);
        return;
    }
    struct timeval tv = cm_tv_from_ms(lk_redlock_timeout_ms(rl));
    event_add(q->timer, &tv);
}

static lk_rlq *rlq_start(lk_redlock *rl, bool revoke, const char *resource, lk_rlq_cb cb, void *arg)
{
    lk_rlq *q = calloc(1, sizeof *q);
    const char *prefix = lk_redlock_prefix(rl);
    if (q == NULL || strlen(resource) >= sizeof q->resource ||
        strlen(prefix) + strlen(resource) + 8 >= RLQ_KEY_MAX) {
        free(q);
        return NULL;
    }
    q->n = lk_redlock_masters_total(rl);
    q->slots = calloc(2 * q->n, sizeof *q->slots);
    q->answers = calloc(q->n, sizeof *q->answers);
    q->timer = event_new(lk_redlock_base(rl), -1, 0, rlq_timer_cb, q);
    if (q->slots == NULL || q->answers == NULL || q->timer == NULL) {
        if (q->timer) {
            event_free(q->timer);
        }
        free(q->slots);
        free(q->answers);
        free(q);
        return NULL;
    }
    q->rl = rl;
    q->revoke = revoke;
    q->cb = cb;
    q->arg = arg;
    q->refs = 1;
    q->quorum = lk_redlock_quorum(rl);
    q->phase = RLQ_READ;
    for (size_t i = 0; i < 2 * q->n; i++) {
        q->slots[i] = (rlq_slot){.q = q, .idx = (uint32_t)(i % q->n), .phase = i >= q->n};
    }
    snprintf(q->resource, sizeof q->resource, "%s", resource);
    snprintf(q->lock_key, sizeof q->lock_key, "%slock:%s", prefix, resource);
    snprintf(q->fence_key, sizeof q->fence_key, "%sfence:%s", prefix, resource);
    snprintf(q->owner_key, sizeof q->owner_key, "%sowner:%s", prefix, resource);
    rlq_send_phase(q);
    return q;
}

lk_rlq *lk_rlq_show(lk_redlock *rl, const char *resource, lk_rlq_cb cb, void *arg)
{
    return rlq_start(rl, false, resource, cb, arg);
}

lk_rlq *lk_rlq_revoke(lk_redlock *rl, const char *resource, lk_rlq_cb cb, void *arg)
{
    return rlq_start(rl, true, resource, cb, arg);
}

void lk_rlq_cancel(lk_rlq *q)
{
    if (q != NULL) {
        q->cancelled = true;
    }
}

/* Lockds of before issue 11 read "want <anything>" as a resource name: they get the short
 * form too, so their chains still yield to our waiters (mixed versions during an upgrade). */
void lk_redlock_publish_wanted(lk_redlock *rl, const char *resource, uint64_t oldest_ms,
                               const char *from, uint64_t seq)
{
    char msg[RLQ_KEY_MAX];
    size_t legacy;
    const char *channel = lk_redlock_channel(rl);
    size_t channel_len = strlen(channel);
    int n = lk_rlcmd_want_format(msg, sizeof msg, resource, oldest_ms, from, seq, &legacy);
    for (size_t i = 0; n > 0 && i < lk_redlock_masters_total(rl); i++) {
        redisAsyncContext *ac = lk_redlock_master_ac(rl, i);
        if (ac != NULL) {
            (void)redisAsyncCommand(ac, NULL, NULL, "PUBLISH %b %b", channel, channel_len, msg,
                                    (size_t)n);
            if (legacy)
                (void)redisAsyncCommand(ac, NULL, NULL, "PUBLISH %b %b", channel, channel_len, msg,
                                        legacy);
        }
    }
}
