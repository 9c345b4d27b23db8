/*
 * rs_holdbk: a booking with {"holdId"} (SPEC §9): POST /performances/{id}/reservations
 * books exactly the hold's seats for the hold's user, payment as usual. rs_booking calls
 * in at three points and does the rest as for any booking:
 *   parse   {"holdId"} alone (with "seatIds" or "userId" it is 400): b->hold, and the
 *           Idempotency-Key fingerprint "perf=P;hold=H";
 *   lookup  once the performance is known (phase BK_HOLD_LOOKUP, autocommit, before the
 *           payment attempt is recorded): the hold's user and seats into b; a hold that is
 *           not the caller's (a customer), not of this performance or absent is 404
 *           NOT_FOUND, one no longer ACTIVE or past expiresAt 409 HOLD_EXPIRED;
 *   book    inside the transaction, under the lock, rs_book_hold (migration 120) instead
 *           of rs_book: the hold is claimed again under its row lock (a hold that expired
 *           or was released meanwhile is HOLD_EXPIRED, mapped by rs_bk), then booked, and
 *           the booking's seat INSERT consumes it (BOOKED).
 * Such a booking never joins a batch (rs_batch_join): the claim is its own statement.
 *
 * Owns nothing: what it reads goes into the rs_bk (freed with it).
 */
#ifndef RS_HOLDBK_H
#define RS_HOLDBK_H

#include <jansson.h>
#include <stdbool.h>
#include "rs_bk.h"
#include "rs_db.h"

void rs_holdbk_register(rs_db *db);

/* Whether a booking's body names a hold ("holdId" present and not null). */
bool rs_holdbk_asked(json_t *body);
/* Validates {"holdId"} into b (b->hold, b->user = the caller for now, b->fingerprint);
 * false after answering 400 (or 503). */
bool rs_holdbk_parse(rs_bk *b, json_t *body);
/* Reads the hold (phase BK_HOLD_LOOKUP), then next(b) with b->user, b->seats, b->nseats
 * and b->seats_param set; or b is answered (404, 409 HOLD_EXPIRED, 503) and freed. */
void rs_holdbk_lookup(rs_bk *b, rs_bk_body_fn next);
/* The booking statement: `plain` ("bk_book" or "bk_book_read", 6 parameters) for a
 * booking without a hold, its rs_book_hold twin (a 7th parameter: the hold) otherwise. */
const char *rs_holdbk_stmt(const rs_bk *b, const char *plain);
/* The 7th parameter: the hold's id in buf, or NULL without a hold. */
const char *rs_holdbk_param(const rs_bk *b, char buf[RS_BK_INT_MAX]);

#endif
