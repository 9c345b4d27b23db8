/*
 * it_common: what the integration tests share on top of the th harness: the Check
 * runner (one suite, one test case, unchecked fixture that stops every server by PID),
 * a fast lockd config, LOCKP helpers that parse grants, lockd log dumps on exit, and a
 * plain-socket HTTP GET for the metrics page. Black-box only: nothing here links lockd.
 */
#ifndef IT_COMMON_H
#define IT_COMMON_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "th.h"

/* Small timeouts so that every test binary stays well under two minutes. */
#define IT_SESSION_TIMEOUT_MS 1000
#define IT_WATCHDOG_LEASE_MS  1500
#define IT_FAST_YAML                                                                               \
    "session: {timeout_ms: 1000, lock_delay_ms: 0}\n"                                              \
    "watchdog: {lease_ms: 1500}\n"                                                                 \
    "redlock: {redis_timeout_ms: 50, retry_delay_ms: 20, clock_drift_factor: 0.01}\n"              \
    "log: {level: info}\n"

#define IT_TOKEN_LEN 32

/* Reply kinds of an ACQUIRE as the tests see them. */
typedef enum it_reply {
    IT_OK,
    IT_TIMEOUT,
    IT_LOST,
    IT_ERR,
    IT_NOREPLY, /* nothing (or an unparsable line) within the timeout */
} it_reply;

typedef struct it_grant {
    char token[IT_TOKEN_LEN + 1];
    uint64_t fence;
    uint64_t validity_ms;
} it_grant;

/* Runs one test function in a suite of its own. setup runs in the parent (unchecked
 * fixture) and may be NULL; the teardown always dumps the lockd logs and calls
 * th_stop_all. Returns the process exit code for main(). */
int it_main(const char *name, const TTest *test, double timeout_s, void (*setup)(void));

/* Starts n redis masters (fresh ports, own temp dirs). */
void it_redis_start_n(th_redis *r, size_t n);
/* th_lockd_start + remembers the log for it_dump_logs; aborts the test on failure. */
void it_lockd_start(th_lockd *l, const th_redis *r, size_t n, const char *extra_yaml);
/* Polls INFO until lockd reports all n masters up (it_lockd_start does this). */
void it_wait_masters(const th_lockd *l, size_t n, int timeout_ms);
/* Stops every lockd this process started (SIGTERM, then SIGKILL after 3 s) and prints
 * the tail of its log (stderr; ctest shows it only for failed tests). */
void it_dump_logs(void);

/* Connects (aborts the test on failure) and says HELLO name. */
void it_connect(th_conn *c, int port, const char *name);

/* Parses "<tag> OK <token> <fence> <validity>" into g; classifies other replies. */
it_reply it_classify(const char *line, const char *tag, it_grant *g);
/* Sends ACQUIRE and waits up to timeout_ms for its reply (line gets the raw reply). */
it_reply it_acquire(th_conn *c, const char *tag, const char *res, uint64_t lease_ms,
                    uint64_t wait_ms, int timeout_ms, it_grant *g, char *line, size_t linelen);
/* Sends "<tag> <verb> res token" and returns IT_OK / IT_LOST / IT_ERR / IT_NOREPLY. */
it_reply it_release(th_conn *c, const char *tag, const char *res, const char *token,
                    int timeout_ms);
it_reply it_renew(th_conn *c, const char *tag, const char *res, const char *token,
                  uint64_t lease_ms, int timeout_ms);
/* PING with a reply check; false when "<tag> OK PONG" does not arrive in time. */
bool it_ping(th_conn *c, const char *tag, int timeout_ms);

/* One handoff measurement: holder (already connected) takes res with a watchdog lease,
 * waiter starts a waiting ACQUIRE and gets settle_ms to queue up, then the holder's
 * RELEASE is sent; returns microseconds from that send until the waiter's OK was read.
 * Both locks are released again before it returns (so trials can repeat). */
uint64_t it_handoff_trial(th_conn *holder, th_conn *waiter, const char *res, int settle_ms);

/* Reads until the reply to tag arrives (into line), sending "p PING" every 250 ms
 * meanwhile: a waiting session must live by traffic like any client. Drops PONGs and
 * pushes. False when nothing came within timeout_ms or the connection closed. */
bool it_wait_reply(th_conn *c, const char *tag, char *line, size_t linelen, int timeout_ms);

/* it_wait_reply for n connections at once: all are PINGed every 250 ms while any reply
 * is missing; at_us[i] gets th_now_us() when reply i was read (0 if it never came),
 * lines[i] the reply. Returns how many replies came within timeout_ms. */
#define IT_LINE 512
size_t it_wait_replies(th_conn *c, size_t n, const char *tag, char (*lines)[IT_LINE],
                       uint64_t *at_us, int timeout_ms);

/* Like it_wait_replies, but connection i waits for a line that starts with prefix[i]
 * (a push: "* LOST X"); other lines are dropped. */
size_t it_wait_prefixes(th_conn *c, size_t n, const char *const *prefix, char (*lines)[IT_LINE],
                        uint64_t *at_us, int timeout_ms);

/* One Redis command in inline form ("SET k v PX 100": no spaces inside arguments) on a
 * fresh connection to 127.0.0.1:port; out gets the first reply line ("+OK", ":1", "$-1"
 * for nil), or a bulk string's value. False on connect, send or read failure. */
bool it_redis_cmd(int port, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A lock holder in a forked child process (so it can be SIGKILLed / SIGSTOPped): it
 * connects, ACQUIREs res with a watchdog lease (waiting up to 5 s), reports the grant
 * and then PINGs every 50 ms until it is told to check or is killed (so a
 * SIGSTOP comes at most ~50 ms after its last traffic). */
typedef struct it_holder {
    pid_t pid;
    int to_child;   /* write end: commands */
    int from_child; /* read end: reports */
    it_grant grant;
} it_holder;
void it_holder_start(it_holder *h, int port, const char *res);
/* Tells the holder to RENEW and then RELEASE its lock (on its own connection, or on a
 * new session when lockd closed that one); out gets "RENEW=<r> RELEASE=<r> via=<c>". */
bool it_holder_check(it_holder *h, char *out, size_t outlen, int timeout_ms);
/* SIGKILL (also when stopped) and reap. Idempotent. */
void it_holder_reap(it_holder *h);

/* HTTP/1.0 GET on 127.0.0.1:port; the whole response (headers + body) into a malloc'ed
 * string the caller frees; NULL on failure. */
char *it_http_get(int port, const char *path, int timeout_ms);

/* Runs build/bin/lockd with args (NULL-terminated, at most 14) to its exit; returns its
 * exit code (-1: killed or still running after 10 s); out gets its stdout+stderr. */
int it_run_lockd(char *const *args, char *out, size_t outlen);
/* Writes text to <tmpdir>/lockd.yaml and returns that path (a static buffer). */
const char *it_write_yaml(const char *text);

/* Median and maximum of n values (sorts v in place). */
uint64_t it_median(uint64_t *v, size_t n);
uint64_t it_max(const uint64_t *v, size_t n);

#endif
