#!/usr/bin/env bash
# Builds the libFuzzer target normalise_match_fuzz with clang and runs it for a bounded time from
# the checked-in seed corpus. CI runs it after the test suite (.ci/run) and fails on a finding.
#
#   tests/fuzz/run.sh [SECONDS]        # default 60 (or $FUZZ_SECONDS)
#
# Needs clang and its libFuzzer runtime (Debian 12: clang-14, and libclang-rt-14-dev for
# libclang_rt.fuzzer, which deploy/install-deps.sh installs). The whole library under test is
# instrumented, so libFuzzer sees coverage of the normaliser and templates, not only of the harness.
#
# The seeds live in tests/fuzz/corpus/normalise_match/ (one request target per file). They are
# copied to a scratch corpus in the build directory, so a run never writes into the checkout;
# what libFuzzer finds stays there (add an input worth keeping to the seeds by hand). A crashing
# input is saved as $FUZZ_BUILD_DIR/crash-* and the script exits non-zero.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-60}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seeds="$root/tests/fuzz/corpus/normalise_match"

for tool in clang clang++; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "fuzz: $tool not found (run deploy/install-deps.sh)" >&2
    exit 1
  }
done

# TOLLGATE_BUILD_FUZZ instruments every library with -fsanitize=fuzzer-no-link (CMakeLists.txt).
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DTOLLGATE_BUILD_FUZZ=ON \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target normalise_match_fuzz -j"$(nproc)"

corpus="$build/fuzz-corpus/normalise_match"
rm -rf "$corpus"
mkdir -p "$corpus"
cp "$seeds"/* "$corpus"/
echo "fuzz: normalise_match_fuzz for ${seconds}s from $(ls "$seeds" | wc -l) seeds"

# libFuzzer exits non-zero on a crash, a timeout, an invariant violation (abort) or a leak.
cd "$build"
./normalise_match_fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$build/" "$corpus"
