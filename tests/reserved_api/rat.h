/*
 * rat: what the reserved API tests share on top of the harness fixtures (th_reserved,
 * th_http, th_pg_shared): requests whose answer must be JSON, catalogue set-up in one
 * call, field accessors that fail the test. Responses are the caller's to free. Requests
 * carry th_http's default bearer token: after th_reserved_admin, the admin's.
 */
#ifndef RAT_H
#define RAT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <sys/types.h>

#include "th_check.h"
#include "th_http.h"
#include "th_reserved.h"
#include "th.h"

void rat_write_file(const char *path, const char *text);
/* This case's own fresh database on the binary's shared PostgreSQL (th_pg_shared). */
void rat_pg_start(th_pg *pg);

/* One request; body may be NULL. The response must be JSON unless it is /metrics. */
void rat_req(const th_reserved *s, const char *method, const char *path, const char *body,
             th_http_resp *r);
/* A request that must answer want (caller frees r). */
void rat_req_ok(const th_reserved *s, const char *method, const char *path, const char *body,
                int want, th_http_resp *r);
/* A request with extra header lines ("Origin: http://a\r\n", may be NULL) and no
 * Content-Type unless they hold one; any answer (or status 0). */
void rat_req_raw(const th_reserved *s, const char *method, const char *path, const char *headers,
                 const char *body, th_http_resp *r);

/* POSTs body (stolen, dumped by jansson) to path; the answer must be 201 (caller frees r). */
void rat_post_created(const th_reserved *s, const char *path, json_t *body, th_http_resp *r);
/* The same, keeping only the new "id". */
long long rat_post_id(const th_reserved *s, const char *path, json_t *body);
/* POST /performances: the new id; the answer in out unless NULL (then the caller frees it). */
long long rat_make_perf(const th_reserved *s, long long venue, const char *title,
                        const char *starts, long long normal, long long vip, th_http_resp *out);
/* POST /users with the password TH_PASSWORD (th_login logs it in): the new id. */
long long rat_make_user(const th_reserved *s, const char *name, const char *email);

/* A field that must be an integer / a string. */
long long rat_jint(json_t *o, const char *k);
const char *rat_jstr(json_t *o, const char *k);

/* A second session holding an exclusive lock on venues (catalogue reads of venues wait
 * for it), and its COMMIT. */
PGconn *rat_lock_venues(const char *conninfo);
void rat_unlock_venues(PGconn *c);

#endif
