#!/usr/bin/env bash
# Installs kin into an empty prefix, then builds the program of
# docs/getting-started.md against it twice -- with pkg-config and with
# find_package(kin) -- and runs both: the packaging works for a user who
# installs kin anywhere.
#   test_install.sh BUILD_DIR SOURCE_DIR [SANITIZERS]
# A sanitizer build's library needs the program built the same way.
set -euo pipefail
build=$1 src=$2
cflags=${3:+-fsanitize=$3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
# The first C block of the guide is the program.
awk '/^```c$/ {on=1; next} /^```$/ && on {exit} on' \
    "$src/docs/getting-started.md" >"$work/first.c"
grep -q kin_init "$work/first.c"

pc=$(find "$prefix" -name kin.pc)
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir kin)
cc -g $cflags "$work/first.c" $(pkg-config --cflags --libs kin) \
    -Wl,-rpath,"$libdir" -o "$work/first"
out=$("$work/first")
echo "pkg-config build: $out"
[ "$out" = "2 + 3 = 5 (success)" ]

mkdir "$work/cm"
cat >"$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(first C)
find_package(kin 0 REQUIRED)
add_executable(first ../first.c)
target_link_libraries(first PRIVATE kin::kin)
CM
cmake -S "$work/cm" -B "$work/cm/b" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_RPATH="$libdir" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$work/cm/b" >/dev/null
out=$("$work/cm/b/first")
echo "find_package build: $out"
[ "$out" = "2 + 3 = 5 (success)" ]
