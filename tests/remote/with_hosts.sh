#!/usr/bin/env bash
# Runs a command inside host A of hosts.sh's test hosts, with the hosts'
# settings (IP_AB_B, IP_BC_C, SSH_CONFIG, ...) in its environment, and
# tears the hosts down whatever happens. Exit 77 (skip) with the reason
# when this machine cannot build them, or when the command exits 77 (it
# skipped part of its checks). With KIN_REQUIRE_HEAVY=1 (set by .ci/run on
# a machine that has every tool) a skip is a failure instead: exit 1.
#   with_hosts.sh CMD [ARGS...]
set -u
hosts=$(dirname "$0")/hosts.sh

skipped() {
    if [ "${KIN_REQUIRE_HEAVY:-}" = 1 ]; then
        echo "with_hosts.sh: $1 skipped, but KIN_REQUIRE_HEAVY=1: failing" >&2
        exit 1
    fi
    exit 77
}

bash "$hosts" check
rc=$?
[ $rc -eq 77 ] && skipped "the test hosts"
[ $rc -eq 0 ] || exit $rc
dir=$(mktemp -d /tmp/kin-hosts.XXXXXX)
trap 'bash "$hosts" down "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
if ! bash "$hosts" up "$dir" >"$dir/up.log" 2>&1; then
    cat "$dir/up.log" >&2
    echo "with_hosts.sh: could not build the test hosts" >&2
    exit 1
fi
set -a
. "$dir/env"
HOSTS_DIR=$dir
set +a
ip netns exec "$NS_A" "$@"
rc=$?
[ $rc -eq 77 ] && skipped "$1"
exit $rc
