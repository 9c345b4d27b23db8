/*
 * rs_static: the web app's files (contract in rs_static.h). The bytes, routes and
 * handlers come from the generated rs_static_gen.c; this module checks the tables once at
 * start and answers a file request with a copy of its bytes (rs_reply_text copies them
 * into the answer's buffer, the tables stay untouched).
 */
#include "rs_static.h"
#include <assert.h>
#include <stdbool.h>
#include <string.h>
#include "cm_log.h"

/* Whether an If-None-Match value ("*", or a list of entity tags, weak ones included: RFC
 * 9110 §13.1.2 compares them weakly) names etag. */
static bool etag_listed(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

void rs_static_answer(rs_req *r, size_t i)
{
    assert(i < rs_static_nfiles);
    const rs_static_file *f = &rs_static_files[i];
    /* no-cache: the browser asks every time (a new build's files are seen at once) and
     * gets an empty 304 while its copy is still this one */
    rs_req_add_header(r, "Cache-Control", "no-cache");
    rs_req_add_header(r, "ETag", f->etag);
    rs_req_add_header(r, "X-Content-Type-Options", "nosniff");
    const char *inm = rs_req_header(r, "If-None-Match");
    if (inm && etag_listed(inm, f->etag)) {
        rs_reply_text(r, 304, NULL, "", 0);
        return;
    }
    rs_reply_text(r, 200, f->content_type, (const char *)f->data, f->len);
}

cm_rc rs_static_start(rs_app *app)
{
    size_t bytes = 0;
    for (size_t i = 0; i < rs_static_nfiles; i++) {
        const rs_static_file *f = &rs_static_files[i];
        /* the generator keeps these true; a hand-edited table that breaks them would
         * serve paths the router never matches */
        assert(strncmp(f->path, "/app/", 5) == 0 && f->etag[0] == '"');
        bytes += f->len;
        log_debug("static: %s (%zu bytes, %s, ETag %s)", f->path, f->len, f->content_type, f->etag);
    }
    rs_http_add_routes(app->http, rs_static_routes, rs_static_nroutes);
    log_debug("static: %zu files, %zu bytes, at / and /app/", rs_static_nfiles, bytes);
    return CM_OK;
}
