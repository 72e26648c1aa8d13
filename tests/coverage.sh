#!/usr/bin/env bash
# Line and branch coverage of the whole suite, per module.
#
#   tests/coverage.sh [ctest args...]     # build in build-coverage/ (or $COVERAGE_BUILD_DIR)
#
# Builds with gcov instrumentation (-O0 --coverage), runs every test with CTest (the integration
# tests' tollgate and fake_upstream children write their counters when they exit), then prints,
# per module, the share of lines and branches the suite executed, with gcovr (Debian's gcovr).
# Branches the compiler adds for exceptions and unreachable code are left out, so the branch
# figure counts the decisions written in our code. HTML detail: build-coverage/coverage/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${COVERAGE_BUILD_DIR:-build-coverage}
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTOLLGATE_COVERAGE=ON -DTOLLGATE_BUILD_BENCH=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
find "$build" -name '*.gcda' -delete
ctest --test-dir "$build" -j"$(nproc)" --timeout 600 --output-on-failure "$@" || {
  echo "coverage: some tests failed; the figures below still count what ran" >&2
}
mkdir -p "$build/coverage"
gcovr_args=(-r "$root" "$build" --filter "$root/config/" --filter "$root/policies/"
  --filter "$root/upstream/" --filter "$root/keys/" --filter "$root/gateway/"
  --exclude-throw-branches --exclude-unreachable-branches --gcov-ignore-parse-errors)
gcovr "${gcovr_args[@]}" --json-summary "$build/coverage/summary.json" \
  --html-details "$build/coverage/index.html" >/dev/null
python3 - "$build/coverage/summary.json" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
groups = {}
def add(name, f):
    g = groups.setdefault(name, [0, 0, 0, 0])
    g[0] += f["line_covered"]; g[1] += f["line_total"]
    g[2] += f["branch_covered"]; g[3] += f["branch_total"]
for f in files:
    path = f["filename"]
    add(path.split("/")[0] + "/", f)
    if path in ("gateway/pipeline.cpp", "gateway/rate_limit_headers.cpp"):
        add("request pipeline (gateway/pipeline.cpp, rate_limit_headers.cpp)", f)
    add("all", f)
pct = lambda a, b: f"{100.0 * a / b:5.1f}%" if b else "    -"
print(f"\n{'module':66} {'lines':>16} {'branches':>16}")
for name in sorted(groups, key=lambda n: (n == "all", n)):
    l, lt, b, bt = groups[name]
    print(f"{name:66} {pct(l, lt)} {l:>5}/{lt:<5} {pct(b, bt)} {b:>5}/{bt:<5}")
PY
echo "detail: $build/coverage/index.html"
