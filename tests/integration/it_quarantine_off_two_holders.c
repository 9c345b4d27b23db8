/*
 * it_quarantine_off_two_holders: with redlock.quarantine false, a master that restarts
 * empty at the wrong moment gives a lock to a second holder while the first one's lease
 * lasts, with a fence that did not grow (the bug of issue 15 §2; see it_quarantine.c).
 */
#include "it_common.h"
#include "it_quarantine.h"

START_TEST(test_quarantine_off_two_holders)
{
    it_quarantine_story(false, false);
}
END_TEST

int main(void)
{
    return it_main("it_quarantine_off_two_holders", test_quarantine_off_two_holders, 30, NULL);
}
