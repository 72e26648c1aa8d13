#!/usr/bin/env bash
# Installs every Debian 12 package tollgate needs to build, test and benchmark.
# Idempotent; run as root (or with sudo available). Nothing is downloaded but Debian packages.
set -euo pipefail

# clang and libclang-rt-14-dev build and run the libFuzzer target (tests/fuzz/run.sh, CI):
# libclang_rt.fuzzer for Debian 12's clang-14 is in libclang-rt-14-dev, which clang only
# recommends, so --no-install-recommends would skip it. gcovr reports coverage
# (tests/coverage.sh); ccache keeps the mutation runner's rebuilds short (tests/mutants/run.sh).
# libjs-chart.js is compiled into the admin console (GET /console/); chromium runs the console's
# browser test (tests/browser/console_test.py, Python 3 standard library only, with
# fonts-dejavu-core so its screenshots have text). redis-sentinel runs the Sentinel failover
# tests (tests/integration/redis_failover_test.cpp; the cluster tests need only redis-server and
# redis-tools' redis-cli, which redis-server depends on).
packages=(
  build-essential cmake pkg-config git ca-certificates curl
  libpistache-dev rapidjson-dev libcurl4-openssl-dev libhiredis-dev libssl-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  redis-server redis-sentinel redis-tools nginx-light wrk procps python3
  clang libclang-rt-14-dev
  gcovr ccache
  libjs-chart.js chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  SUDO="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The distro starts redis-server, redis-sentinel and nginx as services on install; tollgate's
# tests start their own on free ports, and the system ones would only hold ports 6379/26379/80,
# so stop them if we can.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  # One unit at a time: systemctl gives up on the whole list when one unit is unknown.
  for unit in redis-server redis-sentinel nginx; do
    $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
fi
echo "install-deps: done"
