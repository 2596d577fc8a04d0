#!/usr/bin/env bash
# Installs the Debian packages kin needs to build and test. Idempotent: quiet
# when everything is present; runs apt-get update only when something is missing.
set -euo pipefail

pkgs=(build-essential cmake pkg-config clang clang-format-14 libclang-rt-14-dev
      libzmq3-dev libczmq-dev libmsgpack-dev libuv1-dev libcmocka-dev
      libunwind-dev libdw-dev libjansson-dev libedit-dev tmux procps sudo
      openssh-server openssh-client iproute2 tcpdump)

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
