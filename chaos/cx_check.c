/*
 * chaos_check: the checker of the chaos suite (issue 4 §3). Reads the history and the fault
 * log, the booking database, fakepay's payment list and reserved's guard counters, runs the
 * checks of cx_checks, and with --locks the lock histories' checks (cx_checks_locks), and
 * prints one line per check:
 *   CHECK <name> PASS|FAIL <figure>[ -- <detail>]
 * preceded by INFO lines (operations by kind and outcome). A batch tool: every call blocks.
 * Exit 0 when every check passes, 1 when one fails, 2 when the inputs cannot be read.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_checks.h"
#include "cx_history.h"
#include "cx_snap.h"

#define MAX_HISTORIES 8
#define MAX_LOCKS     32

typedef struct cx_args {
    const char *history[MAX_HISTORIES]; /* --history may be given several times */
    size_t n_history;
    const char *faults;
    const char *database;
    const char *payment_url;
    const char *reserved;
    const char *json;
    long recovery_bound_ms;
    char *locks[MAX_LOCKS]; /* --locks FILE[,FILE...] (owned copies) */
    size_t n_locks;
    long long epoch_ms;
    bool have_epoch;
} cx_args;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chaos_check --history FILE --database CONNINFO [options]\n"
            "  --history FILE            operation records (JSON lines, from chaos_load);\n"
            "                            repeat for several chaos_load processes (up to 8)\n"
            "  --faults FILE             fault records (JSON lines, from chaos/run)\n"
            "  --database CONNINFO       the booking database (libpq conninfo)\n"
            "  --payment-url URL         fakepay base URL: GET /payments for the payments check\n"
            "  --reserved H:P,...        reserved servers: their /metrics for the guards check\n"
            "  --recovery-bound-ms MS    liveness bound after each fault (default 10000)\n"
            "  --json FILE               also write the results as JSON\n"
            "  --locks FILE[,FILE...]    lock histories (cm_lockhist lines: reserved's\n"
            "                            lock.history_file, chaos_load --lock-history); repeat\n"
            "                            or comma-separate (up to 32): locks_exclusive,\n"
            "                            locks_fence_order, locks_lost_first\n"
            "  --epoch-ms E              CLOCK_MONOTONIC ms that faults.jsonl counts from\n"
            "                            (chaos/run's epoch); required with --locks and --faults\n"
            "  --help, --version\n"
            "Prints 'CHECK <name> PASS|FAIL <figure>' per check; exit 0 all pass, 1 a check\n"
            "failed, 2 the inputs could not be read.\n");
}

