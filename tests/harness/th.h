/*
 * th: the integration-test harness. Starts REAL servers (redis-server, lockd) as
 * child processes on free loopback ports, each in its own temp dir, remembers every
 * PID it started and stops them by PID: th_stop_all() runs from Check's unchecked
 * teardown (in the parent, so it runs even when a forked test fails) and from atexit.
 * Children get PR_SET_PDEATHSIG(SIGKILL) so nothing outlives a crashed test binary.
 * Also a tiny blocking LOCKP line client for black-box protocol tests.
 */
#ifndef TH_H
#define TH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TH_MAX_PROCS 64

/* A fresh directory under $TMPDIR (or /tmp), removed by th_stop_all. */
const char *th_tmpdir(void);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int th_free_port(void);
/* Test-only: every port th_free_port returns passes through filter (NULL: none), which may
 * answer another one. The harness's own test uses it to hand out a port it holds, as a
 * port taken between th_free_port and the server's bind. */
void th_set_port_filter(int (*filter)(int port));
/* fork+exec argv with stdout/stderr appended to logfile; registered for th_stop_all. */
pid_t th_spawn(char *const argv[], const char *logfile);
/* th_spawn with standard input read from the file stdin_path (NULL: /dev/null). */
pid_t th_spawn_stdin(char *const argv[], const char *logfile, const char *stdin_path);
/* Sends sig to pid (only if we started it and it is alive). */
void th_signal(pid_t pid, int sig);
/* SIGKILL (or SIGTERM when graceful) and reap; returns the exit status (waitpid form) or -1. */
int th_stop(pid_t pid, bool graceful, int timeout_ms);
/* Waits (no signal) for a registered pid to exit by itself; reaps and forgets it.
 * Returns the exit status (waitpid form), or -1 if it did not exit within timeout_ms
 * (it then stays registered, so th_stop_all still stops it). */
int th_wait_exit(pid_t pid, int timeout_ms);
/* Stops every process still registered and removes temp dirs. Idempotent. */
void th_stop_all(void);
/* Polls a TCP connect to 127.0.0.1:port until it succeeds or timeout_ms passes. */
bool th_wait_port(int port, int timeout_ms);
/* th_wait_up's answer. */
typedef enum th_up { TH_UP, TH_UP_EXITED, TH_UP_TIMEOUT } th_up;
/* th_wait_port that also watches the registered child pid: TH_UP_EXITED as soon as it
 * has exited (left unreaped, so th_stop still collects its status). */
th_up th_wait_up(pid_t pid, int port, int timeout_ms);
/* True when the file at path holds needle (a log checked for a known message). */
bool th_file_has(const char *path, const char *needle);
/* Milliseconds on the monotonic clock. */
uint64_t th_now_ms(void);
uint64_t th_now_us(void);
void th_sleep_ms(int ms);

/* ---- servers ---- */
typedef struct th_redis {
    pid_t pid;
    int port;
    char dir[256];
    bool aof; /* appendonly + appendfsync always: data survives SIGKILL (fencing safety) */
} th_redis;
/* Starts redis-server on a free port (or r->port if non-zero, for restarts) and waits for it. */
bool th_redis_start(th_redis *r);
void th_redis_kill(th_redis *r); /* SIGKILL, pid = 0; the port is kept for a restart */

typedef struct th_lockd {
    pid_t pid;
    int port;
    int metrics_port;
    char config[512]; /* the config file written for it */
    char log[512];
} th_lockd;
/* Writes a config (redis list from the given servers, extra_yaml appended verbatim; it may
 * override defaults like "session: {timeout_ms: 1000, lock_delay_ms: 0}") and starts
 * build/bin/lockd on free ports; waits until it accepts connections. A port that was free
 * when th_free_port chose it can be taken before lockd binds it (by any socket that
 * binds or connects meanwhile): lockd then exits at once saying so, and this starts it
 * again on fresh ports (at most 3 tries). */
bool th_lockd_start(th_lockd *l, const th_redis *redis, size_t n_redis, const char *extra_yaml);
/* Restart with the same config and ports after a stop. */
bool th_lockd_restart(th_lockd *l);

/* A program of build/bin serving on a loopback port (th_fakepay, th_reserved). */
typedef struct th_server {
    pid_t pid; /* 0 once stopped */
    int port;
    char log[512]; /* its stdout and stderr */
    /* what it was spawned with, for th_server_wait_up's next try: the program's name,
     * then each argument, every one ended by '\0' */
    char spawned[4096];
    size_t n_spawned; /* the arguments after the name */
} th_server;
/* Spawns build/bin/<prog> --listen 127.0.0.1:<free port> args[0..n) (log in a fresh temp
 * dir); does not wait. */
void th_server_spawn(th_server *s, const char *prog, char *const *args, size_t n);
/* Waits until the server listens (true) or has exited or timeout_ms passed (false). A
 * server that exited because its port was taken meanwhile (its log says "cannot listen
 * on") is spawned again the same way on a fresh port, at most 3 tries. */
