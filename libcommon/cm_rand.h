/*
 * cm_rand: randomness. Tokens come from the OS (getrandom); jitter and retry
 * delays come from a fast per-process xorshift generator seeded from the OS.
 */
#ifndef CM_RAND_H
#define CM_RAND_H

#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

#define CM_TOKEN_HEX_LEN 32 /* 128 bits as lowercase hex */

/* Fills buf with n bytes from getrandom(2). CM_ERR only if the OS refuses. */
cm_rc cm_rand_bytes(void *buf, size_t n) CM_MUSTCHECK;
/* Writes 32 lowercase hex digits + NUL into out (33 bytes). */
cm_rc cm_rand_token(char out[CM_TOKEN_HEX_LEN + 1]) CM_MUSTCHECK;
/* Uniform in [lo, hi] inclusive (fast PRNG; not for secrets). lo <= hi. */
uint32_t cm_rand_range(uint32_t lo, uint32_t hi);
/* Re-seed the fast PRNG (tests that want a reproducible sequence). */
void cm_rand_seed(uint64_t seed);

#endif
