/*
 * rs_config: the reserved key table (SPEC §5, the reconciler and PostgreSQL session
 * bounds of issue 3, CORS of issue 9) and the validators of single keys. Loading,
 * defaults and reporting "FILE:LINE: key 'k': why" are cm_config's.
 */
#include "rs_config.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "rs_cors.h"
#include "rs_pay.h"

#define DAY_MS INT64_C(86400000)

#define KEY_INT(p, field, def, lo, hi, h)                                                          \
    {                                                                                              \
        .path = (p), .type = CM_CFG_INT, .offset = offsetof(rs_config, field), .defval = (def),    \
        .imin = (lo), .imax = (hi), .help = (h)                                                    \
    }

static const char *const lock_modes[] = {"lockd", "db", NULL};

/* database: what libpq's own parser takes, so a typo is an exit 2 at start, not a pool
 * that never connects. */
static cm_rc conninfo_ok(const void *value, char *why, size_t whylen)
{
    const char *s = *(char *const *)value;
    char *pq_err = NULL;
    if (s[0] == '\0') {
        snprintf(why, whylen, "a libpq conninfo is required");
        return CM_ERR;
    }
    PQconninfoOption *opts = PQconninfoParse(s, &pq_err);
    if (opts == NULL) {
        size_t n = pq_err != NULL ? strcspn(pq_err, "\n") : 0;
        snprintf(why, whylen, "not a libpq conninfo: %.*s", (int)n,
                 pq_err != NULL ? pq_err : "out of memory");
        PQfreemem(pq_err);
        return CM_ERR;
    }
    PQconninfoFree(opts);
    return CM_OK;
}

/* payment.url: what rs_pay can call (libevent's URL parser, the one it uses). */
static cm_rc payment_url_ok(const void *value, char *why, size_t whylen)
{
    const char *s = *(char *const *)value;
    char reason[512];
    if (s[0] == '\0' || rs_pay_url_ok(s, reason, sizeof(reason)))
        return CM_OK;
    snprintf(why, whylen, "%s (or empty: no payment step)", reason);
    return CM_ERR;
}

/* lock.history_file: a file reserved can append to (created if absent), so a typo in the
 * directory is an exit 2 at start, not a run without its history. */
