/*
 * fake_ops: the scripted lk_ops of the lockd unit tests (see fake_ops.h). Timers are
 * heap blocks listed in one array; fk_reset frees those lk_locks left behind (none,
 * when it freed its own).
 */
#include "fake_ops.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FK_START_US   (1000ull * 1000 * 1000) /* 1000 s: far from 0, which means "never" */
#define FK_MAX_TIMERS 1024

fk_world fk;

struct lk_timer {
    lk_timer_fn fn;
    void *arg;
    bool armed;
    uint64_t due_us;
    uint64_t seq; /* arming order: equal due times fire in the order they were armed */
};

static lk_timer *timers[FK_MAX_TIMERS];
static size_t n_timers;
static uint64_t arm_seq;

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static fk_round *round_new(fk_kind kind, const char *resource, const char *token, const char *prev,
                           uint64_t lease_ms, lk_rl_cb cb, void *arg)
{
    ck_assert_uint_lt(fk.n_rounds, FK_MAX_ROUNDS);
    fk_round *r = &fk.rounds[fk.n_rounds++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    copy(r->resource, sizeof(r->resource), resource);
    copy(r->token, sizeof(r->token), token);
    copy(r->prev, sizeof(r->prev), prev);
    r->lease_ms = lease_ms;
    r->start_ms = fk_now_ms();
    r->log_at = fk.n_log;
    r->cb = cb;
    r->arg = arg;
    return r;
}

static lk_round *fk_acquire(void *ctx, const char *resource, const char *token,
                            const char *prev_token, const char *holder, uint64_t lease_ms,
                            lk_rl_cb cb, void *arg)
{
    (void)ctx;
    (void)holder;
    return (lk_round *)round_new(FK_ACQUIRE, resource, token, prev_token, lease_ms, cb, arg);
}

static lk_round *fk_renew(void *ctx, const char *resource, const char *token, uint64_t lease_ms,
                          lk_rl_cb cb, void *arg)
{
    (void)ctx;
    return (lk_round *)round_new(FK_RENEW, resource, token, NULL, lease_ms, cb, arg);
}

static void fk_release_token(void *ctx, const char *resource, const char *token)
{
    (void)ctx;
    ck_assert_uint_lt(fk.n_releases, FK_MAX_RELEASES);
    fk_release *rel = &fk.releases[fk.n_releases++];
    copy(rel->resource, sizeof(rel->resource), resource);
    copy(rel->token, sizeof(rel->token), token);
    rel->at_ms = fk_now_ms();
    rel->log_at = fk.n_log;
}

static void fk_cancel(void *ctx, lk_round *round)
{
    (void)ctx;
    fk_round *r = (fk_round *)round;
    if (!r)
        return;
    ck_assert_msg(!r->answered, "cancel of a round already answered");
    r->cancelled = true;
}

static void fk_publish_wanted(void *ctx, const char *resource, uint64_t oldest_ms, const char *from,
                              uint64_t seq)
{
    ck_assert_uint_gt(seq, fk.wanted_seq);
    fk.wanted_seq = seq;
    (void)ctx;
    (void)resource;
    fk.wanted++;
    fk.wanted_last_ms = fk_now_ms();
    fk.wanted_oldest_ms = oldest_ms;
    snprintf(fk.wanted_from, sizeof fk.wanted_from, "%s", from);
}

static uint64_t fk_wall(void *ctx)
{
    (void)ctx;
    return fk_now_ms();
}

static bool fk_has_quorum(void *ctx)
{
    (void)ctx;
    return fk.quorum_up;
}

static size_t fk_quorum(void *ctx)
{
    (void)ctx;
    return fk.quorum;
}

static uint64_t fk_clock(void *ctx)
{
    (void)ctx;
    return fk.now_us;
}

static lk_timer *fk_timer_new(void *ctx, lk_timer_fn fn, void *arg)
{
    (void)ctx;
    ck_assert_uint_lt(n_timers, FK_MAX_TIMERS);
    lk_timer *t = calloc(1, sizeof(*t));
    ck_assert_ptr_nonnull(t);
    t->fn = fn;
    t->arg = arg;
    timers[n_timers++] = t;
    return t;
}

static void fk_timer_arm(lk_timer *t, uint64_t ms)
{
    t->armed = true;
    t->due_us = fk.now_us + ms * 1000;
    t->seq = arm_seq++;
}

static void fk_timer_stop(lk_timer *t)
{
    t->armed = false;
}

static void fk_timer_free(lk_timer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < n_timers; i++) {
        if (timers[i] == t) {
            timers[i] = timers[--n_timers];
            free(t);
            return;
        }
    }
    ck_abort_msg("timer_free of an unknown timer");
}

