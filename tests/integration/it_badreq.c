/*
 * it_badreq: every malformed line of a table (empty, unknown verb, missing and extra
 * arguments, bad numbers, negative, overflow, 300-byte resource, bad tags, NUL bytes,
 * non-ASCII, double spaces, ...) gets exactly the reply SPEC §2 names: "<tag> ERR
 * BADREQ <text>", or "* ERR BADREQ <text>" when no tag can be read. After each line
 * the same session still answers a PING, and another session is served all along.
 * A 5000-byte line (with or without its LF) gets "* ERR LINE_TOO_LONG" and the
 * connection is closed; lockd keeps serving the others. Pipelined requests with
 * different tags are answered out of order: a waiting ACQUIRE does not hold back a
 * later PING or INFO.
 */
#include "it_common.h"

#include <stdio.h>
#include <string.h>

#define ROW(s, e)                                                                                  \
    {                                                                                              \
        s, sizeof(s) - 1, e                                                                        \
    }
#define TOKEN "0123456789abcdef0123456789abcdef"

typedef struct row {
    const char *bytes;
    size_t len;
    const char *expect; /* the reply must be this, then end or a space */
} row;

static th_redis redis[3];
static th_lockd lockd;

static void setup(void)
{
    it_redis_start_n(redis, 3);
    it_lockd_start(&lockd, redis, 3, IT_FAST_YAML);
}

static const row fixed_rows[] = {
    ROW("", "* ERR BADREQ"),               /* empty line */
    ROW("\r", "* ERR BADREQ"),             /* empty after the CR is dropped */
    ROW(" ", "* ERR BADREQ"),              /* no tag */
    ROW(" t PING", "* ERR BADREQ"),        /* leading space: empty tag */
    ROW("bad!tag PING", "* ERR BADREQ"),   /* bad tag character */
    ROW("tag/1 PING", "* ERR BADREQ"),     /* bad tag character */
    ROW("t\tPING", "* ERR BADREQ"),        /* a tab is not a separator */
    ROW("\xc3\xa9t PING", "* ERR BADREQ"), /* non-ASCII tag */
    ROW("\0t PING", "* ERR BADREQ"),       /* NUL in the tag */
    ROW("t01", "t01 ERR BADREQ"),          /* tag, no verb */
    ROW("PING", "PING ERR BADREQ"),        /* no tag: the verb is read as the tag */
    ROW("t02 FROB", "t02 ERR BADREQ"),     /* unknown verb */
    ROW("t03 ACQUIREX r 1 0", "t03 ERR BADREQ"),
    ROW("t04 ACQUIRE", "t04 ERR BADREQ"), /* missing arguments */
    ROW("t05 ACQUIRE r", "t05 ERR BADREQ"),
    ROW("t06 ACQUIRE r 1000", "t06 ERR BADREQ"),
    ROW("t07 ACQUIRE r 1000 0 extra", "t07 ERR BADREQ"), /* extra argument */
    ROW("t08 ACQUIRE r abc 0", "t08 ERR BADREQ"),        /* not a number */
    ROW("t09 ACQUIRE r 1000 -1", "t09 ERR BADREQ"),      /* negative */
    ROW("t10 ACQUIRE r -5 0", "t10 ERR BADREQ"),
    ROW("t11 ACQUIRE r 18446744073709551616 0", "t11 ERR BADREQ"), /* 2^64: overflow */
    ROW("t12 ACQUIRE r 1000 99999999999999999999999", "t12 ERR BADREQ"),
    ROW("t13 ACQUIRE r 0x10 0", "t13 ERR BADREQ"),  /* hex */
    ROW("t14 ACQUIRE r +5 0", "t14 ERR BADREQ"),    /* sign */
    ROW("t15 ACQUIRE r 1e3 0", "t15 ERR BADREQ"),   /* exponent */
    ROW("t16 ACQUIRE r 1000 0 ", "t16 ERR BADREQ"), /* trailing space */
    ROW("t17  PING", "t17 ERR BADREQ"),             /* double space */
    ROW("t18 ACQUIRE  1000 0", "t18 ERR BADREQ"),   /* empty resource */
    ROW("t19 ACQUIRE r  1000 0", "t19 ERR BADREQ"), /* double space between arguments */
    ROW("t20 PING extra", "t20 ERR BADREQ"),
    ROW("t21 INFO now", "t21 ERR BADREQ"),
    ROW("t22 QUIT now", "t22 ERR BADREQ"), /* malformed QUIT must not close */
    ROW("t23 HELLO", "t23 ERR BADREQ"),
    ROW("t24 HELLO a b", "t24 ERR BADREQ"),
    ROW("t25 AUTH", "t25 ERR BADREQ"),
    ROW("t26 RENEW r", "t26 ERR BADREQ"),
    ROW("t27 RENEW r " TOKEN, "t27 ERR BADREQ"),                               /* missing lease */
    ROW("t28 RENEW r nothex 1000", "t28 ERR BADREQ"),                          /* bad token */
    ROW("t29 RENEW r 0123456789abcdef0123456789abcde 1000", "t29 ERR BADREQ"), /* 31 digits */
    ROW("t30 RELEASE r 0123456789ABCDEF0123456789ABCDEF", "t30 ERR BADREQ"),   /* uppercase */
    ROW("t31 RELEASE r", "t31 ERR BADREQ"),
    ROW("t32 RELEASE r " TOKEN " x", "t32 ERR BADREQ"),
    ROW("t33 ACQUIRE caf\xc3\xa9 1000 0", "t33 ERR BADREQ"), /* non-ASCII resource */
    ROW("t34 ACQUIRE r\x7f 1000 0", "t34 ERR BADREQ"),       /* DEL in the resource */
    ROW("t35 PI\0NG", "t35 ERR BADREQ"),                     /* NUL in the verb */
    ROW("t36 ACQUIRE r\0x 1000 0", "t36 ERR BADREQ"),        /* NUL in the resource */
    ROW("t37 ACQUIRE r 1000 0\r\r", "t37 ERR BADREQ"),       /* only one CR is dropped */
    ROW("t38 RELEASE r " TOKEN "\x01", "t38 ERR BADREQ"),    /* control byte */
    ROW("t39 ping x", "t39 ERR BADREQ"),                     /* lower case, extra argument */
    /* Well-formed controls: the parser is strict, not wrong. */
    ROW("c1 pInG", "c1 OK PONG"),          /* verbs are case-insensitive */
    ROW("c2 PING\r", "c2 OK PONG"),        /* CRLF */
    ROW("c3 RELEASE r " TOKEN, "c3 LOST"), /* valid, not held */
    ROW("abcdefghijklmnopqrstuvwxyz012345 PING", "abcdefghijklmnopqrstuvwxyz012345 OK PONG"),
};

