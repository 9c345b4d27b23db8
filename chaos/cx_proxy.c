/*
 * cx_proxy: the TCP fault proxy of the chaos suite (build/bin/chaos_proxy) and its main().
 * Owns the links (client <-> upstream bufferevent pairs), the per-direction chunk queues
 * that carry latency and blackhole, the control port and the process's signals.
 *
 * A link's data path: read from side i -> a chunk (an evbuffer moved out of the input,
 * no copy) appended to queue i with a due time -> the direction's evtimer moves due
 * chunks, in order, to the other side's output. EOF travels as a chunk too, so a delayed
 * or held connection closes only after its data. A blackholed chunk has no due time
 * until the blackhole ends, so a partition keeps TCP open and loses nothing.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_log.h"
#include "cm_time.h"
#include "cm_flags.h"
#include "cm_parse.h"
#include "cx_cli.h"
#include "cx_proxy.h"

#define CX_HELD             UINT64_MAX /* due time of a blackholed chunk */
#define CX_DEFAULT_BUFFER   (1024 * 1024)
#define CX_MAX_DELAY_MS     600000
#define CX_CONTROL_MAX_LINE 1024

typedef struct cx_chunk {
    struct cx_chunk *next;
    struct evbuffer *data; /* NULL: the source's EOF */
    uint64_t due_us;       /* CM monotonic us; CX_HELD while blackholed */
} cx_chunk;

struct cx_link;

/* One direction of a link: bytes read from bev[idx] go to bev[1 - idx]. */
typedef struct cx_dir {
    struct cx_link *link;
    int idx;        /* 0: client -> upstream, 1: upstream -> client */
    cx_chunk *head; /* oldest first */
    cx_chunk *tail;
    size_t queued;     /* bytes in the chunks */
    uint64_t last_due; /* due time of the newest scheduled chunk: keeps order under jitter */
    struct event *timer;
    bool eof_sent; /* the source's EOF reached the front: no more data this way */
    bool eof_done; /* ...and the destination got it (SHUT_WR once its output drained) */
} cx_dir;

typedef struct cx_link {
    struct cx_proxy *p;
    struct cx_link *prev, *next;
    uint64_t id;
    struct bufferevent *bev[2]; /* 0: accepted client, 1: upstream */
    cx_dir dir[2];
} cx_link;

typedef struct cx_ctl {
    struct cx_proxy *p;
    struct cx_ctl *prev, *next;
    struct bufferevent *bev;
    bool closing; /* reply queued, close once written */
} cx_ctl;

struct cx_proxy {
    struct event_base *base;
    cx_proxy_opts o;
    struct sockaddr_storage up_sa;
    int up_salen;
    struct evconnlistener *lis;
    struct evconnlistener *ctl_lis;
    cx_link *links;
    cx_ctl *ctls;
    uint64_t rng;
    /* faults */
    uint32_t latency_ms;
    uint32_t jitter_ms;
    bool blackhole;
    bool refuse;
    /* stats */
    uint64_t next_id;
    size_t active;
    uint64_t accepted;
    uint64_t bytes[2]; /* delivered per direction: 0 up, 1 down */
    uint64_t dropped;  /* links reset by "drop" */
    uint64_t refused;
    uint64_t overflows;
    uint64_t upstream_fail;
};

/* ---- helpers ---- */

static uint64_t rng_next(cx_proxy *p)
{
    /* xorshift64*: reproducible jitter for a given --seed */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 2685821657736338717ULL;
}

static void set_rst(struct bufferevent *bev)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static size_t link_held(const cx_link *l)
{
    return l->dir[0].queued + l->dir[1].queued;
}

/* Closes both sides (with RST when rst) and frees the link. The caller must not touch
 * the link afterwards; libevent defers the bufferevent frees past running callbacks. */
