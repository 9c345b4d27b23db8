/*
 * lg_slices: a set of items (seat indexes) cut into N disjoint slices, one per load
 * client, for a conflict-free load: a client draws only from its own slice, so no two
 * clients ever ask for the same seat. Each slice is a contiguous run of the items in the
 * order given (sorted seat indexes: a client's seats sit together, as a buyer's would),
 * and holds what its client still believes free: an item leaves it when booked or
 * reported taken, and never comes back.
 *
 * Ownership: lg_slices owns one array of every item (the slices are ranges of it) and
 * the ranges; lg_slices_clear frees both. The items given to lg_slices_init are copied.
 */
#ifndef LG_SLICES_H
#define LG_SLICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

typedef struct lg_slices {
    uint32_t *item;  /* every item; slice i is item[start[i] .. start[i] + left[i]) */
    uint32_t *start; /* [n]: where slice i begins in item[] */
    uint32_t *left;  /* [n]: items still in slice i (its live prefix) */
    uint32_t n;      /* number of slices */
    uint32_t total;  /* items given to lg_slices_init */
} lg_slices;

/* Cuts items[0..nitems) into n slices of nitems / n items (the first nitems % n slices
 * one more). CM_ERR when out of memory or n is 0; s is then empty. */
cm_rc lg_slices_init(lg_slices *s, const uint32_t *items, uint32_t nitems, uint32_t n) CM_MUSTCHECK;
void lg_slices_clear(lg_slices *s);
/* Items still in slice i. */
uint32_t lg_slices_left(const lg_slices *s, uint32_t i);
/* The j-th item still in slice i (0 <= j < lg_slices_left), in no fixed order. */
uint32_t lg_slices_get(const lg_slices *s, uint32_t i, uint32_t j);
/* Takes item out of slice i; false when it was not (or no longer) there. */
bool lg_slices_remove(lg_slices *s, uint32_t i, uint32_t item);
/* Slices with no item left. */
uint32_t lg_slices_empty(const lg_slices *s);

#endif
