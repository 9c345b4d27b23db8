/*
 * cx_clockshim: an LD_PRELOAD shim that moves a process's wall clock by an offset read from
 * a file, for the chaos suite's clock-jump faults (chaos/lib/clock.sh, issue 15). It owns
 * the process's view of CLOCK_REALTIME and CLOCK_REALTIME_COARSE (clock_gettime),
 * gettimeofday, time and timespec_get(TIME_UTC); every other clock, CLOCK_MONOTONIC above
 * all, passes through untouched.
 *
 * The offset: milliseconds, a signed decimal number, in the file named by $CX_CLOCK_FILE,
 * written as a fixed-width field ("%-20s\n", 21 bytes) that the writer rewrites IN PLACE
 * (chaos/lib/clock.sh's cx_clock_set; bash: printf '%-20s\n' "$ms" 1<>FILE). The file is
 * mapped once (MAP_SHARED) and parsed on every call, so a write is seen by the next call,
 * without a system call. A file that is truncated while mapped makes readers SIGBUS: never
 * truncate it (`>` in a shell truncates). No variable, no file, an empty or unreadable file:
 * offset 0 (opening is retried at most every 200 ms of the monotonic clock).
 *
 * Why by hand, not libfaketime: Debian's libfaketime recurses inside jemalloc's start-up
 * when preloaded into Debian's redis-server. This shim allocates nothing, uses no stdio and
 * no dlsym: the real clocks come from the raw clock_gettime system call and the file is
 * opened and mapped through raw system calls, so it is safe from a process's first
 * instruction on (allocators, sanitizer runtimes) and from any thread.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CX_FIELD         21                 /* "%-20s\n": the offset's fixed-width field */
#define CX_RETRY_NS      INT64_C(200000000) /* how often a missing file is looked for again */
#define CX_MAP_LEN       4096               /* one page: the field is at its start */
#define CX_MAX_OFFSET_MS (INT64_C(1) << 50) /* beyond: not an offset, ignored (~35,000 years) */

/* Where the shim is: the first call that needs the offset moves it out of CX_UNKNOWN. */
enum cx_state {
    CX_UNKNOWN = 0, /* $CX_CLOCK_FILE not looked at yet */
    CX_OFF,         /* no $CX_CLOCK_FILE: offset 0 for ever */
    CX_WAITING,     /* the file was missing, empty or unreadable: looked for again later */
    CX_MAPPED,      /* g_map holds the file's first page */
};

static _Atomic int g_state = CX_UNKNOWN;
static const char *_Atomic g_map;     /* the mapped page (CX_MAPPED) */
static _Atomic int64_t g_next_try_ns; /* CX_WAITING: monotonic ns of the next attempt */
static _Atomic int64_t g_last_ms;     /* the last offset parsed (used on a torn read) */

static int64_t raw_mono_ns(void)
{
    struct timespec ts;
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Opens and maps the file through raw system calls; NULL when it cannot (yet). A file of
 * size 0 is not mapped: reading a page wholly past the end of a file raises SIGBUS. */
static const char *map_file(const char *path)
{
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    const char *map = NULL;
    if (syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        long p =
            syscall(SYS_mmap, NULL, (long)CX_MAP_LEN, (long)PROT_READ, (long)MAP_SHARED, fd, 0L);
        if (p != -1)
            map = (const char *)p;
    }
    syscall(SYS_close, fd);
    return map;
}

/* Moves the shim out of CX_UNKNOWN or CX_WAITING once the file can be mapped. Two threads
 * may race here: the one whose compare-and-swap loses unmaps its copy. */
static const char *find_map(void)
{
    int st = atomic_load_explicit(&g_state, memory_order_acquire);
    if (st == CX_MAPPED)
        return atomic_load_explicit(&g_map, memory_order_acquire);
    if (st == CX_OFF)
        return NULL;
    const char *path = getenv("CX_CLOCK_FILE");
    if (!path || !*path) {
        atomic_store_explicit(&g_state, CX_OFF, memory_order_release);
        return NULL;
    }
    int64_t now = raw_mono_ns();
    if (st == CX_WAITING && now < atomic_load_explicit(&g_next_try_ns, memory_order_relaxed))
        return NULL;
    const char *map = map_file(path);
    if (!map) {
        atomic_store_explicit(&g_next_try_ns, now + CX_RETRY_NS, memory_order_relaxed);
        atomic_store_explicit(&g_state, CX_WAITING, memory_order_release);
        return NULL;
    }
    const char *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_map, &expected, map)) {
        syscall(SYS_munmap, map, (long)CX_MAP_LEN);
        map = expected;
    }
    atomic_store_explicit(&g_state, CX_MAPPED, memory_order_release);
    return map;
}

