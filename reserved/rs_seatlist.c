/*
 * rs_seatlist: see rs_seatlist.h.
 *
 * A seat map is the largest answer (a 20,000-seat hall), built on the event loop that
 * also hands the performance locks on, so it is built for speed, within jansson:
 * - its building blocks, not one json_pack format parse per seat, and no UTF-8 re-check
 *   of keys or of text that comes from the database (UTF-8 by construction);
 * - values that repeat from seat to seat are made once and shared (json_incref): the row
 *   label and rowIndex of the seats of one row (they come row by row), the type, the
 *   price of a type. A jansson value may have several parents (only cycles are
 *   forbidden); the last reference frees it. On a 10,000-seat map this saves more
 *   allocations than rowIndex and position added (five a seat).
 */
#include "rs_seatlist.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4 /* distinct recent values kept per field: a hall has two types, two prices */

/* The last few values of one field, each holding one reference. */
typedef struct slots {
    json_t *v[SLOTS];
    unsigned next; /* the slot a new value replaces */
} slots;

static json_int_t col_int(const PGresult *pg, int row, int col)
{
    return (json_int_t)strtoll(PQgetvalue(pg, row, col), NULL, 10);
}

/* A boolean column as JSON (json_true/json_false are shared singletons: no allocation). */
static json_t *col_bool(const PGresult *pg, int row, int col)
{
    return json_boolean(PQgetvalue(pg, row, col)[0] == 't');
}

/* Keeps v (stolen) in the oldest slot; returns it borrowed, NULL if v is. */
static json_t *slots_keep(slots *s, json_t *v)
{
    if (!v)
        return NULL;
    json_decref(s->v[s->next]);
    s->v[s->next] = v;
    s->next = (s->next + 1) % SLOTS;
    return v;
}

static void slots_free(slots *s)
{
    for (int i = 0; i < SLOTS; i++)
        json_decref(s->v[i]);
}

/* The string of column col, shared when a slot already holds it (borrowed). */
static json_t *shared_string(slots *s, const PGresult *pg, int row, int col)
{
    const char *text = PQgetvalue(pg, row, col);
    size_t len = (size_t)PQgetlength(pg, row, col);
    for (int i = 0; i < SLOTS; i++) {
        json_t *v = s->v[i];
        if (v && json_string_length(v) == len && memcmp(json_string_value(v), text, len) == 0)
            return v;
    }
    return slots_keep(s, json_stringn_nocheck(text, len));
}

/* The integer of column col, shared when a slot already holds it (borrowed); JSON null
 * for SQL NULL. */
static json_t *shared_integer(slots *s, const PGresult *pg, int row, int col)
{
    if (PQgetisnull(pg, row, col))
        return json_null();
    json_int_t n = col_int(pg, row, col);
    for (int i = 0; i < SLOTS; i++) {
        if (s->v[i] && json_integer_value(s->v[i]) == n)
            return s->v[i];
    }
    return slots_keep(s, json_integer(n));
}

/* key = v, a new value (stolen); false when out of memory. */
static bool set_new(json_t *seat, const char *key, json_t *v)
{
    return json_object_set_new_nocheck(seat, key, v) == 0;
}

/* key = v, a shared value (borrowed: one more reference); false when out of memory. */
static bool set_shared(json_t *seat, const char *key, json_t *v)
{
    return v && json_object_set_nocheck(seat, key, v) == 0;
}

