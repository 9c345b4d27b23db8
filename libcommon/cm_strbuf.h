/*
 * cm_strbuf: a growable NUL-terminated string for building text (metrics pages,
 * INFO lines). Allocation failure is fatal (a daemon that cannot allocate a few
 * KB cannot do anything useful).
 */
#ifndef CM_STRBUF_H
#define CM_STRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include "cm_core.h"

typedef struct cm_strbuf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
} cm_strbuf;

/* clang-format 14 would break this braced initializer over 4 lines */
/* clang-format off */
#define CM_STRBUF_INIT {NULL, 0, 0}
/* clang-format on */

void cm_strbuf_printf(cm_strbuf *sb, const char *fmt, ...) CM_PRINTF(2, 3);
void cm_strbuf_vprintf(cm_strbuf *sb, const char *fmt, va_list ap);
void cm_strbuf_append(cm_strbuf *sb, const char *s, size_t len);
const char *cm_strbuf_str(const cm_strbuf *sb); /* "" when empty */
void cm_strbuf_reset(cm_strbuf *sb);            /* len = 0, keeps memory */
void cm_strbuf_free(cm_strbuf *sb);

#endif
