/*
 * rs_db: see rs_db.h. Owns every PGconn of the pool, one libevent event per connection
 * socket, the wait queue of rs_db_req and the prepared-statement tables.
 *
 * Life of a connection (conn_state below): DOWN -> CONNECTING (PQconnectPoll) -> SETUP
 * (SET timeouts, then PQsendPrepare of every registered statement, one at a time) -> IDLE
 * and "up". From IDLE it is taken by an autocommit request (BUSY) or leased (LEASED);
 * a returned lease with an open transaction goes through RESETTING (ROLLBACK) first. A
 * connection that breaks fails its in-flight callback with unavailable=true, is closed and
 * reconnects from a backoff timer (100 ms doubling to 2 s). A leased connection that
 * breaks stays LEASED and broken until its holder returns it: reconnecting under the
 * holder would run its next statement (COMMIT!) outside its transaction.
 *
 * Callbacks never run inside the call that started them: requests are handed to
 * connections by a dispatch event, and failures found inside a starting call are
 * delivered from a zero timer. rs_db_free must not be called from inside an rs_db
 * callback.
 *
 * An rs_db_req is owned by the pool: it is freed right after its callback runs (or at
 * rs_db_cancel). Callers must forget their pointer in the callback.
 */
#include "rs_db.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cm_log.h"

#define RS_DB_BACKOFF_MIN_MS 100u
#define RS_DB_BACKOFF_MAX_MS 2000u

/* SQLSTATEs for failures that never reached the server. */
#define SQLSTATE_CONN_LOST "08006" /* connection_failure: the connection broke */
#define SQLSTATE_NO_CONN   "08001" /* unable to establish: no connection is up */
#define SQLSTATE_POOL_FULL "53300" /* too_many_connections: no free connection in time */
#define SQLSTATE_MISUSE    "55000" /* object_not_in_prerequisite_state */

typedef enum conn_state {
    CONN_DOWN,       /* no PGconn: waiting for the backoff timer (or never started) */
    CONN_CONNECTING, /* PQconnectPoll in progress; tev bounds it */
    CONN_SETUP,      /* up on the wire; SET + prepares in flight, one at a time; tev bounds it */
    CONN_IDLE,       /* up and free in the pool */
    CONN_BUSY,       /* running one autocommit request (conn->req) */
    CONN_LEASED,     /* held by a caller; conn->cb set while its statement is in flight */
    CONN_RESETTING,  /* returned with an open transaction: ROLLBACK in flight */
} conn_state;

typedef enum query_kind {
    Q_NONE,  /* nothing in flight */
    Q_SETUP, /* step setup_step of the connection setup */
    Q_EXEC,  /* the autocommit statement of conn->req */
    Q_LEASE, /* a statement of the lease holder (conn->cb) */
    Q_RESET, /* the ROLLBACK before a returned connection is reused */
} query_kind;

typedef enum req_kind {
    REQ_EXEC,
    REQ_LEASE,
} req_kind;

typedef enum req_state {
    REQ_QUEUED,  /* in db->queue, ev bounds the wait (lease_timeout_ms) */
    REQ_RUNNING, /* an exec sent on req->conn */
    REQ_FAILING, /* failed inside its starting call; ev (zero timer) delivers it */
} req_state;

struct rs_db_req {
    rs_db *db;
    req_kind kind;
    req_state state;
    rs_db_cb cb;        /* REQ_EXEC */
    rs_db_lease_cb lcb; /* REQ_LEASE */
    void *arg;
    bool urgent;            /* queued ahead of every request that is not (rs_db_lease_urgent) */
    bool cancelled;         /* RUNNING exec whose callback must not run */
    bool in_cb;             /* its callback is running: rs_db_cancel is a no-op */
    struct event *ev;       /* lease timeout / deferred failure */
    const char *fail_state; /* REQ_FAILING: the SQLSTATE to report */
    const char *fail_msg;   /* REQ_FAILING: the message (static) */
    char *stmt;             /* REQ_EXEC: statement name (in the params block) */
    int nparams;            /* REQ_EXEC */
    char **params;          /* REQ_EXEC: copies, NULL = SQL NULL (one allocation) */
    TAILQ_ENTRY(rs_db_req) link;
};
TAILQ_HEAD(req_queue, rs_db_req);

