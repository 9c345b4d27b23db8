/*
 * cx_checks_holds: the checks of seat holds (SPEC §9, issue 14 §2), pure functions of the
 * history and the final state like the others (cx_checks_int.h):
 *   holds_exclusive  no seat both held by one user and sold to another: in the final
 *                    database (an active hold and a CONFIRMED reservation of another user
 *                    on one seat) and in the history (a 201 booking by another user of a
 *                    seat of a hold acknowledged before the booking was sent, answered at
 *                    least EXPIRY_MARGIN_MS before the hold's expiresAt, with no release or
 *                    booking of that hold started before the booking ended);
 *   holds_expire     in the final state (taken more than holds.ttl_s + 1.5 s after the load
 *                    stopped) no hold is ACTIVE more than STALE_MS past its expiresAt, no
 *                    hold_seats row is active under a hold that is not ACTIVE, every seat of
 *                    an EXPIRED hold is free of holds (bookable again), every hold the
 *                    clients left alone ended EXPIRED, and no booking by holdId was
 *                    acknowledged that started well after its hold's expiresAt.
 * Ops without an answer prove nothing (an unknown release may have freed the seats, so it
 * counts as an end of the hold); the margins absorb the sweeper's second and clock reads.
 * Every array here is freed before the check returns.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_checks_int.h"
#include "cx_mem.h"

#define EXPIRY_MARGIN_MS 1000 /* a booking answered this long before expiresAt: still held */
#define STALE_MS         1500 /* SPEC §9: expired within 1 s of expiresAt, + a read's margin */

static const char *const STATUS_NAMES[] = {"ACTIVE", "BOOKED", "RELEASED", "EXPIRED", "?"};

static bool is_ack_hold(const cx_op *op)
{
    return op->kind == CX_OP_HOLD && op->status == 201 && op->hold > 0 && op->n_seats > 0;
}

/* An op that ends a hold: a release or a booking by holdId, whatever its answer (a 4xx
 * changed nothing, but a hold op answered 4xx at once is harmless to count: it only makes
 * the history check look at less). */
static bool ends_hold(const cx_op *op)
{
    return op->hold > 0 && (op->kind == CX_OP_RELEASE || op->kind == CX_OP_BOOK);
}

typedef struct hold_end {
    int64_t hold, start_ms;
} hold_end;

static int cmp_end(const void *a, const void *b)
{
    const hold_end *x = a, *y = b;
    if (x->hold != y->hold)
        return (x->hold > y->hold) - (x->hold < y->hold);
    return (x->start_ms > y->start_ms) - (x->start_ms < y->start_ms);
}

/* The earliest start of an op that ended each hold, sorted by hold. */
static hold_end *hold_ends(const cx_history *h, size_t *n)
{
    hold_end *v = cx_xcalloc(h->n_ops + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (ends_hold(&h->ops[i]))
            v[k++] = (hold_end){h->ops[i].hold, h->ops[i].start_ms};
    qsort(v, k, sizeof(*v), cmp_end);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || v[u - 1].hold != v[i].hold)
            v[u++] = v[i];
    *n = u;
    return v;
}

/* When the first op ending `hold` started; INT64_MAX when none did. */
static int64_t end_from(const hold_end *v, size_t n, int64_t hold)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid].hold < hold)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].hold == hold ? v[lo].start_ms : INT64_MAX;
}

typedef struct seat_op {
    int64_t perf, seat;
    const cx_op *op;
} seat_op;

static int cmp_seat_op(const void *a, const void *b)
{
    const seat_op *x = a, *y = b;
    if (x->perf != y->perf)
        return (x->perf > y->perf) - (x->perf < y->perf);
    return (x->seat > y->seat) - (x->seat < y->seat);
}

