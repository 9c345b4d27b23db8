/*
 * cm_config: table-driven YAML configuration. Owns the mapping from YAML
 * documents and flag text to a program's config struct, described by a
 * cm_cfg_key table. Uses the libyaml EVENT parser; every event taken from
 * the parser is deleted, and the parser itself is deleted on every path.
 * Values are parsed into a temporary first and stored only when valid, so
 * a bad flag leaves the target unchanged.
 */
#include "cm_config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "cm_log.h"
#include "cm_parse.h"
#include "cm_strbuf.h"

#define CFG_PATH_MAX 512
#define CFG_WHY_MAX  512

/* One parsed value, before it is stored into the target. */
typedef union cfg_value {
    int64_t i;
    double d;
    char *s;
    bool b;
    cm_addr a;
    cm_addr_list l;
    cm_str_list sl;
    int e;
} cfg_value;

/* A dotted path met in the document, and the line of its key (duplicates). */
typedef struct cfg_seen {
    char *path;
    size_t line;
} cfg_seen;

/* State of one load: the parser and the paths already seen (duplicates). */
typedef struct cfg_ctx {
    const cm_cfg_key *table;
    size_t n;
    void *target;
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
    yaml_parser_t parser;
    cfg_seen *seen; /* dotted paths met so far in this document */
    size_t nseen, capseen;
} cfg_ctx;

static const char *const cfg_level_names[] = {"error", "warn", "info", "debug", NULL};

static char *cfg_strdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        fatal("out of memory copying a config string");
    return p;
}

static void *cfg_field(const cm_cfg_key *k, void *target)
{
    return (char *)target + k->offset;
}

static const cm_cfg_key *cfg_find(const cm_cfg_key *table, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].path, path) == 0)
            return &table[i];
    return NULL;
}

/* True if some key lives below path ("redlock" for "redlock.redis_timeout_ms"). */
static bool cfg_is_section(const cm_cfg_key *table, size_t n, const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < n; i++)
        if (strncmp(table[i].path, path, len) == 0 && table[i].path[len] == '.')
            return true;
    return false;
}

static void cfg_names(cm_strbuf *sb, const char *const *names)
{
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        cm_strbuf_printf(sb, "%s%s", i > 0 ? ", " : "", names[i]);
}

/* "must be ..." for a key, as shown in every type or range error. */
static void cfg_expect(const cm_cfg_key *k, char *why, size_t whylen, const char *detail)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    switch (k->type) {
    case CM_CFG_INT:
        cm_strbuf_printf(&sb, "must be an integer in %" PRId64 "..%" PRId64, k->imin, k->imax);
        break;
    case CM_CFG_DOUBLE:
        cm_strbuf_printf(&sb, "must be a number in %g..%g", k->dmin, k->dmax);
        break;
    case CM_CFG_STRING:
        cm_strbuf_printf(&sb, "must be a string");
        break;
    case CM_CFG_BOOL:
        cm_strbuf_printf(&sb, "must be true or false");
        break;
    case CM_CFG_ADDR:
        cm_strbuf_printf(&sb, "must be host:port%s", k->optional ? " or \"\"" : "");
        break;
    case CM_CFG_ADDR_LIST:
        cm_strbuf_printf(&sb, "must be a list of host:port");
        break;
    case CM_CFG_ENUM:
        cm_strbuf_printf(&sb, "must be one of ");
        cfg_names(&sb, k->enum_values);
        break;
    case CM_CFG_LOGLEVEL:
        cm_strbuf_printf(&sb, "must be one of ");
        cfg_names(&sb, cfg_level_names);
        break;
    case CM_CFG_STRING_LIST:
        cm_strbuf_printf(&sb, "must be a list of strings");
        break;
    }
    if (detail != NULL && detail[0] != '\0')
        cm_strbuf_printf(&sb, " (%s)", detail);
    snprintf(why, whylen, "%s", cm_strbuf_str(&sb));
    cm_strbuf_free(&sb);
}

