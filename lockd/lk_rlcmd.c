/*
 * lk_rlcmd: the Redlock scripts, the commands that carry them, what their answers say,
 * and the release channel's messages (see lk_rlcmd.h).
 */
#include "lk_rlcmd.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A call that carries ONE round uses that round's own script: the batch script's
 * generic loop costs Redis about a third more instructions than these for a single
 * entry, and pays off from two entries on (see bench/run.sh and the report of issue 11).
 * The two produce the same keys, fences and answers. */

/* KEYS lock, fence, owner; ARGV token, lease_ms, prev_token or "", holder or "". Grants
 * when the lock is free (a REVOKE's "revoked:<token>" tombstone counts as free), held by
 * prev_token (handoff) or already ours (a retried attempt). The owner key gets
 * "<token> <holder>" for SHOW (no TTL, like the fence: SHOW believes it only while its
 * token holds the lock). */
static const char script_acquire[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] or (ARGV[3] ~= '' and v == ARGV[3]) "
    "or string.sub(v, 1, 8) == 'revoked:' then "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[4]) end "
    "return {1, redis.call('INCR', KEYS[2])} end "
    "return {0, redis.call('PTTL', KEYS[1])}";
/* KEYS fence; ARGV t. Compared as decimal strings so fences above 2^53 stay exact. */
static const char script_fence[] =
    "local f = redis.call('GET', KEYS[1]) or '0' "
    "local t = ARGV[1] "
    "if #f < #t or (#f == #t and f < t) then redis.call('SET', KEYS[1], t) end "
    "return 1";
/* KEYS lock; ARGV token, lease_ms. 1: renewed; 0: not ours; 2: a REVOKE's tombstone of
 * this token (the holder is told "revoked"); 3: no key at all, put back (a master that
 * lost it: restarted without its data, or its clock ran ahead): counts as not renewed,
 * so the quorum decides as before, but the lock is again on every master that answers,
 * and masters that forget one after another never leave it on a minority. Only where no
 * key exists: another holder's key is never touched. */
