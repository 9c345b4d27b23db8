/*
 * test_fakepay: black-box tests of the real fakepay binary (SPEC §7, issue 3 §3), one
 * Check case per claim, each registered with ctest as fakepay_<case> (CK_RUN_CASE).
 * Every case ends with a SIGTERM that must give exit status 0: under ASan that is also
 * the leak check of the paths the case drove.
 */
#include <check.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_check.h"
#include "th_fakepay.h"
#include "th_http.h"
#include "th.h"

static void expect_payment(const th_http_resp *r, int status, const char *pay_status,
                           long long amount, const char *reference)
{
    ck_assert_msg(r->status == status, "want %d, got %d: %s", status, r->status, r->body);
    ck_assert_str_eq(th_http_str(r, "status"), pay_status);
    ck_assert_int_eq(strncmp(th_http_str(r, "id"), "pay_", 4), 0);
    ck_assert_int_eq(th_http_int(r, "amount"), amount);
    ck_assert_str_eq(th_http_str(r, "currency"), "KRW");
    ck_assert_str_eq(th_http_str(r, "reference"), reference);
}

/* A POST /payments that must fail with status and error code. */
static void expect_pay_error(int port, const char *key, long long amount, const char *reference,
                             int status, const char *code)
{
    th_http_resp r;
    th_http_pay(port, key, amount, reference, &r);
    ck_assert_msg(r.status == status, "%s: want %d, got %d: %s", key, status, r.status, r.body);
    ck_assert_str_eq(th_http_error_code(&r), code);
    th_http_resp_free(&r);
}

