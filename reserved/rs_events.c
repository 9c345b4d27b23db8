/*
 * rs_events: live seat events (contract in rs_events.h).
 *
 * Subscribers are grouped by performance (ev_perf, in a hash by id). Each has a cursor:
 * the id of the last event of its performance it has been given (or, for a new stream,
 * the newest event that existed when its performance was checked). Events of one
 * performance become visible in id order (migration 110 takes ids at commit under a lock
 * per performance, released only after the commit is visible), so "give a stream every
 * event above its cursor, in id order" is exact for a reader of the table.
 *
 * The reader: the module's own connection polls the table every events.poll_ms, one
 * query at a time, for every performance with a live stream, after the lowest cursor of
 * its streams. A poll that comes while a performance is in a read marks it dirty (read
 * once more after). A stream that resumes (Last-Event-ID) and a (re)connect read at once.
 * Polling replaced LISTEN/NOTIFY: a transaction that notifies holds one lock for the whole
 * database through its commit and WAL flush, so every booking of every performance
 * queued there (docs/performance.md, "Seat events without NOTIFY").
 *
 * A stream: GET -> SUB_CHECKING (the performance and the newest event id, on the pool)
 * -> SUB_LIVE (200 and the stream) -> freed when the client leaves (on_gone), when it
 * reads too slowly (dropped), or at the stop.
 */
#include "rs_events.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_hist.h"
#include "cm_log.h"
#include "cm_time.h"
#include "rs_dberr.h"

#define EV_PERF_BUCKETS   1024
#define EV_READ_PERFS     256  /* performances per catch-up read */
#define EV_READ_ROWS      1000 /* events per performance per catch-up read (ls_read_sql) */
#define EV_CONNECT_MS     5000 /* a connection attempt that takes longer fails */
#define EV_BACKOFF_MIN_MS 100  /* reconnect backoff: doubles up to the max */
#define EV_BACKOFF_MAX_MS 2000
#define EV_KEEP_S         3600   /* events are kept this long (a resume can reach back) */
#define EV_PRUNE_MS       60000  /* a prune this often */
#define EV_PRUNE_AGAIN_MS 1000   /* after a full batch */
#define EV_PRUNE_MAX      10000  /* events per prune */
#define EV_RETRY_AFTER    "5"    /* seconds, on a 503 at the subscriber cap */
#define EV_RETRY_MS       "2000" /* the stream's "retry:" (EventSource's reconnect delay) */

/* ---- states ---- */

/* A subscriber's states; moved only by sub_move. A subscriber leaves either state by
 * being freed. */
typedef enum sub_state {
    SUB_CHECKING, /* its performance check is on the pool; nothing sent yet */
    SUB_LIVE,     /* streaming: every event above its cursor is written */
    SUB_NSTATES
} sub_state;

static const char *const sub_names[SUB_NSTATES] = {"checking", "live"};

/* The reader's states; moved only by ls_move. */
typedef enum ls_state {
    LS_OFF,        /* not started, or stopped: no connection, no timer */
    LS_CONNECTING, /* PQconnectPoll until ready; the timer is the attempt's deadline */
    LS_IDLE,       /* connected, no query in flight */
    LS_READING,    /* connected, a read in flight */
    LS_BACKOFF,    /* the connection failed: the timer reconnects */
    LS_NSTATES
} ls_state;

static const char *const ls_names[LS_NSTATES] = {"off", "connecting", "idle", "reading", "backoff"};

#define LS_TO(s) (1u << (s))
static const unsigned ls_moves[LS_NSTATES] = {
    [LS_OFF] = LS_TO(LS_CONNECTING),
    [LS_CONNECTING] = LS_TO(LS_IDLE) | LS_TO(LS_BACKOFF) | LS_TO(LS_OFF),
    [LS_IDLE] = LS_TO(LS_READING) | LS_TO(LS_BACKOFF) | LS_TO(LS_OFF),
    [LS_READING] = LS_TO(LS_IDLE) | LS_TO(LS_BACKOFF) | LS_TO(LS_OFF),
    [LS_BACKOFF] = LS_TO(LS_CONNECTING) | LS_TO(LS_OFF),
};

/* ---- data ---- */

typedef struct ev_perf ev_perf;
typedef struct ev_sub ev_sub;

