/*
 * lk_server: the LOCKP listener and its sessions (SPEC §2, §3). Owns the
 * evconnlistener, one lk_session per TCP connection (bufferevent, framing, the
 * liveness timer, AUTH state), request dispatch and the replies that do not need
 * the lock table. Lock requests go to lk_locks, which answers through the
 * session's lk_owner. Sessions are freed only by the server's reaper, never inside
 * their own callbacks.
 */
#ifndef LK_SERVER_H
#define LK_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"

struct event_base;
struct lk_redlock;
struct lk_locks;
typedef struct lk_server lk_server;

typedef struct lk_server_opts {
    const cm_addr *listen;
    const char *auth;       /* copied; "" = no AUTH */
    const char *admin_auth; /* copied; "" = REVOKE refused (SPEC 2b) */
    uint64_t session_timeout_ms;
    uint64_t max_sessions;
    bool held; /* bind and listen, but accept nothing until lk_server_start_accepting():
                  clients that connect meanwhile wait in the listen backlog */
} lk_server_opts;

/* Binds the listener (resolving the host once, at start-up). NULL on failure. */
lk_server *lk_server_new(struct event_base *base, struct lk_locks *lk, struct lk_redlock *rl,
                         const lk_server_opts *opts) CM_MUSTCHECK;
/* Starts accepting on a listener made with opts.held; nothing after a stop. */
void lk_server_start_accepting(lk_server *srv);
/* Closes the listening socket; open sessions go on. */
void lk_server_stop_accepting(lk_server *srv);
/* Every session: flush what is queued, then close (graceful stop). */
void lk_server_close_all(lk_server *srv);
size_t lk_server_sessions(const lk_server *srv);
/* Ends and frees every session and the listener. Not from a session callback. */
void lk_server_free(lk_server *srv);

#endif
