/*
 * lk_quarantine: the guard against a master that forgot (see lk_quarantine.h for the rule).
 *
 * Owns one lkq_master per Redis master (its state, last known run_id, this connection's
 * probe, the quarantine's deadline and its restore job) and one timer that, while any
 * master is quarantined, starts restore jobs and ends quarantines whose time has come.
 *
 * The restore job of master b: on every other master whose command connection is ready
 * (quarantined ones included: a master that forgot only contributes smaller values), a
 * script walks the keyspace with SCAN under the key prefix and returns, page by page, the
 * fence counters and the live lock keys (value, PTTL). Each page's fences go to b at once
 * as "fence = max(fence, t)", and its locks are looked up on b: the latest expiry of those
 * b lacks (a lock that may still hold through the vote b lost) is the earliest end of its
 * quarantine. The job is done when every master it started to read (at least n - quorum +
 * 1) has been walked to the end and every write and check on b was answered. Any missing
 * reply (a connection lost) abandons the job; the timer starts a new one. Replies of an
 * abandoned job are recognised by its generation number and dropped.
 */
#include "lk_quarantine.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"

#define LKQ_TICK_MS    25 /* how often a quarantine is looked at */
#define LKQ_PREFIX_MAX 256

const char *const lk_quar_state_name[LKQ_NSTATES] = {"new", "counted", "down", "quarantined",
                                                     "quarantined-down"};

/* ARGV cursor, MATCH pattern, fence key prefix, lock key prefix; 500 keys a page bounds one
 * call's time in Redis. Returns {cursor, F, F pairs (fence key, value), then triples (lock
 * key, value, PTTL) of the live locks}; a fence that expired between SCAN and GET reads "0"
 * (a nil would cut the reply short). */
static const char scan_script[] =
    "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 500) "
    "local f, l = {}, {} "
    "for _, k in ipairs(r[2]) do "
    "if string.sub(k, 1, #ARGV[3]) == ARGV[3] then "
    "f[#f + 1] = k f[#f + 1] = redis.call('GET', k) or '0' "
    "elseif string.sub(k, 1, #ARGV[4]) == ARGV[4] then "
    "local v, p = redis.call('GET', k), redis.call('PTTL', k) "
    "if v and p > 0 then l[#l + 1] = k l[#l + 1] = v l[#l + 1] = p end end end "
    "local out = {r[1], #f / 2} "
    "for _, x in ipairs(f) do out[#out + 1] = x end "
    "for _, x in ipairs(l) do out[#out + 1] = x end "
    "return out";
/* KEYS lock keys, ARGV the values another master holds: 1 where this master holds the same
 * value (it did not forget that lock), else 0. */
static const char check_script[] =
    "local out = {} for i = 1, #KEYS do "
    "out[i] = redis.call('GET', KEYS[i]) == ARGV[i] and 1 or 0 end return out";
/* KEYS fence keys, ARGV their values: fence = max(fence, t) each, compared as decimal
 * strings like lk_rlcmd's fence script. */
static const char raise_script[] =
    "for i = 1, #KEYS do local f = redis.call('GET', KEYS[i]) or '0' local t = ARGV[i] "
    "if #f < #t or (#f == #t and f < t) then redis.call('SET', KEYS[i], t) end end "
    "return #KEYS";

typedef struct lkq_master {
    lk_quar *q;
    size_t idx;
    char name[80]; /* address text, for the logs */
    lk_quar_state state;
    char run_id[LK_QUAR_RUNID_MAX]; /* the last one seen ("" before any) */
    lk_quar_probe probe;            /* what this connection's probe said */
    redisAsyncContext *ac;          /* ready command context, NULL while not ready */
    uint64_t returned_ms;           /* when its quarantine started */
    uint64_t bound_ms;              /* the time bound from returned_ms */
    uint64_t pttl_end_ms;           /* the restore job's latest lock expiry seen elsewhere */
    bool restored;                  /* the restore job finished since it became ready */
    bool job;                       /* a restore job is running */
    uint32_t gen;                   /* the job's generation */
    size_t reads_started, reads_done, writes_pending;
} lkq_master;

