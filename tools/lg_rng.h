/*
 * lg_rng: the load generators' seeded PRNG (xorshift64* after a splitmix64 seed). Each
 * load client owns one, seeded from (--seed, client number), so a seed fixes every
 * client's sequence of intended requests however the clients interleave. Header-only:
 * two tiny pure functions, no state but the caller's uint64_t.
 */
#ifndef LG_RNG_H
#define LG_RNG_H

#include <stdint.h>

static inline uint64_t lg_rng_seed(uint64_t seed, uint64_t stream)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z ? z : 1;
}

/* Uniform enough in [0, n) for load generation; n >= 1. */
static inline uint64_t lg_rng_below(uint64_t *s, uint64_t n)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return ((*s * 2685821657736338717ULL) >> 11) % n;
}

#endif
