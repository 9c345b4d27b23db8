/*
 * bkphase_print: prints the booking phase table of rs_bkphase (every phase and the
 * phases it may move to) in the form ARCHITECTURE.md shows it, so the test
 * architecture_phases can check that the document is the table the code enforces.
 */
#include <stdio.h>

#include "rs_bkphase.h"

int main(void)
{
    for (int from = 0; from < BK_NPHASES; from++) {
        printf("%-17s ->", rs_bk_phase_name((rs_bk_phase)from));
        int n = 0;
        for (int to = 0; to < BK_NPHASES; to++) {
            if (rs_bk_phase_legal((rs_bk_phase)from, (rs_bk_phase)to)) {
                printf("%s %s", n ? "," : "", rs_bk_phase_name((rs_bk_phase)to));
                n++;
            }
        }
        printf("%s%s\n", n ? "" : " (end)",
               rs_bk_phase_has_conn((rs_bk_phase)from) ? "   [holds a connection]" : "");
    }
    return 0;
}
