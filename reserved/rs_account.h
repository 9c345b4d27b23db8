/*
 * rs_account: accounts and logins (SPEC §6a): sign-up (POST /users), login (POST
 * /sessions), logout (DELETE /sessions/current), and `reserved --add-admin EMAIL`. Owns
 * the password hasher (rs_pwhash, worker threads off the loop), the password and email
 * rules, and the statements that write users and sessions. Tokens and their checks on
 * every request are rs_auth's.
 */
#ifndef RS_ACCOUNT_H
#define RS_ACCOUNT_H

#include <stdio.h>
#include "cm_strbuf.h"
#include "rs_app.h"
#include "rs_http.h"

#define RS_ACCOUNT_PASSWORD_MIN 8   /* characters */
#define RS_ACCOUNT_PASSWORD_MAX 128 /* characters */

extern const rs_route rs_account_routes[];
extern const size_t rs_account_nroutes;

void rs_account_register(rs_db *db);
/* The hasher's threads (and its dummy hash: one blocking hash at start). */
cm_rc rs_account_start(rs_app *app) CM_MUSTCHECK;
void rs_account_stop(void);
void rs_account_metrics(cm_strbuf *out);

/* reserved --add-admin EMAIL: the password from the first line of in, the user made (or
 * made admin, with that password), its id printed on out. Blocking: runs before any loop,
 * needs only the database (migrations applied first). The process's exit status: 0, 1 when
 * the database fails, 2 for a bad email or password. */
int rs_account_add_admin(const rs_config *cfg, const char *email, FILE *in, FILE *out);

#endif
