/*
 * rs_account: sign-up, login, logout and --add-admin (contract in rs_account.h).
 *
 * A password never stays in memory longer than its hash job: the request's copy is wiped
 * when the hasher is done with it (rs_pwhash wipes its own). A login for an unknown email
 * is verified against rs_pwhash's dummy hash, so it costs what a wrong password costs and
 * both get the same 401 BAD_CREDENTIALS: the answer and its time tell nothing about which
 * emails have accounts. (Sign-up's 409 EMAIL_TAKEN does tell, as every shop's sign-up does;
 * the per-address rate bucket bounds how fast anyone can ask.)
 */
#include "rs_account.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "rs_auth.h"
#include "rs_dberr.h"
#include "rs_migrate.h"
#include "rs_pwhash.h"
#include "rs_utf8.h"

#define NAME_MAX_CHARS  200
#define EMAIL_MAX_CHARS 320
#define PW_BYTES_MAX    (RS_ACCOUNT_PASSWORD_MAX * 4) /* UTF-8: 4 bytes a character at most */
#define LOGIN_PW_MAX    1024 /* a login's password is verified whatever its length up to this */
#define HASH_PENDING    256  /* hash jobs queued at most: beyond, 503 BUSY */
#define INT_TEXT        24

static struct {
    rs_app *app;
    rs_pwhash *hasher;
} acc;

static const rs_db_stmt account_stmts[] = {
    {"acct_user_create",
     "INSERT INTO users (name, email, password_hash) VALUES ($1, $2, $3) "
     "RETURNING id, name, email, role",
     3},
    {"acct_login_find", "SELECT id, role, password_hash FROM users WHERE lower(email) = lower($1)",
     1},
    {"acct_session_create",
     "INSERT INTO sessions (token_hash, user_id, expires_at) "
     "VALUES ($1::bytea, $2::bigint, now() + make_interval(secs => $3::bigint)) "
     "RETURNING rs_rfc3339(expires_at)",
     3},
    {"acct_session_delete", "DELETE FROM sessions WHERE token_hash = $1::bytea", 1},
};

void rs_account_register(rs_db *db)
{
    rs_db_register(db, account_stmts, CM_ARRAY_LEN(account_stmts));
}

/* ---- rules ---- */

/* local@domain.tld, no spaces or controls: a shape check, not deliverability. */
static bool email_shape(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@'))
        return false;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    const char *dot = strrchr(at + 1, '.');
    return dot && dot > at + 1 && dot[1] != '\0';
}

static bool password_ok(const char *pw)
{
    size_t n = rs_utf8_chars(pw, strlen(pw));
    return strlen(pw) <= PW_BYTES_MAX && n >= RS_ACCOUNT_PASSWORD_MIN &&
           n <= RS_ACCOUNT_PASSWORD_MAX;
}

/* The password field as a string (any length); false after answering 400. */
static bool get_password(rs_req *r, json_t *body, const char **out)
{
    json_t *v = json_object_get(body, "password");
    if (!json_is_string(v)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'password' %s",
                       v ? "must be a string" : "is required");
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool db_failed(rs_req *r, const rs_db_result *res, const char *what)
{
    return rs_dberr_failed(r, res, what);
}

static void reply_busy(rs_req *r)
{
    rs_reply_json_hdr(r, 503,
                      json_pack("{s:{s:s,s:s}}", "error", "code", "BUSY", "message",
                                "too many sign-ups and logins at once, retry"),
                      "Retry-After", "1");
}

/* ---- POST /users ---- */

typedef struct signup {
    rs_req *r;
    char *name, *email;
} signup;

static void signup_free(signup *s)
{
    free(s->name);
    free(s->email);
    free(s);
}

static void user_created(void *arg, const rs_db_result *res)
{
    signup *s = arg;
    rs_req *r = s->r;
    signup_free(s);
    if (!res->ok && res->sqlstate && strcmp(res->sqlstate, "23505") == 0) {
        rs_reply_error(r, 409, "EMAIL_TAKEN", "a user with this email exists");
        return;
    }
    if (db_failed(r, res, "POST /users"))
        return;
    rs_reply_json(r, 201,
                  json_pack("{s:I,s:s,s:s,s:s}", "id",
                            (json_int_t)strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10), "name",
                            PQgetvalue(res->pg, 0, 1), "email", PQgetvalue(res->pg, 0, 2), "role",
                            PQgetvalue(res->pg, 0, 3)));
}

