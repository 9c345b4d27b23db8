/*
 * cx_fetch: a blocking HTTP/1.0 GET for the batch checker (fakepay's payment list,
 * reserved's /metrics). One request per connection, read to EOF, bounded in time and size.
 * Not for daemons: it blocks the calling thread.
 */
#ifndef CX_FETCH_H
#define CX_FETCH_H

#include <stddef.h>

#include "cm_core.h"

/* GETs base + path, where base is "http://host:port[/prefix]" or "host:port". On success
 * *status is the HTTP status and *body a malloc'ed NUL-terminated body the caller frees.
 * CM_ERR with a reason in err when there is no HTTP answer within timeout_ms. */
cm_rc cx_fetch_get(const char *base, const char *path, int timeout_ms, int *status, char **body,
                   char *err, size_t errlen) CM_MUSTCHECK;

#endif
