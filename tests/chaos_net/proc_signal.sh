#!/usr/bin/env bash
# tests/chaos_net/proc_signal.sh: chaos/lib/proc.sh's INT/TERM trap (cx_on_signal). A run
# sourcing proc.sh with chaos/run's traps gets a TERM while cx_launch is starting a server
# (CX_LAUNCHING set, as when bash runs the trap between the start and the CX_PID entry):
# the trap only notes it, the launch records the PID, then exits 130, and the EXIT trap
# (cx_stop_all) stops that server. Also: a TERM outside a launch exits 130 at once.
# Without the rule the server (a `sleep 60` here) was left running.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cxprocsig.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The run: the signal lands while CX_LAUNCHING is set (cx_on_signal called by hand there,
# as bash would run the trap), then cx_launch starts `sleep 60`.
cat >"$WORK/run.sh" <<RUN
set -u
CX_WORK=$WORK
mkdir -p "\$CX_WORK/logs"
. "$ROOT/chaos/lib/proc.sh"
trap 'cx_stop_all' EXIT
trap cx_on_signal INT TERM
CX_CMD[srv]=\$(printf '%q ' sleep 60)
CX_LAUNCHING=1
cx_on_signal
echo "after the trap: still running, pending=\$CX_SIGNAL_PENDING"
CX_LAUNCHING=0
cx_launch srv
echo "not reached"
RUN
rc=0
out=$(bash "$WORK/run.sh" 2>&1) || rc=$?
[[ $rc -eq 130 ]] || fail "signal during a launch: exit $rc, want 130 ($out)"
[[ $out == *"after the trap: still running, pending=1"* ]] || fail "the trap did not wait for the launch: $out"
[[ $out == *"chaos/run: interrupted"* && $out != *"not reached"* ]] || fail "no exit after the launch: $out"
# the server it started is gone: no `sleep 60` whose log is this run's
sleep 0.2
for p in $(pgrep -x sleep || true); do
    [[ $(readlink "/proc/$p/fd/1" 2>/dev/null) == "$WORK/logs/srv.log" ]] && fail "the server (pid $p) is still running"
done

# A TERM outside a launch: exit 130 at once.
cat >"$WORK/run2.sh" <<RUN
set -u
CX_WORK=$WORK
. "$ROOT/chaos/lib/proc.sh"
trap cx_on_signal INT TERM
kill -TERM \$\$
echo "not reached"
RUN
rc=0
out=$(bash "$WORK/run2.sh" 2>&1) || rc=$?
[[ $rc -eq 130 && $out == "chaos/run: interrupted" ]] || fail "TERM outside a launch: exit $rc, '$out'"
echo "proc_signal: ok"
