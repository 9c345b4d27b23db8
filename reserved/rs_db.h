/*
 * rs_db: an asynchronous PostgreSQL connection pool driven by libpq on the process's
 * libevent loop (PQconnectStartParams/PQconnectPoll, PQsendQueryPrepared, PQconsumeInput,
 * PQisBusy, PQgetResult): no call here ever blocks the loop. Why async and not a worker
 * pool: every reserved request already waits on lockd and the payment gateway through the
 * same loop; one more non-blocking source keeps a single thread and no locking.
 *
 * Owns: the connections (pool_size of them, reconnect with backoff when one breaks or the
 * server restarts), the prepared statements (registered once, prepared on every new
 * connection), the wait queue of callers, and per-connection session settings
 * (lock_timeout, idle_in_transaction_session_timeout, statement_timeout, and
 * rs.max_seats_per_user, the purchase limit migration 090's trigger reads).
 *
 * Two ways to run SQL:
 *   rs_db_exec   one statement in autocommit on any free connection;
 *   rs_db_lease  take a connection for a transaction (BEGIN ... COMMIT) and give it
 *                back with rs_db_conn_return.
 * Results are borrowed: valid only during the callback (PQclear happens after it).
 * Every callback runs exactly once, from the loop, never inside the starting call,
 * unless the request was cancelled.
 *
 * Failures that never reached the server come with unavailable=true and these SQLSTATEs:
 *   08006  the connection broke (server stopped/restarted/crashed) under the statement;
 *   08001  no connection is up: once the pool has been up, new requests then fail at once
 *          (from the loop) instead of waiting, so the API answers 503 quickly during an
 *          outage; the pool reconnects by itself (backoff 100 ms doubling to 2 s). Before
 *          the first connection is ever up, requests wait (lease_timeout_ms) instead;
 *   53300  no connection became free within lease_timeout_ms, or the wait queue is full.
 * Server errors 08xxx (not 08P01) and 57P01/57P02/57P03 are unavailable=true as well.
 * An rs_db_req belongs to the pool: it is freed right after its callback (or by
 * rs_db_cancel); forget the pointer in the callback. rs_db_free must not be called from
 * inside an rs_db callback. conninfo: use a socket directory or an IP address (a host
 * name would be resolved by a blocking getaddrinfo inside libpq).
 */
#ifndef RS_DB_H
#define RS_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

struct event_base;
typedef struct rs_db rs_db;
typedef struct rs_db_conn rs_db_conn;
typedef struct rs_db_req rs_db_req;

typedef struct rs_db_stmt {
    const char *name; /* prepared statement name, unique in the process */
    const char *sql;  /* with $1..$n */
    int nparams;
} rs_db_stmt;

typedef struct rs_db_opts {
    const char *conninfo;            /* libpq conninfo string (copied) */
    size_t pool_size;                /* connections kept open */
    uint32_t connect_timeout_ms;     /* 0: 3000 */
    uint32_t lease_timeout_ms;       /* a caller waiting longer for a connection fails; 0: 2000 */
    size_t max_queue;                /* callers waiting for a connection; 0: 10000 */
    uint32_t lock_timeout_ms;        /* SET lock_timeout on each connection; 0: 2000 */
    uint32_t idle_in_txn_timeout_ms; /* SET idle_in_transaction_session_timeout; 0: 10000 */
    uint32_t statement_timeout_ms;   /* SET statement_timeout; 0: 10000 */
    uint32_t max_seats_per_user;     /* SET rs.max_seats_per_user: a user's seats in CONFIRMED
                                        reservations of one performance (migration 090);
                                        0: not set, no limit */
} rs_db_opts;

typedef struct rs_db_result {
    bool ok;              /* the statement succeeded */
    PGresult *pg;         /* the last result (tuples or command status); NULL on a
                             connection failure. Borrowed. */
    const char *sqlstate; /* "" when ok; "08006" etc. for connection loss */
    const char *message;  /* primary error message, "" when ok */
    const char *detail;   /* PG_DIAG_MESSAGE_DETAIL or "" */
    bool unavailable;     /* no connection could be had / connection broke: answer 503 */
} rs_db_result;

typedef void (*rs_db_cb)(void *arg, const rs_db_result *res);
/* conn is NULL when no connection could be leased (res says why). */
typedef void (*rs_db_lease_cb)(void *arg, rs_db_conn *conn, const rs_db_result *res);

/* Statements must be registered before rs_db_start. The table is borrowed (static). */
void rs_db_register(rs_db *db, const rs_db_stmt *stmts, size_t n);

rs_db *rs_db_new(struct event_base *base, const rs_db_opts *opts) CM_MUSTCHECK;
/* Starts connecting the pool (non-blocking). */
cm_rc rs_db_start(rs_db *db) CM_MUSTCHECK;
/* Closes every connection; pending callbacks are not called. */
void rs_db_free(rs_db *db);

/* Connections currently up / leased (for /healthz and metrics). */
size_t rs_db_up(const rs_db *db);
size_t rs_db_in_use(const rs_db *db);
size_t rs_db_size(const rs_db *db);

/* One prepared statement (by name) in autocommit. params are text (NULL = SQL NULL),
 * copied before return. */
rs_db_req *rs_db_exec(rs_db *db, const char *stmt, int nparams, const char *const *params,
                      rs_db_cb cb, void *arg);
/* Leases a connection for a transaction. */
rs_db_req *rs_db_lease(rs_db *db, rs_db_lease_cb cb, void *arg);
/* The same, served before every queued request that is not urgent: for a caller that holds
 * a lock others wait for (a booking under its performance lock), so the lock is not held
 * while reads and other bookings drain the queue ahead of it. */
rs_db_req *rs_db_lease_urgent(rs_db *db, rs_db_lease_cb cb, void *arg);
/* The callback will not run (a leased connection that arrives later goes back to the pool;
 * an autocommit statement still runs). Safe with NULL. */
void rs_db_cancel(rs_db_req *req);

/* On a leased connection: a prepared statement, or plain SQL without parameters (BEGIN,
 * COMMIT, ROLLBACK, SET LOCAL ...). One at a time: the next after the callback.
 * CM_ERR (and no callback) only for misuse: not leased, or a statement already in flight.
 * A connection that broke while leased stays broken (never silently replaced under an
 * open transaction): every statement on it then fails with unavailable=true through the
 * callback, until it is returned. */
cm_rc rs_db_conn_exec(rs_db_conn *conn, const char *stmt, int nparams, const char *const *params,
                      rs_db_cb cb, void *arg) CM_MUSTCHECK;
cm_rc rs_db_conn_sql(rs_db_conn *conn, const char *sql, rs_db_cb cb, void *arg) CM_MUSTCHECK;
/* Gives the connection back. If a transaction is still open it is rolled back first;
 * a broken connection is replaced. Never call while a statement is in flight on it. */
void rs_db_conn_return(rs_db_conn *conn);

#endif
