/*
 * cm_addr: "host:port" endpoints as used on every command line and config key.
 */
#ifndef CM_ADDR_H
#define CM_ADDR_H

#include "cm_core.h"

#define CM_HOST_MAX 256

typedef struct cm_addr {
    char host[CM_HOST_MAX]; /* name or IPv4 literal, or IPv6 literal without brackets */
    int port;               /* 1..65535 */
} cm_addr;

/* Parses "host:port" or "[v6]:port". On error writes a reason into err and returns CM_ERR. */
cm_rc cm_addr_parse(const char *text, cm_addr *out, char *err, size_t errlen) CM_MUSTCHECK;
/* Parses "h:p,h:p,..." (no empty items) into a malloc'ed array the caller frees. */
cm_rc cm_addr_parse_list(const char *text, cm_addr **out, size_t *count, char *err,
                         size_t errlen) CM_MUSTCHECK;
/* "host:port" into buf (brackets for IPv6). Returns buf. */
const char *cm_addr_format(const cm_addr *a, char *buf, size_t buflen);

#endif