static void signup_hashed(void *arg, const char *hash)
{
    signup *s = arg;
    if (!hash) {
        rs_dberr_internal(s->r, "POST /users (password hash failed)", NULL);
        signup_free(s);
        return;
    }
    const char *params[] = {s->name, s->email, hash};
    if (!rs_db_exec(acc.app->db, "acct_user_create", 3, params, user_created, s)) {
        rs_reply_error(s->r, 503, "UNAVAILABLE", "the database is unavailable");
        signup_free(s);
    }
}

static void user_create(rs_req *r)
{
    json_t *body = rs_req_json(r);
    const char *name, *email, *pw;
    if (!body || !rs_json_get_string(r, body, "name", true, NAME_MAX_CHARS, &name) ||
        !rs_json_get_string(r, body, "email", true, EMAIL_MAX_CHARS, &email) ||
        !get_password(r, body, &pw))
        return;
    if (!email_shape(email)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'email' must look like name@example.org");
        return;
    }
    if (!password_ok(pw)) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'password' must be %d..%d characters",
                       RS_ACCOUNT_PASSWORD_MIN, RS_ACCOUNT_PASSWORD_MAX);
        return;
    }
    signup *s = calloc(1, sizeof(*s));
    if (s) {
        s->r = r;
        s->name = strdup(name);
        s->email = strdup(email);
    }
    if (!s || !s->name || !s->email) {
        if (s)
            signup_free(s);
        rs_dberr_internal(r, "POST /users (out of memory)", NULL);
        return;
    }
    if (rs_pwhash_hash(acc.hasher, pw, strlen(pw), signup_hashed, s) != CM_OK) {
        signup_free(s);
        reply_busy(r);
    }
}

/* ---- POST /sessions ---- */

typedef struct login {
    rs_req *r;
    char *password; /* wiped and freed once verified */
    size_t pw_len;
    int64_t user;
    char role[16];
} login;

static void login_free(login *l)
{
    if (l->password) {
        sodium_memzero(l->password, l->pw_len);
        free(l->password);
    }
    free(l);
}

/* A 401 carries a challenge (RFC 9110 §15.5.2), even on the login route. */
static void bad_credentials(rs_req *r)
{
    rs_reply_json_hdr(r, 401,
                      json_pack("{s:{s:s,s:s}}", "error", "code", "BAD_CREDENTIALS", "message",
                                "wrong email or password"),
                      "WWW-Authenticate", "Bearer realm=\"reserved\"");
}

static void session_created(void *arg, const rs_db_result *res)
{
    login *l = arg;
    rs_req *r = l->r;
    json_t *token = rs_req_data(r);
    rs_req_set_data(r, NULL);
    if (!db_failed(r, res, "POST /sessions"))
        rs_reply_json(r, 201,
                      json_pack("{s:o,s:I,s:s,s:s}", "token", json_incref(token), "userId",
                                (json_int_t)l->user, "role", l->role, "expiresAt",
                                PQgetvalue(res->pg, 0, 0)));
    json_decref(token);
    login_free(l);
}

