/*
 * lockctl: the command-line lock client (SPEC §5), like flock(1) for lockd.
 *   lockctl [--server H:P[,H:P...]] [--auth S] [--name N] acquire RES [--lease MS] [--wait MS]
 *           -- COMMAND [ARGS]
 *   lockctl [...] info | ping
 * acquire holds the lock (watchdog lease by default) while COMMAND runs, on one libevent
 * loop with the async client (which keeps the session alive with PINGs), and exits with
 * COMMAND's status. Exit codes of its own: 1 lock timeout, 2 error or usage, 3 lock lost
 * (COMMAND got SIGTERM). Signals reach us through the loop (evsignal), never a handler.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cm_addr.h"
#include "cm_lockclient.h"
#include "cm_log.h"
#include "cm_flags.h"
#include "cm_time.h"

#define LOCKCTL_DEFAULT_SERVER  "127.0.0.1:7380"
#define LOCKCTL_DEFAULT_WAIT_MS 10000
#define LOCKCTL_KILL_GRACE_MS   5000
#define EXIT_TIMEOUT            1
#define EXIT_ERROR              2
#define EXIT_LOST               3

typedef struct lockctl_opts {
    const char *servers;
    const char *auth;
    const char *name;
} lockctl_opts;

/* State of one `acquire` run. */
typedef struct run {
    struct event_base *base;
    cm_lockclient *c;
    const char *resource;
    char *const *argv;
    char token[CM_LOCKP_TOKEN_LEN + 1];
    uint64_t fence;
    uint64_t acquire_id;
    bool granted;  /* the lock is ours (until released or lost) */
    bool lost;     /* lockd or the session dropped it while COMMAND ran */
    bool stopping; /* a signal arrived before the grant */
    pid_t child;   /* 0: not running */
    int exit_code;
    struct event *ev_chld, *ev_term, *ev_int, *ev_kill;
} run;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lockctl [--server H:P[,H:P...]] [--auth SECRET] [--name NAME] COMMAND\n"
            "commands:\n"
            "  acquire RESOURCE [--lease MS] [--wait MS] -- PROGRAM [ARGS...]\n"
            "      hold RESOURCE while PROGRAM runs; exit with its status\n"
            "      (--lease 0 = watchdog lease, the default; --wait default %d ms)\n"
            "      own exit codes: 1 lock timeout, 2 error, 3 lock lost (PROGRAM got SIGTERM)\n"
            "  info    print lockd's INFO as key=value lines\n"
            "  ping    print PONG and the round-trip time\n"
            "server default: $LOCKD_SERVER, else %s\n"
            "  --help, --version\n",
            LOCKCTL_DEFAULT_WAIT_MS, LOCKCTL_DEFAULT_SERVER);
}

static int usage_error(const char *fmt, ...) CM_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lockctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    return EXIT_ERROR;
}

/* Builds client options from the global flags; endpoints are malloc'ed into *eps. */
static bool make_opts(const lockctl_opts *o, cm_lockclient_opts *co, cm_addr **eps)
{
    char err[256];
    size_t n = 0;
    if (cm_addr_parse_list(o->servers, eps, &n, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "lockctl: bad --server '%s': %s\n", o->servers, err);
        return false;
    }
    memset(co, 0, sizeof(*co));
    co->endpoints = *eps;
    co->n_endpoints = n;
    co->client_name = o->name;
    co->auth = o->auth;
    return true;
}

/* ---------------------------------------------------------------- acquire */

/* "CODE text" for an error result; lockd's ERR SESSION text says it all already
 * ("session expired after N ms of silence ..."). */
static void print_error(const char *prefix, const cm_lock_result *res)
{
    if (strcmp(res->code, "SESSION") == 0)
        fprintf(stderr, "lockctl: %s: %s\n", prefix, res->message);
    else
        fprintf(stderr, "lockctl: %s: %s%s%s\n", prefix, res->code[0] ? res->code : "ERROR",
                res->message[0] ? " " : "", res->message);
}

