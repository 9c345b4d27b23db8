/*
 * cx_checks_locks: the lock-history checks of chaos_check: mutual exclusion as the clients
 * experienced it, fences increasing in grant order, LOST before the next grant.
 * (Stub: being written.)
 */
#include "cx_checks.h"

int cx_checks_locks_stub(void);
int cx_checks_locks_stub(void)
{
    return 0;
}