static void login_verified(void *arg, bool match)
{
    login *l = arg;
    char token[RS_AUTH_TOKEN_HEX + 1], hash[RS_AUTH_HASH_PARAM], user[INT_TEXT], ttl[INT_TEXT];
    if (!match) {
        bad_credentials(l->r);
        login_free(l);
        return;
    }
    if (rs_auth_new_token(token, hash) != CM_OK) {
        rs_dberr_internal(l->r, "POST /sessions (no randomness)", NULL);
        login_free(l);
        return;
    }
    /* The token rides on the request until the session row is in; only its hash is sent. */
    rs_req_set_data(l->r, json_string(token));
    sodium_memzero(token, sizeof(token));
    snprintf(user, sizeof(user), "%" PRId64, l->user);
    snprintf(ttl, sizeof(ttl), "%" PRId64, acc.app->cfg.session_ttl_s);
    const char *params[] = {hash, user, ttl};
    if (!rs_db_exec(acc.app->db, "acct_session_create", 3, params, session_created, l)) {
        json_decref(rs_req_data(l->r));
        rs_req_set_data(l->r, NULL);
        rs_reply_error(l->r, 503, "UNAVAILABLE", "the database is unavailable");
        login_free(l);
    }
}

static void login_found(void *arg, const rs_db_result *res)
{
    login *l = arg;
    const char *stored = NULL;
    if (db_failed(l->r, res, "POST /sessions (find)")) {
        login_free(l);
        return;
    }
    if (PQntuples(res->pg) == 1) {
        l->user = strtoll(PQgetvalue(res->pg, 0, 0), NULL, 10);
        snprintf(l->role, sizeof(l->role), "%s", PQgetvalue(res->pg, 0, 1));
        if (!PQgetisnull(res->pg, 0, 2))
            stored = PQgetvalue(res->pg, 0, 2);
    }
    /* stored NULL (no such user, or one without a password): the dummy hash's cost */
    if (rs_pwhash_verify(acc.hasher, stored, l->password, l->pw_len, login_verified, l) != CM_OK) {
        reply_busy(l->r);
        login_free(l);
    }
}

static void session_create(rs_req *r)
{
    json_t *body = rs_req_json(r);
    const char *email, *pw;
    if (!body || !rs_json_get_string(r, body, "email", true, EMAIL_MAX_CHARS, &email) ||
        !get_password(r, body, &pw))
        return;
    if (strlen(pw) > LOGIN_PW_MAX) {
        rs_reply_error(r, 400, "BAD_REQUEST", "field 'password' is longer than %d bytes",
                       LOGIN_PW_MAX);
        return;
    }
    login *l = calloc(1, sizeof(*l));
    if (l) {
        l->r = r;
        l->pw_len = strlen(pw);
        l->password = malloc(l->pw_len + 1);
    }
    if (!l || !l->password) {
        if (l)
            login_free(l);
        rs_dberr_internal(r, "POST /sessions (out of memory)", NULL);
        return;
    }
    memcpy(l->password, pw, l->pw_len + 1);
    const char *params[] = {email};
    if (!rs_db_exec(acc.app->db, "acct_login_find", 1, params, login_found, l)) {
        rs_reply_error(r, 503, "UNAVAILABLE", "the database is unavailable");
        login_free(l);
    }
}

/* ---- DELETE /sessions/current ---- */

static void session_deleted(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (!db_failed(r, res, "DELETE /sessions/current"))
        rs_reply_text(r, 204, NULL, "", 0);
}

static void session_delete(rs_req *r)
{
    char hash[RS_AUTH_HASH_PARAM];
    rs_auth_hash_param(rs_req_caller(r)->token_hash, hash);
    const char *params[] = {hash};
    if (!rs_db_exec(acc.app->db, "acct_session_delete", 1, params, session_deleted, r))
        rs_reply_error(r, 503, "UNAVAILABLE", "the database is unavailable");
}

const rs_route rs_account_routes[] = {
    {RS_POST, "/users", "users_create", user_create, RS_ACCESS_PUBLIC},
    {RS_POST, "/sessions", "sessions_create", session_create, RS_ACCESS_PUBLIC},
    {RS_DELETE, "/sessions/current", "session_delete", session_delete, RS_ACCESS_USER},
};
const size_t rs_account_nroutes = CM_ARRAY_LEN(rs_account_routes);

