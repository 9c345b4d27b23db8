/*
 * lk_config: the lockd key table, command-line flags and cross-key checks.
 * Loading and per-key validation are cm_config's; this file only describes lockd.
 */
#include "lk_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS INT64_C(86400000)

#define KEY_INT(p, field, def, lo, hi, h)                                                          \
    {                                                                                              \
        .path = (p), .type = CM_CFG_INT, .offset = offsetof(lk_config, field), .defval = (def),    \
        .imin = (lo), .imax = (hi), .help = (h)                                                    \
    }

static const cm_cfg_key lk_keys[] = {
    {.path = "listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(lk_config, listen),
     .defval = "127.0.0.1:7380",
     .help = "LOCKP listen address host:port"},
    {.path = "metrics_listen",
     .type = CM_CFG_ADDR,
     .offset = offsetof(lk_config, metrics_listen),
     .defval = "",
     .optional = true,
     .help = "Prometheus GET /metrics address (empty: off)"},
    {.path = "auth",
     .type = CM_CFG_STRING,
     .offset = offsetof(lk_config, auth),
     .defval = "",
     .secret = true,
     .help = "shared secret clients send with AUTH (empty: none)"},
    {.path = "admin_auth",
     .type = CM_CFG_STRING,
     .offset = offsetof(lk_config, admin_auth),
     .defval = "",
     .secret = true,
     .help = "secret of AUTH that allows REVOKE (empty: REVOKE refused)"},
    {.path = "key_prefix",
     .type = CM_CFG_STRING,
     .offset = offsetof(lk_config, key_prefix),
     .defval = "lockd:",
     .help = "prefix of every Redis key and channel"},
    {.path = "redis",
     .type = CM_CFG_ADDR_LIST,
     .offset = offsetof(lk_config, redis),
     .defval = "",
     .help = "independent Redis masters host:port,... (required)"},
    KEY_INT("redlock.redis_timeout_ms", redis_timeout_ms, "50", 1, 60000,
            "per-master round trip bound"),
    KEY_INT("redlock.max_inflight_rounds", max_inflight_rounds, "256", 0, 1000000,
            "Redlock rounds out at once, the rest wait in order (0: no limit)"),
    KEY_INT("redlock.retry_delay_ms", retry_delay_ms, "20", 1, 60000,
            "upper bound of the random delay between attempts"),
    {.path = "redlock.clock_drift_factor",
     .type = CM_CFG_DOUBLE,
     .offset = offsetof(lk_config, clock_drift_factor),
     .defval = "0.01",
     .dmin = 0.0,
     .dmax = 0.5,
     .help = "clock drift allowance as a fraction of the lease"},
    {.path = "redlock.quarantine",
     .type = CM_CFG_BOOL,
     .offset = offsetof(lk_config, quarantine),
     .defval = "true",
     .help = "a master back with a new run_id and no durable data (AOF + appendfsync always) "
             "counts in no quorum for a lease and until its fences are restored"},
    KEY_INT("watchdog.lease_ms", watchdog_lease_ms, "10000", 30, DAY_MS,
            "lease written for lease_ms 0 locks, renewed every third of it"),
    KEY_INT("session.timeout_ms", session_timeout_ms, "10000", 100, DAY_MS,
            "silence after which a session is dead"),
    KEY_INT("session.lock_delay_ms", lock_delay_ms, "0", 0, DAY_MS,
            "delay before a dead session's locks are released"),
    KEY_INT("limits.max_sessions", max_sessions, "10000", 1, 1000000, "concurrent sessions"),
    KEY_INT("limits.max_waiters", max_waiters, "100000", 0, 100000000,
            "waiting ACQUIREs over all sessions"),
    KEY_INT("limits.max_lease_ms", max_lease_ms, "3600000", 1, 30 * DAY_MS,
            "largest lease_ms of ACQUIRE and RENEW"),
    KEY_INT("limits.max_wait_ms", max_wait_ms, "600000", 0, 30 * DAY_MS,
            "largest wait_ms of ACQUIRE"),
    {.path = "log.level",
     .type = CM_CFG_LOGLEVEL,
     .offset = offsetof(lk_config, log_level),
     .defval = "info",
     .help = "error|warn|info|debug"},
};

const cm_cfg_key *lk_config_table(size_t *n)
{
    *n = CM_ARRAY_LEN(lk_keys);
    return lk_keys;
}

void lk_config_defaults(lk_config *cfg)
{
    cm_cfg_defaults(lk_keys, CM_ARRAY_LEN(lk_keys), cfg);
}

