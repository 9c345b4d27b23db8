/*
 * rs_migrate: the schema migrations (reserved/migrations/NNN_name.sql, embedded into the
 * binary at build time in name order) and applying them at start-up.
 *
 * rs_migrate_apply runs BEFORE the event loop starts, so it uses blocking libpq
 * (PQconnectdb, PQexec) on purpose: nothing else is running yet, and reserved must not
 * serve before its schema is there. Never call it from a loop callback.
 *
 * Several reserved processes may start at once: each takes the same PostgreSQL advisory
 * lock first, so one applies and the others wait, then find nothing left to do. Each
 * migration runs in its own transaction together with its row in schema_migrations
 * (version int primary key, name text, applied_at timestamptz): it is applied entirely
 * or not at all, and never twice. (So a migration cannot use statements that refuse to
 * run in a transaction, such as CREATE INDEX CONCURRENTLY.)
 */
#ifndef RS_MIGRATE_H
#define RS_MIGRATE_H

#include <stddef.h>
#include "cm_core.h"

typedef struct rs_migration {
    int version;      /* the leading number of the file name */
    const char *name; /* the file name, e.g. "001_init.sql" */
    const char *sql;  /* the file's text */
} rs_migration;

/* Generated at build time (rs_migrations_gen.c), ordered by version. */
extern const rs_migration rs_migrations[];
extern const size_t rs_migrations_n;

/* The advisory lock key every applier takes (pg_advisory_lock(bigint)). */
#define RS_MIGRATE_LOCK_KEY 7273646201LL

/* Connects with conninfo, takes the advisory lock, creates schema_migrations if needed and
 * applies every embedded migration not recorded there, in order. CM_ERR with a message
 * in err naming the migration and PostgreSQL's error. Blocking (see above). */
cm_rc rs_migrate_apply(const char *conninfo, char *err, size_t errlen) CM_MUSTCHECK;

#endif
