// The scan for upstream secret values that every answer body passes through: a 64 KiB JSON
// answer with no secret in it (the common case), whole (a collected answer) and streamed in
// 16 KiB chunks (libcurl's buffer), against the secrets of a config with four upstreams.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "upstream/secret_scan.h"

namespace tollgate::upstream {
namespace {

std::vector<std::string> Secrets() {
  return {"devin-api-key-6f1c2a9e8b7d4c3f0a1e2d3c4b5a6978",  // bearer
          "sat_5d2c9e1f7a3b4c8d6e0f1a2b3c4d5e6f",            // standAloneToken
          "devo-hmac-key-1f2e3d4c5b6a79880",                 // devo_hmac key
          "devo-hmac-secret-a9b8c7d6e5f4a3b2c1d0",           // devo_hmac secret
          "other-upstream-bearer-0123456789abcdef"};
}

// Session-list-like JSON: ids, timestamps, short texts; bytes the secrets start with included.
std::string Answer(size_t size) {
  std::string out = "{\"sessions\":[";
  for (int i = 0; out.size() < size - 200; ++i) {
    out += "{\"session_id\":\"devin-" + std::to_string(1000000 + i * 7919) +
           "\",\"status\":\"finished\",\"title\":\"sat on the devo dashboard\","
           "\"created_at\":\"2026-12-01T12:00:00Z\",\"org\":\"org-123\"},";
  }
  out.back() = ']';
  out += "}";
  out.resize(size, ' ');
  return out;
}

void BM_SecretScanWhole64KiB(benchmark::State& state) {
  SecretScanner scanner(Secrets());
  const std::string answer = Answer(64 * 1024);
  for (auto _ : state) {
    std::string body = answer;
    benchmark::DoNotOptimize(scanner.ReplaceAll(&body));
    benchmark::DoNotOptimize(body);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(answer.size()));
}
BENCHMARK(BM_SecretScanWhole64KiB);

// The copy ReplaceAll's benchmark makes, alone: what the scan adds is the difference.
void BM_Copy64KiB(benchmark::State& state) {
  const std::string answer = Answer(64 * 1024);
  for (auto _ : state) {
    std::string body = answer;
    benchmark::DoNotOptimize(body);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(answer.size()));
}
BENCHMARK(BM_Copy64KiB);

void BM_SecretScanStreamed64KiB(benchmark::State& state) {
  SecretScanner scanner(Secrets());
  const std::string answer = Answer(64 * 1024);
  constexpr size_t kChunk = 16 * 1024;
  std::string out;
  for (auto _ : state) {
    SecretScan scan(&scanner);
    for (size_t at = 0; at < answer.size(); at += kChunk) {
      out.clear();
      benchmark::DoNotOptimize(scan.Feed(std::string_view(answer).substr(at, kChunk), &out));
      benchmark::DoNotOptimize(out);
    }
    out.clear();
    scan.Finish(&out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(answer.size()));
}
BENCHMARK(BM_SecretScanStreamed64KiB);

}  // namespace
}  // namespace tollgate::upstream

BENCHMARK_MAIN();
