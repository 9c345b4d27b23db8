/*
 * it_quorum3: the quorum story of it_quorum.c with 3 Redis masters.
 */
#include "it_common.h"
#include "it_quorum.h"

START_TEST(test_quorum3)
{
    it_quorum_run(3);
}
END_TEST

int main(void)
{
    return it_main("it_quorum3", test_quorum3, 80, NULL);
}
