/*
 * rs_seatlist: the "seats" array of GET /venues/{id} and of the seat map
 * (GET /performances/{id}/seats), built from the rows of a statement. Each seat is
 *   {"id","row","number","type"[,"price","available","held"],"rowIndex","position"}
 * in the order the statement returns them (the hall's natural order: migration 040).
 * rowIndex and position are null only for a seat that was never laid out.
 */
#ifndef RS_SEATLIST_H
#define RS_SEATLIST_H

#include <jansson.h>
#include <libpq-fe.h>

#include "cm_strbuf.h"

/* Column numbers of the statement's seat fields. price, available and held are the seat
 * map's: price < 0 lists none of them (a venue's seats). held: the seat is held (SPEC §9),
 * a boolean column. */
typedef struct rs_seatlist_cols {
    int id, row, number, type, row_index, position;
    int price, available, held;
} rs_seatlist_cols;

/* A new array of the seats of every row whose id column is not NULL (a LEFT JOIN's
 * empty side), or NULL when out of memory. The caller owns it. */
json_t *rs_seatlist_json(const PGresult *pg, const rs_seatlist_cols *cols);

/* The same array as compact JSON text appended to out, byte for byte what jansson's
 * JSON_COMPACT dump of rs_seatlist_json's array is, without a JSON value per field: the
 * numbers are copied as PostgreSQL wrote them (its integer output is canonical decimal),
 * the strings escaped as jansson escapes them. The seat map's path (rs_seatmap). */
void rs_seatlist_text(const PGresult *pg, const rs_seatlist_cols *cols, cm_strbuf *out);

#endif
