/*
 * fake_ops: a scripted lk_ops for the lockd unit tests: no network, no event loop.
 * Time stands still until fk_advance moves it; timers fire from fk_advance, earliest
 * first. Every Redlock round lk_locks starts is recorded and stays open until the
 * test answers it (fk_answer), so each outcome and its moment are the test's choice.
 * Every line lk_locks writes to a session goes to that session and to one global log,
 * so tests can check the order of lines across sessions.
 *
 * One fake world per process (Check forks each test case). fk_reset frees everything
 * it made; the lk_locks under test must be freed first.
 */
#ifndef FAKE_OPS_H
#define FAKE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lk_locks.h"
#include "lk_ops.h"

#define FK_MAX_ROUNDS   256
#define FK_MAX_LOG      512
#define FK_MAX_RELEASES 256
#define FK_LINE         200

typedef enum fk_kind { FK_ACQUIRE, FK_RENEW } fk_kind;

typedef struct fk_round {
    fk_kind kind;
    char resource[64];
    char token[40];
    char prev[40]; /* "" when no handoff was offered */
    uint64_t lease_ms;
    uint64_t start_ms; /* fake time when it was started */
    size_t log_at;     /* lines in the global log when it was started */
    lk_rl_cb cb;
    void *arg;
    bool cancelled;
    bool answered;
} fk_round;

typedef struct fk_release {
    char resource[64];
    char token[40];
    uint64_t at_ms;
    size_t log_at;
} fk_release;

/* A test session: lines it was sent, in order. */
typedef struct fk_sess {
    lk_owner owner; /* first: lk_locks hands it back to send */
    char name[8];
    char lines[64][FK_LINE];
    size_t n;
} fk_sess;

typedef struct fk_log_line {
    const fk_sess *to;
    char line[FK_LINE];
} fk_log_line;

typedef struct fk_world {
    uint64_t now_us;
    bool quorum_up; /* has_quorum */
    size_t quorum;  /* masters needed */
    fk_round rounds[FK_MAX_ROUNDS];
    size_t n_rounds;
    fk_release releases[FK_MAX_RELEASES];
    size_t n_releases;
    size_t wanted; /* "want" notices published */
    uint64_t wanted_last_ms;
    uint64_t wanted_oldest_ms; /* ... the last one's oldest waiter (wall = fake clock) */
    char wanted_from[40];      /* ... and its sender id */
    uint64_t wanted_seq;       /* ... and its sequence number (checked increasing) */
    fk_log_line log[FK_MAX_LOG];
    size_t n_log;
} fk_world;

extern fk_world fk;
extern const lk_ops fk_ops;

/* Fresh world at a fixed start time; frees the timers of the last one. */
void fk_reset(void);
uint64_t fk_now_ms(void);
/* Moves time by ms, firing every timer that falls due on the way, in order. */
void fk_advance(uint64_t ms);
/* Armed timers (for checks that nothing is pending). */
size_t fk_timers_armed(void);

void fk_sess_init(fk_sess *s, const char *name);
/* The i-th line s was sent (without LF), or "" past the end. */
const char *fk_line(const fk_sess *s, size_t i);
const char *fk_last(const fk_sess *s);
/* Index of the first global log line sent to s that starts with prefix, or -1. */
long fk_log_find(const fk_sess *s, const char *prefix);

/* Rounds still waiting for an answer (not answered, not cancelled). */
size_t fk_open_rounds(void);
/* The last round started, which must exist. */
fk_round *fk_last_round(void);
/* The open acquire round of token, or NULL. */
fk_round *fk_acquire_of(const char *token);
/* Answers round r (open, not cancelled) with outcome: runs lk_locks' callback. */
void fk_answer(fk_round *r, lk_rl_outcome outcome, int64_t validity_ms, uint64_t fence,
               int64_t retry_after_ms);
/* fk_answer with a whole result (e.g. a renewal refused by a tombstone: revoked). */
void fk_answer_res(fk_round *r, const lk_rl_result *res);
/* Releases sent for token (0 when none). */
size_t fk_releases_of(const char *token);

/* The token in an "OK <token> <fence> <validity>" reply, copied into out[40]. */
void fk_token_of(const char *line, char out[40]);

#endif
