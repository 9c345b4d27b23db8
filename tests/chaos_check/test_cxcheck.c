/*
 * test_cxcheck: planted-violation tests of chaos_check (issue 4 §5: a check that cannot
 * fail is worth nothing). Each case builds the same clean world — a real PostgreSQL with
 * reserved's schema (reserved/migrations, in order), bookings made through rs_book/rs_cancel,
 * their payments at the real fakepay, a hand-made history and fault log — then plants ONE
 * violation and asserts that exactly the matching check fails (and the exit status is 1);
 * the clean case must pass everything with exit 0. Registered as cxcheck_<case>.
 */
#include <check.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_check.h"
#include "th_fakepay.h"
#include "th_http.h"
#include "th.h"

#define N_SEATS 10

/* The clean world every case starts from. */
typedef struct world {
    th_pg pg;
    PGconn *db;
    th_fakepay pay;
    int64_t perf1, perf2, user1, user2;
    int64_t seat[N_SEATS + 1]; /* seat[1..N] */
    int64_t res_a, res_b, res_c, res_d;
    char history[512], faults[512], out[512], json[512];
    char locks_rs[512], locks_load[512]; /* lock histories: reserved1's, the lock workload's */
    FILE *hist;
} world;

/* The run's epoch (chaos/run's --epoch-ms): faults.jsonl's ms count from this monotonic ms,
 * lock events are monotonic us. */
#define EPOCH_MS 1000000

#define CM_PRINTF(a, b) __attribute__((format(printf, a, b)))

static PGresult *sql(world *w, const char *fmt, ...) CM_PRINTF(2, 3);

/* Runs one statement (printf-formatted), fails the test on error; returns the result. */
static PGresult *sql(world *w, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(w->db, q);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q,
                  PQerrorMessage(w->db));
    return r;
}

static int64_t sql_int(world *w, const char *fmt, ...) CM_PRINTF(2, 3);
static int64_t sql_int(world *w, const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    PGresult *r = sql(w, "%s", q);
    ck_assert_int_eq(PQntuples(r), 1);
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Applies reserved's migrations in file-name order, as rs_migrate does. */
static void apply_schema(world *w)
{
    char dir[512], path[1024], *names[64];
    size_t n = 0;
    snprintf(dir, sizeof(dir), "%s/reserved/migrations", TH_SOURCE_DIR);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    for (struct dirent *e; (e = readdir(d)) && n < 64;)
        if (strstr(e->d_name, ".sql"))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_name);
    ck_assert_uint_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        char *text = calloc(1, 1 << 20);
        size_t len = fread(text, 1, (1 << 20) - 1, f);
        fclose(f);
        text[len] = '\0';
        PGresult *r = PQexec(w->db, text);
        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", names[i],
                      PQerrorMessage(w->db));
        PQclear(r);
        free(text);
        free(names[i]);
    }
}

/* Books through rs_book (db lock mode) and pays at fakepay, linking the payment like
 * reserved does (payment_reference = the gateway's reference, payment_id = its id). */
static int64_t book(world *w, int64_t perf, int64_t user, const char *seats, const char *ref)
{
    int64_t id =
        sql_int(w,
                "SELECT reservation_id FROM rs_book(%lld, %lld, '{%s}'::bigint[], 0, true, "
                "'%s')",
                (long long)perf, (long long)user, seats, ref);
    th_http_resp r;
    th_http_pay(w->pay.port, ref, 1000, ref, &r);
    ck_assert_int_eq(r.status, 201);
    PQclear(sql(w, "UPDATE reservations SET payment_id = '%s' WHERE id = %lld",
                th_http_str(&r, "id"), (long long)id));
    PQclear(sql(w,
                "INSERT INTO payment_attempts (reference, performance_id, user_id, amount, status, "
                "payment_id) VALUES ('%s', %lld, %lld, 1000, 'CAPTURED', '%s')",
                ref, (long long)perf, (long long)user, th_http_str(&r, "id")));
    th_http_resp_free(&r);
    return id;
}

/* Cancels through rs_cancel and cancels its payment at fakepay. */
static void cancel(world *w, int64_t res)
{
    PGresult *r = sql(w, "SELECT payment_id FROM rs_cancel(%lld, 0, true)", (long long)res);
    char path[128];
    snprintf(path, sizeof(path), "/payments/%s/cancel", PQgetvalue(r, 0, 0));
    PQclear(r);
    th_http_resp pr;
    th_http_request(w->pay.port, "POST", path, NULL, "", &pr);
    ck_assert_int_eq(pr.status, 200);
    th_http_resp_free(&pr);
}

static void hist(world *w, const char *fmt, ...) CM_PRINTF(2, 3);
static void hist(world *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->hist, fmt, ap);
    va_end(ap);
    fputc('\n', w->hist);
    fflush(w->hist);
}

static void book_op(world *w, int id, int64_t start, int64_t end, int64_t perf, int64_t user,
                    const char *seats, int status, const char *outcome, int64_t res)
{
    hist(w,
         "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"book\",\"start_ms\":%lld,\"end_ms\":%"
         "lld,"
         "\"server\":\"127.0.0.1:1\",\"perf\":%lld,\"user\":%lld,\"seats\":[%s],\"reservation\":%"
         "lld,"
         "\"status\":%d,\"outcome\":\"%s\",\"code\":\"%s\",\"payment\":null}",
         id, id % 4, (long long)start, (long long)end, (long long)perf, (long long)user, seats,
         (long long)res, status, outcome, status == 409 ? "SEAT_TAKEN" : "");
}

