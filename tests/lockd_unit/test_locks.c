/*
 * test_locks: lk_locks' rules with no network and no loop (issue 10): the lock table
 * runs over fake_ops, so every Redlock outcome (GRANTED / HELD / FAILED / NOQUORUM),
 * its moment, and time itself are scripted here. One Check case per rule, one ctest
 * entry per case (locks_<case>).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_rand.h"
#include "fake_ops.h"
#include "lk_locks.h"
#include "lk_metrics.h"

#define LEASE_WD               3000 /* watchdog.lease_ms */
#define RETRY_MS               10   /* retry_delay_ms */
#define LK_TEST_HEAD_START_MAX 15   /* lk_locks' LK_TURN_MAX: the longest head start of a turn */

static lk_locks *lk;
static lk_locks_opts opts;

static void setup(void)
{
    if (getenv("LOCKS_DEBUG")) /* every state move of the lock table, on stderr */
        cm_log_set_level(CM_LOG_DEBUG);
    lk_metrics_init();
    cm_rand_seed(10);
    fk_reset();
    opts = (lk_locks_opts){.watchdog_lease_ms = LEASE_WD,
                           .retry_delay_ms = RETRY_MS,
                           .lock_delay_ms = 0,
                           .max_waiters = 100,
                           .max_lease_ms = 60000,
                           .max_wait_ms = 60000};
}

static void open_locks(void)
{
    lk = lk_locks_new(&fk_ops, NULL, &opts);
    ck_assert_ptr_nonnull(lk);
}

/* Ends the sessions given (NULL-terminated) and frees the table: nothing may leak. */
static void close_locks(fk_sess *s, ...)
{
    va_list ap;
    va_start(ap, s);
    for (; s; s = va_arg(ap, fk_sess *))
        lk_locks_owner_end(lk, &s->owner);
    va_end(ap);
    lk_locks_free(lk);
    lk = NULL;
    fk_reset();
}

/* The sessions given (NULL-terminated), named a, b, c, ... in that order. */
static void sessions_named(fk_sess *s, ...)
{
    va_list ap;
    char name[4] = "a";
    va_start(ap, s);
    for (; s; s = va_arg(ap, fk_sess *), name[0]++)
        fk_sess_init(s, name);
    va_end(ap);
}

/* n sessions named a, b, c, ... */
static void sessions_init(fk_sess *s, int n)
{
    for (int i = 0; i < n; i++) {
        char name[4] = {(char)('a' + i), 0};
        fk_sess_init(&s[i], name);
    }
}

/* s[1..n) ACQUIRE res in that order (watchdog lease, waiting wait_ms), all tagged t. */
static void queue_behind(fk_sess *s, int n, const char *res, uint64_t wait_ms)
{
    for (int i = 1; i < n; i++)
        lk_locks_acquire(lk, &s[i].owner, "t", res, 0, wait_ms);
}

/* close_locks for an array of sessions. */
static void close_array(fk_sess *s, int n)
{
    for (int i = 0; i < n; i++)
        lk_locks_owner_end(lk, &s[i].owner);
    close_locks(NULL);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Answers r GRANTED with a validity of its whole lease. */
static void grant(fk_round *r)
{
    static uint64_t fence = 1;
    ck_assert_int_eq(r->kind, FK_ACQUIRE);
    fk_answer(r, LK_RL_GRANTED, (int64_t)r->lease_ms, fence++, 0);
}

/* s ACQUIREs res (watchdog lease, waiting) and the attempt is granted: tok = its token. */
static void take(fk_sess *s, const char *tag, const char *res, char tok[40])
{
    size_t n = fk.n_rounds;
    lk_locks_acquire(lk, &s->owner, tag, res, 0, 10000);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, "");
    grant(r);
    ck_assert_msg(starts_with(fk_last(s), tag), "%s got '%s'", s->name, fk_last(s));
    fk_token_of(fk_last(s), tok);
    ck_assert_str_eq(tok, r->token);
}

/* from RELEASEs res (token ftok): the next local waiter `to` must get it by a handoff
 * round that offers ftok for takeover, started at once; tok = to's token. */
static void handoff(fk_sess *from, const char *res, char ftok[40], fk_sess *to, char tok[40])
{
    size_t n = fk.n_rounds, rel = fk.n_releases, got = to->n;
    lk_locks_release(lk, &from->owner, "rel", res, ftok);
    ck_assert_str_eq(fk_last(from), "rel OK");
    ck_assert_msg(fk.n_rounds == n + 1, "%s's RELEASE started no handoff round", from->name);
    ck_assert_uint_eq(fk.n_releases, rel); /* no gap: nothing was released to the world */
    fk_round *r = fk_last_round();
    ck_assert_int_eq(r->kind, FK_ACQUIRE);
    ck_assert_str_eq(r->prev, ftok);
    ck_assert_uint_eq(r->start_ms, fk_now_ms());
    ck_assert_uint_eq(to->n, got);
    grant(r);
    ck_assert_uint_eq(to->n, got + 1);
    ck_assert_msg(strstr(fk_last(to), " OK ") != NULL, "%s got '%s'", to->name, fk_last(to));
    fk_token_of(fk_last(to), tok);
    ck_assert_str_eq(tok, r->token);
}

