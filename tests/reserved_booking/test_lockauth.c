/*
 * test_lockauth: reserved authenticates to lockd with lock.auth (SPEC §6a). A lockd with
 * `auth` set, one Redis master, PostgreSQL; three reserved in lockd mode: with the right
 * secret it is healthy and books; with a wrong one lockd refuses its AUTH, so its /healthz
 * says lockd is down; with none lockd refuses its ACQUIRE (NOAUTH); either way a booking is
 * 503 UNAVAILABLE and nothing is written. (Before
 * lock.auth, lockd had to run without auth, and anyone who reached it could hold
 * Performance:<id> and stop every sale.)
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "th.h"
#include "th_check.h"
#include "th_http.h"
#include "th_reserved.h"

#define SECRET "lockd-secret-for-the-test"

static void spawn(th_reserved *s, const th_pg *pg, const th_lockd *l, const char *auth_line)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "database: \"%s\"\nlockd: [127.0.0.1:%d]\nlock: {mode: lockd, wait_ms: 2000%s}\n",
             pg->conninfo, l->port, auth_line);
    th_reserved_spawn_yaml(s, yaml);
    th_reserved_wait_up(s);
}

/* GET /healthz until lockd is `want` (the client connects after start), at most 5 s. */
static void health_until(int port, const char *want, int status)
{
    th_http_resp r = {0};
    uint64_t until = th_now_ms() + 5000;
    for (;;) {
        th_http_request_as(port, NULL, "GET", "/healthz", NULL, NULL, &r);
        if ((r.status == status && strcmp(th_http_str(&r, "lockd"), want) == 0) ||
            th_now_ms() > until)
            break;
        th_http_resp_free(&r);
        th_sleep_ms(100);
    }
    ck_assert_msg(r.status == status && strcmp(th_http_str(&r, "lockd"), want) == 0,
                  "healthz: %d %s", r.status, r.raw ? r.raw : "");
    th_http_resp_free(&r);
}

START_TEST(lockd_auth)
{
    th_pg pg;
    th_redis redis = {0};
    th_lockd lockd;
    th_reserved good, wrong, none;
    th_http_resp r;
    ck_assert(th_pg_shared(&pg));
    ck_assert(th_redis_start(&redis));
    ck_assert(th_lockd_start(&lockd, &redis, 1, "auth: \"" SECRET "\"\n"));

    spawn(&good, &pg, &lockd, ", auth: \"" SECRET "\"");
    health_until(good.port, "ok", 200);
    th_reserved_admin(&good, pg.conninfo);
    th_http_request(good.port, "POST", "/venues", NULL,
                    "{\"name\":\"V\",\"seats\":[{\"row\":\"A\",\"number\":1,\"type\":\"NORMAL\"},"
                    "{\"row\":\"A\",\"number\":2,\"type\":\"NORMAL\"}]}",
                    &r);
    ck_assert_int_eq(r.status, 201);
    long long venue = th_http_int(&r, "id");
    th_http_resp_free(&r);
    char body[256];
    snprintf(body, sizeof body,
             "{\"venueId\":%lld,\"title\":\"T\",\"startsAt\":\"2030-01-01T19:00:00Z\","
             "\"normalPrice\":10,\"vipPrice\":20}",
             venue);
    th_http_request(good.port, "POST", "/performances", NULL, body, &r);
    ck_assert_int_eq(r.status, 201);
    long long perf = th_http_int(&r, "id");
    th_http_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/performances/%lld/reservations", perf);
    /* seat ids of a fresh database's first venue: 1 and 2 */
    th_http_request(good.port, "POST", path, NULL, "{\"seatIds\":[1]}", &r);
    ck_assert_msg(r.status == 201, "booking with the secret: %d %s", r.status, r.raw);
    th_http_resp_free(&r);

    spawn(&wrong, &pg, &lockd, ", auth: \"not-the-secret\"");
    spawn(&none, &pg, &lockd, "");
    health_until(wrong.port, "down", 503); /* its AUTH is refused: no session */
    /* without a secret the session opens (HELLO needs none) but lockd refuses every lock */
    th_http_request(wrong.port, "POST", path, NULL, "{\"seatIds\":[2]}", &r);
    ck_assert_msg(r.status == 503 && strcmp(th_http_error_code(&r), "UNAVAILABLE") == 0,
                  "booking with a wrong secret: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    th_http_request(none.port, "POST", path, NULL, "{\"seatIds\":[2]}", &r);
    ck_assert_msg(r.status == 503, "booking without a secret: %d %s", r.status, r.raw);
    th_http_resp_free(&r);
    /* seat 2 is still free: nothing was written by the refused ones */
    snprintf(path, sizeof path, "/performances/%lld", perf);
    th_http_request_as(good.port, NULL, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(th_http_int(&r, "remainingCapacity"), 1);
    th_http_resp_free(&r);

    th_reserved_stop_clean(&none);
    th_reserved_stop_clean(&wrong);
    th_reserved_stop_clean(&good);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {{"lockd_auth", lockd_auth}};
    return th_check_main("reserved_lockauth", cases, 1, 60, argc, argv);
}
