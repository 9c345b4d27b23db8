/*
 * lk_config: the lockd key table, command-line flags and cross-key checks.
 * Loading and per-key validation are cm_config's; this file only describes lockd.
 */
#include "lk_config.h"

#include <getopt.h>
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
     .help = "shared secret clients send with AUTH (empty: none)"},
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
    KEY_INT("redlock.retry_delay_ms", retry_delay_ms, "20", 1, 60000,
            "upper bound of the random delay between attempts"),
    {.path = "redlock.clock_drift_factor",
     .type = CM_CFG_DOUBLE,
     .offset = offsetof(lk_config, clock_drift_factor),
     .defval = "0.01",
     .dmin = 0.0,
     .dmax = 0.5,
     .help = "clock drift allowance as a fraction of the lease"},
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

cm_rc lk_config_validate(const lk_config *cfg, const char *origin, char *err, size_t errlen)
{
    if (cfg->redis.count == 0) {
        snprintf(err, errlen, "%s: key 'redis': at least one Redis master is required", origin);
        return CM_ERR;
    }
    if (cfg->watchdog_lease_ms > cfg->max_lease_ms) {
        snprintf(err, errlen, "%s: key 'watchdog.lease_ms': must not exceed limits.max_lease_ms",
                 origin);
        return CM_ERR;
    }
    return CM_OK;
}

void lk_config_usage(FILE *out, const char *prog)
{
    size_t n;
    const cm_cfg_key *keys = lk_config_table(&n);
    fprintf(out,
            "usage: %s [--config FILE] [--listen H:P] [--redis H:P,H:P,...]\n"
            "          [--metrics-listen H:P] [--log-level L] [--check-config]\n"
            "          [--help] [--version]\n"
            "\n"
            "  --config FILE         YAML config (keys below)\n"
            "  --listen H:P          overrides 'listen'\n"
            "  --redis LIST          overrides 'redis'\n"
            "  --metrics-listen H:P  overrides 'metrics_listen'\n"
            "  --log-level L         overrides 'log.level'\n"
            "  --check-config        validate, print the effective config, exit 0 (2 on error)\n"
            "  --help, --version\n"
            "\nconfig keys:\n",
            prog);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-28s %s (default \"%s\")\n", keys[i].path, keys[i].help,
                keys[i].defval ? keys[i].defval : "");
}

enum { OPT_CONFIG = 256, OPT_LISTEN, OPT_REDIS, OPT_METRICS, OPT_LOGLEVEL, OPT_CHECK };

/* Flag -> config key. */
static const char *opt_key(int opt)
{
    switch (opt) {
    case OPT_LISTEN:
        return "listen";
    case OPT_REDIS:
        return "redis";
    case OPT_METRICS:
        return "metrics_listen";
    case OPT_LOGLEVEL:
        return "log.level";
    default:
        return NULL;
    }
}

static const struct option lk_options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"metrics-listen", required_argument, NULL, OPT_METRICS},
    {"log-level", required_argument, NULL, OPT_LOGLEVEL},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const char *opt_flag(int opt)
{
    for (size_t i = 0; lk_options[i].name; i++)
        if (lk_options[i].val == opt)
            return lk_options[i].name;
    return "?";
}

/*
 * Two passes over argv so that flags override the file wherever they appear:
 * the first finds --config and the mode flags, the second applies key overrides.
 */
cm_rc lk_config_from_args(int argc, char **argv, lk_config *cfg, lk_cli_action *action,
                          bool *usage_error, char *err, size_t errlen)
{
    const char *file = NULL;
    int opt;

    *action = LK_CLI_RUN;
    *usage_error = false;
    lk_config_defaults(cfg);

    opterr = 0;
    optind = 0; /* GNU: full reset, so the parser can run more than once */
    while ((opt = getopt_long(argc, argv, "hV", lk_options, NULL)) != -1) {
        switch (opt) {
        case OPT_CONFIG:
            file = optarg;
            break;
        case OPT_CHECK:
            *action = LK_CLI_CHECK_CONFIG;
            break;
        case 'h':
            *action = LK_CLI_HELP;
            return CM_OK;
        case 'V':
            *action = LK_CLI_VERSION;
            return CM_OK;
        case '?':
        case ':':
            *usage_error = true;
            if (optopt != 0)
                snprintf(err, errlen, "option '--%s' needs an argument", opt_flag(optopt));
            else
                snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
            return CM_ERR;
        default:
            break;
        }
    }
    if (optind < argc) {
        *usage_error = true;
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return CM_ERR;
    }

    size_t n = CM_ARRAY_LEN(lk_keys);
    if (file && cm_cfg_load_file(lk_keys, n, cfg, file, err, errlen) != CM_OK)
        return CM_ERR;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "hV", lk_options, NULL)) != -1) {
        const char *key = opt_key(opt);
        if (!key)
            continue;
        char origin[64];
        snprintf(origin, sizeof(origin), "--%s", opt_flag(opt));
        if (cm_cfg_set(lk_keys, n, cfg, key, optarg, origin, err, errlen) != CM_OK)
            return CM_ERR;
    }
    return lk_config_validate(cfg, file ? file : "command line", err, errlen);
}