static void cancel_op(world *w, int id, int64_t start, int64_t end, int64_t res, int status,
                      const char *outcome)
{
    hist(w,
         "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"cancel\",\"start_ms\":%lld,"
         "\"end_ms\":%lld,\"server\":\"127.0.0.1:1\",\"reservation\":%lld,\"status\":%d,"
         "\"outcome\":\"%s\",\"code\":\"\",\"payment\":null}",
         id, id % 4, (long long)start, (long long)end, (long long)res, status, outcome);
}

static void counter_op(world *w, int id, int64_t start, int64_t end, int counter, uint64_t fence,
                       const char *write)
{
    hist(w,
         "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"counter_incr\",\"start_ms\":%lld,"
         "\"end_ms\":%lld,\"server\":\"127.0.0.1:2\",\"counter\":%d,\"fence\":%llu,\"read\":0,"
         "\"wrote\":1,\"write\":\"%s\",\"status\":0,\"outcome\":\"%s\",\"code\":\"\"}",
         id, id % 4, (long long)start, (long long)end, counter, (unsigned long long)fence, write,
         strcmp(write, "applied") == 0 ? "ok" : "fail");
}

/* One lock event (cm_lockhist's line) in the history of `file` (w->locks_rs: src
 * reserved1, else the workload's: src load); times in ms on the run's clock; deadline_ms 0:
 * none (release, lost). */
static void lock_ev(world *w, const char *file, const char *res, const char *ev, const char *sess,
                    unsigned fence, double t_ms, double deadline_ms, const char *reason)
{
    FILE *f = fopen(file, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"src\":\"%s\",\"res\":\"%s\",\"ev\":\"%s\",\"sess\":\"%s\",\"fence\":\"%u\","
            "\"t_us\":%lld",
            file == w->locks_rs ? "reserved1" : "load", res, ev, sess, fence,
            (long long)((EPOCH_MS + t_ms) * 1000));
    if (deadline_ms > 0)
        fprintf(f, ",\"deadline_us\":%lld", (long long)((EPOCH_MS + deadline_ms) * 1000));
    if (reason != NULL)
        fprintf(f, ",\"reason\":\"%s\"", reason);
    fputs("}\n", f);
    fclose(f);
}

/* A hold op line (SPEC §9): hold is the id a 201 returned, expires_ms its expiresAt. */
static void hold_op(world *w, int id, int64_t start, int64_t end, int64_t perf, int64_t user,
                    const char *seats, int64_t hold, int64_t expires_ms)
{
    hist(w,
         "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"hold\",\"start_ms\":%lld,"
         "\"end_ms\":%lld,\"server\":\"127.0.0.1:1\",\"perf\":%lld,\"user\":%lld,\"seats\":[%s],"
         "\"hold\":%lld,\"expires_at\":\"2030-01-01T00:00:00Z\",\"expires_ms\":%lld,"
         "\"status\":201,\"outcome\":\"ok\",\"code\":\"\"}",
         id, id % 4, (long long)start, (long long)end, (long long)perf, (long long)user, seats,
         (long long)hold, (long long)expires_ms);
}

/* op: "release" (DELETE /holds/{id}) or "book" (by holdId). */
static void hold_end_op(world *w, const char *op, int id, int64_t start, int64_t end, int64_t perf,
                        int64_t user, const char *seats, int64_t hold, int status)
{
    hist(w,
         "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"%s\",\"start_ms\":%lld,"
         "\"end_ms\":%lld,\"server\":\"127.0.0.1:1\",\"perf\":%lld,\"user\":%lld,\"seats\":[%s],"
         "\"hold\":%lld,\"status\":%d,\"outcome\":\"%s\",\"code\":\"%s\",\"payment\":null}",
         id, id % 4, op, (long long)start, (long long)end, (long long)perf, (long long)user, seats,
         (long long)hold, status, status / 100 == 2 ? "ok" : "fail",
         status == 409 ? "HOLD_EXPIRED" : "");
}

/* A hold row with its seats (seat numbers a and b, b 0: none), written straight into the
 * tables; expires: an SQL timestamptz expression. */
static int64_t hold_row(world *w, int64_t perf, int64_t user, const char *status,
                        const char *expires, int a, int b, bool active)
{
    int64_t id = sql_int(w,
                         "INSERT INTO holds (performance_id, user_id, status, expires_at, "
                         "ended_at) VALUES (%lld, %lld, '%s', %s, %s) RETURNING id",
                         (long long)perf, (long long)user, status, expires,
                         strcmp(status, "ACTIVE") == 0 ? "NULL" : "now()");
    for (int k = 0; k < 2; k++)
        if (k == 0 || b)
            PQclear(sql(w,
                        "INSERT INTO hold_seats (hold_id, performance_id, seat_id, active) "
                        "VALUES (%lld, %lld, %lld, %s)",
                        (long long)id, (long long)perf, (long long)w->seat[k ? b : a],
                        active ? "true" : "false"));
    return id;
}

static char seats_buf[8][64];
/* "id,id" of the given seat numbers (1-based), in a rotating static buffer. */
static const char *seats_of(const world *w, int a, int b)
{
    static int k;
    char *s = seats_buf[k++ % 8];
    if (b)
        snprintf(s, 64, "%lld,%lld", (long long)w->seat[a], (long long)w->seat[b]);
    else
        snprintf(s, 64, "%lld", (long long)w->seat[a]);
    return s;
}