static bool cfg_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < CM_ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool cfg_parse_name(const char *text, const char *const *names, int *out)
{
    for (int i = 0; names != NULL && names[i] != NULL; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

static void cfg_strlist_free(cm_str_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* Appends a copy of the len bytes at s. */
static void cfg_strlist_add(cm_str_list *l, const char *s, size_t len)
{
    char **items = realloc(l->items, (l->count + 1) * sizeof(*items));
    char *copy = strndup(s, len);
    if (items == NULL || copy == NULL)
        fatal("out of memory reading config");
    l->items = items;
    l->items[l->count++] = copy;
}

/* "a, b,c" -> {"a","b","c"}; "" -> {}. Spaces around items go (they are never part of an
 * origin or a name); an empty item is an error, as it is most likely a typo. */
static cm_rc cfg_strlist_parse(const char *text, cm_str_list *out, char *detail, size_t detlen)
{
    cm_str_list l = {NULL, 0};
    const char *p = text;
    if (text[0] == '\0') {
        *out = l;
        return CM_OK;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == p) {
            snprintf(detail, detlen, "item %zu is empty", l.count + 1);
            cfg_strlist_free(&l);
            return CM_ERR;
        }
        cfg_strlist_add(&l, p, (size_t)(end - p));
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = l;
    return CM_OK;
}

/* Parses flag/scalar text for key k into v (allocating strings and lists).
 * On failure writes "must be ..." into why and allocates nothing. */
static cm_rc cfg_value_parse(const cm_cfg_key *k, const char *text, cfg_value *v, char *why,
                             size_t whylen)
{
    char detail[CFG_WHY_MAX] = "";
    memset(v, 0, sizeof(*v));
    switch (k->type) {
    case CM_CFG_INT:
        if (cm_parse_i64(text, k->imin, k->imax, &v->i))
            return CM_OK;
        break;
    case CM_CFG_DOUBLE:
        if (cm_parse_double(text, k->dmin, k->dmax, &v->d))
            return CM_OK;
        break;
    case CM_CFG_STRING:
        v->s = cfg_strdup(text);
        return CM_OK;
    case CM_CFG_BOOL:
        if (cfg_parse_bool(text, &v->b))
            return CM_OK;
        break;
    case CM_CFG_ADDR:
        if (text[0] == '\0' && k->optional)
            return CM_OK;
        if (cm_addr_parse(text, &v->a, detail, sizeof(detail)) == CM_OK)
            return CM_OK;
        break;
    case CM_CFG_ADDR_LIST:
        if (text[0] == '\0')
            return CM_OK;
        if (cm_addr_parse_list(text, &v->l.items, &v->l.count, detail, sizeof(detail)) == CM_OK)
            return CM_OK;
        break;
    case CM_CFG_ENUM:
        if (cfg_parse_name(text, k->enum_values, &v->e))
            return CM_OK;
        break;
    case CM_CFG_LOGLEVEL:
        if (cfg_parse_name(text, cfg_level_names, &v->e))
            return CM_OK;
        break;
    case CM_CFG_STRING_LIST:
        if (cfg_strlist_parse(text, &v->sl, detail, sizeof(detail)) == CM_OK)
            return CM_OK;
        break;
    }
    cfg_expect(k, why, whylen, detail);
    return CM_ERR;
}

static void cfg_value_free(const cm_cfg_key *k, cfg_value *v)
{
    if (k->type == CM_CFG_STRING)
        free(v->s);
    else if (k->type == CM_CFG_ADDR_LIST)
        free(v->l.items);
    else if (k->type == CM_CFG_STRING_LIST)
        cfg_strlist_free(&v->sl);
    memset(v, 0, sizeof(*v));
}

/* The key's own semantic check on a parsed value not yet stored (see cm_cfg_validate_fn).
 * On CM_ERR why holds its reason and v is freed, so the caller only reports. */
static cm_rc cfg_value_check(const cm_cfg_key *k, cfg_value *v, char *why, size_t whylen)
{
    if (k->validate == NULL)
        return CM_OK;
    why[0] = '\0';
    /* &v points to each member of the union, so it is the field type's pointer. */
    if (k->validate(v, why, whylen) == CM_OK)
        return CM_OK;
    if (why[0] == '\0')
        snprintf(why, whylen, "invalid value");
    cfg_value_free(k, v);
    return CM_ERR;
}

/* Moves v into the target, freeing what the field held before. */
static void cfg_value_store(const cm_cfg_key *k, void *target, cfg_value *v)
{
    void *f = cfg_field(k, target);
    switch (k->type) {
    case CM_CFG_INT:
        *(int64_t *)f = v->i;
        break;
    case CM_CFG_DOUBLE:
        *(double *)f = v->d;
        break;
    case CM_CFG_STRING:
        free(*(char **)f);
        *(char **)f = v->s;
        break;
    case CM_CFG_BOOL:
        *(bool *)f = v->b;
        break;
    case CM_CFG_ADDR:
        *(cm_addr *)f = v->a;
        break;
    case CM_CFG_ADDR_LIST:
        free(((cm_addr_list *)f)->items);
        *(cm_addr_list *)f = v->l;
        break;
    case CM_CFG_ENUM:
    case CM_CFG_LOGLEVEL:
        *(int *)f = v->e;
        break;
    case CM_CFG_STRING_LIST:
        cfg_strlist_free((cm_str_list *)f);
        *(cm_str_list *)f = v->sl;
        break;
    }
    memset(v, 0, sizeof(*v));
}

void cm_cfg_free(const cm_cfg_key *table, size_t n, void *target)
{
    for (size_t i = 0; i < n; i++) {
        void *f = cfg_field(&table[i], target);
        if (table[i].type == CM_CFG_STRING) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (table[i].type == CM_CFG_ADDR_LIST) {
            free(((cm_addr_list *)f)->items);
            ((cm_addr_list *)f)->items = NULL;
            ((cm_addr_list *)f)->count = 0;
        } else if (table[i].type == CM_CFG_STRING_LIST) {
            cfg_strlist_free((cm_str_list *)f);
        }
    }
}

void cm_cfg_defaults(const cm_cfg_key *table, size_t n, void *target)
{
    cm_cfg_free(table, n, target);
    for (size_t i = 0; i < n; i++) {
        const cm_cfg_key *k = &table[i];
        cfg_value v;
        char why[CFG_WHY_MAX];
        memset(&v, 0, sizeof(v));
        if (k->type == CM_CFG_STRING && k->defval == NULL) {
            v.s = cfg_strdup("");
        } else if (k->defval != NULL && !(k->type == CM_CFG_ADDR && k->defval[0] == '\0') &&
                   cfg_value_parse(k, k->defval, &v, why, sizeof(why)) != CM_OK) {
            /* A bad default is a bug in the program's table, not a user error. */
            fatal("config table: default '%s' of key '%s' %s", k->defval, k->path, why);
        }
        cfg_value_store(k, target, &v);
    }
}

static cm_rc cfg_err(cfg_ctx *c, size_t line, const char *fmt, ...) CM_PRINTF(3, 4);

/* Writes "NAME:LINE: message" (line 0: "NAME: message"). Always CM_ERR. */
static cm_rc cfg_err(cfg_ctx *c, size_t line, const char *fmt, ...)
{
    char msg[CFG_WHY_MAX + CFG_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->err == NULL || c->errlen == 0)
        return CM_ERR;
    if (line > 0)
        snprintf(c->err, c->errlen, "%s:%zu: %s", c->name, line, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->name, msg);
    return CM_ERR;
}

static size_t cfg_line(const yaml_event_t *ev)
{
    return ev->start_mark.line + 1;
}

/* Line and column (1-based) of byte offset off in text, columns in characters as
 * libyaml counts them (a UTF-8 continuation byte does not start one). */
static void cfg_text_pos(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Reports the parser's error as "NAME:LINE:COL: YAML syntax error: problem (context
 * started at line L column C)", with libyaml's own words and 1-based positions. */
static cm_rc cfg_syntax_err(cfg_ctx *c, const char *text, size_t len)
{
    const yaml_parser_t *p = &c->parser;
    const char *problem = p->problem != NULL ? p->problem : "unknown error";
    char extra[160] = "";
    size_t line, col;

    if (p->error == YAML_MEMORY_ERROR)
        fatal("out of memory parsing %s", c->name);
    if (p->error == YAML_READER_ERROR) {
        /* The reader has no mark, only the byte offset of the bad byte. */
        cfg_text_pos(text, len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            snprintf(extra, sizeof(extra), " (0x%02X)", (unsigned)p->problem_value);
    } else {
        line = p->problem_mark.line + 1;
        col = p->problem_mark.column + 1;
        if (p->context != NULL)
            snprintf(extra, sizeof(extra), " (%s started at line %zu column %zu)", p->context,
                     p->context_mark.line + 1, p->context_mark.column + 1);
    }
    if (c->err != NULL && c->errlen > 0)
        snprintf(c->err, c->errlen, "%s:%zu:%zu: YAML syntax error: %s%s", c->name, line, col,
                 problem, extra);
    return CM_ERR;
}

/* Runs the parser over the whole text before anything is read into the target, so that
 * a syntax error is reported as one even where the events before it already look like a
 * bad value (an unclosed '[' swallows the next lines into the list). */
static cm_rc cfg_syntax_check(cfg_ctx *c, const char *text, size_t len)
{
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&c->parser, &ev))
            return cfg_syntax_err(c, text, len);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (end)
            return CM_OK;
    }
}

/* Takes the next event. The text passed cfg_syntax_check, so this fails only if libyaml
 * runs out of memory; the message is libyaml's all the same. */
static cm_rc cfg_next(cfg_ctx *c, yaml_event_t *ev)
{
    if (yaml_parser_parse(&c->parser, ev))
        return CM_OK;
    return cfg_syntax_err(c, "", 0);
}

/* Records path as seen at line; CM_ERR if it was already there (duplicate key), with
 * *first set to the line of the first one. */
static cm_rc cfg_mark_seen(cfg_ctx *c, const char *path, size_t line, size_t *first)
{
    for (size_t i = 0; i < c->nseen; i++) {
        if (strcmp(c->seen[i].path, path) == 0) {
            *first = c->seen[i].line;
            return CM_ERR;
        }
    }
    if (c->nseen == c->capseen) {
        size_t cap = c->capseen != 0 ? c->capseen * 2 : 16;
        cfg_seen *p = realloc(c->seen, cap * sizeof(*p));
        if (p == NULL)
            fatal("out of memory reading config");
        c->seen = p;
        c->capseen = cap;
    }
    c->seen[c->nseen].path = cfg_strdup(path);
    c->seen[c->nseen].line = line;
    c->nseen++;
    return CM_OK;
}

/* The error for a value whose shape does not fit the key at path. */
static cm_rc cfg_shape_err(cfg_ctx *c, size_t line, const char *path, const cm_cfg_key *k)
{
    char why[CFG_WHY_MAX];
    if (k != NULL) {
        cfg_expect(k, why, sizeof(why), NULL);
        return cfg_err(c, line, "key '%s': %s", path, why);
    }
    if (cfg_is_section(c->table, c->n, path))
        return cfg_err(c, line, "key '%s': must be a mapping", path);
    return cfg_err(c, line, "unknown key '%s'", path);
}

static cm_rc cfg_scalar(cfg_ctx *c, const char *path, const cm_cfg_key *k, yaml_event_t *ev)
{
    char why[CFG_WHY_MAX];
    cfg_value v;
    if (k == NULL)
        return cfg_shape_err(c, cfg_line(ev), path, k);
    if (cfg_value_parse(k, (const char *)ev->data.scalar.value, &v, why, sizeof(why)) != CM_OK ||
        cfg_value_check(k, &v, why, sizeof(why)) != CM_OK)
        return cfg_err(c, cfg_line(ev), "key '%s': %s", path, why);
    cfg_value_store(k, c->target, &v);
    return CM_OK;
}

/* One item of a list key taken from a sequence scalar, appended to v. */
static cm_rc cfg_seq_item(const cm_cfg_key *k, const char *text, cfg_value *v, char *why,
                          size_t whylen)
{
    if (k->type == CM_CFG_STRING_LIST) {
        if (text[0] == '\0') {
            snprintf(why, whylen, "is empty");
            return CM_ERR;
        }
        cfg_strlist_add(&v->sl, text, strlen(text));
        return CM_OK;
    }
    cm_addr *items = realloc(v->l.items, (v->l.count + 1) * sizeof(*items));
    if (items == NULL)
        fatal("out of memory reading config");
    v->l.items = items;
    if (cm_addr_parse(text, &v->l.items[v->l.count], why, whylen) != CM_OK)
        return CM_ERR;
    v->l.count++;
    return CM_OK;
}

/* A YAML sequence of scalars for a list key (ADDR_LIST or STRING_LIST); line is where
 * it starts, for the validator's message. */
static cm_rc cfg_seq(cfg_ctx *c, const char *path, const cm_cfg_key *k, size_t line)
{
    cfg_value v;
    char why[CFG_WHY_MAX];
    cm_rc rc = CM_ERR;
    memset(&v, 0, sizeof(v));
    for (size_t item = 1;; item++) {
        yaml_event_t ev;
        if (cfg_next(c, &ev) != CM_OK)
            goto done;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            cfg_shape_err(c, cfg_line(&ev), path, k);
            yaml_event_delete(&ev);
            goto done;
        }
        if (cfg_seq_item(k, (const char *)ev.data.scalar.value, &v, why, sizeof(why)) != CM_OK) {
            char expect[CFG_WHY_MAX];
            cfg_expect(k, expect, sizeof(expect), NULL);
            cfg_err(c, cfg_line(&ev), "key '%s': %s (item %zu%s%s)", path, expect, item,
                    k->type == CM_CFG_STRING_LIST ? " " : ": ", why);
            yaml_event_delete(&ev);
            goto done;
        }
        yaml_event_delete(&ev);
    }
    if (cfg_value_check(k, &v, why, sizeof(why)) != CM_OK) {
        cfg_err(c, line, "key '%s': %s", path, why);
        goto done;
    }
    cfg_value_store(k, c->target, &v);
    rc = CM_OK;
done:
    cfg_value_free(k, &v);
    return rc;
}