static void link_close(cx_link *l, bool rst, const char *why)
{
    cx_proxy *p = l->p;
    log_debug("link %" PRIu64 ": closed (%s)", l->id, why);
    for (int i = 0; i < 2; i++) {
        if (l->bev[i]) {
            if (rst)
                set_rst(l->bev[i]);
            bufferevent_free(l->bev[i]);
        }
        cx_dir *d = &l->dir[i];
        if (d->timer)
            event_free(d->timer);
        for (cx_chunk *c = d->head, *n; c; c = n) {
            n = c->next;
            if (c->data)
                evbuffer_free(c->data);
            free(c);
        }
    }
    if (l->prev)
        l->prev->next = l->next;
    else
        p->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    p->active--;
    free(l);
}

static uint64_t delay_us(cx_proxy *p)
{
    uint64_t ms = p->latency_ms;
    if (p->jitter_ms)
        ms += rng_next(p) % ((uint64_t)p->jitter_ms + 1);
    return ms * 1000;
}

/* A due time for a chunk scheduled now, never before the previous one (order kept). */
static uint64_t next_due(cx_dir *d)
{
    uint64_t due = cm_now_us() + delay_us(d->link->p);
    if (due < d->last_due)
        due = d->last_due;
    d->last_due = due;
    return due;
}

/* The source's EOF goes on as a half-close, so the other direction keeps flowing (a
 * client may shut down its side and still read the answer). Both directions closed:
 * the link ends. Returns false when the link was closed. */
static bool dir_eof_out(cx_dir *d)
{
    cx_link *l = d->link;
    evutil_socket_t fd = bufferevent_getfd(l->bev[1 - d->idx]);
    d->eof_done = true;
    if (fd >= 0)
        (void)shutdown(fd, SHUT_WR);
    if (l->dir[1 - d->idx].eof_done) {
        link_close(l, false, "eof both ways");
        return false;
    }
    return true;
}

/* Moves every due chunk of d to its destination, re-arms the timer for the next one.
 * Returns false when the link was closed (then d is gone). */
static bool dir_pump(cx_dir *d)
{
    cx_link *l = d->link;
    struct bufferevent *dst = l->bev[1 - d->idx];
    uint64_t now = cm_now_us();

    while (d->head && d->head->due_us != CX_HELD && d->head->due_us <= now && !d->eof_sent) {
        cx_chunk *c = d->head;
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        if (c->data) {
            size_t n = evbuffer_get_length(c->data);
            d->queued -= n;
            l->p->bytes[d->idx] += n;
            evbuffer_add_buffer(bufferevent_get_output(dst), c->data);
            evbuffer_free(c->data);
        } else {
            d->eof_sent = true;
        }
        free(c);
    }
    evtimer_del(d->timer);
    if (d->head && d->head->due_us != CX_HELD && !d->eof_sent) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = 0};
        uint64_t wait = d->head->due_us > now ? d->head->due_us - now : 0;
        tv.tv_sec = (time_t)(wait / 1000000);
        tv.tv_usec = (suseconds_t)(wait % 1000000);
        evtimer_add(d->timer, &tv);
    }
    if (d->eof_sent && !d->eof_done && evbuffer_get_length(bufferevent_get_output(dst)) == 0)
        return dir_eof_out(d);
    return true;
}

static void dir_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)dir_pump(arg);
}

/* Appends a chunk (data, or NULL for EOF) to d. Returns false when the link was closed. */
static bool dir_push(cx_dir *d, struct evbuffer *data)
{
    cx_link *l = d->link;
    cx_proxy *p = l->p;
    cx_chunk *c = calloc(1, sizeof(*c));
    if (!c) {
        if (data)
            evbuffer_free(data);
        link_close(l, true, "out of memory");
        return false;
    }
    c->data = data;
    c->due_us = p->blackhole ? CX_HELD : next_due(d);
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    if (data)
        d->queued += evbuffer_get_length(data);
    size_t unsent = d->queued + evbuffer_get_length(bufferevent_get_output(l->bev[1 - d->idx]));
    if (unsent > p->o.max_buffer) {
        log_warn("link %" PRIu64 ": %zu bytes held %s, over the %zu cap: dropped", l->id, unsent,
                 d->idx == 0 ? "upstream-bound" : "client-bound", p->o.max_buffer);
        p->overflows++;
        link_close(l, true, "overflow");
        return false;
    }
    return dir_pump(d);
}

