/*
 * rs_auth: the gate, tokens, roles and rate buckets (contract in rs_auth.h).
 *
 * A request's way through the gate, by its route's access:
 *   public:  address bucket has a token -> handler (anonymous caller)
 *            bucket dry, a well-formed token -> lookup -> valid: token bucket -> handler
 *                                                       else: 429 RATE_LIMITED
 *   user/admin: no or malformed token -> address bucket (429) -> 401 UNAUTHENTICATED
 *            well-formed token -> lookup -> unknown/expired: address bucket -> 401
 *                                        -> valid: token bucket (429) -> role (403) -> handler
 * A failed lookup (the database is down) is 503 UNAVAILABLE for a route that needs a caller,
 * and anonymous for a public one.
 */
#include "rs_auth.h"

#include <event2/event.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm_log.h"
#include "cm_time.h"
#include "rs_dberr.h"
#include "rs_ratelimit.h"

#define RATE_KEYS_MAX      100000 /* buckets per table: a full bucket is dropped first */
#define LOOKUP_BATCH_MAX   64     /* token lookups in one statement */
#define LOOKUP_PENDING_MAX 4096   /* lookups waiting for the end of the loop pass */

/* Why a request was let in or not, for /metrics. */
typedef enum auth_outcome {
    AO_ANONYMOUS,    /* public route, no token looked up */
    AO_OK,           /* valid token, role fits */
    AO_MISSING,      /* no Authorization header on a route that needs one */
    AO_MALFORMED,    /* not "Bearer <64 hex>" */
    AO_UNKNOWN,      /* unknown, expired or logged out */
    AO_FORBIDDEN,    /* a customer on an admin route */
    AO_RATE_LIMITED, /* 429 */
    AO_UNAVAILABLE,  /* the lookup failed */
    AO_COUNT
} auth_outcome;

static const char *const outcome_names[AO_COUNT] = {"anonymous",    "ok",         "missing",
                                                    "malformed",    "unknown",    "forbidden",
                                                    "rate_limited", "unavailable"};

static struct {
    rs_app *app;
    rs_rate *by_token;
    rs_rate *by_ip;
    uint64_t outcomes[AO_COUNT];
    struct event *flush;       /* runs at the end of the loop pass that queued a lookup */
    struct auth_job **pending; /* lookups waiting for that pass's one statement */
    size_t npending;
    uint64_t statements; /* lookup statements sent */
} auth;

static const rs_db_stmt auth_stmts[] = {
    /* The lookups of one loop pass in one statement ($1: the token hashes in hex), each
     * a range of the primary key; the expiry is checked here, so an expired token is
     * refused before the sweeper deletes its row. */
    {"auth_lookup_many",
     "SELECT encode(s.token_hash, 'hex'), s.user_id, u.role FROM sessions s "
     "JOIN users u ON u.id = s.user_id "
     "WHERE s.token_hash = ANY (SELECT decode(x, 'hex') FROM unnest($1::text[]) AS x) "
     "AND s.expires_at > now()",
     1},
};

void rs_auth_register(rs_db *db)
{
    rs_db_register(db, auth_stmts, CM_ARRAY_LEN(auth_stmts));
}

/* ---- tokens ---- */

void rs_auth_hash_param(const unsigned char hash[32], char out[RS_AUTH_HASH_PARAM])
{
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, RS_AUTH_HASH_PARAM - 2, hash, 32);
}

cm_rc rs_auth_new_token(char token[RS_AUTH_TOKEN_HEX + 1], char hash_param[RS_AUTH_HASH_PARAM])
{
    unsigned char raw[RS_AUTH_TOKEN_BYTES], hash[crypto_hash_sha256_BYTES];
    if (sodium_init() < 0)
        return CM_ERR;
    randombytes_buf(raw, sizeof(raw)); /* the OS's CSPRNG (getrandom) */
    sodium_bin2hex(token, RS_AUTH_TOKEN_HEX + 1, raw, sizeof(raw));
    crypto_hash_sha256(hash, raw, sizeof(raw));
    rs_auth_hash_param(hash, hash_param);
    sodium_memzero(raw, sizeof(raw));
    return CM_OK;
}