static bool reply_matches(const char *line, const char *expect)
{
    size_t n = strlen(expect);
    return strncmp(line, expect, n) == 0 && (line[n] == '\0' || line[n] == ' ');
}

/* Sends one row + LF and a PING; both replies must come (in either order). */
static void check_row(th_conn *c, const row *r, int idx)
{
    char ping[32], pong[48], a[IT_LINE], b[IT_LINE];
    snprintf(ping, sizeof ping, "k%d PING\n", idx);
    snprintf(pong, sizeof pong, "k%d OK PONG", idx);
    ck_assert(th_send_raw(c, r->bytes, r->len));
    ck_assert(th_send_raw(c, "\n", 1));
    ck_assert(th_send_raw(c, ping, strlen(ping)));
    ck_assert_msg(th_recv(c, a, sizeof a, 2000), "row %d (expect '%s'): no reply", idx, r->expect);
    ck_assert_msg(th_recv(c, b, sizeof b, 2000), "row %d (expect '%s'): got '%s', then nothing",
                  idx, r->expect, a);
    const char *reply = strcmp(a, pong) == 0 ? b : a;
    const char *other = reply == a ? b : a;
    ck_assert_msg(strcmp(other, pong) == 0, "row %d: session did not go on: '%s' / '%s'", idx, a,
                  b);
    ck_assert_msg(reply_matches(reply, r->expect), "row %d: expected '%s', got '%s'", idx,
                  r->expect, reply);
}

/* The bystander session: PINGs, and now and then a full lock cycle. */
static void bystander(th_conn *c, int i)
{
    ck_assert_msg(it_ping(c, "b", 2000), "other session not served at row %d", i);
    if (i % 10 == 0) {
        it_grant g;
        char line[IT_LINE];
        ck_assert_int_eq(
            it_acquire(c, "ba", "Performance:bystander", 0, 1000, 2000, &g, line, sizeof line),
            IT_OK);
        ck_assert_int_eq(it_release(c, "br", "Performance:bystander", g.token, 2000), IT_OK);
    }
}

/* A line longer than 4096 bytes: one "* ERR LINE_TOO_LONG" and the connection closes. */
static void check_too_long(bool with_lf)
{
    static char big[5001];
    th_conn c;
    char line[IT_LINE];
    memcpy(big, "t PING ", 7);
    memset(big + 7, 'x', 5000 - 7);
    big[5000] = '\n';
    it_connect(&c, lockd.port, "toolong");
    ck_assert(th_send_raw(&c, big, with_lf ? 5001 : 5000));
    ck_assert_msg(th_recv(&c, line, sizeof line, 3000), "no reply to a 5000-byte line (LF %d)",
                  with_lf);
    ck_assert_msg(reply_matches(line, "* ERR LINE_TOO_LONG"), "5000-byte line: '%s'", line);
    ck_assert_msg(th_wait_closed(&c, 3000), "connection not closed after LINE_TOO_LONG");
    th_close(&c);
}

