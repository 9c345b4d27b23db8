# shellcheck shell=bash
# report.sh (sourced by chaos/run): the plot (gnuplot, chaos/plot.gp) and the text summary,
# with the table per fault kind (issue 15 §4): how many, by design or not, what the lock checks
# found in its windows, and the recovery after each (max and p50).

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
    # The shade says the family: orange process, proxy, database and payment faults; blue the
    # kernel network faults of netns mode; purple clocks and amnesia; red any fault that
    # breaks Redlock's assumptions by design (overlaps expected there).
    jq -r 'select(.type == "fault") | [.start_ms / 1000, .end_ms / 1000, .kind, (.breaks_redlock // false)] | @tsv' \
        "$out/faults.jsonl" |
        awk -F '\t' '{ n++; e = ($2 > $1 + 0.2) ? $2 : $1 + 0.2
            fc = "#f4b183"; tc = "#7f3f00"
            if ($3 ~ /^(partition_|netem_)/) { fc = "#9dc3e6"; tc = "#1f4e79" }
            else if ($3 ~ /^(clock_|redis_amnesia)/) { fc = "#c9a0dc"; tc = "#4b1f6f" }
            if ($4 == "true") { fc = "#ff7c80"; tc = "#8b0000" }
            printf "set object %d rect from %.3f, graph 0 to %.3f, graph 1 fc rgb \"%s\" fs transparent solid 0.35 noborder behind\n", n, $1, e, fc
            printf "set label %d \"%s\" at %.3f, graph 0.02 rotate by 90 noenhanced font \",8\" tc rgb \"%s\"\n", n, $3, $1 + 0.1, tc }' \
            >"$CX_WORK/faults.gp"
    gnuplot -e "datafile='$CX_WORK/rate.dat'; faultsfile='$CX_WORK/faults.gp'; outbase='$out/plot'" \
        "$CX_ROOT/chaos/plot.gp" 2>>"$CX_WORK/logs/gnuplot.log"
}