/* "Bearer <64 hex>" (the scheme in any case, RFC 9110 §11.1) -> SHA-256 of the 32 bytes. */
static bool token_parse(const char *h, unsigned char hash[32])
{
    unsigned char raw[RS_AUTH_TOKEN_BYTES];
    size_t len = 0;
    const char *end = NULL;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    if (strlen(h) != RS_AUTH_TOKEN_HEX ||
        sodium_hex2bin(raw, sizeof(raw), h, RS_AUTH_TOKEN_HEX, NULL, &len, &end) != 0 ||
        len != sizeof(raw) || *end != '\0')
        return false;
    crypto_hash_sha256(hash, raw, sizeof(raw));
    return true;
}

/* ---- answers ---- */

static void outcome(auth_outcome o)
{
    auth.outcomes[o]++;
}

static void reply_limited(rs_req *r, uint64_t wait_ms)
{
    char after[24];
    uint64_t s = (wait_ms + 999) / 1000;
    snprintf(after, sizeof(after), "%" PRIu64, s > 0 ? s : 1);
    outcome(AO_RATE_LIMITED);
    rs_reply_json_hdr(
        r, 429,
        json_pack("{s:{s:s,s:s}}", "error", "code", "RATE_LIMITED", "message",
                  "too many requests: slow down and retry after the Retry-After seconds"),
        "Retry-After", after);
}

/* 401 with the challenge of RFC 6750 §3. */
static void reply_unauthenticated(rs_req *r, auth_outcome why)
{
    const char *msg = why == AO_MISSING     ? "this request needs Authorization: Bearer <token>"
                      : why == AO_MALFORMED ? "the Authorization header is not Bearer <token>"
                                            : "the token is unknown, expired or logged out";
    outcome(why);
    rs_reply_json_hdr(
        r, 401, json_pack("{s:{s:s,s:s}}", "error", "code", "UNAUTHENTICATED", "message", msg),
        "WWW-Authenticate",
        why == AO_MISSING ? "Bearer realm=\"reserved\""
                          : "Bearer realm=\"reserved\", error=\"invalid_token\"");
}

/* The address bucket; false after answering 429. */
static bool ip_take(rs_req *r)
{
    uint64_t wait = rs_rate_take(auth.by_ip, rs_req_peer(r), cm_now_ms());
    if (wait == 0)
        return true;
    reply_limited(r, wait);
    return false;
}

/* ---- the lookup ---- */

typedef struct auth_job {
    rs_req *r;
    rs_access access;
    uint64_t ip_wait_ms; /* public route: how long its address bucket is dry */
    unsigned char hash[32];
} auth_job;

static void admit_caller(rs_req *r, rs_access access, const rs_caller *c)
{
    char key[2 * 32 + 1];
    sodium_bin2hex(key, sizeof(key), c->token_hash, 32);
    uint64_t wait = rs_rate_take(auth.by_token, key, cm_now_ms());
    if (wait > 0) {
        reply_limited(r, wait);
        return;
    }
    if (access == RS_ACCESS_ADMIN && c->role != RS_ROLE_ADMIN) {
        outcome(AO_FORBIDDEN);
        rs_reply_error(r, 403, "FORBIDDEN", "only an admin may do this");
        return;
    }
    rs_req_set_caller(r, c);
    outcome(AO_OK);
    rs_http_admit(r);
}

/* One lookup's answer: row is its row of res, or -1 when the token is not a live one. */
static void answer_job(auth_job *j, const rs_db_result *res, int row)
{
    rs_req *r = j->r;
    rs_access access = j->access;
    uint64_t ip_wait_ms = j->ip_wait_ms;
    rs_caller c = {.role = RS_ROLE_NONE};
    memcpy(c.token_hash, j->hash, sizeof(c.token_hash));
    free(j);

    if (!res->ok) {
        if (access == RS_ACCESS_PUBLIC) { /* its bucket was dry: the token could not help */
            reply_limited(r, ip_wait_ms);
            return;
        }
        outcome(AO_UNAVAILABLE);
        rs_dberr_reply(r, 503, "UNAVAILABLE", "the database is unavailable", "a token lookup", res);
        return;
    }
    if (row < 0) {
        if (access == RS_ACCESS_PUBLIC) {
            reply_limited(r, ip_wait_ms);
            return;
        }
        if (ip_take(r))
            reply_unauthenticated(r, AO_UNKNOWN);
        return;
    }
    c.user_id = strtoll(PQgetvalue(res->pg, row, 1), NULL, 10);
    c.role = strcmp(PQgetvalue(res->pg, row, 2), "admin") == 0 ? RS_ROLE_ADMIN : RS_ROLE_CUSTOMER;
    admit_caller(r, access, &c);
}

