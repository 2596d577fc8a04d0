#!/usr/bin/env bash
# A cmocka test that calls skip() itself exits 0 and its skip shows as a
# pass in CTest. Tests skip with harness_skip (tests/integration/harness.h),
# which makes the program exit 77 (CTest: Skipped); this check fails when a
# test source calls cmocka's skip() or cmocka_run_group_tests directly.
#   check_skips.sh SOURCE_DIR
set -u
cd "$1/tests" || exit 1
bad=$(grep -rnE '(^|[^_a-z])skip\(\)|cmocka_run_group_tests' --include='*.c' . |
      grep -v '^\./integration/harness\.c:')
if [ -n "$bad" ]; then
    echo "$bad"
    echo "use harness_skip(\"reason\") and harness_run_group(tests) instead"
    exit 1
fi
echo "every cmocka test skips visibly"
