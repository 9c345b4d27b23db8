/*
 * cm_lockclient_guard: cm_lockclient_with_lock, the guard that acquires a lock, runs the
 * caller's work, releases on every path and tells the work when the lock is lost
 * (contract in cm_lockclient.h). A guard is in its client's list from with_lock until it
 * finishes; the client frees what is left with itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_lockclient_int.h"

static void lg_free(cm_lock_guard *g)
{
    cm_lockclient *c = g->c;
    if (g->prev != NULL)
        g->prev->next = g->next;
    else
        c->guards = g->next;
    if (g->next != NULL)
        g->next->prev = g->prev;
    free(g);
}

static void lg_finish(cm_lock_guard *g, cm_lock_status st, const cm_lock_result *res)
{
    cm_lockclient *c = g->c;
    cm_lock_finish_fn finish = g->finish;
    void *arg = g->arg;
    lg_free(g);
    if (lc_alive(c))
        finish(arg, st, res);
}

static void lg_released(void *arg, const cm_lock_result *res)
{
    cm_lock_guard *g = arg;
    /* a RELEASE that did not come back (session dropped) still ends our hold: the work
     * finished before any loss was reported, so the lock was held throughout */
    lg_finish(g, res->status == CM_LOCK_LOST ? CM_LOCK_LOST : CM_LOCK_OK, res);
}

static void lg_acquired(void *arg, const cm_lock_result *res)
{
    cm_lock_guard *g = arg;
    cm_lockclient *c = g->c;
    if (res->status != CM_LOCK_OK) {
        lg_finish(g, res->status, res);
        return;
    }
    snprintf(g->token, sizeof(g->token), "%s", res->token);
    lc_grant *gr = lc_grant_find(c, g->resource, g->token);
    if (gr != NULL)
        gr->guard = g;
    g->st = LG_WORKING;
    g->work(g->arg, res, g); /* may finish and free g: do not touch it after */
}

void lg_on_lost(cm_lock_guard *g)
{
    g->lost = true;
    if (g->st == LG_WORKING && g->abort != NULL)
        g->abort(g->arg); /* may call cm_lock_guard_done (and free g) */
}

cm_rc cm_lockclient_with_lock(cm_lockclient *c, const char *resource, uint64_t lease_ms,
                              uint64_t wait_ms, cm_lock_work_fn work, cm_lock_abort_fn abort,
                              cm_lock_finish_fn finish, void *arg)
{
    if (c == NULL || resource == NULL || work == NULL || finish == NULL)
        return CM_ERR;
    cm_lock_guard *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return CM_ERR;
    g->c = c;
    g->st = LG_ACQUIRING;
    snprintf(g->resource, sizeof(g->resource), "%s", resource);
    g->work = work;
    g->abort = abort;
    g->finish = finish;
    g->arg = arg;
    g->next = c->guards;
    if (c->guards != NULL)
        c->guards->prev = g;
    c->guards = g;
    if (cm_lockclient_acquire(c, resource, lease_ms, wait_ms, lg_acquired, g, NULL) != CM_OK) {
        lg_free(g);
        return CM_ERR;
    }
    return CM_OK;
}

void cm_lock_guard_done(cm_lock_guard *g)
{
    if (g == NULL || g->done)
        return;
    cm_lockclient *c = g->c;
    g->done = true;
    lc_enter(c);
    if (g->lost) {
        cm_lock_result res;
        lc_result_init(&res, CM_LOCK_LOST, "", "the lock was lost while the work ran");
        snprintf(res.token, sizeof(res.token), "%s", g->token);
        lg_finish(g, CM_LOCK_LOST, &res);
    } else {
        g->st = LG_RELEASING;
        if (cm_lockclient_release(c, g->resource, g->token, lg_released, g) != CM_OK) {
            cm_lock_result res;
            lc_result_init(&res, CM_LOCK_ERROR, "CLIENT", "could not send RELEASE");
            lg_finish(g, CM_LOCK_LOST, &res);
        }
    }
    lc_leave(c);
}

bool cm_lock_guard_lost(const cm_lock_guard *g)
{
    return g != NULL && g->lost;
}
