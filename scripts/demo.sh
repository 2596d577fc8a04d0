#!/usr/bin/env bash
# Installs missing packages, builds kin and runs the demo (kin-demo): a
# supervised tree of worker processes doing real work. Arguments go to the
# demo, e.g. scripts/demo.sh --linger
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build # no test tools: tests/ is not configured (KIN_TESTS=OFF)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKIN_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc)" --target kin-demo kin_cli >/dev/null
exec build/examples/demo/kin-demo "$@"
