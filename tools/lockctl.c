/*
 * lockctl: the command-line lock client (SPEC §5), like flock(1) or `etcdctl lock` for
 * lockd. This file owns main, the usage text, the global flags and the one-call
 * commands on the blocking client: info, ping, show (SPEC §2b SHOW) and revoke (REVOKE,
 * as an admin). `acquire` lives in lockctl_acquire.c, `watch` in lockctl_watch.c.
 * Exit codes: 0 success (acquire: its program's status), 1 lock timeout, 2 error or
 * usage, 3 lock lost (the program was stopped).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cm_log.h"
#include "cm_time.h"
#include "lockctl.h"

#define LOCKCTL_DEFAULT_SERVER "127.0.0.1:7380"
#define LOCKCTL_ADMIN_ENV      "LOCKCTL_ADMIN_AUTH"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lockctl [--server H:P[,H:P...]] [--auth SECRET] [--name NAME] COMMAND [ARGS]\n"
            "commands:\n"
            "  acquire RESOURCE [--lease MS] [--wait MS] [--grace MS] -- PROGRAM [ARGS...]\n"
            "      run PROGRAM while holding RESOURCE and exit with its status. PROGRAM gets\n"
            "      LOCK_RESOURCE, LOCK_TOKEN and LOCK_FENCE in its environment.\n"
            "      --lease MS  0 (default): a watchdog lease, held as long as lockctl runs;\n"
            "                  > 0: a fixed lease of MS ms, never renewed (a time limit)\n"
            "      --wait MS   how long to wait for the lock (default 10000; 0: one attempt)\n"
            "      --grace MS  time from SIGTERM to SIGKILL when the lock is lost (default 2000)\n"
            "      The lock is lost when lockd says so (LOST, any reason), when its local\n"
            "      deadline passes (validity counted from the ACQUIRE's send, less 5%% (at\n"
            "      most 50 ms) and 100 ms (at most 10%%) for PROGRAM to stop: before lockd can\n"
            "      grant it to anyone else), or when lockd dies or stops answering. PROGRAM\n"
            "      then gets SIGTERM, SIGKILL after the grace, and lockctl exits 3.\n"
            "      SIGTERM or SIGINT to lockctl is passed to PROGRAM; lockctl exits with its\n"
            "      status. Own exit codes: 1 lock timeout, 2 error, 3 lock lost.\n"
            "  show RESOURCE\n"
            "      print the lock's state as a majority of masters sees it, as key=value\n"
            "      lines: held, fence, ttl_ms, holder (HELLO name), lockd, waiters\n"
            "  revoke RESOURCE [--admin-auth SECRET]\n"
            "      delete the lock wherever it is held and raise its fence (its holder is\n"
            "      told LOST revoked); prints \"revoked RESOURCE fence N\", or \"RESOURCE was\n"
            "      not held\". SECRET is lockd's admin_auth; default $" LOCKCTL_ADMIN_ENV "\n"
            "      (keeps it off the command line)\n"
            "  watch RESOURCE [--interval MS] [--count N]\n"
            "      print a line each time the lock changes hands, like `etcdctl watch`:\n"
            "        <UTC time> held=<0|1> holder=<name|-> fence=<n> lockd=<id|->\n"
            "      the first line is the state at start. Polls SHOW every --interval ms\n"
            "      (default 100); runs until SIGINT/SIGTERM (exit 0) or N changes (--count)\n"
            "  info    print lockd's INFO as key=value lines\n"
            "  ping    print PONG and the round-trip time\n"
            "global flags:\n"
            "  --server H:P[,H:P...]  lockd endpoints, tried in order for failover\n"
            "                         (default $LOCKD_SERVER, else %s)\n"
            "  --auth SECRET          lockd's shared secret (config key auth)\n"
            "  --name NAME            the HELLO name, shown as holder (default lockctl)\n"
            "  --help, --version\n"
            "exit codes: 0 success (acquire: PROGRAM's status), 1 lock timeout, 2 error or\n"
            "usage error, 3 lock lost (PROGRAM was stopped)\n",
            LOCKCTL_DEFAULT_SERVER);
}

int lockctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lockctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    return LOCKCTL_EXIT_ERROR;
}

int lockctl_parse_flags(const cm_flag *flags, size_t n, int argc, char **argv, int *next)
{
    const cm_flags_spec spec = {
        .prog = "lockctl", .flags = flags, .nflags = n, .usage = usage, .stop_at_positional = true};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, next);
    return res == CM_FLAGS_RUN ? -1 : CM_FLAGS_EXIT(res);
}

int lockctl_resource_arg(const char *cmd, int argc, char **argv)
{
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 1 || argv[0][0] == '-')
        return lockctl_usage_error("%s needs a RESOURCE", cmd);
    if (!cm_lockp_valid_resource(argv[0], strlen(argv[0])))
        return lockctl_usage_error("bad resource '%s' (1-256 printable non-space bytes)", argv[0]);
    return -1;
}

bool lockctl_make_opts(const lockctl_opts *o, const char *auth, cm_lockclient_opts *co,
                       cm_addr **eps)
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
    co->auth = auth != NULL ? auth : o->auth;
    return true;
}

/* "CODE text" for an error result; lockd's ERR SESSION text says it all already
 * ("session expired after N ms of silence ..."). */
