/*
 * cx_mem: allocation for the chaos checker, a batch tool: running out of memory ends the
 * run (exit 2, inputs unreadable) instead of threading NULL checks through every check.
 */
#ifndef CX_MEM_H
#define CX_MEM_H

#include <stddef.h>

/* calloc of at least one element; exits on failure. */
void *cx_xcalloc(size_t n, size_t size);
/* realloc; exits on failure. */
void *cx_xrealloc(void *p, size_t size);
/* strdup, NULL for NULL; exits on failure. */
char *cx_xstrdup(const char *s);

#endif
