/*
 * rs_static: the web app's files (SPEC §8), served by reserved itself at / and under
 * /app/, public (no token). The files of reserved/app are embedded at build time by
 * embed_static.cmake into a generated source (rs_static_gen.c in the build dir) that
 * defines the tables below: one file each, and one route and handler per file (the
 * router matches paths literally), so nothing is read from disk at run time and a path
 * that is no file gets the router's 404. Everything is static: nothing to free.
 */
#ifndef RS_STATIC_H
#define RS_STATIC_H

#include <stddef.h>
#include "rs_app.h"
#include "rs_http.h"

/* Adds the routes of the app's files to app->http (public). */
cm_rc rs_static_start(rs_app *app) CM_MUSTCHECK;

/* ---- the generated tables (rs_static_gen.c) ---- */
typedef struct rs_static_file {
    const char *path;         /* "/app/app.js" */
    const char *content_type; /* by the file's extension, e.g. "text/javascript; charset=utf-8" */
    const unsigned char *data;
    size_t len;
    const char *etag; /* a quoted strong validator: the start of the SHA-256 of data */
} rs_static_file;

extern const rs_static_file rs_static_files[];
extern const size_t rs_static_nfiles;
/* GET /app/<name> for every file, and GET / for index.html (route "app_index"). */
extern const rs_route rs_static_routes[];
extern const size_t rs_static_nroutes;

/* The handler of every file route: answers r with file i of rs_static_files. */
void rs_static_answer(rs_req *r, size_t i);

#endif