void lockctl_print_error(const char *prefix, const cm_lock_result *res)
{
    if (strcmp(res->code, "SESSION") == 0)
        fprintf(stderr, "lockctl: %s: %s\n", prefix, res->message);
    else
        fprintf(stderr, "lockctl: %s: %s%s%s\n", prefix, res->code[0] ? res->code : "ERROR",
                res->message[0] ? " " : "", res->message);
}

bool lockctl_loop_init(lockctl_loop *l, void (*on_stop)(evutil_socket_t sig, short what, void *arg),
                       void *arg)
{
    memset(l, 0, sizeof(*l));
    l->base = event_base_new();
    if (l->base == NULL)
        return false;
    l->ev_int = evsignal_new(l->base, SIGINT, on_stop, arg);
    l->ev_term = evsignal_new(l->base, SIGTERM, on_stop, arg);
    return l->ev_int != NULL && l->ev_term != NULL && evsignal_add(l->ev_int, NULL) == 0 &&
           evsignal_add(l->ev_term, NULL) == 0;
}

void lockctl_loop_free(lockctl_loop *l)
{
    if (l->ev_int != NULL)
        event_free(l->ev_int);
    if (l->ev_term != NULL)
        event_free(l->ev_term);
    if (l->base != NULL)
        event_base_free(l->base);
    memset(l, 0, sizeof(*l));
}

/* ---------------------------------------------------------------- one-call commands */

/* A one-call command: its request on the blocking client and how its answer prints. */
typedef struct simple_cmd {
    const char *verb;
    const char *resource; /* NULL: the verb takes none */
    cm_rc (*call)(cm_lockclient_sync *s, const char *resource, cm_lock_result *out);
    void (*print)(const char *resource, const cm_lock_result *res, uint64_t rtt_us);
} simple_cmd;

static cm_rc call_info(cm_lockclient_sync *s, const char *resource, cm_lock_result *out)
{
    (void)resource;
    return cm_lockclient_sync_info(s, out);
}

static cm_rc call_ping(cm_lockclient_sync *s, const char *resource, cm_lock_result *out)
{
    (void)resource;
    return cm_lockclient_sync_ping(s, out);
}

