/*
 * test_rdb: the reserved database layer against a REAL PostgreSQL 15 (a fresh database on
 * the binary's shared server, th_pg_shared, or a cluster of its own for the cases that
 * stop it, th_pg_start; both in the unchecked fixture, i.e. in the parent):
 * the embedded migrations (idempotent, three concurrent appliers, errors naming the
 * migration), the schema's guards, and the async pool rs_db (exec/lease round trips,
 * errors with SQLSTATE, 200 execs over 4 connections, lease timeout, cancel, rollback on
 * return, PostgreSQL stopped/killed while idle and while busy: fast failures with
 * unavailable=true and a pool that heals by itself). One ctest entry per test case.
 * Tests block on purpose (plain PQexec for set-up and checks); rs_db runs on a libevent
 * loop driven by loop_until.
 */
#include <check.h>
#include <inttypes.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm_log.h"
#include "rs_db.h"
#include "rs_migrate.h"
#include "th.h"
#include "th_check.h"

static th_pg pg; /* set up by the parent's fixture; a forked test may stop/restart its own */
static struct event_base *base;

/* ---- blocking helpers (test side only) ---- */

static PGconn *sync_connect(void)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    return c;
}

/* Runs sql and returns the first column of the first row (or "" / the command status). */
static char *sync_sql(const char *sql)
{
    static char out[256];
    PGconn *c = sync_connect();
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    snprintf(out, sizeof out, "%s",
             st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return out;
}

static void migrate(void)
{
    char err[512] = "";
    ck_assert_msg(rs_migrate_apply(pg.conninfo, err, sizeof err) == CM_OK, "migrate: %s", err);
}

/* ---- the pool under test ---- */

static const rs_db_stmt stmts[] = {
    {"echo", "SELECT $1::text AS v, $2::int AS n", 2},
    {"sleep_echo", "SELECT $2::int FROM pg_sleep($1::float8 / 1000)", 2},
    {"as_int", "SELECT $1::int", 1},
    {"note_add", "INSERT INTO rdb_notes (note) VALUES ($1)", 1},
    {"note_count", "SELECT count(*) FROM rdb_notes WHERE note = $1", 1},
};

typedef struct got {
    int n; /* callbacks so far (must end at 1) */
    bool ok;
    bool unavailable;
    bool has_pg;
    char sqlstate[8];
    char message[256];
    char detail[256];
    char constraint[64];
    char v[64];     /* first column of the first row */
    uint64_t at_ms; /* when the callback ran */
} got;

static void on_res(void *arg, const rs_db_result *r)
{
    got *g = arg;
    g->n++;
    g->ok = r->ok;
    g->unavailable = r->unavailable;
    g->has_pg = r->pg != NULL;
    g->at_ms = th_now_ms();
    ck_assert_ptr_nonnull(r->sqlstate);
    ck_assert_ptr_nonnull(r->message);
    ck_assert_ptr_nonnull(r->detail);
    snprintf(g->sqlstate, sizeof g->sqlstate, "%s", r->sqlstate);
    snprintf(g->message, sizeof g->message, "%s", r->message);
    snprintf(g->detail, sizeof g->detail, "%s", r->detail);
    const char *cn = r->pg ? PQresultErrorField(r->pg, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(g->constraint, sizeof g->constraint, "%s", cn ? cn : "");
    g->v[0] = '\0';
    if (r->ok && r->pg && PQntuples(r->pg) > 0) {
        snprintf(g->v, sizeof g->v, "%s", PQgetvalue(r->pg, 0, 0));
    }
}

typedef struct leased {
    int n;
    rs_db_conn *conn;
    bool ok;
    bool unavailable;
    char sqlstate[8];
    uint64_t at_ms;
} leased;

static void on_lease(void *arg, rs_db_conn *conn, const rs_db_result *r)
{
    leased *l = arg;
    l->n++;
    l->conn = conn;
    l->ok = r->ok;
    l->unavailable = r->unavailable;
    l->at_ms = th_now_ms();
    snprintf(l->sqlstate, sizeof l->sqlstate, "%s", r->sqlstate);
    ck_assert(r->ok == (conn != NULL));
}

static void never_cb(void *arg, const rs_db_result *r)
{
    ck_abort_msg("a cancelled exec callback ran");
}

static void never_lease_cb(void *arg, rs_db_conn *conn, const rs_db_result *r)
{
    ck_abort_msg("a cancelled lease callback ran");
}

/* Runs the loop until *counter >= target or timeout_ms; true when reached. */
static bool loop_until(const int *counter, int target, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (*counter < target) {
        if (th_now_ms() >= deadline) {
            return false;
        }
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return true;
}

static void loop_for(int ms)
{
    int never = 0;
    loop_until(&never, 1, ms);
}

/* Runs the loop until the pool has n connections up; fails the test after timeout_ms. */
static void wait_up(rs_db *db, size_t n, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (rs_db_up(db) < n && th_now_ms() < deadline) {
        loop_for(10);
    }
    ck_assert_uint_eq(rs_db_up(db), n);
}

/* A migrated database with the test table, a pool on it, and the loop. */
static rs_db *pool_open(size_t size, uint32_t lease_timeout_ms)
{
    migrate();
    sync_sql("CREATE TABLE IF NOT EXISTS rdb_notes (id serial PRIMARY KEY, note text)");
    base = event_base_new();
    rs_db_opts o = {.conninfo = pg.conninfo,
                    .pool_size = size,
                    .lease_timeout_ms = lease_timeout_ms,
                    .lock_timeout_ms = 1500};
    rs_db *db = rs_db_new(base, &o);
    ck_assert_ptr_nonnull(db);
    rs_db_register(db, stmts, CM_ARRAY_LEN(stmts));
    ck_assert_int_eq(rs_db_start(db), CM_OK);
    wait_up(db, size, 10000);
    ck_assert_uint_eq(rs_db_size(db), size);
    return db;
}

static void pool_close(rs_db *db)
{
    rs_db_free(db);
    event_base_free(base);
    base = NULL;
}

static rs_db_req *exec2(rs_db *db, const char *stmt, const char *a, const char *b, got *g)
{
    const char *p[2] = {a, b};
    memset(g, 0, sizeof *g);
    return rs_db_exec(db, stmt, b ? 2 : 1, p, on_res, g);
}

/* Waits for one statement on a leased connection. */
static void lease_sql(rs_db_conn *c, const char *sql, got *g)
{
    memset(g, 0, sizeof *g);
    ck_assert_int_eq(rs_db_conn_sql(c, sql, on_res, g), CM_OK);
    ck_assert_msg(loop_until(&g->n, 1, 5000), "no result for %s", sql);
}

static rs_db_conn *lease_now(rs_db *db)
{
    leased l = {0};
    ck_assert_ptr_nonnull(rs_db_lease(db, on_lease, &l));
    ck_assert_int_eq(l.n, 0); /* never inside the starting call */
    ck_assert(loop_until(&l.n, 1, 5000));
    ck_assert_msg(l.ok, "lease failed: %s", l.sqlstate);
    return l.conn;
}

/* Polls with "echo" until it succeeds (the pool healed); returns the ms it took. */
static int wait_healed(rs_db *db, int timeout_ms)
{
    uint64_t t0 = th_now_ms();
    while (th_now_ms() - t0 < (uint64_t)timeout_ms) {
        got g;
        exec2(db, "echo", "back", "1", &g);
        ck_assert(loop_until(&g.n, 1, 5000));
        if (g.ok) {
            ck_assert_str_eq(g.v, "back");
            return (int)(th_now_ms() - t0);
        }
        ck_assert_msg(g.unavailable, "failure during the outage not marked unavailable: %s %s",
                      g.sqlstate, g.message);
        loop_for(50);
    }
    ck_abort_msg("the pool did not heal within %d ms", timeout_ms);
    return -1;
}

/* ---- migrations ---- */

START_TEST(test_migrate_idempotent)
{
    ck_assert_uint_ge(rs_migrations_n, 1);
    ck_assert_int_eq(rs_migrations[0].version, 1);
    ck_assert_str_eq(rs_migrations[0].name, "001_init.sql");
    for (size_t i = 1; i < rs_migrations_n; i++) {
        ck_assert_int_gt(rs_migrations[i].version, rs_migrations[i - 1].version);
    }
    migrate();
    char n[32];
    snprintf(n, sizeof n, "%zu", rs_migrations_n);
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM schema_migrations"), n);
    ck_assert_str_eq(sync_sql("SELECT to_regclass('reservation_seats') IS NOT NULL"), "t");
    char first[256];
    snprintf(first, sizeof first, "%s",
             sync_sql("SELECT string_agg(version || '@' || applied_at, ',' ORDER BY version) "
                      "FROM schema_migrations"));
    /* again: nothing applied twice, nothing changed */
    migrate();
    migrate();
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM schema_migrations"), n);
    ck_assert_str_eq(sync_sql("SELECT string_agg(version || '@' || applied_at, ',' ORDER BY "
                              "version) FROM schema_migrations"),
                     first);
}
END_TEST

START_TEST(test_migrate_concurrent)
{
    /* Three appliers at once, as three reserved starting together. The test holds the
     * advisory lock until all three wait on it, so they really start together; each
     * logs what it applied into its own file. */
    PGconn *holder = sync_connect();
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", RS_MIGRATE_LOCK_KEY);
    PQclear(PQexec(holder, sql));
    const char *dir = th_tmpdir();
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            char path[300], err[512] = "";
            snprintf(path, sizeof path, "%s/applier%d.log", dir, i);
            if (!freopen(path, "w", stderr)) {
                _exit(2);
            }
            cm_log_set_level(CM_LOG_INFO);
            cm_rc rc = rs_migrate_apply(pg.conninfo, err, sizeof err);
            if (rc != CM_OK) {
                fprintf(stderr, "applier %d: %s\n", i, err);
            }
            fflush(stderr);
            _exit(rc == CM_OK ? 0 : 1);
        }
    }
    uint64_t t0 = th_now_ms();
    while (strcmp(sync_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND NOT granted"),
                  "3") != 0) {
        ck_assert_msg(th_now_ms() - t0 < 10000, "the appliers never waited on the lock");
        th_sleep_ms(20);
    }
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", RS_MIGRATE_LOCK_KEY);
    PQclear(PQexec(holder, sql));
    PQfinish(holder);
    for (int i = 0; i < 3; i++) {
        int st = 0;
        ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "applier %d failed (%d)", i, st);
    }
    /* every migration applied by exactly one of them */
    size_t applied = 0;
    int appliers = 0;
    for (int i = 0; i < 3; i++) {
        char path[300], line[512];
        snprintf(path, sizeof path, "%s/applier%d.log", dir, i);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        size_t mine = 0;
        while (fgets(line, sizeof line, f)) {
            mine += strstr(line, "migrate: applied ") != NULL;
        }
        fclose(f);
        applied += mine;
        appliers += mine > 0;
    }
    ck_assert_uint_eq(applied, rs_migrations_n);
    ck_assert_int_eq(appliers, 1);
    char n[32];
    snprintf(n, sizeof n, "%zu", rs_migrations_n);
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM schema_migrations"), n);
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM pg_class WHERE relname = 'performances'"), "1");
}
END_TEST