/* The first index of (perf, seat) in v (sorted by cmp_seat_op), or n. */
static size_t seat_lower(const seat_op *v, size_t n, int64_t perf, int64_t seat)
{
    seat_op key = {perf, seat, NULL};
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_seat_op(&v[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Every answered booking, one entry per seat, sorted by (perf, seat). */
static seat_op *answered_books(const cx_history *h, size_t *n)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < h->n_ops; i++)
        if (h->ops[i].kind == CX_OP_BOOK && h->ops[i].status != 0)
            total += h->ops[i].n_seats;
    seat_op *v = cx_xcalloc(total + 1, sizeof(*v));
    for (size_t i = 0; i < h->n_ops; i++) {
        const cx_op *op = &h->ops[i];
        if (op->kind == CX_OP_BOOK && op->status != 0)
            for (size_t j = 0; j < op->n_seats; j++)
                v[k++] = (seat_op){op->perf, op->seats[j], op};
    }
    qsort(v, k, sizeof(*v), cmp_seat_op);
    *n = k;
    return v;
}

void cx_check_holds_exclusive(cx_result *r, const cx_history *h, const cx_snap *s)
{
    size_t n_ends, n_books, acked = 0, tried = 0, refused = 0, hist_bad = 0;
    hold_end *ends = hold_ends(h, &n_ends);
    seat_op *books = answered_books(h, &n_books);

    for (size_t i = 0; i < h->n_ops; i++) {
        const cx_op *ho = &h->ops[i];
        if (!is_ack_hold(ho))
            continue;
        acked++;
        if (ho->expires_ms <= 0)
            continue; /* no expiry to measure the window against: proves nothing */
        int64_t ended = end_from(ends, n_ends, ho->hold);
        for (size_t j = 0; j < ho->n_seats; j++)
            for (size_t b = seat_lower(books, n_books, ho->perf, ho->seats[j]);
                 b < n_books && books[b].perf == ho->perf && books[b].seat == ho->seats[j]; b++) {
                const cx_op *bo = books[b].op;
                /* held for the whole booking: sent after the hold's 201, answered well
                 * before its expiry, and nothing ended the hold before it was answered */
                if (bo->user == ho->user || bo->start_ms <= ho->end_ms ||
                    bo->end_ms + EXPIRY_MARGIN_MS > ho->expires_ms || ended < bo->end_ms)
                    continue;
                tried++;
                refused += bo->status == 409;
                if (!cx_is_ack_book(bo))
                    continue;
                hist_bad++;
                cx_check_offend(r,
                                "history: seat %" PRId64 " of performance %" PRId64
                                " held by user %" PRId64 " (hold %" PRId64 ", op %" PRId64
                                ", expires at %" PRId64 " ms) sold to user %" PRId64 " (op %" PRId64
                                ", reservation %" PRId64 ", %" PRId64 "..%" PRId64 " ms)",
                                ho->seats[j], ho->perf, ho->user, ho->hold, ho->id, ho->expires_ms,
                                bo->user, bo->id, bo->reservation, bo->start_ms, bo->end_ms);
            }
    }
    for (size_t i = 0; i < s->n_held_sold; i++) {
        const cx_held_sold *x = &s->held_sold[i];
        cx_check_offend(r,
                        "database: seat %" PRId64 " of performance %" PRId64
                        " in active hold %" PRId64 " of user %" PRId64
                        " and in CONFIRMED reservation %" PRId64 " of user %" PRId64,
                        x->seat, x->perf, x->hold, x->holder, x->reservation, x->buyer);
    }
    if (!acked && !s->have_holds)
        snprintf(r->figure, sizeof(r->figure), "n/a (no holds in the history or the database)");
    else
        snprintf(r->figure, sizeof(r->figure),
                 "held_and_sold=%zu (history %zu, database %zu); acknowledged_holds=%zu; "
                 "bookings_by_others_of_held_seats=%zu (refused 409: %zu)",
                 hist_bad + s->n_held_sold, hist_bad, s->n_held_sold, acked, tried, refused);
    free(books);
    free(ends);
}

/* A hold that holds its seats legitimately at the snapshot. */
static bool still_live(const cx_hold *x)
{
    return x && x->status == CX_HOLD_ACTIVE && x->past_ms <= STALE_MS;
}

static int cmp_hs_seat(const void *a, const void *b)
{
    const cx_hold_seat *x = *(const cx_hold_seat *const *)a, *y = *(const cx_hold_seat *const *)b;
    if (x->perf != y->perf)
        return (x->perf > y->perf) - (x->perf < y->perf);
    return (x->seat > y->seat) - (x->seat < y->seat);
}

/* The database half of holds_expire; counts into the figures. */
static void expire_db(cx_result *r, const cx_snap *s, size_t *stale, size_t *orphan,
                      size_t *expired, size_t *exp_seats, size_t *stuck)
{
    for (size_t i = 0; i < s->n_holds; i++) {
        const cx_hold *x = &s->holds[i];
        *expired += x->status == CX_HOLD_EXPIRED;
        if (x->status == CX_HOLD_ACTIVE && x->past_ms > STALE_MS) {
            (*stale)++;
            cx_check_offend(r,
                            "hold %" PRId64 " (user %" PRId64 ", performance %" PRId64
                            ") still ACTIVE %" PRId64 " ms past its expiresAt",
                            x->id, x->user, x->perf, x->past_ms);
        }
    }
    /* the active rows by seat, to see who holds each seat of an expired hold */
    const cx_hold_seat **act = cx_xcalloc(s->n_hold_seats + 1, sizeof(*act));
    size_t n_act = 0;
    for (size_t i = 0; i < s->n_hold_seats; i++) {
        const cx_hold_seat *hs = &s->hold_seats[i];
        if (!hs->active)
            continue;
        act[n_act++] = hs;
        const cx_hold *x = cx_snap_hold(s, hs->hold);
        if (!x || x->status != CX_HOLD_ACTIVE) {
            (*orphan)++;
            cx_check_offend(r,
                            "hold_seats row of hold %" PRId64 " (%s) still active: seat %" PRId64
                            " of performance %" PRId64 " held",
                            hs->hold, x ? STATUS_NAMES[x->status] : "missing", hs->seat, hs->perf);
        }
    }
    qsort(act, n_act, sizeof(*act), cmp_hs_seat);
    for (size_t i = 0; i < s->n_hold_seats; i++) {
        const cx_hold_seat *hs = &s->hold_seats[i];
        const cx_hold *x = cx_snap_hold(s, hs->hold);
        if (!x || x->status != CX_HOLD_EXPIRED)
            continue;
        (*exp_seats)++;
        const cx_hold_seat key = {.perf = hs->perf, .seat = hs->seat}, *kp = &key;
        size_t lo = 0, hi = n_act;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cmp_hs_seat(&act[mid], &kp) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n_act && cmp_hs_seat(&act[lo], &kp) == 0; lo++) {
            const cx_hold *by = cx_snap_hold(s, act[lo]->hold);
            if (still_live(by))
                continue; /* taken again by a newer hold: it came back, then went */
            (*stuck)++;
            cx_check_offend(r,
                            "seat %" PRId64 " of performance %" PRId64 " of expired hold %" PRId64
                            " not bookable: still held through hold %" PRId64 " (%s)",
                            hs->seat, hs->perf, hs->hold, act[lo]->hold,
                            by ? STATUS_NAMES[by->status] : "missing");
        }
    }
    free(act);
}