struct rs_db_conn {
    rs_db *db;
    size_t idx; /* in db->conns, for log lines */
    conn_state state;
    PGconn *pg;        /* NULL when DOWN, or LEASED and broken */
    struct event *ev;  /* the socket event; NULL when there is no socket */
    int ev_fd;         /* the socket ev watches */
    short ev_what;     /* EV_READ/EV_WRITE it watches (always with EV_PERSIST) */
    struct event *tev; /* backoff, connect timeout, deferred failure of a lease statement */
    uint32_t backoff_ms;
    bool up;           /* counted in db->n_up */
    bool broken;       /* LEASED only: the connection is gone, waiting for the return */
    bool flushing;     /* PQflush returned 1: watching EV_WRITE too */
    query_kind query;  /* what is in flight */
    size_t setup_step; /* Q_SETUP: 0 = SET, k = prepare of statement k-1 */
    PGresult *last;    /* the last result of the statement in flight */
    rs_db_req *req;    /* CONN_BUSY: the autocommit request */
    rs_db_cb cb;       /* CONN_LEASED: the holder's callback for the statement in flight */
    void *cb_arg;
    char err[256]; /* why it broke, for the failure callback */
};

typedef struct stmt_table {
    const rs_db_stmt *stmts;
    size_t n;
} stmt_table;

struct rs_db {
    struct event_base *base;
    char *conninfo;
    rs_db_opts opts;    /* defaults filled in */
    rs_db_conn *conns;  /* opts.pool_size of them */
    stmt_table *tables; /* registered statements */
    size_t n_tables;
    size_t n_stmts;
    struct req_queue queue;   /* QUEUED requests, oldest first */
    struct req_queue failing; /* FAILING requests, waiting for their zero timer */
    size_t queue_len;
    size_t n_up;            /* connections up (IDLE, BUSY, LEASED and not broken, RESETTING) */
    bool ever_up;           /* until the first connection is up, requests wait */
    struct event *dispatch; /* hands queued requests to idle connections */
    char setup_sql[256];    /* the SETs of every new connection */
};

static void conn_connect(rs_db_conn *c);
static void conn_broken(rs_db_conn *c, const char *why);
static void conn_send_setup(rs_db_conn *c);
static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

/* ---- results ---- */

static bool sqlstate_unavailable(const char *st)
{
    /* Connection exceptions (but not protocol_violation, a caller bug) and the server
     * shutting down or starting up. */
    return (strncmp(st, "08", 2) == 0 && strcmp(st, "08P01") != 0) || strcmp(st, "57P01") == 0 ||
           strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0;
}

static const char *field_or_empty(const PGresult *r, int field)
{
    const char *s = r ? PQresultErrorField(r, field) : NULL;
    return s ? s : "";
}

/* Fills res from the last result of a finished statement. */
static void result_from_pg(rs_db_result *res, PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    memset(res, 0, sizeof *res);
    res->pg = r;
    res->ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (res->ok) {
        res->sqlstate = res->message = res->detail = "";
        return;
    }
    res->sqlstate = field_or_empty(r, PG_DIAG_SQLSTATE);
    res->message = field_or_empty(r, PG_DIAG_MESSAGE_PRIMARY);
    res->detail = field_or_empty(r, PG_DIAG_MESSAGE_DETAIL);
    if (!r) {
        res->message = "no result";
    } else if (*res->message == '\0') {
        res->message = PQresultErrorMessage(r);
    }
    res->unavailable = sqlstate_unavailable(res->sqlstate);
}

static void result_failure(rs_db_result *res, const char *sqlstate, const char *message)
{
    memset(res, 0, sizeof *res);
    res->sqlstate = sqlstate;
    res->message = message;
    res->detail = "";
    res->unavailable = true;
}

/* ---- requests ---- */

static void req_free(rs_db_req *req)
{
    if (req->ev) {
        event_free(req->ev);
    }
    free(req->params);
    free(req);
}

/* Runs the request's callback (once) with res, then frees it. lease is for REQ_LEASE. */
static void req_finish(rs_db_req *req, rs_db_conn *lease, const rs_db_result *res)
{
    if (!req->cancelled) {
        req->in_cb = true;
        if (req->kind == REQ_EXEC) {
            req->cb(req->arg, res);
        } else {
            req->lcb(req->arg, lease, res);
        }
    }
    req_free(req);
}