/*
 * The clean world: perf1 (hot) and perf2 on one 10-seat venue.
 *   A: perf1 seats 1,2 by user1, acknowledged.       B: perf1 seat 3 by user2, acknowledged,
 *   then cancelled (acknowledged).                    C: perf1 seat 3 again by user1 after
 *   the cancel, acknowledged.                         D: perf2 seat 1 by user2, its answer was
 *   lost (unknown) but it committed.                  A 409 on seat 1, a read.
 * Counter 1: fences 1 (applied), 2 (rejected: a stale holder overlapping 3), 3, 4 (applied):
 * value 3. One fault (pay_slow) with bookings after it.
 * Holds (SPEC §9): H1 of user1 on perf2 seats 2,3, acknowledged; user2's booking of seat 2
 * during it refused (409); H1 released. H2 of user2 on perf2 seat 4, left to expire:
 * EXPIRED, its seat free again.
 * Locks (two lock histories, epoch EPOCH_MS): on chaos:lk:0 the workload and reserved1 take
 * turns with fences 5..11: released, renewed, lost (told no_quorum), lost at its deadline and
 * told before the next grant, and one held by reserved1 when a kill_reserved fault (950 ms)
 * killed it (its deadline runs on, the next grant at 960 ms is no overlap).
 */
static void world_start(world *w)
{
    memset(w, 0, sizeof(*w));
    ck_assert_msg(th_pg_shared(&w->pg), "cannot start PostgreSQL");
    w->db = PQconnectdb(w->pg.conninfo);
    ck_assert_msg(PQstatus(w->db) == CONNECTION_OK, "%s", PQerrorMessage(w->db));
    PQclear(PQexec(w->db, "SET client_min_messages = warning"));
    apply_schema(w);
    th_fakepay_start(&w->pay, "--seed", "1", NULL);

    int64_t venue = sql_int(w, "INSERT INTO venues (name) VALUES ('Hall') RETURNING id");
    for (int i = 1; i <= N_SEATS; i++)
        w->seat[i] = sql_int(w,
                             "INSERT INTO venue_seats (venue_id, row_label, number, type) VALUES "
                             "(%lld, 'A', %d, '%s') RETURNING id",
                             (long long)venue, i, i <= 2 ? "VIP" : "NORMAL");
    w->perf1 = sql_int(w,
                       "INSERT INTO performances (venue_id, title, starts_at, normal_price, "
                       "vip_price, total_capacity, remaining_capacity) VALUES (%lld, 'Hot', "
                       "'2030-01-01T19:00:00Z', 1000, 2000, %d, %d) RETURNING id",
                       (long long)venue, N_SEATS, N_SEATS);
    w->perf2 = sql_int(w,
                       "INSERT INTO performances (venue_id, title, starts_at, normal_price, "
                       "vip_price, total_capacity, remaining_capacity) VALUES (%lld, 'Cold', "
                       "'2030-01-02T19:00:00Z', 1000, 2000, %d, %d) RETURNING id",
                       (long long)venue, N_SEATS, N_SEATS);
    w->user1 =
        sql_int(w, "INSERT INTO users (name, email) VALUES ('Ann', 'ann@x.org') RETURNING id");
    w->user2 =
        sql_int(w, "INSERT INTO users (name, email) VALUES ('Bob', 'bob@x.org') RETURNING id");
    PQclear(sql(w, "CREATE TABLE chaos_counters (id int PRIMARY KEY, value bigint NOT NULL, "
                   "last_fence numeric(20,0) NOT NULL DEFAULT 0)"));
    PQclear(sql(w, "INSERT INTO chaos_counters (id, value, last_fence) VALUES (1, 3, 4)"));

    w->res_a = book(w, w->perf1, w->user1, seats_of(w, 1, 2), "ref-a");
    w->res_b = book(w, w->perf1, w->user2, seats_of(w, 3, 0), "ref-b");
    cancel(w, w->res_b);
    w->res_c = book(w, w->perf1, w->user1, seats_of(w, 3, 0), "ref-c");
    w->res_d = book(w, w->perf2, w->user2, seats_of(w, 1, 0), "ref-d");

    snprintf(w->history, sizeof(w->history), "%s/history.jsonl", th_tmpdir());
    snprintf(w->faults, sizeof(w->faults), "%s/faults.jsonl", th_tmpdir());
    snprintf(w->out, sizeof(w->out), "%s/check.out", th_tmpdir());
    snprintf(w->json, sizeof(w->json), "%s/check.json", th_tmpdir());
    int64_t h1 =
        hold_row(w, w->perf2, w->user1, "RELEASED", "now() + interval '1 hour'", 2, 3, false);
    int64_t h2 = hold_row(w, w->perf2, w->user2, "EXPIRED", "now() - interval '5 s'", 4, 0, false);
    w->hist = fopen(w->history, "w");
    ck_assert_ptr_nonnull(w->hist);
    book_op(w, 1, 1000, 1010, w->perf1, w->user1, seats_of(w, 1, 2), 201, "ok", w->res_a);
    book_op(w, 2, 1005, 1020, w->perf1, w->user2, seats_of(w, 3, 0), 201, "ok", w->res_b);
    book_op(w, 3, 1030, 1040, w->perf1, w->user2, seats_of(w, 1, 0), 409, "fail", 0);
    cancel_op(w, 4, 1050, 1060, w->res_b, 200, "ok");
    book_op(w, 5, 1070, 1080, w->perf1, w->user1, seats_of(w, 3, 0), 201, "ok", w->res_c);
    book_op(w, 6, 1090, 3090, w->perf2, w->user2, seats_of(w, 1, 0), 0, "unknown", 0);
    hist(w,
         "{\"type\":\"op\",\"id\":7,\"client\":1,\"op\":\"read_seats\",\"start_ms\":1100,"
         "\"end_ms\":1105,\"server\":\"127.0.0.1:1\",\"perf\":%lld,\"status\":200,"
         "\"outcome\":\"ok\",\"code\":\"\"}",
         (long long)w->perf1);
    hold_op(w, 12, 1110, 1115, w->perf2, w->user1, seats_of(w, 2, 3), h1, 60000);
    book_op(w, 13, 1120, 1125, w->perf2, w->user2, seats_of(w, 2, 0), 409, "fail", 0);
    hold_end_op(w, "release", 14, 1130, 1135, w->perf2, w->user1, seats_of(w, 2, 3), h1, 200);
    hold_op(w, 15, 1140, 1145, w->perf2, w->user2, seats_of(w, 4, 0), h2, 3145);
    counter_op(w, 8, 100, 110, 1, 1, "applied");
    counter_op(w, 9, 120, 200, 1, 2, "rejected");
    counter_op(w, 10, 130, 140, 1, 3, "applied");
    counter_op(w, 11, 210, 220, 1, 4, "applied");

    FILE *f = fopen(w->faults, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"type\":\"fault\",\"kind\":\"pay_slow\",\"target\":\"fakepay\",\"start_ms\":500,"
          "\"end_ms\":900,\"note\":\"latencyMs=500\"}\n"
          "{\"type\":\"fault\",\"kind\":\"kill_reserved\",\"target\":\"reserved1\","
          "\"start_ms\":950,\"end_ms\":960,\"note\":\"SIGKILL\",\"breaks_redlock\":false}\n",
          f);
    fclose(f);

    snprintf(w->locks_rs, sizeof(w->locks_rs), "%s/locks-reserved1.jsonl", th_tmpdir());
    snprintf(w->locks_load, sizeof(w->locks_load), "%s/locks-load.jsonl", th_tmpdir());
    unlink(w->locks_rs);
    unlink(w->locks_load);
    const char *lk = "chaos:lk:0";
    lock_ev(w, w->locks_load, lk, "grant", "c0/1", 5, 100, 3100, NULL);
    lock_ev(w, w->locks_load, lk, "release", "c0/1", 5, 130, 0, NULL);
    lock_ev(w, w->locks_rs, lk, "grant", "7", 6, 140, 3140, NULL);
    lock_ev(w, w->locks_rs, lk, "renew", "7", 6, 150, 3200, NULL);
    lock_ev(w, w->locks_rs, lk, "release", "7", 6, 160, 0, NULL);
    lock_ev(w, w->locks_load, lk, "grant", "c1/2", 7, 170, 1170, NULL);
    lock_ev(w, w->locks_load, lk, "lost", "c1/2", 7, 200, 0, "no_quorum");
    lock_ev(w, w->locks_load, lk, "grant", "c0/1", 8, 250, 3250, NULL);
    lock_ev(w, w->locks_load, lk, "release", "c0/1", 8, 260, 0, NULL);
    lock_ev(w, w->locks_load, lk, "grant", "c2/3", 9, 300, 350, NULL);
    lock_ev(w, w->locks_load, lk, "lost", "c2/3", 9, 351, 0, "deadline");
    lock_ev(w, w->locks_rs, lk, "grant", "7", 10, 400, 3400, NULL);
    lock_ev(w, w->locks_rs, lk, "release", "7", 10, 410, 0, NULL);
    lock_ev(w, w->locks_rs, lk, "grant", "7", 11, 900, 3900, NULL);
    lock_ev(w, w->locks_load, lk, "grant", "c0/1", 12, 960, 3960, NULL);
    lock_ev(w, w->locks_load, lk, "release", "c0/1", 12, 970, 0, NULL);
}

