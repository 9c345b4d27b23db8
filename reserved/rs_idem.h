/*
 * rs_idem: the Idempotency-Key records of POST /performances/{id}/reservations (SPEC §6):
 * one row per key with the request's fingerprint and the final answer given to it.
 *
 * How the booking path uses it: a lookup in autocommit before anything starts (a replay
 * costs no lock); inside the booking transaction the key's advisory lock and a second
 * read (two requests with one key that both passed the lookup serialize there, and the
 * second sees the first's record); the success record is stored inside the booking
 * transaction (it commits with the reservation), a final failure after it (autocommit).
 * 503 answers are never stored: they say "retry".
 *
 * A key is the caller's (SPEC §6a): what is stored and locked is "<caller's user id>:<the
 * header>", built by rs_idem_key_get only, so two users' equal keys are two records, and
 * the SQL functions (idem_get, rs_book_batch's lookup) need not know. Records are kept
 * idempotency.ttl_s, then rs_sweep deletes them.
 *
 * Ownership: results are borrowed for the callback (rs_db). rs_idem_replay's out->body
 * belongs to the caller. Statements are registered by rs_idem_register before
 * rs_db_start.
 */
#ifndef RS_IDEM_H
#define RS_IDEM_H

#include <jansson.h>
#include <stdbool.h>
#include "rs_db.h"
#include "rs_http.h"

#define RS_IDEM_HEADER_MAX 255 /* longest Idempotency-Key header accepted */
#define RS_IDEM_SCOPE_MAX  21  /* "<int64 user id>:" */
/* longest stored key: the caller's scope and the header */
#define RS_IDEM_KEY_MAX (RS_IDEM_SCOPE_MAX + RS_IDEM_HEADER_MAX)

/* The request's Idempotency-Key, scoped to its caller (rs_req_caller(r)->user_id), into
 * out ("" without one). False after answering 400 BAD_REQUEST: empty, longer than
 * RS_IDEM_HEADER_MAX bytes, or not valid UTF-8 (the key is a text parameter of every
 * statement that uses it, which PostgreSQL would refuse). */
bool rs_idem_key_get(rs_req *r, char out[RS_IDEM_KEY_MAX + 1]);
/* The header a stored key was built from (for messages): points into key. */
const char *rs_idem_key_header(const char *key);

void rs_idem_register(rs_db *db);

/* The record of key in autocommit; cb's rows: (request_hash, status_code, response),
 * none when the key is new. NULL when the statement could not be queued. */
rs_db_req *rs_idem_lookup(rs_db *db, const char *key, rs_db_cb cb, void *arg);
/* In a transaction: waits for the key's advisory lock (held until COMMIT/ROLLBACK). */
cm_rc rs_idem_lock(rs_db_conn *conn, const char *key, rs_db_cb cb, void *arg) CM_MUSTCHECK;
/* In a transaction, under rs_idem_lock: the record again, rows as rs_idem_lookup. */
cm_rc rs_idem_recheck(rs_db_conn *conn, const char *key, rs_db_cb cb, void *arg) CM_MUSTCHECK;
/* Stores the answer (status, response: a 2xx body or a SPEC §6 error body) under key,
 * on conn (inside the booking transaction) or, with conn NULL, in autocommit on db.
 * cb's rows: one when stored, none when a record with the key was there first. */
cm_rc rs_idem_store(rs_db *db, rs_db_conn *conn, const char *key, const char *fingerprint,
                    int status, const json_t *response, rs_db_cb cb, void *arg) CM_MUSTCHECK;

typedef enum rs_idem_replay_kind {
    RS_IDEM_REPLAY,     /* out holds the stored answer, to be sent as it was first */
    RS_IDEM_MISMATCH,   /* the key was used with another request (fingerprint) */
    RS_IDEM_UNREADABLE, /* the stored response is not JSON */
} rs_idem_replay_kind;

typedef struct rs_idem_answer {
    int status;
    char code[32];     /* the error code; "" for a 2xx answer */
    char message[256]; /* the error message */
    json_t *body;      /* 2xx: the body; error: its extra fields, or NULL. Caller's. */
} rs_idem_answer;

/* Reads the record in row 0 of pg (rs_idem_lookup / rs_idem_recheck) for a request with
 * this fingerprint. out is filled for RS_IDEM_REPLAY only. */
rs_idem_replay_kind rs_idem_replay(const PGresult *pg, const char *fingerprint,
                                   rs_idem_answer *out);
/* The same from row `row`, the three columns starting at col (a batch's result). */
rs_idem_replay_kind rs_idem_replay_at(const PGresult *pg, int row, int col, const char *fingerprint,
                                      rs_idem_answer *out);

/* The SPEC §6 body {"error": {code, message, extra...}} (extra borrowed, may be NULL). */
json_t *rs_idem_error_body(const char *code, const char *message, const json_t *extra);

#endif
