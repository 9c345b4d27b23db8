/*
 * lockctl's internals shared by its commands: lockctl.c owns main, the usage text, the
 * global flags and the one-call commands (info, ping, show, revoke); lockctl_acquire.c
 * owns `acquire` (a program run under a lock); lockctl_watch.c owns `watch`. Nothing here
 * allocates except lockctl_make_opts's endpoint array, which the caller frees.
 */
#ifndef LOCKCTL_H
#define LOCKCTL_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/util.h>

#include "cm_addr.h"
#include "cm_flags.h"
#include "cm_lockclient.h"

/* lockctl's own exit codes (acquire otherwise exits with its program's status) */
#define LOCKCTL_EXIT_TIMEOUT 1 /* the lock was not granted within --wait */
#define LOCKCTL_EXIT_ERROR   2 /* an error, or a usage error */
#define LOCKCTL_EXIT_LOST    3 /* the lock was lost: the program was stopped */

/* The global flags. */
typedef struct lockctl_opts {
    const char *servers;
    const char *auth;
    const char *name;
} lockctl_opts;

/* Prints "lockctl: <message>" and the usage to stderr; returns LOCKCTL_EXIT_ERROR. */
int lockctl_usage_error(const char *fmt, ...) CM_PRINTF(1, 2);
/* Parses a command's flags from argv[1] (argv[0] is its RESOURCE) up to the first
 * positional argument or "--" (*next). -1: go on; else the exit code (--help served, or
 * a usage error printed). */
int lockctl_parse_flags(const cm_flag *flags, size_t n, int argc, char **argv, int *next);
/* argv[0] as the RESOURCE of cmd: -1 when it is one, else the usage error's exit code. */
int lockctl_resource_arg(const char *cmd, int argc, char **argv);
/* Client options from the global flags (auth overrides o->auth when not NULL); the
 * endpoints are malloc'ed into *eps. false (the error printed) on a bad --server. */
bool lockctl_make_opts(const lockctl_opts *o, const char *auth, cm_lockclient_opts *co,
                       cm_addr **eps);
/* "lockctl: <prefix>: CODE text" for an error result. */
void lockctl_print_error(const char *prefix, const cm_lock_result *res);

/* An event loop whose SIGINT and SIGTERM go to on_stop (acquire, watch). */
typedef struct lockctl_loop {
    struct event_base *base;
    struct event *ev_int, *ev_term;
} lockctl_loop;
/* false when something could not be made (what was made is freed by lockctl_loop_free). */
bool lockctl_loop_init(lockctl_loop *l, void (*on_stop)(evutil_socket_t sig, short what, void *arg),
                       void *arg);
/* Frees the signal events, then the base; l may be partly made. */
void lockctl_loop_free(lockctl_loop *l);

int lockctl_acquire(const lockctl_opts *o, int argc, char **argv);
int lockctl_watch(const lockctl_opts *o, int argc, char **argv);

#endif
