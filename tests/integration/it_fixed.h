/*
 * it_fixed: the scenario the fixed-lease tests share (it_lost_fixed_expired,
 * it_fixed_lease_margin). Lockds A and B on 3 masters; two sessions on A take X0 and X1
 * with a fixed lease and never RENEW; X0 has a waiter on A (the local handoff), X1 a
 * waiter on B (through Redis). Everything is timed on this machine's clock.
 */
#ifndef IT_FIXED_H
#define IT_FIXED_H

#include "it_common.h"

typedef struct it_fixed_run {
    char token[2][IT_TOKEN_LEN + 1]; /* the holders' tokens */
    uint64_t granted_us[2];          /* holder i's OK read */
    uint64_t validity_ms[2];         /* ... and the validity it carried */
    char push[2][IT_LINE];           /* holder i's first push ("" if none came) */
    uint64_t push_us[2];             /* ... read at (0: never) */
    char grant[2][IT_LINE];          /* waiter i's reply */
    uint64_t grant_us[2];            /* ... read at (0: never) */
} it_fixed_run;

/* Runs the scenario with a fixed lease of lease_ms and lockds started with yaml;
 * waits up to lease_ms + 3 s for the pushes and grants. */
void it_fixed_scenario(uint64_t lease_ms, const char *yaml, it_fixed_run *out);

#endif
