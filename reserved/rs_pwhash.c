/*
 * rs_pwhash: the Argon2id worker pool (contract in rs_pwhash.h).
 *
 * Threads: the loop thread submits jobs and delivers results; the workers only compute.
 * p->mu guards the two lists (queue, done), p->stopping and every job's state; everything
 * else (pending, the counters, the histogram, the event) belongs to the loop thread alone,
 * so the loop needs no libevent locking (evthread). A worker that finishes a job moves it
 * to `done` and writes 1 to the eventfd; the loop's event on that fd takes the whole done
 * list and runs the callbacks outside the lock.
 *
 * A job's life (job_state): QUEUED -> RUNNING -> DONE -> freed after its callback; or
 * freed from QUEUED / DONE without a callback by rs_pwhash_free.
 */
#include "rs_pwhash.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "cm_hist.h"
#include "cm_log.h"
#include "cm_strbuf.h"
#include "cm_time.h"

_Static_assert(RS_PWHASH_STR_MAX == crypto_pwhash_STRBYTES, "RS_PWHASH_STR_MAX");

typedef enum job_state {
    JOB_QUEUED,  /* in p->queue; no worker has taken it yet */
    JOB_RUNNING, /* a worker computes it, outside the lock */
    JOB_DONE,    /* computed, password wiped; in p->done until the loop delivers it */
    JOB_NSTATES
} job_state;

static const char *const job_state_names[JOB_NSTATES] = {"queued", "running", "done"};

#define JOB_TO(s) (1u << (s))
/* The legal moves: job_moves[from] has the bit of every state it may go to. */
static const unsigned job_moves[JOB_NSTATES] = {
    [JOB_QUEUED] = JOB_TO(JOB_RUNNING),
    [JOB_RUNNING] = JOB_TO(JOB_DONE),
    [JOB_DONE] = 0, /* delivered or dropped: freed */
};

typedef enum job_kind {
    JOB_HASH,   /* compute a new hash of the password */
    JOB_VERIFY, /* check the password against `stored` */
} job_kind;

typedef struct pw_job {
    STAILQ_ENTRY(pw_job) link; /* in p->queue or p->done, or in the loop's local list */
    uint64_t id;               /* for the log lines */
    job_state state;
    job_kind kind;
    bool dummy;     /* verify against the dummy hash (unknown user, bad stored string): the
                       answer is false whatever Argon2 says; it only costs the same time */
    char *password; /* copy, wiped and freed by the worker; NULL after */
    size_t len;
    char stored[RS_PWHASH_STR_MAX]; /* JOB_VERIFY: what to check against */
    char hash[RS_PWHASH_STR_MAX];   /* JOB_HASH: the result */
    bool ok;                        /* JOB_HASH: hash computed; JOB_VERIFY: match */
    uint64_t us;                    /* worker time */
    rs_pwhash_hash_cb hash_cb;      /* JOB_HASH */
    rs_pwhash_verify_cb verify_cb;  /* JOB_VERIFY */
    void *arg;
} pw_job;

STAILQ_HEAD(pw_jobs, pw_job);

struct rs_pwhash {
    struct event_base *base;
    rs_pwhash_opts opts;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a job was queued, or stopping */
    struct pw_jobs queue;          /* QUEUED jobs, FIFO (mu) */
    struct pw_jobs done;           /* DONE jobs not yet taken by the loop (mu) */
    bool stopping;                 /* workers exit at their next look at the queue (mu) */
    pthread_t *threads;            /* opts.threads of them */
    unsigned started;              /* threads started (all but after a failed new) */
    int efd;                       /* eventfd: workers write 1 per finished job */
    struct event *ev;              /* reads efd on the loop; added while pending > 0 */
    bool delivering;               /* inside pw_on_done (rs_pwhash_free is illegal there) */
    size_t pending;                /* submitted, callback not returned yet (loop thread) */
    uint64_t next_id;              /* loop thread */
    char dummy[RS_PWHASH_STR_MAX]; /* hash of a random password, same parameters */
    /* metrics, loop thread */
    uint64_t jobs_hash;
    uint64_t jobs_verify;
    uint64_t refused;
    cm_hist seconds;
};

