/*
 * cx_history_writer: the history writer and op budget of chaos_load (see the header).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_log.h"
#include "cm_time.h"
#include "cx_history_writer.h"

struct cx_hwriter {
    int fd;
    uint64_t epoch_ms;
    uint64_t max_ops;
    uint64_t started;
    bool stopping;
    uint64_t ok, failed, unknown, write_errors;
};

cx_hwriter *cx_hwriter_open(const char *path, uint64_t epoch_ms, uint64_t max_ops, char *err,
                            size_t errlen)
{
    cx_hwriter *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (h->fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(h);
        return NULL;
    }
    h->epoch_ms = epoch_ms;
    h->max_ops = max_ops;
    return h;
}

void cx_hwriter_close(cx_hwriter *h)
{
    if (!h)
        return;
    if (h->fd >= 0)
        close(h->fd);
    free(h);
}

uint64_t cx_hwriter_now(const cx_hwriter *h)
{
    uint64_t now = cm_now_ms();
    return now > h->epoch_ms ? now - h->epoch_ms : 0;
}

bool cx_hwriter_begin(cx_hwriter *h, uint64_t *id)
{
    if (h->stopping || (h->max_ops && h->started >= h->max_ops))
        return false;
    *id = ++h->started;
    return true;
}

void cx_hwriter_stop(cx_hwriter *h)
{
    h->stopping = true;
}

bool cx_hwriter_stopping(const cx_hwriter *h)
{
    return h->stopping || (h->max_ops && h->started >= h->max_ops);
}

void cx_hwriter_write(cx_hwriter *h, json_t *rec)
{
    const char *outcome = json_string_value(json_object_get(rec, "outcome"));
    char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (outcome && strcmp(outcome, "ok") == 0)
        h->ok++;
    else if (outcome && strcmp(outcome, "fail") == 0)
        h->failed++;
    else
        h->unknown++;
    json_decref(rec); /* outcome pointed into it */
    if (!text) {
        h->write_errors++;
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: one write carries the whole line */
    ssize_t w = write(h->fd, text, n + 1);
    if (w != (ssize_t)(n + 1)) {
        h->write_errors++;
        log_error("history write failed: %s", w < 0 ? strerror(errno) : "short write");
    }
    free(text);
}

void cx_hwriter_summary(const cx_hwriter *h, char *buf, size_t len)
{
    snprintf(buf, len,
             "ops=%" PRIu64 " ok=%" PRIu64 " fail=%" PRIu64 " unknown=%" PRIu64
             " write_errors=%" PRIu64,
             h->ok + h->failed + h->unknown, h->ok, h->failed, h->unknown, h->write_errors);
}