START_TEST(test_migrate_error_names_migration)
{
    /* A table in the way makes 001 fail: the error names it and PostgreSQL's message,
     * and nothing of it stays (its own transaction). */
    sync_sql("CREATE TABLE venues (x int)");
    char err[512] = "";
    ck_assert_int_eq(rs_migrate_apply(pg.conninfo, err, sizeof err), CM_ERR);
    ck_assert_msg(strstr(err, "001_init.sql") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "\"venues\" already exists") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "42P07") != NULL, "%s", err);
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM schema_migrations"), "0");
    ck_assert_str_eq(sync_sql("SELECT to_regclass('users') IS NULL"), "t");
    /* and an unreachable server is an error naming the connection step */
    char bad[600];
    snprintf(bad, sizeof bad, "host=%s port=%d dbname=nosuchdb user=booking", pg.sockdir, pg.port);
    ck_assert_int_eq(rs_migrate_apply(bad, err, sizeof err), CM_ERR);
    ck_assert_msg(strstr(err, "connect") && strstr(err, "nosuchdb"), "%s", err);
}
END_TEST

/* ---- the schema's guards ---- */

static void seed_one_seat(void)
{
    sync_sql("INSERT INTO users (id, name, email) VALUES (1, 'A', 'a@x.test'), "
             "(2, 'B', 'b@x.test')");
    sync_sql("INSERT INTO venues (id, name) VALUES (1, 'Hall')");
    sync_sql("INSERT INTO venue_seats (id, venue_id, row_label, number, type) "
             "VALUES (1, 1, 'A', 1, 'NORMAL')");
    sync_sql("INSERT INTO performances (id, venue_id, title, starts_at, normal_price, vip_price, "
             "total_capacity, remaining_capacity) "
             "VALUES (1, 1, 'Show', '2026-12-01T19:00:00Z', 1000, 2000, 1, 1)");
    sync_sql("INSERT INTO reservations (id, user_id, performance_id, status, normal_price, "
             "vip_price, total_amount) VALUES (1, 1, 1, 'CONFIRMED', 1000, 2000, 1000), "
             "(2, 2, 1, 'CONFIRMED', 1000, 2000, 1000)");
    sync_sql("INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type, "
             "price) VALUES (1, 1, 1, 'NORMAL', 1000)");
}

START_TEST(test_guard_one_confirmed)
{
    rs_db *db = pool_open(1, 0);
    seed_one_seat();
    rs_db_conn *c = lease_now(db);
    got g;
    lease_sql(c,
              "INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, "
              "seat_type, price) VALUES (2, 1, 1, 'NORMAL', 1000)",
              &g);
    ck_assert(!g.ok);
    ck_assert(!g.unavailable);
    ck_assert_str_eq(g.sqlstate, "23505");
    ck_assert_str_eq(g.constraint, "reservation_seats_one_confirmed");
    ck_assert_msg(strstr(g.detail, "(performance_id, seat_id)=(1, 1)") != NULL, "%s", g.detail);
    /* once the first is cancelled (confirmed = false) the seat can be sold again */
    lease_sql(c, "UPDATE reservation_seats SET confirmed = false WHERE reservation_id = 1", &g);
    ck_assert(g.ok);
    lease_sql(c,
              "INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, "
              "seat_type, price) VALUES (2, 1, 1, 'NORMAL', 1000)",
              &g);
    ck_assert_msg(g.ok, "%s", g.message);
    rs_db_conn_return(c);
    pool_close(db);
}
END_TEST

