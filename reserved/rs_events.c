/*
 * rs_events: live seat events (contract in rs_events.h). Not built yet: no routes.
 */
#include "rs_events.h"

const rs_route rs_events_routes[1]; /* none yet */
const size_t rs_events_nroutes = 0;

void rs_events_register(rs_db *db)
{
    CM_UNUSED(db);
}

cm_rc rs_events_start(rs_app *app)
{
    CM_UNUSED(app);
    return CM_OK;
}

void rs_events_stop(void) {}

void rs_events_metrics(cm_strbuf *out)
{
    CM_UNUSED(out);
}