struct lk_quar {
    struct event_base *base;
    bool enabled;
    size_t n;
    uint64_t max_lease_ms, largest_lease_ms;
    double drift;
    char fence_prefix[LKQ_PREFIX_MAX + 8], lock_prefix[LKQ_PREFIX_MAX + 8];
    char pattern[2 * LKQ_PREFIX_MAX + 2];
    lk_quar_count_cb on_count;
    void *cb_arg;
    struct event *tick;
    bool ticking;
    size_t n_quar;
    uint64_t total, restored_keys;
    lkq_master *m;
};

/* One command of a restore job in flight: job (b, gen), read from master j (or a write
 * or check on b when j == b); a check carries each lock's expiry as seen where it was read. */
typedef struct lkq_cmd {
    lk_quar *q;
    size_t b, j;
    uint32_t gen;
    size_t n;
    uint64_t end_ms[]; /* n */
} lkq_cmd;

/* ---- the rule ---- */

void lk_quar_parse_info(const char *text, lk_quar_probe *p)
{
    const char *s = text ? strstr(text, "run_id:") : NULL;
    if (s != NULL && (s == text || s[-1] == '\n')) {
        s += strlen("run_id:");
        size_t len = strcspn(s, "\r\n");
        if (len < sizeof p->run_id) {
            memcpy(p->run_id, s, len);
            p->run_id[len] = '\0';
        }
    }
    const char *u = text ? strstr(text, "\nuptime_in_seconds:") : NULL;
    if (u != NULL) {
        p->uptime_s = strtoll(u + strlen("\nuptime_in_seconds:"), NULL, 10);
    }
    const char *a = text ? strstr(text, "\naof_enabled:") : NULL;
    if (a != NULL) {
        p->aof_enabled = a[strlen("\naof_enabled:")] == '1';
    }
}

bool lk_quar_durable(const lk_quar_probe *p)
{
    return p->aof_enabled && p->fsync_always;
}

bool lk_quar_must_quarantine(lk_quar_state st, const char *known_run_id, const lk_quar_probe *p,
                             uint64_t max_lease_ms)
{
    switch (st) {
    case LKQ_QUAR_DOWN:
        return true; /* it still owes the rest of its quarantine */
    case LKQ_NEW:
        /* No earlier run_id: it may have forgotten just before lockd started, unless it
         * has been up longer than any lease lives (unknown uptime: it may have). */
        return !lk_quar_durable(p) &&
               (p->uptime_s < 0 || (uint64_t)p->uptime_s * 1000u < max_lease_ms);
    case LKQ_DOWN:
        return !lk_quar_durable(p) && (p->run_id[0] == '\0' || known_run_id[0] == '\0' ||
                                       strcmp(p->run_id, known_run_id) != 0);
    default:
        return false; /* COUNTED and QUARANTINED are not states a master becomes ready in */
    }
}

bool lk_quar_legal(lk_quar_state from, lk_quar_state to)
{
    switch (from) {
    case LKQ_NEW:
    case LKQ_DOWN:
        return to == LKQ_COUNTED || to == LKQ_QUARANTINED;
    case LKQ_COUNTED:
        return to == LKQ_DOWN;
    case LKQ_QUARANTINED:
        return to == LKQ_COUNTED || to == LKQ_QUAR_DOWN;
    case LKQ_QUAR_DOWN:
        return to == LKQ_QUARANTINED;
    default:
        return false;
    }
}

uint64_t lk_quar_bound_ms(uint64_t max_lease_ms, uint64_t largest_lease_ms, double drift)
{
    uint64_t b = CM_MIN(max_lease_ms, largest_lease_ms);
    return b == 0 ? 0 : b + (uint64_t)((double)b * drift) + 2;
}

size_t lk_quar_reads_needed(size_t n)
{
    size_t quorum = n / 2 + 1;
    return CM_MIN(n - quorum + 1, n - 1);
}

/* ---- states ---- */

