/*
 * cx_fetch: blocking HTTP GET (see cx_fetch.h). HTTP/1.0 so the server answers with a
 * plain body (no chunked encoding) and closes; the body is whatever follows the headers.
 */
#include "cx_fetch.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_addr.h"
#include "cm_time.h"

#define FETCH_MAX (256u << 20) /* a payment list of a long run stays far below this */

/* Splits base into host:port and a path prefix. */
static cm_rc split_base(const char *base, cm_addr *addr, char *prefix, size_t prefixlen, char *err,
                        size_t errlen)
{
    char hostport[CM_HOST_MAX + 16];
    if (strncmp(base, "http://", 7) == 0)
        base += 7;
    const char *slash = strchr(base, '/');
    size_t n = slash ? (size_t)(slash - base) : strlen(base);
    if (n >= sizeof(hostport)) {
        snprintf(err, errlen, "address too long");
        return CM_ERR;
    }
    memcpy(hostport, base, n);
    hostport[n] = '\0';
    snprintf(prefix, prefixlen, "%s", slash ? slash : "");
    n = strlen(prefix);
    if (n > 0 && prefix[n - 1] == '/')
        prefix[n - 1] = '\0';
    return cm_addr_parse(hostport, addr, err, errlen);
}

static int connect_to(const cm_addr *addr, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    int fd = -1;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", addr->port);
    int gai = getaddrinfo(addr->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s: %s", addr->host, gai_strerror(gai));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (poll(&p, 1, timeout_ms) != 1) {
            errno = ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            errno = soerr ? soerr : errno;
            goto fail;
        }
    }
    freeaddrinfo(res);
    return fd;
fail:
    snprintf(err, errlen, "connect %s:%d: %s", addr->host, addr->port, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

/* Waits for fd to be ready for events until the absolute deadline; false on timeout. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    uint64_t now = cm_now_ms();
    if (now >= deadline)
        return 0;
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, (int)(deadline - now)) == 1;
}

cm_rc cx_fetch_get(const char *base, const char *path, int timeout_ms, int *status, char **body,
                   char *err, size_t errlen)
{
    cm_addr addr;
    char prefix[512], req[2048];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = -1;
    uint64_t deadline = cm_now_ms() + (uint64_t)timeout_ms;

    *status = 0;
    *body = NULL;
    if (split_base(base, &addr, prefix, sizeof(prefix), err, errlen) != CM_OK)
        return CM_ERR;
    fd = connect_to(&addr, timeout_ms, err, errlen);
    if (fd < 0)
        return CM_ERR;
    int n = snprintf(req, sizeof(req), "GET %s%s HTTP/1.0\r\nHost: %s:%d\r\n\r\n", prefix, path,
                     addr.host, addr.port);
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                goto timeout;
            continue;
        }
        if (w < 0) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    for (;;) {
        if (cap - len < 65536) {
            size_t ncap = cap ? cap * 2 : 131072;
            char *nb = ncap <= FETCH_MAX ? realloc(buf, ncap) : NULL;
            if (!nb) {
                snprintf(err, errlen, "answer too large");
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EAGAIN || errno == EINTR) {
            if (!wait_fd(fd, POLLIN, deadline))
                goto timeout;
            continue;
        }
        snprintf(err, errlen, "recv: %s", strerror(errno));
        goto fail;
    }
    if (!buf)
        goto noanswer;
    buf[len] = '\0';
    int major, minor;
    if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, status) != 3)
        goto noanswer;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep)
        goto noanswer;
    sep += 4;
    memmove(buf, sep, len - (size_t)(sep - buf) + 1);
    *body = buf;
    close(fd);
    return CM_OK;
noanswer:
    snprintf(err, errlen, "no HTTP answer from %s:%d", addr.host, addr.port);
    goto fail;
timeout:
    snprintf(err, errlen, "timeout after %d ms talking to %s:%d", timeout_ms, addr.host, addr.port);
fail:
    *status = 0;
    free(buf);
    close(fd);
    return CM_ERR;
}
