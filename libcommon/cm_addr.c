/*
 * cm_addr: parsing and formatting of "host:port" endpoints ("[v6]:port" for
 * IPv6 literals). No name resolution happens here.
 */
#include "cm_addr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cm_rc addr_fail(char *err, size_t errlen, const char *reason)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", reason);
    return CM_ERR;
}

/* Parses an address of exactly len bytes (not NUL-terminated). */
static cm_rc addr_parse_n(const char *text, size_t len, cm_addr *out, char *err, size_t errlen)
{
    const char *host, *port, *end = text + len;
    size_t hostlen;

    if (len == 0)
        return addr_fail(err, errlen, "empty address");
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL)
            return addr_fail(err, errlen, "missing ']' in IPv6 address");
        host = text + 1;
        hostlen = (size_t)(close - host);
        if (close + 1 >= end || close[1] != ':')
            return addr_fail(err, errlen, "missing ':port' after ']'");
        port = close + 2;
        if (hostlen == 0 || memchr(host, ':', hostlen) == NULL)
            return addr_fail(err, errlen, "bad IPv6 address in brackets");
    } else {
        const char *colon = NULL;
        for (const char *p = text; p < end; p++) {
            if (*p == ':') {
                if (colon != NULL)
                    return addr_fail(err, errlen, "IPv6 address needs brackets: [addr]:port");
                colon = p;
            }
        }
        if (colon == NULL)
            return addr_fail(err, errlen, "missing ':port'");
        host = text;
        hostlen = (size_t)(colon - text);
        port = colon + 1;
    }
    if (hostlen == 0)
        return addr_fail(err, errlen, "empty host");
    if (hostlen >= CM_HOST_MAX)
        return addr_fail(err, errlen, "host too long");
    for (size_t i = 0; i < hostlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == ',' || c == '/')
            return addr_fail(err, errlen, "bad character in host");
    }
    if (port >= end)
        return addr_fail(err, errlen, "empty port");
    long pv = 0;
    for (const char *p = port; p < end; p++) {
        if (*p < '0' || *p > '9')
            return addr_fail(err, errlen, "port is not a number");
        pv = pv * 10 + (*p - '0');
        if (pv > 65535)
            return addr_fail(err, errlen, "port out of range 1..65535");
    }
    if (pv < 1)
        return addr_fail(err, errlen, "port out of range 1..65535");
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    out->port = (int)pv;
    return CM_OK;
}

cm_rc cm_addr_parse(const char *text, cm_addr *out, char *err, size_t errlen)
{
    if (text == NULL)
        return addr_fail(err, errlen, "empty address");
    cm_addr tmp;
    if (addr_parse_n(text, strlen(text), &tmp, err, errlen) != CM_OK)
        return CM_ERR;
    *out = tmp;
    return CM_OK;
}

cm_rc cm_addr_parse_list(const char *text, cm_addr **out, size_t *count, char *err, size_t errlen)
{
    size_t n = 1, i = 0;
    cm_addr *items;
    const char *p;

    if (text == NULL || *text == '\0')
        return addr_fail(err, errlen, "empty address list");
    for (p = text; *p != '\0'; p++)
        if (*p == ',')
            n++;
    items = calloc(n, sizeof(*items));
    if (items == NULL)
        return addr_fail(err, errlen, "out of memory");
    p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char why[128];
        if (addr_parse_n(p, len, &items[i], why, sizeof(why)) != CM_OK) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "item %zu '%.*s': %s", i + 1, (int)CM_MIN(len, 300), p, why);
            free(items);
            return CM_ERR;
        }
        i++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = items;
    *count = n;
    return CM_OK;
}

const char *cm_addr_format(const cm_addr *a, char *buf, size_t buflen)
{
    if (buflen == 0)
        return buf;
    if (strchr(a->host, ':') != NULL)
        snprintf(buf, buflen, "[%s]:%d", a->host, a->port);
    else
        snprintf(buf, buflen, "%s:%d", a->host, a->port);
    return buf;
}