static size_t stats_count(int port, const char *status)
{
    th_http_resp r;
    th_http_request(port, "GET", "/stats", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *v = status ? json_object_get(json_object_get(r.json, "byStatus"), status)
                       : json_object_get(r.json, "payments");
    ck_assert_msg(json_is_integer(v), "stats: %s", r.body);
    size_t n = (size_t)json_integer_value(v);
    th_http_resp_free(&r);
    return n;
}

static void set_config(int port, const char *json)
{
    th_http_resp r;
    th_http_request(port, "POST", "/admin/config", NULL, json, &r);
    ck_assert_msg(r.status == 200, "config %s: %d %s", json, r.status, r.body);
    th_http_resp_free(&r);
}

START_TEST(test_approve)
{
    th_fakepay s;
    th_http_resp r, g;
    regex_t rfc3339;
    char path[128];

    ck_assert_int_eq(regcomp(&rfc3339,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    th_fakepay_start(&s, "--seed", "1", NULL);
    th_http_request(s.port, "GET", "/healthz", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(th_http_str(&r, "status"), "ok");
    th_http_resp_free(&r);

    th_http_pay(s.port, "approve-1", 55000, "rsv-1", &r);
    expect_payment(&r, 201, "APPROVED", 55000, "rsv-1");
    ck_assert_msg(regexec(&rfc3339, th_http_str(&r, "createdAt"), 0, NULL, 0) == 0,
                  "createdAt '%s' is not RFC 3339", th_http_str(&r, "createdAt"));
    snprintf(path, sizeof path, "/payments/%s", th_http_str(&r, "id"));
    th_http_request(s.port, "GET", path, NULL, NULL, &g);
    expect_payment(&g, 200, "APPROVED", 55000, "rsv-1");
    ck_assert_str_eq(th_http_str(&g, "id"), th_http_str(&r, "id"));
    ck_assert_str_eq(th_http_str(&g, "createdAt"), th_http_str(&r, "createdAt"));
    th_http_resp_free(&g);

    /* A second payment gets a new id. */
    th_http_pay(s.port, "approve-2", 1, "rsv-2", &g);
    expect_payment(&g, 201, "APPROVED", 1, "rsv-2");
    ck_assert_str_ne(th_http_str(&g, "id"), th_http_str(&r, "id"));
    th_http_resp_free(&g);
    th_http_resp_free(&r);
    ck_assert_uint_eq(stats_count(s.port, NULL), 2);
    ck_assert_uint_eq(stats_count(s.port, "APPROVED"), 2);
    regfree(&rfc3339);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_idempotent)
{
    th_fakepay s;
    th_http_resp a, b, c;
    char hv[32];

    th_fakepay_start(&s, "--seed", "2", NULL);
    th_http_pay(s.port, "idem-1", 7000, "rsv-idem", &a);
    expect_payment(&a, 201, "APPROVED", 7000, "rsv-idem");
    ck_assert(!th_http_header(&a, "Idempotent-Replayed", hv, sizeof hv));
    for (int i = 0; i < 3; i++) {
        th_http_pay(s.port, "idem-1", 7000, "rsv-idem", &b);
        expect_payment(&b, 201, "APPROVED", 7000, "rsv-idem");
        ck_assert_str_eq(th_http_str(&b, "id"), th_http_str(&a, "id"));
        ck_assert(th_http_header(&b, "Idempotent-Replayed", hv, sizeof hv));
        ck_assert_str_eq(hv, "true");
        th_http_resp_free(&b);
    }
    /* Same key, different amount or reference: 422, and nothing recorded. */
    expect_pay_error(s.port, "idem-1", 7001, "rsv-idem", 422, "IDEMPOTENCY_MISMATCH");
    expect_pay_error(s.port, "idem-1", 7000, "rsv-other", 422, "IDEMPOTENCY_MISMATCH");
    ck_assert_uint_eq(stats_count(s.port, NULL), 1);

    /* A decline is replayed too: same id, same 402, even after the rate changes. */
    set_config(s.port, "{\"declineRate\": 1}");
    th_http_pay(s.port, "idem-2", 500, "rsv-idem2", &b);
    expect_payment(&b, 402, "DECLINED", 500, "rsv-idem2");
    set_config(s.port, "{\"declineRate\": 0}");
    th_http_pay(s.port, "idem-2", 500, "rsv-idem2", &c);
    expect_payment(&c, 402, "DECLINED", 500, "rsv-idem2");
    ck_assert_str_eq(th_http_str(&c, "id"), th_http_str(&b, "id"));
    th_http_resp_free(&b);
    th_http_resp_free(&c);
    ck_assert_uint_eq(stats_count(s.port, NULL), 2);
    th_http_resp_free(&a);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_decline)
{
    th_fakepay s;
    th_http_resp r;
    char key[32], path[64];

    th_fakepay_start(&s, "--decline-rate", "1.0", NULL);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "decl-%d", i);
        th_http_pay(s.port, key, 100 + i, "rsv-decl", &r);
        expect_payment(&r, 402, "DECLINED", 100 + i, "rsv-decl");
        if (i == 0) {
            /* Nothing to cancel on a decline. */
            th_http_resp c;
            snprintf(path, sizeof path, "/payments/%s/cancel", th_http_str(&r, "id"));
            th_http_request(s.port, "POST", path, NULL, NULL, &c);
            ck_assert_int_eq(c.status, 409);
            ck_assert_str_eq(th_http_error_code(&c), "NOT_CANCELLABLE");
            th_http_resp_free(&c);
        }
        th_http_resp_free(&r);
    }
    ck_assert_uint_eq(stats_count(s.port, "DECLINED"), 20);
    ck_assert_uint_eq(stats_count(s.port, "APPROVED"), 0);
    /* Declines are visible in the listing. */
    th_http_request(s.port, "GET", "/payments?reference=rsv-decl", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "items")), 20);
    th_http_resp_free(&r);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_fail)
{
    th_fakepay s;
    th_http_resp r;
    char key[32];

    th_fakepay_start(&s, "--fail-rate", "1", "--decline-rate", "0", NULL);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "fail-%d", i);
        expect_pay_error(s.port, key, 900, "rsv-fail", 503, "UNAVAILABLE");
    }
    /* A failure records nothing: a retry with the same key gets a fresh decision. */
    ck_assert_uint_eq(stats_count(s.port, NULL), 0);
    set_config(s.port, "{\"failRate\": 0}");
    th_http_pay(s.port, "fail-0", 900, "rsv-fail", &r);
    expect_payment(&r, 201, "APPROVED", 900, "rsv-fail");
    th_http_resp_free(&r);
    ck_assert_uint_eq(stats_count(s.port, NULL), 1);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_cancel)
{
    th_fakepay s;
    th_http_resp a, c;
    char path[64];

    th_fakepay_start(&s, NULL);
    th_http_pay(s.port, "cancel-1", 3000, "rsv-cancel", &a);
    expect_payment(&a, 201, "APPROVED", 3000, "rsv-cancel");
    snprintf(path, sizeof path, "/payments/%s/cancel", th_http_str(&a, "id"));
    for (int i = 0; i < 3; i++) {
        th_http_request(s.port, "POST", path, NULL, NULL, &c);
        ck_assert_msg(c.status == 200, "cancel #%d: %d %s", i, c.status, c.body);
        ck_assert_str_eq(th_http_str(&c, "id"), th_http_str(&a, "id"));
        ck_assert_str_eq(th_http_str(&c, "status"), "CANCELLED");
        th_http_resp_free(&c);
    }
    ck_assert_uint_eq(stats_count(s.port, "CANCELLED"), 1);
    ck_assert_uint_eq(stats_count(s.port, "APPROVED"), 0);
    snprintf(path, sizeof path, "/payments/%s", th_http_str(&a, "id"));
    th_http_request(s.port, "GET", path, NULL, NULL, &c);
    expect_payment(&c, 200, "CANCELLED", 3000, "rsv-cancel");
    th_http_resp_free(&c);
    /* The payment replay keeps the first status code and shows the state now. */
    th_http_pay(s.port, "cancel-1", 3000, "rsv-cancel", &c);
    expect_payment(&c, 201, "CANCELLED", 3000, "rsv-cancel");
    th_http_resp_free(&c);
    th_http_request(s.port, "POST", "/payments/pay_424242/cancel", NULL, NULL, &c);
    ck_assert_int_eq(c.status, 404);
    ck_assert_str_eq(th_http_error_code(&c), "NOT_FOUND");
    th_http_resp_free(&c);
    th_http_resp_free(&a);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_listing)
{
    th_fakepay s;
    th_http_resp r;
    char key[32], ids[6][32];
    const char *refs[6] = {"A", "B", "A", "C", "A", "B"};

    th_fakepay_start(&s, NULL);
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "list-%d", i);
        th_http_pay(s.port, key, 10 * (i + 1), refs[i], &r);
        expect_payment(&r, 201, "APPROVED", 10 * (i + 1), refs[i]);
        snprintf(ids[i], sizeof ids[i], "%s", th_http_str(&r, "id"));
        th_http_resp_free(&r);
    }
    th_http_request(s.port, "GET", "/payments?reference=A", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    ck_assert_uint_eq(json_array_size(items), 3);
    const int want_a[3] = {0, 2, 4};
    for (size_t i = 0; i < 3; i++) {
        json_t *p = json_array_get(items, i);
        ck_assert_str_eq(json_string_value(json_object_get(p, "id")), ids[want_a[i]]);
        ck_assert_str_eq(json_string_value(json_object_get(p, "reference")), "A");
        ck_assert_str_eq(json_string_value(json_object_get(p, "currency")), "KRW");
        ck_assert(json_is_string(json_object_get(p, "createdAt")));
    }
    th_http_resp_free(&r);
    th_http_request(s.port, "GET", "/payments?reference=nobody", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_array(json_object_get(r.json, "items")));
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "items")), 0);
    th_http_resp_free(&r);
    th_http_request(s.port, "GET", "/payments", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "items")), 6);
    for (size_t i = 0; i < 6; i++) {
        json_t *p = json_array_get(json_object_get(r.json, "items"), i);
        ck_assert_str_eq(json_string_value(json_object_get(p, "id")), ids[i]);
    }
    th_http_resp_free(&r);
    /* Percent-encoding in the query is decoded. */
    th_http_pay(s.port, "list-sp", 5, "rsv 1/x", &r);
    th_http_resp_free(&r);
    th_http_request(s.port, "GET", "/payments?reference=rsv%201%2Fx", NULL, NULL, &r);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "items")), 1);
    th_http_resp_free(&r);
    th_fakepay_stop_clean(&s);
}
END_TEST

