#!/usr/bin/env bash
# tollgate load benchmark: one command, loopback only, everything it starts is stopped on exit.
#
#   tests/bench/run.sh [build-dir]          (default build dir: build)
#
# Targets, each on a free 127.0.0.1 port, all measured in the same run so that their ratios are
# comparable (absolute numbers on a shared 2-core box are noise; ratios are not):
#   a  nginx serving a static JSON file              (the fake upstream, and the floor)
#   b  nginx reverse proxy to (a), keep-alive pool   (what a plain proxy costs)
#   c  pistache_hello                                (the front-end library's ceiling)
#   d  tollgate -> (a), in-process limiter
#   e  tollgate -> (a), Redis limiter (a local redis-server)
#   f  (e) called with a run-time key (issue 11: made through its admin API) instead of a
#      config key: what the key cache costs per request
# For each target: req/s, latency, and the CPU the measured process used per request (utime+stime
# from /proc/<pid>/stat, of the process and its child processes, over the wrk run, divided by the
# requests wrk completed). nginx's proxying alone is the CPU of both nginx instances per proxied
# request minus nginx (a)'s CPU per static request; redis-server's CPU per decision is its CPU
# over the (e) run divided by (e)'s requests (the bench route has one limit: one decision each).
# Then a moderate fixed load (1 thread, 4 connections) and a light one (1 connection) against (a)
# and (e) for the latency tollgate adds. wrk2 (constant-rate load) is not packaged in Debian 12,
# so those runs are closed-loop wrk.
#
# Environment:
#   BENCH_SECONDS          duration of each throughput run (default 10)
#   BENCH_LATENCY_SECONDS  duration of each fixed-load run (default BENCH_SECONDS)
#   BENCH_CONNECTIONS      wrk connections for the throughput runs (default 64)
#   BENCH_THREADS          wrk threads for the throughput runs (default 2)
#   BENCH_START_TIMEOUT    seconds to wait for each server to become ready (default 15)
#   BENCH_KEEP=1           keep the temp dir (configs, logs, audit files) for inspection
#   BENCH_NO_BUILD=1       never run cmake; use the binaries already in the build dir
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${1:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
SECONDS_RUN="${BENCH_SECONDS:-10}"
SECONDS_LATENCY="${BENCH_LATENCY_SECONDS:-$SECONDS_RUN}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
WRK_THREADS="${BENCH_THREADS:-2}"
START_TIMEOUT="${BENCH_START_TIMEOUT:-15}"
NGINX="${NGINX:-/usr/sbin/nginx}"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in "$NGINX" wrk redis-server redis-cli curl python3 sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "missing $tool (run deploy/install-deps.sh)"
done

# --- cleanup: every process this script starts is recorded here and stopped on exit -----------
PIDS=()
TMP="$(mktemp -d /tmp/tollgate-bench.XXXXXX)"
cleanup() {
  local pid
  # Also every background job: a signal landing between a fork and PIDS+= must not leak a server.
  # shellcheck disable=SC2207
  PIDS+=($(jobs -p))
  for pid in "${PIDS[@]:-}"; do
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  # Bounded: whatever has not stopped after 5 s is killed.
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]:-}"; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]:-}"; do
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  if [ "${BENCH_KEEP:-0}" = "1" ]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- binaries --------------------------------------------------------------------------------
TOLLGATE="$BUILD_DIR/tollgate"
HELLO="$BUILD_DIR/pistache_hello"
build_binaries() {
  [ "${BENCH_NO_BUILD:-0}" = "1" ] && return 0
  [ -x "$TOLLGATE" ] && [ -x "$HELLO" ] && return 0
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    log "configuring $BUILD_DIR (Release, bench on, tests off)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_BUILD_BENCH=ON \
      -DTOLLGATE_BUILD_TESTS=OFF >"$TMP/cmake-configure.log" 2>&1 ||
      { log "cmake configure failed:"; grep -A3 'CMake Error' "$TMP/cmake-configure.log" >&2 || true; }
  elif ! grep -q '^TOLLGATE_BUILD_BENCH:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
    log "turning TOLLGATE_BUILD_BENCH on in $BUILD_DIR"
    cmake -DTOLLGATE_BUILD_BENCH=ON "$BUILD_DIR" >"$TMP/cmake-configure.log" 2>&1 || true
  fi
  local target
  for target in pistache_hello tollgate; do
    [ -x "$BUILD_DIR/$target" ] && continue
    log "building $target"
    cmake --build "$BUILD_DIR" --target "$target" -j2 >"$TMP/build-$target.log" 2>&1 ||
      { log "building $target failed:"; tail -n 15 "$TMP/build-$target.log" >&2 || true; }
  done
  # pistache_hello needs nothing of tollgate: if the tree does not configure yet, build it alone.
  if [ ! -x "$HELLO" ]; then
    log "building pistache_hello directly with pkg-config"
    mkdir -p "$BUILD_DIR"
    # shellcheck disable=SC2046  # pkg-config output is a list of flags
    c++ -std=c++17 -O2 $(pkg-config --cflags libpistache) "$ROOT/tests/bench/pistache_hello.cpp" \
      -o "$HELLO" $(pkg-config --libs libpistache) -pthread
  fi
}
build_binaries
[ -x "$HELLO" ] || die "no $HELLO"
TOLLGATE_OK=1
[ -x "$TOLLGATE" ] || { log "tollgate not built ($TOLLGATE missing): rows d and e will be n/a"; TOLLGATE_OK=0; }