static cm_rc cfg_mapping(cfg_ctx *c, const char *prefix);

/* Handles the value event of key path (the event is owned by the caller). */
static cm_rc cfg_value_event(cfg_ctx *c, const char *path, yaml_event_t *ev)
{
    const cm_cfg_key *k = cfg_find(c->table, c->n, path);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return cfg_scalar(c, path, k, ev);
    case YAML_SEQUENCE_START_EVENT:
        if (k != NULL && (k->type == CM_CFG_ADDR_LIST || k->type == CM_CFG_STRING_LIST))
            return cfg_seq(c, path, k, cfg_line(ev));
        return cfg_shape_err(c, cfg_line(ev), path, k);
    case YAML_MAPPING_START_EVENT:
        if (k == NULL && cfg_is_section(c->table, c->n, path))
            return cfg_mapping(c, path);
        return cfg_shape_err(c, cfg_line(ev), path, k);
    case YAML_ALIAS_EVENT:
        return cfg_err(c, cfg_line(ev), "key '%s': aliases are not supported", path);
    default:
        return cfg_err(c, cfg_line(ev), "key '%s': unexpected YAML event", path);
    }
}

/* Reads key/value pairs up to the end of the current mapping. */
static cm_rc cfg_mapping(cfg_ctx *c, const char *prefix)
{
    for (;;) {
        yaml_event_t ev;
        char path[CFG_PATH_MAX];
        size_t line, first;
        cm_rc rc;

        if (cfg_next(c, &ev) != CM_OK)
            return CM_ERR;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return CM_OK;
        }
        line = cfg_line(&ev);
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return cfg_err(c, line, "mapping keys must be plain names");
        }
        int plen = snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                            (const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (plen < 0 || (size_t)plen >= sizeof(path))
            return cfg_err(c, line, "key too long");
        if (cfg_mark_seen(c, path, line, &first) != CM_OK)
            return cfg_err(c, line, "duplicate key '%s' (first at line %zu)", path, first);
        if (cfg_next(c, &ev) != CM_OK)
            return CM_ERR;
        rc = cfg_value_event(c, path, &ev);
        yaml_event_delete(&ev);
        if (rc != CM_OK)
            return CM_ERR;
    }
}

