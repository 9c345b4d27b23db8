/*
 * cx_history: the JSON-lines reader of the chaos history and fault log (see cx_history.h).
 * Field names follow the history contract of the chaos suite (prompts: chaos.md); absent
 * optional fields read as zero / empty, so older or partial records still load.
 */
#include "cx_history.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_hash.h"
#include "cx_mem.h"

static const char *const kind_names[] = {"book", "cancel",  "read_seats", "counter_incr",
                                         "hold", "release", "other"};
static const char *const outcome_names[] = {"ok", "fail", "unknown"};

const char *cx_kind_name(cx_kind k)
{
    return (size_t)k < CM_ARRAY_LEN(kind_names) ? kind_names[k] : "?";
}

const char *cx_outcome_name(cx_outcome o)
{
    return (size_t)o < CM_ARRAY_LEN(outcome_names) ? outcome_names[o] : "?";
}

/* Integers may come as JSON numbers or, for 64-bit fences, as decimal strings. */
static int64_t get_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    if (json_is_string(v))
        return (int64_t)strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static uint64_t get_u64(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return (uint64_t)strtoull(json_string_value(v), NULL, 10);
    return (uint64_t)get_int(obj, key);
}

static void get_str(const json_t *obj, const char *key, char *out, size_t outlen)
{
    const json_t *v = json_object_get(obj, key);
    snprintf(out, outlen, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void *grow(void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 256;
    return cx_xrealloc(arr, *cap * elem);
}

static cx_kind parse_kind(const char *s)
{
    for (size_t i = 0; i < CX_OP_OTHER; i++)
        if (strcmp(s, kind_names[i]) == 0)
            return (cx_kind)i;
    return CX_OP_OTHER;
}

static cx_outcome parse_outcome(const char *s)
{
    if (strcmp(s, "ok") == 0)
        return CX_OK;
    if (strcmp(s, "fail") == 0)
        return CX_FAIL;
    return CX_UNKNOWN; /* no answer, or a value we do not know: assume the least */
}

static cx_write parse_write(const char *s)
{
    if (strcmp(s, "applied") == 0)
        return CX_WRITE_APPLIED;
    if (strcmp(s, "rejected") == 0)
        return CX_WRITE_REJECTED;
    if (strcmp(s, "error") == 0)
        return CX_WRITE_ERROR;
    return CX_WRITE_NONE;
}

static void load_op(cx_op *op, const json_t *o)
{
    char buf[64];
    memset(op, 0, sizeof(*op));
    op->id = get_int(o, "id");
    op->client = get_int(o, "client");
    get_str(o, "op", buf, sizeof(buf));
    op->kind = parse_kind(buf);
    get_str(o, "outcome", buf, sizeof(buf));
    op->outcome = parse_outcome(buf);
    op->start_ms = get_int(o, "start_ms");
    op->end_ms = get_int(o, "end_ms");
    op->status = (int)get_int(o, "status");
    op->perf = get_int(o, "perf");
    op->user = get_int(o, "user");
    op->reservation = get_int(o, "reservation");
    get_str(o, "code", op->code, sizeof(op->code));
    get_str(o, "server", op->server, sizeof(op->server));
    op->hold = get_int(o, "hold");
    op->expires_ms = get_int(o, "expires_ms");
    const json_t *pay = json_object_get(o, "payment");
    if (json_is_string(pay))
        op->payment = cx_xstrdup(json_string_value(pay));
    const json_t *seats = json_object_get(o, "seats");
    if (json_is_array(seats) && json_array_size(seats) > 0) {
        op->seats = cx_xcalloc(json_array_size(seats), sizeof(int64_t));
        size_t i;
        const json_t *s;
        json_array_foreach(seats, i, s)
        {
            if (json_is_integer(s))
                op->seats[op->n_seats++] = (int64_t)json_integer_value(s);
        }
        qsort(op->seats, op->n_seats, sizeof(int64_t), cmp_i64);
    }
    op->counter = get_int(o, "counter");
    op->fence = get_u64(o, "fence");
    op->has_read = json_object_get(o, "read") != NULL;
    op->lost = json_is_true(json_object_get(o, "lost"));
    get_str(o, "write", buf, sizeof(buf));
    op->write = parse_write(buf);
}

static void load_fault(cx_fault *f, const json_t *o)
{
    memset(f, 0, sizeof(*f));
    get_str(o, "kind", f->kind, sizeof(f->kind));
    get_str(o, "target", f->target, sizeof(f->target));
    get_str(o, "note", f->note, sizeof(f->note));
    f->start_ms = get_int(o, "start_ms");
    f->end_ms = get_int(o, "end_ms");
    f->breaks_redlock = json_is_true(json_object_get(o, "breaks_redlock"));
}

cm_rc cx_history_load(cx_history *h, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return CM_ERR;
    }
    size_t op_cap = h->n_ops, fault_cap = h->n_faults;
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, fp) >= 0) {
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        json_t *o = json_loads(line, 0, NULL);
        char type[16];
        if (!json_is_object(o)) {
            h->bad_lines++;
            json_decref(o);
            continue;
        }
        get_str(o, "type", type, sizeof(type));
        if (strcmp(type, "op") == 0) {
            h->ops = grow(h->ops, h->n_ops, &op_cap, sizeof(cx_op));
            load_op(&h->ops[h->n_ops++], o);
        } else if (strcmp(type, "fault") == 0) {
            h->faults = grow(h->faults, h->n_faults, &fault_cap, sizeof(cx_fault));
            load_fault(&h->faults[h->n_faults++], o);
        } else {
            h->bad_lines++;
        }
        json_decref(o);
    }
    free(line);
    fclose(fp);
    return CM_OK;
}

