/*
 * lk_rlcmd: the Redlock wire, below lk_redlock: the Lua scripts every master runs, and
 * the command (EVALSHA, or EVAL after NOSCRIPT) that carries one round with its own
 * script or several rounds in one call of the batch script. Pure formatting: no I/O and
 * no state. Entries are borrowed for the call; the command is malloc'ed by hiredis'
 * formatter (hiredis_free / free it after redisAsyncFormattedCommand).
 */
#ifndef LK_RLCMD_H
#define LK_RLCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LK_RLCMD_ACQUIRE,
    LK_RLCMD_FENCE,
    LK_RLCMD_RENEW,
    LK_RLCMD_RELEASE,
    LK_RLCMD_BATCH,
    LK_RLCMD_NSCRIPTS
};

extern const char *const lk_rlcmd_script_text[LK_RLCMD_NSCRIPTS];

/* One round's step on one master: what it does and the strings it needs (lengths given,
 * so nothing is measured twice; unused ones may be NULL/0). */
typedef struct lk_rlcmd_entry {
    int kind; /* LK_RLCMD_ACQUIRE, _RENEW, _RELEASE, or _FENCE (an acquire's write-back) */
    const char *lock_key, *fence_key, *owner_key, *token, *prev, *holder, *resource, *fence_txt;
    size_t lock_key_len, fence_key_len, owner_key_len, token_len, prev_len, holder_len,
        resource_len;
    uint64_t lease_ms;
} lk_rlcmd_entry;

/* The call of n entries (n >= 1): a lone entry's own script, or the batch script with
 * every entry's keys, then the channel and every entry's kind letter and arguments.
 * sha: the loaded scripts' SHA-1s (used unless eval). Returns the command's length, or
 * -1 when out of memory. */
int lk_rlcmd_format(const lk_rlcmd_entry *e, size_t n, const char *channel, size_t channel_len,
                    const char (*sha)[41], bool eval, char **out);

#endif
