/*
 * rs_booking: everything about reservations: the booking path of SPEC §0 (lock ->
 * BEGIN -> fence -> seats -> insert -> capacity -> payment -> COMMIT -> release), its
 * db-mode twin (SELECT ... FOR UPDATE, no lockd), Idempotency-Key replay, cancellation,
 * reservation reads, and the reconciler that cancels orphaned payments.
 * Routes: POST /performances/{id}/reservations, GET/DELETE /reservations/{id},
 * GET /users/{id}/reservations.
 */
#ifndef RS_BOOKING_H
#define RS_BOOKING_H

#include <stddef.h>
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_booking_routes[];
extern const size_t rs_booking_nroutes;

/* Registers the module's prepared statements; call before rs_db_start. */
void rs_booking_register(rs_db *db);
/* Starts the reconciler timer. */
cm_rc rs_booking_start(rs_app *app) CM_MUSTCHECK;
/* Stops timers; in-flight bookings finish through their callbacks. */
void rs_booking_stop(void);

#endif
