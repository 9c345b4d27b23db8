/*
 * rs_events: live seat events (SPEC §8): GET /performances/{id}/events as Server-Sent
 * Events, read from PostgreSQL's seat_events table so that every reserved process sees the
 * changes committed through every other one.
 *
 * The events themselves are made by the database (migrations 110 and 140): a committed
 * change of seats (a booking, a cancel, a hold taken, released, expired or booked, by any
 * code path) is one row of seat_events per performance and transaction, with an id in
 * commit order per performance. This module only reads and fans out:
 *   - the reader: one libpq connection of its own (a read in flight must not hold a pool
 *     connection), non-blocking on the loop, reconnecting with backoff; every
 *     events.poll_ms, while a stream is open, one query reads the events after the lowest
 *     cursor of each performance's streams, and so does every (re)connect;
 *   - the streams: one per subscriber, each event as "id: N\nevent: seats\ndata: JSON\n\n",
 *     a "Last-Event-ID" header resumes after N (from the table), a comment line
 *     (": keep-alive") when a stream has been silent events.keepalive_ms; a reader whose
 *     unsent output passes events.max_buffer_kib is dropped (its connection closed); at
 *     most events.max_subscribers streams per process (503 UNAVAILABLE, Retry-After);
 *   - the pruner: events older than an hour are deleted, a bounded batch per minute.
 *
 * Owns: the reader's PGconn, the subscribers and the shared event texts (freed when the
 * last stream that holds them has written or dropped them). Each stream's rs_req is the
 * module's from the handler until it ends the stream (rs_http's rules).
 */
#ifndef RS_EVENTS_H
#define RS_EVENTS_H

#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_events_routes[];
extern const size_t rs_events_nroutes;

void rs_events_register(rs_db *db);
/* Starts the reader (connecting in the background), the poll and the pruner. */
cm_rc rs_events_start(rs_app *app) CM_MUSTCHECK;
/* A graceful stop: every stream ends (their requests are answered; a stream with unsent
 * bytes is closed instead of waiting for a slow reader), the reader closes. Idempotent;
 * safe when never started. */
void rs_events_stop(void);
void rs_events_metrics(cm_strbuf *out);

#endif
