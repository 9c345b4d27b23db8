/*
 * cm_cli: see cm_cli.h.
 */
#include "cm_cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_CONFIG = 1000, OPT_CHECK, OPT_FLAG0 = 2000 };

/* The getopt table: the fixed options then one per flag (val = OPT_FLAG0 + index). */
static struct option *options_new(const cm_cli_spec *spec)
{
    struct option *o = calloc(spec->nflags + 5, sizeof(*o));
    if (!o)
        return NULL;
    size_t n = 0;
    o[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    o[n++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
    o[n++] = (struct option){"help", no_argument, NULL, 'h'};
    o[n++] = (struct option){"version", no_argument, NULL, 'V'};
    for (size_t i = 0; i < spec->nflags; i++)
        o[n++] = (struct option){spec->flags[i].name, required_argument, NULL, OPT_FLAG0 + (int)i};
    return o;
}

static const char *option_name(const struct option *o, int val)
{
    for (size_t i = 0; o[i].name; i++)
        if (o[i].val == val)
            return o[i].name;
    return "?";
}

cm_rc cm_cli_parse(const cm_cli_spec *spec, int argc, char **argv, void *cfg, cm_cli_action *action,
                   bool *usage_error, const char **file, char *err, size_t errlen)
{
    cm_rc rc = CM_ERR;
    int opt;
    struct option *o = options_new(spec);

    *action = CM_CLI_RUN;
    *usage_error = false;
    *file = NULL;
    cm_cfg_defaults(spec->keys, spec->nkeys, cfg);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return CM_ERR;
    }
    opterr = 0;
    optind = 0; /* GNU: a full reset, so the parser can run more than once */
    while ((opt = getopt_long(argc, argv, "hV", o, NULL)) != -1) {
        switch (opt) {
        case OPT_CONFIG:
            *file = optarg;
            break;
        case OPT_CHECK:
            *action = CM_CLI_CHECK_CONFIG;
            break;
        case 'h':
            *action = CM_CLI_HELP;
            rc = CM_OK;
            goto done;
        case 'V':
            *action = CM_CLI_VERSION;
            rc = CM_OK;
            goto done;
        case '?':
        case ':':
            *usage_error = true;
            if (optopt != 0)
                snprintf(err, errlen, "option '--%s' needs an argument", option_name(o, optopt));
            else
                snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
            goto done;
        default:
            break;
        }
    }
    if (optind < argc) {
        *usage_error = true;
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (*file && cm_cfg_load_file(spec->keys, spec->nkeys, cfg, *file, err, errlen) != CM_OK)
        goto done;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "hV", o, NULL)) != -1) {
        if (opt < OPT_FLAG0)
            continue;
        const cm_cli_flag *f = &spec->flags[opt - OPT_FLAG0];
        char origin[80];
        snprintf(origin, sizeof(origin), "--%s", f->name);
        if (cm_cfg_set(spec->keys, spec->nkeys, cfg, f->key, optarg, origin, err, errlen) != CM_OK)
            goto done;
    }
    rc = CM_OK;
done:
    free(o);
    return rc;
}

bool cm_cli_origin(const cm_cli_spec *spec, int argc, char **argv, const char *file,
                   const char *key, char *buf, size_t buflen)
{
    const char *flag = NULL;
    struct option *o = options_new(spec);
    int opt;

    /* getopt again, so abbreviations (--red) and --flag=value count as they did. */
    opterr = 0;
    optind = 0;
    while (o != NULL && (opt = getopt_long(argc, argv, "hV", o, NULL)) != -1)
        if (opt >= OPT_FLAG0 && strcmp(spec->flags[opt - OPT_FLAG0].key, key) == 0)
            flag = spec->flags[opt - OPT_FLAG0].name;
    free(o);
    if (flag != NULL) {
        snprintf(buf, buflen, "--%s", flag);
        return true;
    }
    if (file == NULL) {
        snprintf(buf, buflen, "command line");
        return false;
    }
    size_t line = cm_cfg_file_line(file, key);
    if (line == 0) {
        snprintf(buf, buflen, "%s", file);
        return false;
    }
    snprintf(buf, buflen, "%s:%zu", file, line);
    return true;
}

#define USAGE_WIDTH 90

/* Appends word to the synopsis, starting a new line indented under the first word
 * after the program name when it would pass USAGE_WIDTH. */
static void usage_word(FILE *out, const char *word, size_t indent, size_t *col)
{
    size_t len = strlen(word);
    if (*col + 1 + len > USAGE_WIDTH) {
        fprintf(out, "\n%*s", (int)indent, "");
        *col = indent;
    }
    fprintf(out, " %s", word);
    *col += 1 + len;
}

void cm_cli_usage(const cm_cli_spec *spec, FILE *out)
{
    static const char *const tail[] = {"[--check-config]", "[--help]", "[--version]"};
    size_t width = strlen("--config FILE");
    for (size_t i = 0; i < spec->nflags; i++) {
        size_t w = strlen(spec->flags[i].name) + strlen(spec->flags[i].metavar) + 3;
        width = w > width ? w : width;
    }
    size_t col = (size_t)fprintf(out, "usage: %s", spec->prog);
    size_t indent = col;
    usage_word(out, "--config FILE", indent, &col);
    for (size_t i = 0; i < spec->nflags; i++) {
        char word[128];
        snprintf(word, sizeof(word), "[--%s %s]", spec->flags[i].name, spec->flags[i].metavar);
        usage_word(out, word, indent, &col);
    }
    for (size_t i = 0; i < CM_ARRAY_LEN(tail); i++)
        usage_word(out, tail[i], indent, &col);
    fprintf(out, "\n\n  %-*s  %s\n", (int)width, "--config FILE",
            spec->config_help != NULL ? spec->config_help : "YAML config, keys below");
    for (size_t i = 0; i < spec->nflags; i++) {
        char left[128];
        snprintf(left, sizeof(left), "--%s %s", spec->flags[i].name, spec->flags[i].metavar);
        fprintf(out, "  %-*s  overrides '%s'\n", (int)width, left, spec->flags[i].key);
    }
    fprintf(out, "  %-*s  validate, print the effective config, exit 0 (2 on error)\n", (int)width,
            "--check-config");
    fprintf(out, "  %-*s  this text; the version\n\nconfig keys:\n", (int)width,
            "--help, --version");
    size_t kw = 0;
    for (size_t i = 0; i < spec->nkeys; i++)
        kw = strlen(spec->keys[i].path) > kw ? strlen(spec->keys[i].path) : kw;
    for (size_t i = 0; i < spec->nkeys; i++)
        fprintf(out, "  %-*s  %s (default \"%s\")\n", (int)kw, spec->keys[i].path,
                spec->keys[i].help ? spec->keys[i].help : "",
                spec->keys[i].defval ? spec->keys[i].defval : "");
}
