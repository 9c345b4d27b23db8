/*
 * cx_cli: the chaos tools' loopback rule (see the header).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx_cli.h"

bool cx_cli_loopback(const cm_addr *a)
{
    return strcmp(a->host, "localhost") == 0 || strcmp(a->host, "::1") == 0 ||
           strncmp(a->host, "127.", 4) == 0;
}

bool cx_cli_parse_loopback(const char *v, void *dst, char *why, size_t whylen)
{
    cm_addr a;
    if (cm_addr_parse(v, &a, why, whylen) != CM_OK)
        return false;
    if (!cx_cli_loopback(&a)) {
        snprintf(why, whylen, "loopback addresses only");
        return false;
    }
    *(cm_addr *)dst = a;
    return true;
}

bool cx_cli_parse_loopback_list(const char *v, void *dst, char *why, size_t whylen)
{
    cx_addr_list *l = dst;
    cm_addr *a = NULL;
    size_t n = 0;
    if (cm_addr_parse_list(v, &a, &n, why, whylen) != CM_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!cx_cli_loopback(&a[i])) {
            snprintf(why, whylen, "loopback addresses only");
            free(a);
            return false;
        }
    }
    free(l->a);
    l->a = a;
    l->n = n;
    return true;
}
