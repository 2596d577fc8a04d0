#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/: the message decoder, the log
# record decoder) with clang and runs them within a total time budget in
# seconds (default 120), split evenly among the targets.
#   scripts/fuzz.sh [TOTAL_SECONDS]
# Each target starts from tests/fuzz/regressions/<target>/ (seeds and past
# findings; read only) and grows build-fuzz/corpus/<target>/. A crash or
# leak reproducer lands in build-fuzz/artifacts/: once the bug is fixed, copy
# it into tests/fuzz/regressions/<target>/ so the <target>_regressions CTest
# entry replays it in every build from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
total=${1:-120}
targets=(fuzz_msg fuzz_logrec)
secs=$((total / ${#targets[@]}))
[ "$secs" -ge 1 ] || secs=1
CC=clang cmake -S . -B build-fuzz -DKIN_FUZZ=ON -DKIN_TESTS=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"
mkdir -p build-fuzz/artifacts
rc=0
for t in "${targets[@]}"; do
    echo "== $t: ${secs} s of ${total} s"
    mkdir -p "build-fuzz/corpus/$t"
    # fuzz_msg's seeds: byte 0 = header length (24), byte 1 = size limit
    # (0 = default), then a header frame and a body frame. msgpack-c is not
    # instrumented, so well-formed bodies (a call, dead messages with the
    # code packed as int16 and as int64) give the fuzzer a start.
    build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix=build-fuzz/artifacts/"$t"- \
        "build-fuzz/corpus/$t" "tests/fuzz/regressions/$t" \
        >"build-fuzz/$t.log" 2>&1 || rc=$?
    tail -n 12 "build-fuzz/$t.log"
    if [ "$rc" -ne 0 ]; then
        echo "$t found something (exit $rc): build-fuzz/artifacts/, build-fuzz/$t.log" >&2
        exit "$rc"
    fi
done