static void side_read_cb(struct bufferevent *bev, void *arg)
{
    cx_dir *d = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) == 0 || d->eof_sent)
        return;
    struct evbuffer *data = evbuffer_new();
    if (!data) {
        link_close(d->link, true, "out of memory");
        return;
    }
    evbuffer_add_buffer(data, in);
    (void)dir_push(d, data);
}

/* The destination's output drained: a link whose EOF was delivered can close now. */
static void side_write_cb(struct bufferevent *bev, void *arg)
{
    cx_dir *src_of_bev = arg; /* the direction reading from this bev */
    cx_dir *into = &src_of_bev->link->dir[1 - src_of_bev->idx];
    if (into->eof_sent && !into->eof_done)
        (void)dir_eof_out(into);
}

static void side_event_cb(struct bufferevent *bev, short what, void *arg)
{
    cx_dir *d = arg;
    cx_link *l = d->link;
    if (what & BEV_EVENT_CONNECTED) {
        log_debug("link %" PRIu64 ": upstream connected", l->id);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        if (d->idx == 1 && !(what & BEV_EVENT_READING) && !(what & BEV_EVENT_WRITING))
            l->p->upstream_fail++;
        log_debug("link %" PRIu64 ": %s side error: %s", l->id, d->idx ? "upstream" : "client",
                  evutil_socket_error_to_string(err));
        /* mirror a reset to the other side */
        link_close(l, true, "error");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        bufferevent_disable(bev, EV_READ);
        (void)dir_push(d, NULL);
    }
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    cx_proxy *p = arg;
    cx_link *l = NULL;

    p->accepted++;
    if (p->refuse) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        evutil_closesocket(fd);
        p->refused++;
        return;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        evutil_closesocket(fd);
        return;
    }
    l->p = p;
    l->id = ++p->next_id;
    l->next = p->links;
    if (p->links)
        p->links->prev = l;
    p->links = l;
    p->active++;
    l->bev[0] = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!l->bev[0])
        evutil_closesocket(fd);
    l->bev[1] = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    for (int i = 0; i < 2; i++) {
        l->dir[i].link = l;
        l->dir[i].idx = i;
        l->dir[i].timer = evtimer_new(p->base, dir_timer_cb, &l->dir[i]);
    }
    if (!l->bev[0] || !l->bev[1] || !l->dir[0].timer || !l->dir[1].timer)
        goto fail;
    for (int i = 0; i < 2; i++)
        bufferevent_setcb(l->bev[i], side_read_cb, side_write_cb, side_event_cb, &l->dir[i]);
    /* client bytes are queued (the upstream bufferevent buffers them until connected) */
    bufferevent_enable(l->bev[0], EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(l->bev[1], (struct sockaddr *)&p->up_sa, p->up_salen) != 0) {
        p->upstream_fail++;
        goto fail;
    }
    log_debug("link %" PRIu64 ": accepted", l->id);
    return;
fail:
    link_close(l, true, "setup failed");
}

/* ---- faults ---- */

static size_t drop_all(cx_proxy *p)
{
    size_t n = 0;
    while (p->links) {
        link_close(p->links, true, "drop");
        n++;
    }
    p->dropped += n;
    return n;
}

static void hold_all(cx_proxy *p)
{
    for (cx_link *l = p->links; l; l = l->next)
        for (int i = 0; i < 2; i++) {
            for (cx_chunk *c = l->dir[i].head; c; c = c->next)
                c->due_us = CX_HELD;
            evtimer_del(l->dir[i].timer);
        }
}

static void release_all(cx_proxy *p)
{
    for (cx_link *l = p->links, *next; l; l = next) {
        next = l->next; /* pumping may close l */
        bool open = true;
        for (int i = 0; i < 2 && open; i++) {
            cx_dir *d = &l->dir[i];
            for (cx_chunk *c = d->head; c; c = c->next)
                if (c->due_us == CX_HELD)
                    c->due_us = next_due(d);
            open = dir_pump(d);
        }
    }
}