typedef struct bad_case {
    const char *method;
    const char *path;
    const char *key;
    const char *body;
    int status;
    const char *code;
} bad_case;

#define OK_BODY "{\"amount\":100,\"currency\":\"KRW\",\"reference\":\"r\"}"
static const bad_case bad_cases[] = {
    {"POST", "/payments", NULL, OK_BODY, 400, "BAD_REQUEST"}, /* no Idempotency-Key */
    {"POST", "/payments", "k", "", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "not json", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "[1,2,3]", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"currency\":\"KRW\",\"reference\":\"r\"}", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":\"100\",\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":1.5,\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100.0,\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":0,\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":-5,\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"currency\":\"USD\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"reference\":\"r\"}", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"currency\":null,\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"currency\":\"KRW\"}", 400, "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"currency\":\"KRW\",\"reference\":42}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k", "{\"amount\":100,\"currency\":\"KRW\",\"reference\":\"\"}", 400,
     "BAD_REQUEST"},
    {"POST", "/payments", "k",
     "{\"amount\":100,\"amount\":200,\"currency\":\"KRW\",\"reference\":\"r\"}", 400,
     "BAD_REQUEST"},
    {"DELETE", "/payments", NULL, NULL, 405, "METHOD_NOT_ALLOWED"},
    {"PUT", "/payments", "k", OK_BODY, 405, "METHOD_NOT_ALLOWED"},
    {"GET", "/payments/pay_1/cancel", NULL, NULL, 405, "METHOD_NOT_ALLOWED"},
    {"POST", "/payments/pay_1", NULL, NULL, 405, "METHOD_NOT_ALLOWED"},
    {"POST", "/healthz", NULL, NULL, 405, "METHOD_NOT_ALLOWED"},
    {"PATCH", "/admin/config", NULL, "{}", 405, "METHOD_NOT_ALLOWED"},
    {"POST", "/payments/pay_999/cancel", NULL, NULL, 404, "NOT_FOUND"},
    {"POST", "/payments/pay_0/cancel", NULL, NULL, 404, "NOT_FOUND"},
    {"GET", "/payments/pay_abc", NULL, NULL, 404, "NOT_FOUND"},
    {"POST", "/payments/pay_1/refund", NULL, NULL, 404, "NOT_FOUND"},
    {"GET", "/nope", NULL, NULL, 404, "NOT_FOUND"},
    {"POST", "/admin/config", NULL, "{\"failRate\":2}", 400, "BAD_REQUEST"},
    {"POST", "/admin/config", NULL, "{\"declineRate\":\"x\"}", 400, "BAD_REQUEST"},
    {"POST", "/admin/config", NULL, "{\"latencyMs\":-1}", 400, "BAD_REQUEST"},
    {"POST", "/admin/config", NULL, "{\"bogus\":1}", 400, "BAD_REQUEST"},
};