START_TEST(test_guard_capacity)
{
    rs_db *db = pool_open(1, 0);
    seed_one_seat();
    rs_db_conn *c = lease_now(db);
    got g;
    lease_sql(c, "UPDATE performances SET remaining_capacity = remaining_capacity - 1", &g);
    ck_assert_msg(g.ok, "%s", g.message);
    lease_sql(c, "UPDATE performances SET remaining_capacity = remaining_capacity - 1", &g);
    ck_assert(!g.ok && !g.unavailable);
    ck_assert_str_eq(g.sqlstate, "23514");
    ck_assert_str_eq(g.constraint, "performances_capacity_guard");
    lease_sql(c, "UPDATE performances SET remaining_capacity = 2", &g); /* > total */
    ck_assert_str_eq(g.sqlstate, "23514");
    lease_sql(c, "UPDATE performances SET normal_price = -1", &g); /* money not negative */
    ck_assert_str_eq(g.sqlstate, "23514");
    rs_db_conn_return(c);
    ck_assert_str_eq(sync_sql("SELECT remaining_capacity FROM performances"), "0");
    pool_close(db);
}
END_TEST

/* ---- group booking: the set-based batch against one savepoint per booking ---- */

/* Runs sql on c and returns every row, fields joined by '|', rows by '\n'. */
static void conn_rows(PGconn *c, const char *sql, char *out, size_t cap)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; st == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        for (int j = 0; j < PQnfields(r); j++) {
            int n = snprintf(out + len, cap - len, "%s%s", j ? "|" : "",
                             PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
            ck_assert(n >= 0 && (size_t)n < cap - len);
            len += (size_t)n;
        }
        ck_assert(len + 1 < cap);
        out[len++] = '\n';
        out[len] = '\0';
    }
    PQclear(r);
}

/* One batch through fn inside a transaction that is rolled back: its answers (the ids
 * only as booked or not: the two functions draw them differently), then the capacity
 * and the confirmed seats it leaves, and how many times it updated the performance row
 * (the set-based batch: twice, the fence and the capacity; one savepoint per booking:
 * once more for each booking). */
static void batch_answers(const char *fn, char *out, size_t cap)
{
    static const char args[] =
        "(1, 5, ARRAY[1, 2, 99, 1, 2, 1, 1, 2, 1], "
        "ARRAY['{2,3}', '{3}', '{4}', '{7}', '{1}', '{4,5}', '{4}', '{4}', '{6,8}'], "
        "ARRAY['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9'], "
        "ARRAY['', '', '', '', '', '', 'k1', '', ''])";
    char sql[1024], part[2048];
    PGconn *c = sync_connect();
    conn_rows(c, "BEGIN", part, sizeof part);
    snprintf(sql, sizeof sql,
             "SELECT o_i, o_id IS NOT NULL, o_total, o_state, o_message, o_detail, o_hash, "
             "o_status, o_response FROM %s%s",
             fn, args);
    conn_rows(c, sql, out, cap);
    conn_rows(c,
              "SELECT remaining_capacity, last_fence, (SELECT string_agg(seat_id::text, ',' "
              "ORDER BY seat_id) FROM reservation_seats WHERE confirmed), (SELECT "
              "string_agg(total_amount::text || ':' || payment_reference, ',' ORDER BY "
              "payment_reference) FROM reservations WHERE fence = 5) FROM performances",
              part, sizeof part);
    ck_assert(strlen(out) + strlen(part) < cap);
    strcat(out, part);
    conn_rows(c, "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'performances'",
              part, sizeof part);
    ck_assert(strlen(out) + strlen(part) + 9 < cap);
    strcat(out, "updates=");
    strcat(out, part);
    conn_rows(c, "ROLLBACK", part, sizeof part);
    PQfinish(c);
}

/* rs_book_batch (060: every outcome decided first, then one INSERT each for all the
 * booked requests) gives each request the answer 050's savepoint per request gives, in
 * a batch that has every outcome: booked, a seat an earlier request of the batch took, an
 * unknown user, a seat of another venue, a seat sold before, not enough capacity left, a
 * replayed Idempotency-Key, a booking after a refused one, and a seat that does not exist.
 * And it does so without falling back to the savepoint per request (the performance row
 * updated twice, not once per booking). */
START_TEST(test_batch_setbased_same_answers)
{
    migrate();
    sync_sql("INSERT INTO users (id, name, email) VALUES (1, 'A', 'a@x.test'), "
             "(2, 'B', 'b@x.test')");
    sync_sql("INSERT INTO venues (id, name) VALUES (1, 'Hall'), (2, 'Other')");
    sync_sql("INSERT INTO venue_seats (id, venue_id, row_label, number, type) VALUES "
             "(1, 1, 'A', 1, 'NORMAL'), (2, 1, 'A', 2, 'VIP'), (3, 1, 'A', 3, 'NORMAL'), "
             "(4, 1, 'A', 4, 'NORMAL'), (5, 1, 'A', 5, 'VIP'), (6, 1, 'A', 6, 'NORMAL'), "
             "(7, 2, 'A', 1, 'NORMAL')");
    sync_sql("INSERT INTO performances (id, venue_id, title, starts_at, normal_price, vip_price, "
             "total_capacity, remaining_capacity) "
             "VALUES (1, 1, 'Show', '2026-12-01T19:00:00Z', 1000, 2500, 6, 3)");
    sync_sql("INSERT INTO reservations (id, user_id, performance_id, status, normal_price, "
             "vip_price, total_amount) VALUES (100, 1, 1, 'CONFIRMED', 1000, 2500, 1000)");
    sync_sql("INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type, "
             "price) VALUES (100, 1, 1, 'NORMAL', 1000)");
    sync_sql("INSERT INTO idempotency_keys (key, request_hash, status_code, response) "
             "VALUES ('k1', 'h1', 201, '{\"id\": 100}')");
    char setbased[4096], each[4096];
    batch_answers("rs_book_batch", setbased, sizeof setbased);
    batch_answers("rs_book_batch_each", each, sizeof each);
    /* the same answers and the same database afterwards; only the updates differ */
    char *a = strstr(setbased, "updates="), *b = strstr(each, "updates=");
    ck_assert(a != NULL && b != NULL);
    ck_assert_str_eq(a, "updates=2\n");
    ck_assert_str_ne(b, "updates=2\n");
    *a = *b = '\0';
    ck_assert_str_eq(setbased, each);
    /* and what they are: two booked (3,500 and 1,000), the capacity used up */
    ck_assert_msg(strstr(setbased, "1|t|3500||||NULL|NULL|NULL\n") != NULL, "%s", setbased);
    ck_assert_msg(strstr(setbased, "2|f|NULL|RBTAK|seats already taken: 3|3|") != NULL, "%s",
                  setbased);
    ck_assert_msg(strstr(setbased, "3|f|NULL|RBU04|user 99 not found||") != NULL, "%s", setbased);
    ck_assert_msg(strstr(setbased, "4|f|NULL|RBSEA|") != NULL, "%s", setbased);
    ck_assert_msg(strstr(setbased, "5|f|NULL|RBTAK|seats already taken: 1|1|") != NULL, "%s",
                  setbased);
    ck_assert_msg(strstr(setbased, "6|f|NULL|RBSOL|performance 1 has 1 seats left, 2 asked||") !=
                      NULL,
                  "%s", setbased);
    ck_assert_msg(strstr(setbased, "7|f|NULL|REPLAY|||h1|201|{\"id\": 100}\n") != NULL, "%s",
                  setbased);
    ck_assert_msg(strstr(setbased, "8|t|1000|") != NULL, "%s", setbased);
    ck_assert_msg(strstr(setbased, "9|f|NULL|RBSEA|") != NULL, "%s", setbased);
    ck_assert_msg(strstr(setbased, "\n0|5|1,2,3,4|3500:r1,1000:r8\n") != NULL, "%s", setbased);
}
END_TEST

