#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages the project needs, only those missing.
# Runs apt-get update only when something is missing. As root, or through sudo when
# not root and sudo exists.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config clang libclang-rt-14-dev
    redis-server libhiredis-dev libevent-dev libyaml-dev libpq-dev libsodium-dev postgresql
    check libjansson-dev gcovr gnuplot-nox curl clang-format
    netcat-openbsd jq python3 python3-yaml python3-jsonschema python3-pytest nodejs
    chromium
    iproute2 nftables # chaos/run --net netns: namespaces, veths, a bridge, DROP rules, netem (tc)
)
# npm (tests/browser installs puppeteer-core with it): Debian's package, unless an npm is
# there already (NodeSource's nodejs carries its own and conflicts with Debian's npm).
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(npm)
fi

cleanup() { :; } # nothing started in the background
trap cleanup EXIT

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: all ${#PACKAGES[@]} packages installed"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "deps: missing ${missing[*]}; run as root (or install sudo)" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
