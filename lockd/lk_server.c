/*
 * lk_server: listener, sessions, framing and request dispatch for LOCKP/1.
 *
 * A session reads at most LK_LINES_PER_WAKE lines per wake-up and re-arms itself
 * through a manual event, so one pipelining client cannot starve the others.
 * Its input is bounded by LK_READ_HIGH (reading pauses) and its output by
 * LK_OUT_BLOCK (request processing pauses until its client reads).
 *
 * I/O is plain events over evbuffers rather than bufferevents: the replies made in
 * one loop pass (from requests and from Redlock callbacks alike) are written by one
 * flush event, one writev per session, and EV_WRITE is armed only when a socket is
 * full. The lock path then costs about one recv and one writev per request and no
 * epoll_ctl churn.
 */
#include "lk_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/buffer.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_lockp.h"
#include "cm_log.h"
#include "cm_rand.h"
#include "cm_strbuf.h"
#include "cm_time.h"
#include "lk_locks.h"
#include "lk_metrics.h"
#include "lk_quarantine.h"
#include "lk_redlock.h"

#define LK_LINES_PER_WAKE 64
#define LK_READ_HIGH      (256 * 1024)
#define LK_READ_CHUNK     16384
#define LK_OUT_BLOCK      (4 * 1024 * 1024)
#define LK_SESSION_ID_LEN 16
#define LK_NAME_MAX       64
#define LK_CLOSE_MAX_MS   5000 /* a closing session's output gets at most this long */

/*
 * A session's life (every transition asserts where it comes from):
 *   ACTIVE --silent for session.timeout_ms--> EXPIRED --output written--> LINGER --EOF--> DEAD
 *   ACTIVE --QUIT, line too long, shutdown--> CLOSING --output written--> DEAD
 * and any state --EOF, I/O error, close bound, server freed--> DEAD.
 */
typedef enum ss_state {
    SS_ACTIVE,  /* reading and answering requests */
    SS_EXPIRED, /* silent past session.timeout_ms: the session is over (its locks lost, its
                   owner ended in lk_locks) and its notice (LOST per lock, ERR SESSION per
                   waiting ACQUIRE, the ERR SESSION push) is being written; input is read
                   and dropped, never executed: an expired session does not come back */
    SS_LINGER,  /* the notice is written and our side shut down (FIN): input is still read
                   and dropped until the client's EOF, so that the close is not a reset
                   that could destroy the notice in flight; bounded by the close timer */
    SS_CLOSING, /* last reply queued (QUIT, LINE_TOO_LONG, shutdown): flush, then close */
    SS_DEAD,    /* unlinked from lk_locks, waiting for the reaper */
} ss_state;

typedef struct lk_session {
    lk_owner owner; /* first: lk_locks hands it back to send() */
    lk_server *srv;
    evutil_socket_t fd;
    struct evbuffer *in;
    struct evbuffer *out;
    TAILQ_ENTRY(lk_session) link;       /* srv->live or srv->dead */
    TAILQ_ENTRY(lk_session) flush_link; /* srv->flush_list while flush_queued */
    struct event rd;                    /* persistent EV_READ (deleted while paused) */
    struct event wr;                    /* EV_WRITE, armed only when the socket was full */
    struct event timer;                 /* liveness; in EXPIRED/LINGER/CLOSING the close bound */
    struct event more;                  /* lines left over after a bounded wake-up */
    ss_state state;
    bool authed;
    bool admin;            /* sent AUTH <admin_auth>: may REVOKE */
    bool flush_queued;     /* on srv->flush_list */
    bool read_paused;      /* input over LK_READ_HIGH */
    bool out_blocked;      /* output over LK_OUT_BLOCK: requests wait until it drains */
    uint64_t last_seen_ms; /* last complete line received */
    char id[LK_SESSION_ID_LEN + 1];
    char name[LK_NAME_MAX + 1];
    char peer[64];
} lk_session;

TAILQ_HEAD(lk_session_list, lk_session);