static int cmp_op_hold(const void *a, const void *b)
{
    const cx_op *x = *(const cx_op *const *)a, *y = *(const cx_op *const *)b;
    return (x->hold > y->hold) - (x->hold < y->hold);
}

void cx_check_holds_expire(cx_result *r, const cx_history *h, const cx_snap *s)
{
    size_t stale = 0, orphan = 0, expired = 0, exp_seats = 0, stuck = 0, left = 0, left_bad = 0,
           late = 0, acked = 0, n_ends;
    hold_end *ends = hold_ends(h, &n_ends);

    if (s->have_holds)
        expire_db(r, s, &stale, &orphan, &expired, &exp_seats, &stuck);
    /* acknowledged holds by id, for the bookings by holdId */
    const cx_op **ah = cx_xcalloc(h->n_ops + 1, sizeof(*ah));
    for (size_t i = 0; i < h->n_ops; i++) {
        const cx_op *ho = &h->ops[i];
        if (!is_ack_hold(ho))
            continue;
        ah[acked++] = ho;
        if (end_from(ends, n_ends, ho->hold) != INT64_MAX)
            continue;
        left++; /* nobody released or booked it: it must have expired */
        const cx_hold *x = s->have_holds ? cx_snap_hold(s, ho->hold) : NULL;
        if (x && x->status != CX_HOLD_EXPIRED && !still_live(x)) {
            left_bad++;
            cx_check_offend(r,
                            "hold %" PRId64 " (op %" PRId64
                            "): left to expire, nobody released or booked it, yet it ended %s",
                            ho->hold, ho->id, STATUS_NAMES[x->status]);
        }
    }
    qsort(ah, acked, sizeof(*ah), cmp_op_hold);
    for (size_t i = 0; i < h->n_ops; i++) {
        const cx_op *bo = &h->ops[i];
        if (!(cx_is_ack_book(bo) && bo->hold > 0))
            continue;
        const cx_op *const *hp = bsearch(&bo, ah, acked, sizeof(*ah), cmp_op_hold);
        if (hp && (*hp)->expires_ms > 0 && bo->start_ms > (*hp)->expires_ms + EXPIRY_MARGIN_MS) {
            late++;
            cx_check_offend(r,
                            "hold %" PRId64 " booked (op %" PRId64 ", reservation %" PRId64
                            ") by a request sent %" PRId64 " ms after its expiresAt",
                            bo->hold, bo->id, bo->reservation, bo->start_ms - (*hp)->expires_ms);
        }
    }
    if (!acked && !s->have_holds)
        snprintf(r->figure, sizeof(r->figure), "n/a (no holds in the history or the database)");
    else
        snprintf(r->figure, sizeof(r->figure),
                 "holds=%zu expired=%zu (seats %zu, still held %zu); active_past_expiry=%zu "
                 "active_rows_of_ended_holds=%zu; left_to_expire=%zu (not EXPIRED %zu); "
                 "booked_after_expiry=%zu",
                 s->n_holds, expired, exp_seats, stuck, stale, orphan, left, left_bad, late);
    free(ah);
    free(ends);
}