START_TEST(test_badreq)
{
    th_fakepay s;
    th_http_resp r;
    char longkey[300], path[64], allow[64];

    th_fakepay_start(&s, NULL);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        th_http_request(s.port, c->method, c->path, c->key, c->body, &r);
        ck_assert_msg(r.status == c->status && strcmp(th_http_error_code(&r), c->code) == 0,
                      "case %zu %s %s '%s': want %d %s, got %d %s", i, c->method, c->path,
                      c->body ? c->body : "", c->status, c->code, r.status, r.body);
        ck_assert_msg(json_is_string(json_object_get(json_object_get(r.json, "error"), "message")),
                      "case %zu: no error.message in %s", i, r.body);
        if (c->status == 405)
            ck_assert_msg(th_http_header(&r, "Allow", allow, sizeof allow), "case %zu: no Allow",
                          i);
        th_http_resp_free(&r);
    }
    /* An over-long Idempotency-Key. */
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    th_http_request(s.port, "POST", "/payments", longkey, OK_BODY, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(th_http_error_code(&r), "BAD_REQUEST");
    th_http_resp_free(&r);
    /* A body over 64 KiB: 413 with the JSON error. */
    size_t big_len = 64 * 1024 + 1;
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', big_len);
    int fd = th_http_send(s.port, "POST", "/payments", "big", big, big_len);
    free(big);
    ck_assert_int_ge(fd, 0);
    th_http_recv(fd, &r);
    ck_assert_int_eq(r.status, 413);
    ck_assert_str_eq(th_http_error_code(&r), "TOO_LARGE");
    th_http_resp_free(&r);
    /* Nothing above was recorded, each was counted as rejected, and the server still works. */
    ck_assert_uint_eq(stats_count(s.port, NULL), 0);
    th_http_request(s.port, "GET", "/stats", NULL, NULL, &r);
    ck_assert_int_eq(th_http_int(&r, "rejected"),
                     (long long)(sizeof bad_cases / sizeof bad_cases[0]) + 2);
    th_http_resp_free(&r);
    th_http_pay(s.port, "after-bad", 100, "r", &r);
    expect_payment(&r, 201, "APPROVED", 100, "r");
    snprintf(path, sizeof path, "/payments/%s", th_http_str(&r, "id"));
    th_http_resp_free(&r);
    th_http_request(s.port, "GET", path, NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);
    th_fakepay_stop_clean(&s);
}
END_TEST