static bool quarantined(lk_quar_state st)
{
    return st == LKQ_QUARANTINED || st == LKQ_QUAR_DOWN;
}

/* The one place a master's guard state changes: asserts the move is legal. */
static void qm_move(lkq_master *m, lk_quar_state to)
{
    lk_quar_state from = m->state;
    bool legal = lk_quar_legal(from, to);
    assert(legal && "illegal quarantine state change");
    (void)legal;
    m->q->n_quar += quarantined(to) && !quarantined(from);
    m->q->n_quar -= quarantined(from) && !quarantined(to);
    m->state = to;
    log_debug("redis master %s: guard %s -> %s", m->name, lk_quar_state_name[from],
              lk_quar_state_name[to]);
}

/* The restore job of m is abandoned: its replies still due are dropped. */
static void job_abandon(lkq_master *m)
{
    m->gen++;
    m->job = false;
    m->reads_started = m->reads_done = m->writes_pending = 0;
}

/* Looks at every quarantine from the loop now (a job can start or one may end). */
static void tick_now(lk_quar *q)
{
    event_active(q->tick, EV_TIMEOUT, 1);
}

static void tick_arm(lk_quar *q)
{
    if (!q->ticking) {
        struct timeval tv = cm_tv_from_ms(LKQ_TICK_MS);
        q->ticking = event_add(q->tick, &tv) == 0;
    }
}

/* ---- the restore job ---- */

static void scan_step(lk_quar *q, size_t b, size_t j, const char *cursor);

/* The job of master b may be done: every read it started (at least the n - quorum + 1
 * needed; all the connected others, so that several masters forgetting at once still leave
 * every majority a member that was read) is complete and acknowledged. */
static void job_check(lkq_master *m)
{
    if (m->job && m->reads_done >= lk_quar_reads_needed(m->q->n) &&
        m->reads_done >= m->reads_started && m->writes_pending == 0) {
        m->job = false;
        m->restored = true;
        log_debug("redis master %s: fences restored", m->name);
        tick_now(m->q);
    }
}

/* A reply of job (c->b, c->gen) that no longer matters, or an error: the job is
 * abandoned when it was still running. */
static lkq_master *cmd_job(const lkq_cmd *c, const redisReply *r, int want_type)
{
    lkq_master *m = &c->q->m[c->b];
    if (!m->job || m->gen != c->gen) {
        return NULL;
    }
    if (r == NULL || r->type != want_type) {
        log_debug("redis master %s: fence restore abandoned (%s)", c->q->m[c->b].name,
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        job_abandon(m);
        return NULL;
    }
    return m;
}

/* A page of fences was written to master b. */
static void write_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lkq_cmd *c = privdata;
    lkq_master *m = cmd_job(c, reply, REDIS_REPLY_INTEGER);
    if (m != NULL) {
        m->writes_pending--;
        c->q->restored_keys += (uint64_t)((redisReply *)reply)->integer;
        job_check(m);
    }
    free(c);
}

/* A lock check came back: the locks master b lacks may still be held through the vote it
 * lost; its quarantine lasts until the last of them has expired. */
static void check_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lkq_cmd *c = privdata;
    const redisReply *r = reply;
    lkq_master *m = cmd_job(c, r, REDIS_REPLY_ARRAY);
    if (m != NULL && r->elements != c->n) {
        job_abandon(m);
    } else if (m != NULL) {
        for (size_t k = 0; k < c->n; k++) {
            if (r->element[k]->type != REDIS_REPLY_INTEGER || r->element[k]->integer != 1) {
                m->pttl_end_ms = CM_MAX(m->pttl_end_ms, c->end_ms[k]);
            }
        }
        m->writes_pending--;
        job_check(m);
    }
    free(c);
}

/* Sends n (key, value) entries of page r, from element at, stride apart, to master b as one
 * EVAL of script (KEYS the keys, ARGV the values); a lock check (stride 3) also takes each
 * lock's expiry from its PTTL, the entry's third element. */
