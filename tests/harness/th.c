/*
 * th: see th.h. Everything here is test-only and blocking on purpose: tests are
 * sequential programs, the servers under test run in their own processes.
 */
#include "th.h"

#include <check.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#ifndef TH_BIN_DIR
#error "TH_BIN_DIR must point at build/bin"
#endif

static pid_t procs[TH_MAX_PROCS];
static pid_t owner_pid; /* only the process that spawned a child may stop it */
static char dirs[TH_MAX_PROCS][256];
static size_t n_dirs;
static bool atexit_set;
/* Postmasters we started: th_stop_all gives them SIGQUIT (immediate shutdown, which also
 * stops their backends; a SIGKILLed postmaster leaves them behind) before SIGKILL. */
static pid_t pg_pids[8];

uint64_t th_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t th_now_ms(void)
{
    return th_now_us() / 1000u;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void remember_dir(const char *d)
{
    if (n_dirs < TH_MAX_PROCS) {
        snprintf(dirs[n_dirs++], sizeof dirs[0], "%s", d);
    }
}

const char *th_tmpdir(void)
{
    static char path[256];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/th.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    remember_dir(path);
    return path;
}

static int (*port_filter)(int port);

void th_set_port_filter(int (*filter)(int port))
{
    port_filter = filter;
}

int th_free_port(void)
{
    /* Ports handed out by the kernel for port 0 are unlikely to be reused at once. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("th_free_port");
        abort();
    }
    close(fd);
    int port = ntohs(sa.sin_port);
    return port_filter != NULL ? port_filter(port) : port;
}

static void register_pid(pid_t pid)
{
    if (owner_pid != getpid()) {
        memset(procs, 0, sizeof procs);
        owner_pid = getpid();
    }
    for (size_t i = 0; i < TH_MAX_PROCS; i++) {
        if (procs[i] == 0) {
            procs[i] = pid;
            return;
        }
    }
}

static bool is_ours(pid_t pid)
{
    if (pid <= 0 || owner_pid != getpid()) {
        return false;
    }
    for (size_t i = 0; i < TH_MAX_PROCS; i++) {
        if (procs[i] == pid) {
            return true;
        }
    }
    return false;
}

static void forget_pid(pid_t pid)
{
    for (size_t i = 0; i < TH_MAX_PROCS; i++) {
        if (procs[i] == pid) {
            procs[i] = 0;
        }
    }
}

pid_t th_spawn(char *const argv[], const char *logfile)
{
    return th_spawn_stdin(argv, logfile, NULL);
}

pid_t th_spawn_stdin(char *const argv[], const char *logfile, const char *stdin_path)
{
    if (!atexit_set) {
        atexit(th_stop_all);
        atexit_set = true;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        abort();
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logfile ? logfile : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int devnull = open(stdin_path != NULL ? stdin_path : "/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    register_pid(pid);
    return pid;
}

void th_signal(pid_t pid, int sig)
{
    if (is_ours(pid)) {
        kill(pid, sig);
    }
}

int th_stop(pid_t pid, bool graceful, int timeout_ms)
{
    if (!is_ours(pid)) {
        return -1;
    }
    int status = -1;
    kill(pid, SIGCONT); /* a stopped process cannot act on SIGTERM */
    kill(pid, graceful ? SIGTERM : SIGKILL);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            break;
        }
        if (th_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            status = -1;
            break;
        }
        th_sleep_ms(5);
    }
    forget_pid(pid);
    return status;
}

int th_wait_exit(pid_t pid, int timeout_ms)
{
    if (!is_ours(pid)) {
        return -1;
    }
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            forget_pid(pid);
            return status;
        }
        if (r < 0 && errno != EINTR) {
            forget_pid(pid);
            return -1;
        }
        if (th_now_ms() > deadline) {
            return -1;
        }
        th_sleep_ms(2);
    }
}

