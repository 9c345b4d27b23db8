/*
 * test_pay: how reserved reads the payment gateway's answers (rs_pay_parse), with the
 * answers fakepay never gives (fakepay's ids are short and it has no option to make them
 * long). A payment id longer than RS_PAY_ID_MAX is a gateway error, never kept cut: a cut
 * id named no payment, so the refund of such a booking cancelled nothing.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "rs_pay.h"
#include "ru_suites.h"

/* {"id":"<n bytes of 'p'>","status":status} into out. */
static void answer_with_id(char *out, size_t outlen, size_t n, const char *status)
{
    char id[512];
    ck_assert_uint_lt(n, sizeof(id));
    memset(id, 'p', n);
    id[n] = '\0';
    snprintf(out, outlen, "{\"id\":\"%s\",\"status\":\"%s\",\"amount\":1,\"reference\":\"r\"}", id,
             status);
}

static rs_pay_outcome parse(rs_pay_call call, int status, const char *body, char *id, size_t idlen)
{
    return rs_pay_parse(call, status, body, strlen(body), id, idlen);
}

/* A charge approved with an id of RS_PAY_ID_MAX bytes keeps all of it; one byte more
 * (or far more) is a gateway error, compensated like an unknown outcome: never an
 * approval with a cut id. A lookup that finds such a payment cannot name it either. */
START_TEST(test_long_payment_id)
{
    char body[1024], id[RS_PAY_ID_MAX + 1];
    answer_with_id(body, sizeof(body), RS_PAY_ID_MAX, "APPROVED");
    ck_assert_int_eq(parse(RS_PAY_CALL_CHARGE, 201, body, id, sizeof(id)), RS_PAY_APPROVED);
    ck_assert_uint_eq(strlen(id), RS_PAY_ID_MAX);
    static const size_t longer[] = {RS_PAY_ID_MAX + 1, 100, 300};
    for (size_t i = 0; i < sizeof(longer) / sizeof(longer[0]); i++) {
        answer_with_id(body, sizeof(body), longer[i], "APPROVED");
        ck_assert_msg(parse(RS_PAY_CALL_CHARGE, 201, body, id, sizeof(id)) == RS_PAY_UNKNOWN,
                      "a charge approved with an id of %zu bytes was taken (as '%s')", longer[i],
                      id);
        char items[1200];
        snprintf(items, sizeof(items), "{\"items\":[%s]}", body);
        ck_assert_msg(parse(RS_PAY_CALL_LOOKUP, 200, items, id, sizeof(id)) == RS_PAY_UNKNOWN,
                      "a lookup found a payment with an id of %zu bytes (as '%s')", longer[i], id);
        /* a cancel's id is not used: the cancel stands, the id is not cut */
        answer_with_id(body, sizeof(body), longer[i], "CANCELLED");
        ck_assert_int_eq(parse(RS_PAY_CALL_CANCEL, 200, body, id, sizeof(id)), RS_PAY_CANCELLED);
        ck_assert_str_eq(id, "");
    }
    /* the other answers as before */
    ck_assert_int_eq(parse(RS_PAY_CALL_CHARGE, 402, "{\"status\":\"DECLINED\"}", id, sizeof(id)),
                     RS_PAY_DECLINED);
    ck_assert_int_eq(parse(RS_PAY_CALL_CHARGE, 503, "", id, sizeof(id)), RS_PAY_UNKNOWN);
    ck_assert_int_eq(parse(RS_PAY_CALL_CHARGE, 201, "{\"id\":\"\"}", id, sizeof(id)),
                     RS_PAY_UNKNOWN);
    ck_assert_int_eq(parse(RS_PAY_CALL_LOOKUP, 200, "{\"items\":[]}", id, sizeof(id)),
                     RS_PAY_NOT_FOUND);
    ck_assert_int_eq(parse(RS_PAY_CALL_CANCEL, 404, "{}", id, sizeof(id)), RS_PAY_NOT_FOUND);
}
END_TEST

Suite *ru_pay_suite(void)
{
    const ru_case cases[] = {
        {"rbook_long_payment_id", test_long_payment_id, 0},
    };
    return ru_suite("pay", cases, sizeof(cases) / sizeof(cases[0]));
}
