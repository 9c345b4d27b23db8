/*
 * rs_static: the web app's files (contract in rs_static.h). Not built yet: no files.
 */
#include "rs_static.h"

cm_rc rs_static_start(rs_app *app)
{
    CM_UNUSED(app);
    return CM_OK;
}
