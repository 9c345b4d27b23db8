/*
 * cx_cli: the loopback-only rule the chaos tools (chaos_proxy, chaos_load) apply to every
 * address they take, as cm_flags parsers (CM_FLAG_CUSTOM). (Numbers: cm_parse; the rest
 * of the command line: cm_flags.)
 */
#ifndef CX_CLI_H
#define CX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include "cm_addr.h"

/* A list of addresses, malloc'ed; the owner frees a. */
typedef struct cx_addr_list {
    cm_addr *a;
    size_t n;
} cx_addr_list;

/* 127.0.0.0/8, ::1 or localhost: the chaos tools touch nothing else. */
bool cx_cli_loopback(const cm_addr *a);
/* cm_flags parsers: dst is a cm_addr (one H:P) or a cx_addr_list (H:P,... replacing a
 * list given before, whose array is freed); false with the reason in why. */
bool cx_cli_parse_loopback(const char *v, void *dst, char *why, size_t whylen);
bool cx_cli_parse_loopback_list(const char *v, void *dst, char *why, size_t whylen);

#endif
