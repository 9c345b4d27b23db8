/*
 * The seat map's text (rs_seatlist_text) against jansson's compact dump of the same seats
 * as JSON values (rs_seatlist_json): byte for byte equal on rows made in memory (libpq's
 * PQmakeEmptyPGresult + PQsetvalue: no server), with the strings jansson escapes
 * (quotes, backslashes, control characters), UTF-8, NULL layout columns, a LEFT JOIN's
 * empty row, and the venue's form without prices. And the kept map's patches
 * (rs_seatpatch) against the text of the changed rows written anew, and a text an
 * answer still holds (rs_blob) left as it was by the next patch.
 */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "cm_strbuf.h"
#include "rs_seatlist.h"
#include "rs_seatpatch.h"
#include "ru_suites.h"

#define NCOLS 9

/* Columns: id, row, number, type, price, available, row_index, position, held. NULL
 * cells are NULL pointers. */
static PGresult *make_rows(const char *const (*cells)[NCOLS], int nrows)
{
    PGresult *pg = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(pg);
    PGresAttDesc att[NCOLS];
    static const char *const names[NCOLS] = {"id",        "row",       "number",   "type", "price",
                                             "available", "row_index", "position", "held"};
    memset(att, 0, sizeof(att));
    for (int c = 0; c < NCOLS; c++) {
        att[c].name = (char *)names[c];
        att[c].format = 0;
        att[c].typlen = -1;
        att[c].atttypmod = -1;
    }
    ck_assert_int_eq(PQsetResultAttrs(pg, NCOLS, att), 1);
    for (int r = 0; r < nrows; r++)
        for (int c = 0; c < NCOLS; c++) {
            const char *v = cells[r][c];
            ck_assert_int_eq(PQsetvalue(pg, r, c, (char *)v, v ? (int)strlen(v) : -1), 1);
        }
    return pg;
}

static void check_same(const PGresult *pg, const rs_seatlist_cols *cols)
{
    json_t *arr = rs_seatlist_json(pg, cols);
    ck_assert_ptr_nonnull(arr);
    char *want = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    ck_assert_ptr_nonnull(want);
    cm_strbuf got = CM_STRBUF_INIT;
    rs_seatlist_text(pg, cols, &got);
    ck_assert_str_eq(cm_strbuf_str(&got), want);
    /* and the text is JSON that reads back to the same array */
    json_error_t err;
    json_t *back = json_loads(cm_strbuf_str(&got), 0, &err);
    ck_assert_msg(back != NULL, "not JSON: %s", err.text);
    json_decref(back);
    free(want);
    cm_strbuf_free(&got);
}

static const char *const rows[][NCOLS] = {
    {"1", "A", "1", "VIP", "120000", "t", "0", "0", "f"},
    {"2", "A", "2", "VIP", "120000", "f", "0", "1", "t"},
    {"3", "quote\"back\\slash", "3", "NORMAL", "50000", "t", "1", "0", "f"},
    {"4", "ctl\b\f\n\r\t\x01\x1f|", "4", "NORMAL", "50000", "t", "2", "0", "f"},
    {"5", "Reihe \xc3\xa9\xe2\x82\xac/", "5", "NORMAL", "50000", "f", NULL, NULL, "f"},
    {"9223372036854775807", "Z", "2147483647", "NORMAL", "1000000000000", "t", "7", "3", "f"},
    {NULL, NULL, NULL, NULL, "50000", NULL, NULL, NULL, NULL}, /* an empty LEFT JOIN side */
};

/* The seat map's columns in make_rows's order. */
static const rs_seatlist_cols map = {.id = 0,
                                     .row = 1,
                                     .number = 2,
                                     .type = 3,
                                     .price = 4,
                                     .available = 5,
                                     .row_index = 6,
                                     .position = 7,
                                     .held = 8};

START_TEST(test_text_matches_json)
{
    PGresult *pg = make_rows(rows, (int)(sizeof(rows) / sizeof(rows[0])));
    check_same(pg, &map);
    rs_seatlist_cols venue = map; /* GET /venues/{id}: no price, available, held */
    venue.price = -1;
    check_same(pg, &venue);
    PQclear(pg);
}
END_TEST

