#!/usr/bin/env bash
# Builds the libFuzzer target for the message decoder with clang and runs it
# for the given number of seconds (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
secs=${1:-60}
CC=clang cmake -S . -B build-fuzz -DKIN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_msg
mkdir -p build-fuzz/corpus
build-fuzz/tests/fuzz/fuzz_msg -max_total_time="$secs" -print_final_stats=1 \
    build-fuzz/corpus 2>&1 | tail -n 15