struct ev_sub {
    sub_state state;
    rs_req *r;      /* the stream's request: ours until its reply / stream end */
    ev_perf *perf;  /* borrowed: the performance lives while it has subscribers */
    int64_t cursor; /* the last event id it has (LIVE) */
    int64_t resume; /* Last-Event-ID, -1 when none */
    uint64_t last_write_ms;
    rs_db_req *check;    /* the check in flight (CHECKING); the pool frees it */
    ev_sub *prev, *next; /* in perf->subs */
};

struct ev_perf {
    int64_t id;
    ev_sub *subs;
    size_t nsubs;
    bool read_wanted; /* a read is due */
    bool reading;     /* in the read in flight */
    bool dirty;       /* a poll came during that read: read again after it */
    bool delivering;  /* its subscribers are being walked: not to be freed now */
    ev_perf *hnext;
};

/* One performance of the read in flight. */
typedef struct ev_slot {
    ev_perf *p;
    size_t rows;   /* rows the read brought for it */
    int64_t after; /* its streams' lowest cursor when the read was sent: the read's range */
    int64_t top;   /* their highest: events above it are new (the lag), below, catch-up */
} ev_slot;

static const rs_db_stmt ev_stmts[] = {
    /* the performance exists; the newest event of it (a new stream starts after it) */
    {"ev_check",
     "SELECT EXISTS (SELECT 1 FROM performances WHERE id = $1::bigint),"
     " coalesce((SELECT max(id) FROM seat_events WHERE performance_id = $1::bigint), 0)",
     1},
    {"ev_prune", "SELECT rs_seat_events_prune($1::bigint, $2::int)", 2},
};

/* The events of each performance $1[i] after id $2[i] (at most EV_READ_ROWS each), with
 * their commit times (epoch µs) for the lag. */
static const char ls_read_sql[] =
    "SELECT e.id, e.performance_id, e.payload::text,"
    "       (extract(epoch FROM e.created_at) * 1000000)::bigint"
    "  FROM unnest($1::bigint[], $2::bigint[]) AS c(perf, after),"
    "       LATERAL (SELECT s.id, s.performance_id, s.payload, s.created_at"
    "                  FROM seat_events s"
    "                 WHERE s.performance_id = c.perf AND s.id > c.after"
    "                 ORDER BY s.id LIMIT 1000) AS e" /* EV_READ_ROWS */
    " ORDER BY e.id";

static struct {
    rs_app *app;
    bool started;
    bool stopped;
    ev_perf *perfs[EV_PERF_BUCKETS];
    size_t nsubs;
    struct evbuffer *out;      /* scratch for one write; always empty between writes */
    struct event *keepalive;   /* every events.keepalive_ms / 4: the longest silence is 1.25x */
    struct event *prune_timer; /* one-shot */
    struct event *poll;        /* every events.poll_ms */
    rs_db_req *prune;          /* the prune in flight */
    /* the reader */
    ls_state ls;
    PGconn *conn;
    struct event *sock_ev; /* on PQsocket(conn) */
    struct event *timer;   /* the connect deadline, or the reconnect */
    uint64_t backoff_ms;
    ev_slot *reading; /* the performances of the read in flight */
    size_t nreading;
    size_t kick_from;  /* the bucket the next read's scan starts at (round robin) */
    bool query_failed; /* the read in flight answered an error */
    /* metrics */
    uint64_t delivered, polls, dropped_slow, refused, reconnects, read_events;
    cm_hist lag; /* commit (the database's clock) to the read that brought it */
} ev;

static void ev_kick(void);
static void sub_free(ev_sub *s);

static void sub_move(ev_sub *s, sub_state to)
{
    bool legal = s->state == SUB_CHECKING && to == SUB_LIVE;
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("events: subscriber %p of performance %" PRId64 ": %s -> %s", (void *)s, s->perf->id,
              sub_names[s->state], sub_names[to]);
    s->state = to;
}

static void ls_move(ls_state to)
{
    bool legal = to < LS_NSTATES && (ls_moves[ev.ls] & LS_TO(to)) != 0;
    assert(legal);
    CM_UNUSED(legal);
    log_debug("events: reader %s -> %s", ls_names[ev.ls], ls_names[to]);
    ev.ls = to;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- performances ---- */

static size_t perf_bucket(int64_t id)
{
    return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 54) % EV_PERF_BUCKETS;
}

