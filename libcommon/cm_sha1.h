/*
 * cm_sha1: SHA-1 (FIPS 180-1) of a byte string, one call per digest. lockd needs it to
 * name its Lua scripts for EVALSHA (Redis identifies a loaded script by its SHA-1), not
 * for security: never use it to protect anything.
 * No state and no allocation: the caller owns both the input and the output buffer.
 */
#ifndef CM_SHA1_H
#define CM_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define CM_SHA1_LEN     20                /* digest bytes */
#define CM_SHA1_HEX_LEN (2 * CM_SHA1_LEN) /* hex digits, without the NUL */

/* The digest of data[0..len) into out. */
void cm_sha1(const void *data, size_t len, uint8_t out[CM_SHA1_LEN]);
/* The same as 40 lowercase hex digits and a NUL (what Redis' SCRIPT LOAD returns). */
void cm_sha1_hex(const void *data, size_t len, char out[CM_SHA1_HEX_LEN + 1]);

#endif
