/*
 * lk_metrics: the global lk_stats and the Prometheus page (GET /metrics on
 * metrics_listen, evhttp on the daemon's loop). Rendering reads lk_stats, lk_redlock's
 * own counters and its per-master state; nothing here blocks.
 */
#include "lk_metrics.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <string.h>

#include "cm_log.h"
#include "lk_quarantine.h"
#include "lk_redlock.h"

lk_metrics lk_stats;

const char *const lk_lost_reason_name[LK_LOST_NREASONS] = {"expired", "renew_refused", "no_quorum",
                                                           "revoked", "shutdown",      "session"};

static struct evhttp *metrics_http;
static const struct lk_redlock *metrics_rl;

/* Where a metric's value lives: lk_stats, or the lk_redlock client's own counters. */
enum metric_src { SRC_LOCKD, SRC_REDLOCK };

typedef struct metric_desc {
    const char *name;
    const char *help;
    size_t offset;
    int is_gauge;
    enum metric_src src;
} metric_desc;

#define COUNTER(field, name, help)                                                                 \
    {                                                                                              \
        "lockd_" name, help, offsetof(lk_metrics, field), 0, SRC_LOCKD                             \
    }
#define RL_COUNTER(field, name, help)                                                              \
    {                                                                                              \
        "lockd_" name, help, offsetof(lk_rl_stats, field), 0, SRC_REDLOCK                          \
    }
#define GAUGE(field, name, help)                                                                   \
    {                                                                                              \
        "lockd_" name, help, offsetof(lk_metrics, field), 1, SRC_LOCKD                             \
    }

static const metric_desc metric_table[] = {
    COUNTER(acquires_total, "acquires_total", "ACQUIRE requests accepted for processing"),
    COUNTER(grants_total, "grants_total", "ACQUIRE requests answered OK"),
    COUNTER(timeouts_total, "timeouts_total", "ACQUIRE requests answered TIMEOUT"),
    COUNTER(noquorum_total, "noquorum_total", "ACQUIRE requests answered ERR NOQUORUM"),
    COUNTER(releases_total, "releases_total", "RELEASE requests answered OK"),
    COUNTER(renews_total, "renews_total", "RENEW requests answered OK"),
    COUNTER(lost_total, "lost_locks_total", "locks lost (renewal failed or session expired)"),
    COUNTER(handoffs_total, "handoffs_total", "locks handed to the next local waiter"),
    COUNTER(wakeups_total, "wakeups_total", "release notices from other lockds that woke waiters"),
    COUNTER(yields_total, "yields_total",
            "locks released to another lockd's older waiter instead of a local handoff"),
    COUNTER(polls_total, "polls_total", "safety-net polls of locks held elsewhere"),
    RL_COUNTER(rounds_total, "redlock_rounds_total", "Redlock rounds started"),
    RL_COUNTER(failed_total, "redlock_failed_total", "Redlock rounds without quorum"),
    RL_COUNTER(fence_writebacks_total, "fence_writebacks_total", "fence write-backs to a majority"),
    RL_COUNTER(batch_calls_total, "redlock_batch_calls_total",
               "batch script calls sent to masters (one per master per loop pass)"),
    RL_COUNTER(batch_entries_total, "redlock_batch_entries_total",
               "round commands carried by those calls"),
    COUNTER(sessions_total, "sessions_total", "sessions accepted"),
    COUNTER(sessions_expired_total, "sessions_expired_total",
            "sessions ended by session.timeout_ms"),
    COUNTER(badreq_total, "badreq_total", "requests answered ERR BADREQ"),
    COUNTER(watchdog_renewals_total, "watchdog_renewals_total", "watchdog lease renewals"),
    COUNTER(revocations_total, "revocations_total", "REVOKE requests that found a lock to delete"),
    GAUGE(sessions, "sessions", "open sessions"),
    GAUGE(waiters, "waiters", "waiting ACQUIRE requests"),
    GAUGE(locks_held, "locks_held", "locks held by local sessions"),
};

void lk_metrics_init(void)
{
    memset(&lk_stats, 0, sizeof(lk_stats));
    cm_hist_init_latency(&lk_stats.handoff_latency);
    cm_hist_init_latency(&lk_stats.acquire_latency);
    cm_hist_init_latency(&lk_stats.wait_time);
}

