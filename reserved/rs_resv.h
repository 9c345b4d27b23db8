/*
 * rs_resv: reading reservations: the JSON of one reservation (SPEC §6), GET
 * /reservations/{id}, GET /users/{id}/reservations (newest first, cursor pages), and the
 * read-back the booking path does inside its transaction.
 *
 * A reservation is read as rows of RS_RESV_COLS, one per seat, ordered by reservation
 * then seat (statements elsewhere, such as rs_booking's capture, select the same columns
 * so rs_resv_json reads them too). Results are borrowed for the callback (rs_db); the
 * JSON returned belongs to the caller.
 */
#ifndef RS_RESV_H
#define RS_RESV_H

#include <jansson.h>
#include <stdint.h>
#include "rs_db.h"
#include "rs_http.h"

/* The columns of one reservation row r joined with one of its seats (see RS_RESV_JOIN). */
#define RS_RESV_COLS                                                                               \
    "r.id, r.user_id, r.performance_id, r.status, r.normal_price, r.vip_price,"                    \
    " r.total_amount, r.payment_id,"                                                               \
    " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                 \
    " s.seat_id, vs.row_label, vs.number, s.seat_type, s.price"
#define RS_RESV_JOIN                                                                               \
    " JOIN reservation_seats s ON s.reservation_id = r.id JOIN venue_seats vs ON vs.id = "         \
    "s.seat_id"

void rs_resv_register(rs_db *db);

/* One reservation from the rows of RS_RESV_COLS starting at *row; moves *row past them. */
json_t *rs_resv_json(const PGresult *pg, int *row);
/* The same with the columns of RS_RESV_COLS starting at column c (a batch's result). */
json_t *rs_resv_json_at(const PGresult *pg, int *row, int c);
/* Reads reservation id on a leased connection: rows of RS_RESV_COLS, none when absent. */
cm_rc rs_resv_read(rs_db_conn *conn, int64_t id, rs_db_cb cb, void *arg) CM_MUSTCHECK;
/* Answers r with reservation id: 200 with it, 404 NOT_FOUND or 503 UNAVAILABLE. */
void rs_resv_answer(rs_req *r, int64_t id);

/* Handlers of GET /reservations/{id} and GET /users/{id}/reservations (the route table is
 * rs_booking's: one table keeps the routes of a path in the order Allow lists them). */
void rs_resv_get(rs_req *r);
void rs_resv_list_user(rs_req *r);

#endif