/* Runs chaos_check on the world; returns its exit code. */
static int run_check(world *w)
{
    char payurl[64], locks[1100], epoch[32];
    snprintf(locks, sizeof(locks), "%s,%s", w->locks_rs, w->locks_load);
    snprintf(epoch, sizeof(epoch), "%d", EPOCH_MS);
    fclose(w->hist);
    w->hist = NULL;
    snprintf(payurl, sizeof(payurl), "http://127.0.0.1:%d", w->pay.port);
    char *argv[] = {(char *)th_bin("chaos_check"),
                    "--history",
                    w->history,
                    "--faults",
                    w->faults,
                    "--database",
                    w->pg.conninfo,
                    "--payment-url",
                    payurl,
                    "--recovery-bound-ms",
                    "1000",
                    "--json",
                    w->json,
                    "--locks",
                    locks,
                    "--epoch-ms",
                    epoch,
                    NULL};
    unlink(w->out);
    pid_t pid = th_spawn(argv, w->out);
    ck_assert_int_gt(pid, 0);
    int st = th_wait_exit(pid, 60000);
    ck_assert_msg(st != -1 && WIFEXITED(st), "chaos_check did not exit");
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "cat '%s' 1>&2", w->out);
    if (system(cmd) != 0)
        fprintf(stderr, "(no output)\n");
    return WEXITSTATUS(st);
}