static void req_fail(rs_db_req *req, const char *sqlstate, const char *message)
{
    rs_db_result res;
    result_failure(&res, sqlstate, message);
    req_finish(req, NULL, &res);
}

static void queue_remove(rs_db *db, rs_db_req *req)
{
    TAILQ_REMOVE(&db->queue, req, link);
    db->queue_len--;
    evtimer_del(req->ev);
}

static void req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    rs_db_req *req = arg;
    if (req->state == REQ_FAILING) {
        TAILQ_REMOVE(&req->db->failing, req, link);
        req_fail(req, req->fail_state, req->fail_msg);
        return;
    }
    /* REQ_QUEUED: waited lease_timeout_ms */
    rs_db *db = req->db;
    queue_remove(db, req);
    if (db->n_up == 0) {
        req_fail(req, SQLSTATE_NO_CONN, "database unavailable: no connection is up");
    } else {
        req_fail(req, SQLSTATE_POOL_FULL, "database pool exhausted: no connection free in time");
    }
}

/* Fails a request that has not reached any connection, from a zero timer. */
static void req_fail_later(rs_db_req *req, const char *sqlstate, const char *message)
{
    static const struct timeval now = {0, 0};
    req->state = REQ_FAILING;
    req->fail_state = sqlstate;
    req->fail_msg = message;
    TAILQ_INSERT_TAIL(&req->db->failing, req, link);
    evtimer_add(req->ev, &now);
}

static void schedule_dispatch(rs_db *db)
{
    event_active(db->dispatch, EV_TIMEOUT, 0);
}

/* Queues a new request, or fails it at once (from the loop) when no connection is up
 * (after the pool was up once) or the queue is full. */
static rs_db_req *req_submit(rs_db *db, rs_db_req *req)
{
    req->db = db;
    req->ev = evtimer_new(db->base, req_timer_cb, req);
    if (!req->ev) {
        req_free(req);
        return NULL;
    }
    if (db->ever_up && db->n_up == 0) {
        req_fail_later(req, SQLSTATE_NO_CONN, "database unavailable: no connection is up");
    } else if (db->queue_len >= db->opts.max_queue) {
        req_fail_later(req, SQLSTATE_POOL_FULL, "database pool exhausted: wait queue full");
    } else {
        struct timeval tv = {(time_t)(db->opts.lease_timeout_ms / 1000),
                             (suseconds_t)(db->opts.lease_timeout_ms % 1000) * 1000};
        req->state = REQ_QUEUED;
        rs_db_req *after_urgent = NULL;
        if (req->urgent) { /* behind the urgent ones (FIFO among them), before the rest */
            TAILQ_FOREACH(after_urgent, &db->queue, link)
            {
                if (!after_urgent->urgent) {
                    break;
                }
            }
        }
        if (after_urgent) {
            TAILQ_INSERT_BEFORE(after_urgent, req, link);
        } else {
            TAILQ_INSERT_TAIL(&db->queue, req, link);
        }
        db->queue_len++;
        evtimer_add(req->ev, &tv);
        schedule_dispatch(db);
    }
    return req;
}

/* ---- connection I/O ---- */

/* Makes the socket event watch PQsocket for what (EV_READ and/or EV_WRITE), re-creating
 * it when the socket or the interest changed. what == 0 removes it. */
static void conn_watch(rs_db_conn *c, short what)
{
    int fd = c->pg ? PQsocket(c->pg) : -1;
    if (c->ev && c->ev_fd == fd && c->ev_what == what) {
        return;
    }
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (fd < 0 || what == 0) {
        return;
    }
    c->ev = event_new(c->db->base, fd, (short)(what | EV_PERSIST), conn_io_cb, c);
    if (!c->ev || event_add(c->ev, NULL) != 0) {
        conn_broken(c, "event_add failed");
        return;
    }
    c->ev_fd = fd;
    c->ev_what = what;
}

static void conn_timer_start(rs_db_conn *c, uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->tev, &tv);
}

/* Flushes what libpq buffered; watches EV_WRITE while it cannot. */
static void conn_flush(rs_db_conn *c)
{
    int f = PQflush(c->pg);
    if (f < 0) {
        conn_broken(c, NULL);
        return;
    }
    c->flushing = f == 1;
    conn_watch(c, c->flushing ? (short)(EV_READ | EV_WRITE) : EV_READ);
}

