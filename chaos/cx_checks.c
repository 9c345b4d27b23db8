/*
 * cx_checks: the checks (see cx_checks.h). Every history-based check errs on the side of
 * the system under test only where the history cannot tell: an operation without an answer
 * ("unknown") may or may not have taken effect, so it never proves a violation and never
 * hides one that acknowledged operations alone prove.
 */
#include "cx_checks.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_checks_int.h"
#include "cx_mem.h"

#define DETAIL_CAP 12 /* offenders spelled out per check; the rest are counted */

/* Records one offender: the check fails and the first DETAIL_CAP are named. */
void cx_check_offend(cx_result *r, const char *fmt, ...)
{
    r->pass = false;
    if (r->notes >= DETAIL_CAP) {
        r->omitted++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (r->notes++)
        cm_strbuf_append(&r->detail, "; ", 2);
    cm_strbuf_vprintf(&r->detail, fmt, ap);
    va_end(ap);
}

/* Adds information that is not an offence (does not change pass). */
void cx_check_inform(cx_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (r->detail.len)
        cm_strbuf_append(&r->detail, "; ", 2);
    cm_strbuf_vprintf(&r->detail, fmt, ap);
    va_end(ap);
}

bool cx_is_ack_book(const cx_op *op)
{
    return op->kind == CX_OP_BOOK && op->outcome == CX_OK && op->status == 201 &&
           op->reservation > 0;
}

/* ---- cancels by reservation ---- */

typedef struct cancel_ix {
    const cx_op **ops; /* cancel ops sorted by (reservation, start_ms) */
    size_t n;
} cancel_ix;

static int cmp_cancel(const void *a, const void *b)
{
    const cx_op *x = *(const cx_op *const *)a, *y = *(const cx_op *const *)b;
    if (x->reservation != y->reservation)
        return (x->reservation > y->reservation) - (x->reservation < y->reservation);
    return (x->start_ms > y->start_ms) - (x->start_ms < y->start_ms);
}

static void cancel_ix_build(cancel_ix *ix, const cx_history *h)
{
    ix->ops = cx_xcalloc(h->n_ops, sizeof(*ix->ops));
    ix->n = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (h->ops[i].kind == CX_OP_CANCEL && h->ops[i].reservation > 0)
            ix->ops[ix->n++] = &h->ops[i];
    qsort(ix->ops, ix->n, sizeof(*ix->ops), cmp_cancel);
}

/* A cancel that may have taken effect: acknowledged, unanswered, or a server error (which
 * can come after the commit). A definite 4xx did nothing. */
static bool cancel_may_apply(const cx_op *op)
{
    return op->outcome != CX_FAIL || op->status >= 500;
}

/* Summary of the cancels of one reservation. */
typedef struct cancel_sum {
    bool acked;         /* some cancel was answered 2xx */
    bool maybe;         /* some cancel may have applied */
    int64_t maybe_from; /* the earliest start_ms of those (INT64_MAX: none) */
} cancel_sum;

static cancel_sum cancels_of(const cancel_ix *ix, int64_t rid)
{
    cancel_sum cs = {false, false, INT64_MAX};
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ix->ops[mid]->reservation < rid)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < ix->n && ix->ops[i]->reservation == rid; i++) {
        const cx_op *op = ix->ops[i];
        cs.acked |= op->outcome == CX_OK;
        if (cancel_may_apply(op)) {
            cs.maybe = true;
            cs.maybe_from = CM_MIN(cs.maybe_from, op->start_ms);
        }
    }
    return cs;
}

/* ---- acknowledged bookings, one per reservation id (idempotent replays repeat ids) ---- */

static int cmp_op_res(const void *a, const void *b)
{
    const cx_op *x = *(const cx_op *const *)a, *y = *(const cx_op *const *)b;
    if (x->reservation != y->reservation)
        return (x->reservation > y->reservation) - (x->reservation < y->reservation);
    return (x->end_ms > y->end_ms) - (x->end_ms < y->end_ms);
}

