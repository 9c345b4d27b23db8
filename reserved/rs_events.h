/*
 * rs_events: live seat events (SPEC §8): GET /performances/{id}/events as Server-Sent
 * Events, fed by PostgreSQL LISTEN/NOTIFY so that every reserved process hears the changes
 * committed through every other one.
 *
 * The events themselves are made by the database (migration 110): a committed change of
 * seats (a booking, a cancel, a hold taken, released, expired or booked, by any code path)
 * is one row of seat_events per performance and transaction, with a commit-ordered id, and
 * one NOTIFY on channel rs_seat_events. This module only listens and fans out:
 *   - the listener: one libpq connection of its own (LISTEN needs a session of its own; the
 *     pool's connections are leased per query), non-blocking on the loop, reconnecting
 *     with backoff; after every (re)connect it reads the events it may have missed from
 *     the table, from the last id each stream has seen;
 *   - the streams: one per subscriber, each event as "id: N\nevent: seats\ndata: JSON\n\n",
 *     a "Last-Event-ID" header resumes after N (from the table), a comment line
 *     (": keep-alive") when a stream has been silent events.keepalive_ms; a reader whose
 *     unsent output passes events.max_buffer_kib is dropped (its connection closed); at
 *     most events.max_subscribers streams per process (503 UNAVAILABLE, Retry-After);
 *   - the pruner: events older than an hour are deleted, a bounded batch per minute.
 *
 * Owns: the listener's PGconn, the subscribers and the shared event texts (freed when the
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
/* Starts the listener (connecting in the background) and the pruner. */
cm_rc rs_events_start(rs_app *app) CM_MUSTCHECK;
/* A graceful stop: every stream ends (their requests are answered; a stream with unsent
 * bytes is closed instead of waiting for a slow reader), the listener closes. Idempotent;
 * safe when never started. */
void rs_events_stop(void);
void rs_events_metrics(cm_strbuf *out);

#endif
