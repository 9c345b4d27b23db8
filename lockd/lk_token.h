/*
 * lk_token: lock tokens (SPEC 2: 32 lowercase hex digits, 128 random bits from the OS)
 * drawn from a pool of OS randomness, so that the lock path does not pay one getrandom
 * call per ACQUIRE, and the random instance id of a lockd process. The pool is a plain
 * struct its owner embeds (lk_locks); nothing is allocated.
 */
#ifndef LK_TOKEN_H
#define LK_TOKEN_H

#include <stddef.h>
#include "cm_core.h"
#include "cm_lockp.h"

#define LK_TOKEN_POOL 1024 /* bytes: 64 tokens per getrandom call */

typedef struct lk_token_pool {
    unsigned char rnd[LK_TOKEN_POOL]; /* OS randomness not yet used */
    size_t left;                      /* zeroed: empty, filled on first use */
} lk_token_pool;

/* A fresh token into out (NUL-terminated). The bytes used are wiped from the pool. */
cm_rc lk_token_new(lk_token_pool *pool, char out[CM_LOCKP_TOKEN_LEN + 1]) CM_MUSTCHECK;
/* A random id of 2 * bytes hex digits into out (2 * bytes + 1 chars). */
cm_rc lk_token_id(char *out, size_t bytes) CM_MUSTCHECK;

#endif
