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
    cm_addr listen;             /* listen */
    char *database;             /* database (libpq conninfo) */
    int64_t db_pool_size;       /* db_pool_size */
    cm_addr_list lockd;         /* lockd */
    int lock_mode;              /* lock.mode: rs_lock_mode */
    int64_t lock_lease_ms;      /* lock.lease_ms (0 = watchdog) */
    int64_t lock_wait_ms;       /* lock.wait_ms */
    int64_t lock_batch_max;     /* lock.batch_max: bookings per transaction (1 = no batches) */
    char *lock_auth;            /* lock.auth: secret sent to lockd as AUTH ("" = none) */
    char *lock_history_file;    /* lock.history_file: the booking path's lock events ("" = off) */
    char *payment_url;          /* payment.url ("" = no payment step) */
    int64_t payment_timeout_ms; /* payment.timeout_ms */
    int64_t max_body_bytes;     /* limits.max_body_bytes */
    int64_t max_seats;          /* limits.max_seats_per_reservation */
    int64_t max_header_bytes;   /* limits.max_header_bytes: request line + headers */
    int64_t header_timeout_ms;  /* limits.header_timeout_ms: deadline of a request's head */
    int64_t max_connections;    /* limits.max_connections: accept pauses at this many */
    int64_t reconcile_interval_ms; /* reconcile.interval_ms */
    int64_t reconcile_after_ms;    /* reconcile.after_ms: attempts older than this are orphans */
    int64_t db_lock_timeout_ms;    /* db.lock_timeout_ms */
    int64_t db_idle_in_txn_timeout_ms; /* db.idle_in_transaction_timeout_ms */
    int64_t db_statement_timeout_ms;   /* db.statement_timeout_ms */
    cm_log_level log_level;            /* log.level */
    cm_str_list cors_allow_origins;    /* cors.allow_origins (empty: CORS off) */
    cm_addr metrics_listen;         /* metrics_listen: GET /metrics without a token (port 0: off) */
    int64_t lock_max_queue;         /* lock.max_queue: local waiters per performance */
    int64_t session_ttl_s;          /* auth.session_ttl_s: life of a login token */
    int64_t hash_ops;               /* auth.hash_ops: Argon2id passes (time cost) */
    int64_t hash_mem_kib;           /* auth.hash_mem_kib: Argon2id memory per hash */
    int64_t hash_threads;           /* auth.hash_threads: threads that hash passwords */
    int64_t idempotency_ttl_s;      /* idempotency.ttl_s: Idempotency-Key records kept */
    int64_t max_seats_per_user;     /* limits.max_seats_per_user_per_performance */
    double rate_token_per_s;        /* limits.rate_per_token.per_s (0: no limit) */
    int64_t rate_token_burst;       /* limits.rate_per_token.burst */
    double rate_ip_per_s;           /* limits.rate_per_ip.per_s (0: no limit) */
    int64_t rate_ip_burst;          /* limits.rate_per_ip.burst */
    int64_t holds_ttl_s;            /* holds.ttl_s: how long a hold keeps its seats */
    int64_t events_max_subscribers; /* events.max_subscribers: event streams per process */
    int64_t events_max_buffer_kib;  /* events.max_buffer_kib: unsent bytes per stream */
    int64_t events_keepalive_ms;    /* events.keepalive_ms: silence before a comment line */
    int64_t events_poll_ms;         /* events.poll_ms: how often seat events are read */
} rs_config;

extern const cm_cfg_key rs_config_keys[];
extern const size_t rs_config_nkeys;

#endif
