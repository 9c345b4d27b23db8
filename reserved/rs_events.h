/*
 * rs_events: live seat events (SPEC §8): GET /performances/{id}/events as Server-Sent
 * Events, fed by PostgreSQL LISTEN/NOTIFY so that every reserved process hears the changes
 * committed through every other one. (Being built: this is the module's interface.)
 */
#ifndef RS_EVENTS_H
#define RS_EVENTS_H

#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_events_routes[];
extern const size_t rs_events_nroutes;

void rs_events_register(rs_db *db);
cm_rc rs_events_start(rs_app *app) CM_MUSTCHECK;
/* A graceful stop: every stream ends (their requests are answered). Idempotent. */
void rs_events_stop(void);
void rs_events_metrics(cm_strbuf *out);

#endif
