/*
 * rs_holdsweep: the hold sweeper (contract in rs_holdsweep.h). One static machine
 * (hs_state) over a one-shot timer and one autocommit statement; hs_move is the only
 * place its state changes.
 */
#include "rs_holdsweep.h"

#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "cm_log.h"
#include "cm_time.h"
#include "rs_holds.h"

/* The sweeper's states. */
typedef enum hs_state {
    HS_IDLE,     /* not started, or stopped with nothing in flight: no timer armed */
    HS_ARMED,    /* the timer is armed for the next run, nothing in flight */
    HS_EXPIRING, /* rs_hold_expire in flight; its answer arms the timer again */
    HS_DRAINING, /* stopped while rs_hold_expire was in flight: its answer ends the sweeper */
    HS_NSTATES
} hs_state;

static const char *const hs_names[HS_NSTATES] = {"idle", "armed", "expiring", "draining"};

/* hs_legal[from][to] */
static const bool hs_legal[HS_NSTATES][HS_NSTATES] = {
    [HS_IDLE] = {[HS_ARMED] = true},
    [HS_ARMED] = {[HS_EXPIRING] = true, [HS_IDLE] = true},
    [HS_EXPIRING] = {[HS_ARMED] = true, [HS_DRAINING] = true},
    [HS_DRAINING] = {[HS_IDLE] = true},
};

static const rs_db_stmt hs_stmts[] = {
    {"hs_expire", "SELECT rs_hold_expire($1::integer)", 1},
};

static struct {
    hs_state state;
    rs_app *app;
    struct event *timer; /* one-shot; owned, freed by rs_holdsweep_stop */
} hs;

static void hs_move(hs_state to)
{
    bool legal = to < HS_NSTATES && hs_legal[hs.state][to];
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("hold sweeper: %s -> %s", hs_names[hs.state], hs_names[to]);
    hs.state = to;
}

/* The next run in ms (ARMED). */
static void hs_arm(uint64_t ms)
{
    hs_move(HS_ARMED);
    struct timeval tv = cm_tv_from_ms(ms);
    if (evtimer_add(hs.timer, &tv) != 0)
        log_error("hold sweeper: cannot arm its timer: expired holds stay held here");
}

static void hs_expired(void *arg, const rs_db_result *res)
{
    CM_UNUSED(arg);
    if (hs.state == HS_DRAINING) {
        hs_move(HS_IDLE);
        return;
    }
    long long n = 0;
    if (!res->ok)
        log_warn("hold sweeper: rs_hold_expire failed (%s): %s", res->sqlstate, res->message);
    else if (PQntuples(res->pg) == 1)
        n = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
    if (n > 0) {
        rs_hold_stats.expired += (uint64_t)n;
        log_info("hold sweeper: %lld holds expired, their seats are free", n);
    }
    /* a full batch: the rest at once (still a bounded batch a run) */
    hs_arm(n >= RS_HOLDSWEEP_MAX ? 0 : RS_HOLDSWEEP_MS);
}

static void hs_tick(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    if (hs.state != HS_ARMED || hs.app->shutting_down)
        return; /* a graceful stop: rs_holdsweep_stop ends it */
    char max[16];
    snprintf(max, sizeof(max), "%d", RS_HOLDSWEEP_MAX);
    const char *params[] = {max};
    hs_move(HS_EXPIRING);
    if (rs_db_exec(hs.app->db, "hs_expire", 1, params, hs_expired, NULL) == NULL) {
        log_warn("hold sweeper: could not queue rs_hold_expire: next run in %d ms",
                 RS_HOLDSWEEP_MS);
        hs_arm(RS_HOLDSWEEP_MS);
    }
}

void rs_holdsweep_register(rs_db *db)
{
    rs_db_register(db, hs_stmts, CM_ARRAY_LEN(hs_stmts));
}

cm_rc rs_holdsweep_start(rs_app *app)
{
    assert(hs.state == HS_IDLE && hs.timer == NULL);
    hs.app = app;
    hs.timer = evtimer_new(app->base, hs_tick, NULL);
    if (hs.timer == NULL)
        return CM_ERR;
    hs_arm(RS_HOLDSWEEP_MS);
    return CM_OK;
}

void rs_holdsweep_stop(void)
{
    if (hs.timer != NULL) {
        event_free(hs.timer);
        hs.timer = NULL;
    }
    if (hs.state == HS_ARMED)
        hs_move(HS_IDLE);
    else if (hs.state == HS_EXPIRING)
        hs_move(HS_DRAINING);
}
