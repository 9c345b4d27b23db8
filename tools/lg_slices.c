/*
 * lg_slices: disjoint slices of a set of items, one per load client (see the header).
 * A slice's live items are the prefix of its range: removing one moves the last live
 * item into its place, so removal is a scan of one small slice and no memory moves.
 */
#include "lg_slices.h"

#include <stdlib.h>
#include <string.h>

cm_rc lg_slices_init(lg_slices *s, const uint32_t *items, uint32_t nitems, uint32_t n)
{
    memset(s, 0, sizeof(*s));
    if (n == 0)
        return CM_ERR;
    s->item = malloc((nitems ? nitems : 1) * sizeof(*s->item));
    s->start = calloc(n, sizeof(*s->start));
    s->left = calloc(n, sizeof(*s->left));
    if (s->item == NULL || s->start == NULL || s->left == NULL) {
        lg_slices_clear(s);
        return CM_ERR;
    }
    if (nitems > 0)
        memcpy(s->item, items, nitems * sizeof(*items));
    s->n = n;
    s->total = nitems;
    uint32_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = nitems / n + (i < nitems % n ? 1 : 0);
        s->start[i] = at;
        s->left[i] = len;
        at += len;
    }
    return CM_OK;
}

void lg_slices_clear(lg_slices *s)
{
    free(s->item);
    free(s->start);
    free(s->left);
    memset(s, 0, sizeof(*s));
}

uint32_t lg_slices_left(const lg_slices *s, uint32_t i)
{
    return i < s->n ? s->left[i] : 0;
}

uint32_t lg_slices_get(const lg_slices *s, uint32_t i, uint32_t j)
{
    return s->item[s->start[i] + j];
}

bool lg_slices_remove(lg_slices *s, uint32_t i, uint32_t item)
{
    if (i >= s->n)
        return false;
    uint32_t *base = &s->item[s->start[i]];
    for (uint32_t j = 0; j < s->left[i]; j++) {
        if (base[j] == item) {
            base[j] = base[--s->left[i]];
            base[s->left[i]] = item; /* the dead suffix keeps the item: nothing is lost */
            return true;
        }
    }
    return false;
}

uint32_t lg_slices_empty(const lg_slices *s)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n; i++)
        k += s->left[i] == 0;
    return k;
}