static int parse_args(int argc, char **argv, cx_args *a)
{
    static const struct option opts[] = {
        {"history", required_argument, NULL, 'H'},
        {"faults", required_argument, NULL, 'f'},
        {"database", required_argument, NULL, 'd'},
        {"payment-url", required_argument, NULL, 'p'},
        {"reserved", required_argument, NULL, 'r'},
        {"recovery-bound-ms", required_argument, NULL, 'b'},
        {"json", required_argument, NULL, 'j'},
        {"locks", required_argument, NULL, 'L'},
        {"epoch-ms", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    char *end;
    memset(a, 0, sizeof(*a));
    a->recovery_bound_ms = 10000;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            if (a->n_history == MAX_HISTORIES) {
                fprintf(stderr, "chaos_check: --history: at most %d files\n", MAX_HISTORIES);
                return 2;
            }
            a->history[a->n_history++] = optarg;
            break;
        case 'f':
            a->faults = optarg;
            break;
        case 'd':
            a->database = optarg;
            break;
        case 'p':
            a->payment_url = optarg;
            break;
        case 'r':
            a->reserved = optarg;
            break;
        case 'j':
            a->json = optarg;
            break;
        case 'L':
            for (char *p = optarg; *p != '\0';) {
                size_t k = strcspn(p, ",");
                if (k > 0) {
                    if (a->n_locks == MAX_LOCKS) {
                        fprintf(stderr, "chaos_check: --locks: at most %d files\n", MAX_LOCKS);
                        return 2;
                    }
                    a->locks[a->n_locks++] = strndup(p, k);
                }
                p += k + (p[k] == ',');
            }
            break;
        case 'E':
            a->epoch_ms = strtoll(optarg, &end, 10);
            if (*end || end == optarg || a->epoch_ms < 0) {
                fprintf(stderr, "chaos_check: --epoch-ms: not a number: %s\n", optarg);
                return 2;
            }
            a->have_epoch = true;
            break;
        case 'b':
            a->recovery_bound_ms = strtol(optarg, &end, 10);
            if (*end || a->recovery_bound_ms <= 0) {
                fprintf(stderr, "chaos_check: --recovery-bound-ms: not a positive number: %s\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("chaos_check %s\n", BOOKING_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !a->n_history || !a->database) {
        fprintf(stderr, "chaos_check: --history and --database are required\n");
        usage(stderr);
        return 2;
    }
    if (a->n_locks && a->faults && !a->have_epoch) {
        /* the fault windows could not be placed on the lock events' clock */
        fprintf(stderr, "chaos_check: --locks with --faults needs --epoch-ms\n");
        return 2;
    }
    return -1;
}

/* Operations by kind and outcome, for the report; row CX_OP_OTHER + 1: the bookings by
 * holdId (also counted as book). */
#define BY_HOLD (CX_OP_OTHER + 1)
static void count_ops(const cx_history *h, size_t counts[BY_HOLD + 1][3])
{
    memset(counts, 0, sizeof(size_t) * (BY_HOLD + 1) * 3);
    for (size_t i = 0; i < h->n_ops; i++) {
        counts[h->ops[i].kind][h->ops[i].outcome]++;
        if (h->ops[i].kind == CX_OP_BOOK && h->ops[i].hold > 0)
            counts[BY_HOLD][h->ops[i].outcome]++;
    }
}

static const char *count_name(int k)
{
    return k == BY_HOLD ? "book_by_hold" : cx_kind_name((cx_kind)k);
}

static void print_check(const cx_result *r)
{
    printf("CHECK %s %s %s%s%s\n", r->name, r->pass ? "PASS" : "FAIL", r->figure,
           r->detail.len ? " -- " : "", cm_strbuf_str(&r->detail));
}

static void print_report(const cx_history *h, const cx_checks *c, const cx_lock_checks *lc)
{
    size_t counts[BY_HOLD + 1][3];
    count_ops(h, counts);
    printf("INFO history ops=%zu faults=%zu unreadable_lines=%zu\n", h->n_ops, h->n_faults,
           h->bad_lines);
    for (int k = 0; k <= BY_HOLD; k++) {
        size_t sum = counts[k][0] + counts[k][1] + counts[k][2];
        if (sum)
            printf("INFO ops %s ok=%zu fail=%zu unknown=%zu\n", count_name(k), counts[k][CX_OK],
                   counts[k][CX_FAIL], counts[k][CX_UNKNOWN]);
    }
    for (size_t i = 0; i < c->n_kinds; i++)
        printf("INFO recovery %s faults=%zu max_ms=%lld unrecovered=%zu\n", c->kinds[i].kind,
               c->kinds[i].count, (long long)c->kinds[i].max_ms, c->kinds[i].unrecovered);
    if (lc->given)
        printf("INFO locks events=%zu grants=%zu resources=%zu unreadable_lines=%zu\n",
               h->n_lock_events, lc->grants, lc->resources, h->lock_bad_lines);
    for (size_t i = 0; i < lc->n_expected; i++) {
        const cx_lock_expected *e = &lc->expected[i];
        printf("INFO expected %s %s: %s and %s, %.1f ms (%s)\n", e->check, e->res, e->first,
               e->second, (double)e->len_us / 1000.0, e->why);
    }
    for (size_t i = 0; i < CX_CHECK_COUNT; i++)
        print_check(&c->r[i]);
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++)
        print_check(&lc->r[i]);
    fflush(stdout);
}

static json_t *result_json(const cx_result *r)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "name", r->name, "result", r->pass ? "PASS" : "FAIL",
                     "figure", r->figure, "detail", cm_strbuf_str(&r->detail));
}

/* The lock checks' counts and the findings that were expected, one by one. */
static json_t *locks_json(const cx_lock_checks *lc)
{
    json_t *exp = json_array();
    for (size_t i = 0; i < lc->n_expected; i++) {
        const cx_lock_expected *e = &lc->expected[i];
        json_array_append_new(exp, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:f}", "check", e->check,
                                             "why", e->why, "res", e->res, "first", e->first,
                                             "second", e->second, "at_us", (json_int_t)e->at_us,
                                             "ms", (double)e->len_us / 1000.0));
    }
    return json_pack(
        "{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:I}", "given", lc->given,
        "events", (json_int_t)lc->events, "grants_checked", (json_int_t)lc->grants, "resources",
        (json_int_t)lc->resources, "killed_holders", (json_int_t)lc->killed, "overlaps",
        (json_int_t)lc->overlaps, "expected_overlaps", (json_int_t)lc->overlaps_expected,
        "fence_regressions", (json_int_t)lc->regressions, "expected_fence_regressions",
        (json_int_t)lc->regressions_expected, "late_lost", (json_int_t)lc->late_lost,
        "expected_late_lost", (json_int_t)lc->late_lost_expected, "lost_checked",
        (json_int_t)lc->lost_checked, "lost_by_deadline", (json_int_t)lc->lost_by_deadline,
        "expected", exp, "expected_not_listed", (json_int_t)lc->expected_omitted);
}