static const char script_renew[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 3 end "
    "if v == 'revoked:' .. ARGV[1] then return 2 end return 0";
/* KEYS lock; ARGV token, channel, resource. */
static const char script_release[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) "
    "redis.call('PUBLISH', ARGV[2], ARGV[3]) return 1 end return 0";

/* Every round goes to a master inside one call of this script, with the other rounds
 * that started in the same loop pass (lk_redlock's flush). KEYS and ARGV carry one entry
 * per round, in order: ARGV[1] is the release channel, then per entry a kind letter
 * and its arguments; the entry's keys follow each other in KEYS.
 *   a (acquire)  KEYS lock, fence, owner  ARGV token, lease_ms, prev_token or "", holder
 *                or "": grants when the lock is free (or a "revoked:" tombstone), held by
 *                prev_token (handoff) or already ours (a retried attempt), and writes the
 *                owner key as script_acquire does: {1, INCR fence}; else {0, PTTL lock}
 *   r (renew)    KEYS lock         ARGV token, lease_ms: {1, 0} when ours, {0, 1} when a
 *                REVOKE's tombstone of this token, {0, 2} when there was no key and it
 *                was put back (script_renew's 3), else {0, 0}
 *   d (release)  KEYS lock         ARGV token, resource: deletes when ours, and the
 *                resource goes into the call's one release notice: PUBLISH channel
 *                "<resource>" for one, " <r1> <r2> ..." (a leading space: no resource
 *                name or "want" notice starts so) for several
 *   f (fence)    KEYS fence        ARGV t: fence = max(fence, t), compared as decimal
 *                strings so fences above 2^53 stay exact: {1, 0}
 * The reply is 2 integers per entry. Each entry runs under pcall: one that raises
 * (a key of the wrong type) answers {-1, 0} (unknown) without failing the others. */
static const char script_batch[] =
    "local function acq(lk, fk, ow, tok, lease, prev, who) "
    "local v = redis.call('GET', lk) "
    "if v == false or v == tok or (prev ~= '' and v == prev) "
    "or string.sub(v, 1, 8) == 'revoked:' then "
    "redis.call('SET', lk, tok, 'PX', lease) "
    "if who ~= '' then redis.call('SET', ow, tok .. ' ' .. who) end "
    "return 1, redis.call('INCR', fk) end "
    "return 0, redis.call('PTTL', lk) end "
    "local function ren(lk, tok, lease) "
    "local v = redis.call('GET', lk) "
    "if v == tok then redis.call('PEXPIRE', lk, lease) return 1, 0 end "
    "if v == false then redis.call('SET', lk, tok, 'PX', lease) return 0, 2 end "
    "if v == 'revoked:' .. tok then return 0, 1 end "
    "return 0, 0 end "
    "local rels = {} "
    "local function rel(lk, tok, res) "
    "if redis.call('GET', lk) == tok then redis.call('DEL', lk) "
    "rels[#rels + 1] = res return 1, 0 end "
    "return 0, 0 end "
    "local function fen(fk, t) "
    "local f = redis.call('GET', fk) or '0' "
    "if #f < #t or (#f == #t and f < t) then redis.call('SET', fk, t) end "
    "return 1, 0 end "
    "local out, k, a, n = {}, 1, 2, 0 "
    "while a <= #ARGV do "
    "local c, ok, s, v = ARGV[a] "
    "if c == 'a' then ok, s, v = pcall(acq, KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a + 1], "
    "ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]) k = k + 3 a = a + 5 "
    "elseif c == 'r' then ok, s, v = pcall(ren, KEYS[k], ARGV[a + 1], ARGV[a + 2]) "
    "k = k + 1 a = a + 3 "
    "elseif c == 'd' then ok, s, v = pcall(rel, KEYS[k], ARGV[a + 1], ARGV[a + 2]) "
    "k = k + 1 a = a + 3 "
    "else ok, s, v = pcall(fen, KEYS[k], ARGV[a + 1]) k = k + 1 a = a + 2 end "
    "if not ok then s, v = -1, 0 end "
    "out[n + 1] = s out[n + 2] = v n = n + 2 "
    "end "
    "if #rels == 1 then redis.call('PUBLISH', ARGV[1], rels[1]) "
    "elseif #rels > 1 then redis.call('PUBLISH', ARGV[1], ' ' .. table.concat(rels, ' ')) end "
    "return out";

const char *const lk_rlcmd_script_text[LK_RLCMD_NSCRIPTS] = {
    script_acquire, script_fence, script_renew, script_release, script_batch};

/* Argument count of one entry of the batch script: its keys and its ARGV (kind letter
 * included). */
static size_t entry_keys(const lk_rlcmd_entry *e)
{
    return e->kind == LK_RLCMD_ACQUIRE ? 3 : 1;
}

static size_t entry_args(const lk_rlcmd_entry *e)
{
    return e->kind == LK_RLCMD_ACQUIRE ? 5 : e->kind == LK_RLCMD_FENCE ? 2 : 3;
}

#define ARG(p, l) (argv[argc] = (p), len[argc] = (l), argc++)

/* The call of a lone entry: its own script (see script_acquire). */
static int single_format(const lk_rlcmd_entry *e, const char *channel, size_t channel_len,
                         const char (*sha)[41], bool eval, char **out)
{
    const char *argv[11];
    size_t len[11];
    size_t argc = 0;
    char lease[24];
    size_t lease_len =
        (size_t)snprintf(lease, sizeof lease, "%llu", (unsigned long long)e->lease_ms);
    ARG(eval ? "EVAL" : "EVALSHA", eval ? 4 : 7);
    ARG(eval ? lk_rlcmd_script_text[e->kind] : sha[e->kind],
        eval ? strlen(lk_rlcmd_script_text[e->kind]) : 40);
    switch (e->kind) {
    case LK_RLCMD_ACQUIRE:
        ARG("3", 1);
        ARG(e->lock_key, e->lock_key_len);
        ARG(e->fence_key, e->fence_key_len);
        ARG(e->owner_key, e->owner_key_len);
        ARG(e->token, e->token_len);
        ARG(lease, lease_len);
        ARG(e->prev, e->prev_len);
        ARG(e->holder, e->holder_len);
        break;
    case LK_RLCMD_FENCE:
        ARG("1", 1);
        ARG(e->fence_key, e->fence_key_len);
        ARG(e->fence_txt, strlen(e->fence_txt));
        break;
    case LK_RLCMD_RENEW:
        ARG("1", 1);
        ARG(e->lock_key, e->lock_key_len);
        ARG(e->token, e->token_len);
        ARG(lease, lease_len);
        break;
    default:
        ARG("1", 1);
        ARG(e->lock_key, e->lock_key_len);
        ARG(e->token, e->token_len);
        ARG(channel, channel_len);
        ARG(e->resource, e->resource_len);
        break;
    }
    return redisFormatCommandArgv(out, (int)argc, argv, len);
}

int lk_rlcmd_format(const lk_rlcmd_entry *e, size_t n, const char *channel, size_t channel_len,
                    const char (*sha)[41], bool eval, char **out)
{
    if (n == 1)
        return single_format(e, channel, channel_len, sha, eval, out);
    size_t argc_max = 4;
    for (size_t k = 0; k < n; k++)
        argc_max += entry_keys(&e[k]) + entry_args(&e[k]);
    const char **argv = malloc(argc_max * sizeof *argv);
    size_t *len = malloc(argc_max * sizeof *len);
    char(*lease)[24] = malloc((n ? n : 1) * sizeof *lease);
    char numkeys[24];
    int rc = -1;
    if (argv == NULL || len == NULL || lease == NULL)
        goto out;
    size_t argc = 0;
    ARG(eval ? "EVAL" : "EVALSHA", eval ? 4 : 7);
    ARG(eval ? lk_rlcmd_script_text[LK_RLCMD_BATCH] : sha[LK_RLCMD_BATCH],
        eval ? strlen(lk_rlcmd_script_text[LK_RLCMD_BATCH]) : 40);
    size_t nk_at = argc;
    ARG(numkeys, 0); /* filled in below */
    size_t nkeys = 0;
    for (size_t k = 0; k < n; k++) {
        if (e[k].kind == LK_RLCMD_FENCE) {
            ARG(e[k].fence_key, e[k].fence_key_len);
        } else {
            ARG(e[k].lock_key, e[k].lock_key_len);
            if (e[k].kind == LK_RLCMD_ACQUIRE) {
                ARG(e[k].fence_key, e[k].fence_key_len);
                ARG(e[k].owner_key, e[k].owner_key_len);
            }
        }
        nkeys += entry_keys(&e[k]);
    }
    len[nk_at] = (size_t)snprintf(numkeys, sizeof numkeys, "%zu", nkeys);
    ARG(channel, channel_len);
    for (size_t k = 0; k < n; k++) {
        size_t ll =
            (size_t)snprintf(lease[k], sizeof lease[k], "%llu", (unsigned long long)e[k].lease_ms);
        switch (e[k].kind) {
        case LK_RLCMD_FENCE:
            ARG("f", 1);
            ARG(e[k].fence_txt, strlen(e[k].fence_txt));
            break;
        case LK_RLCMD_ACQUIRE:
            ARG("a", 1);
            ARG(e[k].token, e[k].token_len);
            ARG(lease[k], ll);
            ARG(e[k].prev, e[k].prev_len);
            ARG(e[k].holder, e[k].holder_len);
            break;
        case LK_RLCMD_RENEW:
            ARG("r", 1);
            ARG(e[k].token, e[k].token_len);
            ARG(lease[k], ll);
            break;
        default:
            ARG("d", 1);
            ARG(e[k].token, e[k].token_len);
            ARG(e[k].resource, e[k].resource_len);
            break;
        }
    }
    rc = redisFormatCommandArgv(out, (int)argc, argv, len);
out:
    free(argv);
    free(len);
    free(lease);
    return rc;
}

#define RLCMD_WANT_PREFIX  "want "
#define RLCMD_RESOURCE_MAX 256

void lk_rlcmd_notice(const char *payload, lk_rlcmd_notice_fn released, lk_rlcmd_notice_fn wanted,
                     void *arg)
{
    if (strncmp(payload, RLCMD_WANT_PREFIX, strlen(RLCMD_WANT_PREFIX)) == 0) {
        if (wanted)
            wanted(arg, payload + strlen(RLCMD_WANT_PREFIX));
    } else if (released && payload[0] == ' ') {
        /* Several releases of one batch call: " <r1> <r2> ...". */
        char name[RLCMD_RESOURCE_MAX + 1];
        for (const char *p = payload; *p;) {
            p += strspn(p, " ");
            size_t len = strcspn(p, " ");
            if (len > 0 && len <= RLCMD_RESOURCE_MAX) {
                memcpy(name, p, len);
                name[len] = '\0';
                released(arg, name);
            }
            p += len;
        }
    } else if (released) {
        released(arg, payload);
    }
}

int lk_rlcmd_want_format(char *out, size_t cap, const char *resource, uint64_t oldest_ms,
                         const char *from, uint64_t seq, size_t *legacy)
{
    int n = snprintf(out, cap, RLCMD_WANT_PREFIX "%s %llu %.32s %llu", resource,
                     (unsigned long long)oldest_ms, from, (unsigned long long)seq);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    *legacy = oldest_ms ? strlen(RLCMD_WANT_PREFIX) + strlen(resource) : 0;
    return n;
}

int lk_rlcmd_answer(int kind, const void *r, size_t k, size_t n, long long *value)
{
    const redisReply *reply = r;
    *value = 0;
    if (n == 1 && reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        /* a lone round's own script: renew 1/0/2/3 (2: tombstone; 3: put back, not
         * renewed), release 1/0, fence 1 */
        if (kind == LK_RLCMD_FENCE || kind == LK_RLCMD_RELEASE)
            return LK_RLCMD_YES;
        if (kind == LK_RLCMD_RENEW) {
            *value = reply->integer == 2;
            return reply->integer == 1 ? LK_RLCMD_YES : LK_RLCMD_NO;
        }
        return LK_RLCMD_UNKNOWN;
    }
    /* the batch script: 2 integers per entry; a lone acquire's script: {1, fence} or
     * {0, PTTL}, the same shape */
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 * n)
        return LK_RLCMD_UNKNOWN;
    const redisReply *st = reply->element[2 * k], *v = reply->element[2 * k + 1];
    if (st->type != REDIS_REPLY_INTEGER || v->type != REDIS_REPLY_INTEGER || st->integer < 0)
        return LK_RLCMD_UNKNOWN;
    *value = v->integer;
    if (kind == LK_RLCMD_FENCE || kind == LK_RLCMD_RELEASE)
        return LK_RLCMD_YES; /* answered: a release of a token that holds nothing is done too */
    return st->integer == 1 ? LK_RLCMD_YES : LK_RLCMD_NO;
}
