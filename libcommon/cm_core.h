/*
 * cm_core: the project-wide return codes and small compiler helpers.
 * Every fallible function in the project returns cm_rc (or a pointer that is
 * NULL on failure) and is marked CM_MUSTCHECK so an ignored error is a build error.
 */
#ifndef CM_CORE_H
#define CM_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum cm_rc {
    CM_OK = 0,     /* done */
    CM_ERR = -1,   /* failed; the caller's state is unchanged unless documented */
    CM_AGAIN = -2, /* not complete yet (need more input / retry later) */
} cm_rc;

#define CM_MUSTCHECK    __attribute__((warn_unused_result))
#define CM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CM_UNUSED(x)    ((void)(x))
#define CM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CM_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CM_MAX(a, b)    ((a) > (b) ? (a) : (b))

#endif
