// The request pipeline (DESIGN.md, "The request pipeline"): parse -> route -> normalise ->
// authenticate -> authorise -> limit -> forward -> respond -> audit. Each stage is a small
// function that either continues or ends the request with a local reply; every ending goes
// through Finish(), which writes exactly one audit record and one metrics sample.
//
// Admission comes first: a request reserves its audit record's place (AuditLog::Reserve) before
// anything else. When the audit queue has no free place (a stalled sink) the request is refused
// at once with 503 `audit_unavailable` and `Retry-After: 1`, forwarded nowhere, and counted in
// tollgate_audit_refused_total since it cannot be audited (`/_tollgate/health` still answers 200,
// unaudited). An admitted request always has room for its record.
//
// The pipeline never blocks a thread: the limiter and the upstream client call back on their
// own threads, and the response is sent from there; Finish queues the audit record into its
// reserved place without waiting, whatever the audit sink does. Thread-safe: the current
// Snapshot is swapped atomically, and each request keeps the one it started with.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/snapshot.h"
#include "policies/rate_limiter.h"
#include "upstream/upstream_client.h"

namespace tollgate::gateway {

// The gateway-made error envelope: {"error":{"code","reason","message","request_id"}}.
// The one place that builds it.
// A 429 adds the machine-readable fields a client backs off on: `bucket` and `retry_after_ms`.
struct RateLimitDetails {
  std::string_view bucket;
  int64_t retry_after_ms = 0;
};
HttpResponse ErrorResponse(int status, std::string_view reason, std::string_view message,
                           std::string_view request_id,
                           const RateLimitDetails* rate_limit = nullptr);

// A valid incoming X-Request-Id is kept: 1..128 visible ASCII characters.
bool IsValidRequestId(std::string_view id);
std::string NewRequestId();

struct PipelineDeps {
  policies::RateLimiter* limiter = nullptr;
  upstream::UpstreamClient* upstream = nullptr;
  AuditLog* audit = nullptr;
  Metrics* metrics = nullptr;
};

class Pipeline {
 public:
  explicit Pipeline(PipelineDeps deps);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void SetSnapshot(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> snapshot() const;

  // The front-end's RequestHandler.
  void Handle(std::shared_ptr<Exchange> exchange);

  // While draining (graceful shutdown), new requests get 503 `shutting_down`, still audited.
  void SetDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

  int64_t in_flight() const { return in_flight_.load(); }
  // Waits until no request is in flight or `timeout` passes; true if drained.
  bool Drain(std::chrono::milliseconds timeout);

  struct Context;  // one request's state, defined in pipeline.cpp

 private:
  // Answers a request that got no audit place: 503 audit_unavailable (health: 200), unaudited.
  void Refuse(const std::shared_ptr<Exchange>& exchange);
  void Route(const std::shared_ptr<Context>& ctx);
  void Internal(const std::shared_ptr<Context>& ctx, std::string_view path);
  void Limit(const std::shared_ptr<Context>& ctx);
  void Forward(const std::shared_ptr<Context>& ctx);
  void OnUpstreamResponse(const std::shared_ptr<Context>& ctx, upstream::UpstreamResponse response);
  // Ends the request with the error envelope. `audit_error`, when given, is what the audit
  // record says instead of `message` (details a caller should not see).
  void Fail(const std::shared_ptr<Context>& ctx, int status, std::string_view reason,
            std::string_view decision, std::string message, std::string audit_error = "");
  void Finish(const std::shared_ptr<Context>& ctx, HttpResponse response);

  PipelineDeps deps_;
  std::shared_ptr<const Snapshot> snapshot_;  // accessed with std::atomic_load/store
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::mutex drain_mu_;
  std::condition_variable drained_;
};

}  // namespace tollgate::gateway
