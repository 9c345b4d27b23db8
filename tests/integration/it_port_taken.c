/*
 * it_port_taken: the harness starts servers on ports th_free_port found free a moment
 * before; any socket may take such a port before the server binds it (a CI run once lost
 * a test to that). Shown here with a port the test holds bound (not listening, so a
 * connect to it is refused, as to a free port):
 *  - th_redis_start and th_lockd_start, handed that port first, start the server on a
 *    fresh port and keep the first try's log, which names the bind failure;
 *  - so does th_server_wait_up (fakepay, reserved), spawning it again the same way;
 *  - the lockd that exits on it is seen at once, not after the 15 s start time.
 */
#include "it_common.h"
#include "th_fakepay.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int held_port;
static int hand_out_held; /* how many more th_free_port answers are the held port */

static int filter(int port)
{
    if (hand_out_held > 0) {
        hand_out_held--;
        return held_port;
    }
    return port;
}

/* A socket bound to a free loopback port without listen(): the port is taken. */
static int hold_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

START_TEST(test_port_taken)
{
    th_redis redis = {0};
    th_lockd l;
    char kept[600];
    int fd = hold_port(&held_port);
    th_set_port_filter(filter);

    /* redis: the first port it is handed is taken; it runs on the next. */
    hand_out_held = 1;
    ck_assert_msg(th_redis_start(&redis), "redis-server did not start");
    ck_assert_int_ne(redis.port, held_port);
    snprintf(kept, sizeof kept, "%s/redis.log.try1", redis.dir);
    ck_assert_msg(th_file_has(kept, "Address already in use"), "%s names no bind failure", kept);

    /* lockd: its first try gets the taken port for both listeners and exits; that is seen
     * at once, not after th_lockd_restart's 15 s */
    hand_out_held = 2;
    uint64_t t0 = th_now_ms();
    ck_assert(th_lockd_start(&l, &redis, 1, NULL)); /* try 1 on the held port, try 2 fresh */
    ck_assert_int_ne(l.port, held_port);
    snprintf(kept, sizeof kept, "%s.try1", l.log);
    ck_assert_msg(th_file_has(kept, "listen: cannot bind"), "%s names no bind failure", kept);
    ck_assert_msg(!exists(l.log) || !th_file_has(l.log, "cannot bind"),
                  "the second try's log starts empty");
    fprintf(stderr, "it_port_taken: lockd up on %d after a try on held %d, %llu ms\n", l.port,
            held_port, (unsigned long long)(th_now_ms() - t0));
    ck_assert_msg(th_now_ms() - t0 < 10000, "the failed try was waited out");

    th_stop(l.pid, true, 5000);

    /* a program of build/bin (th_server: fakepay here, reserved the same way) */
    th_fakepay fp;
    hand_out_held = 1;
    th_fakepay_start(&fp, NULL);
    ck_assert_int_ne(fp.port, held_port);
    ck_assert(th_wait_port(fp.port, 1000));
    ck_assert_str_eq(fp.spawned, "fakepay");
    th_server_stop_clean(&fp, 5000);
    th_set_port_filter(NULL);
    close(fd);
}
END_TEST

int main(void)
{
    return it_main("it_port_taken", test_port_taken, 60, NULL);
}