/* ---- the module ---- */

cm_rc rs_account_start(rs_app *app)
{
    const rs_config *cfg = &app->cfg;
    rs_pwhash_opts o = {.threads = (unsigned)cfg->hash_threads,
                        .ops = (uint64_t)cfg->hash_ops,
                        .mem_bytes = (size_t)cfg->hash_mem_kib * 1024,
                        .max_pending = HASH_PENDING};
    acc.app = app;
    acc.hasher = rs_pwhash_new(app->base, &o);
    if (!acc.hasher) {
        log_error("cannot start the password hasher");
        return CM_ERR;
    }
    return CM_OK;
}

void rs_account_stop(void)
{
    if (acc.hasher)
        rs_pwhash_free(acc.hasher);
    acc.hasher = NULL;
}

void rs_account_metrics(cm_strbuf *out)
{
    if (acc.hasher)
        rs_pwhash_metrics(acc.hasher, out);
}

/* ---- reserved --add-admin EMAIL ---- */

/* The first line of in without its line end into buf; false when there is none. */
static bool read_line(FILE *in, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, in))
        return false;
    size_t n = strcspn(buf, "\r\n");
    if (buf[n] == '\0' && n == len - 1) /* no line end in len - 1 bytes: too long */
        return false;
    buf[n] = '\0';
    return true;
}

int rs_account_add_admin(const rs_config *cfg, const char *email, FILE *in, FILE *out)
{
    char pw[PW_BYTES_MAX + 4], hash[RS_PWHASH_STR_MAX], err[1024], name[EMAIL_MAX_CHARS + 1];
    int rc = 1;
    if (!email_shape(email) || rs_utf8_chars(email, strlen(email)) > EMAIL_MAX_CHARS) {
        log_error("--add-admin: '%s' is not an email address like name@example.org", email);
        return 2;
    }
    bool have = read_line(in, pw, sizeof(pw));
    if (!have || !password_ok(pw)) {
        log_error("--add-admin: the first line of standard input must be the password, %d..%d "
                  "characters",
                  RS_ACCOUNT_PASSWORD_MIN, RS_ACCOUNT_PASSWORD_MAX);
        sodium_memzero(pw, sizeof(pw));
        return 2;
    }
    if (sodium_init() < 0 ||
        rs_pwhash_hash_now((uint64_t)cfg->hash_ops, (size_t)cfg->hash_mem_kib * 1024, pw,
                           strlen(pw), hash) != CM_OK) {
        sodium_memzero(pw, sizeof(pw));
        log_error("--add-admin: cannot hash the password");
        return 1;
    }
    sodium_memzero(pw, sizeof(pw));
    if (rs_migrate_apply(cfg->database, err, sizeof(err)) != CM_OK) {
        log_error("--add-admin: migrations: %s", err);
        return 1;
    }
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(email, "@"), email);
    PGconn *db = PQconnectdb(cfg->database);
    if (PQstatus(db) != CONNECTION_OK) {
        log_error("--add-admin: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }
    /* An existing user (the email in any case) becomes admin with this password. */
    const char *params[] = {name, email, hash};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO users (name, email, password_hash, role) "
                                 "VALUES ($1, $2, $3, 'admin') "
                                 "ON CONFLICT ((lower(email))) DO UPDATE "
                                 "SET password_hash = EXCLUDED.password_hash, role = 'admin' "
                                 "RETURNING id",
                                 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        fprintf(out, "%s\n", PQgetvalue(res, 0, 0));
        log_info("--add-admin: %s is an admin (user %s)", email, PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        log_error("--add-admin: %s", PQerrorMessage(db));
    }
    PQclear(res);
    PQfinish(db);
    return rc;
}