START_TEST(test_text_empty)
{
    PGresult *pg = make_rows(rows + 6, 1); /* a hall without seats: only the empty row */
    cm_strbuf got = CM_STRBUF_INIT;
    rs_seatlist_text(pg, &map, &got);
    ck_assert_str_eq(cm_strbuf_str(&got), "[]");
    cm_strbuf_free(&got);
    check_same(pg, &map);
    PQclear(pg);
}
END_TEST

/* ---- rs_seatpatch ---- */

#define MANY 300

/* MANY seats, ids not in the text's order (the index must not assume it), rows whose
 * strings need escaping and the fixture's own seats first. */
static PGresult *make_many(char (*cells)[NCOLS][24])
{
    static const char *const(*fixed)[NCOLS] = rows;
    const char *ptrs[MANY][NCOLS];
    for (int r = 0; r < MANY; r++)
        for (int c = 0; c < NCOLS; c++) {
            if (r < 6) {
                ptrs[r][c] = fixed[r][c];
                continue;
            }
            const char *v = cells[r][c];
            switch (c) {
            case 0:
                snprintf(cells[r][c], 24, "%d", (r * 7919) % 100003 + 10);
                break;
            case 1:
                snprintf(cells[r][c], 24, "R\"%d\\", r % 13);
                break;
            case 3:
                snprintf(cells[r][c], 24, "%s", r % 5 ? "NORMAL" : "VIP");
                break;
            case 5:
                snprintf(cells[r][c], 24, "%s", r % 3 ? "t" : "f");
                break;
            case 8:
                snprintf(cells[r][c], 24, "%s", r % 3 == 1 ? "t" : "f");
                break;
            default:
                snprintf(cells[r][c], 24, "%d", r);
                break;
            }
            ptrs[r][c] = v;
        }
    return make_rows(ptrs, MANY);
}

static void text_of(const PGresult *pg, cm_strbuf *out)
{
    cm_strbuf_free(out);
    rs_seatlist_text(pg, &map, out);
}

/* rs_seatpatch_init on a copy of sb's text (as reserved: a blob of its own). */
static bool init_from(rs_seatpatch *m, const cm_strbuf *sb, const int64_t *ids, size_t n)
{
    char *d = malloc(sb->len + 1);
    ck_assert_ptr_nonnull(d);
    memcpy(d, sb->data, sb->len + 1);
    rs_blob *text = rs_blob_take(d, sb->len);
    ck_assert_ptr_nonnull(text);
    bool ok = rs_seatpatch_init(m, text, ids, n);
    rs_blob_unref(text);
    return ok;
}

/* Random states for random seats, a render after each round: the patched text is byte
 * for byte the text of the same rows with those states; a round that changes nothing
 * leaves the text as it was. */
