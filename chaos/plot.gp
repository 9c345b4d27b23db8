# plot.gp: throughput and errors per second of a chaos run, fault windows shaded.
# gnuplot -e "datafile='rate.dat'; faultsfile='faults.gp'; outbase='out/plot'" chaos/plot.gp
# rate.dat columns: second, ok ops, failed ops, unanswered ops, ok bookings.
# faults.gp: "set object/label" lines, one shaded rectangle and one label per fault, shaded by
# family (report.sh's cx_plot): orange process/proxy/database/payment faults, blue the kernel
# network faults of netns mode (partition_*, netem_link), purple clocks and amnesia, red a fault
# that breaks Redlock's assumptions by design (lock overlaps expected in its window).
load faultsfile
set title "chaos run: operations per second (shaded: fault windows; orange process/proxy/db/pay, blue kernel network (netns), purple clock/amnesia, red breaks Redlock by design)" noenhanced
set xlabel "seconds since run start"
set ylabel "operations / s"
set key outside right top
set grid ytics
set yrange [0:*]
set style data steps
set terminal pngcairo size 1400,600 font ",10"
set output outbase.".png"
plot datafile using 1:2 title "ok (all ops)" lw 2 lc rgb "#2e7d32", \
     datafile using 1:5 title "ok bookings" lw 1.5 lc rgb "#1565c0", \
     datafile using 1:3 title "failed" lw 1.5 lc rgb "#c62828", \
     datafile using 1:4 title "no answer" lw 1.5 lc rgb "#6a1b9a"

set terminal svg size 1400,600 dynamic font ",10"
set output outbase.".svg"
replot
unset output