void lk_config_free(lk_config *cfg)
{
    cm_cfg_free(lk_keys, CM_ARRAY_LEN(lk_keys), cfg);
}

void lk_config_dump(const lk_config *cfg, FILE *out)
{
    cm_cfg_dump(lk_keys, CM_ARRAY_LEN(lk_keys), cfg, out);
}

static const cm_cli_flag lk_flags[] = {
    {"listen", "listen", "H:P"},
    {"redis", "redis", "H:P,H:P,..."},
    {"metrics-listen", "metrics_listen", "H:P"},
    {"log-level", "log.level", "L"},
};

static const cm_cli_spec lk_cli = {
    .prog = "lockd",
    .keys = lk_keys,
    .nkeys = CM_ARRAY_LEN(lk_keys),
    .flags = lk_flags,
    .nflags = CM_ARRAY_LEN(lk_flags),
    /* Every key has a default but redis, which --redis can give: the file is optional. */
    .config_help = "YAML config, keys below (optional when --redis is given)",
};

cm_rc lk_config_validate(const lk_config *cfg, int argc, char **argv, const char *file, char *err,
                         size_t errlen)
{
    char where[CM_CLI_ORIGIN_MAX];
    if (cfg->redis.count == 0) {
        if (cm_cli_origin(&lk_cli, argc, argv, file, "redis", where, sizeof(where)))
            snprintf(err, errlen, "%s: key 'redis': at least one Redis master is required", where);
        else if (file != NULL)
            snprintf(err, errlen,
                     "%s: key 'redis' is missing: at least one Redis master is required", where);
        else
            snprintf(err, errlen,
                     "%s: key 'redis' is missing: at least one Redis master is required (give "
                     "--redis H:P,... or --config FILE)",
                     where);
        return CM_ERR;
    }
    if (cfg->watchdog_lease_ms > cfg->max_lease_ms) {
        /* Name the key that was set: the other one holds its default. */
        if (cm_cli_origin(&lk_cli, argc, argv, file, "watchdog.lease_ms", where, sizeof(where)))
            snprintf(err, errlen,
                     "%s: key 'watchdog.lease_ms': must not exceed limits.max_lease_ms (%lld)",
                     where, (long long)cfg->max_lease_ms);
        else {
            (void)cm_cli_origin(&lk_cli, argc, argv, file, "limits.max_lease_ms", where,
                                sizeof(where));
            snprintf(err, errlen,
                     "%s: key 'limits.max_lease_ms': must not be below watchdog.lease_ms (%lld)",
                     where, (long long)cfg->watchdog_lease_ms);
        }
        return CM_ERR;
    }
    if (cfg->watchdog_lease_ms <= 3 * cfg->redis_timeout_ms) {
        /* Renewed every third of the lease, each renewal a round of up to
         * redis_timeout_ms: below this no renewal can be sure to land in time. Name the
         * key that was set (the other one holds its default). */
        if (cm_cli_origin(&lk_cli, argc, argv, file, "watchdog.lease_ms", where, sizeof(where)))
            snprintf(err, errlen,
                     "%s: key 'watchdog.lease_ms': must be more than 3 x "
                     "redlock.redis_timeout_ms (%lld): a renewal every third of the lease needs "
                     "a Redis round inside it",
                     where, (long long)(3 * cfg->redis_timeout_ms));
        else {
            (void)cm_cli_origin(&lk_cli, argc, argv, file, "redlock.redis_timeout_ms", where,
                                sizeof(where));
            snprintf(err, errlen,
                     "%s: key 'redlock.redis_timeout_ms': must be below a third of "
                     "watchdog.lease_ms (%lld): a renewal every third of the lease needs a "
                     "Redis round inside it",
                     where, (long long)cfg->watchdog_lease_ms);
        }
        return CM_ERR;
    }
    return CM_OK;
}

void lk_config_usage(FILE *out)
{
    cm_cli_usage(&lk_cli, out);
}

cm_rc lk_config_from_args(int argc, char **argv, lk_config *cfg, cm_cli_action *action,
                          bool *usage_error, char *err, size_t errlen)
{
    const char *file = NULL;
    if (cm_cli_parse(&lk_cli, argc, argv, cfg, action, usage_error, &file, err, errlen) != CM_OK)
        return CM_ERR;
    if (*action == CM_CLI_HELP || *action == CM_CLI_VERSION)
        return CM_OK;
    return lk_config_validate(cfg, argc, argv, file, err, errlen);
}
