/*
 * fpt: helpers for the fakepay black-box tests. Starts the real build/bin/fakepay on a
 * free loopback port through the th harness, and speaks HTTP/1.1 to it with a tiny
 * blocking client (one request per connection, "Connection: close", read to EOF).
 * Responses own their buffers and parsed JSON: free them with fpt_resp_free.
 */
#ifndef FPT_H
#define FPT_H

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct fpt_server {
    pid_t pid;
    int port;
    char log[512];
} fpt_server;

typedef struct fpt_resp {
    int status;       /* HTTP status code, 0 when no response came */
    char *raw;        /* the whole response, NUL-terminated (owned) */
    const char *body; /* points into raw */
    json_t *json;     /* the body parsed, NULL when it is not JSON (owned) */
} fpt_resp;

/* Starts fakepay with "--listen 127.0.0.1:<free port>" plus extra args (NULL-terminated
 * list) and waits until it accepts connections; fails the test otherwise. */
void fpt_start(fpt_server *s, ...) __attribute__((sentinel));
/* SIGTERM, wait for the exit and fail the test unless it exited 0 (ASan leak reports
 * make the exit status non-zero, so this is also the leak check). */
void fpt_stop_clean(fpt_server *s);
/* Prints the last lines of the server's log to stderr. */
void fpt_dump_log(const fpt_server *s);

/* Opens a connection and sends one request; key (Idempotency-Key) and body may be NULL.
 * Returns the socket, or -1. */
int fpt_send(int port, const char *method, const char *path, const char *key, const char *body,
             size_t body_len);
/* Reads the response to EOF (10 s bound) and closes fd. */
void fpt_recv(int fd, fpt_resp *r);
/* fpt_send + fpt_recv; body_len is strlen(body). */
void fpt_request(int port, const char *method, const char *path, const char *key, const char *body,
                 fpt_resp *r);
/* POST /payments with {"amount","currency":"KRW","reference"} built by jansson. */
void fpt_pay(int port, const char *key, long long amount, const char *reference, fpt_resp *r);
/* A header's value copied into out; false when absent. */
bool fpt_header(const fpt_resp *r, const char *name, char *out, size_t outlen);
/* Shorthands on the parsed body ("" / -1 when absent). */
const char *fpt_str(const fpt_resp *r, const char *field);
long long fpt_int(const fpt_resp *r, const char *field);
/* error.code of an error body, "" when absent. */
const char *fpt_error_code(const fpt_resp *r);
void fpt_resp_free(fpt_resp *r);

/* Runs one Check test case per entry (select one with CK_RUN_CASE) with the harness
 * teardown (th_stop_all) as an unchecked fixture. */
typedef struct fpt_case {
    const char *name;
    const TTest *test;
} fpt_case;
int fpt_main(const char *suite, const fpt_case *cases, size_t n, double timeout_s);

#endif
