/*
 * cm_flags: table-driven command lines for the tools (see the header). One pass over
 * argv; the error texts live here so every tool words them the same.
 */
#include "cm_flags.h"

#include <inttypes.h>
#include <string.h>

#include "cm_addr.h"
#include "cm_log.h"
#include "cm_parse.h"

static const cm_flag *flag_find(const cm_flags_spec *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->nflags; i++) {
        const cm_flag *f = &spec->flags[i];
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
            return f;
    }
    return NULL;
}

/* Stores value into f's destination; false when the value is not one f takes (why may
 * then hold a custom parser's reason). */
static bool flag_set(const cm_flag *f, const char *value, char *why, size_t whylen)
{
    switch (f->type) {
    case CM_FLAG_SWITCH:
        *(bool *)f->dst = true;
        return true;
    case CM_FLAG_STRING:
        *(const char **)f->dst = value;
        return true;
    case CM_FLAG_U64:
        return cm_parse_u64(value, f->lo, f->hi, (uint64_t *)f->dst);
    case CM_FLAG_DOUBLE:
        return cm_parse_double(value, f->dlo, f->dhi, (double *)f->dst);
    case CM_FLAG_LOG_LEVEL:
        return cm_log_level_parse(value, (cm_log_level *)f->dst) == CM_OK;
    case CM_FLAG_ADDR:
        return cm_addr_parse(value, (cm_addr *)f->dst, why, whylen) == CM_OK;
    case CM_FLAG_CUSTOM:
        return f->parse(value, f->dst, why, whylen);
    }
    return false;
}

static void flag_bad_value(const cm_flags_spec *spec, const cm_flag *f, const char *value,
                           const char *why)
{
    fprintf(stderr, "%s: --%s '%s': ", spec->prog, f->name, value);
    if (why[0] != '\0') {
        fprintf(stderr, "%s\n", why);
        return;
    }
    fprintf(stderr, "want ");
    if (f->want != NULL)
        fprintf(stderr, "%s\n", f->want);
    else if (f->type == CM_FLAG_LOG_LEVEL)
        fprintf(stderr, "error|warn|info|debug\n");
    else if (f->type == CM_FLAG_U64)
        fprintf(stderr, "an integer from %" PRIu64 " to %" PRIu64 "\n", f->lo, f->hi);
    else
        fprintf(stderr, "a number from %g to %g\n", f->dlo, f->dhi);
}

static cm_flags_result usage_error(const cm_flags_spec *spec)
{
    if (spec->usage != NULL)
        spec->usage(stderr);
    return CM_FLAGS_USAGE;
}

cm_flags_result cm_flags_parse(const cm_flags_spec *spec, int argc, char **argv, int first,
                               int *next)
{
    bool seen[64] = {false}; /* for the required check; tables are small */
    int i;
    for (i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (spec->usage != NULL)
                spec->usage(stdout);
            return CM_FLAGS_DONE;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", spec->prog, BOOKING_VERSION);
            return CM_FLAGS_DONE;
        }
        if (strcmp(a, "--") == 0 || a[0] != '-' || a[1] == '\0') {
            if (spec->stop_at_positional)
                break;
            fprintf(stderr, "%s: unexpected argument '%s'\n", spec->prog, a);
            return usage_error(spec);
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cm_flag *f = a[1] == '-' ? flag_find(spec, name, len) : NULL;
        if (f == NULL) {
            fprintf(stderr, "%s: unknown option '%s'\n", spec->prog, a);
            return usage_error(spec);
        }
        const char *value = NULL;
        if (f->type == CM_FLAG_SWITCH) {
            if (eq != NULL) {
                fprintf(stderr, "%s: --%s takes no value\n", spec->prog, f->name);
                return usage_error(spec);
            }
        } else if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "%s: --%s needs a value\n", spec->prog, f->name);
            return usage_error(spec);
        }
        char why[256] = "";
        if (!flag_set(f, value, why, sizeof(why))) {
            flag_bad_value(spec, f, value, why);
            return CM_FLAGS_USAGE;
        }
        size_t k = (size_t)(f - spec->flags);
        if (k < CM_ARRAY_LEN(seen))
            seen[k] = true;
        if (f->seen != NULL)
            *f->seen = true;
    }
    for (size_t k = 0; k < spec->nflags && k < CM_ARRAY_LEN(seen); k++) {
        const cm_flag *f = &spec->flags[k];
        if (f->required && !seen[k]) {
            fprintf(stderr, "%s: --%s%s%s is required\n", spec->prog, f->name,
                    f->metavar != NULL ? " " : "", f->metavar != NULL ? f->metavar : "");
            return usage_error(spec);
        }
    }
    if (next != NULL)
        *next = i;
    return CM_FLAGS_RUN;
}
