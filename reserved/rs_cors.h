/*
 * rs_cors: who may call the API from a web page on another origin (cors.allow_origins)
 * and the CORS headers that say so. rs_http asks it on every answer and on OPTIONS; it
 * owns no connection state, only the list of origins (borrowed from the config).
 *
 * The rules (Fetch standard, "CORS protocol"):
 * - Off (empty list, the default): no CORS header anywhere; a browser then lets no page of
 *   another origin read an answer.
 * - On: every answer carries "Vary: Origin" (it depends on the Origin header, caches must
 *   know). An answer to a request whose Origin is allowed also carries
 *   "Access-Control-Allow-Origin: <that origin>" ("*" when the list is "*") and
 *   "Access-Control-Expose-Headers: Retry-After, Allow", errors included.
 * - A preflight (OPTIONS with Origin and Access-Control-Request-Method) of an allowed
 *   origin for a method the path serves gets 204 with the above plus
 *   "Access-Control-Allow-Methods", "Access-Control-Allow-Headers: Content-Type,
 *   Idempotency-Key, Authorization" and "Access-Control-Max-Age: 600"; any other
 *   preflight gets 403 FORBIDDEN without Access-Control-Allow-Origin (rs_http).
 * No Access-Control-Allow-Credentials: the API takes its token in the Authorization
 * header, which needs no cookies or credentials mode.
 */
#ifndef RS_CORS_H
#define RS_CORS_H

#include <stdbool.h>
#include <stddef.h>
#include "cm_config.h"
#include "cm_core.h"

struct evkeyvalq;

/* What the answers expose and the preflights allow. */
#define RS_CORS_EXPOSE_HEADERS "Retry-After, Allow"
#define RS_CORS_ALLOW_HEADERS  "Content-Type, Idempotency-Key, Authorization"
#define RS_CORS_MAX_AGE_S      "600"

/* The policy of one list of origins, borrowed: it must outlive every request. An empty
 * list is CORS off. */
typedef struct rs_cors {
    const cm_str_list *origins;
} rs_cors;

/* Validates cors.allow_origins (a cm_cfg_validate_fn over a cm_str_list): every item
 * http(s)://host[:port] with no path and no default port, or "*" alone. */
cm_rc rs_cors_origins_ok(const void *list, char *why, size_t whylen);

bool rs_cors_on(const rs_cors *c);
/* The value of Access-Control-Allow-Origin for a request's Origin header (NULL: none),
 * or NULL when CORS is off or that origin is not allowed. Borrowed from c or origin. */
const char *rs_cors_allow_origin(const rs_cors *c, const char *origin);
/* Adds the headers of any answer (Vary, and for an allowed origin the Allow-Origin and
 * Expose-Headers) to out; with refused, never Access-Control-Allow-Origin. */
void rs_cors_answer_headers(const rs_cors *c, const char *origin, bool refused,
                            struct evkeyvalq *out);
/* Adds what a successful preflight adds on top: Allow-Methods (methods), Allow-Headers,
 * Max-Age. */
void rs_cors_preflight_headers(const char *methods, struct evkeyvalq *out);

#endif
