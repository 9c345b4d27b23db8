/*
 * eventbench: the seat-event benchmark of bench/events.sh (SPEC §8, issue 14 §1).
 *
 * Opens --streams SSE streams to --sub (GET /performances/{perf}/events, one connection
 * each, read by one epoll loop), then, from a second thread, books --bookings single
 * seats of the performance one after another through --book (POST .../reservations as
 * the --token bearer for --user, over one keep-alive connection; --rate paces them), and
 * records when each event reaches the streams. At the end it reads each event's commit
 * time (seat_events.created_at, set at COMMIT by migration 110) from --database and
 * prints, over the events of the bookings:
 *   commit -> first stream    the latency of one subscriber on that reserved
 *   commit -> every stream    the fan-out to all of them
 *   201 -> first stream       the booking's answer (sent after its commit) to the event:
 *                             negative when the event came first
 * as p50/p99/max in ms, and, with --rss-pid, the resident memory of that process before
 * the streams, with them, and after the bookings. One machine: the database's clock and
 * ours are the same clock. Exit 0 when every stream got every event, 1 otherwise, 2 on
 * usage errors.
 *
 * Ownership: everything is the process's; arrays are sized at start (bookings, streams).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct stream {
    int fd;
    bool live;      /* the 200 head came */
    char buf[8192]; /* bytes not parsed yet (a line at most) */
    size_t len;
    int64_t last_id;
} stream;

typedef struct booking {
    long long seat;
    int64_t answered_us; /* wall clock at the 201 */
    int status;
} booking;

/* An event of the run: when it reached the first and the last stream. */
typedef struct seen {
    int64_t id;
    int64_t first_us, last_us;
    int streams;
    long long seat; /* its (first) seat: which booking it is */
    double commit_us;
} seen;

static struct {
    const char *sub_host, *book_host, *token, *database;
    int sub_port, book_port;
    long long perf, user;
    int nstreams, nbookings;
    double rate;
    int rss_pid;
    stream *streams;
    booking *bookings;
    seen *seen;
    atomic_int nseen_hint;
    int nseen;
    atomic_bool booking_done;
    pthread_mutex_t mu;
} B;

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int connect_to(const char *host, int port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the streams ---- */

static void on_event(int64_t id, const char *data)
{
    int64_t now = wall_us();
    pthread_mutex_lock(&B.mu);
    seen *s = NULL;
    for (int i = B.nseen - 1; i >= 0 && i >= B.nseen - 64; i--)
        if (B.seen[i].id == id) {
            s = &B.seen[i];
            break;
        }
    if (!s) {
        for (int i = 0; i < B.nseen && !s; i++)
            if (B.seen[i].id == id)
                s = &B.seen[i];
    }
    if (!s && B.nseen < B.nbookings * 2 + 16) {
        s = &B.seen[B.nseen++];
        memset(s, 0, sizeof(*s));
        s->id = id;
        s->first_us = now;
        const char *p = strstr(data, "\"id\": ");
        s->seat = p ? atoll(p + 6) : -1;
    }
    if (s) {
        s->last_us = now;
        s->streams++;
    }
    pthread_mutex_unlock(&B.mu);
}

/* Parses the complete lines of st's buffer (after the head; chunk-size lines and blank
 * lines are skipped: an SSE line never looks like a bare hex number here). */
static void stream_parse(stream *st)
{
    char *start = st->buf;
    char *nl;
    while ((nl = memchr(start, '\n', st->len - (size_t)(start - st->buf))) != NULL) {
        *nl = '\0';
        if (nl > start && nl[-1] == '\r')
            nl[-1] = '\0';
        if (!st->live) {
            if (strncmp(start, "HTTP/1.1 200", 12) == 0)
                st->live = true;
            else if (strncmp(start, "HTTP/", 5) == 0) {
                fprintf(stderr, "eventbench: a stream was answered: %s\n", start);
                exit(1);
            }
        } else if (strncmp(start, "id: ", 4) == 0) {
            st->last_id = atoll(start + 4);
        } else if (strncmp(start, "data: ", 6) == 0) {
            on_event(st->last_id, start + 6);
        }
        start = nl + 1;
    }
    size_t left = st->len - (size_t)(start - st->buf);
    memmove(st->buf, start, left);
    st->len = left;
}

/* ---- the bookings (their own thread, blocking) ---- */

/* One request on fd and its answer's status (the body read and dropped). */
static int http_post(int fd, const char *path, const char *body)
{
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     path, B.token, strlen(body), body);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return 0;
    char buf[16384];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0)
            return 0;
        have += (size_t)r;
        buf[have] = '\0';
        char *eoh = strstr(buf, "\r\n\r\n");
        if (!eoh)
            continue;
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        size_t want = (size_t)(eoh - buf) + 4 + (cl ? strtoul(cl + 17, NULL, 10) : 0);
        if (have >= want)
            return atoi(buf + 9);
    }
}