/* A guard these checks cannot know (a CHECK constraint added here) fires in the set-based
 * INSERT: the batch is booked again one savepoint per request, and only the request that
 * trips the guard is refused. */
START_TEST(test_batch_setbased_guard_falls_back)
{
    migrate();
    seed_one_seat();
    sync_sql("INSERT INTO venue_seats (id, venue_id, row_label, number, type) "
             "VALUES (2, 1, 'A', 2, 'NORMAL'), (3, 1, 'A', 3, 'NORMAL')");
    sync_sql("UPDATE performances SET total_capacity = 3, remaining_capacity = 2");
    sync_sql("INSERT INTO users (id, name, email) VALUES (3, 'C', 'c@x.test')");
    sync_sql("ALTER TABLE reservations ADD CONSTRAINT rdb_test_guard CHECK (user_id <> 3)");
    char out[4096];
    PGconn *c = sync_connect();
    conn_rows(c, "BEGIN", out, sizeof out);
    conn_rows(c,
              "SELECT o_i, o_id IS NOT NULL, o_state FROM rs_book_batch(1, 1, ARRAY[1, 3], "
              "ARRAY['{2}', '{3}'], ARRAY['g1', 'g2'], ARRAY['', ''])",
              out, sizeof out);
    ck_assert_str_eq(out, "1|t|\n2|f|23514\n");
    conn_rows(c,
              "SELECT n_tup_upd > 2 FROM pg_stat_xact_user_tables WHERE relname = 'performances'",
              out, sizeof out);
    ck_assert_str_eq(out, "t\n"); /* the savepoint per request ran */
    conn_rows(c, "COMMIT", out, sizeof out);
    PQfinish(c);
    ck_assert_str_eq(sync_sql("SELECT remaining_capacity FROM performances"), "1");
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM reservation_seats WHERE reservation_id IN "
                              "(SELECT id FROM reservations WHERE payment_reference = 'g1')"),
                     "1");
}
END_TEST

/* How batch_one's request ended: booked, refused by the statement's error, or refused in
 * the request's row. */
typedef enum { ONE_BOOKED, ONE_STMT_ERROR, ONE_ROW_REFUSED } one_end;

/* One request through rs_book_batch_read in a transaction that is rolled back, as one
 * line: a refusal as "ERR sqlstate|message|detail" (the statement's error, or the
 * request's row), a booking as its row without what differs between two bookings (the
 * reservation id and its time), and in *updates how many times the call updated the
 * performance row (-1 when refused). The fence grows with each call. */
static one_end batch_one(int64_t user, const char *seats, const char *key, char *out, size_t cap,
                         int *updates)
{
    static int fence = 10;
    char sql[512];
    PGconn *c = sync_connect();
    PQclear(PQexec(c, "BEGIN"));
    snprintf(sql, sizeof sql,
             "SELECT o_i, o_total, o_state, o_message, o_detail, r_user, r_perf, r_status, "
             "r_normal, r_vip, r_total, r_payment, r_seat, r_row, r_number, r_type, r_price, "
             "o_id = r_id FROM rs_book_batch_read(1, %d, ARRAY[%" PRId64 "], ARRAY['%s'], "
             "ARRAY['ref'], ARRAY['%s'])",
             fence++, user, seats, key);
    PGresult *r = PQexec(c, sql);
    size_t len = 0;
    one_end end = ONE_BOOKED;
    out[0] = '\0';
    *updates = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        end = ONE_STMT_ERROR;
        snprintf(out, cap, "ERR %s|%s|%s", PQresultErrorField(r, PG_DIAG_SQLSTATE),
                 PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                 PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) != NULL
                     ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL)
                     : "");
    } else if (PQntuples(r) == 1 && PQgetvalue(r, 0, 2)[0] != '\0') {
        end = ONE_ROW_REFUSED;
        snprintf(out, cap, "ERR %s|%s|%s", PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
                 PQgetvalue(r, 0, 4));
    } else {
        for (int i = 0; i < PQntuples(r); i++)
            for (int j = 0; j < PQnfields(r); j++) {
                int n = snprintf(out + len, cap - len, "%s%s", j ? "|" : (i ? "\n" : ""),
                                 PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
                ck_assert(n >= 0 && (size_t)n < cap - len);
                len += (size_t)n;
            }
        PGresult *u = PQexec(c, "SELECT n_tup_upd FROM pg_stat_xact_user_tables "
                                "WHERE relname = 'performances'");
        ck_assert(PQresultStatus(u) == PGRES_TUPLES_OK && PQntuples(u) == 1);
        *updates = atoi(PQgetvalue(u, 0, 0));
        PQclear(u);
    }
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    return end;
}

/* A batch of one request without an Idempotency-Key goes through rs_book_read (migration
 * 150): booked, its row and read-back are those of the batch's path (taken here by a
 * request with a key that has no record), with one update of the performance row where the
 * set-based path makes two; refused, the statement fails with the SQLSTATE, message and
 * detail the batch's path gives the request's row. Every outcome: booked, a sold seat, an
 * unknown user, a seat of another venue, not enough capacity, a guard (an added CHECK), a
 * stale fence. And the function keeps generic plans (its read-back was planned again on
 * every call). */