static ev_perf *perf_find(int64_t id)
{
    for (ev_perf *p = ev.perfs[perf_bucket(id)]; p; p = p->hnext)
        if (p->id == id)
            return p;
    return NULL;
}

static ev_perf *perf_get(int64_t id)
{
    ev_perf *p = perf_find(id);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->id = id;
    size_t b = perf_bucket(id);
    p->hnext = ev.perfs[b];
    ev.perfs[b] = p;
    return p;
}

/* Frees p once nothing needs it: no subscriber, not in a read, not being walked. */
static void perf_release(ev_perf *p)
{
    if (p->nsubs > 0 || p->reading || p->delivering)
        return;
    ev_perf **pp = &ev.perfs[perf_bucket(p->id)];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    free(p);
}

/* A catch-up read of p is due (at once, or after the read it is in). */
static void perf_want_read(ev_perf *p)
{
    if (p->reading)
        p->dirty = true;
    else
        p->read_wanted = true;
}

/* ---- writing to streams ---- */

/* The slow-reader rule, checked before each write: a stream still holding more than
 * events.max_buffer_kib of unsent bytes from earlier writes is closed (its client
 * reconnects with Last-Event-ID when it can keep up). So a stream holds at most the limit
 * plus one event, and one event larger than the limit still goes to a reader that reads.
 * True: s is freed. */
static bool sub_check_slow(ev_sub *s)
{
    size_t unsent = rs_stream_unsent(s->r);
    if (unsent <= (size_t)ev.app->cfg.events_max_buffer_kib * 1024)
        return false;
    log_info("events: dropping a slow reader of performance %" PRId64 " (%zu bytes unsent)",
             s->perf->id, unsent);
    ev.dropped_slow++;
    rs_stream_abort(s->r);
    s->r = NULL;
    sub_free(s);
    return true;
}

/* Writes static bytes (a comment, the preamble) to s. True: s was dropped (freed). */
static bool sub_write_static(ev_sub *s, const char *text, size_t len)
{
    if (sub_check_slow(s))
        return true;
    evbuffer_add_reference(ev.out, text, len, NULL, NULL);
    rs_stream_write(s->r, ev.out);
    s->last_write_ms = cm_now_ms();
    return false;
}

/* Gives event id (payload: its JSON as PostgreSQL's jsonb output wrote it, which is one
 * line: an SSE data line ends at a newline) to every live subscriber of p whose cursor is
 * below it and not below after, the read's range: a stream that went live behind it while
 * the read was in flight (a resume, a check older than the read) would skip the events in
 * between; the read again after this one (dirty, or the next poll) starts at its cursor.
 * The text is made once and shared by every stream (rs_stream_piece). */
static void ev_deliver(ev_perf *p, int64_t after, int64_t id, const char *payload, size_t len)
{
    if (len == 0 || payload[0] != '{' || memchr(payload, '\n', len) || memchr(payload, '\r', len)) {
        log_warn("events: event %" PRId64 " has no one-line JSON object as its payload", id);
        return;
    }
    static const char fmt[] = "id: %" PRId64 "\nevent: seats\ndata: %.*s\n\n";
    size_t cap = len + sizeof(fmt) + 24;
    char *text = malloc(cap);
    int n = text ? snprintf(text, cap, fmt, id, (int)len, payload) : 0;
    /* the event's text, framed once, shared by every stream (ours until the walk is over) */
    rs_stream_piece *piece = text ? rs_stream_piece_new(text, (size_t)n) : NULL;
    free(text);
    if (!piece) {
        log_error("events: out of memory for event %" PRId64, id);
        return;
    }
    p->delivering = true;
    ev_sub *next;
    for (ev_sub *s = p->subs; s; s = next) {
        next = s->next;
        if (s->state != SUB_LIVE || s->cursor >= id || s->cursor < after || sub_check_slow(s))
            continue;
        rs_stream_write_piece(s->r, piece);
        s->cursor = id;
        s->last_write_ms = cm_now_ms();
        ev.delivered++;
    }
    p->delivering = false;
    rs_stream_piece_unref(piece);
    perf_release(p);
}

/* ---- subscribers ---- */

static void sub_free(ev_sub *s)
{
    ev_perf *p = s->perf;
    if (s->prev)
        s->prev->next = s->next;
    else
        p->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    p->nsubs--;
    ev.nsubs--;
    free(s);
    perf_release(p);
}