#define LATENCY_MS 300
#define PARALLEL_N 5

START_TEST(test_latency)
{
    th_fakepay s;
    th_http_resp r;
    int fds[PARALLEL_N];
    char key[32];

    th_fakepay_start(&s, "--latency-ms", "300", NULL);
    uint64_t t0 = th_now_ms();
    th_http_pay(s.port, "lat-1", 100, "rsv-lat", &r);
    uint64_t took = th_now_ms() - t0;
    expect_payment(&r, 201, "APPROVED", 100, "rsv-lat");
    th_http_resp_free(&r);
    fprintf(stderr, "fakepay_latency: one payment took %llu ms\n", (unsigned long long)took);
    ck_assert_uint_ge(took, LATENCY_MS);

    /* Held back on timers, not by sleeping: parallel requests overlap. */
    t0 = th_now_ms();
    for (int i = 0; i < PARALLEL_N; i++) {
        char body[128];
        snprintf(key, sizeof key, "lat-p%d", i);
        snprintf(body, sizeof body, "{\"amount\":%d,\"currency\":\"KRW\",\"reference\":\"p\"}",
                 i + 1);
        fds[i] = th_http_send(s.port, "POST", "/payments", key, body, strlen(body));
        ck_assert_int_ge(fds[i], 0);
    }
    for (int i = 0; i < PARALLEL_N; i++) {
        th_http_recv(fds[i], &r);
        ck_assert_int_eq(r.status, 201);
        th_http_resp_free(&r);
    }
    took = th_now_ms() - t0;
    fprintf(stderr, "fakepay_latency: %d parallel payments took %llu ms\n", PARALLEL_N,
            (unsigned long long)took);
    ck_assert_uint_ge(took, LATENCY_MS);
    ck_assert_uint_lt(took, 2 * LATENCY_MS);

    /* The knob at run time: off, then longer. Admin calls are never held back. */
    t0 = th_now_ms();
    set_config(s.port, "{\"latencyMs\": 0}");
    ck_assert_uint_lt(th_now_ms() - t0, LATENCY_MS);
    t0 = th_now_ms();
    th_http_pay(s.port, "lat-2", 100, "rsv-lat", &r);
    took = th_now_ms() - t0;
    th_http_resp_free(&r);
    ck_assert_uint_lt(took, LATENCY_MS);
    set_config(s.port, "{\"latencyMs\": 600}");
    t0 = th_now_ms();
    th_http_request(s.port, "POST", "/payments/pay_1/cancel", NULL, NULL, &r);
    took = th_now_ms() - t0;
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);
    fprintf(stderr, "fakepay_latency: cancel at 600 ms took %llu ms\n", (unsigned long long)took);
    ck_assert_uint_ge(took, 600);

    /* A client that gives up while its reply is held back does not hurt the server. */
    /* It resets the connection (linger 0): the late write fails with ECONNRESET. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < 3; i++) {
        int fd = th_http_send(s.port, "GET", "/payments", NULL, NULL, 0);
        ck_assert_int_ge(fd, 0);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    th_sleep_ms(800);
    th_http_request(s.port, "GET", "/healthz", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);
    th_fakepay_stop_clean(&s);
}
END_TEST

#define SEQ_N 60

/* The status codes of SEQ_N new payments against a fakepay started with seed. */
static void outcome_sequence(const char *seed, int out[SEQ_N])
{
    th_fakepay s;
    th_http_resp r;
    char key[32];
    th_fakepay_start(&s, "--seed", seed, "--decline-rate", "0.4", "--fail-rate", "0.2", NULL);
    for (int i = 0; i < SEQ_N; i++) {
        snprintf(key, sizeof key, "seq-%d", i);
        th_http_pay(s.port, key, 100 + i, "rsv-seq", &r);
        out[i] = r.status;
        ck_assert_msg(r.status == 201 || r.status == 402 || r.status == 503, "%d: %s", r.status,
                      r.body);
        th_http_resp_free(&r);
    }
    th_fakepay_stop_clean(&s);
}

