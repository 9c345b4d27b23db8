/*
 * lk_rlint: the types lk_redlock and lk_rlmaster share (a master, its two connections, a
 * round and its per-master slots, the client itself) and lk_rlmaster's calls. Internal to
 * the Redlock client: nothing outside lk_redlock*.c and lk_rlmaster.c includes it.
 */
#ifndef LK_RLINT_H
#define LK_RLINT_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/async.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "lk_redlock.h"
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

/* ---- lk_rlmaster: each master's connections ---- */

/* Token of resource may still hold the lock on master i: released there now when the
 * master is up, else when it comes back (lk_stale). */
void lk_rlm_stale_release(lk_redlock *rl, size_t i, const char *resource, const char *token);
/* m's command connection counts (up) or not; tells on_masters, settles start-up. */
void lk_rlm_set_up(rl_master *m, bool up);
/* lk_quarantine's callback: master i (of arg, the client) may count. */
void lk_rlm_quar_count(void *arg, size_t i);
/* A command queued on m's command connection, and its reply (or NULL) in. */
void lk_rlm_inflight_add(rl_master *m);
void lk_rlm_inflight_done(rl_master *m, bool replied);
/* Starts a non-blocking connect of c and queues its first commands. */
void lk_rlm_conn_start(rl_conn *c);
/* The reconnect timer of a connection (arg) and the client's health check (arg). */
void lk_rlm_reconnect_cb(evutil_socket_t fd, short what, void *arg);
void lk_rlm_health_cb(evutil_socket_t fd, short what, void *arg);

#endif