# --- ports and readiness -------------------------------------------------------------------------
# All ports are taken at once while every socket is still open, so they are distinct.
read -r PORT_A PORT_B PORT_C PORT_D PORT_D_ADMIN PORT_E PORT_E_ADMIN PORT_R < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')

# wait_http NAME URL PID [HEADER]: polls until URL answers 200; fails if PID exits or on timeout.
wait_http() {
  local name="$1" url="$2" pid="$3" header="${4:-X-Bench: 1}" code
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || { log "$name exited during start-up"; return 1; }
    # "|| true" stays outside $(...): inside, the subshell would swallow a Ctrl-C that killed curl.
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "$header" "$url")" || true
    [ "$code" = 200 ] && return 0
    sleep 0.2
  done
  log "$name not ready after ${START_TIMEOUT}s ($url)"
  return 1
}

start() {  # start LOGFILE CMD...: runs CMD in the background, records its pid in STARTED
  local logfile="$1"
  shift
  "$@" >"$logfile" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# --- (a) and (b): nginx ------------------------------------------------------------------------
# nginx workers run as "nobody" when the script runs as root: they must be able to read the docroot.
chmod 755 "$TMP"
mkdir -p "$TMP/www" "$TMP/nginx-a" "$TMP/nginx-b"
printf '{"id":"bench","items":[1,2,3],"ok":true,"message":"static upstream response"}\n' \
  >"$TMP/www/data.json"
chmod 644 "$TMP/www/data.json"

nginx_conf() {  # nginx_conf PREFIX PORT HTTP_EXTRA SERVER_EXTRA
  cat <<EOF
worker_processes 2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  ${3:-}
  server {
    listen 127.0.0.1:$2;
    ${4:-}
  }
}
EOF
}
nginx_conf "$TMP/nginx-a" "$PORT_A" "" "root $TMP/www;" >"$TMP/nginx-a/nginx.conf"
nginx_conf "$TMP/nginx-b" "$PORT_B" \
  "upstream fake { server 127.0.0.1:$PORT_A; keepalive 64; }" \
  "location / { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" \
  >"$TMP/nginx-b/nginx.conf"

start "$TMP/nginx-a/stdout.log" "$NGINX" -e "$TMP/nginx-a/error.log" -p "$TMP/nginx-a" \
  -c "$TMP/nginx-a/nginx.conf"
PID_A=$STARTED
start "$TMP/nginx-b/stdout.log" "$NGINX" -e "$TMP/nginx-b/error.log" -p "$TMP/nginx-b" \
  -c "$TMP/nginx-b/nginx.conf"
PID_B=$STARTED
wait_http "nginx (a)" "http://127.0.0.1:$PORT_A/data.json" "$PID_A" ||
  { cat "$TMP/nginx-a/error.log" >&2 || true; die "nginx (a) failed"; }
wait_http "nginx (b)" "http://127.0.0.1:$PORT_B/data.json" "$PID_B" ||
  { cat "$TMP/nginx-b/error.log" >&2 || true; die "nginx (b) failed"; }

