/*
 * it_quarantine: the amnesia story of issue 15 §2 shared by it_quarantine_off_two_holders and
 * it_quarantine_on_one_holder (see it_quarantine.c).
 */
#ifndef IT_QUARANTINE_H
#define IT_QUARANTINE_H

#include <stdbool.h>

/* Runs the story with redlock.quarantine set to guard; fails the current Check test when
 * what the guard promises (guard) or what its absence allows (!guard) does not happen.
 * restart_b: lockd B is SIGKILLed and started again around the amnesia, so it only has its
 * start-up rule to go by. */
void it_quarantine_story(bool guard, bool restart_b);

#endif