/* Asserts that every check passed except `failing` (NULL: all pass), by its CHECK line. */
static void expect_only(world *w, const char *failing)
{
    static const char *const names[] = {
        "no_double_sale",       "capacity",         "no_lost_ack",     "payments",
        "counter_lost_updates", "fences_monotonic", "guards",          "liveness",
        "holds_exclusive",      "holds_expire",     "locks_exclusive", "locks_fence_order",
        "locks_lost_first"};
    int rc = run_check(w);
    FILE *f = fopen(w->out, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192];
    size_t seen = 0;
    while (fgets(line, sizeof(line), f)) {
        char name[64], verdict[8];
        if (sscanf(line, "CHECK %63s %7s", name, verdict) != 2)
            continue;
        seen++;
        bool want_fail = failing && strcmp(name, failing) == 0;
        ck_assert_msg(strcmp(verdict, want_fail ? "FAIL" : "PASS") == 0, "check %s: %s, want %s",
                      name, verdict, want_fail ? "FAIL" : "PASS");
    }
    fclose(f);
    ck_assert_uint_eq(seen, sizeof(names) / sizeof(names[0]));
    ck_assert_int_eq(rc, failing ? 1 : 0);
    ck_assert_msg(access(w->json, R_OK) == 0, "no --json file");
}

