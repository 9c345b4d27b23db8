/*
 * cx_checks_locks: the lock-history checks of chaos_check (issue 15 §3; the rules are in
 * cx_checks.h): mutual exclusion as the clients experienced it (locks_exclusive), fences
 * strictly increasing in grant order (locks_fence_order), LOST delivered before the next
 * grant (locks_lost_first). Owns turning the lock events of every history into holders
 * (one per grant, with the interval it held), the fault windows in which a finding is
 * expected, and the figures and lists of the three results.
 *
 * Time bases: lock events are CLOCK_MONOTONIC microseconds at the client; faults.jsonl's
 * start_ms / end_ms count from chaos/run's epoch (chaos_load --now-ms, CLOCK_MONOTONIC ms),
 * given as --epoch-ms. Monotonic time is machine-wide, also across network namespaces.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_checks.h"
#include "cx_checks_int.h"
#include "cx_mem.h"

#define NONE (-1)

/* One grant and what became of it. */
typedef struct lk_holder {
    uint32_t src, sess, res;
    uint64_t fence;
    int64_t grant_us;
    int64_t deadline_us; /* the last local deadline recorded (grant, renew; the lost line's) */
    int64_t ended_us;    /* NONE, or the deadline that ended it, from its lost line (it was
                            lost at or after it: told late, its loop stopped) */
    int64_t released_us; /* NONE: never released */
    int64_t lost_us;     /* NONE: never told */
    int64_t killed_us;   /* NONE: its process was not killed while it held */
    int64_t end_us;      /* the earliest of the above: the end of its interval */
    uint32_t reason;
} lk_holder;

/* A by-design fault's window on the clients' clock. A pause of a holder's process has none:
 * it does not break Redlock's assumptions, the client's deadline (bounded by its session's
 * timeout, docs/protocol.md) ends before lockd can hand the lock on. */
typedef struct lk_window {
    const cx_fault *f;
    int64_t from_us, to_us;
} lk_window;

typedef struct lk_ctx {
    const cx_history *h;
    const cx_lock_check_opts *o;
    cx_lock_checks *lc;
    lk_window *win;
    size_t n_win;
} lk_ctx;

static const char *S(const lk_ctx *x, uint32_t i)
{
    return cx_history_str(x->h, i);
}

/* ---- holders ---- */

static const cx_history *sort_h; /* qsort has no context argument */

static int cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

/* By holder (src, sess, res, fence), then in the order the history's lines came. */
static int cmp_event(const void *a, const void *b)
{
    const cx_lock_event *x = &sort_h->lock_events[*(const size_t *)a];
    const cx_lock_event *y = &sort_h->lock_events[*(const size_t *)b];
    const uint64_t kx[] = {x->src, x->sess, x->res, x->fence, x->file, x->line};
    const uint64_t ky[] = {y->src, y->sess, y->res, y->fence, y->file, y->line};
    for (size_t i = 0; i < CM_ARRAY_LEN(kx); i++)
        if (kx[i] != ky[i])
            return cmp_u64(kx[i], ky[i]);
    return 0;
}

static int cmp_holder(const void *a, const void *b)
{
    const lk_holder *x = a, *y = b;
    if (x->res != y->res)
        return x->res < y->res ? -1 : 1;
    if (x->grant_us != y->grant_us)
        return x->grant_us < y->grant_us ? -1 : 1;
    return (x->fence > y->fence) - (x->fence < y->fence);
}

/* Whether the comma-separated list has the word. */
static bool list_has(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; n > 0 && *p != '\0';) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, word, n) == 0)
            return true;
        p += k + (p[k] == ',');
    }
    return false;
}

static int64_t fault_us(const lk_ctx *x, int64_t ms)
{
    return (x->o->epoch_ms + ms) * 1000;
}

/* The kill of the holder's process while it held (a kill_* fault on its src after its
 * grant): the earliest, or NONE. */
static int64_t killed_at(const lk_ctx *x, const lk_holder *k)
{
    int64_t best = NONE;
    if (!x->o->have_epoch)
        return NONE;
    for (size_t i = 0; i < x->h->n_faults; i++) {
        const cx_fault *f = &x->h->faults[i];
        int64_t at = fault_us(x, f->start_ms);
        if (strncmp(f->kind, "kill_", 5) != 0 || !list_has(f->target, S(x, k->src)) ||
            at < k->grant_us)
            continue;
        if (best == NONE || at < best)
            best = at;
    }
    if (best == NONE)
        return NONE;
    /* the record is written after the kill: the death came a little earlier */
    best -= (int64_t)CX_LOCK_KILL_SLACK_MS * 1000;
    return best > k->grant_us ? best : k->grant_us;
}

