// Micro-benchmarks for the per-request costs of observability: serialising an audit record,
// masking a query, submitting to the audit queue, and recording request metrics.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>

#include "gateway/audit_log.h"
#include "gateway/metrics.h"

namespace tollgate::gateway {
namespace {

AuditRecord TypicalRecord() {
  AuditRecord r;
  r.ts = std::chrono::system_clock::now();
  r.request_id = "6f1c2a9e-3b7d-4e0a-9c41-2d8f5b6a7e90";
  r.caller = "data-team";
  r.client_ip = "127.0.0.1";
  r.method = "GET";
  r.upstream = "devo";
  r.path = "/v2/accounts/sampleAccount/tokens/abc";
  r.query = "limit=10&api_key=very-secret&from=2026-01-01";
  r.rule = "/v2/accounts/{account}/tokens/**";
  r.decision = "allowed";
  r.status = 200;
  r.upstream_status = 200;
  r.latency_ms = 12.345;
  r.upstream_ms = 10.5;
  r.bytes_out = 2048;
  r.bucket = "devo-all";
  r.remaining = 39;
  return r;
}

void BM_SerializeAuditRecord(benchmark::State& state) {
  const AuditRecord r = TypicalRecord();
  for (auto _ : state) benchmark::DoNotOptimize(SerializeAuditRecord(r));
}
BENCHMARK(BM_SerializeAuditRecord);

// The slow path: non-ASCII text, characters JSON escapes, and a byte that is not UTF-8.
void BM_SerializeAuditRecordToEscape(benchmark::State& state) {
  AuditRecord r = TypicalRecord();
  r.path = "/v2/accounts/caf\xC3\xA9-team/tokens/\xE2\x82\xAC";
  r.query = "q=%22a%22&name=\"quoted\"\tand\xFF";
  r.error = "upstream said \"no\"\r\n";
  for (auto _ : state) benchmark::DoNotOptimize(SerializeAuditRecord(r));
}
BENCHMARK(BM_SerializeAuditRecordToEscape);

void BM_MaskQuery(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(MaskQuery("limit=10&api_key=very-secret&from=2026-01-01"));
  }
}
BENCHMARK(BM_MaskQuery);

// Reserve a place and submit to a log writing to /dev/null: the queue hand-off plus the writer
// keeping up. A refused reservation (the writer behind) is retried and counted, so the time per
// record includes waiting for the writer, as a loaded gateway would see it as 503s.
void BM_AuditSubmit(benchmark::State& state) {
  static std::unique_ptr<AuditLog> log;
  if (state.thread_index() == 0) {
    config::AuditConfig audit;
    audit.file = "/dev/null";
    log = std::make_unique<AuditLog>(audit, std::nullopt);
  }
  const AuditRecord r = TypicalRecord();
  int64_t refused = 0;
  for (auto _ : state) {
    AuditLog::Slot slot = log->Reserve();
    while (!slot) {
      ++refused;
      slot = log->Reserve();
    }
    AuditRecord copy = r;
    log->Submit(std::move(slot), std::move(copy));
  }
  state.counters["refused_per_record"] =
      benchmark::Counter(static_cast<double>(refused), benchmark::Counter::kAvgIterations);
  if (state.thread_index() == 0) {
    log->Flush();
    log.reset();
  }
}
BENCHMARK(BM_AuditSubmit)->Threads(1)->Threads(2)->UseRealTime();

void BM_MetricsRecordRequest(benchmark::State& state) {
  static Metrics metrics;
  for (auto _ : state) metrics.RecordRequest("devin", "allowed", 200, 0.0123);
}
BENCHMARK(BM_MetricsRecordRequest)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace tollgate::gateway

BENCHMARK_MAIN();