static bool send_page(lk_quar *q, lkq_master *m, const redisReply *r, size_t at, size_t n,
                      size_t stride, const char *script, redisCallbackFn *cb)
{
    if (n == 0) {
        return true;
    }
    size_t argc = 3 + 2 * n;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *len = malloc(argc * sizeof *len);
    lkq_cmd *c = malloc(sizeof *c + n * sizeof c->end_ms[0]);
    char nkeys[24];
    uint64_t now = cm_now_ms();
    bool ok = argv != NULL && len != NULL && c != NULL && m->ac != NULL;
    if (ok) {
        *c = (lkq_cmd){.q = q, .b = m->idx, .j = m->idx, .gen = m->gen, .n = n};
        snprintf(nkeys, sizeof nkeys, "%zu", n);
        argv[0] = "EVAL", len[0] = 4;
        argv[1] = script, len[1] = strlen(script);
        argv[2] = nkeys, len[2] = strlen(nkeys);
        for (size_t k = 0; k < n; k++) {
            const redisReply *key = r->element[at + stride * k],
                             *val = r->element[at + stride * k + 1];
            ok &= key->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING;
            argv[3 + k] = key->str, len[3 + k] = key->len;
            argv[3 + n + k] = val->str, len[3 + n + k] = val->len;
            c->end_ms[k] = 0;
            if (stride == 3 && r->element[at + stride * k + 2]->type == REDIS_REPLY_INTEGER) {
                uint64_t p = (uint64_t)CM_MAX(r->element[at + stride * k + 2]->integer, 0);
                c->end_ms[k] = now + p + (uint64_t)((double)p * q->drift) + 2;
            }
        }
        ok = ok && redisAsyncCommandArgv(m->ac, cb, c, (int)argc, argv, len) == REDIS_OK;
    }
    if (ok) {
        m->writes_pending++;
    } else {
        free(c);
    }
    free(argv);
    free(len);
    return ok;
}

static void scan_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lkq_cmd *c = privdata;
    const redisReply *r = reply;
    lkq_master *m = cmd_job(c, r, REDIS_REPLY_ARRAY);
    size_t nf = 0, nl = 0;
    if (m != NULL && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer >= 0) {
        nf = (size_t)r->element[1]->integer;
        nl = r->elements >= 2 + 2 * nf ? (r->elements - 2 - 2 * nf) / 3 : SIZE_MAX;
    }
    if (m != NULL) {
        /* the page's fences go to b; its locks are checked on b (see check_cb) */
        if (nl == SIZE_MAX || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            !send_page(c->q, m, r, 2, nf, 2, raise_script, write_cb) ||
            !send_page(c->q, m, r, 2 + 2 * nf, nl, 3, check_script, check_cb)) {
            job_abandon(m);
        } else {
            if (strcmp(r->element[0]->str, "0") == 0) {
                m->reads_done++;
                job_check(m);
            } else {
                scan_step(c->q, c->b, c->j, r->element[0]->str);
            }
        }
    }
    free(c);
}

/* One page of master j's keyspace for the job of master b. */
static void scan_step(lk_quar *q, size_t b, size_t j, const char *cursor)
{
    lkq_master *m = &q->m[b];
    lkq_cmd *c = malloc(sizeof *c);
    if (c == NULL || q->m[j].ac == NULL ||
        redisAsyncCommand(q->m[j].ac, scan_cb, c, "EVAL %s 0 %s %s %s %s", scan_script, cursor,
                          q->pattern, q->fence_prefix, q->lock_prefix) != REDIS_OK) {
        free(c);
        job_abandon(m);
        return;
    }
    *c = (lkq_cmd){.q = q, .b = b, .j = j, .gen = m->gen};
}

/* Starts m's restore job when enough other masters are ready to be read. */
static void job_start(lk_quar *q, lkq_master *m)
{
    size_t ready = 0;
    for (size_t j = 0; j < q->n; j++) {
        ready += j != m->idx && q->m[j].ac != NULL;
    }
    if (ready < lk_quar_reads_needed(q->n)) {
        return;
    }
    job_abandon(m); /* a fresh generation */
    m->job = true;
    for (size_t j = 0; j < q->n && m->job; j++) {
        if (j != m->idx && q->m[j].ac != NULL) {
            m->reads_started++;
            scan_step(q, m->idx, j, "0");
        }
    }
    job_check(m); /* n == 1: nothing to read */
}

