/*
 * test_lockhist: reserved's lock.history_file (issue 15 §3). One Redis master, a lockd,
 * PostgreSQL, a reserved in lockd mode with lock.history_file: a booking's performance lock
 * is recorded as a grant (src from the file's name, its fence, a local deadline after the
 * grant) and then its release, with the same fence; a second booking's grant has a greater
 * fence. A lock.history_file in a directory that does not exist is refused at start (exit 2,
 * naming the key).
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "th.h"
#include "th_check.h"
#include "th_http.h"
#include "th_reserved.h"

#define MAX_EVENTS 64

/* The lines of the history, once it has `want` releases (5 s at most). */
static size_t read_events(const char *path, size_t want, json_t *ev[MAX_EVENTS])
{
    uint64_t until = th_now_ms() + 5000;
    for (;;) {
        size_t n = 0, releases = 0;
        char line[1024];
        FILE *f = fopen(path, "r");
        while (f != NULL && n < MAX_EVENTS && fgets(line, sizeof line, f) != NULL) {
            json_error_t err;
            ev[n] = json_loads(line, 0, &err);
            ck_assert_msg(json_is_object(ev[n]), "not a JSON object: %s", line);
            releases += strcmp(json_string_value(json_object_get(ev[n], "ev")), "release") == 0;
            n++;
        }
        if (f != NULL)
            fclose(f);
        if (releases >= want || th_now_ms() > until)
            return n;
        for (size_t i = 0; i < n; i++)
            json_decref(ev[i]);
        th_sleep_ms(50);
    }
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    ck_assert_msg(v != NULL, "no string %s in %s", k, json_dumps(o, JSON_COMPACT));
    return v;
}

static long long num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "no integer %s in %s", k, json_dumps(o, JSON_COMPACT));
    return (long long)json_integer_value(v);
}

START_TEST(lock_history_file)
{
    th_pg pg;
    th_redis redis = {0};
    th_lockd lockd;
    th_reserved s;
    th_http_resp r;
    char yaml[2048], path[512], out[4096], perf_res[64];
    ck_assert(th_pg_shared(&pg));
    ck_assert(th_redis_start(&redis));
    ck_assert(th_lockd_start(&lockd, &redis, 1, NULL));

    /* a directory that does not exist: refused at start, naming the key */
    snprintf(path, sizeof path, "%s/no-such-dir/locks.jsonl", th_tmpdir());
    snprintf(yaml, sizeof yaml, "%s/bad.yaml", th_tmpdir());
    FILE *f = fopen(yaml, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "lock: {mode: lockd, history_file: \"%s\"}\n", path);
    fclose(f);
    ck_assert_int_eq(th_reserved_run(out, sizeof out, "--config", yaml, "--check-config", NULL), 2);
    ck_assert_msg(strstr(out, "lock.history_file") != NULL, "%s", out);

    snprintf(path, sizeof path, "%s/locks-reserved1.jsonl", th_tmpdir());
    snprintf(yaml, sizeof yaml,
             "database: \"%s\"\nlockd: [127.0.0.1:%d]\n"
             "lock: {mode: lockd, wait_ms: 2000, history_file: \"%s\"}\n",
             pg.conninfo, lockd.port, path);
    th_reserved_spawn_yaml(&s, yaml);
    th_reserved_wait_up(&s);
    th_reserved_admin(&s, pg.conninfo);
    th_http_request(s.port, "POST", "/venues", NULL,
                    "{\"name\":\"V\",\"seats\":[{\"row\":\"A\",\"number\":1,\"type\":\"NORMAL\"},"
                    "{\"row\":\"A\",\"number\":2,\"type\":\"NORMAL\"}]}",
                    &r);
    ck_assert_int_eq(r.status, 201);
    long long venue = th_http_int(&r, "id");
    th_http_resp_free(&r);
    char body[256], bpath[64];
    snprintf(body, sizeof body,
             "{\"venueId\":%lld,\"title\":\"T\",\"startsAt\":\"2030-01-01T19:00:00Z\","
             "\"normalPrice\":10,\"vipPrice\":20}",
             venue);
    th_http_request(s.port, "POST", "/performances", NULL, body, &r);
    ck_assert_int_eq(r.status, 201);
    long long perf = th_http_int(&r, "id");
    th_http_resp_free(&r);
    snprintf(perf_res, sizeof perf_res, "Performance:%lld", perf);
    snprintf(bpath, sizeof bpath, "/performances/%lld/reservations", perf);
    /* two bookings, the second after the first's lock went back (its chain ends at once:
     * nobody waits), so each has a grant of its own */
    json_t *ev[MAX_EVENTS];
    for (int seat = 1; seat <= 2; seat++) {
        snprintf(body, sizeof body, "{\"seatIds\":[%d]}", seat);
        th_http_request(s.port, "POST", bpath, NULL, body, &r);
        ck_assert_msg(r.status == 201, "booking %d: %d %s", seat, r.status, r.raw);
        th_http_resp_free(&r);
        size_t n = read_events(path, (size_t)seat, ev);
        for (size_t i = 0; i < n; i++)
            json_decref(ev[i]);
    }

    size_t n = read_events(path, 2, ev);
    long long fence[2] = {0, 0};
    size_t grants = 0, releases = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(str(ev[i], "src"), "reserved1"); /* the file's name */
        ck_assert_str_eq(str(ev[i], "res"), perf_res);
        ck_assert_msg(str(ev[i], "sess")[0] != '\0', "no session id");
        long long fc = atoll(str(ev[i], "fence")), t = num(ev[i], "t_us");
        const char *what = str(ev[i], "ev");
        if (strcmp(what, "grant") == 0) {
            ck_assert_uint_lt(grants, 2);
            ck_assert_msg(num(ev[i], "deadline_us") > t, "the deadline is not after the grant");
            ck_assert_msg(grants == 0 || fc > fence[0], "fence %lld after %lld", fc, fence[0]);
            fence[grants++] = fc;
        } else {
            ck_assert_str_eq(what, "release");
            ck_assert_uint_eq(releases + 1, grants); /* its own grant's, right after it */
            ck_assert_int_eq(fc, fence[releases]);
            releases++;
        }
        json_decref(ev[i]);
    }
    ck_assert_uint_eq(grants, 2);
    ck_assert_uint_eq(releases, 2);
    th_reserved_stop_clean(&s);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {{"lock_history_file", lock_history_file}};
    return th_check_main("reserved_lockhist", cases, 1, 60, argc, argv);
}