/* After a PQsend*: start waiting for the result. */
static void conn_sent(rs_db_conn *c, query_kind kind, int sent)
{
    if (!sent) {
        conn_broken(c, NULL);
        return;
    }
    c->query = kind;
    conn_flush(c);
}

static void conn_set_up(rs_db_conn *c)
{
    rs_db *db = c->db;
    evtimer_del(c->tev);
    c->state = CONN_IDLE;
    c->up = true;
    c->backoff_ms = RS_DB_BACKOFF_MIN_MS;
    db->n_up++;
    if (!db->ever_up || db->n_up == 1) {
        log_info("db: connection %zu up (%zu of %zu)", c->idx, db->n_up, db->opts.pool_size);
    }
    db->ever_up = true;
    schedule_dispatch(db);
}

/* The statement prepared at setup step k (k >= 1). */
static const rs_db_stmt *setup_stmt(const rs_db *db, size_t k)
{
    k--;
    for (size_t t = 0; t < db->n_tables; t++) {
        if (k < db->tables[t].n) {
            return &db->tables[t].stmts[k];
        }
        k -= db->tables[t].n;
    }
    return NULL;
}

static void conn_setup_done(rs_db_conn *c, PGresult *r)
{
    rs_db *db = c->db;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* A statement that cannot be prepared is a bug or a missing migration: say which. */
        char why[300];
        snprintf(why, sizeof why, "%s%s failed: %s", c->setup_step ? "prepare " : "SET",
                 c->setup_step ? setup_stmt(db, c->setup_step)->name : "",
                 r ? PQresultErrorMessage(r) : "no result");
        PQclear(r);
        conn_broken(c, why);
        return;
    }
    PQclear(r);
    c->setup_step++;
    if (c->setup_step > db->n_stmts) {
        conn_set_up(c);
    } else {
        conn_send_setup(c);
    }
}

/* Sends step setup_step: the SETs, then the prepare of each registered statement. */
static void conn_send_setup(rs_db_conn *c)
{
    rs_db *db = c->db;
    if (c->setup_step == 0) {
        conn_sent(c, Q_SETUP, PQsendQuery(c->pg, db->setup_sql));
        return;
    }
    const rs_db_stmt *s = setup_stmt(db, c->setup_step);
    conn_sent(c, Q_SETUP, PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL));
}

/* The statement in flight has all its results (c->last is the last one). */
static void conn_query_done(rs_db_conn *c)
{
    rs_db *db = c->db;
    query_kind kind = c->query;
    PGresult *r = c->last;
    rs_db_result res;
    c->query = Q_NONE;
    c->last = NULL;
    switch (kind) {
    case Q_SETUP:
        conn_setup_done(c, r);
        return;
    case Q_EXEC: {
        rs_db_req *req = c->req;
        c->req = NULL;
        c->state = CONN_IDLE;
        schedule_dispatch(db);
        result_from_pg(&res, r);
        req_finish(req, NULL, &res);
        break;
    }
    case Q_LEASE: {
        rs_db_cb cb = c->cb;
        void *arg = c->cb_arg;
        c->cb = NULL;
        result_from_pg(&res, r);
        cb(arg, &res);
        break;
    }
    case Q_RESET:
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK ||
            PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
            PQclear(r);
            conn_broken(c, "rollback before reuse failed");
            return;
        }
        c->state = CONN_IDLE;
        schedule_dispatch(db);
        break;
    case Q_NONE:
        break;
    }
    PQclear(r);
}

/* Reads what the server sent and collects results while libpq is not busy. */
static void conn_read(rs_db_conn *c)
{
    if (!PQconsumeInput(c->pg)) {
        conn_broken(c, NULL);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        PQfreemem(n);
    }
    while (c->query != Q_NONE && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            conn_query_done(c);
            return;
        }
        PQclear(c->last);
        c->last = r;
    }
}

