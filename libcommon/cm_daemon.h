/*
 * cm_daemon: what the daemons' main() share, so each program keeps only its own start-up
 * and stop order:
 * - the front door (SPEC §5): parse the command line and config, then --help, --version
 *   and --check-config print and exit 0, a bad flag or value prints one line (and the
 *   usage for a bad flag) and exits 2;
 * - the stop signals: SIGTERM or SIGINT starts the program's graceful stop once; a second
 *   signal while it runs stops the loop at once (an operator who asks twice means it).
 * Ownership: a cm_daemon_signals owns its two signal events; the caller owns the base and
 * frees the signals before the base.
 */
#ifndef CM_DAEMON_H
#define CM_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "cm_cli.h"
#include "cm_core.h"

struct event_base;

typedef struct cm_daemon_front {
    const char *prog; /* "lockd": the prefix of errors and of --version's line */
    /* Loads the config into cfg; on CM_ERR err holds one line and *usage_error says
     * whether to print the usage after it. */
    cm_rc (*parse)(int argc, char **argv, void *cfg, cm_cli_action *action, bool *usage_error,
                   char *err, size_t errlen);
    void (*usage)(FILE *out);
    void (*dump)(const void *cfg, FILE *out); /* --check-config */
} cm_daemon_front;

#define CM_DAEMON_RUN (-1)

/* Parses and answers --help, --version, --check-config and errors. Returns CM_DAEMON_RUN
 * when the program is to run with cfg, else the exit status (0 or 2). */
int cm_daemon_front_door(const cm_daemon_front *f, int argc, char **argv, void *cfg);

typedef struct cm_daemon_signals cm_daemon_signals;
/* The graceful stop: called once, for the first SIGTERM or SIGINT. */
typedef void (*cm_daemon_stop_fn)(void *arg, int sig);

/* Installs SIGTERM and SIGINT on base. NULL (logged) when they cannot be installed. */
cm_daemon_signals *cm_daemon_signals_new(struct event_base *base, cm_daemon_stop_fn stop,
                                         void *arg) CM_MUSTCHECK;
/* Whether a stop signal came. */
bool cm_daemon_stopping(const cm_daemon_signals *s);
/* NULL is a no-op. */
void cm_daemon_signals_free(cm_daemon_signals *s);

#endif