/* Stops and reaps one registered child; a postmaster first gets SIGQUIT (up to 10 s). */
static void stop_now(pid_t p)
{
    kill(p, SIGCONT);
    for (size_t k = 0; k < sizeof pg_pids / sizeof pg_pids[0]; k++) {
        if (pg_pids[k] == p) {
            pg_pids[k] = 0;
            kill(p, SIGQUIT);
            for (int w = 0; w < 1000; w++) {
                pid_t r = waitpid(p, NULL, WNOHANG);
                if (r == p || (r < 0 && errno != EINTR)) {
                    return;
                }
                th_sleep_ms(10);
            }
        }
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
}

void th_stop_all(void)
{
    if (owner_pid == getpid()) {
        for (size_t i = 0; i < TH_MAX_PROCS; i++) {
            if (procs[i] > 0) {
                stop_now(procs[i]);
                procs[i] = 0;
            }
        }
        for (size_t i = 0; i < n_dirs; i++) {
            if (getenv("TH_KEEP_DIRS") == NULL) {
                char cmd[600];
                snprintf(cmd, sizeof cmd, "rm -rf '%.255s'", dirs[i]);
                if (system(cmd) != 0) {
                    fprintf(stderr, "th: could not remove %s\n", dirs[i]);
                }
            }
        }
        n_dirs = 0;
    }
}

bool th_wait_port(int port, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    do {
        th_conn c;
        if (th_connect(&c, port)) {
            th_close(&c);
            return true;
        }
        th_sleep_ms(10);
    } while (th_now_ms() < deadline);
    return false;
}

th_up th_wait_up(pid_t pid, int port, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        th_conn c;
        if (th_connect(&c, port)) {
            th_close(&c);
            return TH_UP;
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        /* WNOWAIT: the status stays for th_stop (and th_stop_all) to collect. */
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            return TH_UP_EXITED;
        if (th_now_ms() >= deadline)
            return TH_UP_TIMEOUT;
        th_sleep_ms(10);
    }
}

bool th_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

const char *th_bin(const char *name)
{
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/%s", TH_BIN_DIR, name);
    return p;
}

void th_server_spawn(th_server *s, const char *prog, char *const *args, size_t n)
{
    char *argv[40];
    char listen[64];
    size_t k = 0, used = 0;
    memset(s, 0, sizeof(*s));
    s->port = th_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof s->log, "%s/%s-%d.log", th_tmpdir(), prog, s->port);
    argv[k++] = (char *)th_bin(prog);
    argv[k++] = "--listen";
    argv[k++] = listen;
    for (size_t i = 0; i < n && k < sizeof argv / sizeof argv[0] - 1; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    for (size_t i = 0; i < k; i++) {
        /* kept: the name, and every argument after --listen's value */
        if (i == 1 || i == 2)
            continue;
        const char *a = i == 0 ? prog : argv[i];
        size_t len = strlen(a) + 1;
        ck_assert_msg(used + len <= sizeof s->spawned, "th_server_spawn: arguments too long");
        memcpy(s->spawned + used, a, len);
        used += len;
        s->n_spawned += i > 0;
    }
    s->pid = th_spawn(argv, s->log);
}

bool th_server_wait_up(th_server *s, int timeout_ms)
{
    for (int attempt = 1;; attempt++) {
        th_up up = th_wait_up(s->pid, s->port, timeout_ms);
        if (up == TH_UP)
            return true;
        if (up != TH_UP_EXITED || attempt == 3 || !th_file_has(s->log, "cannot listen on"))
            return false;
        th_server was = *s; /* th_server_spawn clears s: the arguments are read from here */
        th_stop(was.pid, false, 2000);
        char *args[40];
        size_t n = 0;
        const char *prog = was.spawned;
        for (char *p = was.spawned + strlen(prog) + 1; n < was.n_spawned && n < 40;
             p += strlen(p) + 1)
            args[n++] = p;
        th_server_spawn(s, prog, args, n);
        fprintf(stderr, "th: %s could not listen on %d (log %s); again on %d\n", prog, was.port,
                was.log, s->port);
    }
}

size_t th_va_args(va_list ap, char **out, size_t max)
{
    size_t n = 0;
    for (char *a = va_arg(ap, char *); a != NULL && n < max; a = va_arg(ap, char *))
        out[n++] = a;
    return n;
}

void th_server_stop_clean(th_server *s, int timeout_ms)
{
    int status = th_stop(s->pid, true, timeout_ms);
    if (!(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
        th_dump_log(s->log, 40);
    ck_assert_msg(status != -1, "%s did not exit after SIGTERM", s->log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "exit status 0x%x (non-zero: error or leak report), log %s", status, s->log);
    s->pid = 0;
}

void th_dump_log(const char *path, int lines)
{
    char cmd[700];
    fprintf(stderr, "---- tail of %s ----\n", path);
    fflush(stderr);
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' 1>&2", lines, path);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* The wait of the lockd and Redis starters: 15 s, because an ASan build on a loaded
 * machine can be slow to start, while a server that exits (a port taken, a bad config) is
 * seen at once. Says on stderr, with the log's tail, when it did not come up. */
static th_up wait_started(const char *name, pid_t pid, int port, const char *log)
{
    th_up up = th_wait_up(pid, port, 15000);
    if (up != TH_UP) {
        fprintf(stderr, "th: %s (pid %d) %s before listening on %d\n", name, (int)pid,
                up == TH_UP_EXITED ? "exited" : "did not listen within 15 s", port);
        th_dump_log(log, 20);
    }
    return up;
}

/* A try that could not bind: reaps it and keeps its log as <log>.try<attempt>, so the
 * next try's log starts empty. */
static void set_try_aside(const char *name, pid_t pid, const char *log, int attempt)
{
    char kept[600];
    th_stop(pid, false, 2000);
    snprintf(kept, sizeof kept, "%s.try%d", log, attempt);
    rename(log, kept);
    fprintf(stderr, "th: %s could not bind its port (log %s); again on a fresh one\n", name, kept);
}

bool th_redis_start(th_redis *r)
{
    if (r->dir[0] == '\0') {
        snprintf(r->dir, sizeof r->dir, "%s", th_tmpdir());
    }
    /* A port this chose may be taken before redis binds it (see th_lockd_start): then
     * again on a fresh one. A restart keeps its port: its clients know that one. */
    bool fresh = r->port == 0;
    for (int attempt = 1;; attempt++) {
        if (fresh) {
            r->port = th_free_port();
        }
        char port[16], log[300];
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        char *argv[] = {"redis-server",
                        "--port",
                        port,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        r->aof ? "yes" : "no",
                        "--appendfsync",
                        r->aof ? "always" : "everysec",
                        "--dir",
                        r->dir,
                        "--daemonize",
                        "no",
                        "--protected-mode",
                        "no",
                        NULL};
        r->pid = th_spawn(argv, log);
        th_up up = wait_started("redis-server", r->pid, r->port, log);
        if (up == TH_UP) {
            return true;
        }
        if (!fresh || attempt == 3 || !th_file_has(log, "Address already in use")) {
            return false;
        }
        set_try_aside("redis-server", r->pid, log, attempt);
        r->pid = 0;
    }
}

void th_redis_kill(th_redis *r)
{
    if (r->pid > 0) {
        th_stop(r->pid, false, 2000);
        r->pid = 0;
    }
}

/* lockd's own words when its listen or metrics port is taken (lk_server, lk_metrics). */
static bool lockd_bind_failed(const char *log)
{
    return th_file_has(log, "listen: cannot bind") || th_file_has(log, "metrics: cannot listen");
}

static bool write_lockd_config(th_lockd *l, const th_redis *redis, size_t n_redis,
                               const char *extra_yaml)
{
    FILE *f = fopen(l->config, "w");
    if (!f) {
        return false;
    }
    fprintf(f, "listen: 127.0.0.1:%d\nmetrics_listen: 127.0.0.1:%d\nredis: [", l->port,
            l->metrics_port);
    for (size_t i = 0; i < n_redis; i++) {
        fprintf(f, "%s127.0.0.1:%d", i ? ", " : "", redis[i].port);
    }
    fprintf(f, "]\n%s\n", extra_yaml ? extra_yaml : "");
    return fclose(f) == 0;
}

bool th_lockd_start(th_lockd *l, const th_redis *redis, size_t n_redis, const char *extra_yaml)
{
    const char *dir = th_tmpdir();
    snprintf(l->config, sizeof l->config, "%s/lockd.yaml", dir);
    snprintf(l->log, sizeof l->log, "%s/lockd.log", dir);
    for (int attempt = 1;; attempt++) {
        l->port = th_free_port();
        l->metrics_port = th_free_port();
        if (!write_lockd_config(l, redis, n_redis, extra_yaml)) {
            return false;
        }
        if (th_lockd_restart(l)) {
            return true;
        }
        if (attempt == 3 || !lockd_bind_failed(l->log)) {
            return false;
        }
        set_try_aside("lockd", l->pid, l->log, attempt);
    }
}

bool th_lockd_restart(th_lockd *l)
{
    char *argv[] = {(char *)th_bin("lockd"), "--config", l->config, NULL};
    l->pid = th_spawn(argv, l->log);
    return wait_started("lockd", l->pid, l->port, l->log) == TH_UP;
}

bool th_connect(th_conn *c, int port)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return false;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
}

void th_close(th_conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
}

bool th_send_raw(th_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool th_send(th_conn *c, const char *fmt, ...)
{
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) {
        return false;
    }
    line[n++] = '\n';
    return th_send_raw(c, line, (size_t)n);
}

bool th_recv(th_conn *c, char *out, size_t outlen, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *lf = memchr(c->buf, '\n', c->len);
        if (lf) {
            size_t n = (size_t)(lf - c->buf);
            size_t keep = n;
            if (keep > 0 && c->buf[keep - 1] == '\r') {
                keep--;
            }
            if (keep >= outlen) {
                keep = outlen - 1;
            }
            memcpy(out, c->buf, keep);
            out[keep] = '\0';
            memmove(c->buf, lf + 1, c->len - n - 1);
            c->len -= n + 1;
            return true;
        }
        if (c->len == sizeof c->buf) {
            return false;
        }
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        if (left <= 0) {
            return false;
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            return false;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (r <= 0) {
            return false;
        }
        c->len += (size_t)r;
    }
}

bool th_recv_prefix(th_conn *c, const char *prefix, char *out, size_t outlen, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    size_t plen = strlen(prefix);
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        if (left < 0 || !th_recv(c, out, outlen, (int)left)) {
            return false;
        }
        if (strncmp(out, prefix, plen) == 0) {
            return true;
        }
    }
}

bool th_request(th_conn *c, const char *tag, char *out, size_t outlen, int timeout_ms,
                const char *fmt, ...)
{
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || !th_send(c, "%s %s", tag, line)) {
        return false;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s ", tag);
    return th_recv_prefix(c, prefix, out, outlen, timeout_ms);
}

bool th_wait_closed(th_conn *c, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    char tmp[4096];
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)th_now_ms();
        if (left <= 0) {
            return false;
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            return false;
        }
        ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
        if (r <= 0) {
            return true;
        }
    }
}

