#!/bin/bash
# Prints the path of a Debian root filesystem for test_exec's podman case,
# making it first if needed (debootstrap --variant=minbase, about 30-60 s,
# with the shared libraries kin's test program needs, so the streamed
# executable runs inside). Cached outside the build directories, under
# /var/cache/kin-test, and made under a lock so that parallel runs share it.
# Exits 77 (skip) with the reason when podman, runc or debootstrap is
# missing or not root.
set -euo pipefail
cache=${KIN_TEST_CACHE:-/var/cache/kin-test}
# The libraries libkin and the test program link (ldd build/libkin.so):
# a library added to libkin must be added here.
libs=libzmq5,libczmq4,libuv1,libmsgpackc2,libunwind8,libdw1,libcmocka0
# Named by the package list, so a changed list makes a new directory.
name=podman-rootfs-bookworm-$(echo "$libs" | md5sum | cut -c1-8)
if [ "$(id -u)" != 0 ]; then
    echo "podman rootfs: needs root (rootful podman)" >&2
    exit 77
fi
for tool in podman runc debootstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "podman rootfs: no $tool (scripts/setup.sh test installs it)" >&2
        exit 77
    fi
done
mkdir -p "$cache"
exec 9>"$cache/$name.lock"
flock 9
if [ ! -x "$cache/$name/bin/sh" ]; then
    rm -rf "$cache/$name.tmp"
    mirror=${KIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    if ! debootstrap --variant=minbase --include="$libs" bookworm \
        "$cache/$name.tmp" "$mirror" >"$cache/$name.log" 2>&1; then
        echo "podman rootfs: debootstrap failed, see $cache/$name.log" >&2
        tail -5 "$cache/$name.log" >&2
        exit 1
    fi
    mv "$cache/$name.tmp" "$cache/$name"
fi
echo "$cache/$name"
