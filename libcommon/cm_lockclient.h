/*
 * cm_lockclient: the LOCKP client library used by reserved, lockctl and the tools.
 *
 * Async on a caller's libevent base: one TCP session to one lockd at a time, with
 * failover over several endpoints (tried in order, then round again with backoff).
 * Requests are tagged so replies may come in any order.
 *
 * Deadlines and liveness (SPEC §3b; the same rules as clients/python and clients/node):
 * - Liveness is judged by bytes RECEIVED. A PING goes out when nothing was received, or
 *   nothing sent, for the ping interval: a third of the server's session timeout (or
 *   opts.ping_interval_ms), a sixth of the validity while a watchdog lease is held, a
 *   quarter of the lease while a fixed-lease ACQUIRE waits; never below 20 ms. A lockd
 *   that sent nothing for the client timeout (two thirds of the session timeout, at
 *   least 200 ms) is dead: the session is dropped and every lock taken through it is
 *   lost at once (reason "lockd_dead"), even while the client keeps sending requests.
 * - Every lock has a local deadline: validity_ms counted from a moment lockd wrote the
 *   reply after (the send time of that ACQUIRE or RENEW, or of a later request answered
 *   earlier on the stream: replies come in order), less a margin for our own wake-up
 *   latency of 5% of the validity, at most 50 ms, and less opts.stop_margin_ms.
 *   A fixed lease (lease_ms > 0) is lost at that deadline (reason "deadline") unless a
 *   RENEW reply extended it, whatever lockd says. A watchdog lease (lease_ms 0) is
 *   renewed by lockd: a lockd that answers keeps it alive until half the validity after
 *   the send of the last answered request (deadline = max(grant deadline, last answered
 *   send + validity / 2); lockd renews every third of its lease), and it is lost there
 *   (reason "deadline") otherwise. A lock lost locally is given back with a RELEASE
 *   while the session stands (unless opts.keep_lost_locks). A grant that arrives after
 *   its deadline is released and answered TIMEOUT.
 * - The session bound: every deadline (watchdog and fixed leases alike) is at most the
 *   last send + the session timeout, less the same margins (5% of the timeout, at most
 *   50 ms; the stop margin). lockd ends a session silent for session.timeout_ms and hands
 *   its locks on at once, its silence counted from its last receipt, which comes after our
 *   last send: a holder stopped (SIGSTOP, a stall) right after its grant loses the lock
 *   locally before anyone else can get it. The bound moves with every send (a PING at
 *   least every third of the timeout while a lock is held), so a running client loses
 *   nothing; a deadline that passed is not moved back to life by a later send.
 *
 * Lost locks: lockd pushes "* LOST <resource> <token> [reason]"; a RENEW is answered
 * LOST; a local deadline passes; the session drops (every lock granted through it is
 * gone). Each calls the lost callbacks once per lock, with the reason (on_lost_info).
 * A session that lockd expired (no PING got through for session.timeout_ms) ends with
 * its waiting and in-flight requests failed with code SESSION, then the client
 * reconnects.
 *
 * Ownership: the client owns its requests; callbacks borrow the result struct for
 * the duration of the call only. A callback may call any function of this module,
 * including cm_lockclient_free (the free is deferred until the callback returns).
 */
#ifndef CM_LOCKCLIENT_H
#define CM_LOCKCLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "cm_lockp.h"

struct event_base;
typedef struct cm_lockclient cm_lockclient;

typedef struct cm_lockclient_opts {
    const cm_addr *endpoints; /* copied */
    size_t n_endpoints;
    const char *client_name;     /* HELLO name; NULL: "client" */
    const char *auth;            /* NULL or "": no AUTH */
    uint32_t connect_timeout_ms; /* 0: 1000 */
    /* a reply later than wait_ms + slack is a client-side timeout; 0: 3000 */
    uint32_t request_slack_ms;
    uint32_t ping_interval_ms; /* 0: a third of the server's session timeout (from HELLO) */
    uint32_t reconnect_max_ms; /* backoff cap; 0: 2000 */
    /* the time the holder needs to stop its work after the lost callback (lockctl: to
     * stop its program): every local deadline comes this much earlier, by at most a
     * tenth of the validity; 0: none */
    uint32_t stop_margin_ms;
    /* false (default): a lock lost locally (deadline, dead lockd) is given back with a
     * RELEASE while the session stands; true: not, the holder's session keeps it until the
     * holder is done (lockctl: until its program is dead; lockd then ends it with the
     * session, or at its own expiry) */
    bool keep_lost_locks;
} cm_lockclient_opts;

typedef enum cm_lock_status {
    CM_LOCK_OK,      /* RENEW/RELEASE/PING/INFO succeeded; ACQUIRE granted */
    CM_LOCK_TIMEOUT, /* ACQUIRE waited wait_ms without getting the lock */
    CM_LOCK_LOST,    /* RENEW/RELEASE: the lock is not ours (any more) */
    CM_LOCK_ERROR,   /* see code: NOQUORUM, HELD, LIMIT, NOAUTH, SHUTDOWN, BADREQ, SESSION
                        (lockd ended the session: it sent nothing for session.timeout_ms;
                        message "session expired after ..."), or the client's own
                        DISCONNECTED, NOTCONNECTED, CLIENT_TIMEOUT, CANCELLED */
} cm_lock_status;

