/*
 * rs_perfcheck: whether a performance exists, asked before a booking writes anything
 * (its payment attempt) or takes a lock (issue 13 §2): a booking for a performance that
 * does not exist is answered 404 NOT_FOUND with nothing written and no lock taken.
 * Before, it recorded a payment attempt and held Performance:<id> at lockd (stopping
 * every other process's bookings of that id) only to learn it inside the transaction.
 *
 * Why a set: no route deletes a performance, so a "yes" stays true for the process's
 * life; it is kept (at most RS_PERFCHECK_MAX ids; a full set starts over), and the hot
 * path asks the database once per performance and process. A "no" is never kept: the
 * performance may be created a moment later. rs_book still checks inside the
 * transaction (RBP04), so a performance deleted behind reserved's back is still a 404.
 *
 * Owns the set (rs_perfcheck_stop frees it). Callbacks run from the loop, never inside
 * rs_perfcheck_ask.
 */
#ifndef RS_PERFCHECK_H
#define RS_PERFCHECK_H

#include <stdint.h>
#include "cm_core.h"
#include "rs_db.h"

#define RS_PERFCHECK_MAX 65536 /* performance ids kept as known to exist */

typedef enum rs_perfcheck_answer {
    RS_PERFCHECK_EXISTS,  /* the performance exists */
    RS_PERFCHECK_MISSING, /* no performance with that id */
    RS_PERFCHECK_FAILED,  /* the database could not say (res has why) */
} rs_perfcheck_answer;

/* res is NULL unless the answer came from a statement. */
typedef void (*rs_perfcheck_cb)(void *arg, rs_perfcheck_answer a, const rs_db_result *res);

/* Registers the statement; before rs_db_start. */
void rs_perfcheck_register(rs_db *db);
/* Whether perf is known to exist (no database round trip). */
bool rs_perfcheck_known(int64_t perf);
/* Asks the database whether perf exists; cb comes later (and remembers a yes). CM_ERR
 * (no callback) when the statement could not be queued. */
cm_rc rs_perfcheck_ask(rs_db *db, int64_t perf, rs_perfcheck_cb cb, void *arg) CM_MUSTCHECK;
/* Frees the set (at shutdown). */
void rs_perfcheck_stop(void);

#endif
