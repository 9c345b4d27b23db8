#!/usr/bin/env bash
# tests/browser/run.sh SCENARIO: one scenario of the web app's browser test (SPEC §8,
# issue 14 §4) in headless Chromium. Starts PostgreSQL, Redis, lockd, fakepay and two
# reserved (lock mode lockd) through scripts/lib/booking.sh, creates as the admin a venue
# of 40 seats (rows R1-R4 of 10; R1 is VIP) with two performances, and runs
# tests/browser/seatmap.cjs SCENARIO, which saves a screenshot of each step under
# $BROWSER_OUT/SCENARIO (default ./browser-out: ctest runs it in the build's
# tests/browser). Everything started is stopped by PID (trap), also on failure.
#   BK_BIN=build/bin BROWSER_NODE_DIR=build/tests/browser/node bash tests/browser/run.sh two_buyers
# Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM=...): without it the test says
# so and exits 77 (ctest: skipped). puppeteer-core (pinned by package.json and
# package-lock.json) is installed once into BROWSER_NODE_DIR with `npm ci`; nothing
# downloads a browser.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BK_BIN:?set BK_BIN to the bin dir of a build}"
SCENARIO=${1:?usage: run.sh SCENARIO}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
NODE_DIR=${BROWSER_NODE_DIR:-$ROOT/build/tests/browser/node}
OUT=$(mkdir -p "${BROWSER_OUT:-$PWD/browser-out}/$SCENARIO" && cd "${BROWSER_OUT:-$PWD/browser-out}/$SCENARIO" && pwd)

if [[ ! -x $CHROMIUM ]]; then
    echo "SKIP: no Chromium at $CHROMIUM (scripts/deps.sh installs Debian's chromium package)"
    exit 77
fi

# puppeteer-core into NODE_DIR, once per lock file; flock: scenarios may run in parallel.
mkdir -p "$NODE_DIR"
(
    flock 9
    if ! cmp -s "$ROOT/tests/browser/package-lock.json" "$NODE_DIR/package-lock.json" ||
        [[ ! -f $NODE_DIR/node_modules/puppeteer-core/package.json ]]; then
        echo "== npm ci (puppeteer-core) in $NODE_DIR"
        cp "$ROOT/tests/browser/package.json" "$ROOT/tests/browser/package-lock.json" "$NODE_DIR/"
        (cd "$NODE_DIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
) 9>"$NODE_DIR/.lock"

# shellcheck source=../../scripts/lib/booking.sh
source "$ROOT/scripts/lib/booking.sh"
bk_test_init "browser-$SCENARIO"
HOLD_TTL_S=600
EXTRA=""
case $SCENARIO in
hold_expiry) HOLD_TTL_S=3 ;;
limit_payment) export BK_MAX_SEATS_PER_USER=2 ;;
esac
EXTRA="holds: {ttl_s: $HOLD_TTL_S}"
bk_start_pg
bk_start_redis 1
bk_start_lockd 1
bk_start_fakepay
bk_start_reserved 2 lockd "$BK_PAY_URL" "$EXTRA"
VENUE=$(bk_create_venue "Small hall" 40 10 10)
PERF=$(bk_create_perf "$VENUE" "Evening concert" 3)
bk_create_perf "$VENUE" "Matinee" 4 >/dev/null

echo "== $SCENARIO: reserved ${BK_RESERVED[*]}, performance $PERF (servers up in ${SECONDS}s), screenshots in $OUT"
T0=$SECONDS
rm -f "$OUT"/*.png
rc=0
BROWSER_NODE_MODULES="$NODE_DIR/node_modules" CHROMIUM=$CHROMIUM RESERVED_A=${BK_RESERVED[0]} \
    RESERVED_B=${BK_RESERVED[1]} PERF=$PERF PAY_URL=$BK_PAY_URL HOLD_TTL_S=$HOLD_TTL_S \
    node "$ROOT/tests/browser/seatmap.cjs" "$SCENARIO" "$OUT" || rc=$?
if [[ $rc -ne 0 ]]; then
    bk_fail "browser scenario $SCENARIO (screenshots in $OUT)"
fi
echo "PASS: $SCENARIO in $((SECONDS - T0))s ($(ls "$OUT" | wc -l) screenshots in $OUT)"