static cm_rc history_file_ok(const void *value, char *why, size_t whylen)
{
    const char *s = *(char *const *)value;
    if (s[0] == '\0')
        return CM_OK;
    int fd = open(s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, whylen, "cannot append to %s: %s (or empty: no lock history)", s,
                 strerror(errno));
        return CM_ERR;
    }
    close(fd);
    return CM_OK;
}

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
     .help = "libpq conninfo of the booking database",
     .validate = conninfo_ok},
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
    /* At most 64: each booking of a batch is a subtransaction that writes, and a
     * transaction with more than 64 of them overflows PostgreSQL's per-backend subxid
     * cache (every other session's snapshot then pays pg_subtrans lookups). */
    KEY_INT("lock.batch_max", lock_batch_max, "64", 1, 64,
            "lockd mode: most bookings of one performance booked in one transaction, 1..64 "
            "(1 = one booking per transaction)"),
    {.path = "lock.auth",
     .type = CM_CFG_STRING,
     .offset = offsetof(rs_config, lock_auth),
     .defval = "",
     .secret = true,
     .help = "secret sent to lockd with AUTH after HELLO (lockd's auth; empty: none)"},
    {.path = "lock.history_file",
     .type = CM_CFG_STRING,
     .offset = offsetof(rs_config, lock_history_file),
     .defval = "",
     .help = "lockd mode: append every lock event of the booking path (grant, renew, release, "
             "lost) to this file as JSON lines for chaos_check --locks (empty: off)",
     .validate = history_file_ok},
    {.path = "payment.url",
     .type = CM_CFG_STRING,
     .offset = offsetof(rs_config, payment_url),
     .defval = "",
     .help = "payment gateway base URL http://host:port (empty: no payment step)",
     .validate = payment_url_ok},
    KEY_INT("payment.timeout_ms", payment_timeout_ms, "2000", 1, 600000,
            "bound of one gateway call"),
    KEY_INT("limits.max_body_bytes", max_body_bytes, "65536", 256, INT64_C(64) * 1024 * 1024,
            "largest request body (413 TOO_LARGE above)"),
    KEY_INT("limits.max_seats_per_reservation", max_seats, "10", 1, 10000,
            "most seats in one reservation"),
    KEY_INT("limits.max_header_bytes", max_header_bytes, "8192", 1024, 1024 * 1024,
            "largest request line + headers (431 HEADERS_TOO_LARGE above)"),
    KEY_INT("limits.header_timeout_ms", header_timeout_ms, "10000", 10, 600000,
            "the request line and headers must arrive within this (408, or the connection "
            "is closed)"),
    KEY_INT("limits.max_connections", max_connections, "4096", 1, 1000000,
            "most open client connections; beyond it accept waits until one closes"),
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
    {.path = "cors.allow_origins",
     .type = CM_CFG_STRING_LIST,
     .offset = offsetof(rs_config, cors_allow_origins),
     .defval = "",
     .help = "web origins whose pages may call the API, http(s)://host[:port],... or \"*\" "
             "(empty: CORS off)",
     .validate = rs_cors_origins_ok},
    {.path = "metrics_listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(rs_config, metrics_listen),
     .defval = "",
     .optional = true,
     .help = "optional host:port serving GET /metrics WITHOUT a token (a private network's "
             "Prometheus; empty: off, /metrics only on the API port for admins)"},
    KEY_INT("lock.max_queue", lock_max_queue, "4096", 1, 1000000,
            "most requests of one performance waiting in one process (503 BUSY beyond)"),
    KEY_INT("auth.session_ttl_s", session_ttl_s, "86400", 60, INT64_C(366) * 86400,
            "life of a login token in seconds"),
    KEY_INT("auth.hash_ops", hash_ops, "2", 1, 10, "Argon2id passes of a password hash"),
    /* OWASP's Argon2id floor (19 MiB, 2 passes); 8 KiB is libsodium's minimum, for tests. */
    KEY_INT("auth.hash_mem_kib", hash_mem_kib, "19456", 8, 4 * 1024 * 1024,
            "Argon2id memory of a password hash in KiB"),
    KEY_INT("auth.hash_threads", hash_threads, "2", 1, 64,
            "threads that hash passwords (sign-up, login) off the event loop"),
    KEY_INT("idempotency.ttl_s", idempotency_ttl_s, "86400", 1, INT64_C(366) * 86400,
            "Idempotency-Key records are deleted after this many seconds"),
    KEY_INT("limits.max_seats_per_user_per_performance", max_seats_per_user, "8", 1, 100000,
            "most seats one user may hold (booked + held) of one performance (409 "
            "LIMIT_EXCEEDED above)"),
    {.path = "limits.rate_per_token.per_s",
     .type = CM_CFG_DOUBLE,
     .offset = offsetof(rs_config, rate_token_per_s),
     .defval = "20",
     .dmin = 0,
     .dmax = 1e9,
     .help = "requests per second per login token, refill of its bucket (0: no limit)"},
    KEY_INT("limits.rate_per_token.burst", rate_token_burst, "40", 1, 1000000000,
            "size of a token's bucket"),
    {.path = "limits.rate_per_ip.per_s",
     .type = CM_CFG_DOUBLE,
     .offset = offsetof(rs_config, rate_ip_per_s),
     .defval = "10",
     .dmin = 0,
     .dmax = 1e9,
     .help = "requests per second per client address without a valid token (sign-up and "
             "login included; 0: no limit)"},
    KEY_INT("limits.rate_per_ip.burst", rate_ip_burst, "40", 1, 1000000000,
            "size of an address's bucket"),
    KEY_INT("holds.ttl_s", holds_ttl_s, "600", 1, 86400,
            "seconds a hold keeps its seats for its user"),
    KEY_INT("events.max_subscribers", events_max_subscribers, "10000", 1, 1000000,
            "seat event streams one process serves at once (503 beyond)"),
    KEY_INT("events.max_buffer_kib", events_max_buffer_kib, "256", 4, 65536,
            "unsent bytes one event stream may hold before the slow reader is dropped"),
    /* at most 12 s: the check runs every quarter of it, and a stream must hear something
     * at least every 15 s (a proxy's idle timeout is often not much longer) */
    /* how late a stream may hear of a change, against one cheap query per poll per process
     * (only while a stream is open) */
    KEY_INT("events.poll_ms", events_poll_ms, "100", 10, 5000,
            "how often the seat events of performances with a stream are read"),
    KEY_INT("events.keepalive_ms", events_keepalive_ms, "10000", 200, 12000,
            "silence after which an event stream gets a keep-alive comment"),
};

const size_t rs_config_nkeys = sizeof(rs_config_keys) / sizeof(rs_config_keys[0]);
