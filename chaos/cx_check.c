/*
 * chaos_check: the checker of the chaos suite (issue 4 §3). Reads the history and the fault
 * log, the booking database, fakepay's payment list and reserved's guard counters, runs the
 * checks of cx_checks and prints one line per check:
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

typedef struct cx_args {
    const char *history[MAX_HISTORIES]; /* --history may be given several times */
    size_t n_history;
    const char *faults;
    const char *database;
    const char *payment_url;
    const char *reserved;
    const char *json;
    long recovery_bound_ms;
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

static void print_report(const cx_history *h, const cx_checks *c)
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
    for (size_t i = 0; i < CX_CHECK_COUNT; i++) {
        const cx_result *r = &c->r[i];
        printf("CHECK %s %s %s%s%s\n", r->name, r->pass ? "PASS" : "FAIL", r->figure,
               r->detail.len ? " -- " : "", cm_strbuf_str(&r->detail));
    }
    fflush(stdout);
}

static int write_json(const char *path, const cx_history *h, const cx_checks *c)
{
    size_t counts[BY_HOLD + 1][3];
    json_t *root = json_object(), *checks = json_array(), *ops = json_object(),
           *rec = json_object();
    count_ops(h, counts);
    for (size_t i = 0; i < CX_CHECK_COUNT; i++) {
        const cx_result *r = &c->r[i];
        json_array_append_new(checks, json_pack("{s:s,s:s,s:s,s:s}", "name", r->name, "result",
                                                r->pass ? "PASS" : "FAIL", "figure", r->figure,
                                                "detail", cm_strbuf_str(&r->detail)));
    }
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
    json_object_set_new(root, "pass", json_boolean(cx_checks_all_pass(c)));
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
    char err[512];
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = 2;
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    for (size_t i = 0; i < a.n_history; i++)
        if (cx_history_load(&h, a.history[i], err, sizeof(err)) != CM_OK) {
            fprintf(stderr, "chaos_check: %s\n", err);
            goto done;
        }
    if (a.faults && cx_history_load(&h, a.faults, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "chaos_check: %s\n", err);
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
    print_report(&h, &c);
    rc = cx_checks_all_pass(&c) ? 0 : 1;
    if (a.json && write_json(a.json, &h, &c) != 0)
        rc = 2;
done:
    cx_checks_free(&c);
    cx_snap_free(&s);
    cx_history_free(&h);
    return rc;
}
