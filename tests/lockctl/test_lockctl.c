/*
 * test_lockctl: the lockctl program end to end (SPEC §5, issue 12 §2-§4) against REAL
 * redis-server and build/bin/lockd processes started by the th harness and stopped by
 * PID (also on failure: th_stop_all from the unchecked teardown and at exit). lockctl
 * runs as a child of the test; the moment it exits is taken by a thread blocked in
 * waitid(WNOWAIT), and the moment another session is granted the lock by a blocking
 * read of that session's socket: both on the test's one monotonic clock.
 * The binary runs one case when given its name (ctest registers one entry per case).
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it_common.h"
#include "th.h"
#include "th_check.h"

/* lockd A holds through lockctl, lockd B serves the other session: a watchdog lease of
 * 2 s, a session timeout long enough for a waiter that only PINGs. */
#define LOCKD_YAML   "watchdog: {lease_ms: 2000}\n"
#define ADMIN_SECRET "s3cret-admin"

typedef struct world {
    th_redis redis[3];
    th_lockd lockd[2];
    char dir[512];
} world;

/* Starts 3 masters and n_lockd lockds with LOCKD_YAML, session.lock_delay_ms and
 * extra_yaml (may be NULL). */
static void world_start_delay(world *w, int n_lockd, int lock_delay_ms, const char *extra_yaml)
{
    char yaml[1024];
    memset(w, 0, sizeof(*w));
    snprintf(yaml, sizeof(yaml), "session: {timeout_ms: 5000, lock_delay_ms: %d}\n%s%s",
             lock_delay_ms, LOCKD_YAML, extra_yaml ? extra_yaml : "");
    it_redis_start_n(w->redis, 3);
    for (int i = 0; i < n_lockd; i++)
        it_lockd_start(&w->lockd[i], w->redis, 3, yaml);
    snprintf(w->dir, sizeof(w->dir), "%s", th_tmpdir());
}

static void world_start(world *w, int n_lockd, const char *extra_yaml)
{
    world_start_delay(w, n_lockd, 0, extra_yaml);
}

/* Spawns build/bin/lockctl --server <lockd i> --name lockctl-test args...; its stdout
 * and stderr go to log. */
static pid_t lockctl_spawn(const world *w, int lockd, const char *log, char *const *args)
{
    char server[64];
    char *argv[32];
    int n = 0;
    snprintf(server, sizeof(server), "127.0.0.1:%d", w->lockd[lockd].port);
    argv[n++] = (char *)th_bin("lockctl");
    argv[n++] = "--server";
    argv[n++] = server;
    argv[n++] = "--name";
    argv[n++] = "lockctl-test";
    while (*args != NULL && n < 31)
        argv[n++] = *args++;
    argv[n] = NULL;
    return th_spawn(argv, log);
}

/* lockctl run to its end: its exit status (waitpid form) and what it printed. */
static int lockctl_run(const world *w, char *out, size_t outlen, char *const *args)
{
    char log[600];
    static int n;
    snprintf(log, sizeof(log), "%s/run%d.log", w->dir, n++);
    int st = th_wait_exit(lockctl_spawn(w, 0, log, args), 20000);
    FILE *f = fopen(log, "r");
    out[0] = '\0';
    if (f != NULL) {
        size_t k = fread(out, 1, outlen - 1, f);
        out[k] = '\0';
        fclose(f);
    }
    return st;
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool read_log(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return true;
}

/* ---------------------------------------------------------------- exit watcher */

/* The moment a child exits, without reaping it (th_wait_exit does that later). */
typedef struct exit_watch {
    pid_t pid;
    atomic_ullong at_us; /* 0 until it exited */
    pthread_t thread;
} exit_watch;

static void *exit_watch_main(void *arg)
{
    exit_watch *x = arg;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)x->pid, &si, WEXITED | WNOWAIT) == 0)
        atomic_store(&x->at_us, th_now_us());
    return NULL;
}

static void exit_watch_start(exit_watch *x, pid_t pid)
{
    x->pid = pid;
    atomic_store(&x->at_us, 0);
    ck_assert_int_eq(pthread_create(&x->thread, NULL, exit_watch_main, x), 0);
}

/* Waits (timeout_ms at most) until the watcher saw the child exit, joins it and reaps
 * the child: its exit status (-1 when it did not exit in time: it is killed). */
