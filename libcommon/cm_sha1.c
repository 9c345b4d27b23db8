/*
 * cm_sha1: SHA-1 over a whole buffer (see cm_sha1.h). The message is fed in 64-byte
 * blocks straight from the caller's buffer; only the padded tail is copied.
 */
#include "cm_sha1.h"

#include <string.h>

static uint32_t rol(uint32_t v, unsigned n)
{
    return (v << n) | (v >> (32 - n));
}

/* One 64-byte block into the running state h (FIPS 180-1, section 7). */
static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void cm_sha1(const void *data, size_t len, uint8_t out[CM_SHA1_LEN])
{
    const uint8_t *p = data;
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t block[64];
    size_t off = 0;

    while (len - off >= 64) {
        sha1_block(h, p + off);
        off += 64;
    }
    /* The tail, a 1 bit, zeros, and the length in bits (big-endian) in the last 8 bytes:
     * a tail of 56 bytes or more leaves no room for the length, so it takes two blocks. */
    size_t rest = len - off;
    memset(block, 0, sizeof block);
    if (rest > 0)
        memcpy(block, p + off, rest);
    block[rest] = 0x80;
    if (rest >= 56) {
        sha1_block(h, block);
        memset(block, 0, sizeof block);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        block[63 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, block);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

void cm_sha1_hex(const void *data, size_t len, char out[CM_SHA1_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[CM_SHA1_LEN];
    cm_sha1(data, len, d);
    for (int i = 0; i < CM_SHA1_LEN; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 0xf];
    }
    out[CM_SHA1_HEX_LEN] = '\0';
}
