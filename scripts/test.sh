#!/usr/bin/env bash
# Installs missing packages, builds kin and runs the whole test suite.
#   scripts/test.sh                 normal build in build/
#   KIN_SANITIZE=address,undefined scripts/test.sh   sanitizer build in build-san/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

dir=build
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKIN_WERROR=ON)
if [ -n "${KIN_SANITIZE:-}" ]; then
    dir=build-san
    args+=(-DKIN_SANITIZE="$KIN_SANITIZE")
fi
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
cd "$dir"
ctest --output-on-failure --timeout 300 -j "$(nproc)" "$@"
