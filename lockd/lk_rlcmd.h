/*
 * lk_rlcmd: the Redlock wire, below lk_redlock: the Lua scripts every master runs, the
 * command (EVALSHA, or EVAL after NOSCRIPT) that carries one round with its own script or
 * several rounds in one call of the batch script, what an answer says, and the release
 * channel's messages. Pure formatting and parsing: no I/O and no state. Entries are borrowed for
 * the call; the command is malloc'ed by hiredis' formatter (hiredis_free / free it after
 * redisAsyncFormattedCommand).
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

/* What entry k (of n in its call) says in the call's reply: LK_RLCMD_YES (granted,
 * renewed, answered), LK_RLCMD_NO (another holder: acquire; not ours: renew) or
 * LK_RLCMD_UNKNOWN (a missing reply, an error, or not the scripts' shape: the command may
 * or may not have run). value: acquire's fence (yes) or PTTL (no); renew's 1 when the
 * lock holds a REVOKE's tombstone of the token. reply is a redisReply. */
enum { LK_RLCMD_YES, LK_RLCMD_NO, LK_RLCMD_UNKNOWN };
int lk_rlcmd_answer(int kind, const void *reply, size_t k, size_t n, long long *value);

/* A message of the release channel, handed on: "want <notice>" to wanted (the notice
 * after "want "), " <r1> <r2> ..." (the releases of one batch call) to released once per
 * resource, anything else to released as one resource. Either function may be NULL. */
typedef void (*lk_rlcmd_notice_fn)(void *arg, const char *text);
void lk_rlcmd_notice(const char *payload, lk_rlcmd_notice_fn released, lk_rlcmd_notice_fn wanted,
                     void *arg);
/* The "want" message wanted gets: "want <resource> <oldest_ms> <from> <seq>" into out (from
 * cut to 32 bytes). Its length, or -1 when it does not fit. *legacy: the length of its
 * prefix "want <resource>", the form lockds before the fairness notices read, or 0 when
 * oldest_ms is 0 (nobody waiting: nothing for them). */
int lk_rlcmd_want_format(char *out, size_t cap, const char *resource, uint64_t oldest_ms,
                         const char *from, uint64_t seq, size_t *legacy);

#endif
