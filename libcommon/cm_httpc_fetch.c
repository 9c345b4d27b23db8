/*
 * cm_httpc_fetch: a blocking GET on a private loop (see cm_httpc_fetch.h).
 */
#include "cm_httpc_fetch.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_httpc.h"

typedef struct fetch_state {
    bool done;
    int status;
    char *body;
    const char *error;
} fetch_state;

static void fetch_done(void *arg, const cm_httpc_resp *resp)
{
    fetch_state *st = arg;
    st->done = true;
    st->status = resp->status;
    st->error = resp->error;
    if (resp->status != 0)
        st->body = strdup(resp->body);
}

/* "http://host:port/prefix" -> addr and "/prefix" (no trailing slash). */
static cm_rc split_base(const char *base, cm_addr *addr, char *prefix, size_t prefixlen, char *err,
                        size_t errlen)
{
    char hostport[CM_HOST_MAX + 16];
    if (strncmp(base, "http://", 7) == 0)
        base += 7;
    const char *slash = strchr(base, '/');
    size_t n = slash ? (size_t)(slash - base) : strlen(base);
    if (n >= sizeof(hostport) || (slash && strlen(slash) >= prefixlen)) {
        snprintf(err, errlen, "address too long");
        return CM_ERR;
    }
    memcpy(hostport, base, n);
    hostport[n] = '\0';
    snprintf(prefix, prefixlen, "%s", slash ? slash : "");
    n = strlen(prefix);
    if (n > 0 && prefix[n - 1] == '/')
        prefix[n - 1] = '\0';
    return cm_addr_parse(hostport, addr, err, errlen);
}

cm_rc cm_httpc_fetch(const char *base, const char *path, uint32_t timeout_ms, size_t max_body,
                     int *status, char **body, char *err, size_t errlen)
{
    cm_addr addr;
    char prefix[512], full[1024];
    fetch_state st = {0};
    struct event_base *eb = NULL;
    cm_httpc *h = NULL;

    *status = 0;
    *body = NULL;
    if (split_base(base, &addr, prefix, sizeof(prefix), err, errlen) != CM_OK)
        return CM_ERR;
    if ((size_t)snprintf(full, sizeof(full), "%s%s", prefix, path) >= sizeof(full)) {
        snprintf(err, errlen, "path too long");
        return CM_ERR;
    }
    const cm_httpc_opts opts = {.timeout_ms = timeout_ms, .max_body = max_body, .close = true};
    eb = event_base_new();
    h = eb ? cm_httpc_new(eb, addr.host, addr.port, &opts) : NULL;
    if (!h || cm_httpc_request(h, "GET", full, NULL, NULL, fetch_done, &st) != CM_OK) {
        snprintf(err, errlen, "out of memory");
    } else {
        /* cm_httpc's own timer bounds the request, so the loop always ends. */
        while (!st.done && event_base_loop(eb, EVLOOP_ONCE) == 0)
            ;
        if (!st.done)
            snprintf(err, errlen, "event loop failed");
        else if (st.status == 0)
            snprintf(err, errlen, "%s:%d: no HTTP answer (%s)", addr.host, addr.port,
                     st.error ? st.error : "?");
        else if (!st.body)
            snprintf(err, errlen, "out of memory");
    }
    cm_httpc_free(h);
    if (eb)
        event_base_free(eb);
    if (!st.done || st.status == 0 || !st.body) {
        free(st.body);
        return CM_ERR;
    }
    *status = st.status;
    *body = st.body;
    return CM_OK;
}