static int exit_watch_end(exit_watch *x, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(&x->at_us) == 0 && th_now_ms() < deadline)
        th_sleep_ms(2);
    int st = atomic_load(&x->at_us) != 0 ? th_wait_exit(x->pid, 2000) : -1;
    if (st == -1)
        th_stop(x->pid, false, 2000); /* the watcher returns once it is gone */
    pthread_join(x->thread, NULL);
    return st;
}

/* ---------------------------------------------------------------- helpers */

/* Waits until lockd holds res in Redis (its lock key on master 0): lockctl was granted. */
static bool wait_held(const world *w, const char *res, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    char out[128];
    while (th_now_ms() < deadline) {
        if (it_redis_cmd(w->redis[0].port, out, sizeof(out), "GET lockd:lock:%s", res) &&
            strcmp(out, "$-1") != 0 && out[0] != '\0')
            return true;
        th_sleep_ms(5);
    }
    return false;
}

/* Waits until path exists (lockctl's program started: lockctl has its grant). */
static bool wait_file(const char *path, int timeout_ms)
{
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    while (access(path, F_OK) != 0 && th_now_ms() < deadline)
        th_sleep_ms(5);
    return access(path, F_OK) == 0;
}

/* Spawns `lockctl acquire R -- sh -c 'touch <dir>/started; exec sleep 30'` through lockd 0
 * and waits until the program runs. */
static pid_t spawn_holder(const world *w, const char *log)
{
    char cmd[700], marker[600];
    snprintf(marker, sizeof(marker), "%s/started", w->dir);
    snprintf(cmd, sizeof(cmd), "touch %s; exec sleep 30", marker);
    char *args[] = {"acquire", "R", "--", "sh", "-c", cmd, NULL};
    pid_t p = lockctl_spawn(w, 0, log, args);
    ck_assert_msg(wait_file(marker, 5000), "lockctl's program never started");
    return p;
}

/* Another session, on lockd b, waits for res; the moment it is granted. */
static uint64_t other_grant_at(const world *w, int b, const char *res, int timeout_ms, char *line)
{
    th_conn c;
    char lines[1][IT_LINE];
    uint64_t at = 0;
    it_connect(&c, w->lockd[b].port, "other");
    ck_assert(th_send(&c, "w ACQUIRE %s 0 %d", res, timeout_ms));
    it_wait_replies(&c, 1, "w", lines, &at, timeout_ms + 1000);
    snprintf(line, IT_LINE, "%s", lines[0]);
    th_close(&c);
    return at;
}

/* The ordering rule of issue 12 §4 for lockctl: it stopped its program and exited 3 (x)
 * before the other session was granted the lock (granted_at). */
static void assert_exit3_first(exit_watch *x, uint64_t granted_at, uint64_t t0, const char *line,
                               const char *log)
{
    char text[8192];
    int st = exit_watch_end(x, 8000);
    if (!read_log(log, text, sizeof(text)))
        text[0] = '\0';
    long long exited = x->at_us ? ((long long)x->at_us - (long long)t0) / 1000 : 0;
    long long granted = granted_at ? ((long long)granted_at - (long long)t0) / 1000 : 0;
    fprintf(stderr, "lockctl exited at %+lld ms, granted elsewhere at %+lld ms\n", exited, granted);
    ck_assert_msg(granted_at != 0, "the other session was never granted the lock: %s", line);
    ck_assert_msg(strstr(line, " OK ") != NULL, "other session: %s", line);
    ck_assert_msg(x->at_us > t0 && exit_code(st) == 3,
                  "lockctl: status %d (exited at %+lld ms); granted elsewhere at %+lld ms; it "
                  "said: %s",
                  st, exited, granted, text);
    ck_assert_msg(x->at_us < granted_at,
                  "lockctl exited at %+lld ms, granted elsewhere at %+lld ms; it said: %s", exited,
                  granted, text);
    ck_assert_msg(strstr(text, "sent SIGTERM") != NULL, "lockctl said: %s", text);
}

/* ---------------------------------------------------------------- the lost cases */

/* The ordering cases time lockctl's exit: in the sanitized build LeakSanitizer's scan at
 * exit alone takes ~100 ms on this machine, which is the test build's, not lockctl's.
 * Those runs skip it (the other cases' lockctl runs keep the leak check, on the same
 * acquire-lost path). */
