/*
 * cm_strbuf: a growable NUL-terminated string. Owns its data buffer; an
 * allocation failure is fatal.
 */
#include "cm_strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"

/* Makes room for extra more bytes plus the NUL. */
static void strbuf_reserve(cm_strbuf *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap != 0 ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(sb->data, cap);
    if (p == NULL)
        fatal("out of memory growing a string to %zu bytes", cap);
    sb->data = p;
    sb->cap = cap;
}

void cm_strbuf_append(cm_strbuf *sb, const char *s, size_t len)
{
    strbuf_reserve(sb, len);
    if (len > 0)
        memcpy(sb->data + sb->len, s, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

void cm_strbuf_vprintf(cm_strbuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        fatal("bad format string '%s'", fmt);
    strbuf_reserve(sb, (size_t)n);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void cm_strbuf_printf(cm_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_strbuf_vprintf(sb, fmt, ap);
    va_end(ap);
}

const char *cm_strbuf_str(const cm_strbuf *sb)
{
    return sb->data != NULL ? sb->data : "";
}

void cm_strbuf_reset(cm_strbuf *sb)
{
    sb->len = 0;
    if (sb->data != NULL)
        sb->data[0] = '\0';
}

void cm_strbuf_free(cm_strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}