static int write_json(const char *path, const cx_history *h, const cx_checks *c,
                      const cx_lock_checks *lc)
{
    size_t counts[BY_HOLD + 1][3];
    json_t *root = json_object(), *checks = json_array(), *ops = json_object(),
           *rec = json_object();
    count_ops(h, counts);
    for (size_t i = 0; i < CX_CHECK_COUNT; i++)
        json_array_append_new(checks, result_json(&c->r[i]));
    for (size_t i = 0; i < CX_LOCK_CHECK_COUNT; i++)
        json_array_append_new(checks, result_json(&lc->r[i]));
    for (int k = 0; k <= BY_HOLD; k++)
        json_object_set_new(ops, count_name(k),
                            json_pack("{s:I,s:I,s:I}", "ok", (json_int_t)counts[k][CX_OK], "fail",
                                      (json_int_t)counts[k][CX_FAIL], "unknown",
                                      (json_int_t)counts[k][CX_UNKNOWN]));
    for (size_t i = 0; i < c->n_kinds; i++)
        json_object_set_new(rec, c->kinds[i].kind,
                            json_pack("{s:I,s:I,s:I}", "faults", (json_int_t)c->kinds[i].count,
                                      "max_ms", (json_int_t)c->kinds[i].max_ms, "unrecovered",
                                      (json_int_t)c->kinds[i].unrecovered));
    json_object_set_new(root, "pass",
                        json_boolean(cx_checks_all_pass(c) && cx_checks_locks_pass(lc)));
    json_object_set_new(root, "locks", locks_json(lc));
    json_object_set_new(root, "checks", checks);
    json_object_set_new(root, "ops", ops);
    json_object_set_new(root, "recovery", rec);
    json_object_set_new(root, "faults", json_integer((json_int_t)h->n_faults));
    json_object_set_new(root, "unreadable_lines", json_integer((json_int_t)h->bad_lines));
    int rc = json_dump_file(root, path, JSON_INDENT(2)) == 0 ? 0 : -1;
    json_decref(root);
    if (rc != 0)
        fprintf(stderr, "chaos_check: cannot write %s\n", path);
    return rc;
}

int main(int argc, char **argv)
{
    cx_args a;
    cx_history h = CX_HISTORY_INIT;
    cx_snap s;
    cx_checks c;
    cx_lock_checks lc;
    char err[512];
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = 2;
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    memset(&lc, 0, sizeof(lc));
    for (size_t i = 0; i < a.n_history; i++)
        if (cx_history_load(&h, a.history[i], err, sizeof(err)) != CM_OK) {
            fprintf(stderr, "chaos_check: %s\n", err);
            goto done;
        }
    if (a.faults && cx_history_load(&h, a.faults, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "chaos_check: %s\n", err);
        goto done;
    }
    for (size_t i = 0; i < a.n_locks; i++)
        if (cx_history_load_locks(&h, a.locks[i], err, sizeof(err)) != CM_OK) {
            fprintf(stderr, "chaos_check: --locks %s\n", err);
            goto done;
        }
    if (cx_snap_load_db(&s, a.database, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "chaos_check: %s\n", err);
        goto done;
    }
    if (a.payment_url && cx_snap_load_payments(&s, a.payment_url, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "chaos_check: payments: %s\n", err);
        goto done;
    }
    if (a.reserved)
        cx_snap_load_guards(&s, a.reserved);
    cx_check_opts o = {.recovery_bound_ms = a.recovery_bound_ms,
                       .guards_given = a.reserved != NULL};
    cx_checks_run(&c, &h, &s, &o);
    cx_lock_check_opts lo = {
        .given = a.n_locks > 0, .have_epoch = a.have_epoch, .epoch_ms = a.epoch_ms};
    cx_checks_locks_run(&lc, &h, &c, &lo);
    print_report(&h, &c, &lc);
    rc = cx_checks_all_pass(&c) && cx_checks_locks_pass(&lc) ? 0 : 1;
    if (a.json && write_json(a.json, &h, &c, &lc) != 0)
        rc = 2;
done:
    for (size_t i = 0; i < a.n_locks; i++)
        free(a.locks[i]);
    cx_checks_locks_free(&lc);
    cx_checks_free(&c);
    cx_snap_free(&s);
    cx_history_free(&h);
    return rc;
}
