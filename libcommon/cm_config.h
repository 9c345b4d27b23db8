/*
 * cm_config: table-driven YAML config (libyaml event parser).
 * A program describes its keys once in a cm_cfg_key table (dotted path, type,
 * range, default); this module fills a struct of the program's from a file and
 * from command-line overrides. Unknown keys, wrong types and out-of-range values
 * are errors that name the file, the line and the key:
 *     lockd.yaml:7: key 'redlock.redis_timeout_ms': must be an integer in 1..60000
 * A key may carry its own semantic check (validate), reported the same way.
 * Strings and lists in the target are malloc'ed; cm_cfg_free releases them.
 */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "cm_addr.h"
#include "cm_core.h"

typedef enum cm_cfg_type {
    CM_CFG_INT,       /* int64_t, inclusive range [imin, imax] */
    CM_CFG_DOUBLE,    /* double, inclusive range [dmin, dmax] */
    CM_CFG_STRING,    /* char * (malloc'ed, never NULL after defaults: "" when unset) */
    CM_CFG_BOOL,      /* bool: true/false/yes/no/on/off/1/0 */
    CM_CFG_ADDR,      /* cm_addr; "" means unset (port 0) when optional */
    CM_CFG_ADDR_LIST, /* cm_addr_list: YAML sequence of "h:p", or one "h:p,h:p" string */
    CM_CFG_ENUM,      /* int index into enum_values */
    CM_CFG_LOGLEVEL,  /* cm_log_level (int) */
    /* cm_str_list: YAML sequence of non-empty scalars, or one "a,b" string (flag or scalar;
     * spaces around each item are dropped); "" or [] is the empty list */
    CM_CFG_STRING_LIST,
} cm_cfg_type;

typedef struct cm_addr_list {
    cm_addr *items; /* malloc'ed */
    size_t count;
} cm_addr_list;

typedef struct cm_str_list {
    char **items; /* malloc'ed, each malloc'ed; NULL when count is 0 */
    size_t count;
} cm_str_list;

/* A per-key semantic check (cm_cfg_key.validate), for what a type and range cannot say
 * ("a libpq conninfo", "an http:// URL"). value points to the parsed value, of the
 * field's C type (char ** for CM_CFG_STRING, int64_t * for CM_CFG_INT, cm_str_list *
 * ...), before it is stored. On CM_ERR it writes the reason into why (no key, no
 * origin: "not a libpq conninfo: missing \"=\" after \"x\""); the loader then reports
 *     FILE:LINE: key 'database': <why>       (from YAML: the line of the value)
 *     --database: key 'database': <why>     (from a flag: its name)
 * and leaves the target unchanged. It runs for every value set from YAML or a flag,
 * the empty one included, but not for the default (so a key whose default is "" may
 * leave "required" to the program's checks after loading). It must not keep value. */
typedef cm_rc (*cm_cfg_validate_fn)(const void *value, char *why, size_t whylen);

typedef struct cm_cfg_key {
    const char *path; /* dotted key, e.g. "redlock.redis_timeout_ms" */
    cm_cfg_type type;
    size_t offset;      /* offsetof(target struct, field) */
    const char *defval; /* default in flag syntax ("50", "127.0.0.1:7380", ""); NULL = zero */
    int64_t imin, imax; /* CM_CFG_INT range */
    double dmin, dmax;  /* CM_CFG_DOUBLE range */
    const char *const *enum_values; /* CM_CFG_ENUM: NULL-terminated names */
    bool optional;                  /* CM_CFG_ADDR: "" allowed (unset) */
    bool secret;                    /* CM_CFG_STRING: cm_cfg_dump shows "(hidden)", not it */
    const char *help;               /* one line for --help and docs */
    cm_cfg_validate_fn validate;    /* optional semantic check, see above; NULL = none */
} cm_cfg_key;

/* Frees whatever the target holds, then sets every key to its default. */
void cm_cfg_defaults(const cm_cfg_key *table, size_t n, void *target);
/* Reads a YAML file over the current values (call cm_cfg_defaults first).
 * On error, CM_ERR and err gets one line:
 *     FILE:LINE:COLUMN: YAML syntax error: PROBLEM (CONTEXT started at line L column C)
 *         (libyaml's words; the part in parentheses when libyaml gives a context;
 *         nothing is read into the target then)
 *     FILE:LINE: key 'k': REASON          (a bad value; "unknown key 'k'";
 *     FILE:LINE: duplicate key 'k' (first at line N) ...)
 *     FILE: cannot open: ERRNO TEXT       (or "is a directory, not a config file")
 * After a value error the target may be partly updated (callers exit 2 on it). An empty
 * file, or one of comments only, sets nothing and is no error. */
cm_rc cm_cfg_load_file(const cm_cfg_key *table, size_t n, void *target, const char *path, char *err,
                       size_t errlen) CM_MUSTCHECK;
/* Same for YAML text in memory; name is used in error messages. */
cm_rc cm_cfg_load_string(const cm_cfg_key *table, size_t n, void *target, const char *yaml,
                         size_t len, const char *name, char *err, size_t errlen) CM_MUSTCHECK;
/* Sets one key from text (a command-line flag). origin names it in errors ("--listen").
 * On error the target is unchanged. */
cm_rc cm_cfg_set(const cm_cfg_key *table, size_t n, void *target, const char *path,
                 const char *value, const char *origin, char *err, size_t errlen) CM_MUSTCHECK;
/* The line (1-based) of the key path in the YAML file, or 0 when the file does not set
 * it (or cannot be read or parsed). For checks made after loading (a required key, keys
 * checked together), so their messages name the line too. */
size_t cm_cfg_file_line(const char *file, const char *path);
/* Frees strings and lists held by the target (and zeroes those fields). */
void cm_cfg_free(const cm_cfg_key *table, size_t n, void *target);
/* Writes "key = value" lines of the effective config (for --check-config / logs); a set
 * secret key is written as "(hidden)", since the output ends up in tickets and logs. */
void cm_cfg_dump(const cm_cfg_key *table, size_t n, const void *target, FILE *out);

#endif
