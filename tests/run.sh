#!/usr/bin/env bash
# The whole test suite, from any machine state: installs the Debian packages (idempotent),
# configures and builds in build/ (or $BUILD_DIR), then runs every test with CTest.
# The tests start their own redis-server, fake upstreams and gateways on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
./deploy/install-deps.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j"$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 300 "$@"
