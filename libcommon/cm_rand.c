/*
 * cm_rand: OS randomness for tokens (getrandom) and a per-process xorshift64*
 * generator for jitter. The PRNG is seeded lazily from the OS on first use.
 */
#include "cm_rand.h"

#include <errno.h>
#include <sys/random.h>

#include "cm_time.h"

static uint64_t rand_state;
static int rand_seeded;

cm_rc cm_rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return CM_ERR;
        }
        p += got;
        n -= (size_t)got;
    }
    return CM_OK;
}

cm_rc cm_rand_token(char out[CM_TOKEN_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[CM_TOKEN_HEX_LEN / 2];
    if (cm_rand_bytes(raw, sizeof(raw)) != CM_OK)
        return CM_ERR;
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0xf];
    }
    out[CM_TOKEN_HEX_LEN] = '\0';
    return CM_OK;
}

void cm_rand_seed(uint64_t seed)
{
    /* xorshift has an all-zero fixed point: never let the state be 0. */
    rand_state = seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
    rand_seeded = 1;
}

static uint64_t rand_next(void)
{
    if (!rand_seeded) {
        uint64_t seed;
        if (cm_rand_bytes(&seed, sizeof(seed)) != CM_OK)
            seed = cm_now_ns(); /* jitter only: a weak seed is acceptable */
        cm_rand_seed(seed);
    }
    rand_state ^= rand_state >> 12;
    rand_state ^= rand_state << 25;
    rand_state ^= rand_state >> 27;
    return rand_state * 0x2545f4914f6cdd1dull;
}

uint32_t cm_rand_range(uint32_t lo, uint32_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)hi - lo + 1;
    /* Bias of a 64-bit value modulo a <=2^32 span is below 2^-32: negligible for jitter. */
    return lo + (uint32_t)(rand_next() % span);
}
