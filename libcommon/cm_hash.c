/*
 * cm_hash: open addressing with linear probing (contract in cm_hash.h). A slot is empty
 * (val NULL), deleted (val == &cm_hash_deleted) or live. The full hash of every live key
 * is kept in its slot, so rebuilding never rehashes strings and most mismatches cost no
 * strcmp. Rebuilds size the array from the live count (at most a quarter full after
 * one), so a table that churns (insert, delete, insert, ...) does not grow without end
 * and its rebuilds stay amortized O(1).
 */
#include "cm_hash.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define HASH_MIN_SLOTS 16

typedef struct hash_slot {
    uint64_t hash;
    union {
        uint64_t u64;
        const char *str; /* borrowed */
    } key;
    void *val; /* NULL: empty; &cm_hash_deleted: deleted; else live */
} hash_slot;

struct cm_hash {
    cm_hash_kind kind;
    hash_slot *slots;
    size_t cap;     /* power of two */
    size_t live;    /* live entries */
    size_t deleted; /* deleted markers */
};

/* The marker of a deleted slot: an address no caller's value can have. */
static char cm_hash_deleted;
#define DELETED ((void *)&cm_hash_deleted)

static bool slot_live(const hash_slot *s)
{
    return s->val != NULL && s->val != DELETED;
}

/* splitmix64's finalizer: ids are often sequential, so every bit must count. */
static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* FNV-1a: short keys, and no adversary chooses them faster than we can answer. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool key_eq(const cm_hash *h, const hash_slot *s, uint64_t hash, uint64_t u64,
                   const char *str)
{
    if (s->hash != hash)
        return false;
    if (h->kind == CM_HASH_U64)
        return s->key.u64 == u64;
    /* u64 lookups pass str NULL: say so, or an inlining compiler sees strcmp(x, NULL) */
    return str != NULL && strcmp(s->key.str, str) == 0;
}

/* The live slot of the key, or NULL. */
static hash_slot *find(const cm_hash *h, uint64_t hash, uint64_t u64, const char *str)
{
    size_t mask = h->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        hash_slot *s = &h->slots[i];
        if (s->val == NULL)
            return NULL;
        if (s->val != DELETED && key_eq(h, s, hash, u64, str))
            return s;
    }
}

/* Rebuilds the array with room for `more` new keys (at most a quarter full after). */
static cm_rc rebuild(cm_hash *h, size_t more)
{
    size_t cap = HASH_MIN_SLOTS;
    while (cap / 4 < h->live + more)
        cap *= 2;
    hash_slot *ns = calloc(cap, sizeof(*ns));
    if (ns == NULL)
        return CM_ERR;
    for (size_t i = 0; i < h->cap; i++) {
        const hash_slot *s = &h->slots[i];
        if (!slot_live(s))
            continue;
        size_t j = (size_t)s->hash & (cap - 1);
        while (ns[j].val != NULL)
            j = (j + 1) & (cap - 1);
        ns[j] = *s;
    }
    free(h->slots);
    h->slots = ns;
    h->cap = cap;
    h->deleted = 0;
    return CM_OK;
}

cm_rc cm_hash_reserve(cm_hash *h, size_t n)
{
    /* every insert may use an empty slot: keep used slots at half the array at most */
    if ((h->live + h->deleted + n) * 2 <= h->cap)
        return CM_OK;
    return rebuild(h, n);
}

cm_hash *cm_hash_new(cm_hash_kind kind)
{
    cm_hash *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->kind = kind;
    h->cap = HASH_MIN_SLOTS;
    h->slots = calloc(h->cap, sizeof(*h->slots));
    if (h->slots == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

void cm_hash_free(cm_hash *h)
{
    if (h == NULL)
        return;
    free(h->slots);
    free(h);
}

size_t cm_hash_count(const cm_hash *h)
{
    return h->live;
}

static cm_rc put(cm_hash *h, uint64_t hash, uint64_t u64, const char *str, void *val)
{
    assert(val != NULL && val != DELETED);
    hash_slot *s = find(h, hash, u64, str);
    if (s == NULL) {
        if (cm_hash_reserve(h, 1) != CM_OK)
            return CM_ERR;
        size_t mask = h->cap - 1;
        size_t i = (size_t)hash & mask;
        while (slot_live(&h->slots[i]))
            i = (i + 1) & mask;
        s = &h->slots[i];
        if (s->val == DELETED)
            h->deleted--;
        h->live++;
        s->hash = hash;
    }
    if (h->kind == CM_HASH_U64)
        s->key.u64 = u64;
    else
        s->key.str = str;
    s->val = val;
    return CM_OK;
}

static void *del(cm_hash *h, uint64_t hash, uint64_t u64, const char *str)
{
    hash_slot *s = find(h, hash, u64, str);
    if (s == NULL)
        return NULL;
    void *val = s->val;
    size_t mask = h->cap - 1;
    size_t i = (size_t)(s - h->slots);
    h->live--;
    memset(s, 0, sizeof(*s));
    if (h->slots[(i + 1) & mask].val != NULL) {
        s->val = DELETED; /* a probe may pass through here to a later key */
        h->deleted++;
        return val;
    }
    /* nothing follows: this slot and the markers right before it end no probe */
    for (i = (i - 1) & mask; h->slots[i].val == DELETED; i = (i - 1) & mask) {
        h->slots[i].val = NULL;
        h->deleted--;
    }
    return val;
}

void *cm_hash_get_u64(const cm_hash *h, uint64_t key)
{
    assert(h->kind == CM_HASH_U64);
    hash_slot *s = find(h, hash_u64(key), key, NULL);
    return s != NULL ? s->val : NULL;
}

void *cm_hash_get_str(const cm_hash *h, const char *key)
{
    assert(h->kind == CM_HASH_STR);
    hash_slot *s = find(h, hash_str(key), 0, key);
    return s != NULL ? s->val : NULL;
}

cm_rc cm_hash_put_u64(cm_hash *h, uint64_t key, void *val)
{
    assert(h->kind == CM_HASH_U64);
    return put(h, hash_u64(key), key, NULL, val);
}

cm_rc cm_hash_put_str(cm_hash *h, const char *key, void *val)
{
    assert(h->kind == CM_HASH_STR);
    return put(h, hash_str(key), 0, key, val);
}

void *cm_hash_del_u64(cm_hash *h, uint64_t key)
{
    assert(h->kind == CM_HASH_U64);
    return del(h, hash_u64(key), key, NULL);
}

void *cm_hash_del_str(cm_hash *h, const char *key)
{
    assert(h->kind == CM_HASH_STR);
    return del(h, hash_str(key), 0, key);
}

void *cm_hash_next(const cm_hash *h, size_t *pos, uint64_t *u64_key, const char **str_key)
{
    for (size_t i = *pos; i < h->cap; i++) {
        const hash_slot *s = &h->slots[i];
        if (!slot_live(s))
            continue;
        *pos = i + 1;
        if (u64_key != NULL)
            *u64_key = h->kind == CM_HASH_U64 ? s->key.u64 : 0;
        if (str_key != NULL)
            *str_key = h->kind == CM_HASH_STR ? s->key.str : NULL;
        return s->val;
    }
    *pos = h->cap;
    return NULL;
}