/* Called with p->mu held (the job's state is shared with the workers). */
static void job_move(pw_job *j, job_state to)
{
    bool legal = to < JOB_NSTATES && (job_moves[j->state] & JOB_TO(to)) != 0;
    assert(legal);
    CM_UNUSED(legal); /* without assertions (release builds) */
    log_debug("pwhash job %llu: %s -> %s", (unsigned long long)j->id, job_state_names[j->state],
              job_state_names[to]);
    j->state = to;
}

static void job_wipe_password(pw_job *j)
{
    if (j->password != NULL) {
        sodium_memzero(j->password, j->len + 1);
        free(j->password);
        j->password = NULL;
    }
}

static void job_free(pw_job *j)
{
    assert(j->state == JOB_QUEUED || j->state == JOB_DONE);
    job_wipe_password(j);
    log_debug("pwhash job %llu: freed (%s)", (unsigned long long)j->id, job_state_names[j->state]);
    free(j);
}

static bool params_ok(uint64_t ops, size_t mem_bytes)
{
    return ops >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
           ops <= crypto_pwhash_argon2id_OPSLIMIT_MAX &&
           mem_bytes >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
           mem_bytes <= crypto_pwhash_argon2id_MEMLIMIT_MAX;
}

/* The worker's part of a job: Argon2 and the wipe. No lock held. */
static void job_compute(const rs_pwhash *p, pw_job *j)
{
    uint64_t t0 = cm_now_us();
    if (j->kind == JOB_HASH) {
        j->ok = crypto_pwhash_str_alg(j->hash, j->password, j->len, p->opts.ops, p->opts.mem_bytes,
                                      crypto_pwhash_ALG_ARGON2ID13) == 0;
    } else {
        bool match = crypto_pwhash_str_verify(j->stored, j->password, j->len) == 0;
        j->ok = match && !j->dummy;
    }
    j->us = cm_now_us() - t0;
    job_wipe_password(j);
}

static void *pw_worker(void *arg)
{
    rs_pwhash *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && STAILQ_EMPTY(&p->queue))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping)
            break;
        pw_job *j = STAILQ_FIRST(&p->queue);
        STAILQ_REMOVE_HEAD(&p->queue, link);
        job_move(j, JOB_RUNNING);
        pthread_mutex_unlock(&p->mu);
        job_compute(p, j);
        pthread_mutex_lock(&p->mu);
        job_move(j, JOB_DONE);
        STAILQ_INSERT_TAIL(&p->done, j, link);
        /* eventfd adds up the writes; one read on the loop takes them all. It cannot fill
         * up (2^64 - 2) nor fail but for a bug. */
        uint64_t one = 1;
        ssize_t w;
        do {
            w = write(p->efd, &one, sizeof(one));
        } while (w < 0 && errno == EINTR);
        if (w != (ssize_t)sizeof(one))
            fatal("pwhash: eventfd write: %s", strerror(errno));
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* The loop's side: every DONE job gets its callback, in the order the workers finished. */
static void pw_on_done(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(what);
    rs_pwhash *p = arg;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof(n)); /* resets the counter; EAGAIN: already read */
    CM_UNUSED(r);
    struct pw_jobs mine = STAILQ_HEAD_INITIALIZER(mine);
    pthread_mutex_lock(&p->mu);
    STAILQ_CONCAT(&mine, &p->done);
    pthread_mutex_unlock(&p->mu);
    p->delivering = true;
    pw_job *j;
    while ((j = STAILQ_FIRST(&mine)) != NULL) {
        STAILQ_REMOVE_HEAD(&mine, link);
        assert(j->state == JOB_DONE && p->pending > 0);
        p->pending--;
        cm_hist_observe_us(&p->seconds, j->us);
        if (j->kind == JOB_HASH)
            j->hash_cb(j->arg, j->ok ? j->hash : NULL);
        else
            j->verify_cb(j->arg, j->ok);
        job_free(j);
    }
    p->delivering = false;
    /* Idle: the event goes, so it does not keep the loop running. A callback may have
     * submitted a new job (pending > 0 again): the event then stays. */
    if (p->pending == 0)
        event_del(p->ev);
}