/* Sorted by reservation id, the earliest acknowledgement of each id kept. */
static const cx_op **acked_books(const cx_history *h, size_t *n)
{
    const cx_op **v = cx_xcalloc(h->n_ops, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (cx_is_ack_book(&h->ops[i]))
            v[k++] = &h->ops[i];
    qsort(v, k, sizeof(*v), cmp_op_res);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || v[u - 1]->reservation != v[i]->reservation)
            v[u++] = v[i];
    *n = u;
    return v;
}

static bool acked_has(const cx_op *const *v, size_t n, int64_t rid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid]->reservation < rid)
            lo = mid + 1;
        else if (v[mid]->reservation > rid)
            hi = mid;
        else
            return true;
    }
    return false;
}

/* ---- no_double_sale ---- */

typedef struct seat_sale {
    int64_t perf, seat;
    const cx_op *op;
} seat_sale;

static int cmp_sale(const void *a, const void *b)
{
    const seat_sale *x = a, *y = b;
    if (x->perf != y->perf)
        return (x->perf > y->perf) - (x->perf < y->perf);
    if (x->seat != y->seat)
        return (x->seat > y->seat) - (x->seat < y->seat);
    return (x->op->end_ms > y->op->end_ms) - (x->op->end_ms < y->op->end_ms);
}

/* True when a's seats were possibly given back before b could have committed. */
static bool released_before(const cancel_ix *ix, const cx_op *a, const cx_op *b)
{
    cancel_sum cs = cancels_of(ix, a->reservation);
    return cs.maybe && cs.maybe_from < b->end_ms;
}

static void check_double_sale(cx_result *r, const cx_snap *s, const cancel_ix *ix,
                              const cx_op *const *acked, size_t n_acked)
{
    size_t n_sales = 0, hist_dups = 0;
    for (size_t i = 0; i < n_acked; i++)
        n_sales += acked[i]->n_seats;
    seat_sale *v = cx_xcalloc(n_sales, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < n_acked; i++)
        for (size_t j = 0; j < acked[i]->n_seats; j++)
            v[k++] = (seat_sale){acked[i]->perf, acked[i]->seats[j], acked[i]};
    qsort(v, k, sizeof(*v), cmp_sale);
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && v[j].perf == v[i].perf && v[j].seat == v[i].seat)
            j++;
        for (size_t a = i; a < j; a++)
            for (size_t b = a + 1; b < j; b++) {
                const cx_op *x = v[a].op, *y = v[b].op;
                if (released_before(ix, x, y) || released_before(ix, y, x))
                    continue;
                hist_dups++;
                cx_check_offend(r,
                                "history: perf %" PRId64 " seat %" PRId64
                                " acknowledged to reservations "
                                "%" PRId64 " (op %" PRId64 ") and %" PRId64 " (op %" PRId64 ")",
                                v[a].perf, v[a].seat, x->reservation, x->id, y->reservation, y->id);
            }
        i = j;
    }
    free(v);
    for (size_t i = 0; i < s->n_dups; i++)
        cx_check_offend(
            r, "db: perf %" PRId64 " seat %" PRId64 " in %" PRId64 " CONFIRMED reservations",
            s->dups[i].perf, s->dups[i].seat, s->dups[i].count);
    snprintf(r->figure, sizeof(r->figure),
             "db_double_sold=%zu history_double_sold=%zu (acknowledged bookings %zu)", s->n_dups,
             hist_dups, n_acked);
}

/* ---- capacity ---- */

static void check_capacity(cx_result *r, const cx_snap *s)
{
    size_t bad = 0;
    for (size_t i = 0; i < s->n_perfs; i++) {
        const cx_perf *p = &s->perfs[i];
        bool ok = p->remaining == p->total - p->confirmed_seats && p->total == p->venue_seats;
        if (ok)
            continue;
        bad++;
        cx_check_offend(r,
                        "perf %" PRId64 ": remaining %" PRId64 ", total %" PRId64
                        " - confirmed seats %" PRId64 " = %" PRId64 " (venue seats %" PRId64 ")",
                        p->id, p->remaining, p->total, p->confirmed_seats,
                        p->total - p->confirmed_seats, p->venue_seats);
    }
    snprintf(r->figure, sizeof(r->figure), "mismatched=%zu of %zu performances", bad, s->n_perfs);
}

/* ---- no_lost_ack ---- */

