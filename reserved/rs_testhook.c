/*
 * rs_testhook: reads reserved's test hooks from the environment (see rs_testhook.h).
 */
#include "rs_testhook.h"

#include <stdlib.h>

#include "cm_log.h"

rs_testhooks rs_testhooks_g;

static uint32_t env_ms(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    uint32_t ms = (uint32_t)strtoul(v, NULL, 10);
    log_warn("test hook %s=%u is set", name, ms);
    return ms;
}

void rs_testhook_load(void)
{
    rs_testhooks_g.pause_before_commit_ms = env_ms("RESERVED_TEST_PAUSE_BEFORE_COMMIT_MS");
    rs_testhooks_g.pause_after_lock_ms = env_ms("RESERVED_TEST_PAUSE_AFTER_LOCK_MS");
    rs_testhooks_g.ignore_lost = env_ms("RESERVED_TEST_IGNORE_LOST") > 0;
    rs_testhooks_g.batch_when_idle = env_ms("RESERVED_TEST_BATCH_WHEN_IDLE") > 0;
}
