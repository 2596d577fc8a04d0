#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/: the message decoder, the log
# record decoder, the id-list codec, picture unpacking, HELLO's body, the
# service and name messages' bodies, ...)
# with clang and runs them within one total time budget in seconds (default
# 120), two at a time (one per core, at most two): each pair gets an equal
# share of the budget.
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
targets=(fuzz_msg fuzz_logrec fuzz_ids fuzz_pack fuzz_hello fuzz_monitor
    fuzz_logstream fuzz_service)
jobs=$(nproc)
[ "$jobs" -le 2 ] || jobs=2
batches=$(((${#targets[@]} + jobs - 1) / jobs))
secs=$((total / batches))
[ "$secs" -ge 1 ] || secs=1
CC=clang cmake -S . -B build-fuzz -DKIN_FUZZ=ON -DKIN_TESTS=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"
mkdir -p build-fuzz/artifacts

# run TARGET: fuzzes it for secs seconds; its output goes to its log.
# Seeds are per target (tests/fuzz/regressions/<target>/): msgpack-c is not
# instrumented, so well-formed bodies from real traffic give the fuzzer a
# start (fuzz_msg's: byte 0 = header length, byte 1 = size limit, then a
# header frame and a body frame; each target's comment gives its layout).
run() {
    mkdir -p "build-fuzz/corpus/$1"
    build-fuzz/tests/fuzz/"$1" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix=build-fuzz/artifacts/"$1"- \
        "build-fuzz/corpus/$1" "tests/fuzz/regressions/$1" \
        >"build-fuzz/$1.log" 2>&1
}

# report TARGET RC: its last lines; a finding ends the run.
report() {
    echo "== $1: ${secs} s of ${total} s"
    tail -n 12 "build-fuzz/$1.log"
    if [ "$2" -ne 0 ]; then
        echo "$1 found something (exit $2): build-fuzz/artifacts/, build-fuzz/$1.log" >&2
        exit "$2"
    fi
}

for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    pids=()
    for t in "${batch[@]}"; do
        run "$t" &
        pids+=($!)
    done
    rcs=()
    for p in "${pids[@]}"; do
        rc=0
        wait "$p" || rc=$?
        rcs+=("$rc")
    done
    for k in "${!batch[@]}"; do report "${batch[$k]}" "${rcs[$k]}"; done
done
