/*
 * rs_app: the process-wide context of reserved, built by rs_main and shared by the
 * handlers: config, event base, DB pool, lock client, payment client, HTTP server.
 * One instance (rs_app_g); reserved is one process with one loop.
 */
#ifndef RS_APP_H
#define RS_APP_H

#include <stdbool.h>
#include <stdint.h>
#include "cm_config.h"
#include "cm_lockclient.h"
#include "rs_config.h"
#include "rs_cors.h"
#include "rs_db.h"
#include "rs_http.h"

struct event_base;
struct rs_pay;

typedef struct rs_app {
    struct event_base *base;
    rs_config cfg;
    rs_cors cors; /* the policy of cfg.cors_allow_origins */
    rs_db *db;
    cm_lockclient *locks; /* NULL in --lock-mode db */
    struct rs_pay *pay;   /* NULL when payment.url is empty */
    rs_http *http;
    rs_http *metrics_http; /* metrics_listen's server; NULL when off */
    bool shutting_down;
    char instance_id[17]; /* random hex, in logs and payment references */
} rs_app;

extern rs_app rs_app_g;

#endif