# cx_kind_table OUT: one line per fault kind: injected, by design (breaks_redlock), lock
# overlaps and fence regressions in its windows (from its start to its end + 5 s, the longest
# lease; a finding in two windows goes to the later fault) split into expected (chaos_check's
# "expected" list names the fault) and not, the
# recovery after each fault in fault-free time (as chaos_check's liveness counts it: the first
# ok booking after the fault ended) as max and p50, and the faults never recovered from.
cx_kind_table() {
    local out=$1 cj=$1/check.json
    {
        jq -r 'select(.type == "op" and .op == "book" and .outcome == "ok") | "E \(.end_ms)"' \
            "$out/history.jsonl" 2>/dev/null | sort -k2,2n
        jq -r 'select(.type == "fault") | "F \(.kind) \(.start_ms) \(.end_ms) \(.breaks_redlock // false)"' \
            "$out/faults.jsonl"
        if [ -s "$cj" ]; then
            jq -r '(.locks.expected // [])[] | "X \(.check) \(.why | sub("^[^:]*: "; "") | split(" ")[0])"' "$cj"
            # (no finding: grep finds nothing, which is not an error here)
            jq -r '.checks[] | select(.name == "locks_exclusive") | .detail' "$cj" |
                { grep -o 'from -\?[0-9.]* ms' || true; } | awk '{ print "U locks_exclusive", $2 }'
            jq -r '.checks[] | select(.name == "locks_fence_order") | .detail' "$cj" |
                { grep -o 'granted at -\?[0-9.]* ms' || true; } | awk '{ print "U locks_fence_order", $3 }'
        fi
    } | awk '
        BEGIN { ne = 0; nf = 0; no = 0 } # numbers: an unset index is "", not 0, in mawk
        $1 == "E" { ends[ne++] = $2 + 0; next }
        $1 == "F" { k[nf] = $2; s[nf] = $3 + 0; e[nf] = $4 + 0; b[nf] = $5; nf++
                    if (!($2 in n)) order[no++] = $2; n[$2]++; if ($5 == "true") design[$2]++; next }
        $1 == "X" { if ($2 == "locks_exclusive") xo[$3]++; else if ($2 == "locks_fence_order") xf[$3]++; next }
        # the latest fault whose window holds it: windows overlap by their 5 s tails
        $1 == "U" { t = $3 + 0; hit = "(outside any fault window)"; best = -1
                    for (i = 0; i < nf; i++) if (t >= s[i] && t <= e[i] + 5000 && s[i] > best) { hit = k[i]; best = s[i] }
                    if ($2 == "locks_exclusive") uo[hit]++; else uf[hit]++
                    if (hit !~ /^\(/) next
                    if (!(hit in n)) { order[no++] = hit; n[hit] = 0 }
                    next }
        # the fault-free ms in [a, b): b - a minus the union of the fault windows inside
        function free_ms(a, bb,   i, j, m, lo, hi, tmp, cur, tot) {
            m = 0
            for (i = 0; i < nf; i++) { lo = s[i] > a ? s[i] : a; hi = e[i] < bb ? e[i] : bb
                if (hi > lo) { L[m] = lo; H[m] = hi; m++ } }
            for (i = 1; i < m; i++) for (j = i; j > 0 && L[j-1] > L[j]; j--) {
                tmp = L[j]; L[j] = L[j-1]; L[j-1] = tmp; tmp = H[j]; H[j] = H[j-1]; H[j-1] = tmp }
            cur = a; tot = 0
            for (i = 0; i < m; i++) { lo = L[i] > cur ? L[i] : cur; if (H[i] > lo) { tot += H[i] - lo; cur = H[i] } }
            return bb - a - tot
        }
        END {
            for (i = 0; i < nf; i++) {
                lo = 0; hi = ne
                while (lo < hi) { mid = int((lo + hi) / 2); if (ends[mid] <= e[i]) lo = mid + 1; else hi = mid }
                if (lo == ne) { unrec[k[i]]++; continue }
                r = free_ms(e[i], ends[lo]); rc[k[i]]++; rec[k[i], rc[k[i]]] = r
            }
            printf "  %-26s %4s %6s %15s %15s %9s %9s %6s\n", "kind", "n", "design", "overlaps exp/not", "fence reg exp/not", "rec max", "rec p50", "unrec"
            for (o = 0; o < no; o++) {
                kk = order[o]; c = rc[kk] + 0
                for (i = 2; i <= c; i++) for (j = i; j > 1 && rec[kk, j-1] > rec[kk, j]; j--) {
                    tmp = rec[kk, j]; rec[kk, j] = rec[kk, j-1]; rec[kk, j-1] = tmp }
                mx = c ? rec[kk, c] " ms" : "-"; p50 = c ? rec[kk, int((c + 1) / 2)] " ms" : "-"
                printf "  %-26s %4d %6s %15s %15s %9s %9s %6d\n", kk, n[kk], (design[kk] ? "yes" : "no"),
                    (xo[kk] + 0) "/" (uo[kk] + 0), (xf[kk] + 0) "/" (uf[kk] + 0), mx, p50, unrec[kk] + 0
            }
        }'
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
    echo "-- per fault kind: lock findings in its windows (start .. end + 5 s; exp = expected by"
    echo "   design or a paused holder, not = a failure), recovery after each (fault-free ms to the"
    echo "   first ok booking: max, p50), faults never recovered from"
    cx_kind_table "$out"
    if [ -s "$out/check.json" ]; then
        jq -r '"   run-wide safety: double sales " + ([.checks[] | select(.name == "no_double_sale") | .figure] | first // "n/a")
            + "; lost acknowledged bookings: " + ([.checks[] | select(.name == "no_lost_ack") | .figure] | first // "n/a")
            + (if .locks.given then "; lock overlaps \(.locks.overlaps) not expected, \(.locks.expected_overlaps) expected; fence regressions \(.locks.fence_regressions) not expected, \(.locks.expected_fence_regressions) expected" else "; no lock histories" end)' \
            "$out/check.json" 2>/dev/null || true
    fi
    if [ -s "$out/schedule.txt" ] && grep -q ': skipped:' "$out/schedule.txt"; then
        echo "-- fault kinds left out of this run"
        sed -n 's/^\([a-z_]*\): skipped: /  \1: /p' "$out/schedule.txt"
    fi
    if [ -s "$out/guards_killed.txt" ]; then
        echo "-- guard counters of reserved processes read just before they were killed"
        awk '{ s[$2] += $3 } END { for (k in s) printf "  %s %d\n", k, s[k] }' "$out/guards_killed.txt"
    fi
    echo "-- checks"
    sed -n 's/^CHECK /  /p' "$out/check.txt"
    if [ "$rc" = 0 ]; then echo "RESULT PASS"; else echo "RESULT FAIL (chaos_check exit $rc)"; fi
    echo "files: $out/{history.jsonl,counter.jsonl,faults.jsonl,schedule.txt,report.txt,check.json,plot.png,plot.svg,logs/}"
}
