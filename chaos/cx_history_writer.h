/*
 * cx_history_writer: writes chaos_load's history file (chaos.md: one JSON object per
 * line; cx_history reads it back for chaos_check) and keeps the shared budget of
 * operations. (Not a histogram: that is libcommon's cm_hist.) Each op line is written when the op
 * ends, with one write(2) on an O_APPEND descriptor, so a run killed at any moment leaves only
 * whole lines, and chaos/run may append its own lines to the same file.
 *
 * Times are CLOCK_MONOTONIC milliseconds relative to the run's epoch (--epoch-ms), the
 * clock every chaos tool shares.
 */
#ifndef CX_HISTORY_WRITER_H
#define CX_HISTORY_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "cm_core.h"

typedef struct cx_hwriter cx_hwriter;

/* Opens (creates, appends to) path. max_ops 0: no limit. NULL with a reason in err. */
cx_hwriter *cx_hwriter_open(const char *path, uint64_t epoch_ms, uint64_t max_ops, char *err,
                            size_t errlen) CM_MUSTCHECK;
void cx_hwriter_close(cx_hwriter *h);
/* Milliseconds since the epoch (negative clamps to 0). */
uint64_t cx_hwriter_now(const cx_hwriter *h);
/* Takes the next op id from the budget; false once the budget is spent or the run is
 * stopping (then no op may start). */
bool cx_hwriter_begin(cx_hwriter *h, uint64_t *id) CM_MUSTCHECK;
void cx_hwriter_stop(cx_hwriter *h);
bool cx_hwriter_stopping(const cx_hwriter *h);
/* Writes rec as one line and counts its "outcome"; steals the reference to rec. */
void cx_hwriter_write(cx_hwriter *h, json_t *rec);
/* "ops=N ok=N fail=N unknown=N write_errors=N" into buf. */
void cx_hwriter_summary(const cx_hwriter *h, char *buf, size_t len);

#endif