static void holder_finish(const lk_ctx *x, lk_holder *k)
{
    int64_t end = k->deadline_us > 0 ? k->deadline_us : k->grant_us;
    if (k->released_us != NONE && k->released_us < end)
        end = k->released_us;
    if (k->lost_us != NONE && k->lost_us < end)
        end = k->lost_us;
    if (k->released_us == NONE && k->lost_us == NONE) {
        k->killed_us = killed_at(x, k);
        if (k->killed_us != NONE && k->killed_us < end)
            end = k->killed_us;
    }
    k->end_us = end > k->grant_us ? end : k->grant_us;
}

/* Every grant of every history as a holder, sorted by resource and grant time. */
static lk_holder *build_holders(lk_ctx *x, size_t *n_out)
{
    const cx_history *h = x->h;
    size_t *ix = cx_xcalloc(h->n_lock_events, sizeof(size_t));
    lk_holder *hs = cx_xcalloc(h->n_lock_events, sizeof(lk_holder));
    size_t n = 0;
    for (size_t i = 0; i < h->n_lock_events; i++)
        ix[i] = i;
    sort_h = h;
    qsort(ix, h->n_lock_events, sizeof(size_t), cmp_event);
    lk_holder *cur = NULL;
    for (size_t i = 0; i < h->n_lock_events; i++) {
        const cx_lock_event *e = &h->lock_events[ix[i]];
        if (cur != NULL && (cur->src != e->src || cur->sess != e->sess || cur->res != e->res ||
                            cur->fence != e->fence))
            cur = NULL;
        if (e->ev == CX_LK_GRANT) {
            cur = &hs[n++];
            *cur = (lk_holder){.src = e->src,
                               .sess = e->sess,
                               .res = e->res,
                               .fence = e->fence,
                               .grant_us = e->t_us,
                               .deadline_us = e->deadline_us,
                               .ended_us = NONE,
                               .released_us = NONE,
                               .lost_us = NONE,
                               .killed_us = NONE};
            continue;
        }
        if (cur == NULL || cur->released_us != NONE || cur->lost_us != NONE)
            continue; /* no grant before it (a cut history), or the holder already ended */
        if (e->ev == CX_LK_RENEW && e->deadline_us > 0)
            cur->deadline_us = e->deadline_us;
        else if (e->ev == CX_LK_RELEASE)
            cur->released_us = e->t_us;
        else if (e->ev == CX_LK_LOST) {
            cur->lost_us = e->t_us;
            cur->reason = e->reason;
            if (e->deadline_us > 0) /* the real deadline: the recorded one may trail it */
                cur->deadline_us = cur->ended_us = e->deadline_us;
        }
    }
    free(ix);
    for (size_t i = 0; i < n; i++) {
        holder_finish(x, &hs[i]);
        x->lc->killed += hs[i].killed_us != NONE && hs[i].end_us == hs[i].killed_us;
    }
    qsort(hs, n, sizeof(lk_holder), cmp_holder);
    *n_out = n;
    return hs;
}

/* ---- windows ---- */

static void build_windows(lk_ctx *x)
{
    x->win = cx_xcalloc(x->h->n_faults + 1, sizeof(lk_window));
    if (!x->o->have_epoch)
        return; /* faults cannot be placed on the clients' clock: no window */
    for (size_t i = 0; i < x->h->n_faults; i++) {
        const cx_fault *f = &x->h->faults[i];
        if (!f->breaks_redlock)
            continue;
        x->win[x->n_win++] = (lk_window){
            .f = f,
            .from_us = fault_us(x, f->start_ms),
            .to_us = fault_us(x, f->end_ms) + (int64_t)CX_LOCK_WINDOW_TAIL_MS * 1000,
        };
    }
}

/* The by-design window that explains a finding over [from, to], or NULL. */
static const lk_window *explain(const lk_ctx *x, int64_t from, int64_t to)
{
    for (size_t i = 0; i < x->n_win; i++)
        if (x->win[i].from_us <= to && x->win[i].to_us >= from)
            return &x->win[i];
    return NULL;
}

/* ---- reporting ---- */

/* A time for a detail: ms on the run's clock (faults.jsonl's) when the epoch is known. */
static void fmt_t(const lk_ctx *x, int64_t us, char *buf, size_t len)
{
    if (x->o->have_epoch)
        snprintf(buf, len, "%.1f ms", (double)us / 1000.0 - (double)x->o->epoch_ms);
    else
        snprintf(buf, len, "%" PRId64 " us", us);
}

static void who(const lk_ctx *x, const lk_holder *k, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s fence %" PRIu64, S(x, k->src), S(x, k->sess), k->fence);
}

/* The two holders of a finding and its time, for a detail. */
typedef struct lk_names {
    char a[128], b[128], t[32];
} lk_names;

