/*
 * it_metrics: GET /metrics on metrics_listen (a plain-socket HTTP/1.0 request) answers
 * 200 with Prometheus text that contains lockd_grants_total (counting the grants made
 * here), lockd_master_up for each of the 3 masters (all 1), and the handoff latency
 * histogram (buckets, and a _count that includes the local handoff made here), and
 * lockd_redlock_rounds_queued (0 when idle).
 */
#include "it_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

/* Value of a sample line "name{labels} value" or "name value". */
static double sample_value(const char *line)
{
    const char *sp = strrchr(line, ' ');
    return sp ? strtod(sp + 1, NULL) : -1;
}

START_TEST(test_metrics)
{
    th_conn holder, waiter;
    it_connect(&holder, lockd.port, "holder");
    it_connect(&waiter, lockd.port, "waiter");
    /* Two grants, one of them a local handoff. */
    it_handoff_trial(&holder, &waiter, "Performance:metrics", 20);

    char *page = it_http_get(lockd.metrics_port, "/metrics", 3000);
    ck_assert_msg(page != NULL, "no answer on metrics port %d", lockd.metrics_port);
    ck_assert_msg(strncmp(page, "HTTP/1.", 7) == 0 && strncmp(page + 8, " 200", 4) == 0,
                  "status line: %.40s", page);
    char *body = strstr(page, "\r\n\r\n");
    ck_assert_msg(body != NULL, "no header end");
    /* nothing waits for room under redlock.max_inflight_rounds on an idle lockd (checked
     * before strtok_r below cuts the page into lines) */
    ck_assert_msg(strstr(body, "\nlockd_redlock_rounds_queued 0\n") != NULL,
                  "lockd_redlock_rounds_queued:\n%s", body);
    double grants = -1, handoff_count = -1;
    int masters_up = 0, masters_lines = 0, handoff_buckets = 0;
    char *save = NULL;
    for (char *l = strtok_r(body + 4, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#') {
            continue;
        }
        if (strncmp(l, "lockd_grants_total ", 19) == 0 ||
            strncmp(l, "lockd_grants_total{", 19) == 0) {
            grants = sample_value(l);
        } else if (strncmp(l, "lockd_master_up", 15) == 0 && (l[15] == '{' || l[15] == ' ')) {
            masters_lines++;
            masters_up += sample_value(l) == 1.0;
        } else if (strncmp(l, "lockd_handoff", 13) == 0) {
            char *sp = strpbrk(l, "{ ");
            size_t nl = sp ? (size_t)(sp - l) : strlen(l);
            if (nl > 7 && strncmp(l + nl - 7, "_bucket", 7) == 0) {
                handoff_buckets++;
            } else if (nl > 6 && strncmp(l + nl - 6, "_count", 6) == 0) {
                handoff_count = sample_value(l);
            }
        }
    }
    fprintf(stderr,
            "it_metrics: grants %.0f, master_up %d/%d, handoff buckets %d, handoff count %.0f\n",
            grants, masters_up, masters_lines, handoff_buckets, handoff_count);
    ck_assert_msg(grants >= 2, "lockd_grants_total missing or < 2:\n%s", body);
    ck_assert_msg(masters_lines == 3 && masters_up == 3, "lockd_master_up:\n%s", body);
    ck_assert_msg(handoff_buckets >= 2, "no handoff histogram buckets:\n%s", body);
    ck_assert_msg(handoff_count >= 1, "handoff histogram _count < 1:\n%s", body);
    free(page);
    th_close(&holder);
    th_close(&waiter);
}
END_TEST

int main(void)
{
    return it_main("it_metrics", test_metrics, 50, setup);
}
