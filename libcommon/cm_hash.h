/*
 * cm_hash: the project's one hash table. Keys are either 64-bit integers or
 * NUL-terminated strings (chosen when the table is made); values are non-NULL pointers.
 *
 * Ownership: the table owns its slot array and nothing else. Values belong to the
 * caller: the table never frees or reads them. u64 keys are copied. String keys are
 * BORROWED: the caller keeps the bytes alive and unchanged while the entry is in the
 * table; the usual way is a key that is a field of its value (a resource's name), so a
 * value is removed before it is freed. cm_hash_put of a present string key replaces
 * both the value and the borrowed key pointer.
 *
 * Open addressing with linear probing over a power-of-two slot array, at most half full
 * (live + deleted slots). Deleting leaves a marker, so no entry ever moves except when
 * an insert (cm_hash_put or cm_hash_reserve) rebuilds the array. Hence:
 *  - while iterating (cm_hash_next) any entry may be deleted, the one just returned
 *    included; inserting while iterating is not allowed (it may rebuild the array);
 *  - cm_hash_reserve(h, n) makes room so the next n inserts of new keys cannot fail
 *    (for callers that must not fail half-way through an update).
 * Not thread-safe: one table belongs to one event loop.
 */
#ifndef CM_HASH_H
#define CM_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

typedef struct cm_hash cm_hash;

typedef enum cm_hash_kind {
    CM_HASH_U64, /* keys are uint64_t (ids); use the _u64 functions */
    CM_HASH_STR, /* keys are borrowed NUL-terminated strings; use the _str functions */
} cm_hash_kind;

/* An empty table; NULL when out of memory. */
cm_hash *cm_hash_new(cm_hash_kind kind) CM_MUSTCHECK;
/* Frees the table (NULL is fine); the values are not touched: free them first. */
void cm_hash_free(cm_hash *h);
/* Live entries. */
size_t cm_hash_count(const cm_hash *h);

/* The value of key, or NULL. */
void *cm_hash_get_u64(const cm_hash *h, uint64_t key);
void *cm_hash_get_str(const cm_hash *h, const char *key);
/* Inserts key -> val (val != NULL), or replaces the value of a present key. CM_ERR only
 * when out of memory while growing; the table is then unchanged. */
cm_rc cm_hash_put_u64(cm_hash *h, uint64_t key, void *val) CM_MUSTCHECK;
cm_rc cm_hash_put_str(cm_hash *h, const char *key, void *val) CM_MUSTCHECK;
/* Removes key; returns its value, or NULL when it was absent. */
void *cm_hash_del_u64(cm_hash *h, uint64_t key);
void *cm_hash_del_str(cm_hash *h, const char *key);
/* Makes room for n more keys: the next n puts of new keys cannot fail. */
cm_rc cm_hash_reserve(cm_hash *h, size_t n) CM_MUSTCHECK;

/* Iteration in slot order (no particular order of keys):
 *     size_t pos = 0;
 *     void *v;
 *     while ((v = cm_hash_next(h, &pos, &u64_key, &str_key)) != NULL) ...
 * Returns the next live value at or after *pos and moves *pos past it; NULL at the end.
 * The key goes to whichever of u64_key / str_key fits the table's kind (each may be
 * NULL). Entries may be deleted meanwhile (see above), never inserted. */
void *cm_hash_next(const cm_hash *h, size_t *pos, uint64_t *u64_key, const char **str_key);

#endif