static void names_of(const lk_ctx *x, const lk_holder *a, const lk_holder *b, int64_t at,
                     lk_names *n)
{
    who(x, a, n->a, sizeof(n->a));
    who(x, b, n->b, sizeof(n->b));
    fmt_t(x, at, n->t, sizeof(n->t));
}

static void expect(lk_ctx *x, const char *check, const lk_window *w, const lk_holder *a,
                   const lk_holder *b, int64_t at, int64_t len_us)
{
    cx_lock_checks *lc = x->lc;
    if (lc->n_expected >= CX_LOCK_EXPECTED_MAX) {
        lc->expected_omitted++;
        return;
    }
    cx_lock_expected *e = &lc->expected[lc->n_expected++];
    e->check = check;
    snprintf(e->why, sizeof(e->why), "by design: %.31s on %.48s", w->f->kind, w->f->target);
    snprintf(e->res, sizeof(e->res), "%s", S(x, a->res));
    who(x, a, e->first, sizeof(e->first));
    who(x, b, e->second, sizeof(e->second));
    e->at_us = at;
    e->len_us = len_us;
}

/* ---- the three checks, per resource: holders [lo, hi) in grant order ---- */

static void check_exclusive(lk_ctx *x, const lk_holder *hs, size_t lo, size_t hi)
{
    cx_result *r = &x->lc->r[CX_LOCK_CHECK_EXCLUSIVE];
    size_t *act = cx_xcalloc(hi - lo + 1, sizeof(size_t)), n_act = 0;
    for (size_t j = lo; j < hi; j++) {
        const lk_holder *b = &hs[j];
        size_t keep = 0;
        for (size_t k = 0; k < n_act; k++)
            if (hs[act[k]].end_us > b->grant_us)
                act[keep++] = act[k];
        n_act = keep;
        for (size_t k = 0; k < n_act; k++) {
            const lk_holder *a = &hs[act[k]];
            int64_t to = a->end_us < b->end_us ? a->end_us : b->end_us;
            const lk_window *w = explain(x, b->grant_us, to);
            if (w != NULL) {
                x->lc->overlaps_expected++;
                expect(x, "locks_exclusive", w, a, b, b->grant_us, to - b->grant_us);
                continue;
            }
            lk_names nm;
            names_of(x, a, b, b->grant_us, &nm);
            x->lc->overlaps++;
            cx_check_offend(r, "%s: %s and %s held it at once for %.1f ms from %s", S(x, a->res),
                            nm.a, nm.b, (double)(to - b->grant_us) / 1000.0, nm.t);
        }
        act[n_act++] = j;
    }
    free(act);
}

static void check_fence_order(lk_ctx *x, const lk_holder *hs, size_t lo, size_t hi)
{
    cx_result *r = &x->lc->r[CX_LOCK_CHECK_FENCE_ORDER];
    size_t top = lo; /* the holder with the greatest fence so far */
    for (size_t j = lo + 1; j < hi; j++) {
        const lk_holder *a = &hs[top], *b = &hs[j];
        if (b->fence > a->fence) {
            top = j;
            continue;
        }
        const lk_window *w = explain(x, b->grant_us, b->grant_us);
        if (w != NULL) {
            x->lc->regressions_expected++;
            expect(x, "locks_fence_order", w, a, b, b->grant_us, 0);
            continue;
        }
        lk_names nm;
        names_of(x, a, b, b->grant_us, &nm);
        x->lc->regressions++;
        cx_check_offend(r, "%s: %s granted at %s after %s", S(x, a->res), nm.b, nm.t, nm.a);
    }
}

static void check_lost_first(lk_ctx *x, const lk_holder *hs, size_t lo, size_t hi)
{
    cx_result *r = &x->lc->r[CX_LOCK_CHECK_LOST_FIRST];
    for (size_t i = lo; i + 1 < hi; i++) {
        const lk_holder *a = &hs[i], *b = &hs[i + 1];
        if (a->released_us != NONE && a->released_us <= b->grant_us)
            continue; /* gave it back first */
        if (a->end_us > b->grant_us)
            continue; /* the two overlap: locks_exclusive's finding */
        x->lc->lost_checked++;
        if ((a->lost_us != NONE && a->lost_us <= b->grant_us) ||
            (a->killed_us != NONE && a->end_us == a->killed_us))
            continue; /* told in time, or dead by then */
        if (a->ended_us != NONE && a->ended_us <= b->grant_us) {
            /* its own deadline ended it before the grant and its lost callback ran later
             * (its process was stopped, its loop late): it knew by its deadline, the
             * moment a holder checks before acting (lease.check, remaining) */
            x->lc->lost_by_deadline++;
            continue;
        }
        const lk_window *w = explain(x, b->grant_us, b->grant_us);
        if (w != NULL) {
            x->lc->late_lost_expected++;
            expect(x, "locks_lost_first", w, a, b, b->grant_us, 0);
            continue;
        }
        char tl[48] = "never";
        lk_names nm;
        names_of(x, a, b, b->grant_us, &nm);
        if (a->lost_us != NONE) {
            char tt[32];
            fmt_t(x, a->lost_us, tt, sizeof(tt));
            snprintf(tl, sizeof(tl), "at %s", tt);
        }
        x->lc->late_lost++;
        cx_check_offend(r, "%s: %s was told LOST %s, after %s was granted at %s", S(x, a->res),
                        nm.a, tl, nm.b, nm.t);
    }
}

