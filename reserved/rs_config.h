/*
 * rs_config: reserved's configuration (SPEC §5 keys plus the ones issues 3 and 9 need),
 * table-driven through cm_config, with the checks of single values (a libpq conninfo, an
 * http:// URL, web origins) as the keys' validators, so their errors name file and line.
 */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include <stdint.h>
#include "cm_config.h"
#include "cm_log.h"

typedef enum rs_lock_mode { RS_LOCK_LOCKD = 0, RS_LOCK_DB = 1 } rs_lock_mode;

typedef struct rs_config {
    cm_addr listen;                /* listen */
    char *database;                /* database (libpq conninfo) */
    int64_t db_pool_size;          /* db_pool_size */
    cm_addr_list lockd;            /* lockd */
    int lock_mode;                 /* lock.mode: rs_lock_mode */
    int64_t lock_lease_ms;         /* lock.lease_ms (0 = watchdog) */
    int64_t lock_wait_ms;          /* lock.wait_ms */
    int64_t lock_batch_max;        /* lock.batch_max: bookings per transaction (1 = no batches) */
    char *lock_auth;               /* lock.auth: secret sent to lockd as AUTH ("" = none) */
    char *payment_url;             /* payment.url ("" = no payment step) */
    int64_t payment_timeout_ms;    /* payment.timeout_ms */
    int64_t max_body_bytes;        /* limits.max_body_bytes */
    int64_t max_seats;             /* limits.max_seats_per_reservation */
    int64_t max_header_bytes;      /* limits.max_header_bytes: request line + headers */
    int64_t header_timeout_ms;     /* limits.header_timeout_ms: deadline of a request's head */
    int64_t max_connections;       /* limits.max_connections: accept pauses at this many */
    int64_t reconcile_interval_ms; /* reconcile.interval_ms */
    int64_t reconcile_after_ms;    /* reconcile.after_ms: attempts older than this are orphans */
    int64_t db_lock_timeout_ms;    /* db.lock_timeout_ms */
    int64_t db_idle_in_txn_timeout_ms; /* db.idle_in_transaction_timeout_ms */
    int64_t db_statement_timeout_ms;   /* db.statement_timeout_ms */
    cm_log_level log_level;            /* log.level */
    cm_str_list cors_allow_origins;    /* cors.allow_origins (empty: CORS off) */
} rs_config;

extern const cm_cfg_key rs_config_keys[];
extern const size_t rs_config_nkeys;

#endif
