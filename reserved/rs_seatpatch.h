/*
 * rs_seatpatch: a kept seat map's text and where each seat's state is in it, so that the
 * changes of seat events can be written into it without building the map again.
 *
 * The text is rs_seatlist_text's: every seat carries "available":B,"held":B with B true
 * or false, once, in the seats' order. A patch sets the state of some seats by id; the
 * next render writes a new text that differs from the old only in those values (true and
 * false differ in length, so the text is copied once around them). The texts are blobs:
 * an answer refers to the text it was given, which a render leaves as it is. Pure: no
 * database, no event loop; the unit tests hold it against rs_seatlist_text of the changed
 * rows.
 */
#ifndef RS_SEATPATCH_H
#define RS_SEATPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_blob.h"

typedef struct rs_seatpatch {
    rs_blob *text;     /* the text as last rendered (one reference: answers may hold more) */
    size_t n;          /* seats */
    uint32_t *at;      /* at[k]: offset in the text of seat k's "available" value */
    uint8_t *state;    /* per seat: SP_* bits, as wanted and as written */
    int64_t *by_id;    /* the seat ids, ascending */
    uint32_t *seat_of; /* seat_of[i]: the seat (k) whose id is by_id[i] */
    bool dirty;        /* a wanted state differs from the written one */
} rs_seatpatch;

/* Keeps a reference to text, whose seats are ids[0..n) in the text's order. false when
 * the text does not have exactly n seats' states where expected, when an id repeats or
 * when out of memory: then m is left empty (and holds no reference). */
bool rs_seatpatch_init(rs_seatpatch *m, rs_blob *text, const int64_t *ids, size_t n);

/* Sets seat id's state (written at the next render). false when the map has no such
 * seat: the map and the changes do not belong together. */
bool rs_seatpatch_set(rs_seatpatch *m, int64_t id, bool available, bool held);

/* Writes the text again when a set changed a seat's state; false when out of memory (the
 * old text and the wanted states are kept). */
bool rs_seatpatch_render(rs_seatpatch *m);

/* Bytes held (the text and the index), for the cache's bound. */
size_t rs_seatpatch_bytes(const rs_seatpatch *m);

void rs_seatpatch_free(rs_seatpatch *m);

#endif
