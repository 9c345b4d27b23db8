/*
 * cm_parse: strict number parsing for command lines and protocol fields, in one place.
 * "Strict" means the whole string is the number: no sign where none is allowed, no
 * spaces, no empty string, no trailing text, no overflow, and within the caller's range.
 * Pure functions; nothing is allocated except by cm_parse_id_list, whose array the
 * caller frees.
 */
#ifndef CM_PARSE_H
#define CM_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

/* A decimal integer in [lo, hi]: digits only (no sign, no spaces). */
bool cm_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) CM_MUSTCHECK;
/* A decimal integer in [lo, hi], with an optional leading '-'. */
bool cm_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) CM_MUSTCHECK;
/* A finite decimal number in [lo, hi] (strtod syntax, no trailing text). */
bool cm_parse_double(const char *s, double lo, double hi, double *out) CM_MUSTCHECK;
/* "A<sep>B", both cm_parse_u64 in [lo, hi]. */
bool cm_parse_u64_pair(const char *s, char sep, uint64_t lo, uint64_t hi, uint64_t *a,
                       uint64_t *b) CM_MUSTCHECK;
/* "A,B,..." (no empty item), each cm_parse_u64 in [lo, hi], into a malloc'ed array the
 * caller frees; *n items. false (nothing allocated) on any bad item or out of memory. */
bool cm_parse_u64_list(const char *s, uint64_t lo, uint64_t hi, uint64_t **out,
                       size_t *n) CM_MUSTCHECK;

#endif