/* ---- FIFO ---------------------------------------------------------------- */

START_TEST(test_fifo)
{
    fk_sess a, b, c, d, e, f, g;
    fk_sess *order[] = {&a, &b, &c, &d};
    char tok[4][40];
    sessions_named(&a, &b, &c, &d, &e, &f, &g, NULL);
    open_locks();

    /* Held here: the waiters queue behind the holder and never poll our own lock. */
    take(&a, "a1", "R", tok[0]);
    lk_locks_acquire(lk, &b.owner, "b1", "R", 0, 5000);
    lk_locks_acquire(lk, &c.owner, "c1", "R", 0, 5000);
    lk_locks_acquire(lk, &d.owner, "d1", "R", 0, 5000);
    ck_assert_uint_eq(fk_open_rounds(), 0);
    for (int i = 1; i < 4; i++) {
        fk_advance(10);
        handoff(order[i - 1], "R", tok[i - 1], order[i], tok[i]);
        for (int j = i + 1; j < 4; j++)
            ck_assert_uint_eq(order[j]->n, 0); /* the later ones still wait */
    }
    ck_assert(starts_with(fk_line(&b, 0), "b1 OK "));
    ck_assert(starts_with(fk_line(&c, 0), "c1 OK "));
    ck_assert(starts_with(fk_line(&d, 0), "d1 OK "));

    /* Held by another process: one attempt at a time, always the head waiter's. */
    lk_locks_acquire(lk, &e.owner, "e1", "S", 0, 300);
    fk_round *r = fk_last_round();
    char etok[40];
    snprintf(etok, sizeof etok, "%s", r->token);
    fk_answer(r, LK_RL_HELD, 0, 0, 1000);
    lk_locks_acquire(lk, &f.owner, "f1", "S", 0, 5000);
    lk_locks_acquire(lk, &g.owner, "g1", "S", 0, 5000);
    ck_assert_uint_eq(fk_open_rounds(), 0); /* the poll is armed: nobody else tries */
    fk_advance(260);                        /* the poll: capped at 250 ms + jitter */
    ck_assert_uint_eq(fk_open_rounds(), 1);
    ck_assert_str_eq(fk_last_round()->token, etok);
    /* e's wait ends while its attempt is out: cancelled, and f (next in line) goes. */
    fk_advance(40);
    ck_assert_str_eq(fk_last(&e), "e1 TIMEOUT");
    ck_assert(fk_last_round() != r);
    ck_assert_uint_eq(fk_open_rounds(), 1);
    r = fk_last_round();
    ck_assert_str_ne(r->token, etok);
    grant(r);
    ck_assert(starts_with(fk_last(&f), "f1 OK "));
    ck_assert_uint_eq(g.n, 0);
    close_locks(&a, &b, &c, &d, &e, &f, &g, NULL);
}
END_TEST

/* ---- handoff on RELEASE -------------------------------------------------- */

START_TEST(test_handoff)
{
    fk_sess a, b, c;
    char ta[40], tb[40];
    sessions_named(&a, &b, &c, NULL);
    open_locks();

    take(&a, "a1", "R", ta);
    lk_locks_acquire(lk, &b.owner, "b1", "R", 0, 5000);
    fk_advance(5);
    handoff(&a, "R", ta, &b, tb); /* one round, at once, taking over a's token */
    ck_assert_uint_eq(lk_stats.handoffs_total, 1);
    ck_assert_uint_eq(lk_stats.grants_total, 2);

    /* A handoff round that fails keeps offering the old token on every retry; when
     * the last waiter gives up, the old token is released (it may sit on masters). */
    lk_locks_acquire(lk, &c.owner, "c1", "R", 0, 100);
    ck_assert_uint_eq(fk_open_rounds(), 0);
    lk_locks_release(lk, &b.owner, "rel", "R", tb);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, tb);
    fk_answer(r, LK_RL_FAILED, 0, 0, 0);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(fk_open_rounds(), 0);
    fk_advance(RETRY_MS); /* the retry delay is 1..retry_delay_ms */
    ck_assert_uint_eq(fk_open_rounds(), 1);
    r = fk_last_round();
    ck_assert_str_eq(r->prev, tb);
    ck_assert_uint_eq(fk_releases_of(tb), 0);
    fk_advance(100);
    ck_assert_str_eq(fk_last(&c), "c1 TIMEOUT");
    ck_assert(r->cancelled);
    ck_assert_uint_eq(fk_releases_of(tb), 1);
    ck_assert_uint_eq(fk_timers_armed(), 0);
    close_locks(&a, &b, &c, NULL);
}
END_TEST

