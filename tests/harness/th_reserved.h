/*
 * th_reserved: the reserved fixture. Starts the real build/bin/reserved on a free
 * loopback port through the th harness (th_stop_all stops it by PID), waits until it
 * listens, runs it as a command line, and stops it with the exit-status check (under
 * ASan also the leak check). The database is the caller's (th_pg_shared / th_pg_start).
 *
 * Every reserved it starts gets the test defaults (th_reserved_merge_yaml): cheap
 * password hashing and no rate limits, unless the test's own YAML sets those keys.
 * Accounts (SPEC §6a): th_reserved_admin makes the test an admin in one call (the
 * --add-admin command line, then a login) and sets th_http's default bearer token, so
 * every later th_http request is the admin's; th_signup / th_login give customer tokens.
 * Tokens are the caller's buffers (char[TH_TOKEN_LEN + 1]), except the admin's, which is
 * the harness's own (valid until the next th_reserved_admin).
 */
#ifndef TH_RESERVED_H
#define TH_RESERVED_H

#include <stddef.h>

#include "th.h"

typedef th_server th_reserved;

#define TH_ADMIN_EMAIL "admin@test.invalid"
/* The password of every account the harness makes (8..128 characters). */
#define TH_PASSWORD  "harness-password-1"
#define TH_TOKEN_LEN 64 /* a login token: 64 hex digits */

/* The test's YAML with the harness defaults added (malloc'd, caller frees): for each of
 * auth.hash_ops: 1, auth.hash_mem_kib: 8 (Argon2id in microseconds instead of ~20 ms and
 * 19 MiB), limits.rate_per_token: {per_s: 0} and limits.rate_per_ip: {per_s: 0} (a storm
 * from one client is not a flood) whose key the YAML does not name anywhere: a section the
 * YAML lacks is appended, a key it lacks goes into its section (into the braces of a flow
 * section, on the same line; as a line right after the head of a block section), so no
 * key is ever given twice (cm_config refuses that). yaml may be NULL. */
char *th_reserved_merge_yaml(const char *yaml);
/* Spawns reserved with --listen 127.0.0.1:<free port>, --database conninfo (unless NULL)
 * and the given flags (NULL-terminated); does not wait. A --config FILE among the flags is
 * replaced by a merged copy (th_reserved_merge_yaml); without one, a config holding only
 * the defaults is added. */
void th_reserved_spawn(th_reserved *s, const char *conninfo, ...) __attribute__((sentinel));
/* Spawns reserved with --config <a file holding yaml merged with the defaults> and
 * --listen; does not wait. */
void th_reserved_spawn_yaml(th_reserved *s, const char *yaml);
/* Waits until it listens (30 s: migrations on a fresh database included); fails the
 * test (with the tail of its log) otherwise. */
void th_reserved_wait_up(th_reserved *s);
/* reserved in db lock mode, no payment step, debug log, ready to serve. */
void th_reserved_start(th_reserved *s, const char *conninfo);
/* SIGTERM; fails unless it exits 0 within 15 s. */
void th_reserved_stop_clean(th_reserved *s);
/* Runs reserved with args (NULL-terminated) to completion: its exit status, with what it
 * printed (stdout and stderr) in out. No defaults are added: the command line is the
 * test's. */
int th_reserved_run(char *out, size_t outlen, ...) __attribute__((sentinel));
/* The same with input (may be NULL) as its standard input. */
int th_reserved_run_stdin(const char *input, char *out, size_t outlen, ...)
    __attribute__((sentinel));

/* `reserved --config <defaults> --database conninfo --add-admin email` with password on
 * stdin; fails the test unless it exits 0. The new (or promoted) user's id. */
long long th_reserved_add_admin(const char *conninfo, const char *email, const char *password);
/* Makes TH_ADMIN_EMAIL (password TH_PASSWORD) an admin of conninfo's database, logs it in
 * at s and sets the token as th_http's default bearer. The token (the harness's buffer).
 * Call it again after a restart on a fresh database; servers sharing the database share
 * the token. */
const char *th_reserved_admin(th_reserved *s, const char *conninfo);
/* The token of the last th_reserved_admin ("" when none). */
const char *th_admin_token(void);
/* POST /sessions {email, password} (no bearer sent); fails the test unless 201. The
 * caller's user id; the token in token. */
long long th_login(int port, const char *email, const char *password, char token[TH_TOKEN_LEN + 1]);
/* A customer: POST /users {name, email, password: TH_PASSWORD} (no bearer sent), then
 * th_login. Its id; its token in token (NULL: not logged in). */
long long th_signup(int port, const char *name, const char *email, char token[TH_TOKEN_LEN + 1]);

#endif
