/*
 * cx_cli: command-line helpers shared by the chaos tools (chaos_proxy, chaos_load):
 * strict unsigned numbers and the loopback-only rule for every address they take.
 */
#ifndef CX_CLI_H
#define CX_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include "cm_addr.h"

/* A decimal integer in [lo, hi], nothing else in s (no sign, no spaces). */
bool cx_cli_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* 127.0.0.0/8, ::1 or localhost: the chaos tools touch nothing else. */
bool cx_cli_loopback(const cm_addr *a);

#endif