static void no_exit_leak_scan(void)
{
    const char *cur = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", cur ? cur : "", cur && *cur ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

/* Issue 12 defect 4 / §4: `lockctl acquire R --lease 500 -- sleep 5`: the program gets
 * SIGTERM and lockctl exits 3 before any other grant of R (a session waiting through
 * another lockd). Before, nothing tracked the lease: sleep ran on, lockctl exited 0.
 * lockctl's exit closes its session, and lockd releases a closed session's locks: with
 * lock_delay_ms 0 a grant caused by that exit follows it within the test's own wake-up
 * jitter (the exit is seen by a thread that must be scheduled). A lock-delay of 100 ms
 * (SPEC §3, Chubby's) separates the two; a late lockctl still loses to lockd's own
 * handover at validity + drift. */
START_TEST(test_fixed_lease_expiry)
{
    world w;
    char log[600], line[IT_LINE];
    world_start_delay(&w, 2, 100, NULL);
    snprintf(log, sizeof(log), "%s/lockctl.log", w.dir);
    no_exit_leak_scan();
    char *args[] = {"acquire", "R", "--lease", "500", "--wait", "0", "--", "sleep", "5", NULL};
    uint64_t t0 = th_now_us();
    exit_watch x;
    exit_watch_start(&x, lockctl_spawn(&w, 0, log, args));
    ck_assert_msg(wait_held(&w, "R", 3000), "lockctl never held R");
    uint64_t granted = other_grant_at(&w, 1, "R", 8000, line);
    assert_exit3_first(&x, granted, t0, line, log);
    ck_assert_msg((x.at_us - t0) / 1000 < 2000, "lockctl ran %llu ms on a 500 ms lease",
                  (unsigned long long)(x.at_us - t0) / 1000);
}
END_TEST

/* lockctl holds R through lockd A under a watchdog lease; A then fails (stop: SIGSTOP
 * after settle_ms, else SIGKILL): lockctl must stop its program and exit 3 before lockd B
 * grants R, saying why (reason). */
static void lockd_fault(bool stop, int settle_ms, const char *reason)
{
    world w;
    char log[600], line[IT_LINE], text[8192];
    world_start(&w, 2, NULL);
    snprintf(log, sizeof(log), "%s/lockctl.log", w.dir);
    no_exit_leak_scan();
    exit_watch x;
    exit_watch_start(&x, spawn_holder(&w, log));
    th_sleep_ms(settle_ms);
    uint64_t t0 = th_now_us();
    if (stop)
        th_signal(w.lockd[0].pid, SIGSTOP);
    else
        th_stop(w.lockd[0].pid, false, 2000);
    uint64_t granted = other_grant_at(&w, 1, "R", 8000, line);
    assert_exit3_first(&x, granted, t0, line, log);
    ck_assert(read_log(log, text, sizeof(text)));
    ck_assert_msg(strstr(text, reason) != NULL, "wanted %s; lockctl said: %s", reason, text);
}

/* lockd frozen (SIGSTOP) under a watchdog lease: nothing answers, no EOF. lockctl stops
 * its program at the lease's local deadline, before lockd B can grant the lock (after
 * the key's TTL). Before, lockctl noticed only when a PING timed out (~4 s). */
START_TEST(test_lockd_stopped)
{
    lockd_fault(true, 300, "(deadline)");
}
END_TEST

/* lockd killed (SIGKILL): the session ends with EOF, lockctl stops its program at once
 * ("disconnected"), long before the key's TTL lets lockd B grant the lock. */
START_TEST(test_lockd_killed)
{
    lockd_fault(false, 0, "(disconnected)");
}
END_TEST

/* A program that ignores SIGTERM gets SIGKILL after --grace. */
START_TEST(test_grace_kill)
{
    world w;
    char log[600], text[8192];
    world_start(&w, 1, NULL);
    snprintf(log, sizeof(log), "%s/lockctl.log", w.dir);
    char *args[] = {"acquire", "G",  "--lease", "300", "--grace",
                    "400",     "--", "sh",      "-c",  "trap '' TERM; sleep 20 & wait; sleep 20",
                    NULL};
    uint64_t t0 = th_now_ms();
    pid_t p = lockctl_spawn(&w, 0, log, args);
    int st = th_wait_exit(p, 8000);
    uint64_t took = th_now_ms() - t0;
    ck_assert_msg(exit_code(st) == 3, "status %d", st);
    ck_assert_msg(took >= 600 && took < 3000, "lockctl took %llu ms (lease 300 + grace 400)",
                  (unsigned long long)took);
    ck_assert(read_log(log, text, sizeof(text)));
    ck_assert_msg(strstr(text, "sending SIGKILL") != NULL, "lockctl said: %s", text);
}
END_TEST

/* ---------------------------------------------------------------- command line */

/* Bad flags and arguments: a clear error and exit 2; --help documents every command. */
START_TEST(test_usage)
{
    world w;
    char out[16384];
    memset(&w, 0, sizeof(w));
    snprintf(w.dir, sizeof(w.dir), "%s", th_tmpdir());
    w.lockd[0].port = th_free_port(); /* nobody listens there */
    char *help[] = {"--help", NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), help)), 0);
    const char *documented[] = {
        "acquire RESOURCE", "--lease",         "--wait",       "--grace",
        "show RESOURCE",    "revoke RESOURCE", "--admin-auth", "LOCKCTL_ADMIN_AUTH",
        "watch RESOURCE",   "--interval",      "--count",      "exit codes"};
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        ck_assert_msg(strstr(out, documented[i]) != NULL, "--help does not say %s", documented[i]);

    struct {
        char *args[8];
        const char *says;
    } bad[] = {
        {{"show", NULL}, "show needs a RESOURCE"},
        {{"show", "R", "extra", NULL}, "unexpected argument 'extra'"},
        {{"show", "R", "--admin-auth", "x", NULL}, "unknown option '--admin-auth'"},
        {{"show", "has\001ctl", NULL}, "bad resource"},
        {{"revoke", "R", NULL}, "admin secret"},
        {{"revoke", "R", "--admin-auth", NULL}, "--admin-auth needs a value"},
        {{"watch", NULL}, "watch needs a RESOURCE"},
        {{"watch", "R", "--count", "0", NULL}, "--count '0'"},
        {{"watch", "R", "--interval", "x", NULL}, "--interval 'x'"},
        {{"acquire", "R", "--grace", "-1", "--", "true", NULL}, "--grace '-1'"},
        {{"acquire", "R", "--", NULL}, "acquire needs -- PROGRAM"},
        {{"acquire", "R", "true", NULL}, "PROGRAM goes after --"},
        {{"frobnicate", NULL}, "unknown command"},
    };
    unsetenv("LOCKCTL_ADMIN_AUTH");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = lockctl_run(&w, out, sizeof(out), bad[i].args);
        ck_assert_msg(exit_code(st) == 2, "%s: status %d", bad[i].args[0], st);
        ck_assert_msg(strstr(out, bad[i].says) != NULL, "case %zu: wanted '%s' in: %s", i,
                      bad[i].says, out);
    }
    /* a lockd that is not there: an error, exit 2 */
    char *show[] = {"show", "R", NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), show)), 2);
    char *watch[] = {"watch", "R", NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), watch)), 2);
}
END_TEST

