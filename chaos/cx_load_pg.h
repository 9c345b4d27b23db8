/*
 * cx_load_pg: one asynchronous libpq connection on chaos_load's event loop (no call
 * here blocks: PQconnectStart/PQconnectPoll, PQsendQueryParams, PQflush,
 * PQconsumeInput/PQisBusy/PQgetResult driven by socket events). It reconnects by itself
 * with a backoff timer after any failure, so a PostgreSQL restart costs a few failed
 * queries, not the workload. One query in flight.
 *
 * Ownership: the callback borrows the result (cleared when it returns) and may start the
 * next query. cx_pg_free drops a pending query without calling its callback.
 */
#ifndef CX_LOAD_PG_H
#define CX_LOAD_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
typedef struct cx_pg cx_pg;

typedef enum cx_pg_status {
    CX_PG_OK,    /* COMMAND_OK or TUPLES_OK: res is the result */
    CX_PG_ERROR, /* the server answered with an error: the statement did not apply */
    CX_PG_LOST,  /* no answer (connection lost, timeout): it may or may not have applied */
} cx_pg_status;

typedef void (*cx_pg_cb)(void *arg, cx_pg_status st, const PGresult *res, const char *err);

cx_pg *cx_pg_new(struct event_base *base, const char *conninfo) CM_MUSTCHECK;
void cx_pg_free(cx_pg *pg);
bool cx_pg_ready(const cx_pg *pg);
/* CM_ERR when not connected or busy (callback not called); otherwise the callback runs
 * once, later. */
cm_rc cx_pg_query(cx_pg *pg, const char *sql, int nparams, const char *const *params,
                  uint32_t timeout_ms, cx_pg_cb cb, void *arg) CM_MUSTCHECK;

#endif
