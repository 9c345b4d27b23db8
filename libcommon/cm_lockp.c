/*
 * cm_lockp: the LOCKP/1 codec (SPEC §2). Pure functions over caller buffers:
 * no I/O, no allocation, never reads past the given length. The request
 * parser is strict (exactly one space between fields, exact argument counts)
 * so that lockd can answer every malformed line with a precise BADREQ.
 */
#include "cm_lockp.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LOCKP_MAX_FIELDS 5 /* verb + 3 args + one extra to detect "too many" */
#define LOCKP_NAME_MAX   64
#define LOCKP_SECRET_MAX 256

typedef struct lockp_field {
    const char *p;
    size_t len;
} lockp_field;

typedef struct lockp_verb_info {
    const char *name;
    cm_lockp_verb verb;
    size_t nargs;
} lockp_verb_info;

static const lockp_verb_info lockp_verbs[] = {
    {"HELLO", CM_VERB_HELLO, 1},     {"AUTH", CM_VERB_AUTH, 1},   {"PING", CM_VERB_PING, 0},
    {"ACQUIRE", CM_VERB_ACQUIRE, 3}, {"RENEW", CM_VERB_RENEW, 3}, {"RELEASE", CM_VERB_RELEASE, 2},
    {"INFO", CM_VERB_INFO, 0},       {"QUIT", CM_VERB_QUIT, 0},
};

static bool lockp_tag_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool cm_lockp_valid_tag(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > CM_LOCKP_TAG_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!lockp_tag_char((unsigned char)s[i]))
            return false;
    return true;
}

/* 1..max bytes of 0x21..0x7E. */
static bool lockp_valid_word(const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

bool cm_lockp_valid_resource(const char *s, size_t len)
{
    return lockp_valid_word(s, len, CM_LOCKP_RESOURCE_MAX);
}

bool cm_lockp_valid_token(const char *s, size_t len)
{
    if (s == NULL || len != CM_LOCKP_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

cm_rc cm_lockp_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || len == 0)
        return CM_ERR;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CM_ERR;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CM_ERR;
        v = v * 10 + d;
    }
    *out = v;
    return CM_OK;
}

const char *cm_lockp_verb_name(cm_lockp_verb verb)
{
    for (size_t i = 0; i < CM_ARRAY_LEN(lockp_verbs); i++)
        if (lockp_verbs[i].verb == verb)
            return lockp_verbs[i].name;
    return "?";
}

/* Drops one trailing CR (framing rule shared by requests and replies). */
static size_t lockp_strip_cr(const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    return len;
}

/* Splits s into fields separated by exactly one space. Returns the number of
 * fields found (at most max are stored; more are counted), or -1 on an empty
 * field (leading, trailing or double space). */
static int lockp_split(const char *s, size_t len, lockp_field *f, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ' ')
            continue;
        if (i == start)
            return -1;
        if (n < max) {
            f[n].p = s + start;
            f[n].len = i - start;
        }
        n++;
        start = i + 1;
    }
    return (int)CM_MIN(n, (size_t)INT32_MAX);
}

static cm_lockp_parse_status lockp_bad(cm_lockp_parse_status st, char *err, size_t errlen,
                                       const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", why);
    return st;
}

/* Checks one numeric argument; the reason names the argument. */
static const char *lockp_number(const lockp_field *f, uint64_t *out, const char *nan,
                                const char *big)
{
    for (size_t i = 0; i < f->len; i++)
        if (f->p[i] < '0' || f->p[i] > '9')
            return nan;
    return cm_lockp_parse_u64(f->p, f->len, out) == CM_OK ? NULL : big;
}

static const char *lockp_resource(const lockp_field *f, cm_lockp_request *req)
{
    if (f->len > CM_LOCKP_RESOURCE_MAX)
        return "resource too long";
    if (!cm_lockp_valid_resource(f->p, f->len))
        return "bad resource";
    memcpy(req->resource, f->p, f->len);
    req->resource[f->len] = '\0';
    return NULL;
}