/* ---- yield to other lockds: the chain limit ------------------------------ */

/* n sessions: s[0] takes R (tok0), the rest queue behind it in order. */
static void chain_start(fk_sess *s, int n, char tok0[40], uint64_t wait_ms)
{
    sessions_init(s, n);
    open_locks();
    take(&s[0], "t", "R", tok0);
    queue_behind(s, n, "R", wait_ms);
}

START_TEST(test_yield_chain)
{
    fk_sess s[8];
    char tok[8][40];
    /* One long hold, then a handoff: a single handoff never pays the head start. */
    chain_start(s, 8, tok[0], 10000);
    lk_locks_on_wanted(lk, "R");
    fk_advance(300);
    lk_locks_on_wanted(lk, "R");
    handoff(&s[0], "R", tok[0], &s[1], tok[1]); /* 1 handoff, chain 300 ms old */
    fk_advance(10);
    handoff(&s[1], "R", tok[1], &s[2], tok[2]); /* 2 handoffs */
    fk_advance(10);
    /* 2 handoffs and 320 ms, another lockd wants it: a release through Redis, then a
     * head start for the other lockds before our next waiter tries. */
    size_t n = fk.n_rounds;
    lk_locks_release(lk, &s[2].owner, "rel", "R", tok[2]);
    ck_assert_uint_eq(fk.n_rounds, n);
    ck_assert_uint_eq(fk_releases_of(tok[2]), 1);
    fk_advance(1);
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(4); /* the head start is 2..5 ms */
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, ""); /* a plain attempt, not a handoff */
    grant(r);
    fk_token_of(fk_last(&s[3]), tok[3]);
    ck_assert_str_eq(tok[3], r->token);

    /* A chain that is long but young goes on: 2 handoffs in 20 ms. */
    lk_locks_on_wanted(lk, "R");
    fk_advance(10);
    handoff(&s[3], "R", tok[3], &s[4], tok[4]);
    fk_advance(10);
    handoff(&s[4], "R", tok[4], &s[5], tok[5]);
    fk_advance(10);
    handoff(&s[5], "R", tok[5], &s[6], tok[6]); /* 3 handoffs, 30 ms */
    fk_advance(250);
    lk_locks_on_wanted(lk, "R");
    n = fk.n_rounds;
    lk_locks_release(lk, &s[6].owner, "rel", "R", tok[6]); /* now old too: yields */
    ck_assert_uint_eq(fk.n_rounds, n);
    ck_assert_uint_eq(fk_releases_of(tok[6]), 1);
    fk_advance(5);
    grant(fk_last_round());
    fk_token_of(fk_last(&s[7]), tok[7]);
    lk_locks_release(lk, &s[7].owner, "rel", "R", tok[7]);
    close_array(s, 8);
}
END_TEST

START_TEST(test_chain_unwanted)
{
    fk_sess s[6];
    char tok[6][40];
    /* With no other lockd asking, a chain goes on however long and old it gets; a
     * "want" notice counts for 1 s only. */
    chain_start(s, 6, tok[0], 60000);
    for (int i = 1; i < 4; i++) {
        fk_advance(200);
        handoff(&s[i - 1], "R", tok[i - 1], &s[i], tok[i]);
    }
    lk_locks_on_wanted(lk, "R");
    fk_advance(1000);
    handoff(&s[3], "R", tok[3], &s[4], tok[4]); /* the notice is 1000 ms old: stale */
    ck_assert_uint_eq(fk.n_releases, 0);
    close_array(s, 6);
}
END_TEST

/* ---- the head start after a release another lockd waits for -------------- */

