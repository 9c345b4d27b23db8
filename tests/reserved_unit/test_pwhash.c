/*
 * test_pwhash: rs_pwhash, the Argon2id worker pool, on a real event base (no servers):
 * hash and verify, the unknown user's verify that costs what a wrong password costs, the
 * bound on pending jobs, that hashing leaves the loop free to run its timers, and that
 * freeing the pool drops queued jobs without their callbacks. Cheap parameters (1 pass,
 * 8 KiB) except where a test needs a hash that takes time.
 */
#include <check.h>
#include <event2/event.h>
#include <pthread.h>
#include <string.h>

#include "cm_strbuf.h"
#include "cm_time.h"
#include "rs_pwhash.h"
#include "ru_suites.h"

/* What a callback saw. */
typedef struct pw_seen {
    int calls;
    bool match;
    bool hash_null;
    char hash[RS_PWHASH_STR_MAX];
    bool on_loop_thread; /* the callback ran on the thread that runs the loop */
    uint64_t at_us;      /* when */
} pw_seen;

static pthread_t loop_thread;

static void on_hash(void *arg, const char *hash)
{
    pw_seen *s = arg;
    s->calls++;
    s->hash_null = hash == NULL;
    if (hash != NULL) {
        ck_assert_uint_lt(strlen(hash), sizeof(s->hash));
        strcpy(s->hash, hash);
    }
    s->on_loop_thread = pthread_equal(pthread_self(), loop_thread);
    s->at_us = cm_now_us();
}

static void on_verify(void *arg, bool match)
{
    pw_seen *s = arg;
    s->calls++;
    s->match = match;
    s->on_loop_thread = pthread_equal(pthread_self(), loop_thread);
    s->at_us = cm_now_us();
}

