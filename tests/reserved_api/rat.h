/*
 * rat: what the reserved API tests share. Starts the real reserved binary on a free port
 * against a harness PostgreSQL (th_pg), speaks HTTP to it through the fakepay tests'
 * blocking client (fpt.h: one request per connection, read to EOF), and runs it as a
 * command line. Every reserved started here is stopped by the harness teardown too.
 */
#ifndef RAT_H
#define RAT_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "fpt.h"
#include "th.h"

typedef struct rat_server {
    pid_t pid;
    int port;
    char log[512];
} rat_server;

/* Prints the last lines of a log to stderr. */
void rat_dump_log(const char *path);
/* Spawns reserved on a free port with --database conninfo and the given flags
 * (NULL-terminated); does not wait. */
void rat_spawn(rat_server *s, const char *conninfo, ...) __attribute__((sentinel));
/* Waits until it listens; fails the test (with its log) otherwise. */
void rat_wait_up(rat_server *s);
/* reserved in db lock mode, no payment step, ready to serve. */
void rat_start(rat_server *s, const char *conninfo);
/* SIGTERM; fails unless it exits 0 (under ASan: also the leak check). */
void rat_stop_clean(rat_server *s);
/* Runs reserved with args (NULL-terminated) to completion: its exit status, with what it
 * printed (stdout and stderr) in out. */
int rat_run_cli(char *out, size_t outlen, ...) __attribute__((sentinel));

void rat_write_file(const char *path, const char *text);
void rat_pg_start(th_pg *pg);

/* One request; body may be NULL. The response must be JSON unless it is /metrics. */
void rat_req(const rat_server *s, const char *method, const char *path, const char *body,
             fpt_resp *r);
/* A request that must answer want (caller frees r). */
void rat_req_ok(const rat_server *s, const char *method, const char *path, const char *body,
                int want, fpt_resp *r);
/* A request with extra header lines ("Origin: http://a\r\n", may be NULL) and no
 * Content-Type unless they hold one; any answer (or status 0). */
void rat_req_raw(const rat_server *s, const char *method, const char *path, const char *headers,
                 const char *body, fpt_resp *r);

/* POSTs body (stolen, dumped by jansson) to path; the answer must be 201 (caller frees r). */
void rat_post_created(const rat_server *s, const char *path, json_t *body, fpt_resp *r);
/* The same, keeping only the new "id". */
long long rat_post_id(const rat_server *s, const char *path, json_t *body);
/* POST /performances: the new id; the answer in out unless NULL (then the caller frees it). */
long long rat_make_perf(const rat_server *s, long long venue, const char *title, const char *starts,
                        long long normal, long long vip, fpt_resp *out);
/* POST /users: the new id. */
long long rat_make_user(const rat_server *s, const char *name, const char *email);

/* A field that must be an integer / a string. */
long long rat_jint(json_t *o, const char *k);
const char *rat_jstr(json_t *o, const char *k);

#endif
