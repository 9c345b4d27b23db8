/*
 * cx_checks_int: what the check modules of chaos_check share (cx_checks.c, which runs them
 * all, and cx_checks_holds.c): recording offenders and information in a cx_result, and what
 * counts as an acknowledged booking. Not for callers of cx_checks.h.
 */
#ifndef CX_CHECKS_INT_H
#define CX_CHECKS_INT_H

#include <stdbool.h>

#include "cx_checks.h"

/* Records one offender: the check fails; the first few are named in its detail. */
void cx_check_offend(cx_result *r, const char *fmt, ...) CM_PRINTF(2, 3);
/* Adds information that is not an offence (pass unchanged). */
void cx_check_inform(cx_result *r, const char *fmt, ...) CM_PRINTF(2, 3);
/* A booking answered 201 with a reservation id (plain or by holdId). */
bool cx_is_ack_book(const cx_op *op);

/* The checks of seat holds (SPEC §9), cx_checks_holds.c. */
void cx_check_holds_exclusive(cx_result *r, const cx_history *h, const cx_snap *s);
void cx_check_holds_expire(cx_result *r, const cx_history *h, const cx_snap *s);

#endif
