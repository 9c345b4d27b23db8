/*
 * cc_shim: see cc_shim.h.
 */
#include "cc_shim.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cc_shim_lib(void)
{
    const char *env = getenv("CX_CLOCK_LIB");
    return env && *env ? env : CC_SHIM_LIB;
}

const char *cc_offset_file_new(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/clock-%d.ms", th_tmpdir(), (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    cc_offset_set(path, 0);
    return path;
}

void cc_offset_set(const char *file, int64_t ms)
{
    char field[32];
    int n = snprintf(field, sizeof field, "%-20lld\n", (long long)ms);
    int fd = open(file, O_WRONLY | O_CLOEXEC); /* no O_TRUNC: readers have it mapped */
    if (fd < 0 || n != 21 || pwrite(fd, field, (size_t)n, 0) != n) {
        fprintf(stderr, "cc_offset_set %s: failed\n", file);
        abort();
    }
    close(fd);
}

/* The environment of the next th_spawn: set, spawn, restore. */
typedef struct cc_env {
    char *asan;
} cc_env;

static void env_push(cc_env *e, const char *file)
{
    const char *old = getenv("ASAN_OPTIONS");
    e->asan = old ? strdup(old) : NULL;
    char asan[1024];
    snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", old ? old : "", old ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    setenv("LD_PRELOAD", cc_shim_lib(), 1);
    setenv("CX_CLOCK_FILE", file, 1);
}

static void env_pop(cc_env *e)
{
    unsetenv("LD_PRELOAD");
    unsetenv("CX_CLOCK_FILE");
    if (e->asan)
        setenv("ASAN_OPTIONS", e->asan, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(e->asan);
}

bool cc_redis_start_shimmed(th_redis *r, const char *file)
{
    cc_env e;
    env_push(&e, file);
    bool ok = th_redis_start(r);
    env_pop(&e);
    return ok;
}

bool cc_lockd_start_shimmed(th_lockd *l, const th_redis *redis, size_t n, const char *yaml,
                            const char *file)
{
    cc_env e;
    env_push(&e, file);
    bool ok = th_lockd_start(l, redis, n, yaml);
    env_pop(&e);
    return ok;
}

bool cc_shim_loaded(pid_t pid)
{
    char path[64], line[1024];
    bool found = false;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "libcx_clock") != NULL;
    fclose(f);
    return found;
}