static bool same_booking(const cx_op *op, const cx_res *x)
{
    if (op->perf != x->perf || op->user != x->user || op->n_seats != x->n_seats)
        return false;
    return op->n_seats == 0 || memcmp(op->seats, x->seats, op->n_seats * sizeof(int64_t)) == 0;
}

static void check_lost_ack(cx_result *r, const cx_history *h, const cx_snap *s, const cancel_ix *ix,
                           const cx_op *const *acked, size_t n_acked)
{
    size_t lost = 0, unknown_ok = 0, unmatched = 0;
    for (size_t i = 0; i < n_acked; i++) {
        const cx_op *op = acked[i];
        const cx_res *x = cx_snap_res(s, op->reservation);
        cancel_sum cs = cancels_of(ix, op->reservation);
        const char *why = NULL;
        if (!x)
            why = "no such reservation in the database";
        else if (x->perf != op->perf)
            why = "the database row is for another performance";
        else if (x->confirmed && cs.acked)
            why = "CONFIRMED although a cancel was acknowledged";
        else if (!x->confirmed && !cs.maybe)
            why = "CANCELLED although no cancel may have applied";
        if (!why)
            continue;
        lost++;
        cx_check_offend(r, "reservation %" PRId64 " (op %" PRId64 ", 201 at %" PRId64 " ms): %s",
                        op->reservation, op->id, op->end_ms, why);
    }
    /* CONFIRMED rows nobody was told about must come from a booking whose answer was lost. */
    const cx_op **unk = cx_xcalloc(h->n_ops, sizeof(*unk));
    size_t n_unk = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (h->ops[i].kind == CX_OP_BOOK && h->ops[i].outcome == CX_UNKNOWN)
            unk[n_unk++] = &h->ops[i];
    for (size_t i = 0; i < s->n_res; i++) {
        const cx_res *x = &s->res[i];
        if (!x->confirmed || acked_has(acked, n_acked, x->id))
            continue;
        bool found = false;
        for (size_t j = 0; j < n_unk && !found; j++)
            if (unk[j] && same_booking(unk[j], x)) {
                unk[j] = NULL; /* one answer lost, at most one booking made */
                found = true;
            }
        if (found) {
            unknown_ok++;
            continue;
        }
        unmatched++;
        cx_check_offend(r,
                        "reservation %" PRId64 " (perf %" PRId64 ", user %" PRId64
                        ", %zu seats) is "
                        "CONFIRMED but was neither acknowledged nor left unanswered",
                        x->id, x->perf, x->user, x->n_seats);
    }
    free(unk);
    snprintf(r->figure, sizeof(r->figure),
             "acknowledged=%zu lost=%zu confirmed_from_unanswered=%zu confirmed_unexplained=%zu",
             n_acked, lost, unknown_ok, unmatched);
}

/* ---- payments ---- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index range [*lo, *hi) of payments with this reference. */
static void payments_of(const cx_snap *s, const char *ref, size_t *lo, size_t *hi)
{
    size_t l = 0, h = s->n_payments;
    while (l < h) {
        size_t mid = (l + h) / 2;
        if (strcmp(s->payments[mid].reference, ref) < 0)
            l = mid + 1;
        else
            h = mid;
    }
    *lo = l;
    while (l < s->n_payments && strcmp(s->payments[l].reference, ref) == 0)
        l++;
    *hi = l;
}