/* stream-start [document-start (mapping | empty scalar) document-end] stream-end */
static cm_rc cfg_document(cfg_ctx *c)
{
    yaml_event_t ev;
    bool had_doc = false;
    cm_rc rc = CM_OK;

    if (cfg_next(c, &ev) != CM_OK)
        return CM_ERR;
    yaml_event_delete(&ev); /* STREAM_START */
    for (;;) {
        if (cfg_next(c, &ev) != CM_OK)
            return CM_ERR;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return CM_OK;
        case YAML_DOCUMENT_START_EVENT:
            if (had_doc)
                rc = cfg_err(c, cfg_line(&ev), "only one YAML document is allowed");
            had_doc = true;
            break;
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_MAPPING_START_EVENT:
            rc = cfg_mapping(c, "");
            break;
        case YAML_SCALAR_EVENT:
            /* "---" alone or a document of comments yields one empty plain scalar. */
            if (ev.data.scalar.length != 0 || !ev.data.scalar.plain_implicit)
                rc = cfg_err(c, cfg_line(&ev), "top level must be a mapping of keys");
            break;
        default:
            rc = cfg_err(c, cfg_line(&ev), "top level must be a mapping of keys");
            break;
        }
        yaml_event_delete(&ev);
        if (rc != CM_OK)
            return CM_ERR;
    }
}

