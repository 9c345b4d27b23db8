/*
 * rs_auth: who is calling (SPEC §6a). Owns the gate that rs_http runs between routing and
 * the handler, the bearer token format and its hash, the token lookup (one indexed read of
 * the token's SHA-256 per request that needs a caller: nothing is cached, so a logout or
 * an expiry holds on every reserved process at once), the role checks of the route table,
 * the rules of acting for a user, and the rate buckets (per token and per client address)
 * with their 429 answers.
 *
 * A public route is not looked up at all while the caller's address has tokens in its
 * bucket: only when it runs dry does a token in the request count (a valid one moves the
 * request to that token's bucket), so public reads cost no extra round trip.
 */
#ifndef RS_AUTH_H
#define RS_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

#define RS_AUTH_TOKEN_BYTES 32                                /* random bytes of a login token */
#define RS_AUTH_TOKEN_HEX   (2 * RS_AUTH_TOKEN_BYTES)         /* its text: lower-case hex */
#define RS_AUTH_HASH_PARAM  (2 + 2 * RS_AUTH_TOKEN_BYTES + 1) /* "\x" + hex of SHA-256 + NUL */

void rs_auth_register(rs_db *db);
/* The rate buckets; installs the gate on app->http. */
cm_rc rs_auth_start(rs_app *app) CM_MUSTCHECK;
void rs_auth_stop(void);

/* A fresh token (hex, NUL-terminated) and its hash as a bytea parameter. */
cm_rc rs_auth_new_token(char token[RS_AUTH_TOKEN_HEX + 1],
                        char hash_param[RS_AUTH_HASH_PARAM]) CM_MUSTCHECK;
/* The bytea parameter ("\x...") of a token hash. */
void rs_auth_hash_param(const unsigned char hash[32], char out[RS_AUTH_HASH_PARAM]);

/* The user a request acts for. A customer acts for itself (asked must be absent or its
 * own id: another user's id is 403 FORBIDDEN); an admin acts for `asked`, or for itself
 * without one. False after answering. */
bool rs_auth_acting_user(rs_req *r, bool has_asked, int64_t asked, int64_t *out);
/* May the caller see user `id`'s things? Admins all, customers their own. */
bool rs_auth_may_see(const rs_req *r, int64_t id);
/* The owner filter of a statement: NULL for an admin (any owner), else the caller's id
 * in buf. */
const char *rs_auth_owner_param(const rs_req *r, char buf[24]);

/* Prometheus text of the gate's counters and the rate buckets. */
void rs_auth_metrics(cm_strbuf *out);

#endif