static void conn_connect_poll(rs_db_conn *c)
{
    /* libpq may close the socket and open another inside PQconnectPoll: drop the event
     * first, watch whatever PQsocket is afterwards. */
    conn_watch(c, 0);
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        conn_watch(c, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        conn_watch(c, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0) {
            conn_broken(c, NULL);
            return;
        }
        c->state = CONN_SETUP;
        c->setup_step = 0;
        conn_send_setup(c);
        break;
    default:
        conn_broken(c, NULL);
        break;
    }
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    rs_db_conn *c = arg;
    if (c->state == CONN_CONNECTING) {
        conn_connect_poll(c);
        return;
    }
    if (c->flushing) {
        conn_flush(c);
        if (!c->pg) {
            return;
        }
    }
    if (what & EV_READ) {
        conn_read(c);
    }
}

static void conn_notice(void *arg, const char *message)
{
    rs_db_conn *c = arg;
    log_debug("db: connection %zu: %s", c->idx, message);
}

static void conn_connect(rs_db_conn *c)
{
    rs_db *db = c->db;
    c->pg = PQconnectStart(db->conninfo);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        c->state = CONN_CONNECTING; /* so conn_broken schedules the retry */
        conn_broken(c, NULL);
        return;
    }
    PQsetNoticeProcessor(c->pg, conn_notice, c);
    c->state = CONN_CONNECTING;
    conn_timer_start(c, db->opts.connect_timeout_ms);
    conn_watch(c, EV_WRITE);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    rs_db_conn *c = arg;
    switch (c->state) {
    case CONN_DOWN:
        conn_connect(c);
        break;
    case CONN_CONNECTING:
    case CONN_SETUP:
        conn_broken(c, "connect timeout");
        break;
    case CONN_LEASED:
        /* a statement that could not be sent from rs_db_conn_exec */
        conn_broken(c, c->err[0] ? c->err : NULL);
        break;
    default:
        break;
    }
}

/* Closes the PGconn (if any) and forgets what was in flight on it. */
static void conn_close(rs_db_conn *c)
{
    rs_db *db = c->db;
    conn_watch(c, 0);
    evtimer_del(c->tev);
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    PQclear(c->last);
    c->last = NULL;
    c->query = Q_NONE;
    c->flushing = false;
    c->err[0] = '\0';
    if (c->up) {
        c->up = false;
        db->n_up--;
        if (db->n_up == 0) {
            log_warn("db: no connection up");
            schedule_dispatch(db); /* fail the waiters now rather than at their timeout */
        }
    }
}

/* DOWN, reconnecting from the backoff timer. */
static void conn_retry_later(rs_db_conn *c)
{
    c->state = CONN_DOWN;
    conn_timer_start(c, c->backoff_ms);
    c->backoff_ms = CM_MIN(c->backoff_ms * 2, RS_DB_BACKOFF_MAX_MS);
}

/*
 * The connection is gone (or unusable): close it, fail the callback in flight with
 * unavailable=true (the state is made consistent first, so that callback may use the
 * pool, including returning this lease), and reconnect from the backoff timer unless a
 * holder still has it leased. Runs from the loop only.
 */
static void conn_broken(rs_db_conn *c, const char *why)
{
    conn_state was = c->state;
    char msg[256];
    if (why) {
        snprintf(msg, sizeof msg, "database connection lost: %s", why);
    } else {
        const char *e = c->pg ? PQerrorMessage(c->pg) : "";
        snprintf(msg, sizeof msg, "database connection lost: %s", *e ? e : "closed");
        for (char *p = msg; *p; p++) { /* one log line */
            if (*p == '\n') {
                *p = *(p + 1) ? ' ' : '\0';
            }
        }
    }
    if (c->pg || was != CONN_LEASED) {
        log_warn("db: connection %zu: %s", c->idx, msg);
    }
    conn_close(c);
    rs_db_result res;
    result_failure(&res, SQLSTATE_CONN_LOST, msg);
    if (was == CONN_LEASED) {
        c->broken = true;
        rs_db_cb cb = c->cb;
        c->cb = NULL;
        if (cb) {
            cb(c->cb_arg, &res);
        }
        return;
    }
    rs_db_req *req = c->req;
    c->req = NULL;
    conn_retry_later(c);
    if (req) {
        req_finish(req, NULL, &res);
    }
}

/* ---- dispatch ---- */

static rs_db_conn *idle_conn(rs_db *db)
{
    for (size_t i = 0; i < db->opts.pool_size; i++) {
        if (db->conns[i].state == CONN_IDLE) {
            return &db->conns[i];
        }
    }
    return NULL;
}