START_TEST(test_seed)
{
    int a[SEQ_N], b[SEQ_N], c[SEQ_N];
    int count[3] = {0};
    outcome_sequence("12345", a);
    outcome_sequence("12345", b);
    outcome_sequence("54321", c);
    for (int i = 0; i < SEQ_N; i++) {
        ck_assert_msg(a[i] == b[i], "payment %d: %d with the first run, %d with the second", i,
                      a[i], b[i]);
        count[a[i] == 201 ? 0 : a[i] == 402 ? 1 : 2]++;
    }
    fprintf(stderr, "fakepay_seed: seed 12345 gave %d approved, %d declined, %d failed\n", count[0],
            count[1], count[2]);
    /* The rates take effect (each outcome appears), and the seed matters. */
    ck_assert_int_gt(count[0], 0);
    ck_assert_int_gt(count[1], 0);
    ck_assert_int_gt(count[2], 0);
    ck_assert_msg(memcmp(a, c, sizeof a) != 0, "seeds 12345 and 54321 gave the same sequence");
}
END_TEST

START_TEST(test_sigterm)
{
    th_fakepay s;
    th_http_resp r;

    /* A reply held back for 10 s is sent at once on SIGTERM, then fakepay exits 0. */
    th_fakepay_start(&s, "--latency-ms", "10000", NULL);
    int fd = th_http_send(s.port, "POST", "/payments", "term-1", OK_BODY, strlen(OK_BODY));
    ck_assert_int_ge(fd, 0);
    th_sleep_ms(200);
    uint64_t t0 = th_now_ms();
    th_signal(s.pid, SIGTERM);
    th_http_recv(fd, &r);
    uint64_t took = th_now_ms() - t0;
    fprintf(stderr, "fakepay_sigterm: held-back reply %d after %llu ms\n", r.status,
            (unsigned long long)took);
    ck_assert_int_eq(r.status, 201);
    ck_assert_uint_lt(took, 2000);
    th_http_resp_free(&r);
    int status = th_wait_exit(s.pid, 5000);
    ck_assert_msg(status != -1, "fakepay did not exit within 5 s of SIGTERM");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0x%x", status);
    /* The listening socket is gone. */
    ck_assert(!th_wait_port(s.port, 200));

    /* SIGINT too, on an idle server. */
    th_fakepay_start(&s, NULL);
    th_signal(s.pid, SIGINT);
    status = th_wait_exit(s.pid, 5000);
    ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "SIGINT exit status 0x%x", status);
}
END_TEST

