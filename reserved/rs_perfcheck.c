/*
 * rs_perfcheck: the set of performances known to exist and the statement that asks
 * (contract in rs_perfcheck.h). The set is a cm_hash of ids to a non-NULL marker; the
 * in-flight question is a small struct freed after its callback.
 */
#include "rs_perfcheck.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cm_hash.h"
#include "cm_log.h"

#define PERFCHECK_INT_MAX 24

static const rs_db_stmt perfcheck_stmts[] = {
    {"perf_exists", "SELECT 1 FROM performances WHERE id = $1::bigint", 1},
};

static cm_hash *known; /* perf id -> &known (a marker); NULL until the first yes */

typedef struct perfcheck_q {
    int64_t perf;
    rs_perfcheck_cb cb;
    void *arg;
} perfcheck_q;

void rs_perfcheck_register(rs_db *db)
{
    rs_db_register(db, perfcheck_stmts, CM_ARRAY_LEN(perfcheck_stmts));
}

bool rs_perfcheck_known(int64_t perf)
{
    return known != NULL && cm_hash_get_u64(known, (uint64_t)perf) != NULL;
}

/* Keeps perf as known; a full set starts over (the next question of each id refills it). */
static void perfcheck_remember(int64_t perf)
{
    if (known != NULL && cm_hash_count(known) >= RS_PERFCHECK_MAX) {
        cm_hash_free(known);
        known = NULL;
    }
    if (known == NULL && (known = cm_hash_new(CM_HASH_U64)) == NULL)
        return; /* out of memory: only the next booking asks again */
    if (cm_hash_put_u64(known, (uint64_t)perf, &known) != CM_OK)
        log_debug("performance %" PRId64 ": not kept as known (out of memory)", perf);
}

static void perfcheck_answered(void *arg, const rs_db_result *res)
{
    perfcheck_q *q = arg;
    rs_perfcheck_answer a = RS_PERFCHECK_FAILED;
    if (res->ok)
        a = PQntuples(res->pg) > 0 ? RS_PERFCHECK_EXISTS : RS_PERFCHECK_MISSING;
    if (a == RS_PERFCHECK_EXISTS)
        perfcheck_remember(q->perf);
    rs_perfcheck_cb cb = q->cb;
    void *cb_arg = q->arg;
    free(q);
    cb(cb_arg, a, res);
}

cm_rc rs_perfcheck_ask(rs_db *db, int64_t perf, rs_perfcheck_cb cb, void *arg)
{
    perfcheck_q *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return CM_ERR;
    q->perf = perf;
    q->cb = cb;
    q->arg = arg;
    char id[PERFCHECK_INT_MAX];
    snprintf(id, sizeof(id), "%" PRId64, perf);
    const char *params[] = {id};
    if (rs_db_exec(db, "perf_exists", 1, params, perfcheck_answered, q) == NULL) {
        free(q);
        return CM_ERR;
    }
    return CM_OK;
}

void rs_perfcheck_stop(void)
{
    cm_hash_free(known);
    known = NULL;
}
