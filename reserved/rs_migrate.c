/*
 * rs_migrate: see rs_migrate.h. Owns one blocking PGconn for the duration of
 * rs_migrate_apply (start-up only, before the event loop).
 */
#include "rs_migrate.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"

/* "CREATE TABLE IF NOT EXISTS ... skipping" and the like are not worth a line each. */
static void quiet_notice(void *arg, const char *message)
{
    CM_UNUSED(arg);
    log_debug("migrate: %s", message);
}

/* PostgreSQL's error of r (or of the connection) on one line, into err. */
static void pg_error(char *err, size_t errlen, const char *what, PGconn *pg, const PGresult *r)
{
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!msg) {
        msg = PQerrorMessage(pg);
    }
    snprintf(err, errlen, "%s: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "", state ? state : "",
             state ? ")" : "");
    for (char *p = err; *p; p++) {
        if (*p == '\n') {
            *p = *(p + 1) ? ' ' : '\0';
        }
    }
}

/* Runs sql (no parameters); true when it succeeded. On failure err says what failed. */
static bool run(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        pg_error(err, errlen, what, pg, r);
    }
    PQclear(r);
    return ok;
}

static bool is_applied(const int *applied, int n, int version)
{
    for (int i = 0; i < n; i++) {
        if (applied[i] == version) {
            return true;
        }
    }
    return false;
}

/* One migration and its schema_migrations row in one transaction. */
static bool apply_one(PGconn *pg, const rs_migration *m, char *err, size_t errlen)
{
    char what[160], version[16];
    snprintf(what, sizeof what, "migration %s", m->name);
    snprintf(version, sizeof version, "%d", m->version);
    if (!run(pg, "BEGIN", what, err, errlen)) {
        return false;
    }
    if (!run(pg, m->sql, what, err, errlen)) {
        goto fail;
    }
    const char *params[2] = {version, m->name};
    PGresult *r = PQexecParams(pg,
                               "INSERT INTO schema_migrations (version, name, applied_at) "
                               "VALUES ($1, $2, now())",
                               2, NULL, params, NULL, NULL, 0);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        pg_error(err, errlen, what, pg, r);
    }
    PQclear(r);
    if (!ok || !run(pg, "COMMIT", what, err, errlen)) {
        goto fail;
    }
    log_info("migrate: applied %s", m->name);
    return true;
fail:
    PQclear(PQexec(pg, "ROLLBACK"));
    return false;
}

cm_rc rs_migrate_apply(const char *conninfo, char *err, size_t errlen)
{
    cm_rc rc = CM_ERR;
    bool locked = false;
    int *applied = NULL;
    PGresult *r = NULL;
    char sql[160];
    PGconn *pg = PQconnectdb(conninfo);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        pg_error(err, errlen, "migrate: connect", pg, NULL);
        goto done;
    }
    PQsetNoticeProcessor(pg, quiet_notice, NULL);
    /* Concurrent starters queue here: the first applies, the rest find it done. */
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", RS_MIGRATE_LOCK_KEY);
    if (!run(pg, sql, "migrate: advisory lock", err, errlen)) {
        goto done;
    }
    locked = true;
    if (!run(pg,
             "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
             "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
             "migrate: create schema_migrations", err, errlen)) {
        goto done;
    }
    r = PQexec(pg, "SELECT version FROM schema_migrations");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_error(err, errlen, "migrate: read schema_migrations", pg, r);
        goto done;
    }
    int n = PQntuples(r);
    applied = calloc((size_t)n + 1, sizeof *applied);
    if (!applied) {
        snprintf(err, errlen, "migrate: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        applied[i] = atoi(PQgetvalue(r, i, 0));
    }
    size_t done_now = 0;
    for (size_t i = 0; i < rs_migrations_n; i++) {
        if (is_applied(applied, n, rs_migrations[i].version)) {
            continue;
        }
        if (!apply_one(pg, &rs_migrations[i], err, errlen)) {
            goto done;
        }
        done_now++;
    }
    log_info("migrate: schema up to date (%zu applied now, %zu known)", done_now, rs_migrations_n);
    rc = CM_OK;
done:
    if (locked) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", RS_MIGRATE_LOCK_KEY);
        PQclear(PQexec(pg, sql));
    }
    PQclear(r);
    free(applied);
    PQfinish(pg);
    return rc;
}
