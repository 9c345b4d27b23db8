/*
 * lk_config: lockd's configuration (SPEC §5). Owns the cm_cfg_key table that
 * describes every key (type, range, default), the command-line flags that override
 * single keys, and the checks that span keys. The lk_config struct owns its strings
 * and lists; lk_config_free releases them.
 */
#ifndef LK_CONFIG_H
#define LK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "cm_addr.h"
#include "cm_cli.h"
#include "cm_config.h"
#include "cm_core.h"

typedef struct lk_config {
    cm_addr listen;              /* LOCKP listener */
    cm_addr metrics_listen;      /* GET /metrics; port 0 = off */
    char *auth;                  /* shared secret; "" = no AUTH needed */
    char *admin_auth;            /* AUTH secret that allows REVOKE; "" = REVOKE off */
    char *key_prefix;            /* Redis key prefix */
    cm_addr_list redis;          /* the N independent masters (at least one) */
    int64_t redis_timeout_ms;    /* per-master round trip bound */
    int64_t max_inflight_rounds; /* Redlock rounds out at once; 0 = no limit */
    int64_t retry_delay_ms;      /* upper bound of the random retry delay */
    double clock_drift_factor;   /* Redlock drift allowance, fraction of the lease */
    bool quarantine;             /* keep a master that came back without its data out of
                                    every quorum for a lease (lk_quarantine) */
    int64_t watchdog_lease_ms;   /* lease written for lease_ms 0 locks */
    int64_t session_timeout_ms;  /* silence after which a session is dead */
    int64_t lock_delay_ms;       /* delay before a dead session's locks are released */
    int64_t max_sessions;
    int64_t max_waiters; /* waiting ACQUIREs over all sessions */
    int64_t max_lease_ms;
    int64_t max_wait_ms;
    int log_level; /* cm_log_level */
} lk_config;

/* The key table (for docs and tests). */
const cm_cfg_key *lk_config_table(size_t *n);
/* Sets every key to its default (frees what cfg held; cfg must be zeroed or valid). */
void lk_config_defaults(lk_config *cfg);
/* Checks that span keys or that the table cannot express (redis non-empty ...), after
 * cm_cli_parse saw argc, argv and file (NULL: none). The message names where the key
 * was set ("lockd.yaml:4", "--redis") or that it is missing ("lockd.yaml: key 'redis'
 * is missing: ..."), like every config error. */
cm_rc lk_config_validate(const lk_config *cfg, int argc, char **argv, const char *file, char *err,
                         size_t errlen) CM_MUSTCHECK;
/* Parses argv: --config FILE first, then flags over it, then validation.
 * On CM_ERR err holds a one-line reason and usage_error tells whether the usage
 * should be shown (bad flag) or not (config error); the caller exits 2. */
cm_rc lk_config_from_args(int argc, char **argv, lk_config *cfg, cm_cli_action *action,
                          bool *usage_error, char *err, size_t errlen) CM_MUSTCHECK;
void lk_config_usage(FILE *out);
void lk_config_dump(const lk_config *cfg, FILE *out);
void lk_config_free(lk_config *cfg);

#endif
