/*
 * rat: see rat.h. Blocking and single-threaded: each test is a sequential story told to
 * real reserved processes.
 */
#include "rat.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void rat_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

void rat_pg_start(th_pg *pg)
{
    ck_assert_msg(th_pg_shared(pg), "cannot start PostgreSQL");
}

void rat_req(const th_reserved *s, const char *method, const char *path, const char *body,
             th_http_resp *r)
{
    char ctype[128];
    th_http_request(s->port, method, path, NULL, body, r);
    ck_assert_msg(r->status != 0, "%s %s: no response", method, path);
    ck_assert_msg(th_http_header(r, "Content-Type", ctype, sizeof ctype), "%s %s: no Content-Type",
                  method, path);
    if (strcmp(path, "/metrics") != 0) {
        ck_assert_msg(strcmp(ctype, "application/json") == 0, "%s %s: Content-Type %s", method,
                      path, ctype);
        ck_assert_msg(r->json != NULL, "%s %s: body is not JSON: %s", method, path, r->body);
    }
}

void rat_req_ok(const th_reserved *s, const char *method, const char *path, const char *body,
                int want, th_http_resp *r)
{
    rat_req(s, method, path, body, r);
    ck_assert_msg(r->status == want, "%s %s: want %d, got %d: %s", method, path, want, r->status,
                  r->body);
}

void rat_req_raw(const th_reserved *s, const char *method, const char *path, const char *headers,
                 const char *body, th_http_resp *r)
{
    th_http_request_raw(s->port, method, path, headers, body, r);
}

void rat_post_created(const th_reserved *s, const char *path, json_t *body, th_http_resp *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    rat_req_ok(s, "POST", path, text, 201, r);
    free(text);
    json_decref(body);
}

long long rat_post_id(const th_reserved *s, const char *path, json_t *body)
{
    th_http_resp r;
    rat_post_created(s, path, body, &r);
    long long id = rat_jint(r.json, "id");
    th_http_resp_free(&r);
    return id;
}

long long rat_make_perf(const th_reserved *s, long long venue, const char *title,
                        const char *starts, long long normal, long long vip, th_http_resp *out)
{
    th_http_resp r;
    rat_post_created(s, "/performances",
                     json_pack("{s:I,s:s,s:s,s:I,s:I}", "venueId", (json_int_t)venue, "title",
                               title, "startsAt", starts, "normalPrice", (json_int_t)normal,
                               "vipPrice", (json_int_t)vip),
                     &r);
    long long id = rat_jint(r.json, "id");
    if (out)
        *out = r;
    else
        th_http_resp_free(&r);
    return id;
}

long long rat_make_user(const th_reserved *s, const char *name, const char *email)
{
    return rat_post_id(
        s, "/users",
        json_pack("{s:s,s:s,s:s}", "name", name, "email", email, "password", TH_PASSWORD));
}

long long rat_jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "field %s is not an integer", k);
    return (long long)json_integer_value(v);
}

const char *rat_jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    ck_assert_msg(v != NULL, "field %s is not a string", k);
    return v;
}

PGconn *rat_lock_venues(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *res = PQexec(c, "BEGIN; LOCK TABLE venues IN ACCESS EXCLUSIVE MODE");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return c;
}

void rat_unlock_venues(PGconn *c)
{
    PGresult *res = PQexec(c, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(c);
}
