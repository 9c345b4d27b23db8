/*
 * cx_load_pg: chaos_load's async libpq connection (see the header). The socket event is
 * re-created after every PQconnectPoll step because libpq may change the socket.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"
#include "cx_load_pg.h"

#define CX_PG_CONNECT_TIMEOUT_MS 5000
#define CX_PG_BACKOFF_MIN_MS     100
#define CX_PG_BACKOFF_MAX_MS     1000

typedef enum cx_pg_state {
    CX_PG_DOWN,       /* no connection; the timer reconnects */
    CX_PG_CONNECTING, /* PQconnectPoll steps; the timer bounds them */
    CX_PG_READY,      /* idle */
    CX_PG_BUSY,       /* one query in flight; the timer bounds it */
} cx_pg_state;

struct cx_pg {
    struct event_base *base;
    char *conninfo;
    PGconn *conn;
    cx_pg_state state;
    struct event *io;
    struct event *timer;
    uint32_t backoff_ms;
    cx_pg_cb cb;
    void *arg;
    PGresult *last;
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

static void arm_timer(cx_pg *pg, uint32_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    evtimer_add(pg->timer, &tv);
}

static void watch(cx_pg *pg, short what)
{
    if (pg->io) {
        event_free(pg->io);
        pg->io = NULL;
    }
    int fd = PQsocket(pg->conn);
    if (fd < 0)
        return;
    pg->io = event_new(pg->base, fd, what, io_cb, pg);
    if (pg->io)
        event_add(pg->io, NULL);
}

/* Drops the connection and schedules a reconnect; a query in flight ends as LOST. */
static void go_down(cx_pg *pg, const char *why)
{
    cx_pg_cb cb = pg->state == CX_PG_BUSY ? pg->cb : NULL;
    void *arg = pg->arg;
    if (pg->io) {
        event_free(pg->io);
        pg->io = NULL;
    }
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    if (pg->last) {
        PQclear(pg->last);
        pg->last = NULL;
    }
    if (pg->state != CX_PG_DOWN)
        log_debug("pg: connection down: %s", why);
    pg->state = CX_PG_DOWN;
    pg->cb = NULL;
    evtimer_del(pg->timer);
    arm_timer(pg, pg->backoff_ms);
    pg->backoff_ms =
        pg->backoff_ms * 2 > CX_PG_BACKOFF_MAX_MS ? CX_PG_BACKOFF_MAX_MS : pg->backoff_ms * 2;
    if (cb)
        cb(arg, CX_PG_LOST, NULL, why);
}

static void connect_step(cx_pg *pg)
{
    switch (PQconnectPoll(pg->conn)) {
    case PGRES_POLLING_READING:
        watch(pg, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        watch(pg, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        evtimer_del(pg->timer);
        if (PQsetnonblocking(pg->conn, 1) != 0) {
            go_down(pg, "cannot set non-blocking");
            break;
        }
        pg->state = CX_PG_READY;
        pg->backoff_ms = CX_PG_BACKOFF_MIN_MS;
        watch(pg, EV_READ | EV_PERSIST); /* notices and a server-side close while idle */
        log_debug("pg: connected");
        break;
    default:
        go_down(pg, PQerrorMessage(pg->conn));
        break;
    }
}

static void start_connect(cx_pg *pg)
{
    pg->conn = PQconnectStart(pg->conninfo);
    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
        go_down(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
        return;
    }
    pg->state = CX_PG_CONNECTING;
    arm_timer(pg, CX_PG_CONNECT_TIMEOUT_MS);
    connect_step(pg);
}

/* Reads what is there; when the query's results are complete, calls back. */
static void query_step(cx_pg *pg)
{
    if (PQconsumeInput(pg->conn) == 0) {
        go_down(pg, PQerrorMessage(pg->conn));
        return;
    }
    while (!PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            PGresult *res = pg->last;
            cx_pg_cb cb = pg->cb;
            void *arg = pg->arg;
            ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
            bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
            char err[256];
            snprintf(err, sizeof(err), "%s",
                     ok ? "" : (res ? PQresultErrorMessage(res) : "no result"));
            pg->last = NULL;
            pg->cb = NULL;
            pg->state = CX_PG_READY;
            evtimer_del(pg->timer);
            watch(pg, EV_READ | EV_PERSIST);
            cb(arg, ok ? CX_PG_OK : CX_PG_ERROR, res, err);
            PQclear(res);
            return;
        }
        if (pg->last)
            PQclear(pg->last);
        pg->last = r;
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD)
        go_down(pg, PQerrorMessage(pg->conn));
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    cx_pg *pg = arg;
    switch (pg->state) {
    case CX_PG_CONNECTING:
        connect_step(pg);
        break;
    case CX_PG_BUSY: {
        /* one-shot events while busy: re-armed below for as long as the query runs */
        if ((what & EV_WRITE) && PQflush(pg->conn) < 0) {
            go_down(pg, PQerrorMessage(pg->conn));
            return;
        }
        if (what & EV_READ) {
            query_step(pg);
            if (pg->state != CX_PG_BUSY || pg->cb == NULL)
                return;
        }
        int f = PQflush(pg->conn);
        if (f < 0) {
            go_down(pg, PQerrorMessage(pg->conn));
            return;
        }
        watch(pg, f == 1 ? (EV_READ | EV_WRITE) : EV_READ);
        break;
    }
    case CX_PG_READY:
        /* idle: a notice, or the server went away */
        if (PQconsumeInput(pg->conn) == 0 || PQstatus(pg->conn) == CONNECTION_BAD)
            go_down(pg, "closed by the server");
        break;
    case CX_PG_DOWN:
        break;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    cx_pg *pg = arg;
    switch (pg->state) {
    case CX_PG_DOWN:
        start_connect(pg);
        break;
    case CX_PG_CONNECTING:
        go_down(pg, "connect timeout");
        break;
    case CX_PG_BUSY:
        go_down(pg, "query timeout");
        break;
    case CX_PG_READY:
        break;
    }
}

cx_pg *cx_pg_new(struct event_base *base, const char *conninfo)
{
    cx_pg *pg = calloc(1, sizeof(*pg));
    if (!pg)
        return NULL;
    pg->base = base;
    pg->conninfo = strdup(conninfo);
    pg->timer = evtimer_new(base, timer_cb, pg);
    pg->backoff_ms = CX_PG_BACKOFF_MIN_MS;
    if (!pg->conninfo || !pg->timer) {
        cx_pg_free(pg);
        return NULL;
    }
    pg->state = CX_PG_DOWN;
    arm_timer(pg, 0);
    return pg;
}

void cx_pg_free(cx_pg *pg)
{
    if (!pg)
        return;
    if (pg->io)
        event_free(pg->io);
    if (pg->timer)
        event_free(pg->timer);
    if (pg->last)
        PQclear(pg->last);
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->conninfo);
    free(pg);
}

bool cx_pg_ready(const cx_pg *pg)
{
    return pg->state == CX_PG_READY;
}

cm_rc cx_pg_query(cx_pg *pg, const char *sql, int nparams, const char *const *params,
                  uint32_t timeout_ms, cx_pg_cb cb, void *arg)
{
    if (pg->state != CX_PG_READY || !cb)
        return CM_ERR;
    if (!PQsendQueryParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0))
        return CM_ERR;
    pg->state = CX_PG_BUSY;
    pg->cb = cb;
    pg->arg = arg;
    arm_timer(pg, timeout_ms);
    int f = PQflush(pg->conn);
    watch(pg, f == 1 ? (EV_READ | EV_WRITE) : EV_READ);
    return CM_OK;
}