/* ---- PostgreSQL ---- */

#define TH_PG_BIN "/usr/lib/postgresql/15/bin"

static void pg_remember(pid_t pid)
{
    for (size_t i = 0; i < sizeof pg_pids / sizeof pg_pids[0]; i++) {
        if (pg_pids[i] == 0) {
            pg_pids[i] = pid;
            return;
        }
    }
}

static void pg_forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof pg_pids / sizeof pg_pids[0]; i++) {
        if (pg_pids[i] == pid) {
            pg_pids[i] = 0;
        }
    }
}

/* True once pid has exited: reaped when it is our child, else a zombie or gone in /proc
 * (a forked test stopping the parent's server cannot waitpid it). */
static bool pid_exited(pid_t pid)
{
    if (is_ours(pid)) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            forget_pid(pid);
            return true;
        }
        return false;
    }
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return true;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the state follows the command name */
    return rp == NULL || (rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static bool pg_wait_exit(pid_t pid, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (!pid_exited(pid)) {
        if (th_now_ms() > deadline) {
            return false;
        }
        th_sleep_ms(5);
    }
    return true;
}

void th_pg_kill(th_pg *pg)
{
    if (pg->pid > 0) {
        kill(pg->pid, SIGCONT);
        kill(pg->pid, SIGQUIT);
        if (!pg_wait_exit(pg->pid, 10000)) {
            kill(pg->pid, SIGKILL);
            pg_wait_exit(pg->pid, 5000);
        }
        pg_forget(pg->pid);
        pg->pid = 0;
    }
}

void th_pg_stop(th_pg *pg, bool fast)
{
    if (pg->pid <= 0) {
        return;
    }
    kill(pg->pid, SIGCONT);
    if (!fast) {
        kill(pg->pid, SIGTERM);
        if (pg_wait_exit(pg->pid, 10000)) {
            goto done;
        }
    }
    kill(pg->pid, SIGINT);
    if (!pg_wait_exit(pg->pid, 15000)) {
        th_pg_kill(pg);
    }
done:
    pg_forget(pg->pid);
    pg->pid = 0;
}

/* Runs argv to completion (blocking); true on exit status 0. */
static bool run_wait(char *const argv[], const char *log)
{
    pid_t pid = th_spawn(argv, log);
    int st = th_wait_exit(pid, 60000);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The postmaster writes "ready" on line 8 of postmaster.pid once it accepts connections. */
static bool pg_ready(const th_pg *pg)
{
    char path[400], line[128];
    snprintf(path, sizeof path, "%s/postmaster.pid", pg->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    bool ready = false;
    long first = 0;
    for (int i = 1; fgets(line, sizeof line, f); i++) {
        if (i == 1) {
            first = strtol(line, NULL, 10);
        }
        if (i == 8) {
            ready = strncmp(line, "ready", 5) == 0;
        }
    }
    fclose(f);
    return ready && first == (long)pg->pid;
}

/* argv starts with "setpriv ... --": as root that runs the rest as postgres; a non-root
 * user runs the rest as itself (PostgreSQL only refuses root). */
static char *const *as_postgres(char *const *argv)
{
    if (geteuid() == 0) {
        return argv;
    }
    while (strcmp(*argv, "--") != 0) {
        argv++;
    }
    return argv + 1;
}

bool th_pg_restart(th_pg *pg)
{
    assert(!pg->shared); /* the shared server belongs to the keeper */
    char port[16], log[300], sockopt[300];
    snprintf(port, sizeof port, "%d", pg->port);
    snprintf(log, sizeof log, "%s/postgres.log", pg->sockdir);
    snprintf(sockopt, sizeof sockopt, "unix_socket_directories=%s", pg->sockdir);
    char *argv[] = {"setpriv",
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--pdeathsig",
                    "QUIT",
                    "--",
                    TH_PG_BIN "/postgres",
                    "-D",
                    pg->dir,
                    "-p",
                    port,
                    "-c",
                    sockopt,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=on",
                    "-c",
                    "max_connections=200",
                    NULL};
    pg->pid = th_spawn(as_postgres(argv), log);
    pg_remember(pg->pid);
    uint64_t deadline = th_now_ms() + 30000;
    while (!pg_ready(pg)) {
        if (pid_exited(pg->pid) || th_now_ms() > deadline) {
            fprintf(stderr, "th_pg: postgres did not become ready (see %s)\n", log);
            th_pg_kill(pg);
            return false;
        }
        th_sleep_ms(10);
    }
    return true;
}

bool th_pg_start(th_pg *pg)
{
    char cmd[700], log[300], port[16];
    const char *tmp = th_tmpdir();
    memset(pg, 0, sizeof *pg);
    snprintf(pg->sockdir, sizeof pg->sockdir, "%s", tmp);
    snprintf(pg->dir, sizeof pg->dir, "%s/data", tmp);
    snprintf(log, sizeof log, "%s/postgres.log", tmp);
    pg->port = th_free_port();
    snprintf(port, sizeof port, "%d", pg->port);
    snprintf(pg->dbname, sizeof pg->dbname, "booking");
    snprintf(pg->conninfo, sizeof pg->conninfo, "host=%s port=%d dbname=booking user=booking",
             pg->sockdir, pg->port);
    snprintf(cmd, sizeof cmd, "chown postgres:postgres '%s'", tmp);
    if (chmod(tmp, 0755) != 0 || (geteuid() == 0 && system(cmd) != 0)) {
        fprintf(stderr, "th_pg: %s failed\n", cmd);
        return false;
    }
    char *initdb[] = {"setpriv",
                      "--reuid=postgres",
                      "--regid=postgres",
                      "--init-groups",
                      "--",
                      TH_PG_BIN "/initdb",
                      "-D",
                      pg->dir,
                      "-A",
                      "trust",
                      "-U",
                      "postgres",
                      "-E",
                      "UTF8",
                      "--locale=C",
                      "--no-sync",
                      NULL};
    if (!run_wait(as_postgres(initdb), log)) {
        fprintf(stderr, "th_pg: initdb failed (see %s)\n", log);
        return false;
    }
    if (!th_pg_restart(pg)) {
        return false;
    }
    char *psql[] = {TH_PG_BIN "/psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    pg->sockdir,
                    "-p",
                    port,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    "CREATE ROLE booking LOGIN",
                    "-c",
                    "CREATE DATABASE booking OWNER booking",
                    NULL};
    if (!run_wait(psql, log)) {
        fprintf(stderr, "th_pg: creating role/database failed (see %s)\n", log);
        th_pg_stop(pg, true);
        return false;
    }
    return true;
}
