/*
 * cm_time: monotonic clocks for durations and timeouts, the wall clock only
 * for log stamps.
 */
#include "cm_time.h"

#include <time.h>

static struct timespec time_get(clockid_t id)
{
    struct timespec ts;
    /* clock_gettime cannot fail for these clock ids on Linux. */
    (void)clock_gettime(id, &ts);
    return ts;
}

uint64_t cm_now_ns(void)
{
    struct timespec ts = time_get(CLOCK_MONOTONIC);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cm_now_us(void)
{
    return cm_now_ns() / 1000u;
}

uint64_t cm_now_ms(void)
{
    return cm_now_ns() / 1000000u;
}

uint64_t cm_wall_ms(void)
{
    struct timespec ts = time_get(CLOCK_REALTIME);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct timeval cm_tv_from_ms(uint64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    return tv;
}
