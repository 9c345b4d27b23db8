/*
 * rs_dberr: answers built from database errors carry a request id, never PostgreSQL's
 * text (contract in rs_dberr.h).
 */
#include "rs_dberr.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cm_log.h"
#include "rs_app.h"

static uint64_t dberr_seq;

void rs_dberr_new_id(char out[RS_DBERR_ID_MAX])
{
    snprintf(out, RS_DBERR_ID_MAX, "%s-%" PRIu64, rs_app_g.instance_id, ++dberr_seq);
}

void rs_dberr_log(char id[RS_DBERR_ID_MAX], int status, const char *what, const rs_db_result *res)
{
    rs_dberr_new_id(id);
    const char *st = res != NULL && res->sqlstate != NULL ? res->sqlstate : "";
    const char *msg = res != NULL && res->message != NULL ? res->message : "";
    if (status >= 500)
        log_warn("request id %s: %s failed (answered %d): %s %s", id, what, status, st, msg);
    else
        log_info("request id %s: %s refused (answered %d): %s %s", id, what, status, st, msg);
}

void rs_dberr_reply(rs_req *r, int status, const char *code, const char *text, const char *what,
                    const rs_db_result *res)
{
    char id[RS_DBERR_ID_MAX];
    rs_dberr_log(id, status, what, res);
    rs_reply_error(r, status, code, "%s; request id %s", text, id);
}

void rs_dberr_internal(rs_req *r, const char *what, const rs_db_result *res)
{
    char id[RS_DBERR_ID_MAX];
    rs_dberr_new_id(id);
    log_error("request id %s: %s failed: %s %s", id, what,
              res != NULL && res->sqlstate != NULL ? res->sqlstate : "",
              res != NULL && res->message != NULL ? res->message : "");
    rs_reply_error(r, 500, "INTERNAL", "internal error; request id %s", id);
}

bool rs_dberr_failed(rs_req *r, const rs_db_result *res, const char *what)
{
    const char *st = res->sqlstate ? res->sqlstate : "";
    if (res->ok)
        return false;
    if (res->unavailable)
        rs_dberr_reply(r, 503, "UNAVAILABLE", "the database is unavailable", what, res);
    else if (strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0 || strcmp(st, "40001") == 0 ||
             strcmp(st, "40P01") == 0)
        /* lock_timeout, statement_timeout, serialization, deadlock: transient */
        rs_dberr_reply(r, 503, "UNAVAILABLE", "the database is busy, retry", what, res);
    else if (strcmp(st, "22007") == 0 || strcmp(st, "22008") == 0)
        rs_dberr_reply(r, 400, "BAD_REQUEST", "a date/time is not a valid one", what, res);
    else if (strncmp(st, "22", 2) == 0 || strcmp(st, "23514") == 0)
        rs_dberr_reply(r, 400, "BAD_REQUEST", "a value is not allowed", what, res);
    else
        rs_dberr_internal(r, what, res);
    return true;
}
