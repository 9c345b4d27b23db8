/*
 * lockctl acquire: runs a program while holding a lock (SPEC §5), like flock(1) for
 * lockd, on one libevent loop with the async client (which keeps the session alive and
 * the lock's local deadline, SPEC §3b). Owns the run: the ACQUIRE, the child process,
 * and the stop of that child when the lock is lost by ANY way (a `* LOST` push of any
 * reason, the local deadline, a dead or vanished lockd): SIGTERM at once, SIGKILL after
 * --grace, exit 3. The local deadline comes before lockd can grant the lock elsewhere
 * (validity counted from the send, less a margin; lockd hands a fixed lease over no
 * earlier than validity + clock drift after the grant, SPEC §2b). Signals reach us
 * through the loop (evsignal), never a handler. Everything is freed before it returns.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "cm_log.h"
#include "cm_time.h"
#include "lockctl.h"

#define ACQUIRE_DEFAULT_WAIT_MS  10000
#define ACQUIRE_DEFAULT_GRACE_MS 2000
#define ACQUIRE_STOP_MARGIN_MS   100 /* at most a tenth of the validity (cm_lockclient) */

typedef enum run_state {
    RUN_WAITING,   /* the ACQUIRE is pending */
    RUN_HOLDING,   /* granted: the program runs */
    RUN_KILLING,   /* the lock was lost: the program got SIGTERM (SIGKILL after the grace) */
    RUN_RELEASING, /* the program ended while we held the lock: the RELEASE is pending */
    RUN_DONE,      /* leaving the loop with exit_code */
} run_state;

/* State of one `acquire` run. */
typedef struct run {
    lockctl_loop loop;
    struct event_base *base; /* loop.base */
    cm_lockclient *c;
    const char *resource;
    char *const *argv;
    uint64_t grace_ms;
    run_state st;
    char token[CM_LOCKP_TOKEN_LEN + 1];
    uint64_t fence;
    uint64_t acquire_id;
    pid_t child; /* 0: not running */
    int hold_fd; /* a dup of the session's socket once the lock is lost, -1 before */
    int exit_code;
    struct event *ev_chld, *ev_kill;
} run;

static const char *run_state_name(run_state st)
{
    static const char *const names[] = {"waiting", "holding", "killing", "releasing", "done"};
    return names[st];
}

/* The one place the run changes state; the moves it allows are the only legal ones. */
static void run_move(run *r, run_state to)
{
    bool ok = false;
    switch (r->st) {
    case RUN_WAITING:
        ok = to == RUN_HOLDING || to == RUN_DONE;
        break;
    case RUN_HOLDING:
        ok = to == RUN_KILLING || to == RUN_RELEASING || to == RUN_DONE;
        break;
    case RUN_KILLING:
    case RUN_RELEASING:
        ok = to == RUN_DONE;
        break;
    case RUN_DONE:
        break;
    }
    assert(ok);
    CM_UNUSED(ok); /* without assertions (release builds) */
    log_debug("acquire %s: %s -> %s", r->resource, run_state_name(r->st), run_state_name(to));
    r->st = to;
}

static void run_finish(run *r, int code)
{
    run_move(r, RUN_DONE);
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
    if (r->st == RUN_RELEASING)
        run_finish(r, r->exit_code);
}

/* The program is over (or never started) while we hold the lock: give it back, then
 * leave the loop with code. */
static void run_release_and_exit(run *r, int code)
{
    r->exit_code = code;
    run_move(r, RUN_RELEASING);
    if (cm_lockclient_release(r->c, r->resource, r->token, on_released, r) != CM_OK)
        run_finish(r, code);
}

static void spawn_child(run *r)
{
    char fence[32];
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long)r->fence);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "lockctl: fork: %s\n", strerror(errno));
        run_release_and_exit(r, LOCKCTL_EXIT_ERROR);
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
        run_move(r, RUN_HOLDING);
        snprintf(r->token, sizeof(r->token), "%s", res->token);
        r->fence = res->fence;
        spawn_child(r);
        break;
    case CM_LOCK_TIMEOUT:
        fprintf(stderr, "lockctl: lock timeout on %s\n", r->resource);
        run_finish(r, LOCKCTL_EXIT_TIMEOUT);
        break;
    default: {
        char prefix[CM_LOCKP_RESOURCE_MAX + 32];
        snprintf(prefix, sizeof(prefix), "cannot acquire %s", r->resource);
        lockctl_print_error(prefix, res);
        run_finish(r, LOCKCTL_EXIT_ERROR);
        break;
    }
    }
}

/* The lock is gone, whichever way: the program must stop now, before anyone else can
 * be granted the lock. */