START_TEST(test_batch_single_as_alone)
{
    migrate();
    sync_sql("INSERT INTO users (id, name, email) VALUES (1, 'A', 'a@x.test'), "
             "(3, 'C', 'c@x.test')");
    sync_sql("INSERT INTO venues (id, name) VALUES (1, 'Hall'), (2, 'Other')");
    sync_sql("INSERT INTO venue_seats (id, venue_id, row_label, number, type) VALUES "
             "(1, 1, 'A', 1, 'NORMAL'), (2, 1, 'A', 2, 'VIP'), (3, 1, 'A', 3, 'NORMAL'), "
             "(4, 1, 'A', 4, 'NORMAL'), (7, 2, 'A', 1, 'NORMAL')");
    sync_sql("INSERT INTO performances (id, venue_id, title, starts_at, normal_price, vip_price, "
             "total_capacity, remaining_capacity) "
             "VALUES (1, 1, 'Show', '2026-12-01T19:00:00Z', 1000, 2500, 4, 3)");
    sync_sql("INSERT INTO reservations (id, user_id, performance_id, status, normal_price, "
             "vip_price, total_amount) VALUES (100, 1, 1, 'CONFIRMED', 1000, 2500, 1000)");
    sync_sql("INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type, "
             "price) VALUES (100, 1, 1, 'NORMAL', 1000)");
    sync_sql("ALTER TABLE reservations ADD CONSTRAINT rdb_test_guard CHECK (user_id <> 3)");
    static const struct {
        int64_t user;
        const char *seats;
        const char *want; /* the start of the answer */
    } cases[] = {
        {1, "{3,2}",
         "1|3500||||1|1|CONFIRMED|1000|2500|3500|NULL|2|A|2|VIP|2500|t\n"
         "1|3500||||1|1|CONFIRMED|1000|2500|3500|NULL|3|A|3|NORMAL|1000|t"},
        {1, "{1}", "ERR RBTAK|seats already taken: 1|1"},
        {99, "{2}", "ERR RBU04|user 99 not found|"},
        {1, "{7}", "ERR RBSEA|seats not in the venue of performance 1: 7|7"},
        {1, "{2,3,4,1}", "ERR RBTAK|seats already taken: 1|1"},
        {3, "{4}", "ERR 23514|"},
    };
    char alone[2048], batch[2048], key[32];
    int upd_alone, upd_batch;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        one_end a_end =
            batch_one(cases[i].user, cases[i].seats, "", alone, sizeof alone, &upd_alone);
        snprintf(key, sizeof key, "fresh-%zu", i);
        one_end b_end =
            batch_one(cases[i].user, cases[i].seats, key, batch, sizeof batch, &upd_batch);
        ck_assert_msg(strncmp(alone, cases[i].want, strlen(cases[i].want)) == 0, "case %zu: %s", i,
                      alone);
        if (i == 0) { /* booked: once through rs_book, twice through the set-based batch */
            ck_assert(a_end == ONE_BOOKED && b_end == ONE_BOOKED);
            ck_assert_int_eq(upd_alone, 1);
            ck_assert_int_eq(upd_batch, 2);
        } else {
            ck_assert_int_eq(a_end, ONE_STMT_ERROR);
            ck_assert_int_eq(b_end, ONE_ROW_REFUSED);
        }
        if (cases[i].user == 3) { /* the guard's detail shows the row: its id and fence */
            char *a = strrchr(alone, '|'), *b = strrchr(batch, '|');
            ck_assert(a != NULL && b != NULL && strstr(a, "Failing row") != NULL);
            *a = *b = '\0';
        }
        ck_assert_str_eq(alone, batch);
    }
    /* not enough capacity */
    sync_sql("UPDATE performances SET remaining_capacity = 1");
    ck_assert_int_eq(batch_one(1, "{2,3}", "", alone, sizeof alone, &upd_alone), ONE_STMT_ERROR);
    ck_assert_int_eq(batch_one(1, "{2,3}", "fresh-cap", batch, sizeof batch, &upd_batch),
                     ONE_ROW_REFUSED);
    ck_assert_str_eq(alone, "ERR RBSOL|performance 1 has 1 seats left, 2 asked|");
    ck_assert_str_eq(alone, batch);
    /* a stale fence fails the statement on both paths */
    sync_sql("UPDATE performances SET last_fence = 1000");
    ck_assert_int_eq(batch_one(1, "{2}", "", alone, sizeof alone, &upd_alone), ONE_STMT_ERROR);
    ck_assert_int_eq(batch_one(1, "{2}", "fresh-fence", batch, sizeof batch, &upd_batch),
                     ONE_STMT_ERROR);
    ck_assert_msg(strncmp(alone, "ERR RBFEN|", 10) == 0, "%s", alone);
    ck_assert_msg(strncmp(batch, "ERR RBFEN|", 10) == 0, "%s", batch);
    /* nothing stayed: every call was rolled back */
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM reservations"), "1");
    ck_assert_str_eq(sync_sql("SELECT array_to_string(proconfig, ',') FROM pg_proc "
                              "WHERE proname = 'rs_book_batch_read'"),
                     "plan_cache_mode=force_generic_plan");
}
END_TEST

/* ---- rs_db round trips ---- */

START_TEST(test_exec_params)
{
    rs_db *db = pool_open(2, 0);
    got g;
    ck_assert_ptr_nonnull(exec2(db, "echo", "héllo 'quoted' \\ $1", "42", &g));
    ck_assert_int_eq(g.n, 0); /* never inside the starting call */
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok && !g.unavailable);
    ck_assert_str_eq(g.v, "héllo 'quoted' \\ $1");
    ck_assert_str_eq(g.sqlstate, "");
    /* NULL is SQL NULL */
    const char *p[2] = {NULL, "7"};
    memset(&g, 0, sizeof g);
    rs_db_exec(db, "echo", 2, p, on_res, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok);
    ck_assert_str_eq(g.v, ""); /* PQgetvalue of NULL */
    /* a command: rows affected through the borrowed PGresult */
    exec2(db, "note_add", "x", NULL, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok && g.has_pg);
    exec2(db, "note_count", "x", NULL, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert_str_eq(g.v, "1");
    loop_for(50);
    ck_assert_int_eq(g.n, 1); /* exactly once */
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    pool_close(db);
}
END_TEST