START_TEST(test_head_start)
{
    fk_sess a, b;
    char ta[40], tb[40];
    sessions_named(&a, &b, NULL);
    open_locks();

    /* Another lockd wants R, nobody waits here: our release gives it a head start,
     * even against the same client ACQUIREing again right away. */
    take(&a, "a1", "R", ta);
    lk_locks_on_wanted(lk, "R");
    size_t n = fk.n_rounds;
    lk_locks_release(lk, &a.owner, "rel", "R", ta);
    ck_assert_uint_eq(fk_releases_of(ta), 1);
    lk_locks_acquire(lk, &a.owner, "a2", "R", 0, 5000);
    ck_assert_uint_eq(fk.n_rounds, n);
    /* Our own release comes back as notices from a quorum of masters: they must not
     * end the head start. */
    lk_locks_on_released(lk, "R");
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(1);
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(4);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, "");
    fk_answer(r, LK_RL_HELD, 0, 0, 2000); /* the other lockd took it */
    ck_assert_uint_eq(a.n, 2);
    lk_locks_owner_end(lk, &a.owner);

    /* Nobody else wants S: a release and a new ACQUIRE go straight to Redlock. */
    take(&b, "b1", "S", tb);
    n = fk.n_rounds;
    lk_locks_release(lk, &b.owner, "rel", "S", tb);
    lk_locks_acquire(lk, &b.owner, "b2", "S", 0, 5000);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    grant(fk_last_round());
    fk_token_of(fk_last(&b), tb);

    /* A head start nobody here queues behind ends quietly and frees the resource. */
    lk_locks_on_wanted(lk, "S");
    lk_locks_release(lk, &b.owner, "rel", "S", tb);
    ck_assert_uint_eq(fk_timers_armed(), 1);
    fk_advance(5);
    ck_assert_uint_eq(fk_timers_armed(), 0);
    close_locks(&a, &b, NULL);
}
END_TEST

/* ---- grants follow arrival across lockds --------------------------------- */

/* A "want" notice from another lockd: its oldest waiter arrived at oldest_ms; seq
 * numbers the notices of each lockd (their copies come through every master). */
static void remote_wants_seq(const char *res, uint64_t oldest_ms, const char *from, uint64_t seq)
{
    char notice[128];
    snprintf(notice, sizeof notice, "%s %llu %s %llu", res, (unsigned long long)oldest_ms, from,
             (unsigned long long)seq);
    lk_locks_on_wanted(lk, notice);
}

static void remote_wants(const char *res, uint64_t oldest_ms, const char *from)
{
    static uint64_t seq;
    remote_wants_seq(res, oldest_ms, from, ++seq);
}

START_TEST(test_arrival_order)
{
    fk_sess s[3], *a = &s[0], *b = &s[1], *c = &s[2];
    char ta[40], tb[40];
    sessions_init(s, 3);
    open_locks();
    take(a, "a1", "R", ta);
    fk_advance(1);
    lk_locks_acquire(lk, &b->owner, "b1", "R", 0, 10000); /* arrives at t+1 */
    uint64_t b_at = fk_now_ms();
    fk_advance(2);
    remote_wants("R", fk_now_ms(), "00000000000000aa"); /* a remote waiter at t+3 */
    fk_advance(2);
    lk_locks_acquire(lk, &c->owner, "c1", "R", 0, 10000); /* arrives at t+5 */
    uint64_t c_at = fk_now_ms();
    ck_assert_uint_lt(b_at, c_at);

    /* b came before the remote waiter: a local handoff, however short the chain. */
    handoff(a, "R", ta, b, tb);
    /* c came after it: b's release goes through Redis, our next waiter waits out the
     * head start, and the other lockds learn when c arrived (so they give it back). */
    size_t n = fk.n_rounds, w = fk.wanted;
    lk_locks_release(lk, &b->owner, "rel", "R", tb);
    ck_assert_str_eq(fk_last(b), "rel OK");
    ck_assert_uint_eq(fk_releases_of(tb), 1);
    ck_assert_uint_eq(fk.n_rounds, n);
    ck_assert_uint_eq(fk.wanted, w + 1);
    ck_assert_uint_eq(fk.wanted_oldest_ms, c_at);
    ck_assert_uint_eq(strlen(fk.wanted_from), 16);
    ck_assert_uint_eq(lk_stats.yields_total, 1);
    fk_advance(LK_TEST_HEAD_START_MAX);
    ck_assert_uint_eq(fk.n_rounds, n + 1); /* the head start is over: c tries */
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, "");
    grant(r);
    ck_assert(starts_with(fk_last(c), "c1 OK "));
    close_array(s, 3);
}
END_TEST