static rs_pwhash *pool_new(struct event_base *base, unsigned threads, uint64_t ops, size_t mem,
                           size_t max_pending)
{
    loop_thread = pthread_self();
    rs_pwhash_opts o = {
        .threads = threads, .ops = ops, .mem_bytes = mem, .max_pending = max_pending};
    rs_pwhash *p = rs_pwhash_new(base, &o);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Runs the loop until s has had its callback (a test's timeout ends a hang). */
static void run_until(struct event_base *base, const pw_seen *s)
{
    while (s->calls == 0)
        ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
}

static bool verify(struct event_base *base, rs_pwhash *p, const char *stored, const char *pw)
{
    pw_seen s = {0};
    ck_assert_int_eq(rs_pwhash_verify(p, stored, pw, strlen(pw), on_verify, &s), CM_OK);
    ck_assert_int_eq(s.calls, 0); /* never inside the submitting call */
    run_until(base, &s);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.on_loop_thread);
    return s.match;
}

/* Hash then verify: the right password matches, a wrong one (or a prefix, or the empty
 * one) does not; the string is Argon2id's and does not hold the password; a stored
 * string that is not an Argon2 string never matches; rs_pwhash_hash_now's strings are
 * the same kind. */
START_TEST(test_hash_verify)
{
    struct event_base *base = event_base_new();
    rs_pwhash *p = pool_new(base, 2, 1, 8192, 8);
    const char *pw = "correct horse battery staple";
    pw_seen s = {0};
    ck_assert_int_eq(rs_pwhash_hash(p, pw, strlen(pw), on_hash, &s), CM_OK);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_uint_eq(rs_pwhash_pending(p), 1);
    run_until(base, &s);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.on_loop_thread);
    ck_assert(!s.hash_null);
    ck_assert_uint_eq(rs_pwhash_pending(p), 0);
    ck_assert_msg(strncmp(s.hash, "$argon2id$", 10) == 0, "not an Argon2id string: %s", s.hash);
    ck_assert_ptr_null(strstr(s.hash, pw));
    ck_assert_ptr_null(strstr(s.hash, "horse"));
    ck_assert(verify(base, p, s.hash, pw));
    ck_assert(!verify(base, p, s.hash, "correct horse battery stapl"));
    ck_assert(!verify(base, p, s.hash, "Correct horse battery staple"));
    ck_assert(!verify(base, p, s.hash, ""));
    ck_assert(!verify(base, p, "plaintext", pw));
    ck_assert(!verify(base, p, "", pw));
    /* a second hash of the same password differs (its own salt) and matches too */
    pw_seen s2 = {0};
    ck_assert_int_eq(rs_pwhash_hash(p, pw, strlen(pw), on_hash, &s2), CM_OK);
    run_until(base, &s2);
    ck_assert_str_ne(s.hash, s2.hash);
    ck_assert(verify(base, p, s2.hash, pw));
    /* the blocking form, for --add-admin */
    char now[RS_PWHASH_STR_MAX];
    ck_assert_int_eq(rs_pwhash_hash_now(1, 8192, "admin pw", 8, now), CM_OK);
    ck_assert(strncmp(now, "$argon2id$", 10) == 0);
    ck_assert(verify(base, p, now, "admin pw"));
    ck_assert(!verify(base, p, now, "admin p"));
    ck_assert_int_eq(rs_pwhash_hash_now(1, 4096, "x", 1, now), CM_ERR); /* below 8 KiB */
    cm_strbuf sb = CM_STRBUF_INIT;
    rs_pwhash_metrics(p, &sb);
    ck_assert_ptr_nonnull(
        strstr(cm_strbuf_str(&sb), "reserved_pwhash_jobs_total{kind=\"hash\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(cm_strbuf_str(&sb), "reserved_pwhash_jobs_total{kind=\"verify\"} 9\n"));
    ck_assert_ptr_nonnull(strstr(cm_strbuf_str(&sb), "reserved_pwhash_seconds_count 11\n"));
    cm_strbuf_free(&sb);
    rs_pwhash_free(p);
    event_base_free(base);
}
END_TEST

/* Submit to callback, in µs, of one verify. */
static uint64_t timed_verify(struct event_base *base, rs_pwhash *p, const char *stored,
                             const char *pw, bool *match)
{
    pw_seen s = {0};
    uint64_t t0 = cm_now_us();
    ck_assert_int_eq(rs_pwhash_verify(p, stored, pw, strlen(pw), on_verify, &s), CM_OK);
    run_until(base, &s);
    *match = s.match;
    return s.at_us - t0;
}

/* verify(NULL) (no such user) is false, even for the password nobody knows, and costs
 * what a wrong password costs: 5 of each, alternated, with 2 MiB per hash (a few ms:
 * enough to tell an Argon2 run from an early answer); the unknown users' total is at
 * least half the wrong passwords'. */
START_TEST(test_unknown_user_costs_a_verify)
{
    struct event_base *base = event_base_new();
    rs_pwhash *p = pool_new(base, 1, 1, 2 << 20, 4);
    pw_seen s = {0};
    ck_assert_int_eq(rs_pwhash_hash(p, "secret", 6, on_hash, &s), CM_OK);
    run_until(base, &s);
    uint64_t wrong_us = 0, unknown_us = 0;
    for (int i = 0; i < 5; i++) {
        bool match = true;
        wrong_us += timed_verify(base, p, s.hash, "guess", &match);
        ck_assert(!match);
        match = true;
        unknown_us += timed_verify(base, p, NULL, "guess", &match);
        ck_assert(!match);
        match = true;
        unknown_us += timed_verify(base, p, NULL, "", &match);
        ck_assert(!match);
    }
    unknown_us /= 2; /* two unknown-user verifies per wrong one */
    ck_assert_msg(2 * unknown_us >= wrong_us,
                  "5 unknown-user verifies took %llu us, 5 wrong passwords %llu us",
                  (unsigned long long)unknown_us, (unsigned long long)wrong_us);
    rs_pwhash_free(p);
    event_base_free(base);
}
END_TEST

/* max_pending 1: while one job is pending a second submit is refused (CM_ERR, counted),
 * and its callback never comes; once the first is answered a new one is taken. A
 * callback may submit the next job (its own no longer counts). */
static rs_pwhash *chain_pool;
static pw_seen chain_seen;
static void on_hash_then_verify(void *arg, const char *hash)
{
    on_hash(arg, hash);
    ck_assert_uint_eq(rs_pwhash_pending(chain_pool), 0);
    ck_assert_int_eq(rs_pwhash_verify(chain_pool, hash, "a", 1, on_verify, &chain_seen), CM_OK);
}

START_TEST(test_queue_bound)
{
    struct event_base *base = event_base_new();
    rs_pwhash *p = pool_new(base, 1, 1, 8192, 1);
    pw_seen first = {0}, second = {0}, third = {0};
    ck_assert_int_eq(rs_pwhash_hash(p, "a", 1, on_hash, &first), CM_OK);
    ck_assert_int_eq(rs_pwhash_hash(p, "b", 1, on_hash, &second), CM_ERR);
    ck_assert_int_eq(rs_pwhash_verify(p, NULL, "b", 1, on_verify, &second), CM_ERR);
    ck_assert_uint_eq(rs_pwhash_pending(p), 1);
    run_until(base, &first);
    ck_assert(!first.hash_null);
    ck_assert_uint_eq(rs_pwhash_pending(p), 0);
    ck_assert_int_eq(rs_pwhash_verify(p, first.hash, "a", 1, on_verify, &third), CM_OK);
    run_until(base, &third);
    ck_assert(third.match);
    ck_assert_int_eq(second.calls, 0);
    cm_strbuf sb = CM_STRBUF_INIT;
    rs_pwhash_metrics(p, &sb);
    ck_assert_ptr_nonnull(strstr(cm_strbuf_str(&sb), "reserved_pwhash_refused_total 2\n"));
    cm_strbuf_free(&sb);
    /* from inside a callback */
    chain_pool = p;
    pw_seen h = {0};
    ck_assert_int_eq(rs_pwhash_hash(p, "a", 1, on_hash_then_verify, &h), CM_OK);
    run_until(base, &h);
    run_until(base, &chain_seen);
    ck_assert(chain_seen.match);
    rs_pwhash_free(p);
    event_base_free(base);
}
END_TEST

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (*(int *)arg)++;
}