static void *book_main(void *arg)
{
    (void)arg;
    int fd = connect_to(B.book_host, B.book_port, false);
    char path[96], body[128];
    snprintf(path, sizeof path, "/performances/%lld/reservations", B.perf);
    int64_t gap_us = B.rate > 0 ? (int64_t)(1e6 / B.rate) : 0;
    int64_t next = wall_us();
    for (int i = 0; i < B.nbookings && fd >= 0; i++) {
        if (gap_us > 0) {
            int64_t now = wall_us();
            if (next > now)
                usleep((useconds_t)(next - now));
            next += gap_us;
        }
        snprintf(body, sizeof body, "{\"userId\":%lld,\"seatIds\":[%lld]}", B.user,
                 B.bookings[i].seat);
        B.bookings[i].status = http_post(fd, path, body);
        B.bookings[i].answered_us = wall_us();
    }
    if (fd >= 0)
        close(fd);
    atomic_store(&B.booking_done, true);
    return NULL;
}

/* ---- the report ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *v, int n)
{
    if (n == 0) {
        printf("%-24s n/a\n", what);
        return;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    int p50 = (n - 1) / 2, p99 = (int)((n - 1) * 0.99);
    printf("%-24s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%d)\n", what, v[p50] / 1000.0,
           v[p99] / 1000.0, v[n - 1] / 1000.0, n);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: eventbench --sub H:P --perf ID --streams N [--book H:P --token T "
                 "--user U --database CONNINFO --bookings K [--rate R]] [--rss-pid PID]\n");
}

static bool host_port(const char *s, const char **host, int *port)
{
    const char *c = strrchr(s, ':');
    if (!c)
        return false;
    *host = strndup(s, (size_t)(c - s));
    *port = atoi(c + 1);
    return *port > 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"sub", 1, 0, 's'},     {"book", 1, 0, 'b'},     {"perf", 1, 0, 'p'},
        {"streams", 1, 0, 'n'}, {"bookings", 1, 0, 'k'}, {"rate", 1, 0, 'r'},
        {"token", 1, 0, 't'},   {"user", 1, 0, 'u'},     {"database", 1, 0, 'd'},
        {"rss-pid", 1, 0, 'm'}, {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    int o;
    B.nstreams = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            if (!host_port(optarg, &B.sub_host, &B.sub_port))
                return usage(stderr), 2;
            break;
        case 'b':
            if (!host_port(optarg, &B.book_host, &B.book_port))
                return usage(stderr), 2;
            break;
        case 'p':
            B.perf = atoll(optarg);
            break;
        case 'n':
            B.nstreams = atoi(optarg);
            break;
        case 'k':
            B.nbookings = atoi(optarg);
            break;
        case 'r':
            B.rate = atof(optarg);
            break;
        case 't':
            B.token = optarg;
            break;
        case 'u':
            B.user = atoll(optarg);
            break;
        case 'd':
            B.database = optarg;
            break;
        case 'm':
            B.rss_pid = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!B.sub_host || B.perf <= 0 || B.nstreams < 1 ||
        (B.nbookings > 0 && (!B.book_host || !B.token || B.user <= 0 || !B.database))) {
        usage(stderr);
        return 2;
    }
    struct rlimit rl = {(rlim_t)B.nstreams + 256, (rlim_t)B.nstreams + 256};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)B.nstreams + 256) {
        rl.rlim_cur =
            rl.rlim_max < (rlim_t)B.nstreams + 256 ? rl.rlim_max : (rlim_t)B.nstreams + 256;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pthread_mutex_init(&B.mu, NULL);
    B.streams = calloc((size_t)B.nstreams, sizeof(*B.streams));
    B.bookings = calloc((size_t)B.nbookings + 1, sizeof(*B.bookings));
    B.seen = calloc((size_t)B.nbookings * 2 + 16, sizeof(*B.seen));
    PGconn *db = NULL;
    if (B.nbookings > 0) { /* the free seats of the performance, in id order */
        db = PQconnectdb(B.database);
        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT vs.id FROM venue_seats vs JOIN performances p ON p.venue_id = vs.venue_id"
                 " WHERE p.id = %lld AND NOT EXISTS (SELECT 1 FROM reservation_seats r WHERE"
                 " r.performance_id = p.id AND r.seat_id = vs.id AND r.confirmed)"
                 " ORDER BY vs.id LIMIT %d",
                 B.perf, B.nbookings);
        PGresult *r = PQexec(db, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < B.nbookings) {
            fprintf(stderr, "eventbench: fewer than %d free seats: %s\n", B.nbookings,
                    PQerrorMessage(db));
            return 1;
        }
        for (int i = 0; i < B.nbookings; i++)
            B.bookings[i].seat = atoll(PQgetvalue(r, i, 0));
        PQclear(r);
    }
    long rss0 = B.rss_pid ? rss_kib(B.rss_pid) : -1;
    int ep = epoll_create1(0);
    char req[256];
    int reqlen = snprintf(req, sizeof req,
                          "GET /performances/%lld/events HTTP/1.1\r\nHost: x\r\n"
                          "Accept: text/event-stream\r\n\r\n",
                          B.perf);
    int64_t t0 = wall_us();
    for (int i = 0; i < B.nstreams; i++) {
        stream *st = &B.streams[i];
        st->fd = connect_to(B.sub_host, B.sub_port, false);
        if (st->fd < 0 || send(st->fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
            fprintf(stderr, "eventbench: stream %d: %s\n", i, strerror(errno));
            return 1;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = st};
        epoll_ctl(ep, EPOLL_CTL_ADD, st->fd, &e);
    }
    struct epoll_event evs[256];
    int live = 0;
    int64_t deadline = wall_us() + 60 * 1000000;
    bool booking_started = false;
    pthread_t th;
    int64_t quiet_since = 0;
    for (;;) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            stream *st = evs[i].data.ptr;
            ssize_t r = recv(st->fd, st->buf + st->len, sizeof(st->buf) - 1 - st->len, 0);
            if (r <= 0) {
                fprintf(stderr, "eventbench: a stream closed (%s)\n",
                        r == 0 ? "EOF" : strerror(errno));
                return 1;
            }
            bool was = st->live;
            st->len += (size_t)r;
            stream_parse(st);
            live += !was && st->live;
        }
        int64_t now = wall_us();
        if (!booking_started && live == B.nstreams) {
            printf("streams              %d open in %.1f ms\n", live, (now - t0) / 1000.0);
            if (B.rss_pid) {
                usleep(500000);
                long rss1 = rss_kib(B.rss_pid);
                printf("rss                  %.1f MiB before, %.1f MiB with %d streams: %.1f KiB a "
                       "stream\n",
                       rss0 / 1024.0, rss1 / 1024.0, live, (double)(rss1 - rss0) / live);
            }
            fflush(stdout);
            booking_started = true;
            if (B.nbookings == 0)
                break;
            pthread_create(&th, NULL, book_main, NULL);
        }
        if (booking_started && atomic_load(&B.booking_done)) {
            pthread_mutex_lock(&B.mu);
            bool all = B.nseen >= B.nbookings;
            for (int i = 0; all && i < B.nseen; i++)
                all = B.seen[i].streams >= B.nstreams;
            pthread_mutex_unlock(&B.mu);
            if (!quiet_since)
                quiet_since = now;
            if (all || now - quiet_since > 5000000)
                break;
        }
        if (now > deadline) {
            fprintf(stderr, "eventbench: %d of %d streams open after 60 s\n", live, B.nstreams);
            return 1;
        }
    }
    if (B.nbookings == 0)
        return 0;
    pthread_join(th, NULL);
    /* commit times of the events seen */
    int ok = 0;
    for (int i = 0; i < B.nbookings; i++)
        ok += B.bookings[i].status == 201;
    int64_t *first = calloc((size_t)B.nseen + 1, sizeof(int64_t));
    int64_t *every = calloc((size_t)B.nseen + 1, sizeof(int64_t));
    int64_t *from201 = calloc((size_t)B.nseen + 1, sizeof(int64_t));
    int nf = 0, ne = 0, n201 = 0, partial = 0;
    for (int i = 0; i < B.nseen; i++) {
        seen *s = &B.seen[i];
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT (extract(epoch FROM created_at) * 1000000)::bigint FROM seat_events"
                 " WHERE id = %lld",
                 (long long)s->id);
        PGresult *r = PQexec(db, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            int64_t commit = atoll(PQgetvalue(r, 0, 0));
            first[nf++] = s->first_us - commit;
            if (s->streams >= B.nstreams)
                every[ne++] = s->last_us - commit;
        }
        PQclear(r);
        partial += s->streams < B.nstreams;
        for (int k = 0; k < B.nbookings; k++)
            if (B.bookings[k].seat == s->seat && B.bookings[k].status == 201) {
                from201[n201++] = s->first_us - B.bookings[k].answered_us;
                break;
            }
    }
    printf("bookings             %d sent, %d booked (201), %d events seen, %d not on every "
           "stream\n",
           B.nbookings, ok, B.nseen, partial);
    report("commit -> first stream", first, nf);
    report("commit -> every stream", every, ne);
    report("201 -> first stream", from201, n201);
    if (B.rss_pid)
        printf("rss                  %.1f MiB after the bookings\n", rss_kib(B.rss_pid) / 1024.0);
    printf("RESULT streams=%d bookings=%d booked=%d events=%d partial=%d\n", B.nstreams,
           B.nbookings, ok, B.nseen, partial);
    PQfinish(db);
    return ok == B.nbookings && B.nseen >= ok && partial == 0 ? 0 : 1;
}