START_TEST(test_arrival_notices)
{
    fk_sess a, b, c, d;
    char ta[40], tb[40], tc[40];
    sessions_named(&a, &b, &c, &d, NULL);
    open_locks();
    take(&a, "a1", "R", ta);
    lk_locks_acquire(lk, &b.owner, "b1", "R", 0, 10000);
    lk_locks_acquire(lk, &c.owner, "c1", "R", 0, 10000);
    lk_locks_acquire(lk, &d.owner, "d1", "R", 0, 10000);
    uint64_t local_at = fk_now_ms();
    /* Our own notice, back through Redis: never a reason to yield. */
    fk_advance(5);
    char self[128];
    snprintf(self, sizeof self, "R %llu ", (unsigned long long)(local_at - 1));
    /* the id is only known from a notice of ours: make one (a waits for S, held elsewhere) */
    lk_locks_acquire(lk, &a.owner, "a2", "S", 0, 10000);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 5000);
    ck_assert_uint_eq(strlen(fk.wanted_from), 16);
    strcat(self, fk.wanted_from);
    lk_locks_on_wanted(lk, self);
    handoff(&a, "R", ta, &b, tb);

    /* A remote lockd's waiter from before ours: yield... unless that lockd's newer
     * notice (its old waiter was served) says its oldest now came after ours. */
    remote_wants_seq("R", local_at - 1, "00000000000000bb", 100);
    remote_wants_seq("R", local_at + 3, "00000000000000bb", 101);
    remote_wants_seq("R", local_at - 1, "00000000000000bb", 100); /* a late copy: ignored */
    handoff(&b, "R", tb, &c, tc);
    /* Another lockd's older waiter is kept against a third lockd's later one. */
    remote_wants("R", local_at - 2, "00000000000000cc");
    remote_wants_seq("R", local_at + 1, "00000000000000bb", 102);
    /* ... and "0" from cc says it has nobody waiting any more. */
    char clear[64];
    snprintf(clear, sizeof clear, "R 0 00000000000000cc");
    lk_locks_on_wanted(lk, clear);
    size_t rel = fk.n_releases;
    lk_locks_release(lk, &c.owner, "rel", "R", tc); /* bb's local_at+1 > d's local_at */
    ck_assert_uint_eq(fk.n_releases, rel);          /* handed to d: no yield */
    ck_assert_uint_eq(lk_stats.yields_total, 0);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, tc);
    grant(r);
    ck_assert(starts_with(fk_last(&d), "d1 OK "));
    close_locks(&a, &b, &c, &d, NULL);
}
END_TEST

START_TEST(test_turn_back)
{
    fk_sess a, b;
    char ta[40];
    sessions_named(&a, &b, NULL);
    open_locks();
    take(&a, "a1", "R", ta);
    remote_wants("R", fk_now_ms(), "00000000000000aa");
    fk_advance(1);
    lk_locks_acquire(lk, &b.owner, "b1", "R", 0, 10000);
    size_t n = fk.n_rounds;
    lk_locks_release(lk, &a.owner, "rel", "R", ta); /* yields: the remote came first */
    ck_assert_uint_eq(lk_stats.yields_total, 1);
    /* Our own release comes back from each master (3 of them): skipped, the head start
     * goes on. */
    for (int i = 0; i < 3; i++)
        lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n);
    /* The other lockd served its waiter and released: a quorum of its notices ends our
     * head start at once (no race with its own waiters at the end of it). */
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n);
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    ck_assert_uint_eq(fk_last_round()->start_ms, fk_now_ms());
    grant(fk_last_round());
    ck_assert(starts_with(fk_last(&b), "b1 OK "));
    close_locks(&a, &b, NULL);
}
END_TEST

START_TEST(test_legacy_notice)
{
    fk_sess a;
    char ta[40];
    sessions_named(&a, NULL);
    open_locks();
    /* Our waiter finds R held elsewhere: we announce it, in both forms. The short form
     * ("want R", also what lockds of before issue 11 send) comes back to us too and
     * cannot be told from a remote one: while we do not hold R it does not count. */
    lk_locks_acquire(lk, &a.owner, "a1", "R", 0, 5000);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 100);
    lk_locks_on_wanted(lk, "R");
    fk_advance(100 + RETRY_MS + 1); /* the poll */
    grant(fk_last_round());
    fk_token_of(fk_last(&a), ta);
    lk_locks_release(lk, &a.owner, "rel", "R", ta);
    ck_assert_uint_eq(fk_timers_armed(), 0); /* no head start for nobody */
    /* While a local session holds R, the short form counts, as it always did. */
    take(&a, "a2", "R", ta);
    lk_locks_on_wanted(lk, "R");
    lk_locks_release(lk, &a.owner, "rel", "R", ta);
    ck_assert_uint_eq(fk_timers_armed(), 1); /* the head start */
    fk_advance(LK_TEST_HEAD_START_MAX);
    close_locks(&a, NULL);
}
END_TEST

/* ---- held elsewhere: the "want" notice, the poll, the release wake-up ------- */

