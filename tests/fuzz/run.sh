#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/<name>_fuzz.cpp) with clang and runs each for its
# share of a bounded time from its checked-in seed corpus. CI runs it after the test suite
# (.ci/run) and fails on a finding.
#
#   tests/fuzz/run.sh [SECONDS]        # total for all targets; default 60 (or $FUZZ_SECONDS)
#
# Targets today: normalise_match_fuzz (request targets -> normaliser and templates) and
# request_head_fuzz (raw bytes -> request parser, header filter, normaliser and policy).
#
# Needs clang and its libFuzzer runtime (Debian 12: clang-14, and libclang-rt-14-dev for
# libclang_rt.fuzzer, which deploy/install-deps.sh installs). The whole library under test is
# instrumented, so libFuzzer sees coverage of the code under test, not only of the harness.
#
# The seeds of <name>_fuzz live in tests/fuzz/corpus/<name>/ (one input per file). They are
# copied to a scratch corpus in the build directory, so a run never writes into the checkout;
# what libFuzzer finds stays there (add an input worth keeping to the seeds by hand). A crashing
# input is saved as $FUZZ_BUILD_DIR/<name>-crash-* and the script exits non-zero.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-60}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"

for tool in clang clang++; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "fuzz: $tool not found (run deploy/install-deps.sh)" >&2
    exit 1
  }
done

targets=()
for src in "$root"/tests/fuzz/*_fuzz.cpp; do
  targets+=("$(basename "$src" .cpp)")
done
# The budget is shared: each target gets an equal part (at least 1 s), so the total stays as given.
share=$((seconds / ${#targets[@]}))
((share >= 1)) || share=1

# TOLLGATE_BUILD_FUZZ instruments every library with -fsanitize=fuzzer-no-link (CMakeLists.txt).
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DTOLLGATE_BUILD_FUZZ=ON \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j"$(nproc)"

cd "$build"
for target in "${targets[@]}"; do
  name="${target%_fuzz}"
  seeds="$root/tests/fuzz/corpus/$name"
  corpus="$build/fuzz-corpus/$name"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  cp "$seeds"/* "$corpus"/
  echo "fuzz: $target for ${share}s from $(ls "$seeds" | wc -l) seeds"
  # libFuzzer exits non-zero on a crash, a timeout, an invariant violation (abort) or a leak;
  # set -e then stops the script with that status.
  "./$target" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/$name-" "$corpus"
done