/* Pipelined: ACQUIRE that waits, then PING and INFO in the same write. */
static void check_out_of_order(void)
{
    th_conn holder, c;
    it_grant g, g2;
    char line[IT_LINE];
    it_connect(&holder, lockd.port, "holder");
    it_connect(&c, lockd.port, "pipeliner");
    ck_assert_int_eq(
        it_acquire(&holder, "h", "Performance:ooo", 10000, 0, 2000, &g, line, sizeof line), IT_OK);
    const char *batch = "a1 ACQUIRE Performance:ooo 10000 3000\na2 PING\na3 INFO\n";
    ck_assert(th_send_raw(&c, batch, strlen(batch)));
    ck_assert_msg(th_recv(&c, line, sizeof line, 1000), "no reply while a1 waits");
    ck_assert_msg(strcmp(line, "a2 OK PONG") == 0, "first reply '%s', want 'a2 OK PONG'", line);
    ck_assert_msg(th_recv(&c, line, sizeof line, 1000), "no INFO reply while a1 waits");
    ck_assert_msg(strncmp(line, "a3 OK ", 6) == 0, "second reply '%s', want 'a3 OK ...'", line);
    ck_assert_int_eq(it_release(&holder, "r", "Performance:ooo", g.token, 2000), IT_OK);
    ck_assert_msg(th_recv(&c, line, sizeof line, 2000), "a1 never answered");
    ck_assert_msg(it_classify(line, "a1", &g2) == IT_OK, "a1: '%s'", line);
    ck_assert_int_eq(it_release(&c, "r", "Performance:ooo", g2.token, 2000), IT_OK);
    th_close(&holder);
    th_close(&c);
}

START_TEST(test_badreq)
{
    static char res300[512], res257[512], line4096[4097], ok256[512];
    th_conn c, other;
    int idx = 0, malformed = 0;
    /* Generated rows: long resources and a line of exactly 4096 bytes (not too long). */
    static char fill[4096];
    memset(fill, 'a', sizeof fill);
    snprintf(res300, sizeof res300, "g1 ACQUIRE %.300s 1000 0", fill);
    snprintf(res257, sizeof res257, "g2 RELEASE %.257s %s", fill, TOKEN);
    snprintf(line4096, sizeof line4096, "g3 PING %.4088s", fill);
    snprintf(ok256, sizeof ok256, "g4 RELEASE %.256s %s", fill, TOKEN);
    const row gen_rows[] = {
        {res300, strlen(res300), "g1 ERR BADREQ"}, /* 300-byte resource */
        {res257, strlen(res257), "g2 ERR BADREQ"}, /* 257-byte resource */
        {line4096, strlen(line4096),
         "g3 ERR BADREQ"},                 /* 4096 bytes: extra argument, session goes on */
        {ok256, strlen(ok256), "g4 LOST"}, /* 256 bytes is still a valid resource */
    };

    it_connect(&c, lockd.port, "badreq");
    it_connect(&other, lockd.port, "bystander");
    for (size_t i = 0; i < (sizeof fixed_rows / sizeof fixed_rows[0]); i++, idx++) {
        check_row(&c, &fixed_rows[i], idx);
        malformed += strstr(fixed_rows[i].expect, "BADREQ") != NULL;
        bystander(&other, idx);
    }
    for (size_t i = 0; i < (sizeof gen_rows / sizeof gen_rows[0]); i++, idx++) {
        check_row(&c, &gen_rows[i], idx);
        malformed += strstr(gen_rows[i].expect, "BADREQ") != NULL;
        bystander(&other, idx);
    }
    ck_assert_int_ge(malformed, 30);
    fprintf(stderr, "it_badreq: %d rows (%d malformed) answered as the spec says\n", idx,
            malformed);

    check_too_long(true);
    ck_assert(it_ping(&c, "p1", 2000));
    bystander(&other, 0);
    check_too_long(false);
    ck_assert(it_ping(&c, "p2", 2000));
    bystander(&other, 0);

    check_out_of_order();
    ck_assert(it_ping(&c, "p3", 2000));
    th_close(&c);
    th_close(&other);
}
END_TEST

int main(void)
{
    return it_main("it_badreq", test_badreq, 50, setup);
}