cm_rc cm_cfg_load_string(const cm_cfg_key *table, size_t n, void *target, const char *yaml,
                         size_t len, const char *name, char *err, size_t errlen)
{
    cfg_ctx c;
    cm_rc rc;

    memset(&c, 0, sizeof(c));
    c.table = table;
    c.n = n;
    c.target = target;
    c.name = name != NULL ? name : "<config>";
    c.err = err;
    c.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (yaml == NULL) {
        yaml = "";
        len = 0;
    }
    /* Two passes: the whole text through the parser, then the same events read into the
     * target; a file with a syntax error changes nothing. */
    for (int pass = 0; pass < 2; pass++) {
        if (!yaml_parser_initialize(&c.parser))
            fatal("cannot initialize the YAML parser");
        yaml_parser_set_input_string(&c.parser, (const unsigned char *)yaml, len);
        rc = pass == 0 ? cfg_syntax_check(&c, yaml, len) : cfg_document(&c);
        yaml_parser_delete(&c.parser);
        if (rc != CM_OK)
            break;
    }
    for (size_t i = 0; i < c.nseen; i++)
        free(c.seen[i].path);
    free(c.seen);
    return rc;
}

/* Reads the file at path into sb; on failure err gets "PATH: reason". */
static cm_rc cfg_read_file(const char *path, cm_strbuf *sb, char *err, size_t errlen)
{
    char chunk[4096];
    size_t got;
    struct stat st;
    cm_rc rc = CM_OK;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return CM_ERR;
    }
    /* fopen opens a directory for reading on Linux; say what is wrong, not EISDIR. */
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: is a directory, not a config file", path);
        fclose(f);
        return CM_ERR;
    }
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        cm_strbuf_append(sb, chunk, got);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = CM_ERR;
    }
    fclose(f);
    return rc;
}