/* Asks the workers to stop and joins those started. */
static void pw_stop(rs_pwhash *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
    p->started = 0;
}

/* Starts opts.threads workers with every signal blocked: signals stay the loop thread's
 * (libevent's signal events). */
static cm_rc pw_start(rs_pwhash *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    cm_rc rc = CM_OK;
    for (unsigned i = 0; i < p->opts.threads; i++) {
        int e = pthread_create(&p->threads[i], NULL, pw_worker, p);
        if (e != 0) {
            log_error("pwhash: cannot start worker %u: %s", i, strerror(e));
            rc = CM_ERR;
            break;
        }
        p->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

rs_pwhash *rs_pwhash_new(struct event_base *base, const rs_pwhash_opts *o)
{
    if (o->threads < 1 || o->max_pending < 1 || !params_ok(o->ops, o->mem_bytes)) {
        log_error("pwhash: bad options (threads %u, ops %llu, mem %zu bytes, max_pending %zu)",
                  o->threads, (unsigned long long)o->ops, o->mem_bytes, o->max_pending);
        return NULL;
    }
    if (sodium_init() < 0) {
        log_error("pwhash: libsodium cannot start");
        return NULL;
    }
    rs_pwhash *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->base = base;
    p->opts = *o;
    p->efd = -1;
    STAILQ_INIT(&p->queue);
    STAILQ_INIT(&p->done);
    cm_hist_init_latency(&p->seconds);
    bool mu_ok = false, cv_ok = false;
    /* The dummy: a random password nobody knows, hashed with the pool's parameters, so
     * checking against it costs what checking against a real user's hash costs. */
    unsigned char secret[32];
    randombytes_buf(secret, sizeof(secret));
    cm_rc rc =
        rs_pwhash_hash_now(o->ops, o->mem_bytes, (const char *)secret, sizeof(secret), p->dummy);
    sodium_memzero(secret, sizeof(secret));
    if (rc != CM_OK)
        goto fail;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail;
    mu_ok = true;
    if (pthread_cond_init(&p->cv, NULL) != 0)
        goto fail;
    cv_ok = true;
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0)
        goto fail;
    p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, pw_on_done, p);
    p->threads = calloc(o->threads, sizeof(*p->threads));
    if (p->ev == NULL || p->threads == NULL)
        goto fail;
    if (pw_start(p) != CM_OK)
        goto fail;
    log_debug("pwhash: %u workers, ops %llu, mem %zu bytes, at most %zu pending", o->threads,
              (unsigned long long)o->ops, o->mem_bytes, o->max_pending);
    return p;
fail:
    log_error("pwhash: cannot start the pool");
    if (p->started > 0)
        pw_stop(p);
    free(p->threads);
    if (p->ev != NULL)
        event_free(p->ev);
    if (p->efd >= 0)
        close(p->efd);
    if (cv_ok)
        pthread_cond_destroy(&p->cv);
    if (mu_ok)
        pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

/* A new job with a copy of the password, or NULL (refused or out of memory). */
static pw_job *job_new(rs_pwhash *p, job_kind kind, const char *password, size_t len)
{
    if (p->pending >= p->opts.max_pending) {
        p->refused++;
        log_debug("pwhash: %zu jobs pending, refused", p->pending);
        return NULL;
    }
    pw_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->password = malloc(len + 1); /* + 1: a 0-byte password still gets a buffer */
    if (j->password == NULL) {
        free(j);
        return NULL;
    }
    if (len > 0) /* a 0-byte password may come as NULL */
        memcpy(j->password, password, len);
    j->password[len] = '\0';
    j->len = len;
    j->kind = kind;
    j->state = JOB_QUEUED;
    j->id = ++p->next_id;
    return j;
}

static void job_submit(rs_pwhash *p, pw_job *j)
{
    if (p->pending++ == 0)
        event_add(p->ev, NULL);
    if (j->kind == JOB_HASH)
        p->jobs_hash++;
    else
        p->jobs_verify++;
    log_debug("pwhash job %llu: %s queued", (unsigned long long)j->id,
              j->kind == JOB_HASH ? "hash" : "verify");
    pthread_mutex_lock(&p->mu);
    STAILQ_INSERT_TAIL(&p->queue, j, link);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

cm_rc rs_pwhash_hash(rs_pwhash *p, const char *password, size_t len, rs_pwhash_hash_cb cb,
                     void *arg)
{
    pw_job *j = job_new(p, JOB_HASH, password, len);
    if (j == NULL)
        return CM_ERR;
    j->hash_cb = cb;
    j->arg = arg;
    job_submit(p, j);
    return CM_OK;
}

/* An Argon2 string ("$argon2id$..." or "$argon2i$...") that fits a job. */
static bool stored_usable(const char *stored)
{
    return stored != NULL && strnlen(stored, RS_PWHASH_STR_MAX) < RS_PWHASH_STR_MAX &&
           strncmp(stored, "$argon2i", 8) == 0;
}

cm_rc rs_pwhash_verify(rs_pwhash *p, const char *stored, const char *password, size_t len,
                       rs_pwhash_verify_cb cb, void *arg)
{
    pw_job *j = job_new(p, JOB_VERIFY, password, len);
    if (j == NULL)
        return CM_ERR;
    j->dummy = !stored_usable(stored);
    strcpy(j->stored, j->dummy ? p->dummy : stored); /* both fit: checked above */
    j->verify_cb = cb;
    j->arg = arg;
    job_submit(p, j);
    return CM_OK;
}

cm_rc rs_pwhash_hash_now(uint64_t ops, size_t mem_bytes, const char *password, size_t len,
                         char out[RS_PWHASH_STR_MAX])
{
    if (!params_ok(ops, mem_bytes) || sodium_init() < 0)
        return CM_ERR;
    if (crypto_pwhash_str_alg(out, password, len, ops, mem_bytes, crypto_pwhash_ALG_ARGON2ID13) !=
        0)
        return CM_ERR;
    return CM_OK;
}

size_t rs_pwhash_pending(const rs_pwhash *p)
{
    return p->pending;
}

void rs_pwhash_free(rs_pwhash *p)
{
    if (p == NULL)
        return;
    assert(!p->delivering); /* never from inside one of its callbacks */
    pw_stop(p);
    /* The workers are gone: no lock needed any more. */
    pw_job *j;
    while ((j = STAILQ_FIRST(&p->queue)) != NULL) {
        STAILQ_REMOVE_HEAD(&p->queue, link);
        job_free(j);
    }
    while ((j = STAILQ_FIRST(&p->done)) != NULL) {
        STAILQ_REMOVE_HEAD(&p->done, link);
        job_free(j);
    }
    event_free(p->ev);
    close(p->efd);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

void rs_pwhash_metrics(const rs_pwhash *p, struct cm_strbuf *out)
{
    cm_strbuf_printf(out,
                     "# HELP reserved_pwhash_jobs_total password hash jobs accepted\n"
                     "# TYPE reserved_pwhash_jobs_total counter\n"
                     "reserved_pwhash_jobs_total{kind=\"hash\"} %llu\n"
                     "reserved_pwhash_jobs_total{kind=\"verify\"} %llu\n",
                     (unsigned long long)p->jobs_hash, (unsigned long long)p->jobs_verify);
    cm_strbuf_printf(out,
                     "# HELP reserved_pwhash_refused_total password hash jobs refused (queue "
                     "full: 503 BUSY)\n"
                     "# TYPE reserved_pwhash_refused_total counter\n"
                     "reserved_pwhash_refused_total %llu\n",
                     (unsigned long long)p->refused);
    cm_strbuf_printf(out,
                     "# HELP reserved_pwhash_pending password hash jobs queued or running\n"
                     "# TYPE reserved_pwhash_pending gauge\n"
                     "reserved_pwhash_pending %zu\n",
                     p->pending);
    cm_hist_format(&p->seconds, "reserved_pwhash_seconds",
                   "Argon2id time per job in a worker thread", "", out);
}