const char *cx_history_str(const cx_history *h, uint32_t i)
{
    return i < h->n_strs ? h->strs[i] : "";
}

/* The index of s in h->strs, added when new: a history repeats a few names very often. */
static uint32_t intern(cx_history *h, const char *s)
{
    if (h->str_ids == NULL) {
        h->str_ids = cm_hash_new(CM_HASH_STR);
        if (h->str_ids == NULL)
            exit(2);
        h->strs = cx_xcalloc(1, sizeof(char *));
        h->strs[0] = cx_xstrdup("");
        h->n_strs = 1;
        if (cm_hash_put_str(h->str_ids, h->strs[0], (void *)(uintptr_t)1) != CM_OK)
            exit(2);
    }
    void *v = cm_hash_get_str(h->str_ids, s);
    if (v != NULL)
        return (uint32_t)((uintptr_t)v - 1);
    h->strs = cx_xrealloc(h->strs, (h->n_strs + 1) * sizeof(char *));
    h->strs[h->n_strs] = cx_xstrdup(s);
    if (cm_hash_put_str(h->str_ids, h->strs[h->n_strs], (void *)(uintptr_t)(h->n_strs + 1)) !=
        CM_OK)
        exit(2); /* out of memory: cx_mem's rule */
    return (uint32_t)h->n_strs++;
}

static bool parse_lock_ev(const char *s, cx_lock_ev *ev)
{
    static const char *const names[] = {"grant", "renew", "release", "lost"};
    for (size_t i = 0; i < CM_ARRAY_LEN(names); i++)
        if (strcmp(s, names[i]) == 0) {
            *ev = (cx_lock_ev)i;
            return true;
        }
    return false;
}

cm_rc cx_history_load_locks(cx_history *h, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return CM_ERR;
    }
    size_t cap = h->n_lock_events;
    uint32_t file = (uint32_t)h->lock_files++, lineno = 0;
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, fp) >= 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        json_t *o = json_loads(line, 0, NULL);
        char buf[256];
        cx_lock_event e;
        memset(&e, 0, sizeof(e));
        get_str(o, "ev", buf, sizeof(buf));
        if (!json_is_object(o) || !parse_lock_ev(buf, &e.ev) ||
            !json_is_string(json_object_get(o, "res"))) {
            h->lock_bad_lines++; /* not an event, or cut short by a kill */
            json_decref(o);
            continue;
        }
        get_str(o, "src", buf, sizeof(buf));
        e.src = intern(h, buf);
        get_str(o, "res", buf, sizeof(buf));
        e.res = intern(h, buf);
        get_str(o, "sess", buf, sizeof(buf));
        e.sess = intern(h, buf);
        get_str(o, "reason", buf, sizeof(buf));
        e.reason = intern(h, buf);
        e.fence = get_u64(o, "fence");
        e.t_us = get_int(o, "t_us");
        e.deadline_us = get_int(o, "deadline_us");
        e.file = file;
        e.line = lineno;
        h->lock_events = grow(h->lock_events, h->n_lock_events, &cap, sizeof(cx_lock_event));
        h->lock_events[h->n_lock_events++] = e;
        json_decref(o);
    }
    free(line);
    fclose(fp);
    return CM_OK;
}

void cx_history_free(cx_history *h)
{
    for (size_t i = 0; i < h->n_ops; i++) {
        free(h->ops[i].seats);
        free(h->ops[i].payment);
    }
    free(h->ops);
    free(h->faults);
    free(h->lock_events);
    for (size_t i = 0; i < h->n_strs; i++)
        free(h->strs[i]);
    free(h->strs);
    cm_hash_free(h->str_ids);
    memset(h, 0, sizeof(*h));
}