struct lk_server {
    struct event_base *base;
    struct lk_locks *lk;
    struct lk_redlock *rl;
    struct evconnlistener *listener;
    struct event *reap;  /* frees the dead list after the loop pass */
    struct event *flush; /* writes the replies of this loop pass */
    struct lk_session_list live;
    struct lk_session_list dead;
    TAILQ_HEAD(, lk_session) flush_list;
    size_t n_live;
    char *auth;
    char *admin_auth; /* "" = REVOKE refused to everyone */
    uint64_t timeout_ms;
    uint64_t max_sessions;
    uint64_t start_ms;
};

static void session_process(lk_session *s);
static void session_kill(lk_session *s);
static void session_linger(lk_session *s);

/* ---- output -------------------------------------------------------------- */

static void session_send(lk_owner *owner, const char *line, size_t len)
{
    lk_session *s = (lk_session *)owner;
    if (s->state == SS_DEAD)
        return;
    assert(s->state != SS_LINGER); /* our side is shut down: nothing may follow the notice */
    evbuffer_add(s->out, line, len);
    if (!s->flush_queued && !event_pending(&s->wr, EV_WRITE, NULL)) {
        s->flush_queued = true;
        TAILQ_INSERT_TAIL(&s->srv->flush_list, s, flush_link);
        event_active(s->srv->flush, EV_WRITE, 0);
    }
}

