/*
 * cm_lockclient_sync: the blocking wrapper over the async client (cm_lockclient.h).
 * Owns a private event_base and one async client on it; each call submits one
 * request and runs that base until the reply (or the client-side timeout) arrives.
 * Built only on the public async API, so both behave the same on the wire.
 */
#include "cm_lockclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct cm_lockclient_sync {
    struct event_base *base;
    cm_lockclient *c;
    int state_seen; /* 0: no news yet, 1: session up, -1: a round of endpoints failed */
    bool done;
    cm_lock_result res;
    char message[CM_LOCKP_MAX_LINE + 1]; /* storage behind res.message */
    char line[CM_LOCKP_MAX_LINE + 1];    /* storage behind res.line */
};

static void sync_state_cb(void *arg, bool connected)
{
    cm_lockclient_sync *s = arg;
    if (s->state_seen == 0)
        s->state_seen = connected ? 1 : -1;
}

/* Deep-copies the borrowed strings so the result outlives the callback. */
static void sync_store(cm_lockclient_sync *s, const cm_lock_result *res)
{
    s->res = *res;
    snprintf(s->message, sizeof(s->message), "%s", res->message ? res->message : "");
    snprintf(s->line, sizeof(s->line), "%s", res->line ? res->line : "");
    s->res.message = s->message;
    s->res.line = s->line;
}

static void sync_reply_cb(void *arg, const cm_lock_result *res)
{
    cm_lockclient_sync *s = arg;
    sync_store(s, res);
    s->done = true;
}

static void sync_error(cm_lock_result *out, const char *code, const char *message)
{
    memset(out, 0, sizeof(*out));
    out->status = CM_LOCK_ERROR;
    snprintf(out->code, sizeof(out->code), "%s", code);
    out->message = message;
    out->line = "";
}

cm_lockclient_sync *cm_lockclient_sync_new(const cm_lockclient_opts *opts, char *err, size_t errlen)
{
    cm_lockclient_sync *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->base = event_base_new();
    if (s->base == NULL) {
        snprintf(err, errlen, "cannot create an event base");
        goto fail;
    }
    s->c = cm_lockclient_new(s->base, opts);
    if (s->c == NULL) {
        snprintf(err, errlen, "bad client options (endpoints, name or secret)");
        goto fail;
    }
    cm_lockclient_on_state(s->c, sync_state_cb, s);
    while (s->state_seen == 0)
        if (event_base_loop(s->base, EVLOOP_ONCE) < 0)
            break;
    if (s->state_seen != 1) {
        snprintf(err, errlen, "cannot connect to any lockd endpoint");
        goto fail;
    }
    return s;
fail:
    cm_lockclient_sync_free(s);
    return NULL;
}

void cm_lockclient_sync_free(cm_lockclient_sync *s)
{
    if (s == NULL)
        return;
    cm_lockclient_free(s->c);
    if (s->base != NULL)
        event_base_free(s->base);
    free(s);
}

/* Runs the loop until the pending request's callback ran, then copies the result. */
static cm_rc sync_wait(cm_lockclient_sync *s, cm_rc submitted, cm_lock_result *out)
{
    if (submitted != CM_OK) {
        sync_error(out, "BADARG", "the request could not be made (bad arguments)");
        return CM_ERR;
    }
    while (!s->done)
        if (event_base_loop(s->base, EVLOOP_ONCE) < 0) {
            sync_error(out, "LOOP", "the event loop failed");
            return CM_ERR;
        }
    *out = s->res;
    return CM_OK;
}

cm_rc cm_lockclient_sync_acquire(cm_lockclient_sync *s, const char *resource, uint64_t lease_ms,
                                 uint64_t wait_ms, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(
        s, cm_lockclient_acquire(s->c, resource, lease_ms, wait_ms, sync_reply_cb, s, NULL), out);
}

cm_rc cm_lockclient_sync_renew(cm_lockclient_sync *s, const char *resource, const char *token,
                               uint64_t lease_ms, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_renew(s->c, resource, token, lease_ms, sync_reply_cb, s),
                     out);
}

cm_rc cm_lockclient_sync_release(cm_lockclient_sync *s, const char *resource, const char *token,
                                 cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_release(s->c, resource, token, sync_reply_cb, s), out);
}

cm_rc cm_lockclient_sync_ping(cm_lockclient_sync *s, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_ping(s->c, sync_reply_cb, s), out);
}

cm_rc cm_lockclient_sync_info(cm_lockclient_sync *s, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_info(s->c, sync_reply_cb, s), out);
}

cm_rc cm_lockclient_sync_show(cm_lockclient_sync *s, const char *resource, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_show(s->c, resource, sync_reply_cb, s), out);
}

cm_rc cm_lockclient_sync_revoke(cm_lockclient_sync *s, const char *resource, cm_lock_result *out)
{
    s->done = false;
    return sync_wait(s, cm_lockclient_revoke(s->c, resource, sync_reply_cb, s), out);
}

/*
 * On CM_OK, *out is the RELEASE outcome (OK, or LOST when the lock was gone by the
 * end of the work, or ERROR when the session dropped) carrying the grant's token,
 * fence and validity; on CM_ERR it is why the lock was not granted.
 */
cm_rc cm_with_lock_sync(cm_lockclient_sync *s, const char *resource, uint64_t lease_ms,
                        uint64_t wait_ms, int (*work)(void *arg, const cm_lock_result *grant),
                        void *arg, int *work_rc, cm_lock_result *out)
{
    cm_lock_result grant, rel;
    char token[CM_LOCKP_TOKEN_LEN + 1];

    if (work == NULL) {
        sync_error(out, "BADARG", "no work function");
        return CM_ERR;
    }
    if (cm_lockclient_sync_acquire(s, resource, lease_ms, wait_ms, &grant) != CM_OK ||
        grant.status != CM_LOCK_OK) {
        *out = grant;
        return CM_ERR;
    }
    snprintf(token, sizeof(token), "%s", grant.token);
    int rc = work(arg, &grant);
    if (work_rc != NULL)
        *work_rc = rc;
    if (cm_lockclient_sync_release(s, resource, token, &rel) != CM_OK)
        rel.status = CM_LOCK_ERROR;
    *out = rel;
    snprintf(out->token, sizeof(out->token), "%s", token);
    out->fence = grant.fence;
    out->validity_ms = grant.validity_ms;
    return CM_OK;
}