typedef struct cm_lock_result {
    cm_lock_status status;
    char code[16];                      /* ERR code, "" otherwise */
    const char *message;                /* human text, "" when none */
    char token[CM_LOCKP_TOKEN_LEN + 1]; /* ACQUIRE OK */
    uint64_t fence;                     /* ACQUIRE OK */
    uint64_t validity_ms;               /* ACQUIRE OK, RENEW OK */
    const char *line;                   /* INFO: the text after "OK " */
} cm_lock_result;

typedef void (*cm_lock_cb)(void *arg, const cm_lock_result *res);
typedef void (*cm_lock_lost_cb)(void *arg, const char *resource, const char *token);

/* A lost lock as the lost callbacks see it (borrowed for the call). reason is lockd's
 * (SPEC §2b: "expired", "renew_refused", "no_quorum", "revoked", "shutdown", "session";
 * "lost" when a LOST push carries none or a RENEW was answered LOST) or the client's
 * own (local true; the same words as clients/python and clients/node): "deadline" (the
 * lock's local deadline passed), "lockd_dead" (lockd sent nothing for the client
 * timeout), "disconnected" (the session ended: EOF, reset, a request timed out),
 * "session" (lockd ended the session: ERR SESSION). */
typedef struct cm_lock_lost_info {
    const char *resource;
    const char *token;
    const char *reason;
    bool local; /* the client decided (deadline, dead or gone lockd), not a LOST from lockd */
} cm_lock_lost_info;
typedef void (*cm_lock_lost_info_cb)(void *arg, const cm_lock_lost_info *info);
typedef void (*cm_lock_state_cb)(void *arg, bool connected);

/* The life of a lock as the client sees it, for a lock history (cm_lockhist): one event per
 * grant, deadline move, release and loss of every lock held through the client. */
typedef enum cm_lock_event_kind {
    CM_LOCK_EV_GRANT,   /* an ACQUIRE was granted and the client now holds the lock */
    CM_LOCK_EV_RENEW,   /* the local deadline moved: a RENEW reply, or lockd answered (a
                           watchdog lease) or we sent (the session bound), moving it by a
                           quarter of the session timeout or of the validity (the smaller) or
                           more since the last event: the deadline a history holds is never
                           later than the real one and trails it by less than that */
    CM_LOCK_EV_RELEASE, /* the holder gave it back (cm_lockclient_release, or the client was
                           freed holding it) */
    CM_LOCK_EV_LOST,    /* the client stopped holding it for one of the lost reasons below */
} cm_lock_event_kind;

/* Borrowed for the call. Times are CLOCK_MONOTONIC microseconds (cm_now_us). */
typedef struct cm_lock_event {
    cm_lock_event_kind kind;
    const char *resource;
    const char *token;
    uint64_t fence;       /* of the grant */
    uint64_t t_us;        /* when the client saw it happen */
    uint64_t deadline_us; /* GRANT, RENEW: the lock's local deadline; LOST: the deadline in
                             force when it was lost (past, for a lock lost at its deadline);
                             0 on RELEASE */
    const char *reason;   /* LOST: the reason of cm_lock_lost_info ("" otherwise) */
    const char *session;  /* lockd's session id (HELLO) the lock was granted through */
} cm_lock_event;
typedef void (*cm_lock_event_cb)(void *arg, const cm_lock_event *ev);

/* Creates the client and starts connecting at once. NULL on bad options. */
cm_lockclient *cm_lockclient_new(struct event_base *base,
                                 const cm_lockclient_opts *opts) CM_MUSTCHECK;
/* Closes the session (lockd then releases our locks); pending callbacks are NOT called. */
void cm_lockclient_free(cm_lockclient *c);
/* The lost callbacks: both may be set; on_lost runs first. */
void cm_lockclient_on_lost(cm_lockclient *c, cm_lock_lost_cb cb, void *arg);
void cm_lockclient_on_lost_info(cm_lockclient *c, cm_lock_lost_info_cb cb, void *arg);
void cm_lockclient_on_state(cm_lockclient *c, cm_lock_state_cb cb, void *arg);
/* Every lock event (cm_lock_event), before the user's callbacks for it; NULL: none. The
 * callback must not call into the client (it only records). */
void cm_lockclient_on_event(cm_lockclient *c, cm_lock_event_cb cb, void *arg);
bool cm_lockclient_connected(const cm_lockclient *c);
/* The session's socket, -1 when there is none (lockctl keeps a dup of it so that the
 * session, and the locks lockd ends with it, outlive its last free until its exit). */
int cm_lockclient_fd(const cm_lockclient *c);

/* Each request: CM_OK and the callback runs exactly once later (never inside this call),
 * unless cancelled; CM_ERR on bad arguments (callback not called). req_id may be NULL.
 * Requests made while disconnected fail with NOTCONNECTED (through the callback). */
