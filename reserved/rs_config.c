/*
 * rs_config: the reserved key table (SPEC §5 plus the reconciler and PostgreSQL session
 * bounds of issue 3). Loading, defaults and per-key validation are cm_config's; this
 * file only describes reserved's keys.
 */
#include "rs_config.h"

#include <stddef.h>

#define DAY_MS INT64_C(86400000)

#define KEY_INT(p, field, def, lo, hi, h)                                                          \
    {                                                                                              \
        .path = (p), .type = CM_CFG_INT, .offset = offsetof(rs_config, field), .defval = (def),    \
        .imin = (lo), .imax = (hi), .help = (h)                                                    \
    }

static const char *const lock_modes[] = {"lockd", "db", NULL};

const cm_cfg_key rs_config_keys[] = {
    {.path = "listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(rs_config, listen),
     .defval = "127.0.0.1:8081",
     .help = "HTTP listen address host:port"},
    {.path = "database",
     .type = CM_CFG_STRING,
     .offset = offsetof(rs_config, database),
     .defval = "host=/tmp port=5432 dbname=booking user=booking",
     .help = "libpq conninfo of the booking database"},
    KEY_INT("db_pool_size", db_pool_size, "8", 1, 1000, "PostgreSQL connections kept open"),
    {.path = "lockd",
     .type = CM_CFG_ADDR_LIST,
     .offset = offsetof(rs_config, lockd),
     .defval = "127.0.0.1:7380",
     .help = "lockd endpoints host:port,... (tried in order; lock.mode lockd)"},
    {.path = "lock.mode",
     .type = CM_CFG_ENUM,
     .offset = offsetof(rs_config, lock_mode),
     .defval = "lockd",
     .enum_values = lock_modes,
     .help = "lockd (Performance:<id> through lockd) | db (SELECT ... FOR UPDATE)"},
    KEY_INT("lock.lease_ms", lock_lease_ms, "0", 0, DAY_MS,
            "lease of the performance lock (0 = watchdog lease)"),
    KEY_INT("lock.wait_ms", lock_wait_ms, "5000", 0, 600000,
            "longest wait for a performance lock before 503 BUSY"),
    {.path = "payment.url",
     .type = CM_CFG_STRING,
     .offset = offsetof(rs_config, payment_url),
     .defval = "",
     .help = "payment gateway base URL http://host:port (empty: no payment step)"},
    KEY_INT("payment.timeout_ms", payment_timeout_ms, "2000", 1, 600000,
            "bound of one gateway call"),
    KEY_INT("limits.max_body_bytes", max_body_bytes, "65536", 256, INT64_C(64) * 1024 * 1024,
            "largest request body (413 TOO_LARGE above)"),
    KEY_INT("limits.max_seats_per_reservation", max_seats, "10", 1, 10000,
            "most seats in one reservation"),
    KEY_INT("reconcile.interval_ms", reconcile_interval_ms, "5000", 10, DAY_MS,
            "period of the orphaned-payment reconciler"),
    KEY_INT("reconcile.after_ms", reconcile_after_ms, "60000", 0, 30 * DAY_MS,
            "age after which an open payment attempt counts as orphaned"),
    KEY_INT("db.lock_timeout_ms", db_lock_timeout_ms, "2000", 1, DAY_MS,
            "PostgreSQL lock_timeout of every session"),
    KEY_INT("db.idle_in_transaction_timeout_ms", db_idle_in_txn_timeout_ms, "10000", 1, DAY_MS,
            "PostgreSQL idle_in_transaction_session_timeout of every session"),
    KEY_INT("db.statement_timeout_ms", db_statement_timeout_ms, "10000", 1, DAY_MS,
            "PostgreSQL statement_timeout of every session"),
    {.path = "log.level",
     .type = CM_CFG_LOGLEVEL,
     .offset = offsetof(rs_config, log_level),
     .defval = "info",
     .help = "error|warn|info|debug"},
};

const size_t rs_config_nkeys = sizeof(rs_config_keys) / sizeof(rs_config_keys[0]);
