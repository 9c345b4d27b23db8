/*
 * rs_pwhash: Argon2id password hashing (libsodium) off the event loop (SPEC §6a).
 *
 * Argon2id is meant to be slow (tens of ms and tens of MiB per hash at production
 * settings), so it never runs on the loop thread: a fixed pool of worker threads takes
 * jobs from a bounded queue, and finished jobs come back to the loop through one eventfd
 * read by a libevent event on the base. Every callback runs on the loop thread, from the
 * loop, never inside the call that submitted the job.
 *
 * Ownership: the pool owns its jobs. rs_pwhash_hash / rs_pwhash_verify copy the password
 * (and the stored string) into the job; the job's copy is wiped (sodium_memzero) as soon
 * as the worker is done with it, and the caller may wipe or free its own at once. The
 * hash handed to rs_pwhash_hash_cb is borrowed: valid during the callback only.
 * rs_pwhash_free drops the jobs not yet delivered without their callbacks; it must not be
 * called from inside one of this pool's callbacks.
 *
 * The event on the base is added only while jobs are pending, so an idle pool does not
 * keep event_base_dispatch running.
 */
#ifndef RS_PWHASH_H
#define RS_PWHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm_core.h"

struct event_base;
struct cm_strbuf;

typedef struct rs_pwhash rs_pwhash;

typedef struct rs_pwhash_opts {
    unsigned threads;   /* worker threads, >= 1 */
    uint64_t ops;       /* Argon2id passes (opslimit), >= 1 */
    size_t mem_bytes;   /* Argon2id memory (memlimit), >= 8192 */
    size_t max_pending; /* jobs queued or running at most (>= 1); beyond: CM_ERR (caller
                           answers 503 BUSY). A job counts from its submit until its
                           callback has returned. */
} rs_pwhash_opts;

#define RS_PWHASH_STR_MAX 128 /* crypto_pwhash_STRBYTES, with the NUL */

/* hash: the "$argon2id$..." string (borrowed), NULL on failure (out of memory). */
typedef void (*rs_pwhash_hash_cb)(void *arg, const char *hash);
typedef void (*rs_pwhash_verify_cb)(void *arg, bool match);

/* Starts the workers and computes a dummy hash with the same parameters (blocking, once),
 * used by verify(NULL). NULL on bad options (see rs_pwhash_opts) or when out of
 * resources. Calls sodium_init(). */
rs_pwhash *rs_pwhash_new(struct event_base *base, const rs_pwhash_opts *o) CM_MUSTCHECK;

/* Queues the hash of password[0..len). CM_ERR when max_pending jobs are pending (counted in
 * reserved_pwhash_refused_total) or out of memory; cb is then never called. */
cm_rc rs_pwhash_hash(rs_pwhash *p, const char *password, size_t len, rs_pwhash_hash_cb cb,
                     void *arg) CM_MUSTCHECK;

/* Queues the check of password[0..len) against stored (a string from rs_pwhash_hash).
 * stored NULL (unknown user): verifies the password against the dummy hash, so it costs
 * the same time as a wrong password; cb then always gets false. A stored string that is
 * not an Argon2 string: also checked against the dummy (same cost), cb gets false.
 * CM_ERR as rs_pwhash_hash. */
cm_rc rs_pwhash_verify(rs_pwhash *p, const char *stored, const char *password, size_t len,
                       rs_pwhash_verify_cb cb, void *arg) CM_MUSTCHECK;

/* Blocking, no pool (reserved --add-admin runs before any loop). CM_ERR on bad parameters
 * or out of memory. */
cm_rc rs_pwhash_hash_now(uint64_t ops, size_t mem_bytes, const char *password, size_t len,
                         char out[RS_PWHASH_STR_MAX]) CM_MUSTCHECK;

/* Jobs submitted whose callback has not been called yet (what max_pending bounds). */
size_t rs_pwhash_pending(const rs_pwhash *p);

/* Stops and joins the workers. Jobs still queued are dropped WITHOUT their callbacks
 * (reserved frees the pool only after every request is answered); a job running finishes
 * first, and its result is dropped too. Call it before event_base_free (it frees its event
 * on the base), never from inside one of its callbacks. NULL is fine. */
void rs_pwhash_free(rs_pwhash *p);

/* Prometheus text: reserved_pwhash_jobs_total{kind="hash|verify"} (jobs accepted),
 * reserved_pwhash_refused_total, reserved_pwhash_pending, and the histogram
 * reserved_pwhash_seconds (worker time per job). */
void rs_pwhash_metrics(const rs_pwhash *p, struct cm_strbuf *out);

#endif