cm_rc cm_lockclient_acquire(cm_lockclient *c, const char *resource, uint64_t lease_ms,
                            uint64_t wait_ms, cm_lock_cb cb, void *arg,
                            uint64_t *req_id) CM_MUSTCHECK;
cm_rc cm_lockclient_renew(cm_lockclient *c, const char *resource, const char *token,
                          uint64_t lease_ms, cm_lock_cb cb, void *arg) CM_MUSTCHECK;
cm_rc cm_lockclient_release(cm_lockclient *c, const char *resource, const char *token,
                            cm_lock_cb cb, void *arg) CM_MUSTCHECK;
cm_rc cm_lockclient_ping(cm_lockclient *c, cm_lock_cb cb, void *arg) CM_MUSTCHECK;
cm_rc cm_lockclient_info(cm_lockclient *c, cm_lock_cb cb, void *arg) CM_MUSTCHECK;
/* SHOW (SPEC §2b): res->line is the text after "OK " (cm_lockp_parse_show reads it). */
cm_rc cm_lockclient_show(cm_lockclient *c, const char *resource, cm_lock_cb cb,
                         void *arg) CM_MUSTCHECK;
/* REVOKE (SPEC §2b; the session must have sent AUTH <admin_auth>: opts.auth): res->line
 * is "<fence>" or "-" (nothing was held), res->fence the fence (0 for "-"). */
cm_rc cm_lockclient_revoke(cm_lockclient *c, const char *resource, cm_lock_cb cb,
                           void *arg) CM_MUSTCHECK;
/* Cancels a pending ACQUIRE: its callback will not run; if lockd grants it anyway the
 * client releases it at once. */
void cm_lockclient_cancel(cm_lockclient *c, uint64_t req_id);

/* ---- Run work while holding a lock (the C form of "lock as an annotation") ----
 * cm_lockclient_with_lock acquires resource, calls work(arg, grant, guard); the work
 * calls cm_lock_guard_done(guard) when finished (synchronously or later). The lock is
 * then released and finish(arg, status) runs once with:
 *   CM_LOCK_OK       the work ran and the lock was held throughout,
 *   CM_LOCK_LOST     the lock was lost while the work ran (the work's abort ran first),
 *   CM_LOCK_TIMEOUT / CM_LOCK_ERROR   the lock was never granted (work not called).
 * If the lock is lost mid-work, abort(arg) runs (may be NULL) so the work can stop;
 * the work must still call cm_lock_guard_done. Release happens on every path. */
typedef struct cm_lock_guard cm_lock_guard;
typedef void (*cm_lock_work_fn)(void *arg, const cm_lock_result *grant, cm_lock_guard *guard);
typedef void (*cm_lock_abort_fn)(void *arg);
typedef void (*cm_lock_finish_fn)(void *arg, cm_lock_status status, const cm_lock_result *res);
cm_rc cm_lockclient_with_lock(cm_lockclient *c, const char *resource, uint64_t lease_ms,
                              uint64_t wait_ms, cm_lock_work_fn work, cm_lock_abort_fn abort,
                              cm_lock_finish_fn finish, void *arg) CM_MUSTCHECK;
void cm_lock_guard_done(cm_lock_guard *guard);
bool cm_lock_guard_lost(const cm_lock_guard *guard);

/* ---- Blocking wrapper (tools and tests): its own event base, runs it per call ----
 * Keep-alive only happens while a call runs; for long holds use the async client. */
typedef struct cm_lockclient_sync cm_lockclient_sync;
cm_lockclient_sync *cm_lockclient_sync_new(const cm_lockclient_opts *opts, char *err,
                                           size_t errlen) CM_MUSTCHECK; /* connects */
void cm_lockclient_sync_free(cm_lockclient_sync *s);
/* Fill *out (message/line point into storage valid until the next call). CM_ERR only if
 * the call could not be made at all (then out->status is CM_LOCK_ERROR with a code). */
cm_rc cm_lockclient_sync_acquire(cm_lockclient_sync *s, const char *resource, uint64_t lease_ms,
                                 uint64_t wait_ms, cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_renew(cm_lockclient_sync *s, const char *resource, const char *token,
                               uint64_t lease_ms, cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_release(cm_lockclient_sync *s, const char *resource, const char *token,
                                 cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_ping(cm_lockclient_sync *s, cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_info(cm_lockclient_sync *s, cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_show(cm_lockclient_sync *s, const char *resource,
                              cm_lock_result *out) CM_MUSTCHECK;
cm_rc cm_lockclient_sync_revoke(cm_lockclient_sync *s, const char *resource,
                                cm_lock_result *out) CM_MUSTCHECK;
/* Acquire, run work(arg, grant) and release on every path; *work_rc gets work's return.
 * Returns CM_OK if the work ran, CM_ERR otherwise (out says why). */
cm_rc cm_with_lock_sync(cm_lockclient_sync *s, const char *resource, uint64_t lease_ms,
                        uint64_t wait_ms, int (*work)(void *arg, const cm_lock_result *grant),
                        void *arg, int *work_rc, cm_lock_result *out) CM_MUSTCHECK;

#endif