/* The loop keeps running while a hash runs: a 5 ms timer ticks several times during one
 * hash of 64 MiB (tens of ms in a worker; on the loop it would tick at most once). */
START_TEST(test_off_loop)
{
    struct event_base *base = event_base_new();
    rs_pwhash *p = pool_new(base, 1, 1, 64 << 20, 4);
    int ticks = 0;
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, &ticks);
    struct timeval five_ms = {0, 5000};
    event_add(tick, &five_ms);
    pw_seen s = {0};
    uint64_t t0 = cm_now_us();
    ck_assert_int_eq(rs_pwhash_hash(p, "pw", 2, on_hash, &s), CM_OK);
    run_until(base, &s);
    uint64_t took_us = cm_now_us() - t0;
    ck_assert(!s.hash_null);
    ck_assert_msg(took_us >= 20000, "the hash took %llu us: too fast to tell",
                  (unsigned long long)took_us);
    ck_assert_msg(ticks >= 3, "%d ticks of 5 ms during a hash of %llu us", ticks,
                  (unsigned long long)took_us);
    event_free(tick);
    rs_pwhash_free(p);
    event_base_free(base);
}
END_TEST

/* Freeing the pool with jobs pending: the running one finishes, the queued ones are
 * dropped, and no callback comes (ASan sees any password copy or job left behind). */
START_TEST(test_free_drops_queued)
{
    struct event_base *base = event_base_new();
    rs_pwhash *p = pool_new(base, 1, 1, 16 << 20, 4);
    pw_seen s[4];
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(rs_pwhash_hash(p, "pw", 2, on_hash, &s[i]), CM_OK);
    rs_pwhash_free(p);
    ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1); /* no event left */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(s[i].calls, 0);
    event_base_free(base);
}
END_TEST

Suite *ru_pwhash_suite(void)
{
    const ru_case cases[] = {
        {"pwhash_hash_verify", test_hash_verify, 0},
        {"pwhash_unknown_user_costs_a_verify", test_unknown_user_costs_a_verify, 0},
        {"pwhash_queue_bound", test_queue_bound, 0},
        {"pwhash_off_loop", test_off_loop, 0},
        {"pwhash_free_drops_queued", test_free_drops_queued, 0},
    };
    return ru_suite("pwhash", cases, sizeof(cases) / sizeof(cases[0]));
}
