/*
 * rs_sweep: the expiry sweeper (contract in rs_sweep.h). One static state machine
 * (sw_state) over a one-shot timer and one autocommit statement.
 */
#include "rs_sweep.h"

#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "cm_log.h"
#include "cm_time.h"

#define SW_MIN_MS   100   /* a short ttl (tests) still sweeps at most this often */
#define SW_MAX_MS   60000 /* a long ttl is still swept every minute */
#define SW_AGAIN_MS 100   /* after a full batch: more may be waiting */

/* The sweeper's states; moved only by sw_move. */
typedef enum sw_state {
    SW_OFF,      /* not started, or stopped and nothing in flight: no timer armed */
    SW_WAITING,  /* the timer is armed, nothing in flight */
    SW_RUNNING,  /* rs_sweep() in flight; the timer is armed again when it answers */
    SW_STOPPING, /* stopped while rs_sweep() was in flight: its answer ends it */
    SW_NSTATES
} sw_state;

static const char *const sw_names[SW_NSTATES] = {"off", "waiting", "running", "stopping"};

#define SW_TO(s) (1u << (s))
static const unsigned sw_moves[SW_NSTATES] = {
    [SW_OFF] = SW_TO(SW_WAITING),
    [SW_WAITING] = SW_TO(SW_RUNNING) | SW_TO(SW_OFF),
    [SW_RUNNING] = SW_TO(SW_WAITING) | SW_TO(SW_STOPPING),
    [SW_STOPPING] = SW_TO(SW_OFF),
};

static const rs_db_stmt sw_stmts[] = {
    {"sw_sweep", "SELECT keys, sessions FROM rs_sweep($1::bigint, $2::int)", 2},
};

static struct {
    sw_state state;
    rs_app *app;
    struct event *timer;  /* one-shot; owned, freed by rs_sweep_stop */
    uint64_t interval_ms; /* between runs */
} sw;

static void sw_move(sw_state to)
{
    bool legal = to < SW_NSTATES && (sw_moves[sw.state] & SW_TO(to)) != 0;
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("sweeper: %s -> %s", sw_names[sw.state], sw_names[to]);
    sw.state = to;
}

void rs_sweep_register(rs_db *db)
{
    rs_db_register(db, sw_stmts, CM_ARRAY_LEN(sw_stmts));
}

/* Arms the timer for the next run (WAITING). */
static void sw_arm(uint64_t ms)
{
    struct timeval tv = cm_tv_from_ms(ms);
    sw_move(SW_WAITING);
    if (evtimer_add(sw.timer, &tv) != 0)
        log_warn("sweeper: cannot arm its timer: expired records stay until a restart");
}

static void sw_done(void *arg, const rs_db_result *res)
{
    CM_UNUSED(arg);
    if (sw.state == SW_STOPPING) {
        sw_move(SW_OFF);
        return;
    }
    uint64_t next = sw.interval_ms;
    if (!res->ok) {
        log_warn("sweeper: rs_sweep failed (%s): %s", res->sqlstate, res->message);
    } else if (PQntuples(res->pg) == 1) {
        long long keys = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
        long long sessions = strtoll(PQgetvalue(res->pg, 0, 1), NULL, 10);
        if (keys > 0 || sessions > 0)
            log_info("sweeper: deleted %lld expired Idempotency-Key records and %lld expired "
                     "sessions",
                     keys, sessions);
        if (keys >= RS_SWEEP_MAX || sessions >= RS_SWEEP_MAX)
            next = SW_AGAIN_MS; /* a full batch: the rest soon, a bounded batch at a time */
    }
    sw_arm(next);
}

static void sw_tick(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    /* a graceful stop: the answers go out, nothing new starts (rs_sweep_stop ends it) */
    if (sw.state != SW_WAITING || sw.app->shutting_down)
        return;
    char ttl[24], max[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)sw.app->cfg.idempotency_ttl_s);
    snprintf(max, sizeof max, "%d", RS_SWEEP_MAX);
    const char *params[] = {ttl, max};
    sw_move(SW_RUNNING);
    if (rs_db_exec(sw.app->db, "sw_sweep", 2, params, sw_done, NULL) == NULL) {
        log_warn("sweeper: could not queue rs_sweep: next run in %llu ms",
                 (unsigned long long)sw.interval_ms);
        sw_arm(sw.interval_ms);
    }
}

cm_rc rs_sweep_start(rs_app *app)
{
    assert(sw.state == SW_OFF && sw.timer == NULL);
    sw.app = app;
    uint64_t ms = (uint64_t)app->cfg.idempotency_ttl_s * 1000 / 10;
    sw.interval_ms = ms < SW_MIN_MS ? SW_MIN_MS : ms > SW_MAX_MS ? SW_MAX_MS : ms;
    sw.timer = evtimer_new(app->base, sw_tick, NULL);
    if (sw.timer == NULL)
        return CM_ERR;
    sw_arm(sw.interval_ms);
    return CM_OK;
}

void rs_sweep_stop(void)
{
    if (sw.timer != NULL) {
        event_free(sw.timer);
        sw.timer = NULL;
    }
    if (sw.state == SW_WAITING)
        sw_move(SW_OFF);
    else if (sw.state == SW_RUNNING)
        sw_move(SW_STOPPING);
}