static void check_payments(cx_result *r, const cx_snap *s)
{
    if (!s->have_payments) {
        snprintf(r->figure, sizeof(r->figure), "n/a (no --payment-url)");
        return;
    }
    size_t approved = 0, confirmed = 0, orphans = 0, missing = 0, doubled = 0;
    const char **refs = cx_xcalloc(s->n_res, sizeof(*refs));
    size_t n_refs = 0;
    for (size_t i = 0; i < s->n_res; i++) {
        const cx_res *x = &s->res[i];
        if (!x->confirmed)
            continue;
        confirmed++;
        if (!x->payment_ref) {
            missing++;
            cx_check_offend(r, "reservation %" PRId64 " is CONFIRMED with no payment reference",
                            x->id);
            continue;
        }
        refs[n_refs++] = x->payment_ref;
        size_t lo, hi, n_ok = 0;
        const cx_payment *ok = NULL;
        payments_of(s, x->payment_ref, &lo, &hi);
        for (size_t j = lo; j < hi; j++)
            if (strcmp(s->payments[j].status, "APPROVED") == 0) {
                n_ok++;
                ok = &s->payments[j];
            }
        if (n_ok == 0) {
            missing++;
            cx_check_offend(r, "reservation %" PRId64 " (reference %s) has no APPROVED payment",
                            x->id, x->payment_ref);
        } else if (n_ok > 1) {
            doubled++;
            cx_check_offend(r, "reservation %" PRId64 " (reference %s) has %zu APPROVED payments",
                            x->id, x->payment_ref, n_ok);
        } else if (x->payment_id && strcmp(x->payment_id, ok->id) != 0) {
            missing++;
            cx_check_offend(r, "reservation %" PRId64 " says payment %s, the gateway approved %s",
                            x->id, x->payment_id, ok->id);
        }
    }
    qsort(refs, n_refs, sizeof(*refs), cmp_str_ptr);
    for (size_t i = 0; i < s->n_payments; i++) {
        const cx_payment *p = &s->payments[i];
        if (strcmp(p->status, "APPROVED") != 0)
            continue;
        approved++;
        const char *key = p->reference;
        if (bsearch(&key, refs, n_refs, sizeof(*refs), cmp_str_ptr))
            continue;
        orphans++;
        cx_check_offend(r,
                        "orphan payment %s (reference %s) APPROVED with no CONFIRMED reservation",
                        p->id, p->reference);
    }
    free(refs);
    snprintf(r->figure, sizeof(r->figure),
             "approved=%zu confirmed=%zu orphan_payments=%zu unpaid_reservations=%zu "
             "double_charged=%zu",
             approved, confirmed, orphans, missing, doubled);
}

/* ---- counters: lost updates and fences ---- */

typedef struct counter_sum {
    int64_t id;
    size_t applied, rejected, errors, ops;
} counter_sum;

static int cmp_op_counter_start(const void *a, const void *b)
{
    const cx_op *x = *(const cx_op *const *)a, *y = *(const cx_op *const *)b;
    if (x->counter != y->counter)
        return (x->counter > y->counter) - (x->counter < y->counter);
    return (x->start_ms > y->start_ms) - (x->start_ms < y->start_ms);
}

static int cmp_op_counter_end(const void *a, const void *b)
{
    const cx_op *x = *(const cx_op *const *)a, *y = *(const cx_op *const *)b;
    if (x->counter != y->counter)
        return (x->counter > y->counter) - (x->counter < y->counter);
    return (x->end_ms > y->end_ms) - (x->end_ms < y->end_ms);
}

