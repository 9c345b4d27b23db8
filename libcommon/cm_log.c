/*
 * cm_log: level-gated logging to stderr. Owns the process-wide log level and
 * program name. Each line is built in one buffer and written with a single
 * write(2) so lines from several processes sharing stderr never interleave.
 */
#include "cm_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cm_time.h"

int cm_log_current_level = CM_LOG_INFO;
static const char *log_progname = "prog";

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void cm_log_init(const char *progname, cm_log_level level)
{
    if (progname != NULL) {
        const char *slash = strrchr(progname, '/');
        log_progname = slash != NULL ? slash + 1 : progname;
    }
    cm_log_current_level = (int)level;
}

void cm_log_set_level(cm_log_level level)
{
    cm_log_current_level = (int)level;
}

cm_rc cm_log_level_parse(const char *text, cm_log_level *out)
{
    if (text == NULL)
        return CM_ERR;
    for (size_t i = 0; i < CM_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (cm_log_level)i;
            return CM_OK;
        }
    }
    return CM_ERR;
}

const char *cm_log_level_name(cm_log_level level)
{
    if ((int)level < 0 || (size_t)level >= CM_ARRAY_LEN(level_names))
        return "UNKNOWN";
    return level_names[level];
}

/* Builds "<stamp> prog[pid] LEVEL " + message + "\n" and writes it at once.
 * A message longer than the buffer is cut, never split over two writes. */
static void log_vwrite(const char *level, const char *prefix, const char *fmt, va_list ap)
{
    char line[4096];
    uint64_t wall = cm_wall_ms();
    time_t secs = (time_t)(wall / 1000);
    struct tm tm;
    size_t pos;
    int n;
    int saved_errno = errno;

    gmtime_r(&secs, &tm);
    pos = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + pos, sizeof(line) - pos, ".%03uZ %s[%ld] %s %s", (unsigned)(wall % 1000),
                 log_progname, (long)getpid(), level, prefix);
    if (n > 0)
        pos += CM_MIN((size_t)n, sizeof(line) - pos - 1);
    n = vsnprintf(line + pos, sizeof(line) - pos, fmt, ap);
    if (n > 0)
        pos += CM_MIN((size_t)n, sizeof(line) - pos - 1);
    /* Room for the LF is kept by the -1 above: pos <= sizeof(line) - 1. */
    line[pos++] = '\n';
    ssize_t w;
    do {
        w = write(STDERR_FILENO, line, pos);
    } while (w < 0 && errno == EINTR);
    errno = saved_errno;
}

void cm_log_write(cm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(cm_log_level_name(level), "", fmt, ap);
    va_end(ap);
}

void cm_log_fatal_at(const char *file, int line, const char *fmt, ...)
{
    char prefix[256];
    va_list ap;
    snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
    va_start(ap, fmt);
    log_vwrite("FATAL", prefix, fmt, ap);
    va_end(ap);
    exit(1);
}
