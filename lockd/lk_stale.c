/*
 * lk_stale: the stale-token list of one master (see lk_stale.h).
 */
#include "lk_stale.h"

#include <stdlib.h>
#include <string.h>

bool lk_stale_add(lk_stale *l, const char *resource, const char *token)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        lk_stale_entry *p = cap <= LK_STALE_MAX ? realloc(l->v, cap * sizeof *p) : NULL;
        if (p == NULL)
            return false;
        l->v = p;
        l->cap = cap;
    }
    size_t rlen = strlen(resource), tlen = strlen(token);
    char *buf = malloc(rlen + tlen + 2);
    if (buf == NULL)
        return false;
    memcpy(buf, resource, rlen + 1);
    memcpy(buf + rlen + 1, token, tlen + 1);
    l->v[l->n++] = (lk_stale_entry){.resource = buf, .token = buf + rlen + 1};
    return true;
}

void lk_stale_drain(lk_stale *l, void (*fn)(void *arg, const char *resource, const char *token),
                    void *arg)
{
    for (size_t k = 0; k < l->n; k++) {
        fn(arg, l->v[k].resource, l->v[k].token);
        free(l->v[k].resource);
    }
    l->n = 0;
}

void lk_stale_clear(lk_stale *l)
{
    for (size_t k = 0; k < l->n; k++)
        free(l->v[k].resource);
    free(l->v);
    *l = (lk_stale){0};
}
