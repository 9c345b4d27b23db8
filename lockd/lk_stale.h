/*
 * lk_stale: a bounded list of (resource, token) pairs: tokens of ours that a handoff could
 * not replace, or a release could not delete, on one Redis master while it was down, kept
 * until it is back (lk_redlock releases them then; past LK_STALE_MAX they are left to
 * their TTL). A plain container:
 * no I/O. The list owns copies of the strings; lk_stale_drain and lk_stale_clear free them.
 */
#ifndef LK_STALE_H
#define LK_STALE_H

#include <stdbool.h>
#include <stddef.h>

#define LK_STALE_MAX 4096

typedef struct lk_stale_entry {
    char *resource;    /* one allocation: "<resource>\0<token>\0" */
    const char *token; /* inside resource's allocation */
} lk_stale_entry;

typedef struct lk_stale {
    lk_stale_entry *v;
    size_t n, cap;
} lk_stale; /* zeroed = empty */

/* Copies the pair in; false when full or out of memory (nothing kept). */
bool lk_stale_add(lk_stale *l, const char *resource, const char *token);
/* Calls fn on every pair (borrowed for the call), then empties the list. */
void lk_stale_drain(lk_stale *l, void (*fn)(void *arg, const char *resource, const char *token),
                    void *arg);
/* Empties the list and frees its memory. */
void lk_stale_clear(lk_stale *l);

#endif
