/*
 * rs_holds: seat holds (SPEC §9). Owns the routes POST /performances/{id}/holds and
 * DELETE /holds/{id}, the JSON of a hold, the hold counters on /metrics, and the start and
 * stop of the sweeper that expires holds in every process (rs_holdsweep). A booking with
 * {"holdId"} is rs_holdbk's (a hook of rs_booking); the rules that bind bookings to holds
 * (another user's held seat is taken, one's own hold is consumed, the purchase limit
 * counts held seats) are migration 120's, in the database, for every booking path.
 *
 * A hold is taken by the booking machine (rs_bk, op RS_BK_HOLD): the performance lock
 * (lockd mode: rs_perflock, and the fence checked in the transaction; db mode: the
 * performance row FOR UPDATE), then one statement, rs_hold_take, then COMMIT. Nothing here
 * owns memory beyond a request: every answer's JSON goes to rs_http, which frees it.
 */
#ifndef RS_HOLDS_H
#define RS_HOLDS_H

#include <stdint.h>
#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

/* Counters of this process (one loop: plain integers). */
typedef struct rs_hold_counts {
    uint64_t created;  /* holds committed by POST /performances/{id}/holds */
    uint64_t booked;   /* bookings with {"holdId"} committed (the hold consumed) */
    uint64_t released; /* holds this process's DELETE /holds/{id} released */
    uint64_t expired;  /* holds this process's sweeper expired */
} rs_hold_counts;

extern rs_hold_counts rs_hold_stats;

extern const rs_route rs_holds_routes[];
extern const size_t rs_holds_nroutes;

/* Registers the statements of the routes, of rs_holdbk and of the sweeper; before
 * rs_db_start. */
void rs_holds_register(rs_db *db);
/* Starts the sweeper (after the DB pool is started). */
cm_rc rs_holds_start(rs_app *app) CM_MUSTCHECK;
/* A graceful stop: the sweeper starts nothing new. Idempotent. */
void rs_holds_stop(void);
/* Prometheus text of rs_hold_stats. */
void rs_holds_metrics(cm_strbuf *out);

#endif
