/*
 * rs_cors: see rs_cors.h. Origins compare without regard to case: browsers send scheme
 * and host in lower case, a config may not; the answer repeats the Origin as sent.
 */
#include "rs_cors.h"

#include <ctype.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ORIGIN_FORM "an origin is http(s)://host[:port] (no path), or \"*\" alone"

/* Why s is not an origin as browsers send it, or NULL when it is one. */
static const char *origin_problem(const char *s)
{
    const char *p;
    bool https = strncasecmp(s, "https://", 8) == 0;
    if (https)
        p = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        p = s + 7;
    else
        return "no http:// or https:// scheme";
    const char *host = p;
    if (*p == '[') { /* an IPv6 literal */
        p++;
        while (isxdigit((unsigned char)*p) || *p == ':' || *p == '.')
            p++;
        if (*p != ']' || p == host + 1)
            return "a bad IPv6 host (http://[::1]:3000)";
        p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '.')
            p++;
        if (p == host)
            return "no host";
    }
    if (*p == ':') {
        const char *digits = ++p;
        char *end = (char *)digits;
        long port = isdigit((unsigned char)*p) ? strtol(p, &end, 10) : -1;
        if (port < 1 || port > 65535 || end - digits > 5)
            return "the port must be 1..65535";
        if (port == (https ? 443 : 80))
            return "a default port (browsers leave it out of Origin: drop it)";
        p = end;
    }
    if (*p == '/' || *p == '?' || *p == '#')
        return "a path, query or fragment after the host (an origin has none, not even a final /)";
    if (*p != '\0')
        return "a character that cannot be in a host";
    return NULL;
}

cm_rc rs_cors_origins_ok(const void *list, char *why, size_t whylen)
{
    const cm_str_list *l = list;
    for (size_t i = 0; i < l->count; i++) {
        const char *s = l->items[i];
        const char *problem = strcmp(s, "*") == 0
                                  ? (l->count > 1 ? "\"*\" with other origins" : NULL)
                                  : origin_problem(s);
        if (problem != NULL) {
            snprintf(why, whylen, "item %zu '%s': %s; " ORIGIN_FORM, i + 1, s, problem);
            return CM_ERR;
        }
    }
    return CM_OK;
}

bool rs_cors_on(const rs_cors *c)
{
    return c != NULL && c->origins != NULL && c->origins->count > 0;
}

const char *rs_cors_allow_origin(const rs_cors *c, const char *origin)
{
    if (!rs_cors_on(c) || origin == NULL || origin[0] == '\0')
        return NULL;
    for (size_t i = 0; i < c->origins->count; i++) {
        const char *o = c->origins->items[i];
        if (strcmp(o, "*") == 0)
            return o;
        if (strcasecmp(o, origin) == 0)
            return origin;
    }
    return NULL;
}

void rs_cors_answer_headers(const rs_cors *c, const char *origin, bool refused,
                            struct evkeyvalq *out)
{
    if (!rs_cors_on(c))
        return;
    evhttp_add_header(out, "Vary", "Origin");
    const char *allow = refused ? NULL : rs_cors_allow_origin(c, origin);
    if (allow == NULL)
        return;
    evhttp_add_header(out, "Access-Control-Allow-Origin", allow);
    evhttp_add_header(out, "Access-Control-Expose-Headers", RS_CORS_EXPOSE_HEADERS);
}

void rs_cors_preflight_headers(const char *methods, struct evkeyvalq *out)
{
    evhttp_add_header(out, "Access-Control-Allow-Methods", methods);
    evhttp_add_header(out, "Access-Control-Allow-Headers", RS_CORS_ALLOW_HEADERS);
    evhttp_add_header(out, "Access-Control-Max-Age", RS_CORS_MAX_AGE_S);
}
