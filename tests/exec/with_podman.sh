#!/bin/bash
# test_exec's podman case: makes (or finds) the cached root filesystem,
# then runs test_exec with KIN_PODMAN_ROOTFS pointing at it. Exit 77 (skip)
# with the reason when this machine cannot (not root, no podman); with
# KIN_REQUIRE_HEAVY=1 (CI) a skip is a failure instead.
#   with_podman.sh TEST_EXEC
set -uo pipefail
here=$(dirname "$0")
rootfs=$("$here/podman_rootfs.sh")
rc=$?
if [ "$rc" = 77 ] && [ "${KIN_REQUIRE_HEAVY:-}" = 1 ]; then
    echo "with_podman.sh: skipped, but KIN_REQUIRE_HEAVY=1: failing" >&2
    exit 1
fi
if [ "$rc" != 0 ]; then
    exit "$rc"
fi
KIN_PODMAN_ROOTFS=$rootfs KIN_TEST_FILTER='podman*' "$1"
rc=$?
if [ "$rc" = 77 ] && [ "${KIN_REQUIRE_HEAVY:-}" = 1 ]; then
    echo "with_podman.sh: skipped, but KIN_REQUIRE_HEAVY=1: failing" >&2
    exit 1
fi
exit "$rc"
