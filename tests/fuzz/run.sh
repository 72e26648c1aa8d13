#!/usr/bin/env bash
# Builds the libFuzzer target normalise_match_fuzz with clang and runs it for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS]        # default 60 (or $FUZZ_SECONDS)
#
# Needs clang and its libFuzzer runtime (Debian 12: clang-14 ships libclang_rt.fuzzer in
# libclang-common-14-dev). The whole build is instrumented, so libFuzzer sees coverage of the
# library code under test, not only of the fuzz harness.
# The seed corpus is rewritten on every run; inputs libFuzzer finds go to the same directory,
# and a crashing input is saved as crash-* in the build directory.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-60}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
corpus="$build/fuzz-corpus/normalise_match"

# TOLLGATE_BUILD_FUZZ instruments every library with -fsanitize=fuzzer-no-link (CMakeLists.txt).
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DTOLLGATE_BUILD_FUZZ=ON \
  -DTOLLGATE_BUILD_TESTS=OFF -DTOLLGATE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target normalise_match_fuzz -j2

mkdir -p "$corpus"
seed=0
add_seed() {
  seed=$((seed + 1))
  printf '%b' "$1" >"$corpus/seed-$seed"
}
# Each seed is a request target; printf %b turns \xHH and \0 into raw bytes.
for s in \
  '/devin/v3beta1/enterprise/self' \
  '/v3beta1/organizations/org-123/sessions?limit=10&after=abc' \
  '/v2/accounts/acme/tokens/t1' \
  '/' '/a/../b' '/a/./b' '/a/%2e%2e/b' '/a/%2E%2e/b' '/a/.%2e/b' '/a/%2e./b' \
  '/a/%252e%252e/b' '/a/%252f' '/a/%255c' '/a/%2500' '/a%2fb' '/a%2Fb' '/a%5cb' '/a\\b' \
  '/a%00b' '/a%0d%0ab' '/a\x01b' '/a\x7f' '/a b' '/caf\xc3\xa9' '/caf%c3%a9' '/a%zz' '/a%4' \
  '/a%' '//a' '/a//b' '/a/' '/a;b' '/a/..;/b' 'http://evil/a' 'host:443' '*' '/a#f' \
  '/%61%62%63' '/%7e%2d%5f' '/a?x=1&x=2' '/a?q=%2e%2e/../x' '/a??' '/.well-known/x' \
  '/%2e%2e%2e' '/a:b@c!$&()*+,=' '/a%3bb%3Fc%23d' '/{x}/**'; do
  add_seed "$s"
done

cd "$build"
./normalise_match_fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$corpus"