/* INFO and SHOW: one key=value a line. */
static void print_fields(const char *resource, const cm_lock_result *res, uint64_t rtt_us)
{
    (void)resource;
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
static void print_ping(const char *resource, const cm_lock_result *res, uint64_t rtt_us)
{
    (void)resource;
    printf("%s %llu.%03llu ms\n", res->line[0] ? res->line : "PONG",
           (unsigned long long)rtt_us / 1000, (unsigned long long)rtt_us % 1000);
}

static void print_revoke(const char *resource, const cm_lock_result *res, uint64_t rtt_us)
{
    (void)rtt_us;
    if (strcmp(res->line, "-") == 0)
        printf("%s was not held\n", resource);
    else
        printf("revoked %s fence %llu\n", resource, (unsigned long long)res->fence);
}

/* Connects, makes one call, prints its answer. auth: the AUTH secret (NULL: --auth). */
static int run_simple(const lockctl_opts *o, const simple_cmd *cmd, const char *auth)
{
    cm_lockclient_opts co;
    cm_addr *eps = NULL;
    cm_lock_result res;
    char err[256];
    int code = LOCKCTL_EXIT_ERROR;
    cm_lockclient_sync *s = NULL;

    if (!lockctl_make_opts(o, auth, &co, &eps))
        goto out;
    s = cm_lockclient_sync_new(&co, err, sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "lockctl: %s (%s)\n", err, o->servers);
        goto out;
    }
    uint64_t t0 = cm_now_us();
    if (cmd->call(s, cmd->resource, &res) != CM_OK || res.status != CM_LOCK_OK) {
        char prefix[CM_LOCKP_RESOURCE_MAX + 32];
        snprintf(prefix, sizeof(prefix), "%s%s%s failed", cmd->verb, cmd->resource ? " " : "",
                 cmd->resource ? cmd->resource : "");
        lockctl_print_error(prefix, &res);
        goto out;
    }
    cmd->print(cmd->resource, &res, cm_now_us() - t0);
    code = 0;
out:
    cm_lockclient_sync_free(s);
    free(eps);
    return code;
}

/* show RESOURCE / revoke RESOURCE [--admin-auth SECRET] */
static int cmd_resource(const lockctl_opts *o, bool revoke, int argc, char **argv)
{
    const char *admin = getenv(LOCKCTL_ADMIN_ENV);
    int i, rc;
    if ((rc = lockctl_resource_arg(revoke ? "revoke" : "show", argc, argv)) >= 0)
        return rc;
    const cm_flag flags[] = {{.name = "admin-auth", .type = CM_FLAG_STRING, .dst = &admin}};
    if ((rc = lockctl_parse_flags(flags, revoke ? 1 : 0, argc, argv, &i)) >= 0)
        return rc;
    if (i < argc)
        return lockctl_usage_error("unexpected argument '%s'", argv[i]);
    if (revoke && (admin == NULL || admin[0] == '\0'))
        return lockctl_usage_error("revoke needs lockd's admin secret: --admin-auth SECRET "
                                   "or $" LOCKCTL_ADMIN_ENV);
    const simple_cmd cmd = {revoke ? "REVOKE" : "SHOW", argv[0],
                            revoke ? cm_lockclient_sync_revoke : cm_lockclient_sync_show,
                            revoke ? print_revoke : print_fields};
    return run_simple(o, &cmd, revoke ? admin : NULL);
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
    const cm_flags_spec spec = {.prog = "lockctl",
                                .flags = flags,
                                .nflags = CM_ARRAY_LEN(flags),
                                .usage = usage,
                                .stop_at_positional = true};
    cm_flags_result fr = cm_flags_parse(&spec, argc, argv, 1, &i);
    if (fr != CM_FLAGS_RUN)
        return CM_FLAGS_EXIT(fr);
    if (i >= argc)
        return lockctl_usage_error("missing command");
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = argv[i];
    int n = argc - i - 1;
    char **rest = argv + i + 1;
    static const simple_cmd info = {"INFO", NULL, call_info, print_fields};
    static const simple_cmd ping = {"PING", NULL, call_ping, print_ping};
    if (strcmp(cmd, "acquire") == 0)
        return lockctl_acquire(&o, n, rest);
    if (strcmp(cmd, "watch") == 0)
        return lockctl_watch(&o, n, rest);
    if (strcmp(cmd, "show") == 0 || strcmp(cmd, "revoke") == 0)
        return cmd_resource(&o, strcmp(cmd, "revoke") == 0, n, rest);
    if ((strcmp(cmd, "info") == 0 || strcmp(cmd, "ping") == 0) && n == 0)
        return run_simple(&o, strcmp(cmd, "info") == 0 ? &info : &ping, NULL);
    return lockctl_usage_error("unknown command or extra arguments at '%s'", cmd);
}
