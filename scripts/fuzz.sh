#!/usr/bin/env bash
# Builds the libFuzzer targets (the message decoder, the log record decoder)
# with clang and runs each for the given number of seconds (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
secs=${1:-60}
CC=clang cmake -S . -B build-fuzz -DKIN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_msg fuzz_logrec
# Seeds: byte 0 = header length (24), byte 1 = size limit (0 = default),
# then a header frame and a body frame. msgpack-c is not instrumented, so
# well-formed bodies (a call, dead messages with the code packed as int16 and as
# int64, as other msgpack implementations may) give the fuzzer a start.
mkdir -p build-fuzz/corpus build-fuzz/seeds build-fuzz/artifacts
ids='\003\000\000\000\052\000\000\000\052\000\000\000'
printf "\030\000KN\001\000${ids}\002\000\000\000\350\003\000\000\222\244ping\220" \
    >build-fuzz/seeds/call
printf "\030\000KN\001\001${ids}\350\003\000\000\000\000\000\000\222\321\212\317\241x" \
    >build-fuzz/seeds/dead16
printf "\030\040KN\001\001${ids}\350\003\000\000\000\000\000\000\222\323\377\377\377\377\377\377\212\317\241x" \
    >build-fuzz/seeds/dead64
# Crash/OOM reproducers land in build-fuzz/artifacts/, not the source tree.
build-fuzz/tests/fuzz/fuzz_msg -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus build-fuzz/seeds \
    2>&1 | tail -n 15
mkdir -p build-fuzz/corpus-logrec
build-fuzz/tests/fuzz/fuzz_logrec -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus-logrec \
    2>&1 | tail -n 6