# --- (c): pistache_hello -----------------------------------------------------------------------
start "$TMP/pistache_hello.log" "$HELLO" "$PORT_C" 2
PID_C=$STARTED
wait_http "pistache_hello (c)" "http://127.0.0.1:$PORT_C/data.json" "$PID_C" ||
  { cat "$TMP/pistache_hello.log" >&2 || true; die "pistache_hello (c) failed"; }

# --- (d) and (e): tollgate -----------------------------------------------------------------------
# A throwaway caller key for this run only; the config holds just its SHA-256.
BENCH_KEY="tgbench_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
BENCH_KEY_SHA="$(printf '%s' "$BENCH_KEY" | sha256sum | cut -d' ' -f1)"
AUTH_HEADER="Authorization: Bearer $BENCH_KEY"
# An admin token (scope keys) for row f's run-time key; also this run's only.
BENCH_ADMIN="tga_bench_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
BENCH_ADMIN_SHA="$(printf '%s' "$BENCH_ADMIN" | sha256sum | cut -d' ' -f1)"
export BENCH_UPSTREAM_TOKEN="bench-upstream-token-not-a-secret"

tollgate_conf() {  # tollgate_conf PORT ADMIN_PORT AUDIT_FILE [REDIS_SECTION]
  cat <<EOF
{
  "listen": "127.0.0.1:$1",
  "admin_listen": "127.0.0.1:$2",
  "threads": 2,
  "upstreams": {
    "bench": {
      "base_url": "http://127.0.0.1:$PORT_A",
      "auth": {"type": "bearer", "secret_env": "BENCH_UPSTREAM_TOKEN"},
      "limits": [{"name": "bench-all", "rate": "1000000/s", "scope": "shared"}]
    }
  },
  "roles": {"reader": {"rules": [{"upstream": "bench", "methods": ["GET"], "path": "/**"}]}},
  "callers": {"bench": {"key_sha256": ["$BENCH_KEY_SHA"], "roles": ["reader"]}},
  "admin": {"tokens": [{"name": "bench", "sha256": "$BENCH_ADMIN_SHA", "scopes": ["keys"]}]},
  ${4:-}
  "audit": {"file": "$3"}
}
EOF
}

# start_tollgate NAME PORT ADMIN_PORT CONFIG: 0 when it serves an authorised GET with 200.
start_tollgate() {
  local name="$1" port="$2" admin="$3" conf="$4"
  [ "$TOLLGATE_OK" = 1 ] || return 1
  start "$TMP/$name.log" "$TOLLGATE" serve --config "$conf"
  local pid=$STARTED
  TOLLGATE_PID=$pid
  if ! wait_http "tollgate ($name)" "http://127.0.0.1:$admin/readyz" "$pid" ||
    ! wait_http "tollgate ($name)" "http://127.0.0.1:$port/bench/data.json" "$pid" "$AUTH_HEADER"; then
    log "tollgate not ready ($name); last lines of its log:"
    tail -n 20 "$TMP/$name.log" >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    return 1
  fi
}

D_OK=0
E_OK=0
tollgate_conf "$PORT_D" "$PORT_D_ADMIN" "$TMP/audit-d.log" >"$TMP/tollgate-d.json"
TOLLGATE_PID=
start_tollgate tollgate-d "$PORT_D" "$PORT_D_ADMIN" "$TMP/tollgate-d.json" && D_OK=1
PID_D=$TOLLGATE_PID

start "$TMP/redis.log" redis-server --bind 127.0.0.1 --port "$PORT_R" --save '' \
  --appendonly no --dir "$TMP"
PID_R=$STARTED
REDIS_UP=0
for _ in $(seq $((START_TIMEOUT * 5))); do
  kill -0 "$PID_R" 2>/dev/null || break
  pong="$(redis-cli -h 127.0.0.1 -p "$PORT_R" ping 2>/dev/null)" || true
  if [ "$pong" = PONG ]; then
    REDIS_UP=1
    break
  fi
  sleep 0.2
done
if [ "$REDIS_UP" = 1 ]; then
  tollgate_conf "$PORT_E" "$PORT_E_ADMIN" "$TMP/audit-e.log" \
    "\"redis\": {\"url\": \"redis://127.0.0.1:$PORT_R/0\", \"timeout_ms\": 50, \"on_error\": \"local\"}," \
    >"$TMP/tollgate-e.json"
  TOLLGATE_PID=
  start_tollgate tollgate-e "$PORT_E" "$PORT_E_ADMIN" "$TMP/tollgate-e.json" && E_OK=1
  PID_E=$TOLLGATE_PID
