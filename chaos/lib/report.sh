# shellcheck shell=bash
# report.sh (sourced by chaos/run): the plot (gnuplot, chaos/plot.gp) and the text summary.

# cx_plot OUT: per-second ok / fail / unknown operations and ok bookings from history.jsonl,
# the fault windows from faults.jsonl, into OUT/plot.png and OUT/plot.svg.
cx_plot() {
    local out=$1
    jq -r 'select(.type == "op") | [((.end_ms / 1000) | floor), .outcome, .op] | @tsv' \
        "$out/history.jsonl" "$out/counter.jsonl" |
        awk -F '\t' '
            { t = $1 + 0; if (t > max) max = t; if (min == "" || t < min) min = t
              if ($2 == "ok") ok[t]++; else if ($2 == "fail") fail[t]++; else unk[t]++
              if ($2 == "ok" && $3 == "book") book[t]++ }
            END { print "# s ok fail unknown book_ok"
                  for (t = min + 0; t <= max; t++) printf "%d %d %d %d %d\n", t, ok[t], fail[t], unk[t], book[t] }' \
            >"$CX_WORK/rate.dat"
    jq -r 'select(.type == "fault") | [.start_ms / 1000, .end_ms / 1000, .kind] | @tsv' \
        "$out/faults.jsonl" |
        awk -F '\t' '{ n++; e = ($2 > $1 + 0.2) ? $2 : $1 + 0.2
            printf "set object %d rect from %.3f, graph 0 to %.3f, graph 1 fc rgb \"#f4b183\" fs transparent solid 0.35 noborder behind\n", n, $1, e
            printf "set label %d \"%s\" at %.3f, graph 0.02 rotate by 90 noenhanced font \",8\" tc rgb \"#7f3f00\"\n", n, $3, $1 + 0.1 }' \
            >"$CX_WORK/faults.gp"
    gnuplot -e "datafile='$CX_WORK/rate.dat'; faultsfile='$CX_WORK/faults.gp'; outbase='$out/plot'" \
        "$CX_ROOT/chaos/plot.gp" 2>>"$CX_WORK/logs/gnuplot.log"
}

# cx_report OUT CHECK_RC: the text summary (also report.txt).
cx_report() {
    local out=$1 rc=$2
    echo "== chaos run: seed $SEED, ${DURATION}s, faults: ${FAULTS} =="
    echo "-- faults injected ($(grep -c . "$out/faults.jsonl" || true))"
    jq -r '[.kind, .target, .start_ms, .end_ms, .note] | @tsv' "$out/faults.jsonl" |
        awk -F '\t' '{ printf "  %-20s %-22s %7d..%-7d ms  %s\n", $1, $2, $3, $4, $5 }'
    echo "-- operations by outcome"
    sed -n 's/^INFO ops /  /p; s/^INFO history /  /p' "$out/check.txt"
    echo "-- recovery after each fault kind (first ok booking after the fault ended)"
    sed -n 's/^INFO recovery /  /p' "$out/check.txt"
    if [ -s "$out/guards_killed.txt" ]; then
        echo "-- guard counters of reserved processes read just before they were killed"
        awk '{ s[$2] += $3 } END { for (k in s) printf "  %s %d\n", k, s[k] }' "$out/guards_killed.txt"
    fi
    echo "-- checks"
    sed -n 's/^CHECK /  /p' "$out/check.txt"
    if [ "$rc" = 0 ]; then echo "RESULT PASS"; else echo "RESULT FAIL (chaos_check exit $rc)"; fi
    echo "files: $out/{history.jsonl,counter.jsonl,faults.jsonl,schedule.txt,report.txt,check.json,plot.png,plot.svg,logs/}"
}