/* The client of a live stream left. */
static void sub_gone(rs_req *r, void *arg)
{
    ev_sub *s = arg;
    log_debug("events: a subscriber of performance %" PRId64 " left", s->perf->id);
    rs_stream_end(r);
    sub_free(s);
}

static void reply_unavailable(rs_req *r, const char *msg, const char *retry_after)
{
    rs_reply_json_hdr(r, 503,
                      json_pack("{s:{s:s,s:s}}", "error", "code", "UNAVAILABLE", "message", msg),
                      "Retry-After", retry_after);
}

/* The check of a new subscriber answered: 404, an error, or the stream starts. */
static void sub_checked(void *arg, const rs_db_result *res)
{
    ev_sub *s = arg;
    rs_req *r = s->r;
    s->check = NULL;
    if (rs_dberr_failed(r, res, "GET /performances/{id}/events")) {
        sub_free(s);
        return;
    }
    if (PQntuples(res->pg) != 1 || strcmp(PQgetvalue(res->pg, 0, 0), "t") != 0) {
        rs_reply_error(r, 404, "NOT_FOUND", "performance %" PRId64 " does not exist", s->perf->id);
        sub_free(s);
        return;
    }
    int64_t newest = strtoll(PQgetvalue(res->pg, 0, 1), NULL, 10);
    if (rs_stream_start(r, "text/event-stream", sub_gone, s) != CM_OK) {
        rs_dberr_internal(r, "GET /performances/{id}/events: out of memory", NULL);
        sub_free(s);
        return;
    }
    /* a Last-Event-ID beyond the newest event (another database, a typo) starts now */
    bool resume = s->resume >= 0 && s->resume < newest;
    s->cursor = resume ? s->resume : newest;
    sub_move(s, SUB_LIVE);
    static const char preamble[] = ": seat events\nretry: " EV_RETRY_MS "\n\n";
    ev_perf *p = s->perf;
    if (sub_write_static(s, preamble, sizeof(preamble) - 1))
        return;
    /* the next poll reads after its cursor anyway; a replay goes at once */
    if (resume) {
        perf_want_read(p);
        ev_kick();
    }
}

/* GET /performances/{id}/events */
static void events_get(rs_req *r)
{
    int64_t perf_id = rs_req_id(r, 0);
    if (ev.stopped || !ev.started || ev.app->shutting_down) {
        reply_unavailable(r, "the server is stopping", "1");
        return;
    }
    if (ev.nsubs >= (size_t)ev.app->cfg.events_max_subscribers) {
        ev.refused++;
        reply_unavailable(r, "too many event streams on this server (events.max_subscribers)",
                          EV_RETRY_AFTER);
        return;
    }
    ev_perf *p = perf_get(perf_id);
    ev_sub *s = p ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        if (p)
            perf_release(p);
        rs_dberr_internal(r, "GET /performances/{id}/events: out of memory", NULL);
        return;
    }
    s->r = r;
    s->perf = p;
    s->state = SUB_CHECKING;
    s->resume = -1;
    const char *leid = rs_req_header(r, "Last-Event-ID");
    if (leid) {
        char *end;
        long long v = strtoll(leid, &end, 10);
        if (end != leid && *end == '\0' && v >= 0)
            s->resume = v;
    }
    s->next = p->subs;
    if (p->subs)
        p->subs->prev = s;
    p->subs = s;
    p->nsubs++;
    ev.nsubs++;
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, perf_id);
    const char *params[] = {id};
    s->check = rs_db_exec(ev.app->db, "ev_check", 1, params, sub_checked, s);
    if (!s->check) {
        reply_unavailable(r, "the database is unavailable", "1");
        sub_free(s);
    }
}

const rs_route rs_events_routes[] = {
    {RS_GET, "/performances/{id}/events", "performance_events", events_get, RS_ACCESS_PUBLIC},
};
const size_t rs_events_nroutes = CM_ARRAY_LEN(rs_events_routes);

/* Calls fn on every subscriber (fn may free it). */
static void each_sub(void (*fn)(ev_sub *s))
{
    for (size_t b = 0; b < EV_PERF_BUCKETS; b++) {
        ev_perf *pnext;
        for (ev_perf *p = ev.perfs[b]; p; p = pnext) {
            pnext = p->hnext;
            p->delivering = true;
            ev_sub *next;
            for (ev_sub *s = p->subs; s; s = next) {
                next = s->next;
                fn(s);
            }
            p->delivering = false;
            perf_release(p);
        }
    }
}

