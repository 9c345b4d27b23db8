/*
 * cm_lockhist: a lock history, the record of every lock event of one or more lock clients
 * (cm_lockclient_on_event) as JSON lines, one event per line (docs/chaos.md, "Lock
 * histories"):
 *   {"src":"<process>","res":"<resource>","ev":"grant|renew|release|lost","sess":"<session>",
 *    "fence":"<decimal>","t_us":<CLOCK_MONOTONIC us>,"deadline_us":<us, grant and renew: the
 *    local deadline; lost: the deadline that ended it, when it was lost at or after it>,
 *    "reason":"<lost reason, on lost>"}
 * chaos_check's lock checks read them (chaos/cx_checks_locks.c).
 *
 * Writes: each line is one write(2) on a file opened O_APPEND, made when the event happens,
 * on the caller's event loop, as cm_log writes its lines. A write of a few hundred bytes to
 * a local file only copies into the page cache (no fsync), so it does not stall the loop
 * the way a buffered stream's flush or a disk wait would; and nothing waits in a buffer of
 * ours, so a process that is SIGKILLed (the chaos fault kill_reserved) has already written
 * the grant it held. O_APPEND keeps each line whole and in place when several processes
 * (a restarted one) write one file. A failed write is counted and logged once, never fatal:
 * the history is evidence for the checker, not part of the lock's work.
 *
 * Ownership: the history owns its taps (one per attached client). Close it only after
 * every client attached to it is freed (a client freed holding locks records their release).
 */
#ifndef CM_LOCKHIST_H
#define CM_LOCKHIST_H

#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"
#include "cm_lockclient.h"

#define CM_LOCKHIST_LINE_MAX 1024 /* a line is cut short of this, never split */

typedef struct cm_lockhist cm_lockhist;

/* Opens (creates) path for appending; src names the process in every line. NULL and a
 * reason in err when the file cannot be opened. */
cm_lockhist *cm_lockhist_open(const char *path, const char *src, char *err,
                              size_t errlen) CM_MUSTCHECK;
void cm_lockhist_close(cm_lockhist *h);
/* Records every lock event of c from now on. client_id NULL or "": "sess" is lockd's session
 * id; else "<client_id>/<session id>" (several clients of one process on several lockds
 * may have equal session ids). CM_ERR when out of memory. */
cm_rc cm_lockhist_attach(cm_lockhist *h, cm_lockclient *c, const char *client_id) CM_MUSTCHECK;
/* Records one event (what the attached clients' events go through). */
void cm_lockhist_record(cm_lockhist *h, const char *sess, const cm_lock_event *ev);
/* Lines written, and writes that failed. */
uint64_t cm_lockhist_lines(const cm_lockhist *h);
uint64_t cm_lockhist_errors(const cm_lockhist *h);

/* The line of one event with its newline, cut short of cap; returns its length. */
size_t cm_lockhist_format(char *buf, size_t cap, const char *src, const char *sess,
                          const cm_lock_event *ev);
/* The event's name in a line: "grant", "renew", "release", "lost". */
const char *cm_lockhist_ev_name(cm_lock_event_kind kind);
/* A process name from a history file's path: its base name without a leading "locks-" and
 * a trailing ".jsonl" ("/out/locks-reserved2.jsonl" -> "reserved2", the name chaos/run and
 * its faults give the process); out gets "" for an empty path. */
void cm_lockhist_src_from_path(const char *path, char *out, size_t outlen);

#endif
