#!/usr/bin/env bash
# tests/openapi/run.sh: docs/openapi.yaml against the real servers. Starts PostgreSQL,
# Redis, lockd, fakepay and three reserved (lock mode lockd, with the payment step, CORS on
# for one origin) through scripts/lib/booking.sh, then runs check_openapi.py twice, each on the first reserved
# with one of the other two to stop (SIGTERM) in its "stopping" phase:
#   1. against a copy of the document with three planted faults (a route left out, a
#      wrong status, a wrong field type): it must bk_fail and name each of them;
#   2. against docs/openapi.yaml: it must pass (and the response examples of docs/api.md
#      must match it).
# Everything started is stopped by PID (trap), also on failure.
#   BK_BIN=build/bin bash tests/openapi/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${BK_BIN:?set BK_BIN to the bin dir of a build}"
# shellcheck source=../../scripts/lib/booking.sh
source "$ROOT/scripts/lib/booking.sh"
# Debian's python3, whose yaml and jsonschema modules scripts/deps.sh installs: a python3
# found first on PATH (pyenv's, say) may not have them.
PY=${PYTHON3:-/usr/bin/python3}
bk_test_init openapi-check
bk_start_pg
bk_start_redis 1
bk_start_lockd 1
bk_start_fakepay
ORIGIN=http://app.example:3000
bk_start_reserved 3 lockd "$BK_PAY_URL" "cors: {allow_origins: [$ORIGIN]}"
MAX_BODY=$(sed -n 's/.*max_body_bytes: *\([0-9]*\).*/\1/p' "$BK_TMP/reserved1.yaml")

check() { # check SPEC N [ARGS...]: the checker on reserved 1, stopping reserved N
    local spec=$1 n=$2
    shift 2
    "$PY" "$ROOT/tests/openapi/check_openapi.py" --spec "$spec" --root "$ROOT" \
        --api "${BK_RESERVED[0]}" --stop-api "${BK_RESERVED[$n]}" \
        --stop-pid "${BK_RESERVED_PIDS[$n]}" --pay "$BK_PAY_URL" --lockd "${BK_LOCKD[0]}" \
        --lockctl "$BK_BIN/lockctl" --reserved-bin "$BK_BIN/reserved" --max-body-bytes "${MAX_BODY:-65536}" --origin "$ORIGIN" \
        --psql "${PGBIN:-/usr/lib/postgresql/15/bin}/psql -X -q -At -v ON_ERROR_STOP=1 -h $BK_PG_DIR -p $BK_PG_PORT -U booking -d booking" \
        --db-stop "bash $ROOT/scripts/pg.sh stop $BK_PG_DIR fast" \
        --db-start "bash $ROOT/scripts/pg.sh start $BK_PG_DIR $BK_PG_PORT" "$@"
}

PLANTED="$BK_LOGS/openapi-planted.yaml"
"$PY" "$ROOT/tests/openapi/check_openapi.py" --spec "$ROOT/docs/openapi.yaml" --plant "$PLANTED"
echo "== the checker against a copy with planted faults (must fail)"
if check "$PLANTED" 1 >"$BK_LOGS/planted.out" 2>&1; then
    cat "$BK_LOGS/planted.out"
    bk_fail "the checker passed a document with planted faults"
fi
echo "  it failed with $(grep -c '^FAIL' "$BK_LOGS/planted.out") findings, among them:"
for want in 'reserved serves GET /users/{id}/reservations (route user_reservations), the document does not document it' \
    'venues_create 200 (POST /venues): documented 200, server answered 201' \
    "totalCapacity: [0-9]* is not of type 'string'"; do
    grep -m 1 -- "$want" "$BK_LOGS/planted.out" | sed 's/^/    /' || {
        cat "$BK_LOGS/planted.out"
        bk_fail "the planted fault was not reported: $want"
    }
done
echo "== the checker against docs/openapi.yaml (must pass)"
check "$ROOT/docs/openapi.yaml" 2 --api-md "$ROOT/docs/api.md" || bk_fail "docs/openapi.yaml does not describe the server"
echo "PASS: the planted faults were caught and docs/openapi.yaml matches the server"
