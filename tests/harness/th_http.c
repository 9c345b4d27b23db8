/*
 * th_http: see th_http.h. Blocking and single-threaded on purpose: each test is a
 * sequential story told to real server processes; the batch is the one place where many
 * requests are in flight, and it still runs on the test's own thread.
 */
#include "th_http.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "th.h"

#define TH_HTTP_IO_TIMEOUT_S 10

/* The default bearer token (th_http_set_bearer): "" = none. A token is 64 hex digits;
 * the room is for tests that send longer or odd ones on purpose. */
static char bearer[512];

void th_http_set_bearer(const char *token)
{
    snprintf(bearer, sizeof bearer, "%s", token != NULL ? token : "");
}

const char *th_http_bearer(void)
{
    return bearer[0] != '\0' ? bearer : NULL;
}

/* The Authorization line of the default bearer ("" when none) into out. */
static const char *auth_line(char *out, size_t outlen)
{
    if (bearer[0] == '\0')
        return "";
    snprintf(out, outlen, "Authorization: Bearer %s\r\n", bearer);
    return out;
}

/* True when the caller's own header lines already say who is calling. */
static bool has_auth(const char *headers)
{
    for (const char *h = headers; h != NULL && *h != '\0';) {
        if (strncasecmp(h, "Authorization:", 14) == 0)
            return true;
        h = strstr(h, "\n");
        h = h != NULL ? h + 1 : NULL;
    }
    return false;
}

/* Splits a whole response: status line, body, JSON. raw may be NULL (no answer). */
static void parse(th_http_resp *r, char *raw)
{
    memset(r, 0, sizeof(*r));
    r->raw = raw;
    r->body = "";
    if (raw == NULL)
        return;
    if (sscanf(raw, "HTTP/1.%*d %d", &r->status) != 1)
        r->status = 0;
    char *end = strstr(raw, "\r\n\r\n");
    r->body = end ? end + 4 : raw + strlen(raw);
    r->json = json_loads(r->body, 0, NULL);
}

static int connect_to(int port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!nonblock) {
        struct timeval tv = {.tv_sec = TH_HTTP_IO_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

int th_http_send(int port, const char *method, const char *path, const char *key, const char *body,
                 size_t body_len)
{
    char head[2048], auth[600];
    int fd = connect_to(port, false);
    if (fd < 0)
        return -1;
    int n =
        snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
                 "%s%s%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 method, path, port, auth_line(auth, sizeof auth), key ? "Idempotency-Key: " : "",
                 key ? key : "", key ? "\r\n" : "", body ? body_len : 0);
    if (n < 0 || (size_t)n >= sizeof head || !write_all(fd, head, (size_t)n) ||
        (body && !write_all(fd, body, body_len))) {
        close(fd);
        return -1;
    }
    return fd;
}

void th_http_recv(int fd, th_http_resp *r)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
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
    parse(r, buf);
}

void th_http_finish(int fd, th_http_resp *r, int timeout_ms)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    while (th_now_ms() < end && len < cap - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    close(fd);
    parse(r, buf);
}

void th_http_request(int port, const char *method, const char *path, const char *key,
                     const char *body, th_http_resp *r)
{
    int fd = th_http_send(port, method, path, key, body, body ? strlen(body) : 0);
    ck_assert_msg(fd >= 0, "cannot send %s %s to port %d", method, path, port);
    th_http_recv(fd, r);
}

void th_http_request_raw(int port, const char *method, const char *path, const char *headers,
                         const char *body, th_http_resp *r)
{
    char head[4096], auth[600];
    int fd = connect_to(port, false);
    ck_assert_msg(fd >= 0, "cannot connect to %d", port);
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, port, has_auth(headers) ? "" : auth_line(auth, sizeof auth),
                     headers ? headers : "", body ? strlen(body) : 0);
    ck_assert(n > 0 && (size_t)n < sizeof head);
    ck_assert_msg(write_all(fd, head, (size_t)n), "write to %d failed", port);
    if (body)
        ck_assert_msg(write_all(fd, body, strlen(body)), "write to %d failed", port);
    th_http_recv(fd, r);
}

