/*
 * cm_lockclient_int: the lock client's own types and the few internal calls its modules
 * share (cm_lockclient.c: the session, requests and grants; cm_lockclient_table.c: the
 * table of requests in flight; cm_lockclient_guard.c: the with_lock guard). Private to
 * libcommon/cm_lockclient*.c; users include cm_lockclient.h.
 */
#ifndef CM_LOCKCLIENT_INT_H
#define CM_LOCKCLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cm_addr.h"
#include "cm_lockclient.h"
#include "cm_lockp.h"

#define LC_NAME_MAX   64
#define LC_SECRET_MAX 256

struct event;
struct event_base;
struct bufferevent;

typedef enum lc_state {
    LC_CONNECTING, /* a connect attempt is due (retry timer at 0) or in progress */
    LC_HANDSHAKE,  /* TCP is up; HELLO (then AUTH) sent, their replies pending */
    LC_READY,      /* session established: requests are sent as they come */
    LC_BACKOFF,    /* a whole round of endpoints failed; waiting; requests fail at once */
} lc_state;

typedef enum lc_kind {
    LC_HELLO,
    LC_AUTH,
    LC_PING,
    LC_ACQUIRE,
    LC_RENEW,
    LC_RELEASE,
    LC_INFO,
    LC_SHOW,
    LC_REVOKE,
} lc_kind;

typedef struct lc_req {
    uint64_t id; /* also the tag on the wire */
    lc_kind kind;
    bool internal;       /* handshake, keep-alive, release of a cancelled grant: no callback */
    bool cancelled;      /* callback suppressed; a grant gets released */
    bool sent;           /* written to the current session */
    char early_code[16]; /* non-empty: fail with this code when the timer fires (at 0) */
    cm_lock_cb cb;
    void *arg;
    uint64_t lease_ms;
    uint64_t wait_ms;
    uint64_t sent_us; /* when it was written (before the write: lockd reads it later) */
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
    char token[CM_LOCKP_TOKEN_LEN + 1];
    struct event *timer; /* client-side timeout (or the deferred early failure) */
    cm_lockclient *c;
    struct lc_req *hnext;         /* hash chain */
    struct lc_req *qprev, *qnext; /* pending requests in creation order */
} lc_req;

/* A lock granted through the current session and not given back: it is in c->grants
 * exactly while the client believes it holds it (the list is its only state). */
typedef struct lc_grant {
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
    char token[CM_LOCKP_TOKEN_LEN + 1];
    cm_lock_guard *guard;      /* the with_lock guard holding it, or NULL */
    uint64_t lease_ms;         /* 0: watchdog lease (lockd renews it) */
    uint64_t validity_ms;      /* of the grant or the last renewal */
    uint64_t base_deadline_us; /* bound + validity - margin (see lc_grant_deadline) */
    uint64_t fence;            /* of the grant (lock events carry it) */
    uint64_t told_deadline_us; /* the deadline the last lock event reported */
    uint64_t frozen_us;        /* != 0: the deadline passed at this moment before a send could
                                  move the session bound; it stays here (lc_freeze_passed) */
    char session[24];          /* lockd's session id it was granted through */
    struct event *timer;       /* fires at the local deadline */
    cm_lockclient *c;
    struct lc_grant *prev, *next;
} lc_grant;

typedef enum lg_state {
    LG_ACQUIRING, /* the ACQUIRE is pending */
    LG_WORKING,   /* granted; the work runs until cm_lock_guard_done */
    LG_RELEASING, /* done; the RELEASE is pending */
} lg_state;

struct cm_lock_guard {
    cm_lockclient *c;
    lg_state st;
    bool lost; /* the lock went away while the work ran */
    bool done; /* cm_lock_guard_done was called */
    char resource[CM_LOCKP_RESOURCE_MAX + 1];
    char token[CM_LOCKP_TOKEN_LEN + 1];
    cm_lock_work_fn work;
    cm_lock_abort_fn abort;
    cm_lock_finish_fn finish;
    void *arg;
    struct cm_lock_guard *prev, *next; /* in c->guards, freed with the client */
};

