/*
 * it_config_watchdog_lease: watchdog.lease_ms must leave room for a renewal every third
 * of the lease with a Redis round (redlock.redis_timeout_ms) inside it; a lease at or
 * below 3 x redis_timeout_ms is a config error that names the file, the line and the key
 * that was set, exit 2 (issue 12 item 6: before, lockd accepted a lease below
 * redis_timeout_ms, where no renewal can ever succeed). Just above the bound is fine.
 */
#include "it_common.h"

#include <stdio.h>
#include <string.h>

typedef struct lease_case {
    const char *yaml;
    int status;
    const char *expect; /* after "lockd: <file>" (NULL: exit 0) */
} lease_case;

static const lease_case cases[] = {
    {"redis: [127.0.0.1:6380]\nredlock: {redis_timeout_ms: 500}\nwatchdog: {lease_ms: 300}\n", 2,
     ":3: key 'watchdog.lease_ms': must be more than 3 x redlock.redis_timeout_ms (1500): a "
     "renewal every third of the lease needs a Redis round inside it"},
    {"redis: [127.0.0.1:6380]\nwatchdog:\n  lease_ms: 150\n", 2,
     ":3: key 'watchdog.lease_ms': must be more than 3 x redlock.redis_timeout_ms (150): a "
     "renewal every third of the lease needs a Redis round inside it"},
    {"redis: [127.0.0.1:6380]\nredlock: {redis_timeout_ms: 4000}\n", 2,
     ":2: key 'redlock.redis_timeout_ms': must be below a third of watchdog.lease_ms (10000): a "
     "renewal every third of the lease needs a Redis round inside it"},
    {"redis: [127.0.0.1:6380]\nwatchdog: {lease_ms: 151}\n", 0, NULL},
};

START_TEST(test_config_watchdog_lease)
{
    char out[8192], want[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = it_write_yaml(cases[i].yaml);
        int status = it_run_lockd((char *[]){"--config", (char *)path, "--check-config", NULL}, out,
                                  sizeof out);
        ck_assert_msg(status == cases[i].status, "case %zu: exit %d, want %d: '%s'", i, status,
                      cases[i].status, out);
        if (cases[i].expect) {
            snprintf(want, sizeof want, "lockd: %s%s\n", path, cases[i].expect);
            ck_assert_msg(strstr(out, want) != NULL, "case %zu: '%s' not in '%s'", i, want, out);
        }
    }
}
END_TEST

int main(void)
{
    return it_main("it_config_watchdog_lease", test_config_watchdog_lease, 30, NULL);
}