static void run_finish(run *r, int code)
{
    r->exit_code = code;
    event_base_loopbreak(r->base);
}

static void on_released(void *arg, const cm_lock_result *res)
{
    run *r = arg;
    if (res->status == CM_LOCK_LOST)
        fprintf(stderr, "lockctl: lock on %s was already gone at release\n", r->resource);
    else if (res->status == CM_LOCK_ERROR)
        fprintf(stderr, "lockctl: release of %s: %s (lockd drops it with the session)\n",
                r->resource, res->code);
    event_base_loopbreak(r->base);
}

/* COMMAND is over (or never started): give the lock back, then leave the loop. */
static void run_release_and_exit(run *r, int code)
{
    r->exit_code = code;
    if (r->granted && !r->lost) {
        r->granted = false;
        if (cm_lockclient_release(r->c, r->resource, r->token, on_released, r) == CM_OK)
            return;
    }
    event_base_loopbreak(r->base);
}

static void spawn_child(run *r)
{
    char fence[32];
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long)r->fence);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "lockctl: fork: %s\n", strerror(errno));
        run_release_and_exit(r, EXIT_ERROR);
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL); /* ignored in lockctl; an ignored signal survives exec */
        setenv("LOCK_RESOURCE", r->resource, 1);
        setenv("LOCK_TOKEN", r->token, 1);
        setenv("LOCK_FENCE", fence, 1);
        execvp(r->argv[0], r->argv);
        fprintf(stderr, "lockctl: cannot run %s: %s\n", r->argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    r->child = pid;
}

static void on_acquired(void *arg, const cm_lock_result *res)
{
    run *r = arg;
    switch (res->status) {
    case CM_LOCK_OK:
        r->granted = true;
        snprintf(r->token, sizeof(r->token), "%s", res->token);
        r->fence = res->fence;
        spawn_child(r);
        break;
    case CM_LOCK_TIMEOUT:
        fprintf(stderr, "lockctl: lock timeout on %s\n", r->resource);
        run_finish(r, EXIT_TIMEOUT);
        break;
    default: {
        char prefix[CM_LOCKP_RESOURCE_MAX + 32];
        snprintf(prefix, sizeof(prefix), "cannot acquire %s", r->resource);
        print_error(prefix, res);
        run_finish(r, EXIT_ERROR);
        break;
    }
    }
}

static void on_lost(void *arg, const char *resource, const char *token)
{
    run *r = arg;
    struct timeval tv = cm_tv_from_ms(LOCKCTL_KILL_GRACE_MS);
    if (!r->granted || r->lost || strcmp(token, r->token) != 0)
        return;
    r->lost = true;
    r->exit_code = EXIT_LOST;
    if (r->child > 0) {
        fprintf(stderr, "lockctl: lock on %s lost; sending SIGTERM to %s (pid %d)\n", resource,
                r->argv[0], (int)r->child);
        kill(r->child, SIGTERM);
        evtimer_add(r->ev_kill, &tv);
    } else {
        fprintf(stderr, "lockctl: lock on %s lost\n", resource);
        run_finish(r, EXIT_LOST);
    }
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    if (r->child > 0) {
        fprintf(stderr, "lockctl: %s ignored SIGTERM; sending SIGKILL\n", r->argv[0]);
        kill(r->child, SIGKILL);
    }
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    int st = 0;
    if (r->child <= 0)
        return;
    pid_t p = waitpid(r->child, &st, WNOHANG);
    if (p != r->child)
        return;
    r->child = 0;
    evtimer_del(r->ev_kill);
    if (r->lost) {
        run_finish(r, EXIT_LOST);
        return;
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : EXIT_ERROR;
    run_release_and_exit(r, code);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    run *r = arg;
    if (r->child > 0) {
        kill(r->child, (int)sig); /* COMMAND decides; we exit with its status */
        return;
    }
    if (r->stopping)
        return;
    r->stopping = true;
    if (!r->granted)
        cm_lockclient_cancel(r->c, r->acquire_id); /* a late grant is released */
    run_release_and_exit(r, 128 + (int)sig);
}

/* Parses flags up to the first positional argument or "--" (*next). -1: go on; else the
 * exit code (--help served, or a usage error printed). */
static int parse_flags(const cm_flag *flags, size_t n, int argc, char **argv, int *next)
{
    const cm_flags_spec spec = {
        .prog = "lockctl", .flags = flags, .nflags = n, .usage = usage, .stop_at_positional = true};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, next);
    return res == CM_FLAGS_RUN ? -1 : CM_FLAGS_EXIT(res);
}