/* Hands queued requests to idle connections, oldest first; with no connection up (after
 * the pool was up once) fails them all. Runs from the dispatch event only, so callbacks
 * here never run inside a starting call. */
static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
    rs_db *db = arg;
    rs_db_req *req;
    rs_db_conn *c;
    while ((req = TAILQ_FIRST(&db->queue)) != NULL) {
        if (db->ever_up && db->n_up == 0) {
            queue_remove(db, req);
            req_fail(req, SQLSTATE_NO_CONN, "database unavailable: no connection is up");
            continue;
        }
        if ((c = idle_conn(db)) == NULL) {
            break;
        }
        queue_remove(db, req);
        if (req->kind == REQ_LEASE) {
            rs_db_result res = {.ok = true, .sqlstate = "", .message = "", .detail = ""};
            c->state = CONN_LEASED;
            c->broken = false;
            req_finish(req, c, &res);
            continue;
        }
        c->state = CONN_BUSY;
        c->req = req;
        req->state = REQ_RUNNING;
        conn_sent(c, Q_EXEC,
                  PQsendQueryPrepared(c->pg, req->stmt, req->nparams,
                                      (const char *const *)req->params, NULL, NULL, 0));
    }
}

/* ---- public ---- */

void rs_db_register(rs_db *db, const rs_db_stmt *stmts, size_t n)
{
    stmt_table *t = realloc(db->tables, (db->n_tables + 1) * sizeof *t);
    if (!t) {
        fatal("db: out of memory registering statements");
    }
    db->tables = t;
    db->tables[db->n_tables].stmts = stmts;
    db->tables[db->n_tables].n = n;
    db->n_tables++;
    db->n_stmts += n;
}

rs_db *rs_db_new(struct event_base *base, const rs_db_opts *opts)
{
    rs_db *db = calloc(1, sizeof *db);
    if (!db || opts->pool_size == 0) {
        free(db);
        return NULL;
    }
    db->base = base;
    db->opts = *opts;
    db->opts.conninfo = NULL;
    if (!db->opts.connect_timeout_ms) {
        db->opts.connect_timeout_ms = 3000;
    }
    if (!db->opts.lease_timeout_ms) {
        db->opts.lease_timeout_ms = 2000;
    }
    if (!db->opts.max_queue) {
        db->opts.max_queue = 10000;
    }
    if (!db->opts.lock_timeout_ms) {
        db->opts.lock_timeout_ms = 2000;
    }
    if (!db->opts.idle_in_txn_timeout_ms) {
        db->opts.idle_in_txn_timeout_ms = 10000;
    }
    if (!db->opts.statement_timeout_ms) {
        db->opts.statement_timeout_ms = 10000;
    }
    /* plan_cache_mode stays auto for the session: with real statistics the generic plans
     * of the booking path are the fast ones (pgbench of BEGIN; rs_book(); COMMIT on 200,000
     * seats, one client: 927 tps against 640-713 with force_custom_plan). rs_book itself
     * sets force_generic_plan (migration 030): auto kept re-planning its statements with
     * an array parameter. Weak spot of generic plans: a table ANALYZEd while empty; a plan
     * cached then stays a sequential scan until the next ANALYZE. */
    /* random_page_cost 1.1 (PostgreSQL's default, 4, prices a page from a spinning disk):
     * the booking path looks up one row by key in small tables that are all in memory
     * (152 performances in the benchmark), and at 4 the planner reads the whole table
     * instead, every version of the hot row included. Measured in a `mixed` sale: 29,667
     * sequential scans of performances in 6 s, 3.7 million rows read, none at 1.1; runs
     * alternating the two builds gave 1,092.0 and 1,042.9 hot bookings/s against 869.0
     * and 856.9 (docs/performance.md, "Planner costs on the booking path"). */
    int n = snprintf(db->setup_sql, sizeof db->setup_sql,
                     "SET lock_timeout = %u; SET idle_in_transaction_session_timeout = %u; "
                     "SET statement_timeout = %u; SET random_page_cost = 1.1",
                     db->opts.lock_timeout_ms, db->opts.idle_in_txn_timeout_ms,
                     db->opts.statement_timeout_ms);
    /* The purchase limit is a setting of the session, not a parameter of the booking
     * functions: migration 090's trigger reads it, so every path that inserts seats is
     * limited, and a session that does not set it (psql, another tool) is not. */
    if (db->opts.max_seats_per_user > 0 && n > 0 && (size_t)n < sizeof db->setup_sql)
        snprintf(db->setup_sql + n, sizeof db->setup_sql - (size_t)n,
                 "; SET rs.max_seats_per_user = %u", db->opts.max_seats_per_user);
    TAILQ_INIT(&db->queue);
    TAILQ_INIT(&db->failing);
    db->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
    db->conns = calloc(opts->pool_size, sizeof *db->conns);
    db->dispatch = event_new(base, -1, 0, dispatch_cb, db);
    if (!db->conninfo || !db->conns || !db->dispatch) {
        goto fail;
    }
    for (size_t i = 0; i < opts->pool_size; i++) {
        rs_db_conn *c = &db->conns[i];
        c->db = db;
        c->idx = i;
        c->state = CONN_DOWN;
        c->ev_fd = -1;
        c->backoff_ms = RS_DB_BACKOFF_MIN_MS;
        c->tev = evtimer_new(base, conn_timer_cb, c);
        if (!c->tev) {
            goto fail;
        }
    }
    return db;
fail:
    rs_db_free(db);
    return NULL;
}