typedef struct lc_endpoint {
    cm_addr addr;
    struct sockaddr_storage sa;
    socklen_t salen;
} lc_endpoint;

struct cm_lockclient {
    struct event_base *base;
    lc_endpoint *eps;
    size_t n_eps;
    size_t ep_idx; /* endpoint of the current or next attempt */
    char name[LC_NAME_MAX + 1];
    char auth[LC_SECRET_MAX + 1];
    uint32_t connect_timeout_ms;
    uint32_t slack_ms;
    uint32_t ping_opt_ms;
    uint32_t reconnect_max_ms;
    uint32_t stop_margin_ms;
    bool keep_lost_locks;

    lc_state state;
    struct bufferevent *bev;
    bool in_connect;  /* inside bufferevent_socket_connect */
    short early_what; /* events its callback reported synchronously */
    struct event *retry_timer;
    struct event *conn_timer; /* bounds connect + handshake */
    struct event *ping_timer;
    uint32_t backoff_ms;
    size_t round_fails; /* failed attempts since the last established session */
    uint64_t session_timeout_ms;
    uint64_t ping_ms; /* the base ping interval (a third of the session timeout) */
    uint64_t dead_ms; /* the client timeout: lockd silent this long is dead */
    uint64_t last_tx_us;
    uint64_t sess_tx_us;    /* the send the session bound counts from (lc_session_bound):
                             * moved by a send only while the session is provably alive,
                             * and by an answer to a later request */
    uint64_t last_rx_us;    /* bytes last received from lockd */
    uint64_t alive_sent_us; /* lockd wrote a reply after this moment (the latest send time
                               of a request answered so far, replies coming in order) */
    uint64_t ping_cur_us;   /* the ping interval the keep-alive timer last used */
    uint64_t tick_due_us;   /* when the keep-alive timer is due */
    bool ping_outstanding;
    const char *down_reason; /* the lost reason of the next lc_session_down */

    uint64_t next_id;
    lc_req **buckets;
    size_t nbuckets; /* power of two */
    size_t nreqs;
    lc_req *qhead, *qtail;
    lc_grant *grants;
    cm_lock_guard *guards;

    cm_lock_lost_cb lost_cb;
    void *lost_arg;
    cm_lock_lost_info_cb lost_info_cb;
    void *lost_info_arg;
    cm_lock_state_cb state_cb;
    void *state_arg;
    cm_lock_event_cb event_cb;
    void *event_arg;
    char session[24]; /* lockd's session id from the HELLO reply ("" before) */

    int depth;         /* nesting of entry points / callbacks */
    bool free_pending; /* cm_lockclient_free was called inside a callback */
    char line[CM_LOCKP_MAX_LINE + 2];
    /* "session expired after ..." once lockd pushed `* ERR SESSION` (it closes the
     * session next): the requests still in flight fail with it; "" otherwise */
    char expired[CM_LOCKP_MAX_LINE + 16];
};

/* Entry brackets: every libevent entry point and user call runs inside one, so a free
 * from a callback only marks the client. lc_leave returns false when the client was
 * destroyed (the caller must not touch it). */
void lc_enter(cm_lockclient *c);
bool lc_leave(cm_lockclient *c);
/* false once cm_lockclient_free was called: no user callback runs any more */
bool lc_alive(const cm_lockclient *c);
void lc_result_init(cm_lock_result *res, cm_lock_status st, const char *code, const char *message);
/* The lock granted through the current session as (resource, token), or NULL. */
lc_grant *lc_grant_find(const cm_lockclient *c, const char *resource, const char *token);
/* cm_lockclient_table.c: the requests in flight, by id (hash) and in creation order (the
 * list c->qhead..qtail). add may grow the hash (on no memory its chains just get longer);
 * remove of a request not in the table does nothing; free frees its timer too. */
void lc_table_add(cm_lockclient *c, lc_req *r);
lc_req *lc_table_find(const cm_lockclient *c, uint64_t id);
void lc_table_remove(cm_lockclient *c, lc_req *r);
void lc_req_free(lc_req *r);
/* cm_lockclient_guard.c: the lock of guard g is gone (the guard is told, its abort runs). */
void lg_on_lost(cm_lock_guard *g);

#endif
