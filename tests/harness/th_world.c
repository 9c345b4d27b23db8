/*
 * th_world: the keeper of the servers shared by the cases of one test binary, and the
 * per-case database on them (see "the world" in th.h). The keeper is a forked, detached
 * copy of the test binary: it owns the postmaster (its child, so th_stop_all and
 * PR_SET_PDEATHSIG work as for any harness server) and the state file; the cases only
 * read the state file and connect. Keeper states are below (k_state); the state file is
 * written once the server is ready and removed when the keeper stops.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th.h"

#define TH_WORLD_UP_MS       60000 /* initdb and the first start on a busy machine */
#define TH_WORLD_DOWN_MS     30000
#define TH_WORLD_POLL_MS     100
#define TH_WORLD_SWEEP_POLLS 10 /* a sweep of finished cases' databases each second */

/* What the keeper is doing; moved only by k_move, which asserts the move. */
typedef enum k_state {
    K_STARTING, /* initdb and postmaster start; no state file yet */
    K_SERVING,  /* the state file names the server; cases connect */
    K_STOPPING, /* asked to stop (SIGTERM/SIGINT) or its watcher is gone */
    K_STOPPED,  /* servers stopped, state file removed */
} k_state;

static k_state kstate = K_STARTING;
static volatile sig_atomic_t k_stop_asked;

static void k_move(k_state to)
{
    static const char *const names[] = {"starting", "serving", "stopping", "stopped"};
    assert((kstate == K_STARTING && (to == K_SERVING || to == K_STOPPING)) ||
           (kstate == K_SERVING && to == K_STOPPING) || (kstate == K_STOPPING && to == K_STOPPED));
    fprintf(stderr, "th_world: %s -> %s\n", names[kstate], names[to]);
    kstate = to;
}

static void k_on_signal(int sig)
{
    (void)sig;
    k_stop_asked = 1;
}

static const char *world_path(void)
{
    const char *p = getenv("TH_WORLD");
    return p != NULL && *p != '\0' ? p : NULL;
}

/* The state file: "<keeper pid> <port> <sockdir>\n". */
typedef struct world {
    pid_t keeper;
    int port;
    char sockdir[256];
} world;

/* True when the state file names a keeper that is alive. */
static bool world_read(world *w)
{
    const char *path = world_path();
    if (path == NULL)
        return false;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    int keeper = 0;
    bool ok = fscanf(f, "%d %d %255s", &keeper, &w->port, w->sockdir) == 3;
    fclose(f);
    w->keeper = (pid_t)keeper;
    return ok && keeper > 0 && kill(w->keeper, 0) == 0;
}

/* Runs one statement on the admin connection; false (with the message) on error. */
static bool admin_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "th_pg_shared: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* Drops the databases of cases whose process is gone ("case_<pid>_<n>"). */
static void drop_stale(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT datname FROM pg_database WHERE datname LIKE 'case\\_%'");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        int pid = atoi(name + 5);
        if (pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH))
            continue;
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
        admin_exec(c, sql);
    }
    PQclear(r);
}

/* The keeper's life: start, publish, serve until told or orphaned, stop. Never returns. */
__attribute__((noreturn)) static void keeper(pid_t watch, int ready_fd)
{
    const char *path = world_path();
    char log[600], tmp[600];
    snprintf(log, sizeof log, "%s.log", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    setsid();
    /* ctest reads the starter's stdout to EOF: the keeper must not hold that pipe. */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    signal(SIGTERM, k_on_signal);
    signal(SIGINT, k_on_signal);
    signal(SIGPIPE, SIG_IGN);
    th_pg pg;
    bool up = th_pg_start(&pg);
    if (up) {
        FILE *f = fopen(tmp, "w");
        up = f != NULL && fprintf(f, "%d %d %s\n", (int)getpid(), pg.port, pg.sockdir) > 0;
        up = f != NULL && fclose(f) == 0 && up && rename(tmp, path) == 0;
    }
    if (up) {
        k_move(K_SERVING);
        if (write(ready_fd, "ok", 2) != 2)
            fprintf(stderr, "th_world: cannot tell the starter\n");
    }
    close(ready_fd);
    /* Between polls, the databases of finished cases are dropped here, off the cases'
     * own time (a DROP DATABASE costs about as much as a CREATE). */
    char admin[400];
    snprintf(admin, sizeof admin, "host=%s port=%d dbname=postgres user=postgres", pg.sockdir,
             pg.port);
    PGconn *c = up ? PQconnectdb(admin) : NULL;
    for (unsigned tick = 0; up && !k_stop_asked && kill(watch, 0) == 0; tick++) {
        if (tick % TH_WORLD_SWEEP_POLLS == 0 && PQstatus(c) == CONNECTION_OK)
            drop_stale(c);
        th_sleep_ms(TH_WORLD_POLL_MS);
    }
    PQfinish(c);
    k_move(K_STOPPING);
    unlink(path);
    th_pg_stop(&pg, true);
    th_stop_all();
    k_move(K_STOPPED);
    _exit(up ? 0 : 1);
}

bool th_world_up(void)
{
    world w;
    if (world_path() == NULL) {
        fprintf(stderr, "th_world_up: TH_WORLD is not set\n");
        return false;
    }
    if (world_read(&w))
        return true; /* a keeper from an earlier --world-up still serves */
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    pid_t watch = getppid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(fds[0]);
        keeper(watch, fds[1]);
    }
    close(fds[1]);
    /* The keeper writes "ok" once serving, or closes the pipe by exiting. */
    char buf[2];
    ssize_t got;
    do {
        got = read(fds[0], buf, sizeof buf);
    } while (got < 0 && errno == EINTR);
    close(fds[0]);
    if (got != 2) {
        fprintf(stderr, "th_world_up: the keeper did not come up (see %s.log)\n", world_path());
        return false;
    }
    return true;
}

bool th_world_down(void)
{
    world w;
    if (!world_read(&w))
        return true;
    kill(w.keeper, SIGTERM);
    for (uint64_t end = th_now_ms() + TH_WORLD_DOWN_MS; th_now_ms() < end;
         th_sleep_ms(TH_WORLD_POLL_MS)) {
        if (kill(w.keeper, 0) != 0)
            return true;
    }
    fprintf(stderr, "th_world_down: keeper %d still alive\n", (int)w.keeper);
    return false;
}

bool th_pg_shared(th_pg *pg)
{
    static unsigned n_made;
    world w;
    if (!world_read(&w))
        return th_pg_start(pg);
    memset(pg, 0, sizeof *pg);
    pg->shared = true;
    pg->port = w.port;
    snprintf(pg->sockdir, sizeof pg->sockdir, "%s", w.sockdir);
    snprintf(pg->dir, sizeof pg->dir, "%s/data", w.sockdir);
    snprintf(pg->dbname, sizeof pg->dbname, "case_%d_%u", (int)getpid(), n_made++);
    snprintf(pg->conninfo, sizeof pg->conninfo, "host=%s port=%d dbname=%s user=booking",
             pg->sockdir, pg->port, pg->dbname);
    char admin[400], sql[160];
    snprintf(admin, sizeof admin, "host=%s port=%d dbname=postgres user=postgres", pg->sockdir,
             pg->port);
    PGconn *c = PQconnectdb(admin);
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (!ok)
        fprintf(stderr, "th_pg_shared: %s", PQerrorMessage(c));
    if (ok) {
        snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" OWNER booking", pg->dbname);
        ok = admin_exec(c, sql);
    }
    PQfinish(c);
    return ok;
}