/* Writes what the socket takes; the rest waits for EV_WRITE. */
static void session_write(lk_session *s)
{
    if (s->state == SS_DEAD)
        return;
    if (evbuffer_get_length(s->out) > 0 && evbuffer_write(s->out, s->fd) < 0 && errno != EAGAIN &&
        errno != EWOULDBLOCK && errno != EINTR) {
        log_debug("session %s (%s): write failed: %s", s->id, s->peer, strerror(errno));
        session_kill(s);
        return;
    }
    if (evbuffer_get_length(s->out) > 0) {
        event_add(&s->wr, NULL);
        return;
    }
    switch (s->state) {
    case SS_ACTIVE:
        if (s->out_blocked) {
            s->out_blocked = false;
            session_process(s);
        }
        break;
    case SS_EXPIRED:
        session_linger(s);
        break;
    case SS_CLOSING:
        session_kill(s);
        break;
    case SS_LINGER:
    case SS_DEAD:
        break;
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_server *srv = arg;
    lk_session *s;
    while ((s = TAILQ_FIRST(&srv->flush_list)) != NULL) {
        TAILQ_REMOVE(&srv->flush_list, s, flush_link);
        s->flush_queued = false;
        session_write(s);
    }
}

static void session_wr_cb(evutil_socket_t fd, short what, void *arg)
{
    session_write(arg);
}

static void reply(lk_session *s, const char *tag, const char *fmt, ...) CM_PRINTF(3, 4);
static void reply(lk_session *s, const char *tag, const char *fmt, ...)
{
    char buf[CM_LOCKP_MAX_LINE + 64];
    va_list ap;
    va_start(ap, fmt);
    size_t n = cm_lockp_vformat(buf, sizeof(buf), tag, fmt, ap);
    va_end(ap);
    if (n > 0)
        session_send(&s->owner, buf, n);
}

/* ---- life cycle ---------------------------------------------------------- */

/* Ends the session's part in the lock table and queues it for the reaper.
 * Safe from the session's own callbacks: nothing is freed here. */
static void session_kill(lk_session *s)
{
    lk_server *srv = s->srv;
    if (s->state == SS_DEAD)
        return;
    lk_locks_owner_end(srv->lk, &s->owner);
    s->state = SS_DEAD;
    event_del(&s->rd);
    event_del(&s->wr);
    event_del(&s->timer);
    event_del(&s->more);
    if (s->flush_queued) {
        TAILQ_REMOVE(&srv->flush_list, s, flush_link);
        s->flush_queued = false;
    }
    TAILQ_REMOVE(&srv->live, s, link);
    srv->n_live--;
    lk_stats.sessions--;
    TAILQ_INSERT_TAIL(&srv->dead, s, link);
    event_active(srv->reap, EV_READ, 0);
    log_debug("session %s (%s) closed", s->id, s->peer);
}

static void session_free(lk_session *s)
{
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    if (s->fd >= 0)
        evutil_closesocket(s->fd);
    free(s);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_server *srv = arg;
    lk_session *s;
    while ((s = TAILQ_FIRST(&srv->dead)) != NULL) {
        TAILQ_REMOVE(&srv->dead, s, link);
        session_free(s);
    }
}

/* A closing session gets a bounded time to hand over its last output: a client
 * that never reads must not pin us. */
static void session_arm_close_bound(lk_session *s)
{
    struct timeval tv = cm_tv_from_ms(CM_MIN(s->srv->timeout_ms, LK_CLOSE_MAX_MS));
    evtimer_add(&s->timer, &tv);
}

/* The session ends now; what is queued still goes out before the socket closes. */
static void session_close_after_flush(lk_session *s)
{
    assert(s->state == SS_ACTIVE);
    lk_locks_owner_end(s->srv->lk, &s->owner);
    s->state = SS_CLOSING;
    event_del(&s->rd);
    event_del(&s->more);
    if (evbuffer_get_length(s->out) == 0) {
        session_kill(s);
        return;
    }
    session_arm_close_bound(s);
}

/*
 * The session sent nothing for session.timeout_ms: it is dead (SPEC 3), and its client
 * hears so before the connection closes. lk_locks queues `* LOST <res> <token> session`
 * for each lock (before releasing it) and `<tag> ERR SESSION ...` for each waiting
 * ACQUIRE; the ERR SESSION push follows; then the output is flushed, our side shut
 * down and the socket closed (session_write, session_linger, session_rd_cb). What the
 * client sends from now on is read and dropped: nothing revives the session.
 */
static void session_expire(lk_session *s, uint64_t idle_ms)
{
    lk_server *srv = s->srv;
    assert(s->state == SS_ACTIVE);
    log_info("session %s (%s) silent for %llu ms: expired, %zu locks lost, %zu waiting "
             "ACQUIREs ended, closing",
             s->id, s->peer, (unsigned long long)idle_ms, s->owner.n_holds, s->owner.n_waiters);
    lk_stats.sessions_expired_total++;
    s->state = SS_EXPIRED;
    lk_locks_owner_expire(srv->lk, &s->owner, idle_ms);
    reply(s, NULL, "ERR SESSION expired after %llu ms of silence (session.timeout_ms=%llu)",
          (unsigned long long)idle_ms, (unsigned long long)srv->timeout_ms);
    /* Lines received but not yet executed are dropped with the session. */
    event_del(&s->more);
    evbuffer_drain(s->in, evbuffer_get_length(s->in));
    s->out_blocked = false;
    if (s->read_paused) {
        s->read_paused = false;
        event_add(&s->rd, NULL);
    }
    session_arm_close_bound(s);
}

/* The expiry notice is written: FIN after it, then wait (bounded by the close timer
 * armed at expiry) for the client's EOF, dropping what it still sends. Closing at once
 * would answer a late line with a reset, which may destroy the notice in flight. */
static void session_linger(lk_session *s)
{
    assert(s->state == SS_EXPIRED);
    s->state = SS_LINGER;
    if (shutdown(s->fd, SHUT_WR) != 0) {
        log_debug("session %s (%s): shutdown: %s", s->id, s->peer, strerror(errno));
        session_kill(s);
    }
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_session *s = arg;
    lk_server *srv = s->srv;
    uint64_t idle = cm_now_ms() - s->last_seen_ms;

    switch (s->state) {
    case SS_ACTIVE: {
        if (idle >= srv->timeout_ms) {
            session_expire(s, idle);
            return;
        }
        struct timeval tv = cm_tv_from_ms(srv->timeout_ms - idle);
        evtimer_add(&s->timer, &tv);
        return;
    }
    case SS_EXPIRED:
    case SS_LINGER:
    case SS_CLOSING:
        log_debug("session %s (%s): closed before its client took all output or said EOF", s->id,
                  s->peer);
        session_kill(s);
        return;
    case SS_DEAD:
        return;
    }
}

/* ---- requests ------------------------------------------------------------ */

/* Compares without an early exit, so the time taken does not tell how much matched. */
static bool secret_equal(const char *want, const char *got, size_t got_len)
{
    size_t want_len = strlen(want);
    size_t n = CM_MAX(want_len, got_len);
    unsigned char diff = want_len != got_len;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < want_len ? (unsigned char)want[i] : 0;
        unsigned char b = i < got_len ? (unsigned char)got[i] : 0;
        diff |= a ^ b;
    }
    return diff == 0;
}

