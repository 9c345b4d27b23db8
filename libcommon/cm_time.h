/*
 * cm_time: clocks. Monotonic time for every timeout and duration (never the
 * wall clock, which can jump); wall time only for log stamps.
 */
#ifndef CM_TIME_H
#define CM_TIME_H

#include <stdint.h>
#include <sys/time.h>

uint64_t cm_now_ms(void);  /* CLOCK_MONOTONIC in milliseconds */
uint64_t cm_now_us(void);  /* CLOCK_MONOTONIC in microseconds */
uint64_t cm_now_ns(void);  /* CLOCK_MONOTONIC in nanoseconds */
uint64_t cm_wall_ms(void); /* CLOCK_REALTIME in milliseconds since the epoch */
struct timeval cm_tv_from_ms(uint64_t ms);

#endif
