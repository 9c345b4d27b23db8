/*
 * fuzz_lockp: libFuzzer target for the LOCKP/1 codec. Feeds arbitrary bytes
 * to the request and reply parsers and aborts when an invariant breaks:
 * an OK request has valid fields and survives a format/parse round trip, a
 * BADREQ keeps a valid tag, every error text is short printable ASCII.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_lockp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_err_text(const char *err)
{
    size_t n = strlen(err);
    CHECK(n > 0 && n < 128);
    for (size_t i = 0; i < n; i++)
        CHECK(err[i] >= 0x20 && err[i] <= 0x7e);
}

static bool in_input(const char *p, size_t len, const char *base, size_t size)
{
    return p >= base && len <= size && (size_t)(p - base) <= size - len;
}

static void check_word(const char *p, size_t len, size_t max)
{
    CHECK(len >= 1 && len <= max);
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] >= 0x21 && p[i] <= 0x7e);
}

/* Writes the canonical form of req (upper-case verb, plain decimals). */
static int format_request(const cm_lockp_request *r, char *buf, size_t len)
{
    const char *verb = cm_lockp_verb_name(r->verb);
    switch (r->verb) {
    case CM_VERB_HELLO:
    case CM_VERB_AUTH:
        return snprintf(buf, len, "%s %s %.*s", r->tag, verb, (int)r->text_len, r->text);
    case CM_VERB_ACQUIRE:
        return snprintf(buf, len, "%s %s %s %llu %llu", r->tag, verb, r->resource,
                        (unsigned long long)r->lease_ms, (unsigned long long)r->wait_ms);
    case CM_VERB_RENEW:
        return snprintf(buf, len, "%s %s %s %s %llu", r->tag, verb, r->resource, r->token,
                        (unsigned long long)r->lease_ms);
    case CM_VERB_RELEASE:
        return snprintf(buf, len, "%s %s %s %s", r->tag, verb, r->resource, r->token);
    default:
        return snprintf(buf, len, "%s %s", r->tag, verb);
    }
}

static void check_request(const char *line, size_t size)
{
    cm_lockp_request req, again;
    char err[128], err2[128], canon[CM_LOCKP_MAX_LINE + 64];
    cm_lockp_parse_status st = cm_lockp_parse_request(line, size, &req, err, sizeof(err));

    if (st == CM_LOCKP_BADREQ_NOTAG) {
        CHECK(req.tag[0] == '\0');
        check_err_text(err);
        return;
    }
    CHECK(cm_lockp_valid_tag(req.tag, strlen(req.tag)));
    if (st == CM_LOCKP_BADREQ) {
        check_err_text(err);
        return;
    }
    CHECK(st == CM_LOCKP_OK);
    CHECK(strcmp(cm_lockp_verb_name(req.verb), "?") != 0);
    switch (req.verb) {
    case CM_VERB_HELLO:
    case CM_VERB_AUTH:
        CHECK(in_input(req.text, req.text_len, line, size));
        check_word(req.text, req.text_len, req.verb == CM_VERB_HELLO ? 64 : 256);
        break;
    case CM_VERB_RENEW:
    case CM_VERB_RELEASE:
        CHECK(cm_lockp_valid_token(req.token, strlen(req.token)));
        /* fall through */
    case CM_VERB_ACQUIRE:
        CHECK(cm_lockp_valid_resource(req.resource, strlen(req.resource)));
        break;
    default:
        break;
    }
    int n = format_request(&req, canon, sizeof(canon));
    CHECK(n > 0 && (size_t)n < sizeof(canon));
    CHECK(cm_lockp_parse_request(canon, (size_t)n, &again, err2, sizeof(err2)) == CM_LOCKP_OK);
    CHECK(strcmp(again.tag, req.tag) == 0 && again.verb == req.verb);
    CHECK(strcmp(again.resource, req.resource) == 0 && strcmp(again.token, req.token) == 0);
    CHECK(again.lease_ms == req.lease_ms && again.wait_ms == req.wait_ms);
    CHECK(again.text_len == req.text_len);
    CHECK(again.text_len == 0 || memcmp(again.text, req.text, req.text_len) == 0);
}

static void check_reply(const char *line, size_t size)
{
    cm_lockp_reply rep;
    char token[CM_LOCKP_TOKEN_LEN + 1], res[CM_LOCKP_RESOURCE_MAX + 1];
    uint64_t fence, validity;

    if (cm_lockp_parse_reply(line, size, &rep) != CM_OK)
        return;
    if (rep.is_push)
        CHECK(strcmp(rep.tag, "*") == 0);
    else
        CHECK(cm_lockp_valid_tag(rep.tag, strlen(rep.tag)));
    CHECK(strlen(rep.word) > 0 && strlen(rep.word) < sizeof(rep.word));
    CHECK(rep.rest_len == 0 || in_input(rep.rest, rep.rest_len, line, size));
    if (cm_lockp_parse_grant(rep.rest, rep.rest_len, token, &fence, &validity) == CM_OK)
        CHECK(cm_lockp_valid_token(token, strlen(token)));
    if (cm_lockp_parse_lost(rep.rest, rep.rest_len, res, token) == CM_OK) {
        CHECK(cm_lockp_valid_resource(res, strlen(res)));
        CHECK(cm_lockp_valid_token(token, strlen(token)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan sees any read past the end. */
    char *line = malloc(size != 0 ? size : 1);
    uint64_t v;
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    check_request(line, size);
    check_reply(line, size);
    if (cm_lockp_parse_u64(line, size, &v) == CM_OK) {
        /* Only digits, and at most 20 significant ones (UINT64_MAX has 20). */
        size_t zeros = 0;
        while (zeros < size && line[zeros] == '0')
            zeros++;
        CHECK(size > 0 && size - zeros <= 20);
        for (size_t i = 0; i < size; i++)
            CHECK(line[i] >= '0' && line[i] <= '9');
    }
    free(line);
    return 0;
}
