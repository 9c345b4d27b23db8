/*
 * rs_metrics: the process's booking, payment and guard counters and histograms, and
 * their Prometheus text. The DB pool and lockd gauges are read live from rs_app_g at
 * render time, so nothing has to keep them up to date.
 */
#include "rs_metrics.h"

#include <string.h>

#include "cm_lockclient.h"
#include "rs_app.h"

rs_metrics rs_stats;

void rs_metrics_init(void)
{
    memset(&rs_stats, 0, sizeof(rs_stats));
    cm_hist_init_latency(&rs_stats.booking_latency);
    cm_hist_init_latency(&rs_stats.lock_wait);
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64};
    cm_hist_init(&rs_stats.batch_size, sizes, CM_ARRAY_LEN(sizes));
}

typedef struct counter_def {
    const char *name;
    const char *help;
    const char *labels; /* "" or label pairs without braces */
    size_t offset;      /* of the uint64_t in rs_metrics */
} counter_def;

#define C(n, h, l, f)                                                                              \
    {                                                                                              \
        (n), (h), (l), offsetof(rs_metrics, f)                                                     \
    }

/* Counters sharing a name are consecutive so HELP/TYPE are written once per family. */
static const counter_def counters[] = {
    C("reserved_bookings_total", "booking outcomes", "outcome=\"confirmed\"", bookings_confirmed),
    C("reserved_bookings_total", "", "outcome=\"seat_taken\"", bookings_seat_taken),
    C("reserved_bookings_total", "", "outcome=\"sold_out\"", bookings_sold_out),
    C("reserved_bookings_total", "", "outcome=\"declined\"", bookings_declined),
    C("reserved_bookings_total", "", "outcome=\"busy\"", bookings_busy),
    C("reserved_bookings_total", "", "outcome=\"unavailable\"", bookings_unavailable),
    C("reserved_bookings_total", "", "outcome=\"fence_rejected\"", bookings_fence_rejected),
    C("reserved_bookings_total", "", "outcome=\"lock_lost\"", bookings_lock_lost),
    C("reserved_booking_idempotent_replays_total", "bookings answered from an Idempotency-Key", "",
      bookings_idempotent_replays),
    C("reserved_cancellations_total", "reservations cancelled", "", cancellations),
    C("reserved_guard_firings_total",
      "database guards that fired (a bug signal: the lock should have prevented it)",
      "guard=\"capacity\"", guard_capacity),
    C("reserved_guard_firings_total", "", "guard=\"seat_unique\"", guard_seat_unique),
    C("reserved_guard_firings_total", "", "guard=\"other\"", guard_other),
    C("reserved_payments_total", "payment gateway outcomes", "outcome=\"approved\"",
      payments_approved),
    C("reserved_payments_total", "", "outcome=\"declined\"", payments_declined),
    C("reserved_payments_total", "", "outcome=\"failed\"", payments_failed),
    C("reserved_payments_total", "", "outcome=\"cancelled\"", payments_cancelled),
    C("reserved_reconciler_runs_total", "reconciler passes", "", reconciler_runs),
    C("reserved_reconciler_cancelled_total", "orphaned payments cancelled by the reconciler", "",
      reconciler_cancelled),
    C("reserved_batches_total", "group bookings: batches that ran (one transaction each)", "",
      batches),
    C("reserved_batch_bookings_total", "bookings booked in those batches", "", batch_bookings),
};

static void gauge(cm_strbuf *out, const char *name, const char *help, unsigned long long v)
{
    cm_strbuf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name, v);
}

void rs_metrics_render(cm_strbuf *out)
{
    const char *family = NULL;

    for (size_t i = 0; i < CM_ARRAY_LEN(counters); i++) {
        const counter_def *c = &counters[i];
        uint64_t v;
        memcpy(&v, (const char *)&rs_stats + c->offset, sizeof(v));
        if (!family || strcmp(family, c->name) != 0) {
            cm_strbuf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", c->name, c->help, c->name);
            family = c->name;
        }
        if (c->labels[0])
            cm_strbuf_printf(out, "%s{%s} %llu\n", c->name, c->labels, (unsigned long long)v);
        else
            cm_strbuf_printf(out, "%s %llu\n", c->name, (unsigned long long)v);
    }
    cm_hist_format(&rs_stats.booking_latency, "reserved_booking_latency_seconds",
                   "POST reservations: received to answered", "", out);
    cm_hist_format(&rs_stats.lock_wait, "reserved_lock_wait_seconds",
                   "performance lock: asked to granted (lockd or row lock)", "", out);
    cm_hist_format(&rs_stats.batch_size, "reserved_batch_size", "bookings per batch", "", out);
    if (rs_app_g.db) {
        gauge(out, "reserved_db_pool_in_use", "PostgreSQL connections leased or busy",
              rs_db_in_use(rs_app_g.db));
        gauge(out, "reserved_db_pool_up", "PostgreSQL connections up", rs_db_up(rs_app_g.db));
        gauge(out, "reserved_db_pool_size", "PostgreSQL connections configured",
              rs_db_size(rs_app_g.db));
    }
    gauge(out, "reserved_lockd_connected", "1 when the lockd session is up (lock.mode lockd)",
          rs_app_g.locks && cm_lockclient_connected(rs_app_g.locks) ? 1 : 0);
    gauge(out, "reserved_shutting_down", "1 during a graceful stop", rs_app_g.shutting_down);
}