START_TEST(test_want_notice)
{
    fk_sess a, b;
    sessions_named(&a, &b, NULL);
    open_locks();

    /* Our waiter finds R held by another process: the other lockds are told, at most
     * once per 100 ms per resource. */
    lk_locks_acquire(lk, &a.owner, "a1", "R", 0, 5000);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 5000);
    ck_assert_uint_eq(fk.wanted, 1);
    lk_locks_on_released(lk, "R"); /* a quorum of release notices: try again now */
    lk_locks_on_released(lk, "R");
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 5000);
    ck_assert_uint_eq(fk.wanted, 1); /* 0 ms after the last notice */
    fk_advance(260);                 /* the poll */
    ck_assert_uint_eq(fk_open_rounds(), 1);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 5000);
    ck_assert_uint_eq(fk.wanted, 2);
    ck_assert_uint_eq(fk.wanted_last_ms, fk_now_ms());

    /* No waiter left (wait_ms 0 answers TIMEOUT at once): nobody to announce. */
    lk_locks_acquire(lk, &b.owner, "b1", "S", 0, 0);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 5000);
    ck_assert_str_eq(fk_last(&b), "b1 TIMEOUT");
    ck_assert_uint_eq(fk.wanted, 2);
    close_locks(&a, &b, NULL);
}
END_TEST

START_TEST(test_wakeup)
{
    fk_sess a;
    sessions_named(&a, NULL);
    open_locks();

    /* Held elsewhere: the safety-net poll comes after the holder's PTTL, capped at
     * 250 ms, plus up to retry_delay_ms of jitter. */
    lk_locks_acquire(lk, &a.owner, "a1", "R", 0, 5000);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 100);
    fk_advance(99);
    ck_assert_uint_eq(fk_open_rounds(), 0);
    fk_advance(RETRY_MS + 1);
    ck_assert_uint_eq(fk_open_rounds(), 1);
    ck_assert_uint_eq(lk_stats.polls_total, 1);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 60000);
    fk_advance(249);
    ck_assert_uint_eq(fk_open_rounds(), 0);

    /* A release elsewhere wakes the waiter once a quorum (2) of masters has said so
     * within 50 ms: on the first notice the key is still on the others. */
    size_t n = fk.n_rounds;
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(1);
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    ck_assert_uint_eq(lk_stats.wakeups_total, 1);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 60000);
    /* Notices 60 ms apart belong to different releases: no wake-up. */
    lk_locks_on_released(lk, "R");
    fk_advance(60);
    lk_locks_on_released(lk, "R");
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    fk_advance(200); /* the poll still comes */
    ck_assert_uint_eq(fk.n_rounds, n + 2);
    grant(fk_last_round());
    ck_assert(starts_with(fk_last(&a), "a1 OK "));
    close_locks(&a, NULL);
}
END_TEST

/* holder takes res (tag a1; tok = its token), waiter queues behind it (b1), and time
 * moves to the first watchdog renewal, returned (open). */
static fk_round *held_until_renewal(fk_sess *holder, fk_sess *waiter, const char *res, char tok[40])
{
    take(holder, "a1", res, tok);
    lk_locks_acquire(lk, &waiter->owner, "b1", res, 0, 10000);
    fk_advance(LEASE_WD / 3);
    fk_round *rn = fk_last_round();
    ck_assert_int_eq(rn->kind, FK_RENEW);
    ck_assert_str_eq(rn->token, tok);
    return rn;
}

/* ---- LOST before anyone else is granted ---------------------------------- */

START_TEST(test_lost_before_grant)
{
    fk_sess a, b, c, d, e, f;
    char ta[40], tc[40], te[40], tok[40];
    sessions_named(&a, &b, &c, &d, &e, &f, NULL);
    open_locks();

    /* The watchdog's renewal gets no answer until validity is gone (it waits for
     * admission, or for slow masters): at the deadline a is told LOST, the renewal is
     * cancelled, and only then does the lock move to b (the handoff round starts after). */
    fk_round *rn = held_until_renewal(&a, &b, "R", ta);
    fk_advance(LEASE_WD);
    ck_assert(rn->cancelled);
    ck_assert_int_ge(fk_log_find(&a, "* LOST R "), 0);
    long lost = fk_log_find(&a, "* LOST R ");
    ck_assert_int_ge(lost, 0);
    fk_round *r = fk_last_round();
    ck_assert_int_eq(r->kind, FK_ACQUIRE);
    ck_assert_str_eq(r->prev, ta);
    ck_assert_int_gt((long)r->log_at, lost);
    grant(r);
    ck_assert_int_gt(fk_log_find(&b, "b1 OK "), lost);
    ck_assert_uint_eq(lk_stats.lost_total, 1);

    /* The session expires (lock_delay_ms 0): LOST ... session first, then the handoff. */
    take(&c, "c1", "S", tc);
    lk_locks_acquire(lk, &d.owner, "d1", "S", 0, 10000);
    lk_locks_owner_expire(lk, &c.owner, 5000);
    lost = fk_log_find(&c, "* LOST S ");
    ck_assert_int_ge(lost, 0);
    r = fk_last_round();
    ck_assert_str_eq(r->prev, tc);
    ck_assert_int_gt((long)r->log_at, lost);
    grant(r);
    ck_assert_int_gt(fk_log_find(&d, "d1 OK "), lost);

    /* A RENEW refused by the masters: its LOST goes out before the handoff. */
    take(&e, "e1", "T", te);
    lk_locks_acquire(lk, &f.owner, "f1", "T", 0, 10000);
    lk_locks_renew(lk, &e.owner, "e2", "T", te, 0);
    fk_answer(fk_last_round(), LK_RL_HELD, 0, 0, 0);
    lost = fk_log_find(&e, "e2 LOST");
    ck_assert_int_ge(lost, 0);
    r = fk_last_round();
    ck_assert_str_eq(r->prev, te);
    ck_assert_int_gt((long)r->log_at, lost);
    grant(r);
    fk_token_of(fk_last(&f), tok);
    ck_assert_str_eq(tok, r->token);
    close_locks(&a, &b, &c, &d, &e, &f, NULL);
}
END_TEST

