#!/usr/bin/env bash
# tests/style/clang_format.sh: every C source and header of the project is formatted as
# the committed .clang-format says (clang-format --dry-run -Werror). First shows that the
# check catches a planted violation: a misformatted copy of a source must fail it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if ! command -v clang-format >/dev/null 2>&1; then
    echo "clang-format not found: scripts/deps.sh installs it" >&2
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The planted violation: a source with its indentation flattened. The copy sits in the
# repository's tree view of clang-format through -assume-filename, so .clang-format applies.
sed 's/^    //' libcommon/cm_time.c >"$TMP/planted.c"
if clang-format --dry-run -Werror -assume-filename="$ROOT/libcommon/planted.c" \
    <"$TMP/planted.c" >/dev/null 2>&1; then
    echo "FAIL: the planted misformatted source passed the check" >&2
    exit 1
fi
echo "planted violation caught"

mapfile -t FILES < <(find libcommon lockd reserved fakepay chaos tools tests \
    -name '*.[ch]' -not -path '*/build*' | sort)
echo "checking ${#FILES[@]} files against .clang-format ($(clang-format --version))"
if ! clang-format --dry-run -Werror "${FILES[@]}"; then
    echo "FAIL: run clang-format -i on the files above" >&2
    exit 1
fi
echo "all ${#FILES[@]} files formatted"
