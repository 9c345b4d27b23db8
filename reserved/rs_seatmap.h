/*
 * rs_seatmap: GET /performances/{id}/seats (SPEC §6), the seat map, and the cache of its
 * answers.
 *
 * A seat map is the largest answer reserved gives (about 100 bytes a seat: 100 KB for a
 * 1,000-seat hall, 2 MB for 20,000) and one of the most asked for in a sale; building it
 * is a join over the hall's seats in PostgreSQL and a JSON dump here. The cache keeps the
 * finished bytes of each performance's map with the version they show, and every read
 * asks PostgreSQL for the current version and the seats of the newer seat events (one
 * statement, an index range): the same version gives the kept bytes, newer seat events
 * are written into them (rs_seatpatch), anything else builds the map again. So a read
 * never shows a state older than the database's at the moment it asked, whichever
 * reserved made the change, and during a sale it costs the seats that changed, not the
 * hall.
 */
#ifndef RS_SEATMAP_H
#define RS_SEATMAP_H

#include <stddef.h>
#include "cm_strbuf.h"
#include "rs_db.h"
#include "rs_http.h"

/* Bounds of the cache: the least recently used maps go first. */
#define RS_SEATMAP_CACHE_MAX_ENTRIES 64
#define RS_SEATMAP_CACHE_MAX_BYTES   (64u << 20)

void rs_seatmap_register(rs_db *db);
/* The route's handler (rs_api's table lists it). */
void rs_seatmap_get(rs_req *r);
void rs_seatmap_metrics(cm_strbuf *out);
/* Frees the cache (at the stop: no leak at exit). */
void rs_seatmap_stop(void);

#endif