START_TEST(test_exec_errors)
{
    rs_db *db = pool_open(2, 0);
    got g;
    exec2(db, "as_int", "abc", NULL, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(!g.ok && !g.unavailable && g.has_pg);
    ck_assert_str_eq(g.sqlstate, "22P02");
    ck_assert_msg(strstr(g.message, "invalid input syntax for type integer") != NULL, "%s",
                  g.message);
    /* an unknown statement name */
    exec2(db, "no_such_stmt", "1", NULL, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(!g.ok && !g.unavailable);
    ck_assert_str_eq(g.sqlstate, "26000");
    /* a detail: unique violation */
    rs_db_conn *c = lease_now(db);
    lease_sql(c, "CREATE TEMP TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1)", &g);
    ck_assert(g.ok);
    lease_sql(c, "INSERT INTO u VALUES (1)", &g);
    ck_assert_str_eq(g.sqlstate, "23505");
    ck_assert_str_eq(g.detail, "Key (k)=(1) already exists.");
    /* the session settings were applied on connect */
    lease_sql(c, "SHOW lock_timeout", &g);
    ck_assert_str_eq(g.v, "1500ms");
    lease_sql(c, "SHOW idle_in_transaction_session_timeout", &g);
    ck_assert_str_eq(g.v, "10s");
    lease_sql(c, "SHOW statement_timeout", &g);
    ck_assert_str_eq(g.v, "10s");
    lease_sql(c, "SHOW random_page_cost", &g);
    ck_assert_str_eq(g.v, "1.1");
    /* the pool is fine after errors */
    rs_db_conn_return(c);
    /* a malformed conninfo is refused at start rather than retried forever */
    rs_db_opts bad = {.conninfo = "host=/tmp port", .pool_size = 1};
    rs_db *db2 = rs_db_new(base, &bad);
    ck_assert_ptr_nonnull(db2);
    ck_assert_int_eq(rs_db_start(db2), CM_ERR);
    rs_db_free(db2);
    exec2(db, "echo", "ok", "1", &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok);
    pool_close(db);
}
END_TEST

/* The booking path's lookups of one row by key in a small table (150 performances,
 * analysed) use the primary key in reserved's sessions; a session with PostgreSQL's
 * default random_page_cost reads the whole table for the same statements. */
START_TEST(test_point_lookup_index)
{
    rs_db *db = pool_open(1, 0);
    sync_sql("INSERT INTO venues (id, name) VALUES (1, 'Hall')");
    sync_sql("INSERT INTO performances (id, venue_id, title, starts_at, normal_price, vip_price, "
             "total_capacity, remaining_capacity) SELECT g, 1, 'Show ' || g, "
             "'2026-12-01T19:00:00Z', 1000, 2000, 10, 10 FROM generate_series(1, 150) g");
    sync_sql("ANALYZE performances");
    /* 'seq' when the plan of q reads a table whole, else 'index' when it uses an index */
    sync_sql("CREATE FUNCTION rdb_scan(q text) RETURNS text LANGUAGE plpgsql AS $$ "
             "DECLARE l text; kind text := 'other'; BEGIN "
             "FOR l IN EXECUTE 'EXPLAIN ' || q LOOP "
             "IF l LIKE '%Seq Scan%' THEN RETURN 'seq'; END IF; "
             "IF l LIKE '%Index%' THEN kind := 'index'; END IF; END LOOP; "
             "RETURN kind; END $$");
    static const char *const lookups[] = {
        "SELECT rdb_scan('SELECT remaining_capacity FROM performances WHERE id = 7')",
        "SELECT rdb_scan('UPDATE performances SET last_fence = 1 WHERE id = 7 AND last_fence <= "
        "1')",
        "SELECT rdb_scan('SELECT 1 FROM performances WHERE id = 7 FOR UPDATE')",
    };
    rs_db_conn *c = lease_now(db);
    got g;
    for (size_t i = 0; i < CM_ARRAY_LEN(lookups); i++) {
        lease_sql(c, lookups[i], &g);
        ck_assert_msg(g.ok, "%s: %s", lookups[i], g.message);
        ck_assert_msg(strcmp(g.v, "index") == 0, "%s: %s", lookups[i], g.v);
        /* the same statement in a session with the default cost: why the setting is there */
        ck_assert_str_eq(sync_sql(lookups[i]), "seq");
    }
    rs_db_conn_return(c);
    pool_close(db);
}
END_TEST

START_TEST(test_lease_transaction)
{
    rs_db *db = pool_open(2, 0);
    rs_db_conn *c = lease_now(db);
    ck_assert_uint_eq(rs_db_in_use(db), 1);
    got g;
    lease_sql(c, "BEGIN", &g);
    ck_assert(g.ok);
    const char *p[1] = {"txn"};
    memset(&g, 0, sizeof g);
    ck_assert_int_eq(rs_db_conn_exec(c, "note_add", 1, p, on_res, &g), CM_OK);
    /* one at a time on a lease */
    got g2 = {0};
    ck_assert_int_eq(rs_db_conn_sql(c, "SELECT 1", on_res, &g2), CM_ERR);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok);
    /* not visible outside before COMMIT */
    exec2(db, "note_count", "txn", NULL, &g2);
    ck_assert(loop_until(&g2.n, 1, 5000));
    ck_assert_str_eq(g2.v, "0");
    memset(&g, 0, sizeof g);
    ck_assert_int_eq(rs_db_conn_exec(c, "note_count", 1, p, on_res, &g), CM_OK);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert_str_eq(g.v, "1");
    lease_sql(c, "COMMIT", &g);
    ck_assert(g.ok);
    rs_db_conn_return(c);
    exec2(db, "note_count", "txn", NULL, &g2);
    ck_assert(loop_until(&g2.n, 1, 5000));
    ck_assert_str_eq(g2.v, "1");
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    pool_close(db);
}
END_TEST

START_TEST(test_return_rolls_back)
{
    rs_db *db = pool_open(1, 0);
    got g;
    for (int round = 0; round < 2; round++) {
        rs_db_conn *c = lease_now(db);
        lease_sql(c, "BEGIN", &g);
        const char *p[1] = {"lost"};
        memset(&g, 0, sizeof g);
        ck_assert_int_eq(rs_db_conn_exec(c, "note_add", 1, p, on_res, &g), CM_OK);
        ck_assert(loop_until(&g.n, 1, 5000));
        ck_assert(g.ok);
        if (round == 1) {
            lease_sql(c, "SELECT 1/0", &g); /* an aborted transaction is rolled back too */
            ck_assert_str_eq(g.sqlstate, "22012");
        }
        rs_db_conn_return(c); /* no COMMIT */
        /* the only connection is reused: the insert is gone, no transaction is open */
        exec2(db, "note_count", "lost", NULL, &g);
        ck_assert(loop_until(&g.n, 1, 5000));
        ck_assert_msg(g.ok, "%s", g.message);
        ck_assert_str_eq(g.v, "0");
    }
    rs_db_conn *c = lease_now(db);
    lease_sql(c, "SELECT now() = statement_timestamp()", &g); /* not inside an old txn */
    ck_assert_str_eq(g.v, "t");
    rs_db_conn_return(c);
    ck_assert_str_eq(sync_sql("SELECT count(*) FROM rdb_notes WHERE note = 'lost'"), "0");
    pool_close(db);
}
END_TEST

START_TEST(test_concurrent_200)
{
    rs_db *db = pool_open(4, 10000);
    static got gs[200];
    char num[200][8];
    int done = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        ck_assert_ptr_nonnull(exec2(db, "sleep_echo", "2", num[i], &gs[i]));
    }
    size_t max_in_use = 0;
    uint64_t deadline = th_now_ms() + 20000;
    while (done < 200 && th_now_ms() < deadline) {
        loop_for(1);
        max_in_use = CM_MAX(max_in_use, rs_db_in_use(db));
        done = 0;
        for (int i = 0; i < 200; i++) {
            done += gs[i].n;
        }
    }
    ck_assert_int_eq(done, 200);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(gs[i].n, 1);
        ck_assert_msg(gs[i].ok, "%d: %s %s", i, gs[i].sqlstate, gs[i].message);
        ck_assert_str_eq(gs[i].v, num[i]);
    }
    ck_assert_uint_eq(max_in_use, 4);
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    pool_close(db);
}
END_TEST