static int cmd_acquire(const lockctl_opts *o, int argc, char **argv)
{
    uint64_t lease = 0, wait = LOCKCTL_DEFAULT_WAIT_MS;
    cm_lockclient_opts co;
    cm_addr *eps = NULL;
    run r;
    int i;

    if (argc < 1 || argv[0][0] == '-')
        return usage_error("acquire needs a RESOURCE");
    memset(&r, 0, sizeof(r));
    r.resource = argv[0];
    if (!cm_lockp_valid_resource(r.resource, strlen(r.resource)))
        return usage_error("bad resource '%s' (1-256 printable non-space bytes)", r.resource);
    const cm_flag flags[] = {
        {.name = "lease",
         .type = CM_FLAG_U64,
         .dst = &lease,
         .lo = 0,
         .hi = UINT64_MAX,
         .want = "milliseconds (0: watchdog lease)"},
        {.name = "wait",
         .type = CM_FLAG_U64,
         .dst = &wait,
         .lo = 0,
         .hi = UINT64_MAX,
         .want = "milliseconds"},
    };
    int rc = parse_flags(flags, CM_ARRAY_LEN(flags), argc, argv, &i);
    if (rc >= 0)
        return rc;
    if (i < argc && strcmp(argv[i], "--") != 0)
        return usage_error("unexpected argument '%s' (COMMAND goes after --)", argv[i]);
    if (i >= argc || i + 1 >= argc)
        return usage_error("acquire needs -- COMMAND");
    r.argv = &argv[i + 1];
    if (!make_opts(o, &co, &eps))
        return EXIT_ERROR;

    r.exit_code = EXIT_ERROR;
    r.base = event_base_new();
    if (r.base == NULL)
        goto out;
    r.ev_chld = evsignal_new(r.base, SIGCHLD, on_sigchld, &r);
    r.ev_term = evsignal_new(r.base, SIGTERM, on_stop_signal, &r);
    r.ev_int = evsignal_new(r.base, SIGINT, on_stop_signal, &r);
    r.ev_kill = evtimer_new(r.base, on_kill_timer, &r);
    if (!r.ev_chld || !r.ev_term || !r.ev_int || !r.ev_kill || evsignal_add(r.ev_chld, NULL) ||
        evsignal_add(r.ev_term, NULL) || evsignal_add(r.ev_int, NULL))
        goto out;
    r.c = cm_lockclient_new(r.base, &co);
    if (r.c == NULL) {
        fprintf(stderr, "lockctl: bad client options (server, name or secret)\n");
        goto out;
    }
    cm_lockclient_on_lost(r.c, on_lost, &r);
    if (cm_lockclient_acquire(r.c, r.resource, lease, wait, on_acquired, &r, &r.acquire_id) !=
        CM_OK) {
        fprintf(stderr, "lockctl: cannot send ACQUIRE\n");
        goto out;
    }
    event_base_dispatch(r.base);
out:
    if (r.child > 0) {
        /* only on an internal error: do not leave COMMAND running unlocked */
        kill(r.child, SIGTERM);
        waitpid(r.child, NULL, 0);
    }
    cm_lockclient_free(r.c);
    if (r.ev_chld)
        event_free(r.ev_chld);
    if (r.ev_term)
        event_free(r.ev_term);
    if (r.ev_int)
        event_free(r.ev_int);
    if (r.ev_kill)
        event_free(r.ev_kill);
    if (r.base)
        event_base_free(r.base);
    free(eps);
    return r.exit_code;
}

