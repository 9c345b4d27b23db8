/*
 * it_quorum5: the quorum story of it_quorum.c with 5 Redis masters.
 */
#include "it_common.h"
#include "it_quorum.h"

START_TEST(test_quorum5)
{
    it_quorum_run(5);
}
END_TEST

int main(void)
{
    return it_main("it_quorum5", test_quorum5, 80, NULL);
}