/* Counter ops sorted by (counter, start_ms). */
static const cx_op **counter_ops(const cx_history *h, size_t *n)
{
    const cx_op **v = cx_xcalloc(h->n_ops, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (h->ops[i].kind == CX_OP_COUNTER_INCR)
            v[k++] = &h->ops[i];
    qsort(v, k, sizeof(*v), cmp_op_counter_start);
    *n = k;
    return v;
}

static int64_t counter_value(const cx_snap *s, int64_t id, bool *found)
{
    for (size_t i = 0; i < s->n_counters; i++)
        if (s->counters[i].id == id) {
            *found = true;
            return s->counters[i].value;
        }
    *found = false;
    return 0;
}

/*
 * A rejected write would have been a lost update without the fence when a newer holder
 * (higher fence) had claimed the counter by its read before the stale write was answered:
 * the stale value would have overwritten the newer one, or been overwritten by a write
 * computed from a read that did not see it. v[lo..hi) are the ops of one counter.
 */
static bool rejection_explained(const cx_op *const *v, size_t lo, size_t hi, const cx_op *stale)
{
    for (size_t k = lo; k < hi; k++)
        if (v[k]->has_read && v[k]->fence > stale->fence && v[k]->start_ms <= stale->end_ms)
            return true;
    return false;
}

static void check_counters(cx_result *r, const cx_snap *s, const cx_op *const *v, size_t n)
{
    size_t applied = 0, rejected = 0, errors = 0, lost_total = 0, n_counters = 0;
    size_t would_be_lost = 0, stale_lost = 0, unexplained = 0;
    if (n == 0) {
        snprintf(r->figure, sizeof(r->figure), "n/a (no counter operations in the history)");
        return;
    }
    if (!s->have_counters) {
        cx_check_offend(r,
                        "the history has %zu counter operations but the database has no "
                        "chaos_counters table",
                        n);
        snprintf(r->figure, sizeof(r->figure), "no chaos_counters table");
        return;
    }
    for (size_t i = 0; i < n;) {
        counter_sum cs = {v[i]->counter, 0, 0, 0, 0};
        size_t j = i;
        for (; j < n && v[j]->counter == cs.id; j++) {
            cs.ops++;
            cs.applied += v[j]->write == CX_WRITE_APPLIED;
            cs.rejected += v[j]->write == CX_WRITE_REJECTED;
            cs.errors += v[j]->write == CX_WRITE_ERROR;
        }
        for (size_t k = i; k < j; k++) {
            if (v[k]->write != CX_WRITE_REJECTED)
                continue;
            stale_lost += v[k]->lost;
            if (rejection_explained(v, i, j, v[k]))
                would_be_lost++;
            else if (++unexplained <= 5)
                cx_check_inform(r,
                                "counter %" PRId64 ": op %" PRId64 " (fence %" PRIu64
                                ") rejected with no newer fenced read in the history",
                                cs.id, v[k]->id, v[k]->fence);
        }
        i = j;
        n_counters++;
        bool found;
        int64_t delta = counter_value(s, cs.id, &found) - 0; /* counters start at 0 */
        applied += cs.applied;
        rejected += cs.rejected;
        errors += cs.errors;
        if (!found) {
            cx_check_offend(r, "counter %" PRId64 ": no row in chaos_counters", cs.id);
            continue;
        }
        /* Writes whose answer was lost ("error") may have applied: they can explain a
         * final value above the applied count, never one below it. */
        int64_t lost = (int64_t)cs.applied - delta;
        if (lost > 0) {
            lost_total += (size_t)lost;
            cx_check_offend(r,
                            "counter %" PRId64 ": %zu applied increments, final value %" PRId64
                            ": %" PRId64 " lost updates",
                            cs.id, cs.applied, delta, lost);
        } else if (-lost > (int64_t)cs.errors) {
            cx_check_offend(r,
                            "counter %" PRId64 ": final value %" PRId64
                            " exceeds %zu applied + %zu "
                            "unanswered writes",
                            cs.id, delta, cs.applied, cs.errors);
        }
    }
    snprintf(r->figure, sizeof(r->figure),
             "lost_updates=%zu applied=%zu stale_rejected_by_fence=%zu "
             "would_be_lost_without_fence=%zu rejected_after_lost_lock=%zu write_errors=%zu "
             "counters=%zu",
             lost_total, applied, rejected, would_be_lost, stale_lost, errors, n_counters);
}

/*
 * Fences of one resource never go down in real time: when op A ended before op B started,
 * A's grant happened before B's, so B's fence must be greater (equal = one fence granted
 * twice). Ops that overlap in time are not ordered and are not compared: end_ms order
 * alone would accuse a correct lockd whenever a release is slow to be recorded.
 */
static void check_fences(cx_result *r, const cx_op *const *v, size_t n)
{
    size_t grants = 0, bad = 0, resources = 0, applied = 0;
    const cx_op **by_end = cx_xcalloc(n, sizeof(*by_end));
    for (size_t i = 0; i < n;) {
        size_t j = i, k = 0;
        for (; j < n && v[j]->counter == v[i]->counter; j++)
            if (v[j]->fence > 0)
                by_end[k++] = v[j];
        if (k == 0) {
            i = j;
            continue;
        }
        resources++;
        grants += k;
        qsort(by_end, k, sizeof(*by_end), cmp_op_counter_end);
        const cx_op *top = NULL; /* the largest fence among ops ended so far */
        size_t e = 0;
        for (size_t b = i; b < j; b++) {
            const cx_op *op = v[b];
            if (op->fence == 0)
                continue;
            applied += op->write == CX_WRITE_APPLIED;
            while (e < k && by_end[e]->end_ms < op->start_ms) {
                if (!top || by_end[e]->fence > top->fence)
                    top = by_end[e];
                e++;
            }
            if (top && op->fence <= top->fence) {
                bad++;
                cx_check_offend(
                    r,
                    "Counter:%" PRId64 ": op %" PRId64 " (start %" PRId64 " ms) got fence %" PRIu64
                    " after op %" PRId64 " (ended %" PRId64 " ms) got %" PRIu64,
                    op->counter, op->id, op->start_ms, op->fence, top->id, top->end_ms, top->fence);
            }
        }
        i = j;
    }
    free(by_end);
    if (grants == 0)
        snprintf(r->figure, sizeof(r->figure), "n/a (no fenced operations in the history)");
    else
        snprintf(r->figure, sizeof(r->figure),
                 "fence_regressions=%zu grants=%zu applied_writes=%zu resources=%zu", bad, grants,
                 applied, resources);
}

/* ---- guards ---- */

static void check_guards(cx_result *r, const cx_snap *s, const cx_check_opts *o)
{
    if (!o->guards_given || s->n_guards == 0) {
        snprintf(r->figure, sizeof(r->figure), "n/a (no --reserved)");
        return;
    }
    uint64_t total = 0;
    size_t read = 0;
    for (size_t i = 0; i < s->n_guards; i++) {
        const cx_guard *g = &s->guards[i];
        if (!g->fetched) {
            cx_check_inform(r, "%s: n/a (%s)", g->server, g->err);
            continue;
        }
        read++;
        total += g->total;
        cx_check_inform(r, "%s: %s", g->server,
                        g->detail[0] ? g->detail : "no reserved_guard_* samples");
    }
    /* A guard firing is not a violation (the database held), but it means the lock did not. */
    if (read == 0)
        snprintf(r->figure, sizeof(r->figure), "n/a (no reserved answered /metrics)");
    else
        snprintf(r->figure, sizeof(r->figure), "fired=%" PRIu64 " (%zu of %zu reserved read)",
                 total, read, s->n_guards);
}

/* ---- liveness ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static cx_recovery *kind_slot(cx_checks *c, const char *kind)
{
    for (size_t i = 0; i < c->n_kinds; i++)
        if (strcmp(c->kinds[i].kind, kind) == 0)
            return &c->kinds[i];
    if (c->n_kinds == CX_MAX_KINDS)
        return NULL;
    cx_recovery *k = &c->kinds[c->n_kinds++];
    snprintf(k->kind, sizeof(k->kind), "%s", kind);
    return k;
}

static int cmp_span(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Milliseconds of [a, b) covered by any fault window (their union). Recovery is measured
 * in fault-free time: in a dense schedule the next fault often starts before bookings
 * could come back, and that time says nothing about how fast the system recovers. */
static int64_t fault_covered_ms(const cx_history *h, int64_t a, int64_t b)
{
    int64_t(*iv)[2] = cx_xcalloc(h->n_faults + 1, sizeof(*iv));
    size_t n = 0;
    for (size_t i = 0; i < h->n_faults; i++) {
        int64_t s0 = CM_MAX(a, h->faults[i].start_ms), e0 = CM_MIN(b, h->faults[i].end_ms);
        if (e0 > s0) {
            iv[n][0] = s0;
            iv[n][1] = e0;
            n++;
        }
    }
    qsort(iv, n, sizeof(*iv), cmp_span);
    int64_t total = 0, cur = a;
    for (size_t i = 0; i < n; i++) {
        int64_t s0 = CM_MAX(iv[i][0], cur);
        if (iv[i][1] > s0) {
            total += iv[i][1] - s0;
            cur = iv[i][1];
        }
    }
    free(iv);
    return total;
}

static void check_liveness(cx_checks *c, const cx_history *h, const cx_check_opts *o)
{
    cx_result *r = &c->r[CX_CHECK_LIVENESS];
    int64_t *ends = cx_xcalloc(h->n_ops, sizeof(*ends)), worst = 0;
    size_t n = 0, unrecovered = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (h->ops[i].kind == CX_OP_BOOK && h->ops[i].outcome == CX_OK)
            ends[n++] = h->ops[i].end_ms;
    qsort(ends, n, sizeof(*ends), cmp_i64);
    for (size_t i = 0; i < h->n_faults; i++) {
        const cx_fault *f = &h->faults[i];
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (ends[mid] <= f->end_ms)
                lo = mid + 1;
            else
                hi = mid;
        }
        int64_t rec = lo < n ? ends[lo] - f->end_ms - fault_covered_ms(h, f->end_ms, ends[lo]) : -1;
        cx_recovery *k = kind_slot(c, f->kind);
        if (k) {
            k->count++;
            if (rec < 0)
                k->unrecovered++;
            else
                k->max_ms = CM_MAX(k->max_ms, rec);
        }
        if (rec < 0) {
            unrecovered++;
            cx_check_offend(r, "%s on %s (ended %" PRId64 " ms): no ok booking after it", f->kind,
                            f->target, f->end_ms);
        } else {
            worst = CM_MAX(worst, rec);
            if (rec > o->recovery_bound_ms)
                cx_check_offend(r,
                                "%s on %s (ended %" PRId64 " ms): first ok booking after %" PRId64
                                " ms without faults",
                                f->kind, f->target, f->end_ms, rec);
        }
    }
    free(ends);
    for (size_t i = 0; i < c->n_kinds; i++) {
        const cx_recovery *k = &c->kinds[i];
        cx_check_inform(r, "%s: max %" PRId64 " ms over %zu%s", k->kind, k->max_ms, k->count,
                        k->unrecovered ? " (some never recovered)" : "");
    }
    snprintf(r->figure, sizeof(r->figure),
             "faults=%zu worst_recovery_ms=%" PRId64 " unrecovered=%zu bound_ms=%" PRId64,
             h->n_faults, worst, unrecovered, o->recovery_bound_ms);
}

