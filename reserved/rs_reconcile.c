/*
 * rs_reconcile: compensation jobs and the reconciler timer (contract in rs_reconcile.h).
 * Each job is a small heap state machine: [lookup] -> [cancel] -> close the attempt row.
 */
#include "rs_reconcile.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"
#include "rs_metrics.h"
#include "rs_pay.h"

#define RC_REF_MAX   128
#define RC_ID_MAX    (RS_PAY_ID_MAX + 1) /* a payment id: rs_pay keeps it whole up to this */
#define RC_BATCH     "32"                /* attempts claimed per run: bounds the work per wake-up */
#define RC_INT64_MAX 24

static const rs_db_stmt rc_stmts[] = {
    /* Claims open attempts no CONFIRMED reservation carries. SKIP LOCKED: a row held by a
     * booking transaction (its CAPTURED update) is left to that booking. */
    {"rc_claim",
     "WITH c AS (SELECT p.reference FROM payment_attempts p"
     " WHERE ((p.status IN ('PENDING', 'APPROVED')"
     "         AND p.created_at < now() - $1::bigint * interval '1 millisecond')"
     "     OR (p.status = 'CANCELLING'"
     "         AND p.updated_at < now() - $1::bigint * interval '1 millisecond'))"
     "   AND NOT EXISTS (SELECT 1 FROM reservations r"
     "                    WHERE r.payment_reference = p.reference AND r.status = 'CONFIRMED')"
     " ORDER BY p.created_at LIMIT $2::int FOR UPDATE OF p SKIP LOCKED)"
     " UPDATE payment_attempts a SET status = 'CANCELLING', updated_at = now() FROM c"
     " WHERE a.reference = c.reference"
     " RETURNING a.reference, coalesce(a.payment_id, ''),"
     " (extract(epoch FROM now() - a.created_at) * 1000)::bigint",
     2},
    /* Closes an attempt that is still open; never touches a CAPTURED one. */
    {"rc_close",
     "UPDATE payment_attempts SET status = $2, payment_id = coalesce(nullif($3, ''), payment_id),"
     " updated_at = now()"
     " WHERE reference = $1 AND status IN ('PENDING', 'APPROVED', 'CANCELLING')",
     3},
};

typedef struct rc_job {
    char reference[RC_REF_MAX];
    char payment_id[RC_ID_MAX];
    int64_t age_ms;
    bool from_reconciler;
    rs_comp_cb cb;
    void *arg;
    struct rc_job *prev, *next; /* in rc.jobs */
} rc_job;

static struct {
    rs_app *app;
    struct event *timer;
    bool running;    /* a claim or its jobs are in flight */
    size_t run_left; /* jobs of the current run not finished */
    size_t in_flight;
    rc_job *jobs; /* in flight: freed at exit if the DB or gateway client went first */
    bool atexit_added;
} rc;

void rs_reconcile_register(rs_db *db)
{
    rs_db_register(db, rc_stmts, CM_ARRAY_LEN(rc_stmts));
}

size_t rs_reconcile_in_flight(void)
{
    return rc.in_flight;
}

static void rc_job_unlink(rc_job *j)
{
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        rc.jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
}

/* A graceful stop waits for HTTP answers, not for reconciler jobs; the clients they
 * wait on are freed without calling back, so what is left is freed here. */
static void rc_free_leftovers(void)
{
    while (rc.jobs != NULL) {
        rc_job *j = rc.jobs;
        rc.jobs = j->next;
        free(j);
    }
}

static void rc_job_finish(rc_job *j, bool done)
{
    rs_comp_cb cb = j->cb;
    void *arg = j->arg;
    rc_job_unlink(j);
    free(j);
    rc.in_flight--;
    if (cb != NULL)
        cb(arg, done);
}

static void rc_closed(void *arg, const rs_db_result *res)
{
    rc_job *j = arg;
    if (!res->ok)
        log_warn("payment attempt %s: could not close it: %s", j->reference, res->message);
    rc_job_finish(j, res->ok);
}

static void rc_close(rc_job *j, const char *status)
{
    const char *params[] = {j->reference, status, j->payment_id};
    if (rs_db_exec(rs_app_g.db, "rc_close", 3, params, rc_closed, j) == NULL)
        rc_job_finish(j, false);
}

static void rc_cancelled(void *arg, rs_pay_outcome outcome, const char *payment_id)
{
    rc_job *j = arg;
    switch (outcome) {
    case RS_PAY_CANCELLED:
    case RS_PAY_NOT_FOUND: /* the gateway never had it: nothing left to undo */
        rs_stats.payments_cancelled++;
        if (j->from_reconciler)
            rs_stats.reconciler_cancelled++;
        log_info("payment %s (attempt %s) cancelled%s", j->payment_id, j->reference,
                 j->from_reconciler ? " by the reconciler" : "");
        rc_close(j, "CANCELLED");
        return;
    case RS_PAY_DECLINED:
        rc_close(j, "DECLINED");
        return;
    default:
        log_warn("payment %s (attempt %s): cancel outcome unknown, left for the reconciler",
                 j->payment_id, j->reference);
        rc_job_finish(j, false);
        return;
    }
    CM_UNUSED(payment_id);
}

static void rc_cancel(rc_job *j)
{
    if (rs_pay_cancel(rs_app_g.pay, j->payment_id, rc_cancelled, j) != CM_OK)
        rc_job_finish(j, false);
}

