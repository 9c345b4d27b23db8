/*
 * cm_log: level-gated logging to stderr, one line per message:
 *   2026-11-24T02:18:34.123Z lockd[1234] INFO <message>
 * The level check happens in the macro, so disabled levels cost one compare.
 * Not thread-safe by design: each process runs one event loop.
 */
#ifndef CM_LOG_H
#define CM_LOG_H

#include "cm_core.h"

typedef enum cm_log_level {
    CM_LOG_ERROR = 0,
    CM_LOG_WARN = 1,
    CM_LOG_INFO = 2,
    CM_LOG_DEBUG = 3,
} cm_log_level;

extern int cm_log_current_level;

/* Program name shown in each line; the string is borrowed and must outlive logging. */
void cm_log_init(const char *progname, cm_log_level level);
void cm_log_set_level(cm_log_level level);
/* "error"|"warn"|"info"|"debug" (case-insensitive) -> level. CM_ERR on anything else. */
cm_rc cm_log_level_parse(const char *text, cm_log_level *out) CM_MUSTCHECK;
const char *cm_log_level_name(cm_log_level level);

void cm_log_write(cm_log_level level, const char *fmt, ...) CM_PRINTF(2, 3);
/* Logs with file:line and exits(1). For broken invariants and start-up failures only. */
void cm_log_fatal_at(const char *file, int line, const char *fmt, ...) CM_PRINTF(3, 4)
    __attribute__((noreturn));

#define cm_log_at(lvl, ...)                                                                        \
    do {                                                                                           \
        if ((int)(lvl) <= cm_log_current_level)                                                    \
            cm_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)
#define log_error(...) cm_log_at(CM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  cm_log_at(CM_LOG_WARN, __VA_ARGS__)
#define log_info(...)  cm_log_at(CM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) cm_log_at(CM_LOG_DEBUG, __VA_ARGS__)
#define fatal(...)     cm_log_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