cm_rc cm_cfg_load_file(const cm_cfg_key *table, size_t n, void *target, const char *path, char *err,
                       size_t errlen)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    cm_rc rc = cfg_read_file(path, &sb, err, errlen);
    if (rc == CM_OK)
        rc = cm_cfg_load_string(table, n, target, cm_strbuf_str(&sb), sb.len, path, err, errlen);
    cm_strbuf_free(&sb);
    return rc;
}

/* Skips the rest of a node whose start event was just taken (depth 1 inside it). */
static bool cfg_skip_node(yaml_parser_t *p)
{
    for (int depth = 1; depth > 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev))
            return false;
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        else if (ev.type == YAML_STREAM_END_EVENT)
            depth = 0;
        yaml_event_delete(&ev);
    }
    return true;
}

/* Looks for the key want in the mapping whose start was just taken; prefix is its path.
 * Returns the line of want's key, 0 if the mapping does not hold it. */
static size_t cfg_find_line(yaml_parser_t *p, const char *prefix, const char *want)
{
    for (;;) {
        yaml_event_t ev;
        char path[CFG_PATH_MAX];
        size_t line;
        bool is_scalar;
        if (!yaml_parser_parse(p, &ev))
            return 0;
        if (ev.type != YAML_SCALAR_EVENT) {
            /* the end of the mapping, or a key the loader would have refused */
            yaml_event_delete(&ev);
            return 0;
        }
        line = ev.start_mark.line + 1;
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                 (const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (strcmp(path, want) == 0)
            return line;
        if (!yaml_parser_parse(p, &ev))
            return 0;
        is_scalar = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT;
        bool inside = ev.type == YAML_MAPPING_START_EVENT &&
                      strncmp(want, path, strlen(path)) == 0 && want[strlen(path)] == '.';
        yaml_event_delete(&ev);
        if (inside)
            return cfg_find_line(p, path, want);
        if (!is_scalar && !cfg_skip_node(p))
            return 0;
    }
}

size_t cm_cfg_file_line(const char *file, const char *path)
{
    cm_strbuf sb = CM_STRBUF_INIT;
    yaml_parser_t p;
    size_t line = 0;
    char err[CFG_WHY_MAX];

    if (cfg_read_file(file, &sb, err, sizeof(err)) != CM_OK || !yaml_parser_initialize(&p)) {
        cm_strbuf_free(&sb);
        return 0;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)cm_strbuf_str(&sb), sb.len);
    /* stream-start, document-start, then the top-level mapping */
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev))
            break;
        yaml_event_type_t t = ev.type;
        yaml_event_delete(&ev);
        if (t == YAML_MAPPING_START_EVENT)
            line = cfg_find_line(&p, "", path);
        if (t != YAML_STREAM_START_EVENT && t != YAML_DOCUMENT_START_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    cm_strbuf_free(&sb);
    return line;
}

