/*
 * it_quarantine_on_one_holder: with the guard on (the default), the same amnesia gives no
 * second grant until the first lease has passed, and the master that forgot gets its fence
 * counter back before it counts again: the next fence grows even when it and another
 * master that never saw the lock grant it alone (see it_quarantine.c).
 */
#include "it_common.h"
#include "it_quarantine.h"

START_TEST(test_quarantine_on_one_holder)
{
    it_quarantine_story(true, false);
}
END_TEST

int main(void)
{
    return it_main("it_quarantine_on_one_holder", test_quarantine_on_one_holder, 30, NULL);
}