static bool parse_ms(const char *s, uint32_t *out)
{
    uint64_t v;
    if (!cm_parse_u64(s, 0, CX_MAX_DELAY_MS, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static int parse_onoff(const char *s)
{
    if (s && strcmp(s, "on") == 0)
        return 1;
    if (s && strcmp(s, "off") == 0)
        return 0;
    return -1;
}

void cx_proxy_command(cx_proxy *p, const char *line, char *reply, size_t replylen)
{
    char buf[CX_CONTROL_MAX_LINE + 1];
    char *argv[4];
    int argc = 0;
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", line);
    for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (argc == (int)CM_ARRAY_LEN(argv)) {
            snprintf(reply, replylen, "ERR too many arguments");
            return;
        }
        argv[argc++] = t;
    }
    if (argc == 0) {
        snprintf(reply, replylen, "ERR empty command");
        return;
    }
    const char *cmd = argv[0];
    if (strcmp(cmd, "latency") == 0) {
        uint32_t ms, jit = 0;
        if (argc < 2 || argc > 3 || !parse_ms(argv[1], &ms) ||
            (argc == 3 && !parse_ms(argv[2], &jit))) {
            snprintf(reply, replylen, "ERR usage: latency MS [JITTER_MS] (0..%d)", CX_MAX_DELAY_MS);
            return;
        }
        p->latency_ms = ms;
        p->jitter_ms = jit;
        log_info("fault: latency %u ms jitter %u ms", ms, jit);
        snprintf(reply, replylen, "OK latency %u %u", ms, jit);
    } else if (strcmp(cmd, "drop") == 0) {
        if (argc != 1) {
            snprintf(reply, replylen, "ERR usage: drop");
            return;
        }
        size_t n = drop_all(p);
        log_info("fault: dropped %zu connections", n);
        snprintf(reply, replylen, "OK dropped %zu", n);
    } else if (strcmp(cmd, "blackhole") == 0 || strcmp(cmd, "refuse") == 0) {
        int on = argc == 2 ? parse_onoff(argv[1]) : -1;
        if (on < 0) {
            snprintf(reply, replylen, "ERR usage: %s on|off", cmd);
            return;
        }
        if (cmd[0] == 'b') {
            bool was = p->blackhole;
            p->blackhole = on;
            if (on && !was)
                hold_all(p);
            else if (!on && was)
                release_all(p);
        } else {
            p->refuse = on;
        }
        log_info("fault: %s %s", cmd, on ? "on" : "off");
        snprintf(reply, replylen, "OK %s %s", cmd, on ? "on" : "off");
    } else if (strcmp(cmd, "reset") == 0) {
        if (argc != 1) {
            snprintf(reply, replylen, "ERR usage: reset");
            return;
        }
        p->latency_ms = p->jitter_ms = 0;
        p->refuse = false;
        if (p->blackhole) {
            p->blackhole = false;
            release_all(p);
        }
        log_info("fault: reset");
        snprintf(reply, replylen, "OK reset");
    } else if (strcmp(cmd, "stats") == 0) {
        size_t held = 0;
        if (argc != 1) {
            snprintf(reply, replylen, "ERR usage: stats");
            return;
        }
        for (cx_link *l = p->links; l; l = l->next)
            held += link_held(l);
        snprintf(
            reply, replylen,
            "OK connections=%" PRIu64 " active=%zu bytes_up=%" PRIu64 " bytes_down=%" PRIu64
            " held_bytes=%zu latency_ms=%u jitter_ms=%u blackhole=%s refuse=%s dropped=%" PRIu64
            " refused=%" PRIu64 " overflows=%" PRIu64 " upstream_fail=%" PRIu64,
            p->accepted, p->active, p->bytes[0], p->bytes[1], held, p->latency_ms, p->jitter_ms,
            p->blackhole ? "on" : "off", p->refuse ? "on" : "off", p->dropped, p->refused,
            p->overflows, p->upstream_fail);
    } else {
        snprintf(reply, replylen, "ERR unknown command '%.40s'", cmd);
    }
}

/* ---- control port ---- */

static void ctl_free(cx_ctl *c)
{
    cx_proxy *p = c->p;
    bufferevent_free(c->bev);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->ctls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
    cx_ctl *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    char reply[512];
    char *line;
    size_t n;

    if (c->closing)
        return;
    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
        if (n > CX_CONTROL_MAX_LINE || memchr(line, '\0', n) != NULL)
            snprintf(reply, sizeof(reply), "ERR bad line");
        else
            cx_proxy_command(c->p, line, reply, sizeof(reply));
        free(line);
        evbuffer_add_printf(out, "%s\n", reply);
    }
    if (evbuffer_get_length(in) > CX_CONTROL_MAX_LINE) {
        evbuffer_add_printf(out, "ERR line too long\n");
        evbuffer_drain(in, evbuffer_get_length(in));
        c->closing = true;
        bufferevent_disable(bev, EV_READ);
    }
}

static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
    cx_ctl *c = arg;
    if (c->closing)
        ctl_free(c);
}

