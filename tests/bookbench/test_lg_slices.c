/*
 * test_lg_slices: the seat slices of bookbench --hot-partition (tools/ lg_slices), no
 * network: the slices are disjoint, cover every item in contiguous runs of the given
 * order and differ in size by at most one; a removed item is gone from its slice only
 * and cannot be removed twice; a slice never yields an item of another.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "lg_slices.h"
#include "unit_run.h"

START_TEST(slices_cover_disjoint)
{
    uint32_t items[10];
    for (uint32_t i = 0; i < 10; i++)
        items[i] = 100 + i;
    lg_slices s;
    ck_assert_int_eq(lg_slices_init(&s, items, 10, 3), CM_OK);
    /* 10 over 3: 4, 3, 3, contiguous in the given order */
    ck_assert_uint_eq(lg_slices_left(&s, 0), 4);
    ck_assert_uint_eq(lg_slices_left(&s, 1), 3);
    ck_assert_uint_eq(lg_slices_left(&s, 2), 3);
    ck_assert_uint_eq(lg_slices_left(&s, 3), 0); /* no such slice */
    int seen[10] = {0};
    uint32_t expect = 100;
    for (uint32_t i = 0; i < 3; i++) {
        for (uint32_t j = 0; j < lg_slices_left(&s, i); j++) {
            uint32_t v = lg_slices_get(&s, i, j);
            ck_assert_uint_eq(v, expect++);
            seen[v - 100]++;
        }
    }
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(seen[i], 1);
    ck_assert_uint_eq(lg_slices_empty(&s), 0);
    lg_slices_clear(&s);
}
END_TEST

START_TEST(slices_remove)
{
    uint32_t items[] = {1, 2, 3, 4, 5, 6};
    lg_slices s;
    ck_assert_int_eq(lg_slices_init(&s, items, 6, 2), CM_OK); /* {1,2,3} {4,5,6} */
    ck_assert(!lg_slices_remove(&s, 0, 4));                   /* another slice's item */
    ck_assert_uint_eq(lg_slices_left(&s, 1), 3);
    ck_assert(lg_slices_remove(&s, 0, 1));
    ck_assert(!lg_slices_remove(&s, 0, 1)); /* not twice */
    ck_assert_uint_eq(lg_slices_left(&s, 0), 2);
    for (uint32_t j = 0; j < lg_slices_left(&s, 0); j++) {
        uint32_t v = lg_slices_get(&s, 0, j);
        ck_assert(v == 2 || v == 3);
    }
    ck_assert(lg_slices_remove(&s, 0, 3));
    ck_assert(lg_slices_remove(&s, 0, 2));
    ck_assert_uint_eq(lg_slices_left(&s, 0), 0);
    ck_assert_uint_eq(lg_slices_empty(&s), 1);
    ck_assert(!lg_slices_remove(&s, 0, 2));
    ck_assert(!lg_slices_remove(&s, 7, 2)); /* no such slice */
    ck_assert_uint_eq(lg_slices_left(&s, 1), 3);
    lg_slices_clear(&s);
}
END_TEST

START_TEST(slices_more_slices_than_items)
{
    uint32_t items[] = {9, 8};
    lg_slices s;
    ck_assert_int_eq(lg_slices_init(&s, items, 2, 4), CM_OK);
    ck_assert_uint_eq(lg_slices_left(&s, 0), 1);
    ck_assert_uint_eq(lg_slices_get(&s, 0, 0), 9);
    ck_assert_uint_eq(lg_slices_get(&s, 1, 0), 8);
    ck_assert_uint_eq(lg_slices_empty(&s), 2);
    lg_slices_clear(&s);
    ck_assert_int_eq(lg_slices_init(&s, items, 2, 0), CM_ERR);
    lg_slices_clear(&s); /* an empty set clears too */
}
END_TEST

int main(void)
{
    const TTest *tests[] = {slices_cover_disjoint, slices_remove, slices_more_slices_than_items};
    return unit_run("lg_slices", tests, sizeof(tests) / sizeof(tests[0]), 10);
}
