/*
 * it_show: SHOW <resource> (SPEC 2b) reports the lock as a quorum of masters sees it:
 * through the lockd that granted it and through another one, `OK held=1 fence=<the
 * holder's fence> ttl_ms=<0 < n <= watchdog lease> holder=<the holder's HELLO name>
 * lockd=<the granting lockd's id, as its INFO says> waiters=<this lockd's waiters>`; a
 * free resource is `held=0 ... holder=- lockd=- waiters=0`; after a release the fence
 * stays; a malformed SHOW is ERR BADREQ; with `auth` set, SHOW before AUTH is ERR NOAUTH.
 */
#include "it_common.h"

#include <stdio.h>
#include <string.h>

#define RES "Performance:show"

/* lockd_id=<id> of INFO on c into id. */
static void info_id(th_conn *c, char *id, size_t len)
{
    char line[IT_LINE];
    ck_assert(th_request(c, "i", line, sizeof line, 2000, "INFO"));
    const char *p = strstr(line, " lockd_id=");
    ck_assert_msg(p != NULL, "INFO without lockd_id: '%s'", line);
    snprintf(id, len, "%.16s", p + strlen(" lockd_id="));
}

START_TEST(test_show)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b, c;
    th_conn holder, waiter, sa, sb, sc;
    it_grant g;
    char line[IT_LINE], want[IT_LINE], id_a[32];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_lockd_start(&b, redis, 3, IT_FAST_YAML);
    it_connect(&holder, a.port, "alice");
    it_connect(&waiter, a.port, "bob");
    it_connect(&sa, a.port, "viewer");
    it_connect(&sb, b.port, "viewer");
    info_id(&sa, id_a, sizeof id_a);

    ck_assert(th_request(&sa, "s", line, sizeof line, 2000, "SHOW " RES));
    ck_assert_str_eq(line, "s OK held=0 fence=0 ttl_ms=0 holder=- lockd=- waiters=0");

    ck_assert_msg(it_acquire(&holder, "a", RES, 0, 0, 2000, &g, line, sizeof line) == IT_OK, "'%s'",
                  line);
    ck_assert(th_send(&waiter, "w ACQUIRE " RES " 0 10000"));
    th_sleep_ms(100);
    th_conn *via[2] = {&sa, &sb};
    for (int i = 0; i < 2; i++) {
        unsigned long long fence, ttl;
        char holder_name[80], lockd_id[80];
        unsigned waiters;
        ck_assert(th_request(via[i], "s", line, sizeof line, 2000, "SHOW " RES));
        ck_assert_msg(sscanf(line,
                             "s OK held=1 fence=%llu ttl_ms=%llu holder=%79s lockd=%79s "
                             "waiters=%u",
                             &fence, &ttl, holder_name, lockd_id, &waiters) == 5,
                      "via %c: '%s'", "AB"[i], line);
        ck_assert_uint_eq(fence, g.fence);
        ck_assert_msg(ttl > 0 && ttl <= IT_WATCHDOG_LEASE_MS, "ttl_ms %llu", ttl);
        ck_assert_str_eq(holder_name, "alice");
        ck_assert_str_eq(lockd_id, id_a);
        ck_assert_uint_eq(waiters, i == 0 ? 1 : 0);
    }
    ck_assert(th_request(&sa, "b", line, sizeof line, 2000, "SHOW"));
    ck_assert_msg(strncmp(line, "b ERR BADREQ ", 13) == 0, "'%s'", line);
    ck_assert(th_request(&sa, "b", line, sizeof line, 2000, "show " RES " extra"));
    ck_assert_msg(strncmp(line, "b ERR BADREQ ", 13) == 0, "'%s'", line);

    /* released and handed to bob: bob holds it now; then bob releases: nothing held,
     * the fence stays */
    ck_assert_int_eq(it_release(&holder, "r", RES, g.token, 2000), IT_OK);
    it_grant gw;
    ck_assert_msg(it_wait_reply(&waiter, "w", line, sizeof line, 3000), "waiter not granted");
    ck_assert_int_eq(it_classify(line, "w", &gw), IT_OK);
    ck_assert(th_request(&sb, "s", line, sizeof line, 2000, "SHOW " RES));
    snprintf(want, sizeof want, "holder=bob lockd=%s waiters=0", id_a);
    ck_assert_msg(strstr(line, want) != NULL, "'%s' lacks '%s'", line, want);
    ck_assert_int_eq(it_release(&waiter, "r", RES, gw.token, 2000), IT_OK);
    /* RELEASE is answered before the masters have deleted the key: look until they have */
    snprintf(want, sizeof want, "s OK held=0 fence=%llu ttl_ms=0 holder=- lockd=- waiters=0",
             (unsigned long long)gw.fence);
    for (int i = 0; i < 50; i++) {
        ck_assert(th_request(&sb, "s", line, sizeof line, 2000, "SHOW " RES));
        if (strcmp(line, want) == 0)
            break;
        th_sleep_ms(20);
    }
    ck_assert_str_eq(line, want);

    /* with auth set, SHOW needs AUTH */
    it_lockd_start(&c, redis, 3, IT_FAST_YAML "auth: s3cret\n");
    it_connect(&sc, c.port, "viewer");
    ck_assert(th_request(&sc, "s", line, sizeof line, 2000, "SHOW " RES));
    ck_assert_msg(strncmp(line, "s ERR NOAUTH ", 13) == 0, "'%s'", line);
    ck_assert(th_request(&sc, "x", line, sizeof line, 2000, "AUTH s3cret"));
    ck_assert(th_request(&sc, "s", line, sizeof line, 2000, "SHOW " RES));
    ck_assert_msg(strncmp(line, "s OK held=0 ", 12) == 0, "'%s'", line);
    th_close(&holder);
    th_close(&waiter);
    th_close(&sa);
    th_close(&sb);
    th_close(&sc);
}
END_TEST

int main(void)
{
    return it_main("it_show", test_show, 30, NULL);
}