void th_http_request_as(int port, const char *token, const char *method, const char *path,
                        const char *key, const char *body, th_http_resp *r)
{
    char saved[sizeof bearer];
    memcpy(saved, bearer, sizeof bearer);
    th_http_set_bearer(token);
    th_http_request(port, method, path, key, body, r);
    memcpy(bearer, saved, sizeof bearer);
}

void th_http_pay(int port, const char *key, long long amount, const char *reference,
                 th_http_resp *r)
{
    json_t *o = json_pack("{s:I,s:s,s:s}", "amount", (json_int_t)amount, "currency", "KRW",
                          "reference", reference);
    char *body = json_dumps(o, JSON_COMPACT);
    ck_assert_ptr_nonnull(body);
    th_http_request(port, "POST", "/payments", key, body, r);
    free(body);
    json_decref(o);
}

char *th_http_build(const char *method, const char *path, const char *key, const char *body,
                    size_t *len)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    char auth[600];
    size_t cap = blen + strlen(path) + (key != NULL ? strlen(key) : 0) + 1200;
    char *req = malloc(cap);
    ck_assert_ptr_nonnull(req);
    int n =
        snprintf(req, cap,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                 "Content-Type: application/json\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                 method, path, auth_line(auth, sizeof auth), key != NULL ? "Idempotency-Key: " : "",
                 key != NULL ? key : "", key != NULL ? "\r\n" : "", blen);
    memcpy(req + n, body != NULL ? body : "", blen);
    *len = (size_t)n + blen;
    return req;
}

/* One poll pass's work for a call that is ready: send more, or read what came. */
static void batch_step(th_http_call *c)
{
    if (c->sent < c->len) {
        ssize_t w = send(c->fd, c->req + c->sent, c->len - c->sent, MSG_NOSIGNAL);
        if (w > 0)
            c->sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            c->done = true;
        return;
    }
    if (c->bcap - c->blen < 4096) {
        c->bcap = c->bcap * 2 + 8192;
        c->buf = realloc(c->buf, c->bcap);
        ck_assert_ptr_nonnull(c->buf);
    }
    ssize_t r = recv(c->fd, c->buf + c->blen, c->bcap - c->blen - 1, 0);
    if (r > 0)
        c->blen += (size_t)r;
    else if (r == 0 || (errno != EAGAIN && errno != EINTR))
        c->done = true;
}

void th_http_batch(th_http_call *calls, size_t n, int timeout_ms)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    ck_assert_ptr_nonnull(pfd);
    for (size_t i = 0; i < n; i++) {
        calls[i].fd = connect_to(calls[i].port, true);
        calls[i].done = calls[i].fd < 0;
    }
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++) {
            pfd[i].fd = calls[i].done ? -1 : calls[i].fd;
            pfd[i].events = calls[i].sent < calls[i].len ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
            left += !calls[i].done;
        }
        if (left == 0 || th_now_ms() >= end)
            break;
        if (poll(pfd, n, 100) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < n; i++)
            if (!calls[i].done && pfd[i].revents != 0)
                batch_step(&calls[i]);
    }
    for (size_t i = 0; i < n; i++) {
        th_http_call *c = &calls[i];
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        if (c->buf != NULL)
            c->buf[c->blen] = '\0';
        parse(&c->resp, c->buf);
        c->buf = NULL;
        free(c->req);
        c->req = NULL;
    }
    free(pfd);
}

void th_http_request_ms(int port, const char *method, const char *path, const char *key,
                        const char *body, int timeout_ms, th_http_resp *r)
{
    th_http_call c = {.port = port};
    c.req = th_http_build(method, path, key, body, &c.len);
    th_http_batch(&c, 1, timeout_ms);
    *r = c.resp;
}

bool th_http_header(const th_http_resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line = r->raw ? strstr(r->raw, "\r\n") : NULL;
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

const char *th_http_str(const th_http_resp *r, const char *field)
{
    const char *s = json_string_value(json_object_get(r->json, field));
    return s ? s : "";
}

long long th_http_int(const th_http_resp *r, const char *field)
{
    json_t *v = json_object_get(r->json, field);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

const char *th_http_error_code(const th_http_resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s ? s : "";
}

void th_http_resp_free(th_http_resp *r)
{
    json_decref(r->json);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}