fi
F_OK=0
RT_HEADER="X-Bench: 1"
if [ "$E_OK" = 1 ]; then
  RT_KEY="$(curl -s -X POST -H "Authorization: Bearer $BENCH_ADMIN" \
    -d '{"caller": "bench", "note": "bench"}' "http://127.0.0.1:$PORT_E_ADMIN/keys" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("key", ""))' 2>/dev/null)" || RT_KEY=""
  if [ -n "$RT_KEY" ]; then
    RT_HEADER="Authorization: Bearer $RT_KEY"
    wait_http "tollgate (run-time key)" "http://127.0.0.1:$PORT_E/bench/data.json" "$PID_E" \
      "$RT_HEADER" && F_OK=1
  else
    log "could not create a run-time key on (e); row f will be n/a"
  fi
else
  log "redis-server did not start; row e will be n/a"
  tail -n 5 "$TMP/redis.log" >&2 || true
fi

# --- measuring -------------------------------------------------------------------------------------
# run_wrk OUT THREADS CONNECTIONS SECONDS URL [HEADER]: wrk --latency; -d bounds it. (Not under
# timeout(1): that moves wrk to its own process group, where a Ctrl-C would not reach it.)
run_wrk() {
  local out="$1" threads="$2" conns="$3" secs="$4" url="$5" header="${6:-X-Bench: 1}"
  wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -H "$header" "$url" \
    >"$out" 2>&1 || log "wrk failed against $url (see $out)"
}

# wrk prints latencies as 812.00us / 1.23ms / 1.02s: normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v == "") { print "n/a"; exit }
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000;
    else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}
rps_of() { awk '/^Requests\/sec:/ { print $2 }' "$1" 2>/dev/null; }
pct_of() { to_ms "$(awk -v p="$2%" '$1 == p { print $2 }' "$1" 2>/dev/null)"; }
bad_of() {  # wrk's own error lines, e.g. "Non-2xx or 3xx responses: 12"
  grep -E 'Non-2xx|Socket errors' "$1" 2>/dev/null | sed 's/^ *//' | paste -sd';' - || true
}

reqs_of() { awk '/ requests in / { print $1 }' "$1" 2>/dev/null; }

# cpu_ticks PID...: utime+stime (clock ticks) of each PID and of its child processes (nginx's
# workers). Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() {
  local total=0 pid p t
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
      t="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null)" || t=0
      total=$((total + ${t:-0}))
    done
  done
  echo "$total"
}
# us_per TICKS REQUESTS: microseconds of CPU per request.
us_per() {
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {
    if (n + 0 > 0 && t != "") printf "%.1f", t * 1000000 / hz / n; else print "n/a" }'
}

declare -A RPS P50 P99 NOTE REQS CPU_SELF CPU_A CPU_R PIDS_OF
PIDS_OF=([a]="$PID_A" [b]="$PID_B" [c]="$PID_C" [d]="${PID_D:-}" [e]="${PID_E:-}"
  [f]="${PID_E:-}")
measure() {  # measure KEY OK URL [HEADER]
  local key="$1" ok="$2" url="$3" header="${4:-X-Bench: 1}"
  if [ "$ok" != 1 ]; then
    RPS[$key]="n/a"; P50[$key]="n/a"; P99[$key]="n/a"; NOTE[$key]="not running"
    REQS[$key]=0; CPU_SELF[$key]=""; CPU_A[$key]=""; CPU_R[$key]=""
    return
  fi
  log "wrk ${WRK_THREADS}t/${CONNECTIONS}c ${SECONDS_RUN}s -> $key"
  local self0 a0 r0
  self0="$(cpu_ticks ${PIDS_OF[$key]})"
  a0="$(cpu_ticks "$PID_A")"
  r0="$(cpu_ticks "${PID_R:-}")"
  run_wrk "$TMP/wrk-$key.txt" "$WRK_THREADS" "$CONNECTIONS" "$SECONDS_RUN" "$url" "$header"
  CPU_SELF[$key]=$(($(cpu_ticks ${PIDS_OF[$key]}) - self0))
  CPU_A[$key]=$(($(cpu_ticks "$PID_A") - a0))
  CPU_R[$key]=$(($(cpu_ticks "${PID_R:-}") - r0))
  REQS[$key]="$(reqs_of "$TMP/wrk-$key.txt")"; REQS[$key]="${REQS[$key]:-0}"
  RPS[$key]="$(rps_of "$TMP/wrk-$key.txt")"; RPS[$key]="${RPS[$key]:-n/a}"
  P50[$key]="$(pct_of "$TMP/wrk-$key.txt" 50)"
  P99[$key]="$(pct_of "$TMP/wrk-$key.txt" 99)"
  local bad
  bad="$(bad_of "$TMP/wrk-$key.txt")"
  NOTE[$key]="$bad"
}