bool th_server_wait_up(th_server *s, int timeout_ms);
/* Copies the NULL-terminated char * arguments left in ap into out (at most max); their count. */
size_t th_va_args(va_list ap, char **out, size_t max);
/* SIGTERM; fails the test (with the tail of the log) unless it exits 0 within timeout_ms
 * (under ASan a non-zero status is also a leak report). */
void th_server_stop_clean(th_server *s, int timeout_ms);

/* Path of a program in build/bin (set at compile time). */
const char *th_bin(const char *name);
/* Prints the last `lines` lines of a log file to stderr (for a failing test). */
void th_dump_log(const char *path, int lines);

/* ---- PostgreSQL 15 (binaries in /usr/lib/postgresql/15/bin) ----
 * PostgreSQL refuses to run as root, so initdb and the postmaster run as the `postgres`
 * account through setpriv, which execs in place: the PID th_spawn returns IS the
 * postmaster's (runuser would fork and turn every signal into a smart SIGTERM). The
 * postmaster also gets PR_SET_PDEATHSIG(SIGQUIT) (immediate shutdown) so it never
 * outlives the process that started it. */
typedef struct th_pg {
    pid_t pid;          /* the postmaster; 0 when stopped */
    int port;           /* TCP port on 127.0.0.1 (kept for restarts) */
    char dir[320];      /* the data directory */
    char sockdir[256];  /* unix socket directory (the temp dir holding dir) */
    char conninfo[512]; /* "host=<sockdir> port=<port> dbname=<dbname> user=booking" */
    char dbname[64];    /* "booking", or this case's database on the shared server */
    bool shared;        /* the binary's shared server (th_pg_shared): never stop it */
} th_pg;
/* initdb (-A trust, --no-sync) in a fresh temp dir chowned to postgres, starts the
 * postmaster (fsync=on) on a free port, waits until it is ready and creates role `booking`
 * and database `booking` owned by it. On failure everything started is stopped. */
bool th_pg_start(th_pg *pg);
/* Stops the postmaster by its PID and waits for it to exit (pid = 0 after).
 * fast: SIGINT (pg_ctl -m fast): sessions are cut at once and rolled back, clean shutdown.
 * !fast: SIGTERM (-m smart): waits for clients to leave; after 10 s falls back to fast.
 * Safe to call from a forked Check test on a server started by the parent (it polls /proc
 * instead of waitpid). */
void th_pg_stop(th_pg *pg, bool fast);
/* SIGQUIT (-m immediate): the server dies like a crash (no checkpoint, recovery at the
 * next start); waits for it to exit, pid = 0 after. */
void th_pg_kill(th_pg *pg);
/* Starts the postmaster again on the same data directory and port; waits until ready.
 * The new postmaster is a child of the CALLER: restart from inside a forked test only a
 * server that test started itself (the parent's copy of th_pg would go stale). */
bool th_pg_restart(th_pg *pg);

/* ---- the servers shared by the cases of one test binary (the "world") ----
 * ctest runs each case in its own process; to share one PostgreSQL among them, a keeper
 * process started by `<binary> --world-up` (a ctest FIXTURES_SETUP entry) owns the
 * postmaster, publishes it in the state file named by $TH_WORLD and lives until
 * `<binary> --world-down` (FIXTURES_CLEANUP) sends it SIGTERM, or until the process that
 * ran --world-up (ctest) is gone. Every case gets a database of its own on it. */
/* Starts the keeper unless one is already up; false when it did not come up. */
bool th_world_up(void);
/* Stops the keeper (by the PID in the state file) and waits for it; true when none is left. */
bool th_world_down(void);
/* A fresh, empty database `case_<pid>_<n>` owned by role booking on the shared server
 * (pg->shared; th_pg_stop and th_pg_kill leave the server alone); the keeper drops it once
 * the process that asked for it is gone. Without $TH_WORLD (or with no keeper alive) this is
 * th_pg_start: a cluster of the case's own. Cases that stop, kill or restart PostgreSQL
 * must use th_pg_start. */
bool th_pg_shared(th_pg *pg);

/* ---- blocking LOCKP line client ---- */
typedef struct th_conn {
    int fd;
    char buf[16384];
    size_t len;
} th_conn;
bool th_connect(th_conn *c, int port);
void th_close(th_conn *c);
/* Sends the bytes as they are (no LF added). */
bool th_send_raw(th_conn *c, const void *data, size_t len);
/* printf + "\n". */
bool th_send(th_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads one line (without LF/CR) into out; false on timeout, EOF or error. */
bool th_recv(th_conn *c, char *out, size_t outlen, int timeout_ms);
/* Reads lines until one starts with prefix (others are dropped into skipped if non-NULL). */
bool th_recv_prefix(th_conn *c, const char *prefix, char *out, size_t outlen, int timeout_ms);
/* Sends a request and waits for the reply starting with "<tag> ". */
bool th_request(th_conn *c, const char *tag, char *out, size_t outlen, int timeout_ms,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* True when the peer closed the connection within timeout_ms (reads and drops data). */
bool th_wait_closed(th_conn *c, int timeout_ms);

#endif