/* ---- session expiry ------------------------------------------------------ */

START_TEST(test_session_expire)
{
    fk_sess a, b, c, d, e;
    char ta[40], tb[40], td[40], tok[40];
    sessions_named(&a, &b, &c, &d, &e, NULL);
    opts.lock_delay_ms = 200;
    open_locks();

    take(&a, "a1", "R", ta);
    take(&b, "b1", "T", tb);
    lk_locks_acquire(lk, &a.owner, "a2", "T", 0, 5000); /* a waits for T */
    lk_locks_acquire(lk, &c.owner, "c1", "R", 0, 5000); /* c waits for R */
    fk_advance(10);
    size_t n = fk.n_rounds;
    lk_locks_owner_expire(lk, &a.owner, 4321);
    /* Told in this order: LOST per lock, ERR SESSION per waiting ACQUIRE, then nothing. */
    char want[128];
    snprintf(want, sizeof want, "* LOST R %s session", ta);
    ck_assert_uint_eq(a.n, 3);
    ck_assert_str_eq(fk_line(&a, 1), want);
    ck_assert_str_eq(fk_line(&a, 2), "a2 ERR SESSION session expired after 4321 ms of silence");
    ck_assert(a.owner.ended);
    ck_assert_uint_eq(a.owner.n_holds + a.owner.n_waiters, 0);
    ck_assert_uint_eq(lk_stats.lost_total, 1);
    /* The lock stays lock_delay_ms without an owner, then goes to the next waiter. */
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(199);
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(1);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    fk_round *r = fk_last_round();
    ck_assert_str_eq(r->prev, ta);
    grant(r);
    ck_assert(starts_with(fk_last(&c), "c1 OK "));
    ck_assert_uint_eq(a.n, 3);
    /* a's wait for T is gone: b's release finds no local waiter. */
    lk_locks_release(lk, &b.owner, "rel", "T", tb);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    ck_assert_uint_eq(fk_releases_of(tb), 1);

    /* The delay never outlives the lock's validity (100 ms here). */
    lk_locks_acquire(lk, &d.owner, "d1", "S", 0, 10000);
    fk_answer(fk_last_round(), LK_RL_GRANTED, 100, 9, 0);
    fk_token_of(fk_last(&d), td);
    lk_locks_acquire(lk, &e.owner, "e1", "S", 0, 10000);
    fk_advance(10);
    n = fk.n_rounds;
    lk_locks_owner_expire(lk, &d.owner, 7000);
    snprintf(want, sizeof want, "* LOST S %s session", td);
    ck_assert_str_eq(fk_last(&d), want);
    fk_advance(89);
    ck_assert_uint_eq(fk.n_rounds, n);
    fk_advance(1);
    ck_assert_uint_eq(fk.n_rounds, n + 1);
    ck_assert_str_eq(fk_last_round()->prev, td);
    grant(fk_last_round());
    fk_token_of(fk_last(&e), tok);
    ck_assert_str_eq(tok, fk_last_round()->token);
    close_locks(&a, &b, &c, &d, &e, NULL);
}
END_TEST

static void add_case(Suite *s, const char *name, const TTest *t)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

/* ---- LOST reasons (SPEC 2b) ----------------------------------------------- */

/* A watchdog renewal refused by a majority (HELD) is a loss at once, long before
 * validity ends: `* LOST R <token> renew_refused`, then the handoff; a refusal by a
 * REVOKE's tombstone says `revoked`. Timeouts (FAILED) stay a retry. */