START_TEST(test_lease_timeout)
{
    rs_db *db = pool_open(2, 300);
    rs_db_conn *a = lease_now(db);
    rs_db_conn *b = lease_now(db);
    ck_assert_ptr_ne(a, b);
    ck_assert_uint_eq(rs_db_in_use(db), 2);
    leased l = {0};
    got g;
    uint64_t t0 = th_now_ms();
    rs_db_lease(db, on_lease, &l);
    exec2(db, "echo", "x", "1", &g);
    ck_assert(loop_until(&l.n, 1, 3000));
    ck_assert(loop_until(&g.n, 1, 3000));
    ck_assert(!l.ok && l.unavailable && l.conn == NULL);
    ck_assert_str_eq(l.sqlstate, "53300");
    ck_assert(!g.ok && g.unavailable);
    ck_assert_int_ge((int)(l.at_ms - t0), 280);
    ck_assert_int_le((int)(l.at_ms - t0), 1000);
    /* a waiter gets the next returned connection */
    memset(&l, 0, sizeof l);
    rs_db_lease(db, on_lease, &l);
    loop_for(50);
    ck_assert_int_eq(l.n, 0);
    rs_db_conn_return(a);
    ck_assert(loop_until(&l.n, 1, 1000));
    ck_assert(l.ok);
    ck_assert_ptr_eq(l.conn, a);
    rs_db_conn_return(l.conn);
    rs_db_conn_return(b);
    pool_close(db);
}
END_TEST

/* Urgent leases (a booking that holds its performance lock) are served before every
 * queued request that is not urgent, first come first served among themselves. */
typedef struct ordered {
    int *seq; /* shared counter of callbacks */
    int at;   /* this request's place in the order (1 = first) */
} ordered;

static void on_lease_return(void *arg, rs_db_conn *conn, const rs_db_result *r)
{
    ordered *o = arg;
    (void)r;
    o->at = ++*o->seq;
    if (conn != NULL)
        rs_db_conn_return(conn);
}

START_TEST(test_lease_urgent)
{
    rs_db *db = pool_open(1, 5000);
    rs_db_conn *a = lease_now(db);
    int seq = 0;
    ordered n1 = {&seq, 0}, u1 = {&seq, 0}, n2 = {&seq, 0}, u2 = {&seq, 0};
    ck_assert_ptr_nonnull(rs_db_lease(db, on_lease_return, &n1));
    ck_assert_ptr_nonnull(rs_db_lease_urgent(db, on_lease_return, &u1));
    ck_assert_ptr_nonnull(rs_db_lease(db, on_lease_return, &n2));
    ck_assert_ptr_nonnull(rs_db_lease_urgent(db, on_lease_return, &u2));
    loop_for(30);
    ck_assert_int_eq(seq, 0); /* the one connection is still leased */
    rs_db_conn_return(a);
    ck_assert(loop_until(&seq, 4, 3000));
    ck_assert_int_eq(u1.at, 1);
    ck_assert_int_eq(u2.at, 2);
    ck_assert_int_eq(n1.at, 3);
    ck_assert_int_eq(n2.at, 4);
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    pool_close(db);
}
END_TEST

START_TEST(test_cancel)
{
    rs_db *db = pool_open(1, 5000);
    rs_db_cancel(NULL);
    /* a queued lease, cancelled: its callback never runs and the connection, once
     * returned, is free for the next */
    rs_db_conn *a = lease_now(db);
    rs_db_req *q = rs_db_lease(db, never_lease_cb, NULL);
    rs_db_req *e = rs_db_exec(db, "echo", 0, NULL, never_cb, NULL);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_nonnull(e);
    loop_for(30);
    rs_db_cancel(q);
    rs_db_cancel(e);
    rs_db_conn_return(a);
    loop_for(100);
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    /* a running exec, cancelled: the statement runs on, the callback does not, the
     * connection comes back */
    const char *p[2] = {"200", "1"};
    rs_db_req *r = rs_db_exec(db, "sleep_echo", 2, p, never_cb, NULL);
    loop_for(50);
    ck_assert_uint_eq(rs_db_in_use(db), 1);
    rs_db_cancel(r);
    loop_for(400);
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    got g;
    exec2(db, "echo", "after", "1", &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok);
    ck_assert_str_eq(g.v, "after");
    pool_close(db);
}
END_TEST

/* ---- PostgreSQL going away ---- */