static void keepalive_one(ev_sub *s)
{
    static const char comment[] = ": keep-alive\n\n";
    if (s->state == SUB_LIVE &&
        cm_now_ms() - s->last_write_ms >= (uint64_t)ev.app->cfg.events_keepalive_ms)
        (void)sub_write_static(s, comment, sizeof(comment) - 1);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    each_sub(keepalive_one);
}

/* Every performance with a stream reads what came after its streams' cursors (a poll, a
 * (re)connect). */
static void read_all(void)
{
    for (size_t b = 0; b < EV_PERF_BUCKETS; b++)
        for (ev_perf *p = ev.perfs[b]; p; p = p->hnext)
            perf_want_read(p);
    ev_kick();
}

/* The poll, while a stream is open. */
static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    if (ev.nsubs == 0)
        return;
    ev.polls++;
    read_all();
}

/* ---- the reader ---- */

static void ls_on_socket(evutil_socket_t fd, short what, void *arg);
static void ls_connect(void);

/* Watches the connection's socket for what (EV_READ, EV_WRITE or both); fresh: a new
 * event even if nothing changed (libpq may have replaced the socket while connecting). */
static void ls_watch(short what, bool fresh)
{
    int fd = PQsocket(ev.conn);
    if (ev.sock_ev && !fresh && event_get_fd(ev.sock_ev) == fd &&
        (event_get_events(ev.sock_ev) & (EV_READ | EV_WRITE)) == what)
        return;
    if (ev.sock_ev)
        event_free(ev.sock_ev);
    ev.sock_ev = NULL;
    if (fd < 0)
        return;
    ev.sock_ev = event_new(ev.app->base, fd, what | EV_PERSIST, ls_on_socket, NULL);
    if (!ev.sock_ev || event_add(ev.sock_ev, NULL) != 0)
        log_error("events: cannot watch the reader's socket");
}

/* Forgets the connection (and the read in flight: those performances read again). */
static void ls_close(void)
{
    if (ev.sock_ev)
        event_free(ev.sock_ev);
    ev.sock_ev = NULL;
    if (ev.conn)
        PQfinish(ev.conn);
    ev.conn = NULL;
    for (size_t i = 0; i < ev.nreading; i++) {
        ev_perf *p = ev.reading[i].p;
        p->reading = false;
        p->dirty = false;
        p->read_wanted = true;
        perf_release(p);
    }
    ev.nreading = 0;
}

/* The connection failed or broke: reconnect after the backoff. */
static void ls_fail(const char *why)
{
    log_warn("events: reader connection %s: %s; reconnecting in %" PRIu64 " ms", why,
             ev.conn ? PQerrorMessage(ev.conn) : "no connection", ev.backoff_ms);
    ls_close();
    ls_move(LS_BACKOFF);
    struct timeval tv = cm_tv_from_ms(ev.backoff_ms);
    evtimer_add(ev.timer, &tv);
    ev.backoff_ms = ev.backoff_ms * 2 > EV_BACKOFF_MAX_MS ? EV_BACKOFF_MAX_MS : ev.backoff_ms * 2;
}

/* Sends what is queued; watches for writability while some is left. False: broken. */
static bool ls_flush(void)
{
    int f = PQflush(ev.conn);
    if (f < 0)
        return false;
    ls_watch(f == 1 ? (EV_READ | EV_WRITE) : EV_READ, false);
    return true;
}