START_TEST(test_renew_refused)
{
    fk_sess a, b, c;
    char ta[40], tc[40], want[80];
    sessions_named(&a, &b, &c, NULL);
    open_locks();
    fk_round *rn = held_until_renewal(&a, &b, "R", ta);
    fk_answer(rn, LK_RL_FAILED, 0, 0, 0);
    ck_assert_int_lt(fk_log_find(&a, "* LOST"), 0); /* a timeout: try again */
    fk_advance(RETRY_MS);
    rn = fk_last_round();
    ck_assert_int_eq(rn->kind, FK_RENEW);
    fk_answer(rn, LK_RL_HELD, 0, 0, 0);
    snprintf(want, sizeof want, "* LOST R %s renew_refused", ta);
    long lost = fk_log_find(&a, want);
    ck_assert_int_ge(lost, 0);
    fk_round *r = fk_last_round();
    ck_assert_int_eq(r->kind, FK_ACQUIRE);
    ck_assert_int_gt((long)r->log_at, lost);
    grant(r);
    ck_assert_uint_eq(lk_stats.lost_by_reason[LK_LOST_RENEW_REFUSED], 1);

    take(&c, "c1", "S", tc);
    fk_advance(LEASE_WD / 3);
    lk_rl_result res = {.outcome = LK_RL_HELD, .revoked = true};
    fk_answer_res(fk_last_round(), &res);
    snprintf(want, sizeof want, "* LOST S %s revoked", tc);
    ck_assert_int_ge(fk_log_find(&c, want), 0);
    ck_assert_uint_eq(lk_stats.lost_by_reason[LK_LOST_REVOKED], 1);
    close_locks(&a, &b, &c, NULL);
}
END_TEST

/* A fixed lease that runs out: `* LOST F <token> expired` at the end of its validity,
 * and the handoff only drift (lease x clock_drift_factor + 2 ms) later. */
START_TEST(test_fixed_expired)
{
    fk_sess a, b;
    char ta[40], want[80];
    sessions_named(&a, &b, NULL);
    opts.clock_drift_factor = 0.1; /* 1000 ms lease: 102 ms */
    open_locks();
    lk_locks_acquire(lk, &a.owner, "a1", "F", 1000, 0);
    fk_round *r = fk_last_round();
    fk_answer(r, LK_RL_GRANTED, 898, 7, 0);
    fk_token_of(fk_last(&a), ta);
    lk_locks_acquire(lk, &b.owner, "b1", "F", 0, 10000);
    size_t rounds = fk.n_rounds;
    fk_advance(897);
    ck_assert_int_lt(fk_log_find(&a, "* LOST"), 0);
    fk_advance(1);
    snprintf(want, sizeof want, "* LOST F %s expired", ta);
    long lost = fk_log_find(&a, want);
    ck_assert_int_ge(lost, 0);
    lk_locks_renew(lk, &a.owner, "a2", "F", ta, 0); /* not a's any more */
    ck_assert_str_eq(fk_last(&a), "a2 LOST");
    fk_advance(101);
    ck_assert_uint_eq(fk.n_rounds, rounds); /* still inside the margin */
    fk_advance(1);
    ck_assert_uint_eq(fk.n_rounds, rounds + 1);
    r = fk_last_round();
    ck_assert_str_eq(r->prev, ta);
    ck_assert_int_gt((long)r->log_at, lost);
    grant(r);
    ck_assert(starts_with(fk_last(&b), "b1 OK "));
    ck_assert_uint_eq(lk_stats.lost_by_reason[LK_LOST_EXPIRED], 1);
    close_locks(&a, &b, NULL);
}
END_TEST

int main(void)
{
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"fifo", test_fifo},
        {"handoff", test_handoff},
        {"yield_chain", test_yield_chain},
        {"chain_unwanted", test_chain_unwanted},
        {"head_start", test_head_start},
        {"want_notice", test_want_notice},
        {"wakeup", test_wakeup},
        {"lost_before_grant", test_lost_before_grant},
        {"session_expire", test_session_expire},
        {"arrival_order", test_arrival_order},
        {"arrival_notices", test_arrival_notices},
        {"turn_back", test_turn_back},
        {"legacy_notice", test_legacy_notice},
        {"renew_refused", test_renew_refused},
        {"fixed_expired", test_fixed_expired},
    };
    size_t n = sizeof cases / sizeof cases[0];
    /* A CK_RUN_CASE that names no case would run nothing and pass: refuse it. */
    const char *only = getenv("CK_RUN_CASE");
    bool known = only == NULL;
    for (size_t i = 0; only && i < n; i++)
        known |= strcmp(only, cases[i].name) == 0;
    if (!known) {
        fprintf(stderr, "CK_RUN_CASE=%s: no such case\n", only);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("lockd_locks");
    for (size_t i = 0; i < n; i++)
        add_case(s, cases[i].name, cases[i].test);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
