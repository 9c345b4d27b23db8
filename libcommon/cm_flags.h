/*
 * cm_flags: the command line of the tools (bookbench, lockbench, lockctl, fakepay,
 * chaos_proxy, chaos_load), as cm_cli is for the daemons: each program describes its
 * flags once in a table (name, type, range, destination) and this module parses argv,
 * checks every value strictly (cm_parse), and prints the errors every tool prints the
 * same way:
 *     PROG: unknown option '--x'            (then the usage, exit 2)
 *     PROG: --x needs a value               (then the usage, exit 2)
 *     PROG: unexpected argument 'x'         (then the usage, exit 2)
 *     PROG: --x 'v': want <what>            (exit 2; or a custom parser's reason)
 *     PROG: --x METAVAR is required         (then the usage, exit 2)
 * --help (and -h) prints the usage to stdout and --version "PROG VERSION"; both exit 0.
 * A flag is "--name value" or "--name=value", the exact name only (no abbreviations).
 *
 * Ownership: the tables and destinations are the caller's; string values are borrowed
 * from argv. Nothing is allocated.
 */
#ifndef CM_FLAGS_H
#define CM_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "cm_core.h"

typedef enum cm_flag_type {
    CM_FLAG_SWITCH,    /* no value: *(bool *)dst = true */
    CM_FLAG_STRING,    /* *(const char **)dst = the value, borrowed from argv */
    CM_FLAG_U64,       /* *(uint64_t *)dst = an integer in [lo, hi] */
    CM_FLAG_DOUBLE,    /* *(double *)dst = a finite number in [dlo, dhi] */
    CM_FLAG_LOG_LEVEL, /* *(cm_log_level *)dst = error|warn|info|debug */
    CM_FLAG_ADDR,      /* *(cm_addr *)dst = host:port (cm_addr_parse; its reason on error) */
    CM_FLAG_CUSTOM,    /* parse(value, dst, why, whylen) decides */
} cm_flag_type;

typedef struct cm_flag {
    const char *name; /* "clients" for --clients */
    cm_flag_type type;
    void *dst;
    uint64_t lo, hi; /* CM_FLAG_U64 */
    double dlo, dhi; /* CM_FLAG_DOUBLE */
    /* CM_FLAG_CUSTOM: false when value is bad; a reason written into why (whylen > 0)
     * replaces "want <want>" in the error. */
    bool (*parse)(const char *value, void *dst, char *why, size_t whylen);
    const char *want;    /* what a bad value is told to be; NULL: "an integer from lo to hi"
                            (U64), "a number from dlo to dhi" (DOUBLE), the levels
                            (LOG_LEVEL) */
    const char *metavar; /* for "--x METAVAR is required"; NULL: "--x is required" */
    bool required;       /* missing: the "is required" error */
    bool *seen;          /* NULL, or set true when the flag is given */
} cm_flag;

typedef struct cm_flags_spec {
    const char *prog;
    const cm_flag *flags;
    size_t nflags;
    void (*usage)(FILE *out); /* the program's usage text */
    /* true: parsing stops at the first argument that is not a flag (or after "--") and
     * *next says where; false: such an argument is the "unexpected argument" error. */
    bool stop_at_positional;
} cm_flags_spec;

/* The values are the tools' parse_args convention (0 run, 1 served, 2 usage error), so a
 * parse_args can return them as they are. */
typedef enum cm_flags_result {
    CM_FLAGS_RUN = 0,   /* parsed: run */
    CM_FLAGS_DONE = 1,  /* --help or --version served: exit 0 */
    CM_FLAGS_USAGE = 2, /* an error, printed: exit 2 */
} cm_flags_result;

/* The exit code of a result that is not CM_FLAGS_RUN: 0 (served) or 2 (usage error). */
#define CM_FLAGS_EXIT(r) ((r) == CM_FLAGS_DONE ? 0 : 2)

/* Parses argv[first..argc). *next (may be NULL) gets the index of the first argument not
 * consumed (argc when all were; with stop_at_positional, the positional or the "--"). */
cm_flags_result cm_flags_parse(const cm_flags_spec *spec, int argc, char **argv, int first,
                               int *next) CM_MUSTCHECK;

#endif