/* ---------------------------------------------------------------- SHOW, REVOKE, watch */

/* lockctl show: the state lockd's SHOW reports, one key=value a line. */
START_TEST(test_show)
{
    world w;
    char out[4096], want[128];
    th_conn h;
    it_grant g;
    world_start(&w, 1, NULL);
    char *show[] = {"show", "Shown", NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), show)), 0);
    ck_assert_msg(strstr(out, "held=0\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "holder=-\n") != NULL, "%s", out);

    it_connect(&h, w.lockd[0].port, "holder1");
    ck_assert_int_eq(it_acquire(&h, "a", "Shown", 0, 0, 3000, &g, out, sizeof(out)), IT_OK);
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), show)), 0);
    ck_assert_msg(strstr(out, "held=1\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "holder=holder1\n") != NULL, "%s", out);
    snprintf(want, sizeof(want), "fence=%llu\n", (unsigned long long)g.fence);
    ck_assert_msg(strstr(out, want) != NULL, "wanted %s in %s", want, out);
    ck_assert_msg(strstr(out, "ttl_ms=") != NULL && strstr(out, "waiters=0\n") != NULL, "%s", out);
    th_close(&h);
}
END_TEST

/* lockctl revoke: a wrong secret is refused (exit 2, nothing changes); with the admin
 * secret from $LOCKCTL_ADMIN_AUTH the holder is told LOST revoked, the printed fence is
 * above the holder's, a waiter is granted with a fence above it; nothing held: said so. */
START_TEST(test_revoke)
{
    world w;
    char out[4096], lines[2][IT_LINE];
    uint64_t at[2] = {0, 0};
    th_conn c[2];
    it_grant g;
    world_start(&w, 2, "admin_auth: " ADMIN_SECRET "\n");
    it_connect(&c[0], w.lockd[0].port, "holder1");
    ck_assert_int_eq(it_acquire(&c[0], "a", "Rv", 0, 0, 3000, &g, out, sizeof(out)), IT_OK);
    it_connect(&c[1], w.lockd[1].port, "waiter");
    ck_assert(th_send(&c[1], "w ACQUIRE Rv 0 10000"));

    unsetenv("LOCKCTL_ADMIN_AUTH");
    char *wrong[] = {"revoke", "Rv", "--admin-auth", "wrong", NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), wrong)), 2);
    ck_assert_msg(strstr(out, "AUTH") != NULL, "%s", out);
    ck_assert(it_ping(&c[0], "p0", 2000)); /* still held, nothing pushed */

    setenv("LOCKCTL_ADMIN_AUTH", ADMIN_SECRET, 1);
    char *revoke[] = {"revoke", "Rv", NULL};
    int st = lockctl_run(&w, out, sizeof(out), revoke);
    unsetenv("LOCKCTL_ADMIN_AUTH");
    ck_assert_msg(exit_code(st) == 0, "status %d: %s", st, out);
    unsigned long long fence = 0;
    ck_assert_msg(sscanf(out, "revoked Rv fence %llu", &fence) == 1, "%s", out);
    ck_assert_uint_gt(fence, g.fence);

    char lost[64];
    snprintf(lost, sizeof(lost), "* LOST Rv %s revoked", g.token);
    const char *prefix[1] = {lost};
    ck_assert_int_eq(it_wait_prefixes(&c[0], 1, prefix, lines, at, 3000), 1);
    ck_assert_int_eq(it_wait_replies(&c[1], 1, "w", &lines[1], &at[1], 5000), 1);
    it_grant g2;
    ck_assert_msg(it_classify(lines[1], "w", &g2) == IT_OK, "waiter: %s", lines[1]);
    ck_assert_uint_gt(g2.fence, fence);

    char *none[] = {"revoke", "Nothing", "--admin-auth", ADMIN_SECRET, NULL};
    ck_assert_int_eq(exit_code(lockctl_run(&w, out, sizeof(out), none)), 0);
    ck_assert_msg(strstr(out, "Nothing was not held") != NULL, "%s", out);
    th_close(&c[0]);
    th_close(&c[1]);
}
END_TEST

