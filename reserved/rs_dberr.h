/*
 * rs_dberr: what a client is told about a failed database statement (SPEC §6a: an error
 * body never carries database text; a 500 carries only a request id that the log also
 * has). Every answer built from a PostgreSQL error gets a fresh request id
 * "<instance id>-<n>" (the process's random instance id, a counter): the answer's message
 * ends with it and one log line carries it with the SQLSTATE and PostgreSQL's text, so an
 * operator finds the cause from what the client saw. Why not PostgreSQL's text: it names
 * tables, constraints, functions and values of other rows.
 *
 * Owns: the request counter (one process, one loop). Nothing allocated.
 */
#ifndef RS_DBERR_H
#define RS_DBERR_H

#include "rs_db.h"
#include "rs_http.h"

#define RS_DBERR_ID_MAX 48 /* "<16 hex>-<uint64>" and the NUL */

/* A fresh request id into out. */
void rs_dberr_new_id(char out[RS_DBERR_ID_MAX]);
/* 500 INTERNAL "internal error; request id <id>"; the log line (error level) says what
 * failed (a statement's purpose, e.g. "POST /venues") and res's SQLSTATE and text (res
 * may be NULL: a failure that is not the database's, such as out of memory). */
void rs_dberr_internal(rs_req *r, const char *what, const rs_db_result *res);
/* status / code with "<text>; request id <id>" as the message; the log line (warn for a
 * 5xx, info otherwise) carries what, the id and res's SQLSTATE and text. */
void rs_dberr_reply(rs_req *r, int status, const char *code, const char *text, const char *what,
                    const rs_db_result *res);
/* Answers a failed autocommit statement of a route and returns true; false when res is a
 * success. Transient failures (no connection, lock or statement timeout, serialization,
 * deadlock) are 503 UNAVAILABLE, bad values 400, anything else 500. */
bool rs_dberr_failed(rs_req *r, const rs_db_result *res, const char *what);
/* The same log line for an answer built elsewhere (the booking machine's outcome): the
 * id goes into id for the message the caller builds. */
void rs_dberr_log(char id[RS_DBERR_ID_MAX], int status, const char *what, const rs_db_result *res);

#endif
