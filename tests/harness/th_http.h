/*
 * th_http: the one raw HTTP/1.1 client of the tests (fakepay, reserved, chaos). Blocking
 * one-shot requests (one connection each, "Connection: close", read to EOF) and a batch
 * of requests sent at once over non-blocking sockets with one poll() loop (the booking
 * storm). Bytes are written as given, so tests can send what a real client would not.
 * Ownership: a th_http_resp owns its raw buffer and parsed JSON (th_http_resp_free);
 * a th_http_call owns its request until th_http_batch has sent it (then freed).
 * Who is calling (reserved's SPEC §6a): while a default bearer token is set
 * (th_http_set_bearer), every request built here carries "Authorization: Bearer <it>",
 * except th_http_request_raw calls whose own header lines hold an Authorization line.
 */
#ifndef TH_HTTP_H
#define TH_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct th_http_resp {
    int status;       /* HTTP status code, 0 when no response came */
    char *raw;        /* the whole response, NUL-terminated (owned; NULL when none) */
    const char *body; /* points into raw ("" when there is no response) */
    json_t *json;     /* the body parsed, NULL when it is not JSON (owned) */
} th_http_resp;

/* The default bearer token of every later request (copied; NULL or "" = none). A batch
 * call takes the token set when th_http_build made it. */
void th_http_set_bearer(const char *token);
/* The default bearer token, NULL when none. */
const char *th_http_bearer(void);

/* Opens a blocking connection (10 s send/receive bounds) and sends one request; key
 * (Idempotency-Key) and body may be NULL. Returns the socket, or -1. */
int th_http_send(int port, const char *method, const char *path, const char *key, const char *body,
                 size_t body_len);
/* Reads the response to EOF (10 s bound per read) and closes fd. */
void th_http_recv(int fd, th_http_resp *r);
/* Reads the response to EOF for at most timeout_ms (poll), and closes fd. */
void th_http_finish(int fd, th_http_resp *r, int timeout_ms);
/* th_http_send + th_http_recv; body_len is strlen(body); fails the test if it cannot send. */
void th_http_request(int port, const char *method, const char *path, const char *key,
                     const char *body, th_http_resp *r);
/* A request with extra header lines ("Origin: http://a\r\n", may be NULL) and no
 * Content-Type unless they hold one; any answer (or status 0). */
void th_http_request_raw(int port, const char *method, const char *path, const char *headers,
                         const char *body, th_http_resp *r);
/* th_http_request with token as the bearer of this one request (NULL: none), the default
 * kept for the next. */
void th_http_request_as(int port, const char *token, const char *method, const char *path,
                        const char *key, const char *body, th_http_resp *r);
/* POST /payments with {"amount","currency":"KRW","reference"} built by jansson. */
void th_http_pay(int port, const char *key, long long amount, const char *reference,
                 th_http_resp *r);

/* One request of a batch: fill port and req/len (th_http_build), the rest is the batch's. */
typedef struct th_http_call {
    int port;
    char *req;   /* the request bytes (owned until sent; freed by th_http_batch) */
    size_t len;  /* bytes in req */
    size_t sent; /* bytes of req written so far */
    char *buf;   /* what came back so far (handed to resp at the end) */
    size_t blen, bcap;
    int fd;
    bool done; /* answered, closed or failed */
    th_http_resp resp;
} th_http_call;
/* A request with Content-Type: application/json (malloc'd; *len its size). */
char *th_http_build(const char *method, const char *path, const char *key, const char *body,
                    size_t *len);
/* Runs every call at once (non-blocking sockets, one poll loop) until all answered or
 * timeout_ms passed; each call's resp is then set (status 0 when nothing came). */
void th_http_batch(th_http_call *calls, size_t n, int timeout_ms);
/* One request through the batch machinery, bounded by timeout_ms instead of 10 s reads. */
void th_http_request_ms(int port, const char *method, const char *path, const char *key,
                        const char *body, int timeout_ms, th_http_resp *r);

/* A header's value copied into out; false when absent. */
bool th_http_header(const th_http_resp *r, const char *name, char *out, size_t outlen);
/* Shorthands on the parsed body ("" / -1 when absent). */
const char *th_http_str(const th_http_resp *r, const char *field);
long long th_http_int(const th_http_resp *r, const char *field);
/* error.code of an error body, "" when absent. */
const char *th_http_error_code(const th_http_resp *r);
void th_http_resp_free(th_http_resp *r);

#endif