/* ---- the timer ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_quar *q = arg;
    uint64_t now = cm_now_ms();
    q->ticking = false;
    for (size_t i = 0; i < q->n; i++) {
        lkq_master *m = &q->m[i];
        if (m->state != LKQ_QUARANTINED) {
            continue;
        }
        if (!m->restored && !m->job) {
            job_start(q, m);
        }
        uint64_t until = CM_MAX(m->returned_ms + m->bound_ms, m->pttl_end_ms);
        if (m->restored && now >= until) {
            qm_move(m, LKQ_COUNTED);
            log_info("redis master %s leaves quarantine after %llu ms (fences restored): counted "
                     "again",
                     m->name, (unsigned long long)(now - m->returned_ms));
            q->on_count(q->cb_arg, i);
        }
    }
    if (q->n_quar > 0) {
        tick_arm(q);
    }
}

/* ---- the guard's API ---- */

lk_quar *lk_quar_new(struct event_base *base, const lk_quar_opts *o)
{
    lk_quar *q = calloc(1, sizeof *q);
    const char *prefix = o->prefix ? o->prefix : "";
    if (q == NULL || strlen(prefix) > LKQ_PREFIX_MAX) {
        free(q);
        return NULL;
    }
    *q = (lk_quar){.base = base,
                   .enabled = o->enabled,
                   .n = o->n_masters,
                   .max_lease_ms = o->max_lease_ms,
                   .drift = o->drift,
                   .on_count = o->on_count,
                   .cb_arg = o->cb_arg};
    snprintf(q->fence_prefix, sizeof q->fence_prefix, "%sfence:", prefix);
    snprintf(q->lock_prefix, sizeof q->lock_prefix, "%slock:", prefix);
    /* SCAN's MATCH is a glob: the prefix's own glob characters are escaped. */
    char *p = q->pattern;
    for (const char *s = prefix; *s; s++) {
        if (strchr("*?[]\\", *s) != NULL) {
            *p++ = '\\';
        }
        *p++ = *s;
    }
    *p++ = '*';
    *p = '\0';
    q->m = calloc(q->n ? q->n : 1, sizeof *q->m);
    q->tick = evtimer_new(base, tick_cb, q);
    if (q->m == NULL || q->tick == NULL) {
        lk_quar_free(q);
        return NULL;
    }
    for (size_t i = 0; i < q->n; i++) {
        q->m[i] = (lkq_master){.q = q, .idx = i, .state = LKQ_NEW};
    }
    return q;
}

void lk_quar_set_name(lk_quar *q, size_t i, const char *name)
{
    snprintf(q->m[i].name, sizeof q->m[i].name, "%s", name);
}

void lk_quar_free(lk_quar *q)
{
    if (q == NULL) {
        return;
    }
    if (q->tick) {
        event_free(q->tick);
    }
    free(q->m);
    free(q);
}

static void probe_info_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lkq_master *m = privdata;
    const redisReply *r = reply;
    if (r != NULL && (r->type == REDIS_REPLY_STRING)) {
        lk_quar_parse_info(r->str, &m->probe);
    }
}

static void probe_fsync_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lkq_master *m = privdata;
    const redisReply *r = reply;
    /* ["appendfsync", "always"] (RESP2, as hiredis speaks it); an error (CONFIG renamed or refused
     * by ACL) leaves it not durable. */
    m->probe.fsync_always = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                            r->element[1]->type == REDIS_REPLY_STRING &&
                            strcmp(r->element[1]->str, "always") == 0;
}

