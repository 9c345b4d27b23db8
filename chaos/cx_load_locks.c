/*
 * cx_load_locks: see cx_load_locks.h. (Stub: being written.)
 */
#include "cx_load_locks.h"

int cx_load_locks_stub(void);
int cx_load_locks_stub(void)
{
    return 0;
}
