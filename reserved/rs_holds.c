/*
 * rs_holds: seat holds (contract in rs_holds.h). Not built yet: no routes.
 */
#include "rs_holds.h"

const rs_route rs_holds_routes[1]; /* none yet */
const size_t rs_holds_nroutes = 0;

void rs_holds_register(rs_db *db)
{
    CM_UNUSED(db);
}

cm_rc rs_holds_start(rs_app *app)
{
    CM_UNUSED(app);
    return CM_OK;
}

void rs_holds_stop(void) {}

void rs_holds_metrics(cm_strbuf *out)
{
    CM_UNUSED(out);
}
