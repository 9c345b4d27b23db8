/*
 * rs_booking: the reservation routes of SPEC §0/§6 and the work of a booking or a
 * cancellation: POST /performances/{id}/reservations (lock -> BEGIN -> fence -> seats ->
 * insert -> capacity -> payment -> COMMIT -> release), its db-mode twin (SELECT ... FOR
 * UPDATE, no lockd), DELETE /reservations/{id}; GET /reservations/{id} and
 * GET /users/{id}/reservations are rs_resv's handlers in the same route table.
 *
 * The pipeline's modules: rs_booking (routes, parsing, the statements of the work),
 * rs_bk (one request's machine: lock, transaction, unwind, compensation, answer; its
 * phases in rs_bkphase), rs_perflock (the performance lock queue of lockd mode), rs_idem
 * (Idempotency-Key records), rs_resv (reads and JSON), rs_testhook (test hooks).
 * The reconciler (rs_reconcile) is started by rs_main.
 */
#ifndef RS_BOOKING_H
#define RS_BOOKING_H

#include <stddef.h>
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_booking_routes[];
extern const size_t rs_booking_nroutes;

/* Registers the pipeline's prepared statements; call before rs_db_start. */
void rs_booking_register(rs_db *db);
/* Reads the test hooks and sets up the lock queues (after app->locks exists). */
cm_rc rs_booking_start(rs_app *app) CM_MUSTCHECK;
/* After the lock client is freed (its pending callbacks will not come): frees the lock
 * queues. Bookings still in flight are abandoned with the loop. */
void rs_booking_free(void);

#endif
