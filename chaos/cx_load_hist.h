/*
 * cx_load_hist: chaos_load's history file (chaos.md: one JSON object per line) and the
 * shared budget of operations. Each op line is written when the op ends, with one
 * write(2) on an O_APPEND descriptor, so a run killed at any moment leaves only whole
 * lines, and chaos/run may append its own lines to the same file.
 *
 * Times are CLOCK_MONOTONIC milliseconds relative to the run's epoch (--epoch-ms), the
 * clock every chaos tool shares.
 */
#ifndef CX_LOAD_HIST_H
#define CX_LOAD_HIST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "cm_core.h"

typedef struct cx_hist cx_hist;

/* Opens (creates, appends to) path. max_ops 0: no limit. NULL with a reason in err. */
cx_hist *cx_hist_open(const char *path, uint64_t epoch_ms, uint64_t max_ops, char *err,
                      size_t errlen) CM_MUSTCHECK;
void cx_hist_close(cx_hist *h);
/* Milliseconds since the epoch (negative clamps to 0). */
uint64_t cx_hist_now(const cx_hist *h);
/* Takes the next op id from the budget; false once the budget is spent or the run is
 * stopping (then no op may start). */
bool cx_hist_begin(cx_hist *h, uint64_t *id) CM_MUSTCHECK;
void cx_hist_stop(cx_hist *h);
bool cx_hist_stopping(const cx_hist *h);
/* Writes rec as one line and counts its "outcome"; steals the reference to rec. */
void cx_hist_write(cx_hist *h, json_t *rec);
/* "ops=N ok=N fail=N unknown=N write_errors=N" into buf. */
void cx_hist_summary(const cx_hist *h, char *buf, size_t len);

#endif