typedef struct auth_batch {
    size_t n;
    auth_job *jobs[LOOKUP_BATCH_MAX];
} auth_batch;

static void looked_up_many(void *arg, const rs_db_result *res)
{
    auth_batch *b = arg;
    int rows = res->ok ? PQntuples(res->pg) : 0;
    for (size_t i = 0; i < b->n; i++) {
        char hex[2 * 32 + 1];
        int row = -1;
        sodium_bin2hex(hex, sizeof(hex), b->jobs[i]->hash, 32);
        for (int k = 0; k < rows && row < 0; k++) /* a batch is small: a scan is enough */
            if (strcmp(PQgetvalue(res->pg, k, 0), hex) == 0)
                row = k;
        answer_job(b->jobs[i], res, row);
    }
    free(b);
}

/* Sends the lookups queued in this loop pass as one statement. Why: one statement per
 * request put a pool round trip and PostgreSQL's per-statement work in front of every
 * booking; a hot sale's requests arrive together, so they share one. */
static void flush_lookups(evutil_socket_t fd, short what, void *arg)
{
    CM_UNUSED(fd);
    CM_UNUSED(what);
    CM_UNUSED(arg);
    while (auth.npending > 0) {
        size_t n = auth.npending < LOOKUP_BATCH_MAX ? auth.npending : LOOKUP_BATCH_MAX;
        auth_batch *b = calloc(1, sizeof(*b));
        char *list = malloc(n * (2 * 32 + 1) + 3);
        if (!b || !list) {
            free(b);
            free(list);
            for (size_t i = 0; i < auth.npending; i++) {
                rs_reply_error(auth.pending[i]->r, 503, "UNAVAILABLE", "out of memory");
                free(auth.pending[i]);
            }
            auth.npending = 0;
            return;
        }
        size_t o = 0;
        list[o++] = '{';
        for (size_t i = 0; i < n; i++) {
            b->jobs[i] = auth.pending[i];
            if (i > 0)
                list[o++] = ',';
            sodium_bin2hex(list + o, 2 * 32 + 1, b->jobs[i]->hash, 32);
            o += 2 * 32;
        }
        list[o++] = '}';
        list[o] = '\0';
        b->n = n;
        memmove(auth.pending, auth.pending + n, (auth.npending - n) * sizeof(auth.pending[0]));
        auth.npending -= n;
        const char *params[] = {list};
        auth.statements++;
        if (!rs_db_exec(auth.app->db, "auth_lookup_many", 1, params, looked_up_many, b)) {
            rs_db_result failed = {.ok = false, .unavailable = true};
            for (size_t i = 0; i < b->n; i++)
                answer_job(b->jobs[i], &failed, -1);
            free(b);
        }
        free(list);
    }
}