/* Counts the lines of s that contain needle. */
static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* lockctl watch: the state at start, then one line per change of hands (held, holder,
 * fence), ending after --count changes; SIGINT ends it with 0. */
START_TEST(test_watch)
{
    world w;
    char log[600], out[8192], want[128];
    th_conn h;
    it_grant g;
    world_start(&w, 1, NULL);
    snprintf(log, sizeof(log), "%s/watch.log", w.dir);
    char *args[] = {"watch", "Wt", "--interval", "20", "--count", "2", NULL};
    pid_t p = lockctl_spawn(&w, 0, log, args);
    th_sleep_ms(400);
    it_connect(&h, w.lockd[0].port, "holder1");
    ck_assert_int_eq(it_acquire(&h, "a", "Wt", 0, 0, 3000, &g, out, sizeof(out)), IT_OK);
    th_sleep_ms(400);
    ck_assert_int_eq(it_release(&h, "r", "Wt", g.token, 3000), IT_OK);
    int st = th_wait_exit(p, 5000);
    ck_assert(read_log(log, out, sizeof(out)));
    ck_assert_msg(exit_code(st) == 0, "status %d: %s", st, out);
    ck_assert_msg(count_lines(out, " held=0 holder=- ") == 2, "%s", out);
    snprintf(want, sizeof(want), " held=1 holder=holder1 fence=%llu ", (unsigned long long)g.fence);
    ck_assert_msg(count_lines(out, want) == 1, "wanted '%s' once in %s", want, out);
    ck_assert_msg(strstr(out, "held=1") > strstr(out, "held=0"), "%s", out);
    ck_assert_msg(out[4] == '-' && strstr(out, "Z held=") != NULL, "not timestamped: %s", out);

    char *forever[] = {"watch", "Wt", NULL};
    p = lockctl_spawn(&w, 0, log, forever);
    th_sleep_ms(300);
    th_signal(p, SIGINT);
    ck_assert_int_eq(exit_code(th_wait_exit(p, 3000)), 0);
    th_close(&h);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"fixed_lease_expiry", test_fixed_lease_expiry},
        {"lockd_stopped", test_lockd_stopped},
        {"lockd_killed", test_lockd_killed},
        {"grace_kill", test_grace_kill},
        {"usage", test_usage},
        {"show", test_show},
        {"revoke", test_revoke},
        {"watch", test_watch},
    };
    return th_check_main("lockctl", cases, sizeof(cases) / sizeof(cases[0]), 50, argc, argv);
}