static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        ctl_free(arg);
}

static void on_ctl_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    cx_proxy *p = arg;
    cx_ctl *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->p = p;
    c->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->next = p->ctls;
    if (p->ctls)
        p->ctls->prev = c;
    p->ctls = c;
    bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- setup ---- */

static cm_rc to_sockaddr(const cm_addr *a, struct sockaddr_storage *ss, int *len)
{
    char text[CM_HOST_MAX + 16];
    const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1" : a->host;
    if (strchr(host, ':'))
        snprintf(text, sizeof(text), "[%s]:%d", host, a->port);
    else
        snprintf(text, sizeof(text), "%s:%d", host, a->port);
    *len = (int)sizeof(*ss);
    memset(ss, 0, sizeof(*ss));
    return evutil_parse_sockaddr_port(text, (struct sockaddr *)ss, len) == 0 ? CM_OK : CM_ERR;
}

static struct evconnlistener *listen_on(cx_proxy *p, const cm_addr *a, evconnlistener_cb cb)
{
    struct sockaddr_storage ss;
    int len;
    char text[CM_HOST_MAX + 16];
    struct evconnlistener *lis = NULL;

    if (to_sockaddr(a, &ss, &len) == CM_OK)
        lis = evconnlistener_new_bind(
            p->base, cb, p, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
            (struct sockaddr *)&ss, len);
    if (!lis)
        log_error("cannot listen on %s: %s", cm_addr_format(a, text, sizeof(text)),
                  strerror(errno));
    return lis;
}

cx_proxy *cx_proxy_new(struct event_base *base, const cx_proxy_opts *opts)
{
    cx_proxy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->o = *opts;
    if (p->o.max_buffer == 0)
        p->o.max_buffer = CX_DEFAULT_BUFFER;
    p->rng = opts->seed ? opts->seed : 0x9e3779b97f4a7c15ULL;
    if (to_sockaddr(&opts->upstream, &p->up_sa, &p->up_salen) != CM_OK) {
        log_error("bad upstream address");
        goto fail;
    }
    p->lis = listen_on(p, &opts->listen, on_accept);
    if (!p->lis)
        goto fail;
    if (opts->control.port) {
        p->ctl_lis = listen_on(p, &opts->control, on_ctl_accept);
        if (!p->ctl_lis)
            goto fail;
    }
    return p;
fail:
    cx_proxy_free(p);
    return NULL;
}