static void do_info(lk_session *s, const char *tag)
{
    lk_server *srv = s->srv;
    reply(s, tag,
          "OK version=%s session_id=%s sessions=%zu locks_held=%lld waiters=%lld masters_up=%zu "
          "masters=%zu quorum=%zu uptime_s=%llu acquires_total=%llu grants_total=%llu "
          "timeouts_total=%llu releases_total=%llu lost_total=%llu handoffs_total=%llu "
          "session_locks=%zu session_waiters=%zu lockd_id=%s masters_quarantined=%zu",
          BOOKING_VERSION, s->id, srv->n_live, (long long)lk_stats.locks_held,
          (long long)lk_stats.waiters, lk_redlock_masters_up(srv->rl),
          lk_redlock_masters_total(srv->rl), lk_redlock_quorum(srv->rl),
          (unsigned long long)((cm_now_ms() - srv->start_ms) / 1000),
          (unsigned long long)lk_stats.acquires_total, (unsigned long long)lk_stats.grants_total,
          (unsigned long long)lk_stats.timeouts_total, (unsigned long long)lk_stats.releases_total,
          (unsigned long long)lk_stats.lost_total, (unsigned long long)lk_stats.handoffs_total,
          s->owner.n_holds, s->owner.n_waiters, lk_locks_id(srv->lk),
          lk_quar_quarantined(lk_redlock_quar(srv->rl)));
}

/* SHOW and REVOKE (SPEC 2b), which the shared request parser does not know: "<tag> SHOW
 * <resource>" / "<tag> REVOKE <resource>". True when line is one of them (answered here,
 * malformed ones included); false: not these verbs, parse it as usual. */
static bool session_admin_line(lk_session *s, const char *line, size_t len)
{
    lk_server *srv = s->srv;
    char tag[CM_LOCKP_TAG_MAX + 1], resource[CM_LOCKP_RESOURCE_MAX + 1];
    if (len > 0 && line[len - 1] == '\r')
        len--;
    const char *sp = memchr(line, ' ', len);
    if (!sp)
        return false;
    size_t tl = (size_t)(sp - line);
    const char *verb = sp + 1, *end = line + len;
    const char *vsp = memchr(verb, ' ', (size_t)(end - verb));
    size_t vl = (size_t)((vsp ? vsp : end) - verb);
    bool show = vl == 4 && strncasecmp(verb, "SHOW", 4) == 0;
    bool revoke = vl == 6 && strncasecmp(verb, "REVOKE", 6) == 0;
    if (!show && !revoke)
        return false;
    if (!cm_lockp_valid_tag(line, tl)) {
        lk_stats.badreq_total++;
        reply(s, NULL, "ERR BADREQ bad tag");
        return true;
    }
    snprintf(tag, sizeof tag, "%.*s", (int)tl, line);
    const char *arg = vsp ? vsp + 1 : end;
    size_t al = (size_t)(end - arg);
    if (!vsp || !cm_lockp_valid_resource(arg, al) || memchr(arg, ' ', al)) {
        lk_stats.badreq_total++;
        reply(s, tag, "ERR BADREQ %s needs one resource", show ? "SHOW" : "REVOKE");
        return true;
    }
    snprintf(resource, sizeof resource, "%.*s", (int)al, arg);
    if (srv->auth[0] && !s->authed) {
        reply(s, tag, "ERR NOAUTH AUTH required");
        return true;
    }
    if (revoke && !s->admin) {
        reply(s, tag, "ERR NOAUTH REVOKE needs AUTH with the admin secret%s",
              srv->admin_auth[0] ? "" : " (admin_auth is not set: REVOKE is off)");
        return true;
    }
    log_debug("session %s: %s %s %s", s->id, tag, show ? "SHOW" : "REVOKE", resource);
    if (show)
        lk_locks_show(srv->lk, &s->owner, tag, resource);
    else
        lk_locks_revoke(srv->lk, &s->owner, tag, resource);
    return true;
}