ratio() {
  awk -v x="$1" -v y="$2" 'BEGIN { if (x + 0 > 0 && y + 0 > 0) printf "%.2f", x / y; else print "n/a" }'
}

BUILD_TYPE="$(grep -s '^CMAKE_BUILD_TYPE:' "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2 || true)"
log "build dir $BUILD_DIR (${BUILD_TYPE:-unknown build type}); temp dir $TMP"

measure a 1 "http://127.0.0.1:$PORT_A/data.json"
measure b 1 "http://127.0.0.1:$PORT_B/data.json"
measure c 1 "http://127.0.0.1:$PORT_C/data.json"
measure d "$D_OK" "http://127.0.0.1:$PORT_D/bench/data.json" "$AUTH_HEADER"
measure e "$E_OK" "http://127.0.0.1:$PORT_E/bench/data.json" "$AUTH_HEADER"
measure f "$F_OK" "http://127.0.0.1:$PORT_E/bench/data.json" "$RT_HEADER"

declare -A NAME=(
  [a]="a nginx static (upstream)"
  [b]="b nginx reverse proxy"
  [c]="c pistache_hello"
  [d]="d tollgate, memory limiter"
  [e]="e tollgate, redis limiter"
  [f]="f (e) with a run-time key"
)

echo
echo "Throughput: wrk -t$WRK_THREADS -c$CONNECTIONS -d${SECONDS_RUN}s, loopback, $(nproc) cores shared with wrk"
printf '%-30s %12s %10s %10s %12s  %s\n' "target" "req/s" "p50 ms" "p99 ms" "CPU us/req" ""
declare -A CPU_US
for k in a b c d e f; do
  CPU_US[$k]="$(us_per "${CPU_SELF[$k]}" "${REQS[$k]}")"
  printf '%-30s %12s %10s %10s %12s  %s\n' "${NAME[$k]}" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" \
    "${CPU_US[$k]}" "${NOTE[$k]}"
done
# nginx (a) serves the static file in every run; during (b) it serves (b)'s upstream requests.
NGINX_BOTH="$(us_per $((${CPU_SELF[b]:-0} + ${CPU_A[b]:-0})) "${REQS[b]}")"
NGINX_PROXY="$(awk -v x="$NGINX_BOTH" -v y="${CPU_US[a]}" 'BEGIN {
  if (x ~ /^[0-9.]+$/ && y ~ /^[0-9.]+$/) printf "%.1f", x - y; else print "n/a" }')"
REDIS_US="$(us_per "${CPU_R[e]:-}" "${REQS[e]}")"
[ "$E_OK" = 1 ] || REDIS_US="n/a"
TG_A_E="$(us_per "${CPU_A[e]:-}" "${REQS[e]}")"
echo
echo "CPU per request (utime+stime from /proc over each wrk run; clock tick ${CLK_TCK} Hz):"
printf '  nginx proxying alone:          %6s us  (nginx a+b %s per proxied request - nginx a %s per static one)\n' \
  "$NGINX_PROXY" "$NGINX_BOTH" "${CPU_US[a]}"
printf '  tollgate, memory limiter (d):  %6s us\n' "${CPU_US[d]}"
printf '  tollgate, redis limiter (e):   %6s us  (+ redis-server %s us per decision; upstream nginx %s us)\n' \
  "${CPU_US[e]}" "$REDIS_US" "$TG_A_E"
