/*
 * th_check: the main of every harness test binary. One Check TCase per named case, the
 * harness teardown (th_stop_all) as an unchecked fixture so servers are stopped by PID
 * even when a forked case dies. The binary answers:
 *   --list        its case names, one a line (CMake registers one ctest entry per name);
 *   --world-up    starts the servers shared by its cases (th_world_up, env TH_WORLD);
 *   --world-down  stops them (th_world_down);
 *   <case>        runs that case only (as does CK_RUN_CASE=<case>); no argument: all.
 * The cases table is the caller's and is only read.
 */
#ifndef TH_CHECK_H
#define TH_CHECK_H

#include <check.h>
#include <stddef.h>

typedef struct th_case {
    const char *name;
    const TTest *test;
} th_case;

/* Runs the cases as described above; returns the process exit status (failure also when
 * the selected case does not exist, so a typo cannot pass silently). argv may be NULL:
 * the arguments are then read from /proc/self/cmdline (for mains declared without them). */
int th_check_main(const char *suite, const th_case *cases, size_t n, double timeout_s, int argc,
                  char **argv);
/* The same with unchecked fixtures (run in the parent around each case): setup gets the
 * case's name; teardown runs before th_stop_all. Either may be NULL. */
int th_check_main_fx(const char *suite, const th_case *cases, size_t n, double timeout_s,
                     void (*setup)(const char *name), void (*teardown)(void), int argc,
                     char **argv);

#endif
