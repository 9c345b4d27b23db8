/*
 * fpt: see fpt.h. Blocking and single-threaded on purpose: each test is a sequential
 * story told to a real fakepay process.
 */
#include "fpt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th.h"

#define FPT_MAX_ARGS     32
#define FPT_IO_TIMEOUT_S 10

void fpt_start(fpt_server *s, ...)
{
    char *argv[FPT_MAX_ARGS];
    char listen[64];
    size_t n = 0;
    va_list ap;

    memset(s, 0, sizeof(*s));
    s->port = th_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof s->log, "%s/fakepay-%d.log", th_tmpdir(), s->port);
    argv[n++] = (char *)th_bin("fakepay");
    argv[n++] = "--listen";
    argv[n++] = listen;
    va_start(ap, s);
    for (char *a = va_arg(ap, char *); a && n < FPT_MAX_ARGS - 1; a = va_arg(ap, char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    s->pid = th_spawn(argv, s->log);
    if (!th_wait_port(s->port, 5000)) {
        fpt_dump_log(s);
        ck_abort_msg("fakepay did not start on port %d", s->port);
    }
}

void fpt_dump_log(const fpt_server *s)
{
    char cmd[700];
    fprintf(stderr, "---- tail of %s ----\n", s->log);
    fflush(stderr);
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s' 1>&2", s->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

void fpt_stop_clean(fpt_server *s)
{
    int status = th_stop(s->pid, true, 5000);
    if (!(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fpt_dump_log(s);
    ck_assert_msg(status != -1, "fakepay did not exit after SIGTERM");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "fakepay exit status 0x%x (non-zero: error or leak report)", status);
    s->pid = 0;
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

int fpt_send(int port, const char *method, const char *path, const char *key, const char *body,
             size_t body_len)
{
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = FPT_IO_TIMEOUT_S};
    char head[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto fail;
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "%s%s%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, port, key ? "Idempotency-Key: " : "", key ? key : "",
                     key ? "\r\n" : "", body ? body_len : 0);
    if (n < 0 || (size_t)n >= sizeof head)
        goto fail;
    if (!write_all(fd, head, (size_t)n) || (body && !write_all(fd, body, body_len)))
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

void fpt_recv(int fd, fpt_resp *r)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);

    memset(r, 0, sizeof(*r));
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    r->raw = buf;
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        r->status = 0;
    char *end = strstr(buf, "\r\n\r\n");
    r->body = end ? end + 4 : buf + len;
    r->json = json_loads(r->body, 0, NULL);
}

void fpt_request(int port, const char *method, const char *path, const char *key, const char *body,
                 fpt_resp *r)
{
    int fd = fpt_send(port, method, path, key, body, body ? strlen(body) : 0);
    ck_assert_msg(fd >= 0, "cannot send %s %s to port %d", method, path, port);
    fpt_recv(fd, r);
}

void fpt_pay(int port, const char *key, long long amount, const char *reference, fpt_resp *r)
{
    json_t *o = json_pack("{s:I,s:s,s:s}", "amount", (json_int_t)amount, "currency", "KRW",
                          "reference", reference);
    char *body = json_dumps(o, JSON_COMPACT);
    ck_assert_ptr_nonnull(body);
    fpt_request(port, "POST", "/payments", key, body, r);
    free(body);
    json_decref(o);
}

bool fpt_header(const fpt_resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(r->raw, "\r\n");
    while (line && line + 2 < r->body) {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vlen = e ? (size_t)(e - v) : strlen(v);
            snprintf(out, outlen, "%.*s", (int)vlen, v);
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

const char *fpt_str(const fpt_resp *r, const char *field)
{
    const char *s = json_string_value(json_object_get(r->json, field));
    return s ? s : "";
}

long long fpt_int(const fpt_resp *r, const char *field)
{
    json_t *v = json_object_get(r->json, field);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

const char *fpt_error_code(const fpt_resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s ? s : "";
}

void fpt_resp_free(fpt_resp *r)
{
    json_decref(r->json);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

static void fpt_teardown(void)
{
    th_stop_all();
}

int fpt_main(const char *suite, const fpt_case *cases, size_t n, double timeout_s)
{
    Suite *s = suite_create(suite);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_unchecked_fixture(tc, NULL, fpt_teardown);
        tcase_set_timeout(tc, timeout_s);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    int ran = srunner_ntests_run(sr);
    srunner_free(sr);
    th_stop_all();
    /* A CK_RUN_CASE that names no case runs nothing: that must not pass silently. */
    return failed == 0 && ran > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