/* Where findings were expected, whether the bookings stayed safe: the checks that judge
 * them by the database's seats and fences ("bookings safe (...)" or "bookings NOT safe: the
 * failing ones"). */
static void bookings_safe(const cx_checks *c, char *buf, size_t len)
{
    static const int ids[] = {CX_CHECK_DOUBLE_SALE, CX_CHECK_LOST_ACK, CX_CHECK_COUNTER,
                              CX_CHECK_FENCES};
    bool safe = true;
    for (size_t i = 0; i < CM_ARRAY_LEN(ids); i++)
        safe = safe && c->r[ids[i]].pass;
    size_t pos = (size_t)snprintf(buf, len, "; bookings %s", safe ? "safe (" : "NOT safe:");
    for (size_t i = 0; i < CM_ARRAY_LEN(ids) && pos < len; i++)
        if (!safe == !c->r[ids[i]].pass)
            pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos > 17 ? " " : "",
                                    c->r[ids[i]].name);
    if (safe && pos < len)
        snprintf(buf + pos, len - pos, " PASS)");
}

void cx_checks_locks_run(cx_lock_checks *lc, const cx_history *h, const cx_checks *c,
                         const cx_lock_check_opts *o)
{
    static const char *const names[CX_LOCK_CHECK_COUNT] = {"locks_exclusive", "locks_fence_order",
                                                           "locks_lost_first"};
    memset(lc, 0, sizeof(*lc));
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++) {
        lc->r[i].name = names[i];
        lc->r[i].pass = true;
        snprintf(lc->r[i].figure, sizeof(lc->r[i].figure), "n/a (no --locks)");
    }
    lc->given = o->given;
    if (!o->given)
        return;
    lk_ctx x = {.h = h, .o = o, .lc = lc};
    lc->expected = cx_xcalloc(CX_LOCK_EXPECTED_MAX, sizeof(cx_lock_expected));
    lc->events = h->n_lock_events;
    build_windows(&x);
    size_t n = 0;
    lk_holder *hs = build_holders(&x, &n);
    lc->grants = n;
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && hs[hi].res == hs[lo].res;)
            hi++;
        lc->resources++;
        check_exclusive(&x, hs, lo, hi);
        check_fence_order(&x, hs, lo, hi);
        check_lost_first(&x, hs, lo, hi);
    }
    char safe[128] = "";
    if (lc->overlaps_expected + lc->regressions_expected + lc->late_lost_expected > 0)
        bookings_safe(c, safe, sizeof(safe));
    snprintf(lc->r[CX_LOCK_CHECK_EXCLUSIVE].figure, sizeof(lc->r[0].figure),
             "%zu overlaps over %zu grants on %zu resources (%zu expected; %zu holders ended by a "
             "kill)%.100s",
             lc->overlaps, lc->grants, lc->resources, lc->overlaps_expected, lc->killed, safe);
    snprintf(lc->r[CX_LOCK_CHECK_FENCE_ORDER].figure, sizeof(lc->r[0].figure),
             "%zu regressions over %zu grants (%zu expected)%.100s", lc->regressions, lc->grants,
             lc->regressions_expected, lc->regressions_expected ? safe : "");
    snprintf(lc->r[CX_LOCK_CHECK_LOST_FIRST].figure, sizeof(lc->r[0].figure),
             "%zu late LOSTs of %zu holders that lost the lock before the next grant (%zu "
             "expected; %zu told after it but ended by their own deadline before it)",
             lc->late_lost, lc->lost_checked, lc->late_lost_expected, lc->lost_by_deadline);
    if (lc->n_expected > 0)
        cx_check_inform(&lc->r[CX_LOCK_CHECK_EXCLUSIVE], "expected: %zu listed in check.json",
                        lc->n_expected + lc->expected_omitted);
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++)
        if (lc->r[i].omitted)
            cm_strbuf_printf(&lc->r[i].detail, "; (+%zu more)", lc->r[i].omitted);
    free(hs);
    free(x.win);
}

bool cx_checks_locks_pass(const cx_lock_checks *lc)
{
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++)
        if (!lc->r[i].pass)
            return false;
    return true;
}

void cx_checks_locks_free(cx_lock_checks *lc)
{
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++)
        cm_strbuf_free(&lc->r[i].detail);
    free(lc->expected);
    lc->expected = NULL;
}
