#!/usr/bin/env bash
# test.sh: the README's test command (and .ci/run). On a fresh Debian 12 machine:
#   1. installs what is missing (scripts/deps.sh);
#   2. builds everything with ASan + UBSan + gcov (Debug) in build-test/;
#   3. runs every test registered with ctest: unit, redlock, client and integration
#      (real redis-server and lockd processes on free loopback ports);
#   4. runs a short chaos run (chaos/run --duration 60 --seed 1 --net auto: every fault
#      kind once, packed into the 60 s, then the checkers) on the same binaries; --net auto
#      runs every server in its own network namespace where this machine can (root, nft),
#      with the kernel partition faults, else on 127.0.0.1 without them (CHAOS_NET=proxy
#      forces that; CHAOS_FAULTS=kind,kind picks the kinds);
#   5. builds the libFuzzer target with clang in build-fuzz/ and runs it for 60 s;
#   6. builds everything again as Release (-O2, assertions off) in build-release/, beside
#      the fuzzer of step 5: the demo and the benchmarks use that build, and -O2 finds
#      warnings -O0 does not;
#   7. prints the line coverage of the project's own code (gcovr).
# Every stage runs even when an earlier test stage failed; the exit status is non-zero
# if anything failed. Build dirs can be moved with BUILD_TEST=... BUILD_FUZZ=... BUILD_RELEASE=...
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_TEST=${BUILD_TEST:-build-test}
BUILD_FUZZ=${BUILD_FUZZ:-build-fuzz}
BUILD_RELEASE=${BUILD_RELEASE:-build-release}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-}

PIDS=()     # background jobs this script started, stopped by PID on exit
FAILED=()   # names of failed stages
TIMES=()    # "stage seconds" lines for the summary
T_START=$(date +%s)

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_stage NAME CMD...: runs CMD in the background (so the trap can stop it by PID),
# waits, records its time and whether it failed.
run_stage() {
    local name=$1 t0 rc=0 pid
    shift
    echo
    echo "==== $name ===="
    t0=$(date +%s)
    "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    local dt=$(($(date +%s) - t0))
    TIMES+=("$(printf '%-10s %4ds  %s' "$name" "$dt" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED ($rc)")")")
    echo "==== $name: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED ($rc)") in ${dt}s ===="
    if [[ $rc -ne 0 ]]; then
        FAILED+=("$name")
    fi
    return "$rc"
}

build_test() {
    cmake -S . -B "$BUILD_TEST" -DSANITIZE=ON -DCOVERAGE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build "$BUILD_TEST" -j"$JOBS"
    # Fresh coverage counters for this run.
    find "$BUILD_TEST" -name '*.gcda' -delete
}

run_ctest() {
    # Serial on purpose: the integration tests assert latencies (handoff, NOQUORUM).
    (cd "$BUILD_TEST" && ctest --output-on-failure)
}

run_chaos() {
    # The whole system under faults; exits non-zero when a check fails.
    bash chaos/run --duration "${CHAOS_SECONDS:-60}" --seed "${CHAOS_SEED:-1}" \
        --faults "${CHAOS_FAULTS:-all}" --net "${CHAOS_NET:-auto}" --build "$BUILD_TEST" \
        --out "$BUILD_TEST/chaos-out"
}

run_fuzz() {
    CC=clang cmake -S . -B "$BUILD_FUZZ" -DFUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD_FUZZ" -j"$JOBS" --target fuzz_lockp
    # New inputs go to a corpus in the build dir; the seeds in the tree are only read.
    mkdir -p "$BUILD_FUZZ/corpus_run"
    local rc=0 log="$BUILD_FUZZ/fuzz_lockp.log"
    "$BUILD_FUZZ/bin/fuzz_lockp" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
        "$BUILD_FUZZ/corpus_run" tests/fuzz/corpus >"$log" 2>&1 || rc=$?
    # The whole log on a crash (input, stack), the final stats otherwise.
    if [[ $rc -ne 0 ]]; then
        tail -n 80 "$log"
    else
        tail -n 12 "$log"
    fi
    return "$rc"
}

build_release() {
    # -Werror with -O2 and NDEBUG: a variable used only by assert() fails here, not in Debug.
    cmake -S . -B "$BUILD_RELEASE" -DCMAKE_BUILD_TYPE=Release >/dev/null
    if ! cmake --build "$BUILD_RELEASE" -j"$JOBS" >"$BUILD_RELEASE/build.log" 2>&1; then
        grep -E 'error|warning' "$BUILD_RELEASE/build.log" | head -n 40
        return 1
    fi
}

run_coverage() {
    # The project's own C code only (tests, fuzz targets and system headers excluded).
    gcovr --root . --object-directory "$BUILD_TEST" \
        --filter 'libcommon/' --filter 'lockd/' --filter 'tools/' --filter 'reserved/' --filter 'fakepay/' \
        --filter 'chaos/' --exclude 'tests/' \
        --gcov-ignore-parse-errors --txt "$BUILD_TEST/coverage.txt" --print-summary \
        >"$BUILD_TEST/coverage.summary"
    # Per file without the long "Missing" column (it stays in coverage.txt), then totals.
    cut -c1-70 "$BUILD_TEST/coverage.txt"
    cat "$BUILD_TEST/coverage.summary"
}

if ! run_stage deps bash scripts/deps.sh; then
    echo "test.sh: dependencies missing, stopping" >&2
    exit 1
fi
if run_stage build build_test; then
    run_stage ctest run_ctest || true
    run_stage chaos run_chaos || true
fi
# The Release build runs beside the fuzzer: libFuzzer's run is bounded by time, not by
# work, so the build costs it executions, not wall time (about a minute of the command).
REL_LOG=$(mktemp)
REL_RC=$(mktemp)
(if build_release >"$REL_LOG" 2>&1; then echo 0; else echo 1; fi >"$REL_RC") &
REL_PID=$!
PIDS+=("$REL_PID")
wait_release() {
    while [[ ! -s "$REL_RC" ]] && kill -0 "$REL_PID" 2>/dev/null; do
        sleep 1
    done
    cat "$REL_LOG"
    [[ "$(cat "$REL_RC")" == 0 ]]
}
run_stage fuzz run_fuzz || true
run_stage release wait_release || true
rm -f "$REL_LOG" "$REL_RC"
if [[ ! " ${FAILED[*]} " =~ " build " ]]; then
    run_stage coverage run_coverage || true
fi

echo
echo "==== summary (total $(($(date +%s) - T_START))s) ===="
printf '%s\n' "${TIMES[@]}"
if [[ ${#FAILED[@]} -ne 0 ]]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all stages passed"
