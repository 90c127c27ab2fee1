#!/bin/sh
# Builds the C/C++ bench of `make bench` into OUT_DIR/bench-c: bench.c (jobrunner's C
# API, C11) against include/jobrunner.h and target/release/libjobrunner.a (`make lib`
# first), and, when oneTBB is installed (libtbb-dev), tbb_peer.cpp, its oneTBB
# task_group peer. Without oneTBB it builds the jobrunner side alone and says so.
#
# Usage: bench/c/build.sh OUT_DIR   (from anywhere; CC and CXX are honoured)
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$root/bench/c
lib=$root/target/release/libjobrunner.a
CC=${CC:-cc}
CXX=${CXX:-c++}

if [ ! -f "$lib" ] || [ ! -f "$root/include/jobrunner.h" ]; then
    echo "error: $lib or include/jobrunner.h is missing. Build them first: make lib" >&2
    exit 1
fi
mkdir -p "$out"

# Compile and link flags: the Makefile's C_FLAGS with -O2 instead of -g, and its
# C_STATIC_LINK. The C++ side has no -Werror: a newer compiler may warn inside oneTBB's
# own headers, which must not break make bench.
cflags="-std=c11 -O2 -Wall -Wextra -Werror -pthread -I$root/include"
cxxflags="-std=c++17 -O2 -Wall -Wextra -pthread"
static_link="$lib -lpthread -ldl -lm"

# oneTBB is there if a C++ program including task_group.h links with -ltbb.
tbb_libs=$(pkg-config --libs tbb 2>/dev/null || echo -ltbb)
tbb_cflags=$(pkg-config --cflags tbb 2>/dev/null || true)
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <oneapi/tbb/task_group.h>\nint main() { tbb::task_group g; g.run([] {}); g.wait(); }\n' \
    >"$probe_dir/probe.cpp"
if ! command -v "$CXX" >/dev/null 2>&1; then
    missing="no C++ compiler ($CXX). To include it: apt-get install g++ libtbb-dev"
elif ! "$CXX" -std=c++17 $tbb_cflags "$probe_dir/probe.cpp" -o "$probe_dir/probe" $tbb_libs \
        >/dev/null 2>&1; then
    missing="oneTBB is not installed. To include it: apt-get install libtbb-dev"
else
    missing=
fi
if [ -z "$missing" ]; then
    echo "bench/c: building bench-c with its oneTBB task_group peer" >&2
    set -x
    "$CC" $cflags -DBENCH_HAVE_TBB -c "$src/bench.c" -o "$out/bench.o"
    "$CXX" $cxxflags $tbb_cflags -c "$src/tbb_peer.cpp" -o "$out/tbb_peer.o"
    "$CXX" -pthread "$out/bench.o" "$out/tbb_peer.o" -o "$out/bench-c" $static_link $tbb_libs
    { set +x; } 2>/dev/null
else
    echo "SKIPPED: bench-c is built without its oneTBB task_group peer: $missing" >&2
    set -x
    "$CC" $cflags "$src/bench.c" -o "$out/bench-c" $static_link
    { set +x; } 2>/dev/null
fi