static void session_line(lk_session *s, const char *line, size_t len)
{
    lk_server *srv = s->srv;
    cm_lockp_request req;
    char err[160];

    if (session_admin_line(s, line, len))
        return;
    switch (cm_lockp_parse_request(line, len, &req, err, sizeof(err))) {
    case CM_LOCKP_OK:
        break;
    case CM_LOCKP_BADREQ:
        lk_stats.badreq_total++;
        reply(s, req.tag, "ERR BADREQ %s", err);
        return;
    case CM_LOCKP_BADREQ_NOTAG:
        lk_stats.badreq_total++;
        reply(s, NULL, "ERR BADREQ %s", err);
        return;
    }
    log_debug("session %s: %s %s %s", s->id, req.tag, cm_lockp_verb_name(req.verb),
              req.verb == CM_VERB_ACQUIRE || req.verb == CM_VERB_RENEW ||
                      req.verb == CM_VERB_RELEASE
                  ? req.resource
                  : "");

    if (srv->auth[0] && !s->authed && req.verb != CM_VERB_HELLO && req.verb != CM_VERB_AUTH &&
        req.verb != CM_VERB_PING && req.verb != CM_VERB_QUIT) {
        reply(s, req.tag, "ERR NOAUTH AUTH required");
        return;
    }
    switch (req.verb) {
    case CM_VERB_HELLO:
        snprintf(s->name, sizeof(s->name), "%.*s", (int)CM_MIN(req.text_len, LK_NAME_MAX),
                 req.text);
        /* SHOW prints it as one field: no spaces or controls */
        for (char *p = s->name; *p; p++)
            if (*p <= ' ' || *p > '~')
                *p = '_';
        s->owner.name = s->name;
        reply(s, req.tag, "OK %s %llu", s->id, (unsigned long long)srv->timeout_ms);
        break;
    case CM_VERB_AUTH:
        if (srv->admin_auth[0] && secret_equal(srv->admin_auth, req.text, req.text_len)) {
            s->authed = true; /* the admin secret also opens what auth guards */
            s->admin = true;
            reply(s, req.tag, "OK");
            break;
        }
        if (srv->auth[0] && !secret_equal(srv->auth, req.text, req.text_len)) {
            log_info("session %s (%s): wrong AUTH secret", s->id, s->peer);
            reply(s, req.tag, "ERR AUTH wrong secret");
            break;
        }
        s->authed = true;
        reply(s, req.tag, "OK");
        break;
    case CM_VERB_PING:
        reply(s, req.tag, "OK PONG");
        break;
    case CM_VERB_ACQUIRE:
        lk_locks_acquire(srv->lk, &s->owner, req.tag, req.resource, req.lease_ms, req.wait_ms);
        break;
    case CM_VERB_RENEW:
        lk_locks_renew(srv->lk, &s->owner, req.tag, req.resource, req.token, req.lease_ms);
        break;
    case CM_VERB_RELEASE:
        lk_locks_release(srv->lk, &s->owner, req.tag, req.resource, req.token);
        break;
    case CM_VERB_INFO:
        do_info(s, req.tag);
        break;
    case CM_VERB_QUIT:
        reply(s, req.tag, "OK BYE");
        session_close_after_flush(s);
        break;
    }
}

static void session_too_long(lk_session *s)
{
    struct evbuffer *in = s->in;
    lk_stats.badreq_total++;
    evbuffer_drain(in, evbuffer_get_length(in));
    reply(s, NULL, "ERR LINE_TOO_LONG a line may have at most %d bytes", CM_LOCKP_MAX_LINE);
    log_info("session %s (%s): line too long, closing", s->id, s->peer);
    session_close_after_flush(s);
}

/*
 * Handles up to LK_LINES_PER_WAKE complete lines. A line is at most
 * CM_LOCKP_MAX_LINE bytes plus an optional CR; a longer one is detected from the
 * buffered length alone, before its LF arrives, so no unbounded data is kept.
 */
