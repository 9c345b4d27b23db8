/*
 * cx_mem: exiting allocators of the checker (see cx_mem.h).
 */
#include "cx_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fprintf(stderr, "chaos_check: out of memory\n");
    exit(2);
}

void *cx_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        oom();
    return p;
}

void *cx_xrealloc(void *p, size_t size)
{
    void *np = realloc(p, size);
    if (!np)
        oom();
    return np;
}

char *cx_xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        oom();
    return d;
}