/* Starts a read of the performances that want one (reader idle). */
static void ev_kick(void)
{
    if (ev.ls != LS_IDLE)
        return;
    cm_strbuf ids = CM_STRBUF_INIT, afters = CM_STRBUF_INIT;
    ev.nreading = 0;
    /* from where the last scan stopped: with more performances wanting a read than one
     * read takes, the first buckets must not take every read */
    size_t k = 0, b = ev.kick_from;
    for (; k < EV_PERF_BUCKETS && ev.nreading < EV_READ_PERFS; k++) {
        b = (ev.kick_from + k) % EV_PERF_BUCKETS;
        for (ev_perf *p = ev.perfs[b]; p && ev.nreading < EV_READ_PERFS; p = p->hnext) {
            if (!p->read_wanted)
                continue;
            p->read_wanted = false;
            int64_t after = INT64_MAX, top = INT64_MIN;
            for (ev_sub *s = p->subs; s; s = s->next) {
                if (s->state != SUB_LIVE)
                    continue;
                after = s->cursor < after ? s->cursor : after;
                top = s->cursor > top ? s->cursor : top;
            }
            if (after == INT64_MAX)
                continue; /* nobody live: a new stream asks again when it is */
            p->reading = true;
            p->dirty = false;
            ev.reading[ev.nreading++] = (ev_slot){.p = p, .rows = 0, .after = after, .top = top};
            cm_strbuf_printf(&ids, "%s%" PRId64, ev.nreading > 1 ? "," : "{", p->id);
            cm_strbuf_printf(&afters, "%s%" PRId64, ev.nreading > 1 ? "," : "{", after);
        }
    }
    /* a full read stops inside bucket b: the next starts there, else after the last one */
    ev.kick_from = ev.nreading >= EV_READ_PERFS ? b : (ev.kick_from + k) % EV_PERF_BUCKETS;
    if (ev.nreading == 0) {
        cm_strbuf_free(&ids);
        cm_strbuf_free(&afters);
        return;
    }
    cm_strbuf_append(&ids, "}", 1);
    cm_strbuf_append(&afters, "}", 1);
    const char *params[] = {cm_strbuf_str(&ids), cm_strbuf_str(&afters)};
    int sent = PQsendQueryParams(ev.conn, ls_read_sql, 2, NULL, params, NULL, NULL, 0);
    cm_strbuf_free(&ids);
    cm_strbuf_free(&afters);
    ls_move(LS_READING);
    ev.query_failed = false;
    if (!sent || !ls_flush())
        ls_fail("failed sending a read");
}

/* One row of a read: (id, performance id, payload, commit µs). */
static void ls_read_row(const PGresult *res, int row)
{
    int64_t id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    int64_t perf_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
    for (size_t i = 0; i < ev.nreading; i++) {
        ev_slot *sl = &ev.reading[i];
        if (sl->p->id != perf_id)
            continue;
        sl->rows++;
        ev.read_events++;
        if (id > sl->top) { /* new to every stream: its lag; a catch-up's rows are older */
            uint64_t at_us = strtoull(PQgetvalue(res, row, 3), NULL, 10), now = wall_us();
            cm_hist_observe_us(&ev.lag, now > at_us ? now - at_us : 0);
        }
        ev_deliver(sl->p, sl->after, id, PQgetvalue(res, row, 2), (size_t)PQgetlength(res, row, 2));
        return;
    }
}

/* The read in flight is over (ok: it succeeded). */
static void ls_read_done(bool ok)
{
    for (size_t i = 0; i < ev.nreading; i++) {
        ev_perf *p = ev.reading[i].p;
        p->reading = false;
        /* a full portion: more to read; a poll during it: read again */
        if (!ok || p->dirty || ev.reading[i].rows >= EV_READ_ROWS)
            p->read_wanted = true;
        p->dirty = false;
        perf_release(p);
    }
    ev.nreading = 0;
}

/* Every result of the read in flight that is complete. */
static void ls_drain(void)
{
    while (ev.ls == LS_READING && !PQisBusy(ev.conn)) {
        PGresult *res = PQgetResult(ev.conn);
        if (res == NULL) { /* the read is over */
            bool failed = ev.query_failed;
            ls_read_done(!failed);
            if (failed) { /* not at once again: after the backoff */
                ls_fail("failed a read");
                break;
            }
            /* the backoff starts over only once a read works: a read that keeps failing
             * must not reconnect every EV_BACKOFF_MIN_MS */
            ev.backoff_ms = EV_BACKOFF_MIN_MS;
            ls_move(LS_IDLE);
            ev_kick();
            continue;
        }
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(res); i++)
                ls_read_row(res, i);
        } else {
            log_warn("events: a read failed: %s", PQresultErrorMessage(res));
            ev.query_failed = true; /* the connection starts again (after the backoff) */
        }
        PQclear(res);
    }
}

