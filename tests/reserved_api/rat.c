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

#define START_MS     30000 /* migrations on a fresh database included */
#define MAX_ARGS     32
#define IO_TIMEOUT_S 10

void rat_dump_log(const char *path)
{
    char cmd[700];
    fprintf(stderr, "---- tail of %s ----\n", path);
    fflush(stderr);
    snprintf(cmd, sizeof cmd, "tail -n 40 '%s' 1>&2", path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

void rat_spawn(rat_server *s, const char *conninfo, ...)
{
    char *argv[MAX_ARGS];
    char listen[64];
    size_t n = 0;
    va_list ap;

    memset(s, 0, sizeof(*s));
    s->port = th_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof s->log, "%s/reserved-%d.log", th_tmpdir(), s->port);
    argv[n++] = (char *)th_bin("reserved");
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--database";
    argv[n++] = (char *)conninfo;
    va_start(ap, conninfo);
    for (char *a = va_arg(ap, char *); a && n < MAX_ARGS - 2; a = va_arg(ap, char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    s->pid = th_spawn(argv, s->log);
    ck_assert_msg(s->pid > 0, "cannot spawn reserved");
}

void rat_wait_up(rat_server *s)
{
    if (!th_wait_port(s->port, START_MS)) {
        rat_dump_log(s->log);
        ck_abort_msg("reserved did not listen on %d", s->port);
    }
}

void rat_start(rat_server *s, const char *conninfo)
{
    rat_spawn(s, conninfo, "--lock-mode", "db", "--log-level", "debug", NULL);
    rat_wait_up(s);
}

void rat_stop_clean(rat_server *s)
{
    int status = th_stop(s->pid, true, 15000);
    if (!(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rat_dump_log(s->log);
    ck_assert_msg(status != -1, "reserved did not exit after SIGTERM");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "reserved exit status 0x%x (non-zero: error or leak report)", status);
    s->pid = 0;
}

int rat_run_cli(char *out, size_t outlen, ...)
{
    char *argv[MAX_ARGS];
    char log[512];
    size_t n = 0;
    va_list ap;
    argv[n++] = (char *)th_bin("reserved");
    va_start(ap, outlen);
    for (char *a = va_arg(ap, char *); a && n < MAX_ARGS - 1; a = va_arg(ap, char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/cli-%d.log", th_tmpdir(), th_free_port());
    pid_t pid = th_spawn(argv, log);
    int st = th_wait_exit(pid, 10000);
    ck_assert_msg(st != -1, "reserved %s did not exit", argv[1]);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void rat_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

void rat_pg_start(th_pg *pg)
{
    ck_assert_msg(th_pg_start(pg), "cannot start PostgreSQL");
}

void rat_req(const rat_server *s, const char *method, const char *path, const char *body,
             fpt_resp *r)
{
    char ctype[128];
    fpt_request(s->port, method, path, NULL, body, r);
    ck_assert_msg(r->status != 0, "%s %s: no response", method, path);
    ck_assert_msg(fpt_header(r, "Content-Type", ctype, sizeof ctype), "%s %s: no Content-Type",
                  method, path);
    if (strcmp(path, "/metrics") != 0) {
        ck_assert_msg(strcmp(ctype, "application/json") == 0, "%s %s: Content-Type %s", method,
                      path, ctype);
        ck_assert_msg(r->json != NULL, "%s %s: body is not JSON: %s", method, path, r->body);
    }
}

void rat_req_ok(const rat_server *s, const char *method, const char *path, const char *body,
                int want, fpt_resp *r)
{
    rat_req(s, method, path, body, r);
    ck_assert_msg(r->status == want, "%s %s: want %d, got %d: %s", method, path, want, r->status,
                  r->body);
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        ck_assert_msg(n > 0, "write to reserved failed");
        p += n;
        len -= (size_t)n;
    }
}

void rat_req_raw(const rat_server *s, const char *method, const char *path, const char *headers,
                 const char *body, fpt_resp *r)
{
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    char head[2048];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "cannot connect to %d",
                  s->port);
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, s->port, headers ? headers : "", body ? strlen(body) : 0);
    ck_assert(n > 0 && (size_t)n < sizeof head);
    write_all(fd, head, (size_t)n);
    if (body)
        write_all(fd, body, strlen(body));
    fpt_recv(fd, r);
}

void rat_post_created(const rat_server *s, const char *path, json_t *body, fpt_resp *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    rat_req_ok(s, "POST", path, text, 201, r);
    free(text);
    json_decref(body);
}

long long rat_post_id(const rat_server *s, const char *path, json_t *body)
{
    fpt_resp r;
    rat_post_created(s, path, body, &r);
    long long id = rat_jint(r.json, "id");
    fpt_resp_free(&r);
    return id;
}

long long rat_make_perf(const rat_server *s, long long venue, const char *title, const char *starts,
                        long long normal, long long vip, fpt_resp *out)
{
    fpt_resp r;
    rat_post_created(s, "/performances",
                     json_pack("{s:I,s:s,s:s,s:I,s:I}", "venueId", (json_int_t)venue, "title",
                               title, "startsAt", starts, "normalPrice", (json_int_t)normal,
                               "vipPrice", (json_int_t)vip),
                     &r);
    long long id = rat_jint(r.json, "id");
    if (out)
        *out = r;
    else
        fpt_resp_free(&r);
    return id;
}

long long rat_make_user(const rat_server *s, const char *name, const char *email)
{
    return rat_post_id(s, "/users", json_pack("{s:s,s:s}", "name", name, "email", email));
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