void lk_quar_send_probe(lk_quar *q, size_t i, struct redisAsyncContext *ac)
{
    lkq_master *m = &q->m[i];
    m->probe = (lk_quar_probe){.uptime_s = -1};
    if (!q->enabled) {
        return;
    }
    /* Sent before the scripts are loaded: Redis answers in order, so the answers are in
     * when the last SCRIPT LOAD's is. A command that cannot be queued leaves the probe
     * empty: not durable, no run_id, which quarantines (the safe side). */
    (void)redisAsyncCommand(ac, probe_info_cb, m, "INFO server");
    (void)redisAsyncCommand(ac, probe_info_cb, m, "INFO persistence");
    (void)redisAsyncCommand(ac, probe_fsync_cb, m, "CONFIG GET appendfsync");
}

void lk_quar_ready(lk_quar *q, size_t i, struct redisAsyncContext *ac)
{
    lkq_master *m = &q->m[i];
    m->ac = ac;
    bool must =
        q->enabled && lk_quar_must_quarantine(m->state, m->run_id, &m->probe, q->max_lease_ms);
    bool new_run = m->probe.run_id[0] == '\0' || strcmp(m->probe.run_id, m->run_id) != 0;
    char was[LK_QUAR_RUNID_MAX];
    snprintf(was, sizeof was, "%s", m->run_id[0] ? m->run_id : "unknown");
    if (m->probe.run_id[0] != '\0') {
        snprintf(m->run_id, sizeof m->run_id, "%s", m->probe.run_id);
    }
    if (!must) {
        qm_move(m, LKQ_COUNTED);
        q->on_count(q->cb_arg, i);
        if (q->n_quar > 0) {
            tick_now(q); /* a job may have waited for one more master to read */
        }
        return;
    }
    lk_quar_state from = m->state;
    qm_move(m, LKQ_QUARANTINED);
    m->restored = false;
    job_abandon(m);
    /* Back from a drop inside its quarantine, same process: it owes the rest. Otherwise
     * (a new quarantine, or it forgot again meanwhile) the time starts now. */
    if (from != LKQ_QUAR_DOWN || (new_run && !lk_quar_durable(&m->probe))) {
        m->returned_ms = cm_now_ms();
        m->bound_ms = lk_quar_bound_ms(q->max_lease_ms, q->largest_lease_ms, q->drift);
        m->pttl_end_ms = 0;
        q->total++;
        log_warn("redis master %s %s without durable data (run_id %s -> %s, aof_enabled=%d, "
                 "appendfsync always=%d): quarantined, counted in no quorum for %llu ms (the "
                 "longest lease granted here), until every lock the other masters hold and it "
                 "lacks has expired and until its fences are raised to theirs",
                 m->name, from == LKQ_NEW ? "is up at start" : "came back", was,
                 m->probe.run_id[0] ? m->probe.run_id : "unknown", m->probe.aof_enabled,
                 m->probe.fsync_always, (unsigned long long)m->bound_ms);
    } else {
        log_info("redis master %s is back inside its quarantine: fences restored again", m->name);
    }
    tick_now(q);
}

void lk_quar_down(lk_quar *q, size_t i)
{
    if (q == NULL) {
        return;
    }
    lkq_master *m = &q->m[i];
    m->ac = NULL;
    if (m->state == LKQ_COUNTED) {
        qm_move(m, LKQ_DOWN);
    } else if (m->state == LKQ_QUARANTINED) {
        job_abandon(m);
        qm_move(m, LKQ_QUAR_DOWN);
    }
}

void lk_quar_note_lease(lk_quar *q, uint64_t lease_ms)
{
    if (q != NULL && lease_ms > q->largest_lease_ms) {
        q->largest_lease_ms = lease_ms;
    }
}

lk_quar_state lk_quar_master_state(const lk_quar *q, size_t i)
{
    return i < q->n ? q->m[i].state : LKQ_NEW;
}

size_t lk_quar_quarantined(const lk_quar *q)
{
    return q ? q->n_quar : 0;
}

uint64_t lk_quar_total(const lk_quar *q)
{
    return q ? q->total : 0;
}

uint64_t lk_quar_restored_total(const lk_quar *q)
{
    return q ? q->restored_keys : 0;
}
