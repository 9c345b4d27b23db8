/*
 * rs_sweep: deletes what has expired (SPEC §6a): Idempotency-Key records older than
 * idempotency.ttl_s, and login sessions past their expires_at (table sessions, once
 * migration 080 made it).
 *
 * Owns a timer on the process's loop and at most one statement in flight: every
 * min(ttl / 10, 60 s) (at least 100 ms), one call of migration 090's rs_sweep(), which
 * deletes at most RS_SWEEP_MAX rows of each kind, so a run costs the database a bounded
 * amount however much has piled up; a run that found a full batch runs again soon. Every
 * reserved process sweeps: the function skips rows another sweeper holds (SKIP LOCKED),
 * so sweeping at once is harmless. Nothing here blocks the loop; nothing is heap-owned
 * but the timer (freed by rs_sweep_stop).
 */
#ifndef RS_SWEEP_H
#define RS_SWEEP_H

#include "rs_app.h"

#define RS_SWEEP_MAX 1000 /* rows of each kind deleted per run */

/* Registers the statement; before rs_db_start. */
void rs_sweep_register(rs_db *db);
/* Starts the timer on app->base (after the DB pool is started). */
cm_rc rs_sweep_start(rs_app *app) CM_MUSTCHECK;
/* Stops the timer; a run in flight finishes without starting another. Idempotent. */
void rs_sweep_stop(void);

#endif
