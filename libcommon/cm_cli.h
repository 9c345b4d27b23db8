/*
 * cm_cli: the command line every daemon shares (SPEC §5): --config FILE, flags that
 * override single config keys, --check-config, --help, --version. The flags are
 * described once in a table next to the program's cm_cfg_key table; this module builds
 * the getopt table, applies file then flags (two passes over argv, so a flag wins
 * wherever it stands) and prints the usage with every key and its default.
 */
#ifndef CM_CLI_H
#define CM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "cm_config.h"
#include "cm_core.h"

typedef struct cm_cli_flag {
    const char *name;    /* "listen": used as --listen */
    const char *key;     /* the config key it overrides */
    const char *metavar; /* shown in the usage: "H:P" */
} cm_cli_flag;

typedef struct cm_cli_spec {
    const char *prog;
    const cm_cfg_key *keys;
    size_t nkeys;
    const cm_cli_flag *flags;
    size_t nflags;
    /* What --help says of --config FILE; NULL: "YAML config, keys below". Say here when
     * the file may be left out (lockd: "... (optional when --redis is given)"). */
    const char *config_help;
} cm_cli_spec;

typedef enum cm_cli_action {
    CM_CLI_RUN,          /* config loaded: run */
    CM_CLI_HELP,         /* --help: print the usage to stdout, exit 0 */
    CM_CLI_VERSION,      /* --version: exit 0 */
    CM_CLI_CHECK_CONFIG, /* --check-config: config loaded, print it, exit 0 */
} cm_cli_action;

/* Sets the defaults, loads --config FILE, then applies the flags. *file gets the config
 * file (borrowed from argv) or NULL. On CM_ERR err holds one line and *usage_error tells
 * whether it is a bad flag (show the usage) or a bad value (don't); callers exit 2.
 * Cross-key checks stay with the caller. */
cm_rc cm_cli_parse(const cm_cli_spec *spec, int argc, char **argv, void *cfg, cm_cli_action *action,
                   bool *usage_error, const char **file, char *err, size_t errlen) CM_MUSTCHECK;
/* Room for what cm_cli_origin writes ("FILE:LINE"). */
#define CM_CLI_ORIGIN_MAX 1024

/* Where the value of key comes from after cm_cli_parse (same argc, argv and *file), so
 * a check made after loading (a required key, keys checked together) names it as a
 * cm_config error would: buf gets "--redis" when a flag sets it (the last such flag),
 * else "FILE:LINE" when the config file sets it, else "FILE" (not in it) or "command
 * line" (no file). Returns true when a flag or the file sets the key, false when it
 * holds its default. */
bool cm_cli_origin(const cm_cli_spec *spec, int argc, char **argv, const char *file,
                   const char *key, char *buf, size_t buflen);
/* The usage, first the synopsis (one paragraph, wrapped at 90 columns, for the docs
 * to copy):
 *     usage: PROG --config FILE [--FLAG METAVAR] ... [--check-config] [--help] [--version]
 * then one line an option and one line a config key with its default. */
void cm_cli_usage(const cm_cli_spec *spec, FILE *out);

#endif
