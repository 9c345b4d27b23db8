/*
 * rs_testhook: reserved's test hooks, the one place that reads them. They come from the
 * environment (a test sets them for one server it starts), are read once by
 * rs_testhook_load at start, and each one set is logged as a warning. Unset (always, in
 * production) each costs one compare where it sits:
 *   RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS  a booking waits this long before its COMMIT
 *                                         (crash and lock-lost tests aim there);
 *   RESERVED_TEST_PAUSE_AFTER_LOCK_MS     a booking waits this long after its lock grant
 *                                         (stale-holder and queue tests);
 *   RESERVED_TEST_IGNORE_LOST             LOST pushes are dropped: a holder that never
 *                                         hears it lost the lock (a lost message);
 *   RESERVED_TEST_BATCH_WHEN_IDLE         a booking that finds its performance idle joins
 *                                         a batch (of one) instead of going alone, so the
 *                                         group booking tests form batches of known sizes
 *                                         behind a first booking in a batch.
 */
#ifndef RS_TESTHOOK_H
#define RS_TESTHOOK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rs_testhooks {
    uint32_t pause_before_commit_ms; /* 0: off */
    uint32_t pause_after_lock_ms;    /* 0: off */
    bool ignore_lost;
    bool batch_when_idle;
} rs_testhooks;

extern rs_testhooks rs_testhooks_g;

/* Reads the environment into rs_testhooks_g. */
void rs_testhook_load(void);

#endif
