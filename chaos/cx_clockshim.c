/*
 * cx_clockshim: an LD_PRELOAD shim that moves a process's wall clock (CLOCK_REALTIME and
 * gettimeofday) by an offset read from a file, for the chaos suite's clock-jump faults.
 * (Stub: being written.)
 */
int cx_clockshim_stub(void);
int cx_clockshim_stub(void)
{
    return 0;
}
