/*
 * it_quarantine_lockd_restart: a lockd that restarts at the moment a master forgets has
 * no earlier run_id to compare with; its start-up rule (a master that is not durable and
 * has been up for less than limits.max_lease_ms is quarantined) still keeps the second
 * grant back until the first lease has passed, with a fence that grew (see it_quarantine.c).
 */
#include "it_common.h"
#include "it_quarantine.h"

START_TEST(test_quarantine_lockd_restart)
{
    it_quarantine_story(true, true);
}
END_TEST

int main(void)
{
    return it_main("it_quarantine_lockd_restart", test_quarantine_lockd_restart, 30, NULL);
}