json_t *rs_seatlist_json(const PGresult *pg, const rs_seatlist_cols *c)
{
    slots rows = {0}, row_index = {0}, types = {0}, prices = {0};
    json_t *seats = json_array();
    int n = PQntuples(pg);
    bool ok = seats != NULL;

    for (int i = 0; ok && i < n; i++) {
        if (PQgetisnull(pg, i, c->id))
            continue;
        json_t *seat = json_object();
        ok = json_array_append_new(seats, seat) == 0 &&
             set_new(seat, "id", json_integer(col_int(pg, i, c->id))) &&
             set_shared(seat, "row", shared_string(&rows, pg, i, c->row)) &&
             set_new(seat, "number", json_integer(col_int(pg, i, c->number))) &&
             set_shared(seat, "type", shared_string(&types, pg, i, c->type));
        if (ok && c->price >= 0)
            ok = set_shared(seat, "price", shared_integer(&prices, pg, i, c->price)) &&
                 set_new(seat, "available", col_bool(pg, i, c->available)) &&
                 set_new(seat, "held", col_bool(pg, i, c->held));
        ok = ok && set_shared(seat, "rowIndex", shared_integer(&row_index, pg, i, c->row_index)) &&
             set_new(seat, "position",
                     PQgetisnull(pg, i, c->position) ? json_null()
                                                     : json_integer(col_int(pg, i, c->position)));
    }
    slots_free(&rows);
    slots_free(&row_index);
    slots_free(&types);
    slots_free(&prices);
    if (!ok) {
        json_decref(seats);
        return NULL;
    }
    return seats;
}

/* ---- the same as text ---- */

#define PUT(out, lit) cm_strbuf_append((out), (lit), sizeof(lit) - 1)

/* A string, escaped as jansson's dump escapes one (no JSON_ENSURE_ASCII: UTF-8 as is). */
static void put_string(cm_strbuf *out, const char *s, size_t len)
{
    static const char short_esc[0x20] = {
        ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    size_t from = 0;
    PUT(out, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        cm_strbuf_append(out, s + from, i - from);
        from = i + 1;
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof(esc), "\\%c", c);
        else if (short_esc[c])
            snprintf(esc, sizeof(esc), "\\%c", short_esc[c]);
        else
            snprintf(esc, sizeof(esc), "\\u%04X", c);
        cm_strbuf_append(out, esc, strlen(esc));
    }
    cm_strbuf_append(out, s + from, len - from);
    PUT(out, "\"");
}

/* An integer column as PostgreSQL wrote it, or null. */
static void put_number(cm_strbuf *out, const PGresult *pg, int row, int col)
{
    if (PQgetisnull(pg, row, col))
        PUT(out, "null");
    else
        cm_strbuf_append(out, PQgetvalue(pg, row, col), (size_t)PQgetlength(pg, row, col));
}

static void put_bool(cm_strbuf *out, const PGresult *pg, int row, int col)
{
    if (PQgetvalue(pg, row, col)[0] == 't')
        PUT(out, "true");
    else
        PUT(out, "false");
}

void rs_seatlist_text(const PGresult *pg, const rs_seatlist_cols *c, cm_strbuf *out)
{
    int n = PQntuples(pg);
    bool first = true;
    PUT(out, "[");
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(pg, i, c->id))
            continue;
        if (!first)
            PUT(out, ",");
        first = false;
        PUT(out, "{\"id\":");
        put_number(out, pg, i, c->id);
        PUT(out, ",\"row\":");
        put_string(out, PQgetvalue(pg, i, c->row), (size_t)PQgetlength(pg, i, c->row));
        PUT(out, ",\"number\":");
        put_number(out, pg, i, c->number);
        PUT(out, ",\"type\":");
        put_string(out, PQgetvalue(pg, i, c->type), (size_t)PQgetlength(pg, i, c->type));
        if (c->price >= 0) {
            PUT(out, ",\"price\":");
            put_number(out, pg, i, c->price);
            PUT(out, ",\"available\":");
            put_bool(out, pg, i, c->available);
            PUT(out, ",\"held\":");
            put_bool(out, pg, i, c->held);
        }
        PUT(out, ",\"rowIndex\":");
        put_number(out, pg, i, c->row_index);
        PUT(out, ",\"position\":");
        put_number(out, pg, i, c->position);
        PUT(out, "}");
    }
    PUT(out, "]");
}
