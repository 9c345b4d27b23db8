/*
 * rs_holds: seat holds (SPEC §9): POST /performances/{id}/holds, DELETE /holds/{id}, and
 * the sweeper that expires holds in every process. (Being built: this is the module's
 * interface.)
 */
#ifndef RS_HOLDS_H
#define RS_HOLDS_H

#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_holds_routes[];
extern const size_t rs_holds_nroutes;

void rs_holds_register(rs_db *db);
cm_rc rs_holds_start(rs_app *app) CM_MUSTCHECK;
/* A graceful stop: the sweeper starts nothing new. Idempotent. */
void rs_holds_stop(void);
void rs_holds_metrics(cm_strbuf *out);

#endif