/* A charge may still land at the gateway until its request timed out; twice the timeout
 * after the reconciler's age bound nothing from it can arrive any more. */
static bool rc_charge_settled(int64_t age_ms)
{
    const rs_config *cfg = &rs_app_g.cfg;
    return age_ms >= cfg->reconcile_after_ms + 2 * cfg->payment_timeout_ms;
}

static void rc_looked_up(void *arg, rs_pay_outcome outcome, const char *payment_id)
{
    rc_job *j = arg;
    if (payment_id != NULL && payment_id[0] != '\0')
        snprintf(j->payment_id, sizeof(j->payment_id), "%s", payment_id);
    switch (outcome) {
    case RS_PAY_APPROVED:
        rc_cancel(j);
        return;
    case RS_PAY_CANCELLED:
        rc_close(j, "CANCELLED");
        return;
    case RS_PAY_DECLINED:
        rc_close(j, "DECLINED");
        return;
    case RS_PAY_NOT_FOUND:
        if (rc_charge_settled(j->age_ms)) {
            rc_close(j, "CANCELLED"); /* never charged */
            return;
        }
        rc_job_finish(j, false);
        return;
    default:
        rc_job_finish(j, false);
        return;
    }
}

static void rc_defer_fail(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    rc_job_finish(arg, false);
}

cm_rc rs_comp_start(const char *reference, const char *payment_id, int64_t age_ms,
                    bool from_reconciler, rs_comp_cb cb, void *arg)
{
    rc_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CM_ERR;
    rc.in_flight++;
    j->next = rc.jobs;
    if (rc.jobs != NULL)
        rc.jobs->prev = j;
    rc.jobs = j;
    snprintf(j->reference, sizeof(j->reference), "%s", reference);
    snprintf(j->payment_id, sizeof(j->payment_id), "%s", payment_id != NULL ? payment_id : "");
    j->age_ms = age_ms;
    j->from_reconciler = from_reconciler;
    j->cb = cb;
    j->arg = arg;
    cm_rc rc_ = CM_ERR;
    if (rs_app_g.pay != NULL) {
        if (j->payment_id[0] != '\0')
            rc_ = rs_pay_cancel(rs_app_g.pay, j->payment_id, rc_cancelled, j);
        else
            rc_ = rs_pay_lookup(rs_app_g.pay, j->reference, rc_looked_up, j);
    }
    if (rc_ != CM_OK && event_base_once(rs_app_g.base, -1, EV_TIMEOUT, rc_defer_fail, j,
                                        &(struct timeval){0, 0}) != 0) {
        free(j);
        rc.in_flight--;
        return CM_ERR;
    }
    return CM_OK;
}

/* ---------------------------------------------------------------- the timer */

static void rc_run_job_done(void *arg, bool done)
{
    CM_UNUSED(arg);
    CM_UNUSED(done);
    if (--rc.run_left == 0)
        rc.running = false;
}

static void rc_claimed(void *arg, const rs_db_result *res)
{
    CM_UNUSED(arg);
    rc.in_flight--;
    rs_stats.reconciler_runs++;
    if (!res->ok) {
        log_warn("reconciler: claim failed: %s", res->message);
        rc.running = false;
        return;
    }
    int n = PQntuples(res->pg);
    if (n == 0) {
        rc.running = false;
        return;
    }
    rc.run_left = (size_t)n;
    for (int i = 0; i < n; i++) {
        const char *ref = PQgetvalue(res->pg, i, 0);
        const char *pid = PQgetvalue(res->pg, i, 1);
        int64_t age = strtoll(PQgetvalue(res->pg, i, 2), NULL, 10);
        log_info("reconciler: attempt %s (payment '%s', %lld ms old) has no confirmed "
                 "reservation: cancelling",
                 ref, pid, (long long)age);
        if (rs_comp_start(ref, pid, age, true, rc_run_job_done, NULL) != CM_OK)
            rc_run_job_done(NULL, false); /* still CANCELLING: the next run retries it */
    }
}

static void rc_tick(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    if (rc.running || rs_app_g.shutting_down || rs_app_g.pay == NULL)
        return;
    char after[RC_INT64_MAX];
    snprintf(after, sizeof(after), "%lld", (long long)rc.app->cfg.reconcile_after_ms);
    const char *params[] = {after, RC_BATCH};
    rc.running = true;
    rc.in_flight++;
    if (rs_db_exec(rc.app->db, "rc_claim", 2, params, rc_claimed, NULL) == NULL) {
        rc.in_flight--;
        rc.running = false;
    }
}

cm_rc rs_reconcile_start(rs_app *app)
{
    rc.app = app;
    if (!rc.atexit_added && atexit(rc_free_leftovers) == 0)
        rc.atexit_added = true;
    if (app->cfg.reconcile_interval_ms <= 0)
        return CM_OK;
    rc.timer = event_new(app->base, -1, EV_PERSIST, rc_tick, NULL);
    if (rc.timer == NULL)
        return CM_ERR;
    struct timeval tv = cm_tv_from_ms((uint64_t)app->cfg.reconcile_interval_ms);
    if (evtimer_add(rc.timer, &tv) != 0) {
        event_free(rc.timer);
        rc.timer = NULL;
        return CM_ERR;
    }
    return CM_OK;
}

void rs_reconcile_stop(void)
{
    if (rc.timer != NULL) {
        event_free(rc.timer);
        rc.timer = NULL;
    }
}
