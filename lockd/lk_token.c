/*
 * lk_token: pooled random tokens and instance ids (see lk_token.h).
 */
#include "lk_token.h"

#include <stdio.h>
#include <string.h>

#include "cm_rand.h"

cm_rc lk_token_new(lk_token_pool *pool, char out[CM_LOCKP_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    const size_t n = CM_LOCKP_TOKEN_LEN / 2;
    if (pool->left < n) {
        if (cm_rand_bytes(pool->rnd, sizeof(pool->rnd)) != CM_OK)
            return CM_ERR;
        pool->left = sizeof(pool->rnd);
    }
    unsigned char *p = pool->rnd + pool->left - n;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0xf];
    }
    out[CM_LOCKP_TOKEN_LEN] = '\0';
    memset(p, 0, n);
    pool->left -= n;
    return CM_OK;
}

cm_rc lk_token_id(char *out, size_t bytes)
{
    unsigned char raw[32];
    if (bytes > sizeof(raw) || cm_rand_bytes(raw, bytes) != CM_OK)
        return CM_ERR;
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return CM_OK;
}
