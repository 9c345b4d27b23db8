/*
 * th_reserved: the reserved fixture. Starts the real build/bin/reserved on a free
 * loopback port through the th harness (th_stop_all stops it by PID), waits until it
 * listens, runs it as a command line, and stops it with the exit-status check (under
 * ASan also the leak check). The database is the caller's (th_pg_shared / th_pg_start).
 */
#ifndef TH_RESERVED_H
#define TH_RESERVED_H

#include <stddef.h>

#include "th.h"

typedef th_server th_reserved;

/* Spawns reserved with --listen 127.0.0.1:<free port>, --database conninfo (unless NULL)
 * and the given flags (NULL-terminated); does not wait. */
void th_reserved_spawn(th_reserved *s, const char *conninfo, ...) __attribute__((sentinel));
/* Spawns reserved with --config <a file holding yaml> and --listen; does not wait. */
void th_reserved_spawn_yaml(th_reserved *s, const char *yaml);
/* Waits until it listens (30 s: migrations on a fresh database included); fails the
 * test (with the tail of its log) otherwise. */
void th_reserved_wait_up(th_reserved *s);
/* reserved in db lock mode, no payment step, debug log, ready to serve. */
void th_reserved_start(th_reserved *s, const char *conninfo);
/* SIGTERM; fails unless it exits 0 within 15 s. */
void th_reserved_stop_clean(th_reserved *s);
/* Runs reserved with args (NULL-terminated) to completion: its exit status, with what it
 * printed (stdout and stderr) in out. */
int th_reserved_run(char *out, size_t outlen, ...) __attribute__((sentinel));

#endif
