#!/usr/bin/env bash
# Runs test_remote inside host A of tests/remote/hosts.sh (three network
# namespaces with real sshds), tearing the hosts down whatever happens.
# Skips (exit 77) with the reason when the machine cannot build them.
#   test_remote.sh HOSTS_SH TEST_REMOTE KIN_CLI
set -u
hosts=$1 bin=$2 kin=$3
bash "$hosts" check || exit $?
dir=$(mktemp -d /tmp/kin-remote.XXXXXX)
trap 'bash "$hosts" down "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT
if ! bash "$hosts" up "$dir"; then
    echo "test_remote: could not build the test hosts" >&2
    exit 1
fi
. "$dir/env"
ip netns exec "$NS_A" "$bin" "$dir/env" "$hosts" "$kin"
