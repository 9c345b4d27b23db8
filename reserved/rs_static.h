/*
 * rs_static: the web app's files (SPEC §8), served by reserved itself at / and under
 * /app/. (Being built: this is the module's interface.)
 */
#ifndef RS_STATIC_H
#define RS_STATIC_H

#include "rs_app.h"

/* Adds the routes of the app's files to app->http (public). */
cm_rc rs_static_start(rs_app *app) CM_MUSTCHECK;

#endif
