/*
 * rs_idem: Idempotency-Key records (contract in rs_idem.h).
 */
#include "rs_idem.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_core.h"
#include "rs_utf8.h"

static const rs_db_stmt idem_stmts[] = {
    {"idem_get",
     "SELECT request_hash, status_code, response::text FROM idempotency_keys WHERE key = $1", 1},
    /* Serializes requests with one key inside their transactions (hash collisions only
     * cost a little waiting). */
    {"idem_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1},
    {"idem_put",
     "INSERT INTO idempotency_keys (key, request_hash, status_code, response)"
     " VALUES ($1, $2, $3::int, $4::jsonb) ON CONFLICT (key) DO NOTHING RETURNING key",
     4},
};

bool rs_idem_key_get(rs_req *r, char out[RS_IDEM_KEY_MAX + 1])
{
    const char *key = rs_req_header(r, "Idempotency-Key");
    out[0] = '\0';
    if (key == NULL)
        return true;
    size_t len = strlen(key);
    if (len == 0 || len > RS_IDEM_HEADER_MAX) {
        rs_reply_error(r, 400, "BAD_REQUEST", "Idempotency-Key must be 1..%d characters",
                       RS_IDEM_HEADER_MAX);
        return false;
    }
    if (!rs_utf8_valid(key, len)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "Idempotency-Key must be valid UTF-8");
        return false;
    }
    /* The caller's scope: another user's equal key is another record. 0 until the gate
     * sets a caller (every anonymous request shares one scope). */
    int n = snprintf(out, RS_IDEM_KEY_MAX + 1, "%" PRId64 ":%s", rs_req_caller(r)->user_id, key);
    assert(n > 0 && (size_t)n <= RS_IDEM_KEY_MAX);
    (void)n;
    return true;
}

const char *rs_idem_key_header(const char *key)
{
    const char *colon = strchr(key, ':');
    return colon != NULL ? colon + 1 : key;
}

void rs_idem_register(rs_db *db)
{
    rs_db_register(db, idem_stmts, CM_ARRAY_LEN(idem_stmts));
}

rs_db_req *rs_idem_lookup(rs_db *db, const char *key, rs_db_cb cb, void *arg)
{
    const char *params[] = {key};
    return rs_db_exec(db, "idem_get", 1, params, cb, arg);
}

cm_rc rs_idem_lock(rs_db_conn *conn, const char *key, rs_db_cb cb, void *arg)
{
    const char *params[] = {key};
    return rs_db_conn_exec(conn, "idem_lock", 1, params, cb, arg);
}

cm_rc rs_idem_recheck(rs_db_conn *conn, const char *key, rs_db_cb cb, void *arg)
{
    const char *params[] = {key};
    return rs_db_conn_exec(conn, "idem_get", 1, params, cb, arg);
}

cm_rc rs_idem_store(rs_db *db, rs_db_conn *conn, const char *key, const char *fingerprint,
                    int status, const json_t *response, rs_db_cb cb, void *arg)
{
    char *text = json_dumps(response, JSON_COMPACT);
    if (text == NULL)
        return CM_ERR;
    char st[16];
    snprintf(st, sizeof(st), "%d", status);
    const char *params[] = {key, fingerprint, st, text};
    cm_rc rc;
    if (conn != NULL)
        rc = rs_db_conn_exec(conn, "idem_put", 4, params, cb, arg);
    else
        rc = rs_db_exec(db, "idem_put", 4, params, cb, arg) != NULL ? CM_OK : CM_ERR;
    free(text); /* params are copied */
    return rc;
}

static const char *str_or(const json_t *s, const char *dflt)
{
    return json_string_value(s) != NULL ? json_string_value(s) : dflt;
}

rs_idem_replay_kind rs_idem_replay(const PGresult *pg, const char *fingerprint, rs_idem_answer *out)
{
    return rs_idem_replay_at(pg, 0, 0, fingerprint, out);
}

rs_idem_replay_kind rs_idem_replay_at(const PGresult *pg, int row, int col, const char *fingerprint,
                                      rs_idem_answer *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(PQgetvalue(pg, row, col), fingerprint) != 0)
        return RS_IDEM_MISMATCH;
    json_t *stored = json_loads(PQgetvalue(pg, row, col + 2), 0, NULL);
    if (stored == NULL)
        return RS_IDEM_UNREADABLE;
    out->status = atoi(PQgetvalue(pg, row, col + 1));
    json_t *err = json_object_get(stored, "error");
    if (!json_is_object(err)) {
        out->body = stored;
        return RS_IDEM_REPLAY;
    }
    /* an error, replayed as it was first answered */
    snprintf(out->code, sizeof(out->code), "%s", str_or(json_object_get(err, "code"), "ERROR"));
    snprintf(out->message, sizeof(out->message), "%s", str_or(json_object_get(err, "message"), ""));
    json_t *extra = json_deep_copy(err);
    json_object_del(extra, "code");
    json_object_del(extra, "message");
    if (json_object_size(extra) == 0) {
        json_decref(extra);
        extra = NULL;
    }
    out->body = extra;
    json_decref(stored);
    return RS_IDEM_REPLAY;
}

json_t *rs_idem_error_body(const char *code, const char *message, const json_t *extra)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (extra != NULL)
        json_object_update(err, (json_t *)extra);
    return json_pack("{s:o}", "error", err);
}