/* Connected: what was committed while we were not is read at once. */
static void ls_ready(void)
{
    if (PQsetnonblocking(ev.conn, 1) != 0) {
        ls_fail("failed to go non-blocking");
        return;
    }
    log_info("events: reading seat events every %" PRId64 " ms", ev.app->cfg.events_poll_ms);
    ls_move(LS_IDLE);
    ls_watch(EV_READ, true);
    read_all();
}

static void ls_on_socket(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(arg);
    if (ev.ls == LS_CONNECTING) {
        switch (PQconnectPoll(ev.conn)) {
        case PGRES_POLLING_READING:
            ls_watch(EV_READ, true);
            return;
        case PGRES_POLLING_WRITING:
            ls_watch(EV_WRITE, true);
            return;
        case PGRES_POLLING_OK:
            evtimer_del(ev.timer);
            ls_ready();
            return;
        default:
            ls_fail("failed");
            return;
        }
    }
    if ((what & EV_WRITE) && !ls_flush()) {
        ls_fail("broke");
        return;
    }
    if (what & EV_READ) {
        if (!PQconsumeInput(ev.conn) || PQstatus(ev.conn) != CONNECTION_OK) {
            ls_fail("broke");
            return;
        }
        ls_drain();
    }
}

static void ls_on_timer(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    if (ev.ls == LS_CONNECTING) {
        ls_fail("timed out connecting");
        return;
    }
    if (ev.ls == LS_BACKOFF) {
        ev.reconnects++;
        ls_connect();
    }
}

/* A new connection attempt (non-blocking): CONNECTING, or BACKOFF when it fails at once. */
static void ls_connect(void)
{
    static const char *const keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {ev.app->cfg.database, "reserved-events", NULL};
    ls_move(LS_CONNECTING);
    ev.conn = PQconnectStartParams(keys, vals, 1);
    if (!ev.conn || PQstatus(ev.conn) == CONNECTION_BAD) {
        ls_fail("failed");
        return;
    }
    struct timeval tv = cm_tv_from_ms(EV_CONNECT_MS);
    evtimer_add(ev.timer, &tv);
    ls_watch(EV_WRITE, true); /* PQconnectStart's first poll waits for writability */
}

/* ---- the pruner ---- */

static void prune_arm(uint64_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    evtimer_add(ev.prune_timer, &tv);
}

static void prune_done(void *arg, const rs_db_result *res)
{
    CM_UNUSED(arg);
    ev.prune = NULL;
    uint64_t next = EV_PRUNE_MS;
    if (!res->ok) {
        log_warn("events: pruning failed (%s): %s", res->sqlstate, res->message);
    } else if (PQntuples(res->pg) == 1) {
        long long n = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
        if (n > 0)
            log_info("events: pruned %lld seat events older than %d s", n, EV_KEEP_S);
        if (n >= EV_PRUNE_MAX)
            next = EV_PRUNE_AGAIN_MS;
    }
    prune_arm(next);
}

static void on_prune(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    if (ev.prune || ev.app->shutting_down)
        return;
    char keep[24], max[24];
    snprintf(keep, sizeof keep, "%d", EV_KEEP_S);
    snprintf(max, sizeof max, "%d", EV_PRUNE_MAX);
    const char *params[] = {keep, max};
    ev.prune = rs_db_exec(ev.app->db, "ev_prune", 2, params, prune_done, NULL);
    if (!ev.prune)
        prune_arm(EV_PRUNE_MS);
}

/* ---- the module ---- */

void rs_events_register(rs_db *db)
{
    rs_db_register(db, ev_stmts, CM_ARRAY_LEN(ev_stmts));
}

cm_rc rs_events_start(rs_app *app)
{
    assert(!ev.started && ev.ls == LS_OFF);
    ev.app = app;
    cm_hist_init_latency(&ev.lag);
    ev.out = evbuffer_new();
    ev.timer = evtimer_new(app->base, ls_on_timer, NULL);
    ev.keepalive = event_new(app->base, -1, EV_PERSIST, on_keepalive, NULL);
    ev.prune_timer = evtimer_new(app->base, on_prune, NULL);
    ev.poll = event_new(app->base, -1, EV_PERSIST, on_poll, NULL);
    ev.reading = calloc(EV_READ_PERFS, sizeof(*ev.reading));
    ev.started = true; /* rs_events_stop frees what was made, whatever failed */
    if (!ev.out || !ev.timer || !ev.keepalive || !ev.prune_timer || !ev.poll || !ev.reading) {
        log_error("events: out of memory starting");
        return CM_ERR;
    }
    struct timeval ka = cm_tv_from_ms((uint64_t)app->cfg.events_keepalive_ms / 4);
    struct timeval poll = cm_tv_from_ms((uint64_t)app->cfg.events_poll_ms);
    if (event_add(ev.keepalive, &ka) != 0 || event_add(ev.poll, &poll) != 0)
        return CM_ERR;
    prune_arm(EV_PRUNE_MS);
    ev.backoff_ms = EV_BACKOFF_MIN_MS;
    ls_connect();
    return CM_OK;
}