/* ---------------------------------------------------------------- info, ping */

static cm_lockclient_sync *sync_connect(const lockctl_opts *o, cm_addr **eps)
{
    cm_lockclient_opts co;
    char err[256];
    if (!make_opts(o, &co, eps))
        return NULL;
    cm_lockclient_sync *s = cm_lockclient_sync_new(&co, err, sizeof(err));
    if (s == NULL)
        fprintf(stderr, "lockctl: %s (%s)\n", err, o->servers);
    return s;
}

static int report_error(const char *what, const cm_lock_result *res)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%s failed", what);
    print_error(prefix, res);
    return EXIT_ERROR;
}

/* INFO: one key=value a line. */
static void print_info(const cm_lock_result *res, uint64_t rtt_us)
{
    (void)rtt_us;
    for (const char *p = res->line; *p != '\0';) {
        size_t n = strcspn(p, " ");
        if (n > 0)
            printf("%.*s\n", (int)n, p);
        p += n;
        p += strspn(p, " ");
    }
}

/* PING: the answer and its round trip. */
static void print_ping(const cm_lock_result *res, uint64_t rtt_us)
{
    printf("%s %llu.%03llu ms\n", res->line[0] ? res->line : "PONG",
           (unsigned long long)rtt_us / 1000, (unsigned long long)rtt_us % 1000);
}

typedef cm_rc (*sync_call)(cm_lockclient_sync *s, cm_lock_result *out);

/* info and ping: connect, make one call, print its answer (with its round trip). */
static int cmd_simple(const lockctl_opts *o, const char *verb, sync_call call,
                      void (*print)(const cm_lock_result *res, uint64_t rtt_us))
{
    cm_addr *eps = NULL;
    cm_lock_result res;
    int code = EXIT_ERROR;
    cm_lockclient_sync *s = sync_connect(o, &eps);
    if (s == NULL)
        goto out;
    uint64_t t0 = cm_now_us();
    if (call(s, &res) != CM_OK || res.status != CM_LOCK_OK) {
        code = report_error(verb, &res);
        goto out;
    }
    print(&res, cm_now_us() - t0);
    code = 0;
out:
    cm_lockclient_sync_free(s);
    free(eps);
    return code;
}

int main(int argc, char **argv)
{
    lockctl_opts o = {getenv("LOCKD_SERVER"), NULL, "lockctl"};
    int i;

    cm_log_init("lockctl", CM_LOG_WARN);
    if (o.servers == NULL || o.servers[0] == '\0')
        o.servers = LOCKCTL_DEFAULT_SERVER;
    const cm_flag flags[] = {
        {.name = "server", .type = CM_FLAG_STRING, .dst = &o.servers},
        {.name = "auth", .type = CM_FLAG_STRING, .dst = &o.auth},
        {.name = "name", .type = CM_FLAG_STRING, .dst = &o.name},
    };
    int rc = parse_flags(flags, CM_ARRAY_LEN(flags), argc, argv, &i);
    if (rc >= 0)
        return rc;
    if (i >= argc)
        return usage_error("missing command");
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[i], "acquire") == 0)
        return cmd_acquire(&o, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "info") == 0 && i + 1 == argc)
        return cmd_simple(&o, "INFO", cm_lockclient_sync_info, print_info);
    if (strcmp(argv[i], "ping") == 0 && i + 1 == argc)
        return cmd_simple(&o, "PING", cm_lockclient_sync_ping, print_ping);
    return usage_error("unknown command or extra arguments at '%s'", argv[i]);
}