START_TEST(test_patch_matches_rebuild)
{
    static char cells[MANY][NCOLS][24];
    PGresult *pg = make_many(cells);
    int64_t ids[MANY];
    for (int r = 0; r < MANY; r++)
        ids[r] = strtoll(PQgetvalue(pg, r, 0), NULL, 10);
    cm_strbuf want = CM_STRBUF_INIT;
    text_of(pg, &want);
    rs_seatpatch m;
    ck_assert(init_from(&m, &want, ids, MANY));
    ck_assert_int_gt(rs_seatpatch_bytes(&m), want.len);
    unsigned seed = 7;
    for (int round = 0; round < 200; round++) {
        int changes = (int)(rand_r(&seed) % 12);
        for (int i = 0; i < changes; i++) {
            int r = (int)(rand_r(&seed) % MANY);
            bool held = rand_r(&seed) % 4 == 0;
            bool available = !held && rand_r(&seed) % 2 == 0;
            ck_assert(rs_seatpatch_set(&m, ids[r], available, held));
            ck_assert_int_eq(PQsetvalue(pg, r, 5, available ? "t" : "f", 1), 1);
            ck_assert_int_eq(PQsetvalue(pg, r, 8, held ? "t" : "f", 1), 1);
        }
        ck_assert(rs_seatpatch_render(&m));
        text_of(pg, &want);
        ck_assert_uint_eq(rs_blob_len(m.text), want.len);
        ck_assert(memcmp(rs_blob_data(m.text), want.data, want.len) == 0);
    }
    /* an answer still being written holds the text it was given: a render makes a new
     * one and leaves that one as it was */
    rs_blob *sent = rs_blob_ref(m.text);
    cm_strbuf copy = CM_STRBUF_INIT;
    cm_strbuf_append(&copy, rs_blob_data(sent), rs_blob_len(sent));
    bool avail0 = PQgetvalue(pg, 0, 5)[0] == 't', held0 = PQgetvalue(pg, 0, 8)[0] == 't';
    ck_assert(rs_seatpatch_set(&m, ids[0], !avail0 && !held0, false));
    ck_assert(rs_seatpatch_render(&m));
    ck_assert_ptr_ne(m.text, sent);
    ck_assert(rs_blob_len(m.text) != rs_blob_len(sent) ||
              memcmp(rs_blob_data(m.text), rs_blob_data(sent), rs_blob_len(sent)) != 0);
    ck_assert_uint_eq(rs_blob_len(sent), copy.len);
    ck_assert(memcmp(rs_blob_data(sent), copy.data, copy.len) == 0);
    rs_blob_unref(sent);
    cm_strbuf_free(&copy);
    ck_assert(rs_seatpatch_set(&m, ids[0], avail0, held0)); /* back to the rows' state */
    ck_assert(rs_seatpatch_render(&m));
    /* the same state again: nothing to write, the same bytes */
    const rs_blob *before = m.text;
    ck_assert(rs_seatpatch_set(&m, ids[0], PQgetvalue(pg, 0, 5)[0] == 't',
                               PQgetvalue(pg, 0, 8)[0] == 't'));
    ck_assert(rs_seatpatch_render(&m));
    ck_assert_ptr_eq(m.text, before);
    rs_seatpatch_free(&m);
    cm_strbuf_free(&want);
    PQclear(pg);
}
END_TEST

/* A text and ids that do not belong together are not kept; a set for a seat the map does
 * not have says so and changes nothing. */
START_TEST(test_patch_rejects_mismatch)
{
    PGresult *pg = make_rows(rows, 6);
    int64_t ids[6];
    for (int r = 0; r < 6; r++)
        ids[r] = strtoll(PQgetvalue(pg, r, 0), NULL, 10);
    cm_strbuf text = CM_STRBUF_INIT;
    text_of(pg, &text);
    rs_seatpatch m;
    ck_assert(!init_from(&m, &text, ids, 5)); /* a seat too many */
    ck_assert_ptr_null(m.text);
    int64_t twice[6] = {ids[0], ids[1], ids[2], ids[3], ids[4], ids[4]};
    ck_assert(!init_from(&m, &text, twice, 6)); /* an id twice */
    /* the venue's form: no states at all */
    rs_seatlist_cols venue = map;
    venue.price = -1;
    cm_strbuf bare = CM_STRBUF_INIT;
    rs_seatlist_text(pg, &venue, &bare);
    ck_assert(!init_from(&m, &bare, ids, 6));
    cm_strbuf_free(&bare);
    ck_assert(init_from(&m, &text, ids, 6));
    ck_assert(!rs_seatpatch_set(&m, 424242, false, true));
    ck_assert(rs_seatpatch_render(&m));
    ck_assert_str_eq(rs_blob_data(m.text), cm_strbuf_str(&text));
    rs_seatpatch_free(&m);
    /* a hall without seats: an empty map is kept and patches nothing */
    PGresult *empty = make_rows(rows + 6, 1);
    cm_strbuf none = CM_STRBUF_INIT;
    rs_seatlist_text(empty, &map, &none);
    ck_assert(init_from(&m, &none, NULL, 0));
    ck_assert(!rs_seatpatch_set(&m, 1, true, false));
    rs_seatpatch_free(&m);
    cm_strbuf_free(&none);
    PQclear(empty);
    cm_strbuf_free(&text);
    PQclear(pg);
}
END_TEST

Suite *ru_seatlist_suite(void)
{
    const ru_case cases[] = {
        {"seatlist_text_matches_json", test_text_matches_json, 0},
        {"seatlist_text_empty", test_text_empty, 0},
        {"seatpatch_matches_rebuild", test_patch_matches_rebuild, 0},
        {"seatpatch_rejects_mismatch", test_patch_rejects_mismatch, 0},
    };
    return ru_suite("seatlist", cases, sizeof(cases) / sizeof(cases[0]));
}
