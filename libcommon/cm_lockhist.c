/*
 * cm_lockhist: lock histories as JSON lines (contract and the choice of plain O_APPEND
 * writes in cm_lockhist.h). Owns the file descriptor, the taps that connect lock clients to
 * it and the formatting of a line.
 */
#include "cm_lockhist.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_log.h"

#define LH_SRC_MAX  96
#define LH_SESS_MAX 96

typedef struct lh_tap {
    cm_lockhist *h;
    char client_id[LH_SESS_MAX / 2];
    struct lh_tap *next;
} lh_tap;

struct cm_lockhist {
    int fd;
    char src[LH_SRC_MAX];
    char path[256];
    uint64_t lines;
    uint64_t errors;
    lh_tap *taps;
};

static const char *const ev_names[] = {
    [CM_LOCK_EV_GRANT] = "grant",
    [CM_LOCK_EV_RENEW] = "renew",
    [CM_LOCK_EV_RELEASE] = "release",
    [CM_LOCK_EV_LOST] = "lost",
};

const char *cm_lockhist_ev_name(cm_lock_event_kind kind)
{
    return (size_t)kind < CM_ARRAY_LEN(ev_names) ? ev_names[kind] : "?";
}

/* Appends s as the inside of a JSON string: LOCKP words are printable ASCII, but a quote
 * or a backslash in a resource must not break the line. */
static size_t lh_put_str(char *buf, size_t cap, size_t pos, const char *s)
{
    for (; *s != '\0' && pos + 2 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            buf[pos++] = '\\';
        buf[pos++] = ch < 0x20 ? '?' : (char)ch;
    }
    return pos;
}

static size_t lh_put(char *buf, size_t cap, size_t pos, const char *fmt, ...) CM_PRINTF(4, 5);
static size_t lh_put(char *buf, size_t cap, size_t pos, const char *fmt, ...)
{
    va_list ap;
    if (pos >= cap)
        return pos;
    va_start(ap, fmt);
    int n = vsnprintf(buf + pos, cap - pos, fmt, ap);
    va_end(ap);
    return n < 0 ? pos : CM_MIN(pos + (size_t)n, cap - 1);
}

size_t cm_lockhist_format(char *buf, size_t cap, const char *src, const char *sess,
                          const cm_lock_event *ev)
{
    size_t pos = 0;
    if (cap < 4)
        return 0;
    cap -= 2; /* room for the closing brace and the newline, whatever comes before */
    pos = lh_put(buf, cap, pos, "{\"src\":\"");
    pos = lh_put_str(buf, cap, pos, src);
    pos = lh_put(buf, cap, pos, "\",\"res\":\"");
    pos = lh_put_str(buf, cap, pos, ev->resource);
    pos = lh_put(buf, cap, pos, "\",\"ev\":\"%s\",\"sess\":\"", cm_lockhist_ev_name(ev->kind));
    pos = lh_put_str(buf, cap, pos, sess);
    pos = lh_put(buf, cap, pos, "\",\"fence\":\"%" PRIu64 "\",\"t_us\":%" PRIu64, ev->fence,
                 ev->t_us);
    /* a lost line carries the deadline that ended the lock (it was lost at or after it: a
     * holder whose loop ran late, a stopped process), which the checker needs to tell a late
     * LOST from a holder that knew by its own deadline; a loss before the deadline has none */
    if (ev->kind == CM_LOCK_EV_GRANT || ev->kind == CM_LOCK_EV_RENEW ||
        (ev->kind == CM_LOCK_EV_LOST && ev->deadline_us != 0 && ev->deadline_us <= ev->t_us))
        pos = lh_put(buf, cap, pos, ",\"deadline_us\":%" PRIu64, ev->deadline_us);
    if (ev->kind == CM_LOCK_EV_LOST) {
        pos = lh_put(buf, cap, pos, ",\"reason\":\"");
        pos = lh_put_str(buf, cap, pos, ev->reason != NULL ? ev->reason : "");
        pos = lh_put(buf, cap, pos, "\"");
    }
    buf[pos++] = '}';
    buf[pos++] = '\n';
    buf[pos] = '\0';
    return pos;
}

void cm_lockhist_src_from_path(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 6 && strcmp(base + n - 6, ".jsonl") == 0)
        n -= 6;
    if (n > 6 && strncmp(base, "locks-", 6) == 0) { /* a name must remain */
        base += 6;
        n -= 6;
    }
    snprintf(out, outlen, "%.*s", (int)n, base);
}

cm_lockhist *cm_lockhist_open(const char *path, const char *src, char *err, size_t errlen)
{
    cm_lockhist *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (h->fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(h);
        return NULL;
    }
    snprintf(h->src, sizeof(h->src), "%s", src != NULL ? src : "");
    snprintf(h->path, sizeof(h->path), "%s", path);
    return h;
}

void cm_lockhist_close(cm_lockhist *h)
{
    if (h == NULL)
        return;
    while (h->taps != NULL) {
        lh_tap *t = h->taps;
        h->taps = t->next;
        free(t);
    }
    close(h->fd);
    free(h);
}

void cm_lockhist_record(cm_lockhist *h, const char *sess, const cm_lock_event *ev)
{
    char line[CM_LOCKHIST_LINE_MAX];
    size_t n = cm_lockhist_format(line, sizeof(line), h->src, sess, ev);
    ssize_t w;
    do
        w = write(h->fd, line, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) {
        h->lines++;
        return;
    }
    if (h->errors++ == 0)
        log_warn("lock history %s: a line could not be written (%s); counting, not stopping",
                 h->path, w < 0 ? strerror(errno) : "short write");
}

static void lh_on_event(void *arg, const cm_lock_event *ev)
{
    const lh_tap *t = arg;
    char sess[LH_SESS_MAX];
    if (t->client_id[0] != '\0')
        snprintf(sess, sizeof(sess), "%s/%s", t->client_id, ev->session);
    else
        snprintf(sess, sizeof(sess), "%s", ev->session);
    cm_lockhist_record(t->h, sess, ev);
}

cm_rc cm_lockhist_attach(cm_lockhist *h, cm_lockclient *c, const char *client_id)
{
    lh_tap *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return CM_ERR;
    t->h = h;
    snprintf(t->client_id, sizeof(t->client_id), "%s", client_id != NULL ? client_id : "");
    t->next = h->taps;
    h->taps = t;
    cm_lockclient_on_event(c, lh_on_event, t);
    return CM_OK;
}

uint64_t cm_lockhist_lines(const cm_lockhist *h)
{
    return h->lines;
}

uint64_t cm_lockhist_errors(const cm_lockhist *h)
{
    return h->errors;
}
