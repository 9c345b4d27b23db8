/*
 * lg_driver: the booking load generators' engine (library `loadgen`, used by bookbench and
 * chaos_load). It owns C load clients on one event loop, each with one keep-alive
 * cm_httpc per server (connected on first use), and the run around them: the seat maps
 * fetched at start, the duration timer, SIGINT/SIGTERM, the stop and its grace time. The
 * workload (what to send, what an answer means, what is reported) is the caller's, through
 * lg_workload: the driver asks it for each client's next request and hands it each answer.
 *
 * A client moves IDLE -> CHOOSING -> BUSY -> THINK -> CHOOSING ... -> IDLE (lg_driver.c
 * asserts every move). The run ends (the loop breaks) once every client is IDLE, the
 * workload's other work (others_idle) is idle, and the run is stopping or had clients;
 * or when the grace time after the stop runs out; or on a second signal when asked.
 *
 * Ownership: the driver borrows the event base, the servers and the workload context
 * (they outlive it); it owns its clients, connections, timers and signal events.
 * lg_driver_free frees them without calling the workload. Every workload callback runs
 * from the loop, never inside lg_driver_new; callbacks may call lg_driver_stop.
 */
#ifndef LG_DRIVER_H
#define LG_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_addr.h"
#include "cm_core.h"
#include "cm_httpc.h"

struct event_base;
typedef struct lg_driver lg_driver;

typedef enum lg_next {
    LG_SEND, /* send req now */
    LG_WAIT, /* nothing yet: ask again after req->wait_us */
    LG_DONE, /* this client has nothing more to send: it goes idle */
} lg_next;

typedef struct lg_request {
    const char *method; /* "GET", "POST", "DELETE" (static strings) */
    char path[128];
    char *body;        /* JSON, malloc'ed, or NULL; the driver frees it after sending */
    size_t server;     /* index into the servers */
    const char *token; /* bearer token sent as "Authorization: Bearer <token>" (SPEC §6a),
                          borrowed until the request is sent; NULL: none */
    uint64_t wait_us;  /* LG_WAIT: how long */
} lg_request;

/* Answers of the seat-map fetch at start. */
typedef enum lg_map_verdict {
    LG_MAP_OK,    /* accepted: on to the next map */
    LG_MAP_RETRY, /* ask again after retry_ms, from the next server */
    LG_MAP_FAIL,  /* the setup failed: the loop ends, setup_failed() says so */
} lg_map_verdict;

typedef struct lg_workload {
    /* The next request of client number `client` (0..clients-1); req is zeroed. */
    lg_next (*next)(void *ctx, uint32_t client, lg_request *req);
    /* The answer to the client's request (status 0: none, with resp->error); returns the
     * pause in microseconds before the client's next request (0: at once). */
    uint64_t (*answered)(void *ctx, uint32_t client, const cm_httpc_resp *resp);
    /* May be NULL. The run ended with this client's request in flight (lg_driver_abandon). */
    void (*abandoned)(void *ctx, uint32_t client);
    /* May be NULL. The setup is done: the duration runs from now, the clients start
     * right after this returns. */
    void (*started)(void *ctx);
    /* May be NULL. The run starts stopping; sig is the signal number or 0. */
    void (*stopping)(void *ctx, const char *why, int sig);
    /* May be NULL. Whether the workload's other work on the loop is idle: the run does
     * not end before it is. */
    bool (*others_idle)(void *ctx);
    /* May be NULL (no maps). Seat map i of the lg_driver_start list answered. */
    lg_map_verdict (*map)(void *ctx, size_t i, const cm_httpc_resp *resp);
} lg_workload;

typedef struct lg_driver_opts {
    const cm_addr *servers; /* borrowed */
    size_t nservers;
    uint32_t clients;
    uint32_t timeout_ms;       /* per request */
    uint32_t map_timeout_ms;   /* per seat-map request at start */
    uint32_t map_retry_ms;     /* pause before an LG_MAP_RETRY */
    uint64_t duration_ms;      /* from the end of the setup */
    uint32_t grace_ms;         /* after the stop: then the loop breaks; 0: no limit */
    bool second_signal_breaks; /* a signal while stopping breaks the loop at once */
    /* the clients drop 2xx bodies unread (cm_httpc skip_ok_body): a workload that looks
     * only at the status of its answers; the seat maps at start are read whole */
    bool skip_ok_bodies;
} lg_driver_opts;

/* Makes the clients and adds the signal events; NULL when out of memory or a server
 * address is unusable. */
lg_driver *lg_driver_new(struct event_base *base, const lg_driver_opts *o, const lg_workload *w,
                         void *ctx) CM_MUSTCHECK;
void lg_driver_free(lg_driver *d);
/* Fetches the seat maps of perfs[0..nperfs) one after another (workload->map judges each),
 * then arms the duration timer and starts every client. Run the loop after this. */
cm_rc lg_driver_start(lg_driver *d, const int64_t *perfs, size_t nperfs) CM_MUSTCHECK;
/* Starts the stop (once): no client starts a request any more; requests in flight end. */
void lg_driver_stop(lg_driver *d, const char *why);
bool lg_driver_stopping(const lg_driver *d);
/* Ends the loop if the run is over: for the workload's other work when it goes idle. */
void lg_driver_check_done(lg_driver *d);
/* Whether the seat-map setup failed (LG_MAP_FAIL) or did not finish (stopped before). */
bool lg_driver_setup_failed(const lg_driver *d);
bool lg_driver_setup_done(const lg_driver *d);
/* After the loop: each request still in flight goes to workload->abandoned; returns how
 * many. */
uint32_t lg_driver_abandon(lg_driver *d);

#endif
