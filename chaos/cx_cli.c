/*
 * cx_cli: command-line helpers of the chaos tools (see the header).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cx_cli.h"

bool cx_cli_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool cx_cli_loopback(const cm_addr *a)
{
    return strcmp(a->host, "localhost") == 0 || strcmp(a->host, "::1") == 0 ||
           strncmp(a->host, "127.", 4) == 0;
}
