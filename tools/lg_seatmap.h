/*
 * lg_seatmap: reads reserved's seat map (GET /performances/{id}/seats: {"seats": [{"id":
 * N, "available": true|false, ...}, ...]}) for the load generators, which draw the seats
 * they book from it.
 */
#ifndef LG_SEATMAP_H
#define LG_SEATMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

typedef struct lg_seatmap {
    int64_t *ids; /* in the answer's order; owned, lg_seatmap_clear frees */
    bool *avail;  /* [n]: available when read */
    size_t n;     /* >= 1 after a successful parse */
} lg_seatmap;

/* Parses body into m (empty before). CM_ERR, m left empty, when body is not a seat map,
 * a seat has no integer id, there is no seat, or memory runs out. */
cm_rc lg_seatmap_parse(lg_seatmap *m, const char *body, size_t len) CM_MUSTCHECK;
void lg_seatmap_clear(lg_seatmap *m);

#endif
