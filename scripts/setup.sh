#!/usr/bin/env bash
# Installs the Debian packages kin needs. Idempotent: quiet when everything
# is present; runs apt-get update only when something is missing.
#   scripts/setup.sh build   what builds the library, the kin command and the
#                            examples (scripts/demo.sh)
#   scripts/setup.sh test    that, plus what only the tests, fuzzers and CI use
#                            (the default; scripts/test.sh, scripts/fuzz.sh)
set -euo pipefail

# libczmq4: kin loads it with dlopen on the first certificate (no linker
# asks for it), so it is named here beside its -dev package.
build=(build-essential cmake pkg-config
       libzmq3-dev libczmq-dev libczmq4 libmsgpack-dev libuv1-dev
       libunwind-dev libdw-dev libjansson-dev libedit-dev libncurses-dev
       libmicrohttpd-dev libxxhash-dev)
# cmocka: the unit and integration tests; clang and its runtime: the fuzz
# targets; clang-format: CI's format check; tmux: the monitor TUI test;
# python3-prometheus-client: the parser test_metrics and test_web check
# `kin metrics` with; curl and chromium: kin web's tests (test_web,
# test_web_browser);
# sudo: the sudo factory's test; sshd, ssh, iproute2: the test hosts of
# tests/remote/hosts.sh; tcpdump: the sniffing checks; nftables: packet
# loss, a bandwidth cap and blackouts on the test hosts' links (test_faults);
# podman, runc, debootstrap: the exec factory's container test (tests/exec/,
# rootful podman with runc; crun fails on hybrid cgroups).
test=(libcmocka-dev clang libclang-rt-14-dev clang-format-14 tmux procps sudo
      openssh-server openssh-client iproute2 tcpdump nftables
      python3-prometheus-client curl chromium podman runc debootstrap)

case "${1:-test}" in
build) pkgs=("${build[@]}") ;;
test) pkgs=("${build[@]}" "${test[@]}") ;;
*)
    echo "usage: scripts/setup.sh [build|test]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "kin setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
