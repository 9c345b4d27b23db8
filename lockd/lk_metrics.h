/*
 * lk_metrics: lockd's counters, gauges and histograms, and the Prometheus page
 * served on metrics_listen (GET /metrics). One global instance: lockd is one process
 * with one loop, and the session and lock modules bump their counters here. lk_redlock
 * keeps its own (lk_redlock_stats); the page shows both.
 */
#ifndef LK_METRICS_H
#define LK_METRICS_H

#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "cm_hist.h"
#include "cm_strbuf.h"

struct event_base;
struct lk_redlock;

/* Why lockd pushed `* LOST <resource> <token> <reason>` (SPEC 2b); the names are the
 * protocol's reason words and the metric's reason label. */
typedef enum lk_lost_reason {
    LK_LOST_EXPIRED,       /* a fixed lease ran out without RENEW */
    LK_LOST_RENEW_REFUSED, /* a majority of masters holds another value */
    LK_LOST_NO_QUORUM,     /* renewals reached no majority before validity ran out */
    LK_LOST_REVOKED,       /* an admin's REVOKE (here or through another lockd) */
    LK_LOST_SHUTDOWN,      /* this lockd is stopping */
    LK_LOST_SESSION,       /* the session went silent past session.timeout_ms */
    LK_LOST_NREASONS
} lk_lost_reason;

extern const char *const lk_lost_reason_name[LK_LOST_NREASONS];

typedef struct lk_metrics {
    /* counters */
    uint64_t acquires_total;         /* ACQUIRE requests accepted for processing */
    uint64_t grants_total;           /* ACQUIRE answered OK */
    uint64_t timeouts_total;         /* ACQUIRE answered TIMEOUT */
    uint64_t noquorum_total;         /* ACQUIRE answered ERR NOQUORUM */
    uint64_t releases_total;         /* RELEASE answered OK */
    uint64_t renews_total;           /* RENEW answered OK */
    uint64_t lost_total;             /* locks lost (LOST pushes + expired sessions) */
    uint64_t handoffs_total;         /* local handoffs to the next waiter */
    uint64_t wakeups_total;          /* pub/sub release notices that woke a waiter */
    uint64_t yields_total;           /* holds passed to another lockd over a local waiter */
    uint64_t polls_total;            /* safety-net polls */
    uint64_t sessions_total;         /* sessions accepted */
    uint64_t sessions_expired_total; /* sessions ended by session.timeout_ms */
    uint64_t badreq_total;           /* requests answered ERR BADREQ */
    uint64_t watchdog_renewals_total;
    uint64_t lost_by_reason[LK_LOST_NREASONS]; /* LOST pushes, by reason */
    uint64_t revocations_total;                /* REVOKE requests that deleted a lock */
    /* gauges */
    int64_t sessions;
    int64_t waiters;
    int64_t locks_held;
    /* histograms */
    cm_hist handoff_latency; /* RELEASE received -> next waiter's OK sent, same lockd */
    cm_hist acquire_latency; /* ACQUIRE received -> OK sent */
    cm_hist wait_time;       /* ACQUIRE received -> OK or TIMEOUT */
} lk_metrics;

extern lk_metrics lk_stats;

void lk_metrics_init(void);
/* Appends the whole Prometheus page; the Redlock counters and per-master up/down come
 * from rl (NULL: they show as zero). */
void lk_metrics_render(const struct lk_redlock *rl, cm_strbuf *out);
/* Starts the HTTP endpoint (evhttp) on addr. */
cm_rc lk_metrics_listen(struct event_base *base, const cm_addr *addr,
                        const struct lk_redlock *rl) CM_MUSTCHECK;
void lk_metrics_shutdown(void);

#endif