/* True when chaos_check's output (after run_check) contains text. */
static bool out_has(const world *w, const char *text)
{
    char line[8192];
    bool found = false;
    FILE *f = fopen(w->out, "r");
    ck_assert_ptr_nonnull(f);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

static void world_stop(world *w)
{
    if (w->hist)
        fclose(w->hist);
    PQfinish(w->db);
    th_fakepay_stop_clean(&w->pay);
    th_pg_stop(&w->pg, true);
}

START_TEST(clean)
{
    world w;
    world_start(&w);
    expect_only(&w, NULL);
    world_stop(&w);
}
END_TEST

/* The seat guard is gone (the lock failed AND the index was dropped): a second
 * acknowledged, paid and consistently counted booking of seat 1 on perf1. */
START_TEST(double_sale)
{
    world w;
    world_start(&w);
    PQclear(sql(&w, "DROP INDEX reservation_seats_one_confirmed"));
    int64_t id = sql_int(&w,
                         "INSERT INTO reservations (user_id, performance_id, status, normal_price, "
                         "vip_price, total_amount, payment_reference) VALUES (%lld, %lld, "
                         "'CONFIRMED', 1000, 2000, 2000, 'ref-e') RETURNING id",
                         (long long)w.user2, (long long)w.perf1);
    PQclear(sql(&w,
                "INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, "
                "seat_type, price) VALUES (%lld, %lld, %lld, 'VIP', 2000)",
                (long long)id, (long long)w.perf1, (long long)w.seat[1]));
    PQclear(sql(&w,
                "UPDATE performances SET remaining_capacity = remaining_capacity - 1 WHERE id "
                "= %lld",
                (long long)w.perf1));
    th_http_resp r;
    th_http_pay(w.pay.port, "ref-e", 2000, "ref-e", &r);
    ck_assert_int_eq(r.status, 201);
    PQclear(sql(&w, "UPDATE reservations SET payment_id = '%s' WHERE id = %lld",
                th_http_str(&r, "id"), (long long)id));
    th_http_resp_free(&r);
    book_op(&w, 20, 1200, 1210, w.perf1, w.user2, seats_of(&w, 1, 0), 201, "ok", id);
    expect_only(&w, "no_double_sale");
    world_stop(&w);
}
END_TEST

/* Only the history sells it twice: two 201s for seat 5 on perf2 with no cancel between,
 * the second for a reservation the database holds elsewhere (seat 6). */
START_TEST(double_sale_history)
{
    world w;
    world_start(&w);
    int64_t r1 = book(&w, w.perf2, w.user1, seats_of(&w, 5, 0), "ref-f");
    int64_t r2 = book(&w, w.perf2, w.user2, seats_of(&w, 6, 0), "ref-g");
    book_op(&w, 20, 1200, 1210, w.perf2, w.user1, seats_of(&w, 5, 0), 201, "ok", r1);
    /* a cancel of r1 that failed (404) frees nothing */
    cancel_op(&w, 21, 1220, 1225, r1, 404, "fail");
    book_op(&w, 22, 1230, 1240, w.perf2, w.user2, seats_of(&w, 5, 0), 201, "ok", r2);
    /* no_lost_ack stays clean on ids and performances; the history alone is double */
    expect_only(&w, "no_double_sale");
    world_stop(&w);
}
END_TEST

/* A 201 the database does not have. */
START_TEST(lost_ack)
{
    world w;
    world_start(&w);
    book_op(&w, 20, 1200, 1210, w.perf1, w.user2, seats_of(&w, 5, 0), 201, "ok", 99999);
    expect_only(&w, "no_lost_ack");
    world_stop(&w);
}
END_TEST

/* A CONFIRMED, paid reservation that no request in the history explains. */
START_TEST(unexplained)
{
    world w;
    world_start(&w);
    (void)book(&w, w.perf2, w.user1, seats_of(&w, 7, 0), "ref-h");
    expect_only(&w, "no_lost_ack");
    world_stop(&w);
}
END_TEST

START_TEST(capacity)
{
    world w;
    world_start(&w);
    PQclear(sql(&w,
                "UPDATE performances SET remaining_capacity = remaining_capacity - 1 WHERE id "
                "= %lld",
                (long long)w.perf2));
    expect_only(&w, "capacity");
    world_stop(&w);
}
END_TEST

/* Op 20 started after op 11 (fence 4) ended, yet got fence 2 and its write applied; the
 * counter value agrees with the applied writes, so only the fence check can see it. */
START_TEST(fence_down)
{
    world w;
    world_start(&w);
    counter_op(&w, 20, 300, 310, 1, 2, "applied");
    PQclear(sql(&w, "UPDATE chaos_counters SET value = 4 WHERE id = 1"));
    expect_only(&w, "fences_monotonic");
    world_stop(&w);
}
END_TEST

START_TEST(lost_update)
{
    world w;
    world_start(&w);
    PQclear(sql(&w, "UPDATE chaos_counters SET value = 2 WHERE id = 1"));
    expect_only(&w, "counter_lost_updates");
    world_stop(&w);
}
END_TEST

/*
 * Kleppmann's scenario without the fence: counter 2 is incremented by fences 10, 11, 12
 * (values 1, 2, 3); a holder that got fence 9 before them, read 0 and was paused, wakes
 * up and its write of 1 is APPLIED (a store that does not check the fence): the value
 * went back to 1. Only the counter check can see it (no fence was granted out of order).
 */
START_TEST(stale_write_applied)
{
    world w;
    world_start(&w);
    PQclear(sql(&w, "INSERT INTO chaos_counters (id, value, last_fence) VALUES (2, 1, 12)"));
    static const struct {
        int id;
        int64_t start, end;
        uint64_t fence;
        int read;
    } ops[] = {
        {30, 100, 110, 10, 0}, {31, 120, 130, 11, 1}, {32, 140, 150, 12, 2}, {33, 90, 300, 9, 0}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        hist(&w,
             "{\"type\":\"op\",\"id\":%d,\"client\":%d,\"op\":\"counter_incr\","
             "\"start_ms\":%lld,\"end_ms\":%lld,\"server\":\"127.0.0.1:2\",\"counter\":2,"
             "\"fence\":%llu,\"read\":%d,\"wrote\":%d,\"write\":\"applied\",\"status\":0,"
             "\"outcome\":\"ok\",\"code\":\"\",\"lost\":%s}",
             ops[i].id, ops[i].id == 33 ? 9 : 8, (long long)ops[i].start, (long long)ops[i].end,
             (unsigned long long)ops[i].fence, ops[i].read, ops[i].read + 1,
             ops[i].id == 33 ? "true" : "false");
    expect_only(&w, "counter_lost_updates");
    ck_assert_msg(out_has(&w, "counter 2: 4 applied increments, final value 1: 3 lost updates"),
                  "the stale write is not reported as lost updates on counter 2");
    world_stop(&w);
}
END_TEST

/* An APPROVED payment at the real fakepay with no reservation. */
START_TEST(orphan_payment)
{
    world w;
    world_start(&w);
    th_http_resp r;
    th_http_pay(w.pay.port, "orphan-1", 1000, "orphan-1", &r);
    ck_assert_int_eq(r.status, 201);
    th_http_resp_free(&r);
    expect_only(&w, "payments");
    world_stop(&w);
}
END_TEST

/* A fault after which no booking succeeds within the bound (1000 ms here). */
START_TEST(no_recovery)
{
    world w;
    world_start(&w);
    FILE *f = fopen(w.faults, "a");
    ck_assert_ptr_nonnull(f);
    fputs("{\"type\":\"fault\",\"kind\":\"kill_lockd\",\"target\":\"lockd1\",\"start_ms\":1500,"
          "\"end_ms\":2000,\"note\":\"\"}\n",
          f);
    fclose(f);
    book_op(&w, 20, 4000, 4100, w.perf2, w.user1, seats_of(&w, 9, 0), 409, "fail", 0);
    expect_only(&w, "liveness");
    world_stop(&w);
}
END_TEST

/* The history sells a held seat: user1's hold of perf1 seat 8 is acknowledged (expiring at
 * 60 s), user2's booking of seat 8 sent after it is acknowledged at 1.31 s, and the hold is
 * released only after that (the database, where the hold ended RELEASED, is consistent). */
START_TEST(hold_sold_history)
{
    world w;
    world_start(&w);
    int64_t h =
        hold_row(&w, w.perf1, w.user1, "RELEASED", "now() + interval '1 hour'", 8, 0, false);
    int64_t r = book(&w, w.perf1, w.user2, seats_of(&w, 8, 0), "ref-h1");
    hold_op(&w, 20, 1200, 1210, w.perf1, w.user1, seats_of(&w, 8, 0), h, 60000);
    book_op(&w, 21, 1300, 1310, w.perf1, w.user2, seats_of(&w, 8, 0), 201, "ok", r);
    hold_end_op(&w, "release", 22, 1400, 1410, w.perf1, w.user1, seats_of(&w, 8, 0), h, 200);
    expect_only(&w, "holds_exclusive");
    ck_assert_msg(out_has(&w, "held_and_sold=1 (history 1, database 0)"),
                  "the held-and-sold seat is not counted in the history");
    world_stop(&w);
}
END_TEST

/* The final database has a seat in an active hold of user1 and in a CONFIRMED reservation
 * of user2 (the guards are gone: the booking came first, the hold row was written after). */
START_TEST(hold_sold_db)
{
    world w;
    world_start(&w);
    int64_t r = book(&w, w.perf2, w.user2, seats_of(&w, 9, 0), "ref-h2");
    PQclear(sql(&w, "ALTER TABLE hold_seats DISABLE TRIGGER USER"));
    (void)hold_row(&w, w.perf2, w.user1, "ACTIVE", "now() + interval '1 hour'", 9, 0, true);
    book_op(&w, 20, 1200, 1210, w.perf2, w.user2, seats_of(&w, 9, 0), 201, "ok", r);
    expect_only(&w, "holds_exclusive");
    ck_assert_msg(out_has(&w, "held_and_sold=1 (history 0, database 1)"),
                  "the held-and-sold seat is not counted in the database");
    world_stop(&w);
}
END_TEST

/* A hold of perf1 seat 10 that expired 10 s ago, left in `status` with its seat row active
 * (the sweeper never freed it, or freed it by half): only holds_expire fails, with `want`
 * and `want2` in its figure. */
static void stale_hold(const char *status, const char *want, const char *want2)
{
    world w;
    world_start(&w);
    PQclear(sql(&w, "ALTER TABLE hold_seats DISABLE TRIGGER USER"));
    (void)hold_row(&w, w.perf1, w.user1, status, "now() - interval '10 s'", 10, 0, true);
    expect_only(&w, "holds_expire");
    ck_assert_msg(out_has(&w, want) && out_has(&w, want2), "holds_expire does not say %s, %s", want,
                  want2);
    world_stop(&w);
}

/* A hold still ACTIVE 10 s past its expiresAt. */
START_TEST(hold_past_expiry)
{
    stale_hold("ACTIVE", "active_past_expiry=1", "still held 0");
}
END_TEST

/* A hold ended EXPIRED but its hold_seats row stayed active: its seat never came back. */
START_TEST(hold_row_active_after_expiry)
{
    stale_hold("EXPIRED", "still held 1", "active_rows_of_ended_holds=1");
}
END_TEST

/* A hold the clients never touched again ended RELEASED: only expiry may end it. */
START_TEST(hold_left_not_expired)
{
    world w;
    world_start(&w);
    int64_t h = hold_row(&w, w.perf1, w.user1, "RELEASED", "now() - interval '10 s'", 9, 0, false);
    hold_op(&w, 20, 1200, 1210, w.perf1, w.user1, seats_of(&w, 9, 0), h, 3210);
    expect_only(&w, "holds_expire");
    ck_assert_msg(out_has(&w, "(not EXPIRED 1)"), "the hold left alone is not flagged");
    world_stop(&w);
}
END_TEST

/* Two holders of chaos:lk:1 at once: the workload's c0 (fence 20, released at 700 ms) and
 * reserved1 (fence 21, granted at 650 ms), fences in order, nobody told LOST too late. */
static void plant_overlap(world *w)
{
    lock_ev(w, w->locks_load, "chaos:lk:1", "grant", "c0/1", 20, 600, 1600, NULL);
    lock_ev(w, w->locks_rs, "chaos:lk:1", "grant", "8", 21, 650, 1650, NULL);
    lock_ev(w, w->locks_rs, "chaos:lk:1", "release", "8", 21, 660, 0, NULL);
    lock_ev(w, w->locks_load, "chaos:lk:1", "release", "c0/1", 20, 700, 0, NULL);
}

START_TEST(locks_overlap)
{
    world w;
    world_start(&w);
    plant_overlap(&w);
    expect_only(&w, "locks_exclusive");
    ck_assert_msg(out_has(&w, "1 overlaps over 10 grants on 2 resources (0 expected"),
                  "the overlap is not counted");
    ck_assert_msg(out_has(&w, "held it at once for 10.0 ms from 650.0 ms"),
                  "the overlap is not described");
    world_stop(&w);
}
END_TEST

/* The same overlap inside a by-design window (a fault with "breaks_redlock": true that ended
 * 60 ms before it: the window lasts 5 s more): expected, listed, and the run passes, saying
 * the bookings stayed safe. */
START_TEST(locks_overlap_by_design)
{
    world w;
    world_start(&w);
    FILE *f = fopen(w.faults, "a");
    ck_assert_ptr_nonnull(f);
    fputs("{\"type\":\"fault\",\"kind\":\"redis_amnesia_majority\",\"target\":"
          "\"redis1,redis2,redis3\",\"start_ms\":560,\"end_ms\":590,\"note\":\"\","
          "\"breaks_redlock\":true}\n",
          f);
    fclose(f);
    plant_overlap(&w);
    expect_only(&w, NULL);
    ck_assert_msg(out_has(&w, "0 overlaps over 10 grants on 2 resources (1 expected"),
                  "the overlap is not counted as expected");
    ck_assert_msg(out_has(&w, "bookings safe (no_double_sale no_lost_ack counter_lost_updates "
                              "fences_monotonic PASS)"),
                  "the report does not say the bookings stayed safe");
    ck_assert_msg(out_has(&w, "INFO expected locks_exclusive chaos:lk:1: load c0/1 fence 20 and "
                              "reserved1 8 fence 21, 10.0 ms (by design: redis_amnesia_majority"),
                  "the expected overlap is not listed");
    world_stop(&w);
}
END_TEST

/* Kleppmann's paused client is no excuse (a pause does not break Redlock's assumptions: the
 * client's deadline, bounded by its session's timeout, must end before lockd hands the lock
 * on). chaos:lk:1: reserved1 holds it (fence 20, its deadline 1590 ms, a client without the
 * session bound) when a pause_reserved fault stops it (600..620 ms); the workload gets the
 * lock (fence 21) at 650 ms and reserved1 is told LOST only at 700 ms: an overlap like any
 * other, locks_exclusive fails. chaos:lk:2: reserved1 is stopped again (705..900 ms) right
 * after its grant at 700 ms, its deadline (780 ms) ends before the workload's grant at
 * 800 ms; once continued it is told at 910 ms, its lost line carrying the deadline that
 * ended it: no overlap, and locks_lost_first passes (it knew by its own deadline). */
START_TEST(locks_paused_holder)
{
    world w;
    world_start(&w);
    FILE *f = fopen(w.faults, "a");
    ck_assert_ptr_nonnull(f);
    fputs("{\"type\":\"fault\",\"kind\":\"pause_reserved\",\"target\":\"reserved1\","
          "\"start_ms\":600,\"end_ms\":620,\"note\":\"SIGSTOP\",\"breaks_redlock\":false}\n"
          "{\"type\":\"fault\",\"kind\":\"pause_reserved\",\"target\":\"reserved1\","
          "\"start_ms\":705,\"end_ms\":900,\"note\":\"SIGSTOP\",\"breaks_redlock\":false}\n",
          f);
    fclose(f);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "grant", "8", 20, 590, 1590, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "grant", "c0/1", 21, 650, 1650, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "release", "c0/1", 21, 660, 0, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "lost", "8", 20, 700, 0, "session");
    lock_ev(&w, w.locks_rs, "chaos:lk:2", "grant", "9", 30, 700, 780, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:2", "grant", "c1/2", 31, 800, 1800, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:2", "release", "c1/2", 31, 805, 0, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:2", "lost", "9", 30, 910, 780, "deadline");
    expect_only(&w, "locks_exclusive");
    ck_assert_msg(out_has(&w, "1 overlaps over 12 grants on 3 resources (0 expected"),
                  "the paused holder's overlap is not counted as a violation (or lk:2 overlaps)");
    ck_assert_msg(out_has(&w, "chaos:lk:1: reserved1 8 fence 20 and load c0/1 fence 21 held it at "
                              "once for 10.0 ms from 650.0 ms"),
                  "the paused holder's overlap is not described");
    ck_assert_msg(out_has(&w, "0 late LOSTs of 4 holders that lost the lock before the next grant "
                              "(0 expected; 1 told after it but ended by their own deadline"),
                  "the holder that knew by its own deadline is not counted as such");
    ck_assert_msg(!out_has(&w, "paused holder"), "a pause is still an excuse");
    world_stop(&w);
}
END_TEST

/* reserved1's grant of chaos:lk:1 (fence 19) after the workload's (fence 20), each released
 * before the next grant: only the fence order is wrong. */
START_TEST(locks_fence_regress)
{
    world w;
    world_start(&w);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "grant", "c0/1", 20, 600, 1600, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "release", "c0/1", 20, 610, 0, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "grant", "8", 19, 620, 1620, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "release", "8", 19, 630, 0, NULL);
    expect_only(&w, "locks_fence_order");
    ck_assert_msg(out_has(&w, "1 regressions over 10 grants (0 expected)"),
                  "the regression is not counted");
    world_stop(&w);
}
END_TEST

/* The workload's c0 held chaos:lk:1 to its local deadline (650 ms) without a release; the
 * next grant came at 680 ms (no overlap) but c0 was told LOST only at 700 ms. */
START_TEST(locks_late_lost)
{
    world w;
    world_start(&w);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "grant", "c0/1", 20, 600, 650, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "grant", "8", 21, 680, 1680, NULL);
    lock_ev(&w, w.locks_rs, "chaos:lk:1", "release", "8", 21, 690, 0, NULL);
    lock_ev(&w, w.locks_load, "chaos:lk:1", "lost", "c0/1", 20, 700, 0, "deadline");
    expect_only(&w, "locks_lost_first");
    ck_assert_msg(out_has(&w, "1 late LOSTs of"), "the late LOST is not counted");
    ck_assert_msg(out_has(&w, "load c0/1 fence 20 was told LOST at 700.0 ms, after reserved1 8 "
                              "fence 21 was granted at 680.0 ms"),
                  "the late LOST is not described");
    world_stop(&w);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"clean", clean},
        {"double_sale", double_sale},
        {"double_sale_history", double_sale_history},
        {"lost_ack", lost_ack},
        {"unexplained", unexplained},
        {"capacity", capacity},
        {"fence_down", fence_down},
        {"lost_update", lost_update},
        {"stale_write_applied", stale_write_applied},
        {"orphan_payment", orphan_payment},
        {"no_recovery", no_recovery},
        {"hold_sold_history", hold_sold_history},
        {"hold_sold_db", hold_sold_db},
        {"hold_past_expiry", hold_past_expiry},
        {"hold_row_active_after_expiry", hold_row_active_after_expiry},
        {"hold_left_not_expired", hold_left_not_expired},
        {"locks_overlap", locks_overlap},
        {"locks_overlap_by_design", locks_overlap_by_design},
        {"locks_paused_holder", locks_paused_holder},
        {"locks_fence_regress", locks_fence_regress},
        {"locks_late_lost", locks_late_lost},
    };
    return th_check_main("chaos_check", cases, sizeof(cases) / sizeof(cases[0]), 120, argc, argv);
}
