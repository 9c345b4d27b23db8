/*
 * The seat map's text (rs_seatlist_text) against jansson's compact dump of the same seats
 * as JSON values (rs_seatlist_json): byte for byte equal on rows made in memory (libpq's
 * PQmakeEmptyPGresult + PQsetvalue: no server), with the strings jansson escapes
 * (quotes, backslashes, control characters), UTF-8, NULL layout columns, a LEFT JOIN's
 * empty row, and the venue's form without prices.
 */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "cm_strbuf.h"
#include "rs_seatlist.h"
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

Suite *ru_seatlist_suite(void)
{
    const ru_case cases[] = {
        {"seatlist_text_matches_json", test_text_matches_json, 0},
        {"seatlist_text_empty", test_text_empty, 0},
    };
    return ru_suite("seatlist", cases, sizeof(cases) / sizeof(cases[0]));
}
