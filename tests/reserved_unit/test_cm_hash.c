/*
 * test_cm_hash: libcommon's hash table (cm_hash.h) against a plain array model: u64 and
 * borrowed string keys, replace, delete, growth, churn (delete markers must not fill the
 * table), deleting while iterating, reserve.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_hash.h"
#include "ru_suites.h"

/* A value for key k: any non-NULL pointer the test can check. */
static void *val(uint64_t k)
{
    return (void *)(uintptr_t)(k * 2 + 1);
}

START_TEST(test_u64)
{
    cm_hash *h = cm_hash_new(CM_HASH_U64);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(cm_hash_get_u64(h, 1));
    const uint64_t n = 20000;
    for (uint64_t k = 1; k <= n; k++)
        ck_assert_int_eq(cm_hash_put_u64(h, k * 7, val(k)), CM_OK);
    ck_assert_uint_eq(cm_hash_count(h), n);
    for (uint64_t k = 1; k <= n; k++) {
        ck_assert_ptr_eq(cm_hash_get_u64(h, k * 7), val(k));
        ck_assert_ptr_null(cm_hash_get_u64(h, k * 7 + 1));
    }
    ck_assert_int_eq(cm_hash_put_u64(h, 7, val(99)), CM_OK); /* replace */
    ck_assert_uint_eq(cm_hash_count(h), n);
    ck_assert_ptr_eq(cm_hash_get_u64(h, 7), val(99));
    ck_assert_ptr_eq(cm_hash_del_u64(h, 7), val(99));
    ck_assert_ptr_null(cm_hash_del_u64(h, 7));
    ck_assert_ptr_null(cm_hash_get_u64(h, 7));
    ck_assert_uint_eq(cm_hash_count(h), n - 1);
    ck_assert_int_eq(cm_hash_put_u64(h, 0, val(0)), CM_OK); /* 0 and UINT64_MAX are keys */
    ck_assert_int_eq(cm_hash_put_u64(h, UINT64_MAX, val(5)), CM_OK);
    ck_assert_ptr_eq(cm_hash_get_u64(h, 0), val(0));
    ck_assert_ptr_eq(cm_hash_get_u64(h, UINT64_MAX), val(5));
    cm_hash_free(h);
    cm_hash_free(NULL);
}
END_TEST

START_TEST(test_str)
{
    cm_hash *h = cm_hash_new(CM_HASH_STR);
    ck_assert_ptr_nonnull(h);
    enum { N = 3000 };
    static char keys[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "Performance:%d", i);
        ck_assert_int_eq(cm_hash_put_str(h, keys[i], val((uint64_t)i)), CM_OK);
    }
    ck_assert_uint_eq(cm_hash_count(h), N);
    char probe[32];
    for (int i = 0; i < N; i++) {
        snprintf(probe, sizeof(probe), "Performance:%d", i); /* another pointer, same text */
        ck_assert_ptr_eq(cm_hash_get_str(h, probe), val((uint64_t)i));
    }
    ck_assert_ptr_null(cm_hash_get_str(h, "Performance:"));
    ck_assert_ptr_null(cm_hash_get_str(h, ""));
    /* a replace takes the new borrowed key too */
    static char again[32] = "Performance:5";
    ck_assert_int_eq(cm_hash_put_str(h, again, val(N + 5)), CM_OK);
    size_t pos = 0;
    const char *k;
    void *v;
    bool seen = false;
    while ((v = cm_hash_next(h, &pos, NULL, &k)) != NULL) {
        if (v == val(N + 5)) {
            ck_assert_ptr_eq(k, again);
            seen = true;
        }
    }
    ck_assert(seen);
    ck_assert_ptr_eq(cm_hash_del_str(h, "Performance:5"), val(N + 5));
    ck_assert_uint_eq(cm_hash_count(h), N - 1);
    cm_hash_free(h);
}
END_TEST

/* Insert and delete for a long time with few keys live: correct all along (checked
 * against an array), and the markers deletes leave do not make probes endless. */
START_TEST(test_churn)
{
    cm_hash *h = cm_hash_new(CM_HASH_U64);
    enum { KEYS = 64 };
    size_t live = 0;
    uint64_t x = 12345;
    for (int step = 0; step < 200000; step++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t k = (x >> 33) % KEYS;
        uint64_t key = k * 1000003 + (uint64_t)step / 50000; /* keys move on now and then */
        if ((x >> 20) & 1) {
            if (cm_hash_get_u64(h, key) == NULL) {
                ck_assert_int_eq(cm_hash_put_u64(h, key, val(key)), CM_OK);
                live++;
            }
        } else if (cm_hash_del_u64(h, key) != NULL) {
            live--;
        }
        ck_assert_uint_eq(cm_hash_count(h), live);
    }
    /* whatever is left can be listed and removed */
    size_t pos = 0, n = 0;
    uint64_t key;
    while (cm_hash_next(h, &pos, &key, NULL) != NULL) {
        ck_assert_ptr_eq(cm_hash_del_u64(h, key), val(key));
        n++;
    }
    ck_assert_uint_eq(n, live);
    ck_assert_uint_eq(cm_hash_count(h), 0);
    cm_hash_free(h);
}
END_TEST

/* Deleting while iterating: the entry just returned, and others; each live entry is
 * seen once. */
START_TEST(test_iterate_delete)
{
    cm_hash *h = cm_hash_new(CM_HASH_U64);
    enum { N = 1000 };
    for (uint64_t k = 0; k < N; k++)
        ck_assert_int_eq(cm_hash_put_u64(h, k, val(k)), CM_OK);
    static int seen[N];
    memset(seen, 0, sizeof(seen));
    size_t pos = 0;
    uint64_t key;
    void *v;
    while ((v = cm_hash_next(h, &pos, &key, NULL)) != NULL) {
        ck_assert_ptr_eq(v, val(key));
        seen[key]++;
        ck_assert_ptr_eq(cm_hash_del_u64(h, key), v); /* the current one */
        if (key % 3 == 0 && key + 1 < N && seen[key + 1] == 0)
            cm_hash_del_u64(h, key + 1); /* one not seen yet: it must not come */
    }
    for (uint64_t k = 0; k < N; k++) {
        ck_assert_int_le(seen[k], 1);
        ck_assert_msg(seen[k] == 1 || k % 3 == 1, "key %llu never seen", (unsigned long long)k);
    }
    ck_assert_uint_eq(cm_hash_count(h), 0);
    cm_hash_free(h);
}
END_TEST

START_TEST(test_reserve)
{
    cm_hash *h = cm_hash_new(CM_HASH_STR);
    ck_assert_int_eq(cm_hash_reserve(h, 1000), CM_OK);
    static char keys[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        ck_assert_int_eq(cm_hash_put_str(h, keys[i], keys[i]), CM_OK);
    }
    for (int i = 0; i < 1000; i++)
        ck_assert_ptr_eq(cm_hash_get_str(h, keys[i]), keys[i]);
    cm_hash_free(h);
}
END_TEST

/* A local table: Check's TTest pointers are not constants. */
Suite *ru_cm_hash_suite(void)
{
    const ru_case cases[] = {
        {"cm_hash_u64", test_u64, 0},         {"cm_hash_str", test_str, 0},
        {"cm_hash_churn", test_churn, 0},     {"cm_hash_iterate_delete", test_iterate_delete, 0},
        {"cm_hash_reserve", test_reserve, 0},
    };
    return ru_suite("cm_hash", cases, sizeof(cases) / sizeof(cases[0]));
}
