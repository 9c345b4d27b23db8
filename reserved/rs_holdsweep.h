/*
 * rs_holdsweep: the hold sweeper of one reserved process (SPEC §9: an expired hold frees
 * its seats by itself within 1 s of expiresAt, even when no request touches it).
 *
 * Every RS_HOLDSWEEP_MS, one autocommit call of migration 120's rs_hold_expire, which
 * turns at most RS_HOLDSWEEP_MAX holds past their expiresAt into EXPIRED and frees their
 * seats (hold_seats inactive: the seat events of migration 110 follow from that); a full
 * batch runs again at once. Every process sweeps: rs_hold_expire skips the holds another
 * sweeper (or a booking claiming the hold) has locked and re-checks the status under the
 * row lock, so sweepers never wait for each other and never expire a hold twice.
 *
 * Owns a timer on the process's loop (freed by rs_holdsweep_stop) and at most one
 * statement in flight; nothing blocks the loop.
 */
#ifndef RS_HOLDSWEEP_H
#define RS_HOLDSWEEP_H

#include "rs_app.h"

#define RS_HOLDSWEEP_MS  250 /* between runs: a hold is freed at most this late (+ the run) */
#define RS_HOLDSWEEP_MAX 500 /* holds expired per run */

/* Registers the statement; before rs_db_start. */
void rs_holdsweep_register(rs_db *db);
/* Starts the timer on app->base (after the DB pool is started). */
cm_rc rs_holdsweep_start(rs_app *app) CM_MUSTCHECK;
/* Stops the timer; a run in flight finishes without starting another. Idempotent. */
void rs_holdsweep_stop(void);

#endif
