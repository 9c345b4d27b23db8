/*
 * rs_reconcile: undoing payments that no committed booking stands behind (issue 3 §3).
 *
 * Owns two things:
 *  - the compensation job: given a payment attempt (reference, payment id if known),
 *    look it up at the gateway when the id is unknown, cancel it, and move the attempt
 *    row to CANCELLED (or DECLINED); used by the booking path after a rollback, by
 *    cancellation after its commit, and by the reconciler;
 *  - the reconciler: a timer (reconcile.interval_ms) that claims a bounded batch of open
 *    attempts (PENDING/APPROVED older than reconcile.after_ms, or CANCELLING untouched as
 *    long) that no CONFIRMED reservation carries, by moving them to CANCELLING with
 *    FOR UPDATE SKIP LOCKED (a booking that holds the row is never waited for, and its
 *    CAPTURED update and the claim serialize on the row), then compensates each.
 * Nothing here blocks the loop; every gateway and DB call is idempotent, so several
 * reserved processes may reconcile at once.
 */
#ifndef RS_RECONCILE_H
#define RS_RECONCILE_H

#include <stdbool.h>
#include <stdint.h>
#include "rs_app.h"

/* done: the attempt reached a final state (CANCELLED/DECLINED); false leaves it open for
 * the reconciler (gateway down, or the charge may still land). */
typedef void (*rs_comp_cb)(void *arg, bool done);

void rs_reconcile_register(rs_db *db);
cm_rc rs_reconcile_start(rs_app *app) CM_MUSTCHECK;
void rs_reconcile_stop(void);
/* Jobs (compensations and reconciler runs) still in flight. */
size_t rs_reconcile_in_flight(void);

/* Compensates one attempt. payment_id may be NULL or "" (then looked up by reference).
 * age_ms: how old the attempt is; a lookup that finds no payment closes the attempt only
 * when age_ms says no charge can still be on its way. CM_OK: cb (may be NULL) runs
 * exactly once from the loop; CM_ERR (out of memory): it does not run and the attempt
 * stays open for the reconciler. from_reconciler counts the cancel as the reconciler's. */
cm_rc rs_comp_start(const char *reference, const char *payment_id, int64_t age_ms,
                    bool from_reconciler, rs_comp_cb cb, void *arg) CM_MUSTCHECK;

#endif
