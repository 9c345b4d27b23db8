/*
 * cm_lockp: the LOCKP/1 codec (SPEC §2). Pure functions, no I/O, no allocation:
 * parse one request line into a struct, format replies, parse replies for clients.
 * Framing (finding the LF, the 4096-byte limit) is the caller's; the parser drops
 * one trailing CR itself.
 */
#ifndef CM_LOCKP_H
#define CM_LOCKP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cm_core.h"

#define CM_LOCKP_MAX_LINE     4096 /* bytes, excluding the LF */
#define CM_LOCKP_TAG_MAX      32
#define CM_LOCKP_RESOURCE_MAX 256
#define CM_LOCKP_TOKEN_LEN    32

typedef enum cm_lockp_verb {
    CM_VERB_HELLO,
    CM_VERB_AUTH,
    CM_VERB_PING,
    CM_VERB_ACQUIRE,
    CM_VERB_RENEW,
    CM_VERB_RELEASE,
    CM_VERB_INFO,
    CM_VERB_QUIT,
} cm_lockp_verb;

typedef struct cm_lockp_request {
    char tag[CM_LOCKP_TAG_MAX + 1];
    cm_lockp_verb verb;
    char resource[CM_LOCKP_RESOURCE_MAX + 1]; /* ACQUIRE, RENEW, RELEASE */
    char token[CM_LOCKP_TOKEN_LEN + 1];       /* RENEW, RELEASE: 32 lowercase hex */
    uint64_t lease_ms;                        /* ACQUIRE, RENEW */
    uint64_t wait_ms;                         /* ACQUIRE */
    const char *text; /* HELLO client name / AUTH secret: borrowed from the line */
    size_t text_len;
} cm_lockp_request;

typedef enum cm_lockp_parse_status {
    CM_LOCKP_OK,     /* req is filled */
    CM_LOCKP_BADREQ, /* malformed; req->tag holds a valid tag: reply "<tag> ERR BADREQ <err>" */
    CM_LOCKP_BADREQ_NOTAG, /* malformed and no valid tag: reply "* ERR BADREQ <err>" */
} cm_lockp_parse_status;

/* Parses one line (without its LF; one trailing CR is dropped). err gets a short
 * human reason on failure (printable ASCII, no newline). Never reads past len. */
cm_lockp_parse_status cm_lockp_parse_request(const char *line, size_t len, cm_lockp_request *req,
                                             char *err, size_t errlen);

const char *cm_lockp_verb_name(cm_lockp_verb verb);
bool cm_lockp_valid_tag(const char *s, size_t len);
bool cm_lockp_valid_resource(const char *s, size_t len);
bool cm_lockp_valid_token(const char *s, size_t len);

/* Formats "<tag> <text>\n" (tag NULL means the push tag "*") into buf.
 * Returns the length written (excluding NUL), or 0 if it did not fit. */
size_t cm_lockp_format(char *buf, size_t buflen, const char *tag, const char *fmt, ...)
    CM_PRINTF(4, 5);
size_t cm_lockp_vformat(char *buf, size_t buflen, const char *tag, const char *fmt, va_list ap);

/* A reply or push as a client sees it. */
typedef struct cm_lockp_reply {
    bool is_push;                   /* tag was "*" */
    char tag[CM_LOCKP_TAG_MAX + 1]; /* "*" for pushes */
    char word[16];                  /* OK, ERR, TIMEOUT, LOST; for pushes the event (LOST, ERR) */
    const char *rest;               /* text after the word and one space; "" if none (borrowed) */
    size_t rest_len;
} cm_lockp_reply;

/* Parses one reply line (without LF; one trailing CR dropped). CM_ERR if malformed. */
cm_rc cm_lockp_parse_reply(const char *line, size_t len, cm_lockp_reply *out) CM_MUSTCHECK;
/* Parses the rest of "OK <token> <fence> <validity_ms>" (ACQUIRE grant). */
cm_rc cm_lockp_parse_grant(const char *rest, size_t len, char token[CM_LOCKP_TOKEN_LEN + 1],
                           uint64_t *fence, uint64_t *validity_ms) CM_MUSTCHECK;
/* Parses the rest of "LOST <resource> <token>" (push). */
cm_rc cm_lockp_parse_lost(const char *rest, size_t len, char resource[CM_LOCKP_RESOURCE_MAX + 1],
                          char token[CM_LOCKP_TOKEN_LEN + 1]) CM_MUSTCHECK;
/* Parses the rest of "LOST <resource> <token> [<reason>]" (push; SPEC §2b added the
 * reason, a 3-field LOST still parses): reason gets it, or "" when there is none. */
#define CM_LOCKP_REASON_MAX 32
cm_rc cm_lockp_parse_lost_reason(const char *rest, size_t len,
                                 char resource[CM_LOCKP_RESOURCE_MAX + 1],
                                 char token[CM_LOCKP_TOKEN_LEN + 1],
                                 char reason[CM_LOCKP_REASON_MAX + 1]) CM_MUSTCHECK;

/* SHOW's answer (SPEC §2b): "held=<0|1> fence=<n> ttl_ms=<n> holder=<name|-> lockd=<id|->
 * waiters=<n>". held and fence are required; keys it does not know are skipped (a newer
 * lockd may add some); names longer than the fields are cut. */
#define CM_LOCKP_SHOW_NAME_MAX 64
typedef struct cm_lockp_show {
    bool held;
    uint64_t fence;
    uint64_t ttl_ms;
    char holder[CM_LOCKP_SHOW_NAME_MAX + 1]; /* the holder's HELLO name, "-" when none */
    char lockd[CM_LOCKP_SHOW_NAME_MAX + 1];  /* the lockd that granted it, "-" when none */
    uint64_t waiters;
} cm_lockp_show;
cm_rc cm_lockp_parse_show(const char *rest, size_t len, cm_lockp_show *out) CM_MUSTCHECK;

/* Strict decimal u64 (digits only, no sign, no overflow). */
cm_rc cm_lockp_parse_u64(const char *s, size_t len, uint64_t *out) CM_MUSTCHECK;

#endif
