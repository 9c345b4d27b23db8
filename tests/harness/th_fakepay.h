/*
 * th_fakepay: the fakepay fixture. Starts the real build/bin/fakepay on a free loopback
 * port through the th harness (so th_stop_all stops it by PID) and stops it with the
 * exit-status check that is also the leak check under ASan. Talk to it with th_http.
 */
#ifndef TH_FAKEPAY_H
#define TH_FAKEPAY_H

#include "th.h"

typedef th_server th_fakepay;

/* Starts fakepay with "--listen 127.0.0.1:<free port>" plus extra args (NULL-terminated
 * list) and waits until it accepts connections; fails the test otherwise. */
void th_fakepay_start(th_fakepay *s, ...) __attribute__((sentinel));
/* The same with the extra args as one space-separated string (NULL: none). */
void th_fakepay_start_args(th_fakepay *s, const char *args);
/* SIGTERM, wait for the exit and fail the test unless it exited 0. */
void th_fakepay_stop_clean(th_fakepay *s);

#endif
