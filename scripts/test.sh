#!/usr/bin/env bash
# Installs missing packages, builds kin and runs the test suite; arguments
# go to ctest (e.g. -LE heavy to leave the heavy tests out, -R test_calls).
#   scripts/test.sh                                  RelWithDebInfo in build/
#   KIN_SANITIZE=address,undefined scripts/test.sh   sanitizers in build-san/
#   KIN_BUILD_TYPE=Release scripts/test.sh           Release in build-rel/
#                          (Debug: build-debug/, MinSizeRel: build-minsizerel/)
# KIN_BUILD_DIR overrides the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

type=${KIN_BUILD_TYPE:-RelWithDebInfo}
case "$type" in
RelWithDebInfo) dir=build ;;
Release) dir=build-rel ;;
*) dir=build-$(echo "$type" | tr '[:upper:]' '[:lower:]') ;;
esac
args=(-DCMAKE_BUILD_TYPE="$type" -DKIN_WERROR=ON -DKIN_TESTS=ON)
if [ -n "${KIN_SANITIZE:-}" ]; then
    dir=build-san
    args+=(-DKIN_SANITIZE="$KIN_SANITIZE")
fi
dir=${KIN_BUILD_DIR:-$dir}
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
cd "$dir"
# Every test has its own TIMEOUT (KIN_TIMEOUT, KIN_HEAVY_TIMEOUT in
# CMakeLists.txt); --timeout only covers one that would lack it.
ctest --output-on-failure --timeout 120 -j "$(nproc)" "$@"