aim() {  # aim LABEL VALUE OP LIMIT
  local verdict
  verdict="$(awk -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
    if (v !~ /^[0-9.]+$/) { print "n/a"; exit }
    ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0); print ok ? "ok" : "MISSED" }')"
  printf '%-52s %8s   (aim %s %s)  %s\n' "$1" "$2" "$3" "$4" "$verdict"
}
echo
aim "CPU/req tollgate+redis (e) / nginx proxying" "$(ratio "${CPU_US[e]}" "$NGINX_PROXY")" "<=" 2.0
aim "CPU/req tollgate+memory (d) / nginx proxying" "$(ratio "${CPU_US[d]}" "$NGINX_PROXY")" "<=" 1.75
aim "redis-server us per decision (e)" "$REDIS_US" "<=" 12
aim "throughput e/b (tollgate+redis vs nginx proxy)" "$(ratio "${RPS[e]}" "${RPS[b]}")" ">=" 0.6
aim "throughput d/b (tollgate+memory vs nginx proxy)" "$(ratio "${RPS[d]}" "${RPS[b]}")" ">=" 0.6
printf '%-52s %8s\n' "throughput e/c (tollgate+redis vs bare pistache)" "$(ratio "${RPS[e]}" "${RPS[c]}")"
printf '%-52s %8s\n' "CPU/req run-time key / config key (f/e)" "$(ratio "${CPU_US[f]}" "${CPU_US[e]}")"
printf '%-52s %8s\n' "throughput run-time key / config key (f/e)" "$(ratio "${RPS[f]}" "${RPS[e]}")"

# --- latency added under a moderate, fixed load ------------------------------------------------------
echo
echo "Latency added: wrk -t1 -c4 -d${SECONDS_LATENCY}s (closed loop; wrk2's constant-rate mode is not packaged in Debian 12)"
lat() {  # lat KEY OK URL [HEADER] -> sets L50[KEY], L99[KEY]
  local key="$1" ok="$2" url="$3" header="${4:-X-Bench: 1}"
  L50[$key]="n/a"; L99[$key]="n/a"
  [ "$ok" = 1 ] || return 0
  local conns="${5:-4}"
  log "wrk 1t/${conns}c ${SECONDS_LATENCY}s -> $key"
  run_wrk "$TMP/lat-$key.txt" 1 "$conns" "$SECONDS_LATENCY" "$url" "$header"
  L50[$key]="$(pct_of "$TMP/lat-$key.txt" 50)"
  L99[$key]="$(pct_of "$TMP/lat-$key.txt" 99)"
}
declare -A L50 L99
lat a 1 "http://127.0.0.1:$PORT_A/data.json"
lat e "$E_OK" "http://127.0.0.1:$PORT_E/bench/data.json" "$AUTH_HEADER"
lat a1 1 "http://127.0.0.1:$PORT_A/data.json" "X-Bench: 1" 1
lat e1 "$E_OK" "http://127.0.0.1:$PORT_E/bench/data.json" "$AUTH_HEADER" 1
diff_ms() {
  awk -v x="$1" -v y="$2" 'BEGIN { if (x ~ /^[0-9.]+$/ && y ~ /^[0-9.]+$/) printf "%+.3f", x - y; else print "n/a" }'
}
printf '%-30s %10s %10s\n' "target" "p50 ms" "p99 ms"
printf '%-30s %10s %10s\n' "${NAME[a]}" "${L50[a]}" "${L99[a]}"
printf '%-30s %10s %10s\n' "${NAME[e]}" "${L50[e]}" "${L99[e]}"
printf '%-30s %10s %10s\n' "added by tollgate (e - a)" "$(diff_ms "${L50[e]}" "${L50[a]}")" \
  "$(diff_ms "${L99[e]}" "${L99[a]}")"
printf '%-30s %10s %10s\n' "light load p99 added (-c1)" "$(diff_ms "${L50[e1]}" "${L50[a1]}")" \
  "$(diff_ms "${L99[e1]}" "${L99[a1]}")"
echo "  (wrk -t1 -c1: tollgate+redis p50/p99 ${L50[e1]}/${L99[e1]} ms, nginx static ${L50[a1]}/${L99[a1]} ms)"
echo "(one run on a shared box: p99 is noisy, a negative difference is noise; repeat to compare)"

if [ "$D_OK" != 1 ] || [ "$E_OK" != 1 ]; then
  echo
  echo "tollgate not ready: rows d/e incomplete (BENCH_KEEP=1 keeps its logs and configs)"
  exit 1
fi