cm_rc rs_db_start(rs_db *db)
{
    /* A malformed conninfo would only ever fail and retry: refuse it here instead. */
    char *why = NULL;
    PQconninfoOption *parsed = PQconninfoParse(db->conninfo, &why);
    if (!parsed) {
        log_error("db: bad conninfo: %s", why ? why : "out of memory");
        PQfreemem(why);
        return CM_ERR;
    }
    PQconninfoFree(parsed);
    for (size_t i = 0; i < db->opts.pool_size; i++) {
        if (db->conns[i].state == CONN_DOWN && !evtimer_pending(db->conns[i].tev, NULL)) {
            conn_connect(&db->conns[i]);
        }
    }
    return CM_OK;
}

void rs_db_free(rs_db *db)
{
    if (!db) {
        return;
    }
    rs_db_req *req;
    while ((req = TAILQ_FIRST(&db->queue)) != NULL) {
        TAILQ_REMOVE(&db->queue, req, link);
        req_free(req);
    }
    while ((req = TAILQ_FIRST(&db->failing)) != NULL) {
        TAILQ_REMOVE(&db->failing, req, link);
        req_free(req);
    }
    for (size_t i = 0; db->conns && i < db->opts.pool_size; i++) {
        rs_db_conn *c = &db->conns[i];
        if (c->ev) {
            event_free(c->ev);
        }
        if (c->tev) {
            event_free(c->tev);
        }
        if (c->pg) {
            PQfinish(c->pg);
        }
        PQclear(c->last);
        if (c->req) {
            req_free(c->req);
        }
    }
    if (db->dispatch) {
        event_free(db->dispatch);
    }
    free(db->conns);
    free(db->tables);
    free(db->conninfo);
    free(db);
}

size_t rs_db_up(const rs_db *db)
{
    return db->n_up;
}

size_t rs_db_in_use(const rs_db *db)
{
    size_t n = 0;
    for (size_t i = 0; i < db->opts.pool_size; i++) {
        conn_state s = db->conns[i].state;
        n += s == CONN_BUSY || s == CONN_LEASED || s == CONN_RESETTING;
    }
    return n;
}

size_t rs_db_size(const rs_db *db)
{
    return db->opts.pool_size;
}

rs_db_req *rs_db_exec(rs_db *db, const char *stmt, int nparams, const char *const *params,
                      rs_db_cb cb, void *arg)
{
    if (nparams < 0) {
        return NULL;
    }
    /* One block: the request, the parameter pointers, the statement name and the values. */
    size_t need = strlen(stmt) + 1;
    for (int i = 0; i < nparams; i++) {
        need += params[i] ? strlen(params[i]) + 1 : 0;
    }
    rs_db_req *req = calloc(1, sizeof *req);
    char **block = malloc((size_t)nparams * sizeof(char *) + need);
    if (!req || !block) {
        free(req);
        free(block);
        return NULL;
    }
    char *p = (char *)(block + nparams);
    req->kind = REQ_EXEC;
    req->cb = cb;
    req->arg = arg;
    req->params = block;
    req->nparams = nparams;
    req->stmt = p;
    p = stpcpy(p, stmt) + 1;
    for (int i = 0; i < nparams; i++) {
        if (params[i]) {
            block[i] = p;
            p = stpcpy(p, params[i]) + 1;
        } else {
            block[i] = NULL;
        }
    }
    return req_submit(db, req);
}