static void on_lost(void *arg, const cm_lock_lost_info *info)
{
    run *r = arg;
    struct timeval tv = cm_tv_from_ms(r->grace_ms);
    if (r->st != RUN_HOLDING || strcmp(info->token, r->token) != 0)
        return;
    if (r->child <= 0) {
        fprintf(stderr, "lockctl: lock on %s lost (%s)\n", info->resource, info->reason);
        run_move(r, RUN_KILLING);
        run_finish(r, LOCKCTL_EXIT_LOST);
        return;
    }
    run_move(r, RUN_KILLING);
    r->exit_code = LOCKCTL_EXIT_LOST;
    /* lockd releases a session's locks when it ends: a dup of its socket, never closed,
     * keeps it open until this process is gone, so the lock cannot move on between our
     * cleanup and our exit (the kernel closes it after everything else) */
    int fd = cm_lockclient_fd(r->c);
    if (fd >= 0)
        r->hold_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    kill(r->child, SIGTERM);
    evtimer_add(r->ev_kill, &tv);
    fprintf(stderr, "lockctl: lock on %s lost (%s); sent SIGTERM to %s (pid %d)\n", info->resource,
            info->reason, r->argv[0], (int)r->child);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    if (r->child > 0) {
        fprintf(stderr, "lockctl: %s still runs %llu ms after SIGTERM; sending SIGKILL\n",
                r->argv[0], (unsigned long long)r->grace_ms);
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
    if (r->st == RUN_KILLING) {
        run_finish(r, LOCKCTL_EXIT_LOST);
        return;
    }
    int code = WIFEXITED(st)     ? WEXITSTATUS(st)
               : WIFSIGNALED(st) ? 128 + WTERMSIG(st)
                                 : LOCKCTL_EXIT_ERROR;
    run_release_and_exit(r, code);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    run *r = arg;
    if (r->child > 0) {
        kill(r->child, (int)sig); /* the program decides; we exit with its status */
        return;
    }
    if (r->st == RUN_WAITING) {
        cm_lockclient_cancel(r->c, r->acquire_id); /* a late grant is released */
        run_finish(r, 128 + (int)sig);
    }
}

static int run_loop(run *r, const cm_lockclient_opts *co, uint64_t lease, uint64_t wait)
{
    r->exit_code = LOCKCTL_EXIT_ERROR;
    if (!lockctl_loop_init(&r->loop, on_stop_signal, r))
        return LOCKCTL_EXIT_ERROR;
    r->base = r->loop.base;
    r->ev_chld = evsignal_new(r->base, SIGCHLD, on_sigchld, r);
    r->ev_kill = evtimer_new(r->base, on_kill_timer, r);
    if (!r->ev_chld || !r->ev_kill || evsignal_add(r->ev_chld, NULL))
        return LOCKCTL_EXIT_ERROR;
    r->c = cm_lockclient_new(r->base, co);
    if (r->c == NULL) {
        fprintf(stderr, "lockctl: bad client options (server, name or secret)\n");
        return LOCKCTL_EXIT_ERROR;
    }
    cm_lockclient_on_lost_info(r->c, on_lost, r);
    if (cm_lockclient_acquire(r->c, r->resource, lease, wait, on_acquired, r, &r->acquire_id) !=
        CM_OK) {
        fprintf(stderr, "lockctl: cannot send ACQUIRE\n");
        return LOCKCTL_EXIT_ERROR;
    }
    event_base_dispatch(r->base);
    return r->exit_code;
}

int lockctl_acquire(const lockctl_opts *o, int argc, char **argv)
{
    uint64_t lease = 0, wait = ACQUIRE_DEFAULT_WAIT_MS, grace = ACQUIRE_DEFAULT_GRACE_MS;
    cm_lockclient_opts co;
    cm_addr *eps = NULL;
    run r;
    int i, rc;

    if ((rc = lockctl_resource_arg("acquire", argc, argv)) >= 0)
        return rc;
    memset(&r, 0, sizeof(r));
    r.resource = argv[0];
    const cm_flag flags[] = {
        {.name = "lease",
         .type = CM_FLAG_U64,
         .dst = &lease,
         .hi = UINT64_MAX,
         .want = "milliseconds (0: watchdog lease)"},
        {.name = "wait",
         .type = CM_FLAG_U64,
         .dst = &wait,
         .hi = UINT64_MAX,
         .want = "milliseconds"},
        {.name = "grace",
         .type = CM_FLAG_U64,
         .dst = &grace,
         .hi = 3600000,
         .want = "milliseconds from 0 to 3600000"},
    };
    if ((rc = lockctl_parse_flags(flags, CM_ARRAY_LEN(flags), argc, argv, &i)) >= 0)
        return rc;
    if (i < argc && strcmp(argv[i], "--") != 0)
        return lockctl_usage_error("unexpected argument '%s' (PROGRAM goes after --)", argv[i]);
    if (i + 1 >= argc)
        return lockctl_usage_error("acquire needs -- PROGRAM");
    r.argv = &argv[i + 1];
    r.grace_ms = grace;
    if (!lockctl_make_opts(o, NULL, &co, &eps))
        return LOCKCTL_EXIT_ERROR;
    /* the program's stop (SIGTERM, its exit, ours) must fit before lockd can grant the
     * lock elsewhere: start it this much before the lock's local deadline */
    co.stop_margin_ms = ACQUIRE_STOP_MARGIN_MS;
    /* a lock lost locally is still lockd's until then: no RELEASE before the program is
     * dead (lockd drops it when the session ends, with our exit) */
    co.keep_lost_locks = true;
    r.hold_fd = -1;

    int code = run_loop(&r, &co, lease, wait);
    if (r.child > 0) {
        /* only on an internal error: do not leave the program running unlocked */
        kill(r.child, SIGTERM);
        waitpid(r.child, NULL, 0);
    }
    cm_lockclient_free(r.c);
    if (r.ev_chld)
        event_free(r.ev_chld);
    if (r.ev_kill)
        event_free(r.ev_kill);
    lockctl_loop_free(&r.loop);
    free(eps);
    return code;
}