/* Parses the field: blanks, an optional sign, digits, then only blanks, LF or NUL.
 * False on anything else (a write in progress, a file that is not ours). */
static bool parse_field(const char *f, int64_t *out)
{
    size_t i = 0;
    while (i < CX_FIELD && f[i] == ' ')
        i++;
    bool neg = false;
    if (i < CX_FIELD && (f[i] == '-' || f[i] == '+'))
        neg = f[i++] == '-';
    int64_t v = 0;
    size_t digits = 0;
    for (; i < CX_FIELD && f[i] >= '0' && f[i] <= '9' && digits < 18; i++, digits++)
        v = v * 10 + (f[i] - '0');
    if (digits == 0)
        return false;
    for (; i < CX_FIELD; i++)
        if (f[i] != ' ' && f[i] != '\n' && f[i] != '\0')
            return false;
    if (v > CX_MAX_OFFSET_MS)
        return false;
    *out = neg ? -v : v;
    return true;
}

/* The offset in ms now. The writer's write(2) may be copied into the page while we read
 * it: two equal copies that parse are taken as the value, else the last good one. */
static int64_t offset_ms(void)
{
    const char *map = find_map();
    if (!map)
        return 0;
    const volatile char *src = map;
    char a[CX_FIELD], b[CX_FIELD];
    for (int tries = 0; tries < 8; tries++) {
        for (size_t i = 0; i < CX_FIELD; i++)
            a[i] = src[i];
        for (size_t i = 0; i < CX_FIELD; i++)
            b[i] = src[i];
        int64_t v;
        if (memcmp(a, b, CX_FIELD) == 0 && parse_field(a, &v)) {
            atomic_store_explicit(&g_last_ms, v, memory_order_relaxed);
            return v;
        }
    }
    return atomic_load_explicit(&g_last_ms, memory_order_relaxed);
}

static void shift_ts(struct timespec *ts, int64_t ms)
{
    int64_t ns = ts->tv_nsec + (ms % 1000) * 1000000;
    time_t sec = ts->tv_sec + (time_t)(ms / 1000);
    if (ns < 0) {
        ns += 1000000000;
        sec--;
    } else if (ns >= 1000000000) {
        ns -= 1000000000;
        sec++;
    }
    ts->tv_sec = sec;
    ts->tv_nsec = (long)ns;
}

/* The real wall clock, shifted. */
static int wall_now(clockid_t id, struct timespec *ts)
{
    if (syscall(SYS_clock_gettime, id, ts) != 0)
        return -1;
    int64_t ms = offset_ms();
    if (ms)
        shift_ts(ts, ms);
    return 0;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)
        return wall_now(id, ts);
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    /* glibc declares tv nonnull: a NULL tv is the caller's bug, as with glibc's own. */
    if (tz && syscall(SYS_gettimeofday, NULL, tz) != 0)
        return -1;
    struct timespec ts;
    if (wall_now(CLOCK_REALTIME, &ts) != 0)
        return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;
    if (wall_now(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

int timespec_get(struct timespec *ts, int base)
{
    if (base != TIME_UTC || wall_now(CLOCK_REALTIME, ts) != 0)
        return 0;
    return base;
}
