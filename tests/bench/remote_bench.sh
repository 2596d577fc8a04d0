#!/usr/bin/env bash
# shellcheck disable=SC1091 # DIR/env is generated at run time
# Runs kin-remote-bench (tests/bench/remote_bench.c) as the master inside host
# A of tests/remote/hosts.sh (three network namespaces, real sshds in B and
# C), and tears the hosts down whatever happens. Skips (exit 77) with the
# reason when the machine cannot build them (not root, no sshd, ...).
#   remote_bench.sh BENCH_BINARY [--json] [--quick] [more bench options]
set -u
if [ $# -lt 1 ]; then
    echo "usage: remote_bench.sh BENCH_BINARY [--json] [--quick] [...]" >&2
    exit 2
fi
bin=$(realpath "$1")
shift
hosts=$(cd "$(dirname "$0")/../remote" && pwd)/hosts.sh
bash "$hosts" check || exit $?

dir=$(mktemp -d /tmp/kin-remote-bench.XXXXXX)
bench=
# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
cleanup() {
    # down also ends anything still running in the namespaces.
    [ -z "$bench" ] || kill "$bench" 2>/dev/null
    bash "$hosts" down "$dir" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# up's progress goes to stderr so that stdout stays the bench's (--json).
if ! bash "$hosts" up "$dir" >&2; then
    echo "remote_bench.sh: could not build the test hosts" >&2
    exit 1
fi
. "$dir/env"
# In the background and waited for, so that a signal to this script runs
# the traps at once instead of after the bench.
ip netns exec "$NS_A" "$bin" --env "$dir/env" "$@" &
bench=$!
wait "$bench"
rc=$?
bench=
exit "$rc"