static rs_db_req *lease_submit(rs_db *db, rs_db_lease_cb cb, void *arg, bool urgent)
{
    rs_db_req *req = calloc(1, sizeof *req);
    if (!req) {
        return NULL;
    }
    req->kind = REQ_LEASE;
    req->lcb = cb;
    req->arg = arg;
    req->urgent = urgent;
    return req_submit(db, req);
}

rs_db_req *rs_db_lease(rs_db *db, rs_db_lease_cb cb, void *arg)
{
    return lease_submit(db, cb, arg, false);
}

rs_db_req *rs_db_lease_urgent(rs_db *db, rs_db_lease_cb cb, void *arg)
{
    return lease_submit(db, cb, arg, true);
}

void rs_db_cancel(rs_db_req *req)
{
    if (!req || req->in_cb) {
        return;
    }
    switch (req->state) {
    case REQ_QUEUED:
        queue_remove(req->db, req);
        req_free(req);
        break;
    case REQ_FAILING:
        TAILQ_REMOVE(&req->db->failing, req, link);
        req_free(req);
        break;
    case REQ_RUNNING:
        req->cancelled = true; /* the statement runs on; freed when it ends */
        break;
    }
}

/* Starts a statement for the lease holder. send is PQsendQuery or PQsendQueryPrepared. */
static cm_rc lease_start(rs_db_conn *c, rs_db_cb cb, void *arg, const char *stmt, const char *sql,
                         int nparams, const char *const *params)
{
    static const struct timeval now = {0, 0};
    if (c->state != CONN_LEASED || c->cb != NULL || !cb) {
        log_error("db: connection %zu: statement on a connection not leased or already running one",
                  c->idx);
        return CM_ERR;
    }
    c->cb = cb;
    c->cb_arg = arg;
    if (c->broken) {
        /* conn_timer_cb -> conn_broken delivers the failure from the loop */
        evtimer_add(c->tev, &now);
        return CM_OK;
    }
    int sent = stmt ? PQsendQueryPrepared(c->pg, stmt, nparams, params, NULL, NULL, 0)
                    : PQsendQuery(c->pg, sql);
    if (!sent) {
        snprintf(c->err, sizeof c->err, "%s", PQerrorMessage(c->pg));
        evtimer_add(c->tev, &now);
        return CM_OK;
    }
    c->query = Q_LEASE;
    int f = PQflush(c->pg);
    c->flushing = f == 1;
    if (f < 0) {
        evtimer_add(c->tev, &now);
        return CM_OK;
    }
    conn_watch(c, c->flushing ? (short)(EV_READ | EV_WRITE) : EV_READ);
    return CM_OK;
}

cm_rc rs_db_conn_exec(rs_db_conn *conn, const char *stmt, int nparams, const char *const *params,
                      rs_db_cb cb, void *arg)
{
    return lease_start(conn, cb, arg, stmt, NULL, nparams, params);
}

cm_rc rs_db_conn_sql(rs_db_conn *conn, const char *sql, rs_db_cb cb, void *arg)
{
    return lease_start(conn, cb, arg, NULL, sql, 0, NULL);
}

void rs_db_conn_return(rs_db_conn *c)
{
    if (!c || c->state != CONN_LEASED) {
        return;
    }
    rs_db *db = c->db;
    if (c->broken || c->cb != NULL) {
        /* broken, or returned with a statement in flight (a caller bug): a new session */
        if (c->cb) {
            log_error("db: connection %zu returned with a statement in flight", c->idx);
            c->cb = NULL;
        }
        c->broken = false;
        conn_close(c);
        conn_retry_later(c);
        return;
    }
    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
        c->state = CONN_IDLE;
        schedule_dispatch(db);
        break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        c->state = CONN_RESETTING;
        conn_sent(c, Q_RESET, PQsendQuery(c->pg, "ROLLBACK"));
        break;
    default:
        c->state = CONN_RESETTING;
        conn_broken(c, "returned in an unknown transaction state");
        break;
    }
}