static void session_process(lk_session *s)
{
    struct evbuffer *in = s->in;
    struct evbuffer *out = s->out;
    char line[CM_LOCKP_MAX_LINE + 2];
    int lines = 0;

    while (s->state == SS_ACTIVE) {
        if (evbuffer_get_length(out) > LK_OUT_BLOCK) {
            s->out_blocked = true; /* the write callback resumes us */
            return;
        }
        size_t avail = evbuffer_get_length(in);
        if (s->read_paused && avail < LK_READ_HIGH / 2) {
            s->read_paused = false;
            event_add(&s->rd, NULL);
        }
        if (avail == 0)
            return;
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (avail > CM_LOCKP_MAX_LINE + 1)
                session_too_long(s);
            return;
        }
        size_t len = (size_t)eol.pos;
        if (len > CM_LOCKP_MAX_LINE + 1) {
            session_too_long(s);
            return;
        }
        if (lines == LK_LINES_PER_WAKE) {
            event_active(&s->more, EV_READ, 0);
            return;
        }
        evbuffer_remove(in, line, len);
        evbuffer_drain(in, eol_len);
        if (len == CM_LOCKP_MAX_LINE + 1 && line[len - 1] != '\r') {
            session_too_long(s);
            return;
        }
        lines++;
        s->last_seen_ms = cm_now_ms();
        session_line(s, line, len);
    }
}

