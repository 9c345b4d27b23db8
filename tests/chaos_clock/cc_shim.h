/*
 * cc_shim: what the clock-shim tests share: the shim's path, its offset file (written in
 * place, as chaos/lib/clock.sh's cx_clock_set does), and starting a redis-server or a
 * lockd of the th harness under LD_PRELOAD=libcx_clock.so (stopped by PID by th_stop_all
 * like every other server).
 */
#ifndef CC_SHIM_H
#define CC_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "th.h"

/* $CX_CLOCK_LIB (to try another build of the shim), else build/lib/libcx_clock.so. */
const char *cc_shim_lib(void);
/* A fresh offset file in th_tmpdir() holding 0; its path (a static buffer). */
const char *cc_offset_file_new(void);
/* Rewrites the offset file in place ("%-20lld\n", no truncation): the shim maps it. */
void cc_offset_set(const char *file, int64_t ms);
/* th_redis_start / th_lockd_start with LD_PRELOAD, CX_CLOCK_FILE (and ASan's
 * verify_asan_link_order=0: the test build's lockd links ASan dynamically) in the
 * environment of the child only. */
bool cc_redis_start_shimmed(th_redis *r, const char *file);
bool cc_lockd_start_shimmed(th_lockd *l, const th_redis *redis, size_t n, const char *yaml,
                            const char *file);
/* pid has libcx_clock.so mapped (/proc/<pid>/maps). */
bool cc_shim_loaded(pid_t pid);

#endif