static void lookup(rs_req *r, rs_access access, uint64_t ip_wait_ms, const unsigned char hash[32])
{
    auth_job *j = calloc(1, sizeof(*j));
    if (!j) {
        rs_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    j->r = r;
    j->access = access;
    j->ip_wait_ms = ip_wait_ms;
    memcpy(j->hash, hash, 32);
    if (auth.npending == LOOKUP_PENDING_MAX) {
        free(j);
        outcome(AO_UNAVAILABLE);
        rs_reply_error(r, 503, "UNAVAILABLE", "too many token lookups at once");
        return;
    }
    auth.pending[auth.npending++] = j;
    if (auth.npending == 1)
        event_active(auth.flush, EV_TIMEOUT, 0);
}

/* ---- the gate ---- */

static void gate(rs_req *r, rs_access access)
{
    const char *h = rs_req_header(r, "Authorization");
    unsigned char hash[32];
    bool well_formed = h != NULL && token_parse(h, hash);

    if (access == RS_ACCESS_PUBLIC) {
        uint64_t wait = rs_rate_take(auth.by_ip, rs_req_peer(r), cm_now_ms());
        if (wait == 0) {
            outcome(AO_ANONYMOUS);
            rs_http_admit(r);
        } else if (well_formed) {
            lookup(r, access, wait, hash);
        } else {
            reply_limited(r, wait);
        }
        return;
    }
    if (!well_formed) {
        if (ip_take(r))
            reply_unauthenticated(r, h == NULL ? AO_MISSING : AO_MALFORMED);
        return;
    }
    lookup(r, access, 0, hash);
}

cm_rc rs_auth_start(rs_app *app)
{
    const rs_config *cfg = &app->cfg;
    rs_rate_opts tok = {.per_s = cfg->rate_token_per_s,
                        .burst = (double)cfg->rate_token_burst,
                        .max_keys = RATE_KEYS_MAX};
    rs_rate_opts ip = {.per_s = cfg->rate_ip_per_s,
                       .burst = (double)cfg->rate_ip_burst,
                       .max_keys = RATE_KEYS_MAX};
    if (sodium_init() < 0) {
        log_error("libsodium cannot start");
        return CM_ERR;
    }
    auth.app = app;
    auth.by_token = rs_rate_new(&tok);
    auth.by_ip = rs_rate_new(&ip);
    auth.flush = event_new(app->base, -1, 0, flush_lookups, NULL);
    auth.pending = calloc(LOOKUP_PENDING_MAX, sizeof(*auth.pending));
    if (!auth.by_token || !auth.by_ip || !auth.flush || !auth.pending) {
        rs_auth_stop();
        return CM_ERR;
    }
    rs_http_set_gate(app->http, gate);
    return CM_OK;
}

void rs_auth_stop(void)
{
    rs_rate_free(auth.by_token);
    rs_rate_free(auth.by_ip);
    auth.by_token = NULL;
    auth.by_ip = NULL;
    if (auth.flush)
        event_free(auth.flush);
    auth.flush = NULL;
    free(auth.pending); /* empty: every request is answered before the stop */
    auth.pending = NULL;
}

/* ---- acting for users ---- */

bool rs_auth_acting_user(rs_req *r, bool has_asked, int64_t asked, int64_t *out)
{
    const rs_caller *c = rs_req_caller(r);
    if (c->role == RS_ROLE_ADMIN) {
        *out = has_asked ? asked : c->user_id;
        return true;
    }
    if (c->role == RS_ROLE_NONE) { /* the gate lets no anonymous caller reach a booking */
        rs_reply_error(r, 401, "UNAUTHENTICATED", "this request needs a token");
        return false;
    }
    if (has_asked && asked != c->user_id) {
        rs_reply_error(r, 403, "FORBIDDEN", "a customer books only for itself (userId %" PRId64 ")",
                       c->user_id);
        return false;
    }
    *out = c->user_id;
    return true;
}

bool rs_auth_may_see(const rs_req *r, int64_t id)
{
    const rs_caller *c = rs_req_caller(r);
    return c->role == RS_ROLE_ADMIN || (c->role == RS_ROLE_CUSTOMER && c->user_id == id);
}

const char *rs_auth_owner_param(const rs_req *r, char buf[24])
{
    const rs_caller *c = rs_req_caller(r);
    if (c->role == RS_ROLE_ADMIN)
        return NULL;
    /* an anonymous caller owns nothing: user 0 does not exist */
    snprintf(buf, 24, "%" PRId64, c->role == RS_ROLE_CUSTOMER ? c->user_id : 0);
    return buf;
}

void rs_auth_metrics(cm_strbuf *out)
{
    cm_strbuf_printf(out, "# HELP reserved_auth_total Requests through the gate, by outcome.\n"
                          "# TYPE reserved_auth_total counter\n");
    for (int i = 0; i < AO_COUNT; i++)
        cm_strbuf_printf(out, "reserved_auth_total{outcome=\"%s\"} %" PRIu64 "\n", outcome_names[i],
                         auth.outcomes[i]);
    cm_strbuf_printf(out,
                     "# HELP reserved_auth_lookup_statements_total token lookup statements sent "
                     "(each carries the lookups of one loop pass)\n"
                     "# TYPE reserved_auth_lookup_statements_total counter\n"
                     "reserved_auth_lookup_statements_total %" PRIu64 "\n",
                     auth.statements);
    const rs_rate *const rates[] = {auth.by_token, auth.by_ip};
    const char *const names[] = {"token", "ip"};
    rs_rate_metrics_all(rates, names, 2, out);
}