/* One recv per wake-up straight into the input buffer (no FIONREAD probe). */
static void session_rd_cb(evutil_socket_t fd, short what, void *arg)
{
    lk_session *s = arg;
    struct evbuffer_iovec v;
    ssize_t n;

    if (evbuffer_reserve_space(s->in, LK_READ_CHUNK, &v, 1) < 1) {
        session_kill(s);
        return;
    }
    n = recv(fd, v.iov_base, v.iov_len, 0);
    if (n <= 0) {
        v.iov_len = 0;
        evbuffer_commit_space(s->in, &v, 1);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        log_debug("session %s (%s): %s", s->id, s->peer, n == 0 ? "EOF" : strerror(errno));
        session_kill(s);
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(s->in, &v, 1);
    if (s->state == SS_EXPIRED || s->state == SS_LINGER) {
        log_debug("session %s (%s): %zd bytes after expiry dropped", s->id, s->peer, n);
        evbuffer_drain(s->in, evbuffer_get_length(s->in));
        return;
    }
    if (evbuffer_get_length(s->in) >= LK_READ_HIGH && !s->read_paused) {
        s->read_paused = true;
        event_del(&s->rd);
    }
    session_process(s);
}

static void session_more_cb(evutil_socket_t fd, short what, void *arg)
{
    session_process(arg);
}

/* ---- listener ------------------------------------------------------------ */

static void format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(buf, len, "%s:%d", host, port);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    lk_server *srv = arg;
    lk_session *s = NULL;
    unsigned char raw[LK_SESSION_ID_LEN / 2];
    int one = 1;

    if (srv->n_live >= srv->max_sessions) {
        static const char msg[] = "* ERR LIMIT too many sessions\n";
        /* A fresh socket's send buffer takes one short line without blocking. */
        if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug("limit notice not sent");
        evutil_closesocket(fd);
        log_warn("session refused: limits.max_sessions (%llu) reached",
                 (unsigned long long)srv->max_sessions);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s = calloc(1, sizeof(*s));
    if (!s)
        goto fail;
    s->fd = fd; /* owned by s from here on */
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    if (!s->in || !s->out || cm_rand_bytes(raw, sizeof(raw)) != CM_OK)
        goto fail;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(s->id + 2 * i, 3, "%02x", raw[i]);
    format_peer(sa, s->peer, sizeof(s->peer));
    s->srv = srv;
    s->state = SS_ACTIVE;
    s->last_seen_ms = cm_now_ms();
    lk_owner_init(&s->owner, session_send);
    evtimer_assign(&s->timer, srv->base, session_timer_cb, s);
    event_assign(&s->more, srv->base, -1, 0, session_more_cb, s);
    event_assign(&s->rd, srv->base, fd, EV_READ | EV_PERSIST, session_rd_cb, s);
    event_assign(&s->wr, srv->base, fd, EV_WRITE, session_wr_cb, s);
    event_add(&s->rd, NULL);
    struct timeval tv = cm_tv_from_ms(srv->timeout_ms);
    evtimer_add(&s->timer, &tv);
    TAILQ_INSERT_TAIL(&srv->live, s, link);
    srv->n_live++;
    lk_stats.sessions++;
    lk_stats.sessions_total++;
    log_debug("session %s from %s", s->id, s->peer);
    return;
fail:
    log_error("cannot set up a session from a new connection");
    if (s)
        session_free(s); /* closes fd */
    else
        evutil_closesocket(fd);
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: the listener retries on the next readable event. */
    log_warn("accept failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

lk_server *lk_server_new(struct event_base *base, struct lk_locks *lk, struct lk_redlock *rl,
                         const lk_server_opts *opts)
{
    struct evutil_addrinfo hints, *ai = NULL;
    char port[16];
    lk_server *srv = calloc(1, sizeof(*srv));

    if (!srv)
        return NULL;
    srv->base = base;
    srv->lk = lk;
    srv->rl = rl;
    srv->timeout_ms = opts->session_timeout_ms;
    srv->max_sessions = opts->max_sessions;
    srv->start_ms = cm_now_ms();
    TAILQ_INIT(&srv->live);
    TAILQ_INIT(&srv->dead);
    TAILQ_INIT(&srv->flush_list);
    srv->auth = strdup(opts->auth ? opts->auth : "");
    srv->admin_auth = strdup(opts->admin_auth ? opts->admin_auth : "");
    srv->reap = event_new(base, -1, 0, reap_cb, srv);
    srv->flush = event_new(base, -1, 0, flush_cb, srv);
    if (!srv->auth || !srv->admin_auth || !srv->reap || !srv->flush)
        goto fail;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    snprintf(port, sizeof(port), "%d", opts->listen->port);
    /* Start-up only: resolving a name here cannot stall any session. */
    if (evutil_getaddrinfo(opts->listen->host, port, &hints, &ai) != 0 || !ai) {
        log_error("listen: cannot resolve %s", opts->listen->host);
        goto fail;
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    if (opts->held)
        flags |= LEV_OPT_DISABLED;
    srv->listener = evconnlistener_new_bind(base, accept_cb, srv, flags, 1024, ai->ai_addr,
                                            (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (!srv->listener) {
        log_error("listen: cannot bind %s:%d: %s", opts->listen->host, opts->listen->port,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    evconnlistener_set_error_cb(srv->listener, listener_error_cb);
    return srv;
fail:
    lk_server_free(srv);
    return NULL;
}

void lk_server_start_accepting(lk_server *srv)
{
    if (srv->listener && evconnlistener_enable(srv->listener) != 0)
        log_error("cannot start accepting sessions");
}

void lk_server_stop_accepting(lk_server *srv)
{
    if (srv->listener)
        evconnlistener_free(srv->listener);
    srv->listener = NULL;
}

void lk_server_close_all(lk_server *srv)
{
    lk_session *s, *next;
    for (s = TAILQ_FIRST(&srv->live); s; s = next) {
        next = TAILQ_NEXT(s, link);
        switch (s->state) {
        case SS_ACTIVE:
            session_close_after_flush(s);
            break;
        case SS_LINGER:
            session_kill(s); /* its notice is out: no reason to hold the stop for its EOF */
            break;
        case SS_EXPIRED:
        case SS_CLOSING:
        case SS_DEAD:
            break; /* already closing, bounded */
        }
    }
}

size_t lk_server_sessions(const lk_server *srv)
{
    return srv->n_live;
}

void lk_server_free(lk_server *srv)
{
    lk_session *s;
    if (!srv)
        return;
    lk_server_stop_accepting(srv);
    while ((s = TAILQ_FIRST(&srv->live)) != NULL)
        session_kill(s);
    if (srv->reap) {
        reap_cb(-1, 0, srv);
        event_free(srv->reap);
    }
    if (srv->flush)
        event_free(srv->flush);
    free(srv->auth);
    free(srv->admin_auth);
    free(srv);
}