static const char *lockp_token(const lockp_field *f, cm_lockp_request *req)
{
    if (!cm_lockp_valid_token(f->p, f->len))
        return "bad token (need 32 lowercase hex digits)";
    memcpy(req->token, f->p, f->len);
    req->token[f->len] = '\0';
    return NULL;
}

/* Validates the arguments of a verb whose count is already right. NULL = fine. */
static const char *lockp_args(cm_lockp_request *req, const lockp_field *a)
{
    const char *why = NULL;
    switch (req->verb) {
    case CM_VERB_HELLO:
        if (a[0].len > LOCKP_NAME_MAX)
            return "client name too long";
        req->text = a[0].p;
        req->text_len = a[0].len;
        return NULL;
    case CM_VERB_AUTH:
        if (a[0].len > LOCKP_SECRET_MAX)
            return "secret too long";
        req->text = a[0].p;
        req->text_len = a[0].len;
        return NULL;
    case CM_VERB_ACQUIRE:
        if ((why = lockp_resource(&a[0], req)) != NULL)
            return why;
        if ((why = lockp_number(&a[1], &req->lease_ms, "lease_ms is not a number",
                                "lease_ms is too large")) != NULL)
            return why;
        return lockp_number(&a[2], &req->wait_ms, "wait_ms is not a number",
                            "wait_ms is too large");
    case CM_VERB_RENEW:
        if ((why = lockp_resource(&a[0], req)) != NULL)
            return why;
        if ((why = lockp_token(&a[1], req)) != NULL)
            return why;
        return lockp_number(&a[2], &req->lease_ms, "lease_ms is not a number",
                            "lease_ms is too large");
    case CM_VERB_RELEASE:
        if ((why = lockp_resource(&a[0], req)) != NULL)
            return why;
        return lockp_token(&a[1], req);
    case CM_VERB_PING:
    case CM_VERB_INFO:
    case CM_VERB_QUIT:
        return NULL;
    }
    return "unknown verb";
}

/*
 * Order of checks: the tag first (so every later error can carry it), then
 * bytes outside 0x20..0x7E, then field splitting, verb, argument count and
 * argument contents.
 */
cm_lockp_parse_status cm_lockp_parse_request(const char *line, size_t len, cm_lockp_request *req,
                                             char *err, size_t errlen)
{
    lockp_field f[LOCKP_MAX_FIELDS];
    const lockp_verb_info *vi = NULL;
    const char *sp, *why;
    size_t taglen;
    int nf;

    memset(req, 0, sizeof(*req));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (line == NULL)
        len = 0;
    len = lockp_strip_cr(line, len);
    if (len == 0)
        return lockp_bad(CM_LOCKP_BADREQ_NOTAG, err, errlen, "empty line");
    sp = memchr(line, ' ', len);
    taglen = sp != NULL ? (size_t)(sp - line) : len;
    if (!cm_lockp_valid_tag(line, taglen))
        return lockp_bad(CM_LOCKP_BADREQ_NOTAG, err, errlen,
                         taglen == 0 ? "missing tag" : "bad tag");
    memcpy(req->tag, line, taglen);
    req->tag[taglen] = '\0';

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c > 0x7e)
            return lockp_bad(CM_LOCKP_BADREQ, err, errlen,
                             c == 0 ? "NUL byte in line" : "byte outside printable ASCII");
    }
    if (sp == NULL)
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen, "missing verb");
    nf = lockp_split(sp + 1, len - taglen - 1, f, LOCKP_MAX_FIELDS);
    if (nf < 0)
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen,
                         "empty field (fields are separated by one space)");
    for (size_t i = 0; i < CM_ARRAY_LEN(lockp_verbs); i++) {
        if (strlen(lockp_verbs[i].name) == f[0].len &&
            strncasecmp(lockp_verbs[i].name, f[0].p, f[0].len) == 0) {
            vi = &lockp_verbs[i];
            break;
        }
    }
    if (vi == NULL)
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen, "unknown verb");
    if ((size_t)nf - 1 < vi->nargs)
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen, "missing argument");
    if ((size_t)nf - 1 > vi->nargs)
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen, "too many arguments");
    req->verb = vi->verb;
    why = lockp_args(req, &f[1]);
    if (why != NULL) {
        /* Keep the tag (the reply needs it) but no half-filled fields. */
        char tag[CM_LOCKP_TAG_MAX + 1];
        memcpy(tag, req->tag, sizeof(tag));
        memset(req, 0, sizeof(*req));
        memcpy(req->tag, tag, sizeof(tag));
        return lockp_bad(CM_LOCKP_BADREQ, err, errlen, why);
    }
    return CM_LOCKP_OK;
}