cm_rc cm_cfg_set(const cm_cfg_key *table, size_t n, void *target, const char *path,
                 const char *value, const char *origin, char *err, size_t errlen)
{
    char why[CFG_WHY_MAX];
    cfg_value v;
    const cm_cfg_key *k = cfg_find(table, n, path);

    if (origin == NULL)
        origin = path;
    if (k == NULL) {
        snprintf(err, errlen, "%s: unknown key '%s'", origin, path);
        return CM_ERR;
    }
    if (cfg_value_parse(k, value != NULL ? value : "", &v, why, sizeof(why)) != CM_OK ||
        cfg_value_check(k, &v, why, sizeof(why)) != CM_OK) {
        snprintf(err, errlen, "%s: key '%s': %s", origin, path, why);
        return CM_ERR;
    }
    cfg_value_store(k, target, &v);
    return CM_OK;
}

void cm_cfg_dump(const cm_cfg_key *table, size_t n, const void *target, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        const cm_cfg_key *k = &table[i];
        const void *f = (const char *)target + k->offset;
        char buf[CM_HOST_MAX + 16];
        fprintf(out, "%s = ", k->path);
        switch (k->type) {
        case CM_CFG_INT:
            fprintf(out, "%" PRId64, *(const int64_t *)f);
            break;
        case CM_CFG_DOUBLE:
            fprintf(out, "%g", *(const double *)f);
            break;
        case CM_CFG_STRING: {
            const char *v = *(char *const *)f != NULL ? *(char *const *)f : "";
            fprintf(out, "%s", k->secret && v[0] != '\0' ? "(hidden)" : v);
            break;
        }
        case CM_CFG_BOOL:
            fprintf(out, "%s", *(const bool *)f ? "true" : "false");
            break;
        case CM_CFG_ADDR: {
            const cm_addr *a = f;
            fprintf(out, "%s", a->port != 0 ? cm_addr_format(a, buf, sizeof(buf)) : "");
            break;
        }
        case CM_CFG_ADDR_LIST: {
            const cm_addr_list *l = f;
            for (size_t j = 0; j < l->count; j++)
                fprintf(out, "%s%s", j > 0 ? "," : "",
                        cm_addr_format(&l->items[j], buf, sizeof(buf)));
            break;
        }
        case CM_CFG_ENUM: {
            int e = *(const int *)f;
            fprintf(out, "%s", k->enum_values != NULL && e >= 0 ? k->enum_values[e] : "?");
            break;
        }
        case CM_CFG_LOGLEVEL: {
            int e = *(const int *)f;
            fprintf(out, "%s", e >= 0 && e <= CM_LOG_DEBUG ? cfg_level_names[e] : "?");
            break;
        }
        case CM_CFG_STRING_LIST: {
            /* In flag syntax, so a dump can be pasted back as one --flag value. */
            const cm_str_list *l = f;
            for (size_t j = 0; j < l->count; j++)
                fprintf(out, "%s%s", j > 0 ? "," : "", l->items[j]);
            break;
        }
        }
        fputc('\n', out);
    }
}
