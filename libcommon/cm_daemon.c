/*
 * cm_daemon: the daemons' shared front door and stop signals (see cm_daemon.h).
 */
#include "cm_daemon.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>

#include "cm_log.h"

int cm_daemon_front_door(const cm_daemon_front *f, int argc, char **argv, void *cfg)
{
    cm_cli_action action = CM_CLI_RUN;
    bool usage_error = false;
    char err[CM_CLI_ORIGIN_MAX + 512]; /* where ("FILE:LINE") and why */

    if (f->parse(argc, argv, cfg, &action, &usage_error, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "%s: %s\n", f->prog, err);
        if (usage_error)
            f->usage(stderr);
        return 2;
    }
    switch (action) {
    case CM_CLI_HELP:
        f->usage(stdout);
        return 0;
    case CM_CLI_VERSION:
        printf("%s %s\n", f->prog, BOOKING_VERSION);
        return 0;
    case CM_CLI_CHECK_CONFIG:
        f->dump(cfg, stdout);
        return 0;
    case CM_CLI_RUN:
        break;
    }
    return CM_DAEMON_RUN;
}

struct cm_daemon_signals {
    struct event_base *base;
    struct event *term;
    struct event *intr;
    cm_daemon_stop_fn stop;
    void *arg;
    bool stopping;
};

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    cm_daemon_signals *s = arg;
    (void)what;
    if (s->stopping) {
        log_warn("signal %d again: stopping now", (int)sig);
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = true;
    s->stop(s->arg, (int)sig);
}

cm_daemon_signals *cm_daemon_signals_new(struct event_base *base, cm_daemon_stop_fn stop, void *arg)
{
    cm_daemon_signals *s = calloc(1, sizeof(*s));
    if (!s) {
        log_error("out of memory at start");
        return NULL;
    }
    s->base = base;
    s->stop = stop;
    s->arg = arg;
    s->term = evsignal_new(base, SIGTERM, signal_cb, s);
    s->intr = evsignal_new(base, SIGINT, signal_cb, s);
    if (!s->term || !s->intr || evsignal_add(s->term, NULL) != 0 ||
        evsignal_add(s->intr, NULL) != 0) {
        log_error("cannot install the signal handlers");
        cm_daemon_signals_free(s);
        return NULL;
    }
    return s;
}

bool cm_daemon_stopping(const cm_daemon_signals *s)
{
    return s && s->stopping;
}

void cm_daemon_signals_free(cm_daemon_signals *s)
{
    if (!s)
        return;
    if (s->term)
        event_free(s->term);
    if (s->intr)
        event_free(s->intr);
    free(s);
}