void cx_checks_run(cx_checks *c, const cx_history *h, const cx_snap *s, const cx_check_opts *o)
{
    static const char *const names[CX_CHECK_COUNT] = {
        "no_double_sale",   "capacity", "no_lost_ack", "payments",        "counter_lost_updates",
        "fences_monotonic", "guards",   "liveness",    "holds_exclusive", "holds_expire"};
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CX_CHECK_COUNT; i++) {
        c->r[i].name = names[i];
        c->r[i].pass = true;
    }
    cancel_ix ix;
    size_t n_acked, n_counter;
    cancel_ix_build(&ix, h);
    const cx_op **acked = acked_books(h, &n_acked);
    const cx_op **cops = counter_ops(h, &n_counter);

    check_double_sale(&c->r[CX_CHECK_DOUBLE_SALE], s, &ix, acked, n_acked);
    check_capacity(&c->r[CX_CHECK_CAPACITY], s);
    check_lost_ack(&c->r[CX_CHECK_LOST_ACK], h, s, &ix, acked, n_acked);
    check_payments(&c->r[CX_CHECK_PAYMENTS], s);
    check_counters(&c->r[CX_CHECK_COUNTER], s, cops, n_counter);
    check_fences(&c->r[CX_CHECK_FENCES], cops, n_counter);
    check_guards(&c->r[CX_CHECK_GUARDS], s, o);
    check_liveness(c, h, o);
    cx_check_holds_exclusive(&c->r[CX_CHECK_HOLDS_EXCLUSIVE], h, s);
    cx_check_holds_expire(&c->r[CX_CHECK_HOLDS_EXPIRE], h, s);
    for (size_t i = 0; i < CX_CHECK_COUNT; i++)
        if (c->r[i].omitted)
            cm_strbuf_printf(&c->r[i].detail, "; (+%zu more)", c->r[i].omitted);

    free(cops);
    free(acked);
    free(ix.ops);
}

bool cx_checks_all_pass(const cx_checks *c)
{
    for (size_t i = 0; i < CX_CHECK_COUNT; i++)
        if (!c->r[i].pass)
            return false;
    return true;
}

void cx_checks_free(cx_checks *c)
{
    for (size_t i = 0; i < CX_CHECK_COUNT; i++)
        cm_strbuf_free(&c->r[i].detail);
}
