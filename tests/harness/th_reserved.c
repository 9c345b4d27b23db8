/*
 * th_reserved: see th_reserved.h.
 */
#include "th_reserved.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "th.h"

#define TH_RESERVED_START_MS 30000 /* migrations on a fresh database included */
#define TH_RESERVED_MAX_ARGS 32

static void spawn_argv(th_reserved *s, const char *conninfo, char **extra, size_t n_extra)
{
    char *args[TH_RESERVED_MAX_ARGS];
    size_t n = 0;
    if (conninfo != NULL) {
        args[n++] = "--database";
        args[n++] = (char *)conninfo;
    }
    for (size_t i = 0; i < n_extra && n < TH_RESERVED_MAX_ARGS; i++)
        args[n++] = extra[i];
    th_server_spawn(s, "reserved", args, n);
    ck_assert_msg(s->pid > 0, "cannot spawn reserved");
}

void th_reserved_spawn(th_reserved *s, const char *conninfo, ...)
{
    char *extra[TH_RESERVED_MAX_ARGS];
    va_list ap;
    va_start(ap, conninfo);
    size_t n = th_va_args(ap, extra, TH_RESERVED_MAX_ARGS);
    va_end(ap);
    spawn_argv(s, conninfo, extra, n);
}

void th_reserved_spawn_yaml(th_reserved *s, const char *yaml)
{
    char path[512];
    snprintf(path, sizeof path, "%s/reserved.yaml", th_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(yaml, f);
    fclose(f);
    char *extra[] = {"--config", path};
    spawn_argv(s, NULL, extra, 2);
}

void th_reserved_wait_up(th_reserved *s)
{
    if (!th_wait_port(s->port, TH_RESERVED_START_MS)) {
        th_dump_log(s->log, 40);
        ck_abort_msg("reserved did not listen on %d", s->port);
    }
}

void th_reserved_start(th_reserved *s, const char *conninfo)
{
    th_reserved_spawn(s, conninfo, "--lock-mode", "db", "--log-level", "debug", NULL);
    th_reserved_wait_up(s);
}

void th_reserved_stop_clean(th_reserved *s)
{
    th_server_stop_clean(s, 15000);
}

int th_reserved_run(char *out, size_t outlen, ...)
{
    char *argv[TH_RESERVED_MAX_ARGS];
    char log[512];
    va_list ap;
    argv[0] = (char *)th_bin("reserved");
    va_start(ap, outlen);
    size_t n = 1 + th_va_args(ap, argv + 1, TH_RESERVED_MAX_ARGS - 2);
    va_end(ap);
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/cli-%d.log", th_tmpdir(), th_free_port());
    pid_t pid = th_spawn(argv, log);
    int st = th_wait_exit(pid, 10000);
    ck_assert_msg(st != -1, "reserved %s did not exit", argv[1]);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