size_t cm_lockp_vformat(char *buf, size_t buflen, const char *tag, const char *fmt, va_list ap)
{
    int head, body;
    if (buf == NULL || buflen == 0)
        return 0;
    head = snprintf(buf, buflen, "%s ", tag != NULL ? tag : "*");
    if (head < 0 || (size_t)head >= buflen)
        goto fail;
    body = vsnprintf(buf + head, buflen - (size_t)head, fmt, ap);
    /* +1 for the LF, which must also fit with the NUL. */
    if (body < 0 || (size_t)head + (size_t)body + 1 >= buflen)
        goto fail;
    buf[head + body] = '\n';
    buf[head + body + 1] = '\0';
    return (size_t)head + (size_t)body + 1;
fail:
    buf[0] = '\0';
    return 0;
}

size_t cm_lockp_format(char *buf, size_t buflen, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = cm_lockp_vformat(buf, buflen, tag, fmt, ap);
    va_end(ap);
    return n;
}

cm_rc cm_lockp_parse_reply(const char *line, size_t len, cm_lockp_reply *out)
{
    const char *p, *end, *sp;
    size_t taglen, wlen;

    memset(out, 0, sizeof(*out));
    out->rest = "";
    if (line == NULL)
        return CM_ERR;
    len = lockp_strip_cr(line, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c > 0x7e)
            return CM_ERR;
    }
    end = line + len;
    sp = memchr(line, ' ', len);
    if (sp == NULL)
        return CM_ERR;
    taglen = (size_t)(sp - line);
    if (taglen == 1 && line[0] == '*')
        out->is_push = true;
    else if (!cm_lockp_valid_tag(line, taglen))
        return CM_ERR;
    memcpy(out->tag, line, taglen);
    out->tag[taglen] = '\0';

    p = sp + 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    wlen = sp != NULL ? (size_t)(sp - p) : (size_t)(end - p);
    if (wlen == 0 || wlen >= sizeof(out->word))
        return CM_ERR;
    memcpy(out->word, p, wlen);
    out->word[wlen] = '\0';
    if (sp != NULL) {
        out->rest = sp + 1;
        out->rest_len = (size_t)(end - (sp + 1));
    }
    return CM_OK;
}

cm_rc cm_lockp_parse_grant(const char *rest, size_t len, char token[CM_LOCKP_TOKEN_LEN + 1],
                           uint64_t *fence, uint64_t *validity_ms)
{
    lockp_field f[4];
    uint64_t fv, vv;
    if (rest == NULL || lockp_split(rest, len, f, CM_ARRAY_LEN(f)) != 3)
        return CM_ERR;
    if (!cm_lockp_valid_token(f[0].p, f[0].len) ||
        cm_lockp_parse_u64(f[1].p, f[1].len, &fv) != CM_OK ||
        cm_lockp_parse_u64(f[2].p, f[2].len, &vv) != CM_OK)
        return CM_ERR;
    memcpy(token, f[0].p, CM_LOCKP_TOKEN_LEN);
    token[CM_LOCKP_TOKEN_LEN] = '\0';
    *fence = fv;
    *validity_ms = vv;
    return CM_OK;
}