START_TEST(test_restart_idle)
{
    rs_db *db = pool_open(4, 2000);
    got g;
    th_pg_stop(&pg, true);
    /* the idle connections notice the shutdown by themselves */
    uint64_t t0 = th_now_ms();
    while (rs_db_up(db) > 0 && th_now_ms() - t0 < 3000) {
        loop_for(5);
    }
    ck_assert_uint_eq(rs_db_up(db), 0);
    /* requests fail at once (not after lease_timeout) while it is down */
    for (int i = 0; i < 5; i++) {
        t0 = th_now_ms();
        leased l = {0};
        exec2(db, "echo", "x", "1", &g);
        rs_db_lease(db, on_lease, &l);
        ck_assert_int_eq(g.n, 0);
        ck_assert(loop_until(&g.n, 1, 3000));
        ck_assert(loop_until(&l.n, 1, 3000));
        ck_assert(!g.ok && g.unavailable);
        ck_assert(!l.ok && l.unavailable);
        ck_assert_int_lt((int)(g.at_ms - t0), 250);
        ck_assert_int_lt((int)(l.at_ms - t0), 250);
        loop_for(100);
    }
    ck_assert(th_pg_restart(&pg));
    int ms = wait_healed(db, 10000);
    ck_assert_int_lt(ms, 5000);
    wait_up(db, 4, 5000);
    /* statements still prepared on the new sessions */
    exec2(db, "note_count", "none", NULL, &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert(g.ok);
    pool_close(db);
}
END_TEST

START_TEST(test_restart_busy)
{
    rs_db *db = pool_open(4, 5000);
    static got gs[12];
    leased l = {0};
    rs_db_conn *c = lease_now(db);
    got lg;
    memset(&lg, 0, sizeof lg);
    const char *p[2] = {"8000", "1"};
    ck_assert_int_eq(rs_db_conn_exec(c, "sleep_echo", 2, p, on_res, &lg), CM_OK);
    for (int i = 0; i < 12; i++) { /* 3 running, 9 queued */
        exec2(db, "sleep_echo", "8000", "1", &gs[i]);
    }
    rs_db_lease(db, on_lease, &l); /* queued too */
    loop_for(200);
    ck_assert_uint_eq(rs_db_in_use(db), 4);
    uint64_t t0 = th_now_ms();
    th_pg_stop(&pg, true);
    int done = 0;
    while (th_now_ms() - t0 < 3000) {
        loop_for(5);
        done = lg.n + l.n;
        for (int i = 0; i < 12; i++) {
            done += gs[i].n;
        }
        if (done == 14) {
            break;
        }
    }
    ck_assert_int_eq(done, 14);
    ck_assert_msg(th_now_ms() - t0 < 3000, "failures took too long");
    for (int i = 0; i < 12; i++) {
        ck_assert(!gs[i].ok && gs[i].unavailable);
    }
    ck_assert(!l.ok && l.unavailable);
    ck_assert(!lg.ok && lg.unavailable);
    /* the broken lease stays the holder's until returned; its next statement fails too */
    memset(&lg, 0, sizeof lg);
    ck_assert_int_eq(rs_db_conn_sql(c, "COMMIT", on_res, &lg), CM_OK);
    ck_assert_int_eq(lg.n, 0);
    ck_assert(loop_until(&lg.n, 1, 1000));
    ck_assert(!lg.ok && lg.unavailable);
    rs_db_conn_return(c);
    ck_assert(th_pg_restart(&pg));
    wait_healed(db, 10000);
    wait_up(db, 4, 5000);
    ck_assert_uint_eq(rs_db_in_use(db), 0);
    pool_close(db);
}
END_TEST

START_TEST(test_inflight_server_dies)
{
    /* immediate shutdown (like a crash) under a running statement and a leased one */
    rs_db *db = pool_open(2, 2000);
    got g, lg = {0};
    exec2(db, "sleep_echo", "10000", "1", &g);
    rs_db_conn *c = lease_now(db);
    const char *p[2] = {"10000", "2"};
    ck_assert_int_eq(rs_db_conn_exec(c, "sleep_echo", 2, p, on_res, &lg), CM_OK);
    loop_for(200);
    uint64_t t0 = th_now_ms();
    th_pg_kill(&pg);
    ck_assert(loop_until(&g.n, 1, 2000));
    ck_assert(loop_until(&lg.n, 1, 2000));
    ck_assert(!g.ok && g.unavailable);
    ck_assert(!lg.ok && lg.unavailable);
    ck_assert_int_lt((int)(g.at_ms - t0), 1500);
    ck_assert_int_eq(g.n, 1);
    rs_db_conn_return(c);
    ck_assert(th_pg_restart(&pg));
    wait_healed(db, 10000);
    pool_close(db);
}
END_TEST

START_TEST(test_early_requests_and_free)
{
    /* requests made while the pool is still connecting for the first time wait for it */
    migrate();
    base = event_base_new();
    rs_db_opts o = {.conninfo = pg.conninfo, .pool_size = 2};
    rs_db *db = rs_db_new(base, &o);
    ck_assert_ptr_nonnull(db);
    rs_db_register(db, stmts, 3); /* the statements that need no table */
    ck_assert_int_eq(rs_db_start(db), CM_OK);
    got g;
    exec2(db, "echo", "early", "1", &g);
    ck_assert(loop_until(&g.n, 1, 5000));
    ck_assert_msg(g.ok, "%s", g.message);
    ck_assert_str_eq(g.v, "early");
    /* a pool freed with requests pending: no callback, no leak */
    exec2(db, "sleep_echo", "5000", "1", &g);
    const char *slow[2] = {"5000", "2"};
    ck_assert_ptr_nonnull(rs_db_exec(db, "sleep_echo", 2, slow, never_cb, NULL));
    rs_db_lease(db, never_lease_cb, NULL);
    loop_for(50);
    pool_close(db);
}
END_TEST

START_TEST(test_prepare_failure)
{
    /* A statement that cannot be prepared (its table is missing) keeps the pool down,
     * says which statement in the log, and the pool comes up by itself once the table
     * exists. */
    migrate();
    static const rs_db_stmt needs_table[] = {
        {"late_count", "SELECT count(*) FROM rdb_late", 0},
    };
    const char *logpath = th_tmpdir();
    char path[300];
    snprintf(path, sizeof path, "%s/stderr.log", logpath);
    ck_assert_ptr_nonnull(freopen(path, "w", stderr));
    cm_log_set_level(CM_LOG_WARN);
    base = event_base_new();
    rs_db_opts o = {.conninfo = pg.conninfo, .pool_size = 2, .lease_timeout_ms = 300};
    rs_db *db = rs_db_new(base, &o);
    ck_assert_ptr_nonnull(db);
    rs_db_register(db, stmts, 1);
    rs_db_register(db, needs_table, 1);
    ck_assert_int_eq(rs_db_start(db), CM_OK);
    got g;
    exec2(db, "echo", "x", "1", &g);
    ck_assert(loop_until(&g.n, 1, 3000));
    ck_assert(!g.ok && g.unavailable);
    ck_assert_str_eq(g.sqlstate, "08001");
    ck_assert_uint_eq(rs_db_up(db), 0);
    fflush(stderr);
    FILE *f = fopen(path, "r");
    char line[1024];
    bool named = false;
    while (f && fgets(line, sizeof line, f)) {
        named |=
            strstr(line, "prepare late_count failed") != NULL && strstr(line, "rdb_late") != NULL;
    }
    if (f) {
        fclose(f);
    }
    ck_assert_msg(named, "the log does not name the statement");
    sync_sql("CREATE TABLE rdb_late (x int)");
    wait_up(db, 2, 10000);
    memset(&g, 0, sizeof g);
    rs_db_exec(db, "late_count", 0, NULL, on_res, &g);
    ck_assert(loop_until(&g.n, 1, 3000));
    ck_assert(g.ok);
    ck_assert_str_eq(g.v, "0");
    pool_close(db);
}
END_TEST

/* Unchecked (in the parent), so a forked case that dies leaves nothing running: a fresh
 * database of its own on the binary's shared PostgreSQL, or a cluster of its own for the
 * cases that stop, kill or restart PostgreSQL. */
static void setup(const char *name)
{
    bool own = strcmp(name, "restart_idle") == 0 || strcmp(name, "restart_busy") == 0 ||
               strcmp(name, "inflight_server_dies") == 0;
    if (!(own ? th_pg_start(&pg) : th_pg_shared(&pg))) {
        ck_abort_msg("PostgreSQL did not start");
    }
}

static void teardown(void)
{
    th_pg_stop(&pg, true); /* a no-op on the shared server */
}

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"migrate_idempotent", test_migrate_idempotent},
        {"migrate_concurrent", test_migrate_concurrent},
        {"migrate_error", test_migrate_error_names_migration},
        {"guard_one_confirmed", test_guard_one_confirmed},
        {"guard_capacity", test_guard_capacity},
        {"batch_setbased_same_answers", test_batch_setbased_same_answers},
        {"batch_setbased_guard_falls_back", test_batch_setbased_guard_falls_back},
        {"batch_single_as_alone", test_batch_single_as_alone},
        {"exec_params", test_exec_params},
        {"exec_errors", test_exec_errors},
        {"point_lookup_index", test_point_lookup_index},
        {"lease_transaction", test_lease_transaction},
        {"return_rolls_back", test_return_rolls_back},
        {"concurrent_200", test_concurrent_200},
        {"lease_timeout", test_lease_timeout},
        {"lease_urgent", test_lease_urgent},
        {"cancel", test_cancel},
        {"restart_idle", test_restart_idle},
        {"restart_busy", test_restart_busy},
        {"inflight_server_dies", test_inflight_server_dies},
        {"early_requests_and_free", test_early_requests_and_free},
        {"prepare_failure", test_prepare_failure},
    };
    cm_log_init("test_rdb", getenv("RDB_DEBUG") ? CM_LOG_DEBUG : CM_LOG_ERROR);
    /* argv[1]: run only that test case (one ctest entry per case) */
    return th_check_main_fx("reserved_db", cases, sizeof cases / sizeof cases[0], 60, setup,
                            teardown, argc, argv);
}