void cx_proxy_free(cx_proxy *p)
{
    if (!p)
        return;
    while (p->links)
        link_close(p->links, false, "shutdown");
    while (p->ctls)
        ctl_free(p->ctls);
    if (p->lis)
        evconnlistener_free(p->lis);
    if (p->ctl_lis)
        evconnlistener_free(p->ctl_lis);
    free(p);
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: chaos_proxy --listen H:P --upstream H:P --control H:P [options]\n"
            "  --listen H:P       accept clients here (loopback only)\n"
            "  --upstream H:P     forward every connection here (loopback only)\n"
            "  --control H:P      line protocol: latency MS [JITTER], drop, blackhole on|off,\n"
            "                     refuse on|off, reset, stats (replies OK ... / ERR ...)\n"
            "  --seed S           jitter PRNG seed (1)\n"
            "  --max-buffer BYTES per-direction cap on held bytes; over it the link is reset "
            "(%d)\n"
            "  --log-level L      error|warn|info|debug (info)\n"
            "  --help, --version\n",
            CX_DEFAULT_BUFFER);
}

/* 0: run; 1: --help/--version served; 2: usage error (printed). */
static int parse_args(int argc, char **argv, cx_proxy_opts *o, cm_log_level *level)
{
    uint64_t max_buffer = o->max_buffer;
    const cm_flag flags[] = {
        {.name = "listen",
         .type = CM_FLAG_CUSTOM,
         .dst = &o->listen,
         .parse = cx_cli_parse_loopback,
         .required = true,
         .metavar = "H:P"},
        {.name = "upstream",
         .type = CM_FLAG_CUSTOM,
         .dst = &o->upstream,
         .parse = cx_cli_parse_loopback,
         .required = true,
         .metavar = "H:P"},
        {.name = "control",
         .type = CM_FLAG_CUSTOM,
         .dst = &o->control,
         .parse = cx_cli_parse_loopback,
         .required = true,
         .metavar = "H:P"},
        {.name = "seed",
         .type = CM_FLAG_U64,
         .dst = &o->seed,
         .lo = 0,
         .hi = UINT64_MAX,
         .want = "an unsigned integer"},
        {.name = "max-buffer",
         .type = CM_FLAG_U64,
         .dst = &max_buffer,
         .lo = 1024,
         .hi = (uint64_t)1 << 30,
         .want = "1024..1073741824"},
        {.name = "log-level", .type = CM_FLAG_LOG_LEVEL, .dst = level},
    };
    const cm_flags_spec spec = {
        .prog = "chaos_proxy", .flags = flags, .nflags = CM_ARRAY_LEN(flags), .usage = usage};
    cm_flags_result res = cm_flags_parse(&spec, argc, argv, 1, NULL);
    if (res != CM_FLAGS_RUN)
        return (int)res;
    o->max_buffer = (size_t)max_buffer;
    return 0;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    log_info("signal %d: stopping", (int)sig);
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    cx_proxy_opts o;
    cm_log_level level = CM_LOG_INFO;
    struct event_base *base = NULL;
    struct event *sig_term = NULL, *sig_int = NULL;
    cx_proxy *p = NULL;
    char a[3][CM_HOST_MAX + 16];
    int rc;

    memset(&o, 0, sizeof(o));
    o.seed = 1;
    rc = parse_args(argc, argv, &o, &level);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    cm_log_init("chaos_proxy", level);
    signal(SIGPIPE, SIG_IGN);
    rc = 1;
    base = event_base_new();
    if (!base)
        goto done;
    sig_term = evsignal_new(base, SIGTERM, signal_cb, base);
    sig_int = evsignal_new(base, SIGINT, signal_cb, base);
    if (!sig_term || !sig_int || evsignal_add(sig_term, NULL) != 0 ||
        evsignal_add(sig_int, NULL) != 0)
        goto done;
    p = cx_proxy_new(base, &o);
    if (!p)
        goto done;
    log_info("chaos_proxy %s: %s -> %s, control %s", BOOKING_VERSION,
             cm_addr_format(&o.listen, a[0], sizeof(a[0])),
             cm_addr_format(&o.upstream, a[1], sizeof(a[1])),
             cm_addr_format(&o.control, a[2], sizeof(a[2])));
    if (event_base_dispatch(base) < 0)
        log_error("event loop failed");
    else
        rc = 0;
done:
    cx_proxy_free(p);
    if (sig_term)
        event_free(sig_term);
    if (sig_int)
        event_free(sig_int);
    if (base)
        event_base_free(base);
    return rc;
}
