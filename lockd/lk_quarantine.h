/*
 * lk_quarantine: lockd's guard against a Redis master that came back without its data
 * (issue 15 §2, antirez's "delayed restarts" done by the service). Owns, per master, what
 * lockd knows of it (its run_id and whether its data is durable, read with INFO and CONFIG
 * GET on every connect), its quarantine state, and the restore job that raises its fence
 * counters to what the other masters hold before it counts again.
 *
 * The rule: a master that becomes ready with a different run_id than before (or with none
 * known: at lockd's start, or INFO refused) and without durable data (aof_enabled and
 * appendfsync always) is quarantined: lk_redlock does not count it toward any quorum
 * (acquire, renew, release, fence write-back: it gets no round at all) until BOTH
 *   - the time bound has passed: from its return, the largest lease this lockd has
 *     granted (capped by limits.max_lease_ms), and the longest remaining lease (PTTL) of
 *     any lock the restore job found on the other masters and NOT on it with the same
 *     value (which covers leases granted by OTHER lockds and by this lockd before a
 *     restart; a lock it still holds did not depend on what it forgot), plus the drift
 *     allowance; and
 *   - the restore job has read the fence counters of enough other masters (N - quorum + 1:
 *     every majority that held a fence before the master forgot keeps a member among
 *     them) and written their values to it ("fence = max(fence, t)").
 * A master that returns with the same run_id, or durable, counts at once.
 *
 * Network-free parts (the rule, the deadline, the INFO parser, the state moves) are
 * exported for tests/lockd_unit; the job runs on hiredis async contexts lk_redlock hands
 * in (lk_quar_send_probe / lk_quar_ready) and takes back (lk_quar_down).
 */
#ifndef LK_QUARANTINE_H
#define LK_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
struct redisAsyncContext;
typedef struct lk_quar lk_quar;

/* Where a master is, for the guard. lk_quar_move is the one place it changes. */
typedef enum lk_quar_state {
    LKQ_NEW,         /* not ready yet since lockd started: no run_id known */
    LKQ_COUNTED,     /* ready and counted toward every quorum */
    LKQ_DOWN,        /* was counted, connection lost; its run_id is remembered */
    LKQ_QUARANTINED, /* ready, but came back without its data: not counted until the time
                        bound has passed and its fences are restored */
    LKQ_QUAR_DOWN,   /* connection lost while quarantined: owes the rest on return */
    LKQ_NSTATES
} lk_quar_state;

extern const char *const lk_quar_state_name[LKQ_NSTATES];

#define LK_QUAR_RUNID_MAX 48

/* What one connect's INFO server/persistence and CONFIG GET appendfsync said. */
typedef struct lk_quar_probe {
    char run_id[LK_QUAR_RUNID_MAX]; /* "" when INFO failed or had none */
    bool aof_enabled;               /* INFO persistence aof_enabled:1 */
    bool fsync_always;              /* CONFIG GET appendfsync == always (refused: false) */
    int64_t uptime_s;               /* INFO server uptime_in_seconds; -1 unknown */
} lk_quar_probe;

/* ---- the rule (pure) ---- */

/* Reads run_id and aof_enabled out of an INFO reply's text into p (other fields kept). */
void lk_quar_parse_info(const char *text, lk_quar_probe *p);
/* Durable: its data survives a SIGKILL (AOF with appendfsync always). */
bool lk_quar_durable(const lk_quar_probe *p);
/* Whether a master in state st (its last known run_id known_run_id, "" if none) that just
 * became ready with probe p must be quarantined. At lockd's start (LKQ_NEW) a master that
 * is not durable is, unless it has been up for max_lease_ms already (whatever it may have
 * forgotten has expired). */
bool lk_quar_must_quarantine(lk_quar_state st, const char *known_run_id, const lk_quar_probe *p,
                             uint64_t max_lease_ms);
/* Whether the move from -> to is legal. */
bool lk_quar_legal(lk_quar_state from, lk_quar_state to);
/* The time bound (ms) from a return: min(max_lease_ms, largest lease granted) plus the
 * drift allowance (bound × drift + 2 ms), 0 when nothing was granted. */
uint64_t lk_quar_bound_ms(uint64_t max_lease_ms, uint64_t largest_lease_ms, double drift);
/* How many other masters the restore job must read: n - quorum + 1 (at most n - 1). */
size_t lk_quar_reads_needed(size_t n);

/* ---- the guard on the loop ---- */

/* Master i becomes counted (lk_redlock's master_set_up(i, true)). */
typedef void (*lk_quar_count_cb)(void *arg, size_t i);

typedef struct lk_quar_opts {
    bool enabled;          /* redlock.quarantine; off: every ready master counts at once */
    size_t n_masters;      /* N */
    uint64_t max_lease_ms; /* limits.max_lease_ms: the cap of the time bound */
    double drift;          /* redlock.clock_drift_factor */
    const char *prefix;    /* key prefix (copied) */
    lk_quar_count_cb on_count;
    void *cb_arg;
} lk_quar_opts;

lk_quar *lk_quar_new(struct event_base *base, const lk_quar_opts *o) CM_MUSTCHECK;
/* Call after every context handed in has been freed (their callbacks have run). */
void lk_quar_free(lk_quar *q);
/* Master i's address text, for the logs (copied). */
void lk_quar_set_name(lk_quar *q, size_t i, const char *name);
/* Queues the probe (INFO server, INFO persistence, CONFIG GET appendfsync) on master i's
 * new command context, before anything else: its replies are in before the connection
 * is ready. Nothing when the guard is off. */
void lk_quar_send_probe(lk_quar *q, size_t i, struct redisAsyncContext *ac);
/* Master i's command connection is ready (scripts loaded) on ac: counts it now
 * (on_count, before returning) or quarantines it. */
void lk_quar_ready(lk_quar *q, size_t i, struct redisAsyncContext *ac);
/* Master i's command connection is gone (ac is no longer used). q may be NULL. */
void lk_quar_down(lk_quar *q, size_t i);
/* A lease of lease_ms was granted or renewed here (the time bound's "largest lease"). */
void lk_quar_note_lease(lk_quar *q, uint64_t lease_ms);

lk_quar_state lk_quar_master_state(const lk_quar *q, size_t i);
size_t lk_quar_quarantined(const lk_quar *q);      /* masters now in quarantine */
uint64_t lk_quar_total(const lk_quar *q);          /* quarantines started */
uint64_t lk_quar_restored_total(const lk_quar *q); /* fence keys written by restore jobs */

#endif
