/*
 * cm_httpc_fetch: one blocking GET through cm_httpc, for command-line tools that have no
 * event loop of their own (the chaos checker reads fakepay's payment list and reserved's
 * /metrics with it). It runs a private event_base for the one request and frees it before
 * it returns. Never call it from inside an event loop: it blocks the thread.
 * Ownership: *body is malloc'ed and the caller's to free.
 */
#ifndef CM_HTTPC_FETCH_H
#define CM_HTTPC_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

/* GETs base + path, where base is "http://host:port[/prefix]" or "host:port". On CM_OK
 * *status is the HTTP status (any) and *body the NUL-terminated answer body. CM_ERR with a
 * reason in err when the base is malformed or no whole answer came within timeout_ms
 * (max_body: 0 for cm_httpc's default). */
cm_rc cm_httpc_fetch(const char *base, const char *path, uint32_t timeout_ms, size_t max_body,
                     int *status, char **body, char *err, size_t errlen) CM_MUSTCHECK;

#endif