/* The stop, for one subscriber: 503 to one still checked, the end of a stream (closed
 * at once when its reader is behind: a graceful stop does not wait for slow readers). */
static void stop_one(ev_sub *s)
{
    if (s->state == SUB_CHECKING) {
        rs_db_cancel(s->check);
        s->check = NULL;
        reply_unavailable(s->r, "the server is stopping", "1");
    } else if (rs_stream_unsent(s->r) > 0) {
        rs_stream_abort(s->r);
    } else {
        rs_stream_end(s->r);
    }
    sub_free(s);
}

void rs_events_stop(void)
{
    if (!ev.started || ev.stopped)
        return;
    ev.stopped = true;
    size_t n = ev.nsubs;
    each_sub(stop_one);
    if (n > 0)
        log_info("events: %zu event streams ended", n);
    if (ev.ls != LS_OFF) {
        ls_close();
        ls_move(LS_OFF);
    }
    if (ev.prune)
        rs_db_cancel(ev.prune);
    ev.prune = NULL;
    if (ev.timer)
        event_free(ev.timer);
    if (ev.keepalive)
        event_free(ev.keepalive);
    if (ev.prune_timer)
        event_free(ev.prune_timer);
    if (ev.poll)
        event_free(ev.poll);
    if (ev.out)
        evbuffer_free(ev.out);
    ev.timer = ev.keepalive = ev.prune_timer = ev.poll = NULL;
    ev.out = NULL;
    free(ev.reading);
    ev.reading = NULL;
}

void rs_events_metrics(cm_strbuf *out)
{
    if (!ev.started)
        return;
    cm_strbuf_printf(
        out,
        "# HELP reserved_events_subscribers seat event streams open (being checked or live)\n"
        "# TYPE reserved_events_subscribers gauge\nreserved_events_subscribers %zu\n"
        "# HELP reserved_events_delivered_total seat events written to streams (one per event "
        "and stream)\n# TYPE reserved_events_delivered_total counter\n"
        "reserved_events_delivered_total %" PRIu64 "\n"
        "# HELP reserved_events_polls_total polls of the seat events table (every "
        "events.poll_ms while a stream is open)\n# TYPE reserved_events_polls_total counter\n"
        "reserved_events_polls_total %" PRIu64 "\n"
        "# HELP reserved_events_read_total seat events read from the table\n"
        "# TYPE reserved_events_read_total counter\nreserved_events_read_total %" PRIu64 "\n"
        "# HELP reserved_events_slow_readers_dropped_total streams closed because their "
        "unsent output passed events.max_buffer_kib\n"
        "# TYPE reserved_events_slow_readers_dropped_total counter\n"
        "reserved_events_slow_readers_dropped_total %" PRIu64 "\n"
        "# HELP reserved_events_refused_total streams refused at events.max_subscribers "
        "(503)\n# TYPE reserved_events_refused_total counter\n"
        "reserved_events_refused_total %" PRIu64 "\n"
        "# HELP reserved_events_reader_up whether the connection that reads seat events is "
        "up\n# TYPE reserved_events_reader_up gauge\nreserved_events_reader_up %d\n"
        "# HELP reserved_events_reader_reconnects_total reconnects of the connection that "
        "reads seat events\n# TYPE reserved_events_reader_reconnects_total counter\n"
        "reserved_events_reader_reconnects_total %" PRIu64 "\n",
        ev.nsubs, ev.delivered, ev.polls, ev.read_events, ev.dropped_slow, ev.refused,
        ev.ls == LS_IDLE || ev.ls == LS_READING, ev.reconnects);
    cm_hist_format(&ev.lag, "reserved_events_lag_seconds",
                   "commit of a seat event (its database clock) to its read here", "", out);
}
