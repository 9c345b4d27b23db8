/*
 * cx_load_locks: chaos_load's lock workload: plain lock clients that do NOT check fences,
 * recording every lock event for the lock-history checker. (Stub: being written.)
 */
#ifndef CX_LOAD_LOCKS_H
#define CX_LOAD_LOCKS_H

#endif