/* Runs fakepay with args and returns its exit code (it must exit on its own). */
static int run_cli(char *const argv[])
{
    char log[512];
    snprintf(log, sizeof log, "%s/cli.log", th_tmpdir());
    pid_t pid = th_spawn(argv, log);
    int status = th_wait_exit(pid, 5000);
    ck_assert_msg(status != -1 && WIFEXITED(status), "fakepay %s did not exit", argv[1]);
    return WEXITSTATUS(status);
}

START_TEST(test_cli)
{
    char *bin = (char *)th_bin("fakepay");
    char *const help[] = {bin, "--help", NULL};
    char *const version[] = {bin, "--version", NULL};
    char *const bad[][5] = {
        {bin, NULL},
        {bin, "--bogus", NULL},
        {bin, "--listen", NULL},
        {bin, "--listen", "nocolon", NULL},
        {bin, "--listen", "127.0.0.1:99999", NULL},
        {bin, "--listen", "127.0.0.1:1", "extra", NULL},
    };
    char *const bad_values[][4] = {
        {bin, "--decline-rate", "1.5", NULL}, {bin, "--decline-rate", "x", NULL},
        {bin, "--fail-rate", "-0.1", NULL},   {bin, "--latency-ms", "-1", NULL},
        {bin, "--latency-ms", "10ms", NULL},  {bin, "--seed", "abc", NULL},
        {bin, "--log-level", "loud", NULL},   {bin, "--max-payments", "0", NULL},
    };
    ck_assert_int_eq(run_cli(help), 0);
    ck_assert_int_eq(run_cli(version), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(run_cli(bad[i]) == 2, "bad command line %zu did not exit 2", i);
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        char *const argv[] = {bin, "--listen", "127.0.0.1:1", bad_values[i][1], bad_values[i][2],
                              NULL};
        ck_assert_msg(run_cli(argv) == 2, "%s %s did not exit 2", argv[3], argv[4]);
    }
    /* A port already in use: a start-up failure, exit 1. */
    th_fakepay s;
    char listen[64];
    th_fakepay_start(&s, NULL);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s.port);
    char *const busy[] = {bin, "--listen", listen, NULL};
    ck_assert_int_eq(run_cli(busy), 1);
    th_fakepay_stop_clean(&s);
}
END_TEST

START_TEST(test_bounded)
{
    th_fakepay s;
    th_http_resp r;
    char key[32];

    th_fakepay_start(&s, "--max-payments", "3", NULL);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "bound-%d", i);
        th_http_pay(s.port, key, 100, "rsv-bound", &r);
        ck_assert_int_eq(r.status, 201);
        th_http_resp_free(&r);
    }
    expect_pay_error(s.port, "bound-over", 100, "rsv-bound", 503, "STORE_FULL");
    /* Replays and cancels still work when full. */
    th_http_pay(s.port, "bound-1", 100, "rsv-bound", &r);
    ck_assert_int_eq(r.status, 201);
    th_http_resp_free(&r);
    th_http_request(s.port, "POST", "/payments/pay_2/cancel", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    th_http_resp_free(&r);
    ck_assert_uint_eq(stats_count(s.port, NULL), 3);
    th_fakepay_stop_clean(&s);
}
END_TEST

int main(int argc, char **argv)
{
    const th_case cases[] = {
        {"approve", test_approve}, {"idempotent", test_idempotent},
        {"decline", test_decline}, {"fail", test_fail},
        {"cancel", test_cancel},   {"listing", test_listing},
        {"badreq", test_badreq},   {"latency", test_latency},
        {"seed", test_seed},       {"sigterm", test_sigterm},
        {"cli", test_cli},         {"bounded", test_bounded},
    };
    return th_check_main("fakepay", cases, sizeof cases / sizeof cases[0], 60, argc, argv);
}