cm_rc cm_lockp_parse_lost(const char *rest, size_t len, char resource[CM_LOCKP_RESOURCE_MAX + 1],
                          char token[CM_LOCKP_TOKEN_LEN + 1])
{
    lockp_field f[3];
    if (rest == NULL || lockp_split(rest, len, f, CM_ARRAY_LEN(f)) != 2)
        return CM_ERR;
    if (!cm_lockp_valid_resource(f[0].p, f[0].len) || !cm_lockp_valid_token(f[1].p, f[1].len))
        return CM_ERR;
    memcpy(resource, f[0].p, f[0].len);
    resource[f[0].len] = '\0';
    memcpy(token, f[1].p, CM_LOCKP_TOKEN_LEN);
    token[CM_LOCKP_TOKEN_LEN] = '\0';
    return CM_OK;
}

cm_rc cm_lockp_parse_lost_reason(const char *rest, size_t len,
                                 char resource[CM_LOCKP_RESOURCE_MAX + 1],
                                 char token[CM_LOCKP_TOKEN_LEN + 1],
                                 char reason[CM_LOCKP_REASON_MAX + 1])
{
    lockp_field f[4];
    int n = rest != NULL ? lockp_split(rest, len, f, CM_ARRAY_LEN(f)) : 0;
    if (n < 2)
        return CM_ERR; /* fields after the reason (a later addition) are skipped */
    if (cm_lockp_parse_lost(rest, (size_t)(f[1].p + f[1].len - rest), resource, token) != CM_OK)
        return CM_ERR;
    reason[0] = '\0';
    if (n >= 3) {
        if (!lockp_valid_word(f[2].p, f[2].len, CM_LOCKP_REASON_MAX))
            return CM_ERR;
        memcpy(reason, f[2].p, f[2].len);
        reason[f[2].len] = '\0';
    }
    return CM_OK;
}

/* "key=value" field of SHOW into out; false when it is malformed. */
static bool lockp_show_field(const lockp_field *f, cm_lockp_show *out, bool *held, bool *fence)
{
    const char *eq = memchr(f->p, '=', f->len);
    if (eq == NULL || eq == f->p)
        return false;
    size_t klen = (size_t)(eq - f->p);
    const char *v = eq + 1;
    size_t vlen = f->len - klen - 1;
    char *name = NULL;
    uint64_t *num = NULL;
    if (klen == 4 && memcmp(f->p, "held", 4) == 0) {
        if (vlen != 1 || (v[0] != '0' && v[0] != '1'))
            return false;
        out->held = v[0] == '1';
        *held = true;
        return true;
    }
    if (klen == 5 && memcmp(f->p, "fence", 5) == 0) {
        num = &out->fence;
        *fence = true;
    } else if (klen == 6 && memcmp(f->p, "ttl_ms", 6) == 0) {
        num = &out->ttl_ms;
    } else if (klen == 7 && memcmp(f->p, "waiters", 7) == 0) {
        num = &out->waiters;
    } else if (klen == 6 && memcmp(f->p, "holder", 6) == 0) {
        name = out->holder;
    } else if (klen == 5 && memcmp(f->p, "lockd", 5) == 0) {
        name = out->lockd;
    } else {
        return true; /* a key of a newer lockd */
    }
    if (num != NULL)
        return cm_lockp_parse_u64(v, vlen, num) == CM_OK;
    if (vlen == 0)
        return false;
    vlen = CM_MIN(vlen, (size_t)CM_LOCKP_SHOW_NAME_MAX);
    memcpy(name, v, vlen);
    name[vlen] = '\0';
    return true;
}

cm_rc cm_lockp_parse_show(const char *rest, size_t len, cm_lockp_show *out)
{
    lockp_field f[16];
    bool held = false, fence = false;
    memset(out, 0, sizeof(*out));
    snprintf(out->holder, sizeof(out->holder), "-");
    snprintf(out->lockd, sizeof(out->lockd), "-");
    int n = rest != NULL ? lockp_split(rest, len, f, CM_ARRAY_LEN(f)) : 0;
    if (n <= 0)
        return CM_ERR;
    for (int i = 0; i < CM_MIN(n, (int)CM_ARRAY_LEN(f)); i++)
        if (!lockp_show_field(&f[i], out, &held, &fence))
            return CM_ERR;
    return held && fence ? CM_OK : CM_ERR;
}