void lk_metrics_render(const struct lk_redlock *rl, cm_strbuf *out)
{
    static lk_rl_stats no_rl; /* zeros, with empty histogram buckets, when rl is NULL */
    const lk_rl_stats *rls = rl ? lk_redlock_stats(rl) : &no_rl;

    if (!rl && no_rl.redis_rtt.n == 0)
        cm_hist_init_latency(&no_rl.redis_rtt);
    for (size_t i = 0; i < CM_ARRAY_LEN(metric_table); i++) {
        const metric_desc *m = &metric_table[i];
        const char *base = m->src == SRC_LOCKD ? (const char *)&lk_stats : (const char *)rls;
        cm_strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                         m->is_gauge ? "gauge" : "counter");
        if (m->is_gauge)
            cm_strbuf_printf(out, "%s %lld\n", m->name,
                             (long long)*(const int64_t *)(const void *)(base + m->offset));
        else
            cm_strbuf_printf(
                out, "%s %llu\n", m->name,
                (unsigned long long)*(const uint64_t *)(const void *)(base + m->offset));
    }
    cm_strbuf_printf(out, "# HELP lockd_lost_total LOST pushes to holders, by reason\n"
                          "# TYPE lockd_lost_total counter\n");
    for (int i = 0; i < LK_LOST_NREASONS; i++)
        cm_strbuf_printf(out, "lockd_lost_total{reason=\"%s\"} %llu\n", lk_lost_reason_name[i],
                         (unsigned long long)lk_stats.lost_by_reason[i]);
    cm_hist_format(&lk_stats.handoff_latency, "lockd_handoff_latency_seconds",
                   "RELEASE received to the next local waiter's OK", "", out);
    cm_hist_format(&lk_stats.acquire_latency, "lockd_acquire_latency_seconds",
                   "ACQUIRE received to OK", "", out);
    cm_hist_format(&lk_stats.wait_time, "lockd_wait_seconds", "ACQUIRE received to OK or TIMEOUT",
                   "", out);
    cm_hist_format(&rls->redis_rtt, "lockd_redis_rtt_seconds", "per-master command round trip", "",
                   out);
    if (!rl)
        return;
    size_t n = lk_redlock_masters_total(rl);
    cm_strbuf_printf(out,
                     "# HELP lockd_redlock_rounds_queued Redlock rounds waiting for room under"
                     " redlock.max_inflight_rounds\n# TYPE lockd_redlock_rounds_queued gauge\n"
                     "lockd_redlock_rounds_queued %zu\n",
                     lk_redlock_queued(rl));
    cm_strbuf_printf(out,
                     "# HELP lockd_masters Redis masters configured\n# TYPE lockd_masters gauge\n"
                     "lockd_masters %zu\n",
                     n);
    cm_strbuf_printf(out,
                     "# HELP lockd_masters_up Redis masters connected\n"
                     "# TYPE lockd_masters_up gauge\nlockd_masters_up %zu\n",
                     lk_redlock_masters_up(rl));
    cm_strbuf_printf(out,
                     "# HELP lockd_quorum masters needed for a grant\n# TYPE lockd_quorum gauge\n"
                     "lockd_quorum %zu\n",
                     lk_redlock_quorum(rl));
    cm_strbuf_printf(out, "# HELP lockd_master_up 1 when the master's connection is up\n"
                          "# TYPE lockd_master_up gauge\n");
    for (size_t i = 0; i < n; i++)
        cm_strbuf_printf(out, "lockd_master_up{master=\"%s\"} %d\n", lk_redlock_master_name(rl, i),
                         lk_redlock_master_up(rl, i) ? 1 : 0);
    /* The guard (lk_quarantine): a quarantined master is connected but not up. */
    const struct lk_quar *q = lk_redlock_quar(rl);
    cm_strbuf_printf(out,
                     "# HELP lockd_masters_quarantined masters back without their data, counted"
                     " in no quorum yet\n# TYPE lockd_masters_quarantined gauge\n"
                     "lockd_masters_quarantined %zu\n"
                     "# HELP lockd_quarantines_total quarantines started (redlock.quarantine)\n"
                     "# TYPE lockd_quarantines_total counter\nlockd_quarantines_total %llu\n"
                     "# HELP lockd_quarantine_fences_restored_total fence keys written to"
                     " quarantined masters\n# TYPE lockd_quarantine_fences_restored_total counter\n"
                     "lockd_quarantine_fences_restored_total %llu\n"
                     "# HELP lockd_master_quarantined 1 while the master is quarantined\n"
                     "# TYPE lockd_master_quarantined gauge\n",
                     lk_quar_quarantined(q), (unsigned long long)lk_quar_total(q),
                     (unsigned long long)lk_quar_restored_total(q));
    for (size_t i = 0; i < n; i++) {
        lk_quar_state st = lk_quar_master_state(q, i);
        cm_strbuf_printf(out, "lockd_master_quarantined{master=\"%s\"} %d\n",
                         lk_redlock_master_name(rl, i),
                         st == LKQ_QUARANTINED || st == LKQ_QUAR_DOWN);
    }
}

static void metrics_request_cb(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *body = evbuffer_new();
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
    size_t plen = strcspn(uri ? uri : "", "?");

    if (!body) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || plen != strlen("/metrics") ||
        strncmp(uri, "/metrics", plen) != 0) {
        evbuffer_add_printf(body, "not found\n");
        evhttp_add_header(hdrs, "Content-Type", "text/plain");
        evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", body);
        evbuffer_free(body);
        return;
    }
    cm_strbuf sb = CM_STRBUF_INIT;
    lk_metrics_render(metrics_rl, &sb);
    evbuffer_add(body, cm_strbuf_str(&sb), sb.len);
    cm_strbuf_free(&sb);
    evhttp_add_header(hdrs, "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

cm_rc lk_metrics_listen(struct event_base *base, const cm_addr *addr, const struct lk_redlock *rl)
{
    metrics_http = evhttp_new(base);
    if (!metrics_http)
        return CM_ERR;
    if (!evhttp_bind_socket_with_handle(metrics_http, addr->host, (ev_uint16_t)addr->port)) {
        log_error("metrics: cannot listen on %s:%d", addr->host, addr->port);
        evhttp_free(metrics_http);
        metrics_http = NULL;
        return CM_ERR;
    }
    evhttp_set_gencb(metrics_http, metrics_request_cb, NULL);
    metrics_rl = rl;
    log_info("metrics on http://%s:%d/metrics", addr->host, addr->port);
    return CM_OK;
}

void lk_metrics_shutdown(void)
{
    if (metrics_http)
        evhttp_free(metrics_http);
    metrics_http = NULL;
    metrics_rl = NULL;
}
