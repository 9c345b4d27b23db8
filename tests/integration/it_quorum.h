/*
 * it_quorum: the quorum story shared by it_quorum3 and it_quorum5 (see it_quorum.c).
 */
#ifndef IT_QUORUM_H
#define IT_QUORUM_H

#include <stddef.h>

/* Runs the whole story with n masters; fails the current Check test on any violation. */
void it_quorum_run(size_t n);

#endif