const lk_ops fk_ops = {
    .acquire = fk_acquire,
    .renew = fk_renew,
    .release = fk_release_token,
    .cancel = fk_cancel,
    .publish_wanted = fk_publish_wanted,
    .has_quorum = fk_has_quorum,
    .quorum = fk_quorum,
    .now_us = fk_clock,
    .wall_ms = fk_wall,
    .timer_new = fk_timer_new,
    .timer_arm = fk_timer_arm,
    .timer_stop = fk_timer_stop,
    .timer_free = fk_timer_free,
};

void fk_reset(void)
{
    for (size_t i = 0; i < n_timers; i++)
        free(timers[i]);
    n_timers = 0;
    arm_seq = 0;
    memset(&fk, 0, sizeof(fk));
    fk.now_us = FK_START_US;
    fk.quorum_up = true;
    fk.quorum = 2;
}

uint64_t fk_now_ms(void)
{
    return fk.now_us / 1000;
}

void fk_advance(uint64_t ms)
{
    uint64_t end = fk.now_us + ms * 1000;
    for (;;) {
        lk_timer *next = NULL;
        for (size_t i = 0; i < n_timers; i++) {
            lk_timer *t = timers[i];
            if (t->armed && t->due_us <= end &&
                (!next || t->due_us < next->due_us ||
                 (t->due_us == next->due_us && t->seq < next->seq)))
                next = t;
        }
        if (!next)
            break;
        fk.now_us = next->due_us;
        next->armed = false;
        next->fn(next->arg); /* may free next */
    }
    fk.now_us = end;
}

size_t fk_timers_armed(void)
{
    size_t n = 0;
    for (size_t i = 0; i < n_timers; i++)
        n += timers[i]->armed;
    return n;
}

static void sess_send(lk_owner *owner, const char *line, size_t len)
{
    fk_sess *s = (fk_sess *)owner;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    ck_assert_uint_lt(s->n, 64);
    ck_assert_uint_lt(fk.n_log, FK_MAX_LOG);
    snprintf(s->lines[s->n++], FK_LINE, "%.*s", (int)len, line);
    fk.log[fk.n_log].to = s;
    snprintf(fk.log[fk.n_log++].line, FK_LINE, "%.*s", (int)len, line);
}

void fk_sess_init(fk_sess *s, const char *name)
{
    memset(s, 0, sizeof(*s));
    lk_owner_init(&s->owner, sess_send);
    copy(s->name, sizeof(s->name), name);
}

const char *fk_line(const fk_sess *s, size_t i)
{
    return i < s->n ? s->lines[i] : "";
}

const char *fk_last(const fk_sess *s)
{
    return s->n ? s->lines[s->n - 1] : "";
}

long fk_log_find(const fk_sess *s, const char *prefix)
{
    for (size_t i = 0; i < fk.n_log; i++)
        if (fk.log[i].to == s && strncmp(fk.log[i].line, prefix, strlen(prefix)) == 0)
            return (long)i;
    return -1;
}

size_t fk_open_rounds(void)
{
    size_t n = 0;
    for (size_t i = 0; i < fk.n_rounds; i++)
        n += !fk.rounds[i].answered && !fk.rounds[i].cancelled;
    return n;
}

fk_round *fk_last_round(void)
{
    ck_assert_uint_gt(fk.n_rounds, 0);
    return &fk.rounds[fk.n_rounds - 1];
}

fk_round *fk_acquire_of(const char *token)
{
    for (size_t i = 0; i < fk.n_rounds; i++) {
        fk_round *r = &fk.rounds[i];
        if (r->kind == FK_ACQUIRE && !r->answered && !r->cancelled && strcmp(r->token, token) == 0)
            return r;
    }
    return NULL;
}

void fk_answer(fk_round *r, lk_rl_outcome outcome, int64_t validity_ms, uint64_t fence,
               int64_t retry_after_ms)
{
    lk_rl_result res = {.outcome = outcome,
                        .fence = fence,
                        .validity_ms = validity_ms,
                        .retry_after_ms = retry_after_ms};
    fk_answer_res(r, &res);
}

void fk_answer_res(fk_round *r, const lk_rl_result *res)
{
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(!r->answered && !r->cancelled, "round of %s answered twice or cancelled",
                  r->token);
    r->answered = true;
    r->cb(r->arg, res);
}

size_t fk_releases_of(const char *token)
{
    size_t n = 0;
    for (size_t i = 0; i < fk.n_releases; i++)
        n += strcmp(fk.releases[i].token, token) == 0;
    return n;
}

void fk_token_of(const char *line, char out[40])
{
    const char *p = strstr(line, " OK ");
    out[0] = '\0';
    if (p)
        sscanf(p + 4, "%39s", out);
}
