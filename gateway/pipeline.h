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
// Threads: a request runs on the loop of the reactor thread that owns its connection, from
// Handle to its last byte: the limiter answers on that loop, and the upstream transfer is made by
// that loop's StreamClient (one per loop, made on first use). Nothing waits: Finish queues the
// audit record into its reserved place whatever the audit sink does. A connection-less exchange
// (tests) runs on a loop thread the pipeline keeps for them. The current Snapshot is swapped
// atomically, and each request keeps the one it started with.
//
// Answers stream: the caller gets the upstream's status and headers when they arrive, then the
// body as it arrives, with backpressure both ways (a caller that reads slowly pauses the
// transfer). Routes with redactions buffer their answer (capped by max_response_bytes), since
// the redactor needs the whole JSON body.
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
#include "gateway/waiting_callers.h"
#include "keys/run_time_keys.h"
#include "loop/loop.h"
#include "policies/ownership.h"
#include "policies/rate_limiter.h"
#include "upstream/stream_client.h"
#include "upstream/upstream_client.h"
#include "usage/usage_counts.h"

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
  AuditLog* audit = nullptr;
  Metrics* metrics = nullptr;
  // For each loop's StreamClient. max_response_bytes caps the buffered (redacted) answers.
  upstream::UpstreamClientOptions upstream_options;
  upstream::UpstreamClientStats* upstream_stats = nullptr;
  // Run-time caller keys (null without a `redis` section: then only config keys exist).
  keys::RunTimeKeys* keys = nullptr;
  // Session ownership (issue 12): Redis, or an in-process map without a `redis` section. Null:
  // a rule that checks or records ownership answers 503 redis_unavailable / records nothing.
  policies::OwnershipStore* ownership = nullptr;
  // Usage counters (issue 13): every ended request is recorded (null: not counted).
  usage::UsageRecorder* usage = nullptr;
};

class Pipeline {
 public:
  explicit Pipeline(PipelineDeps deps);
  ~Pipeline();
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
  // Answers being streamed to callers now, and upstream transfers in flight.
  int64_t open_streams() const { return open_streams_.load(); }
  int64_t upstream_in_flight() const { return upstream_in_flight_.load(); }
  // Waits until no request is in flight or `timeout` passes; true if drained.
  bool Drain(std::chrono::milliseconds timeout);
  // Past the drain timeout, on each loop: every upstream transfer still running there is ended.
  // A caller still waiting for its status gets 503 `shutting_down`; a stream is cut short. Both
  // are audited `ended_by: draining`.
  void EndTransfersOn(loop::Loop& loop);

  struct Context;  // one request's state, defined in pipeline.cpp

 private:
  // Answers a request that got no audit place: 503 audit_unavailable (health: 200), unaudited.
  void Refuse(const std::shared_ptr<Exchange>& exchange);
  void Route(const std::shared_ptr<Context>& ctx);
  void Internal(const std::shared_ptr<Context>& ctx, std::string_view path);
  // 4. authenticate, then `next`: a config key at once, a run-time key from this replica's cache
  // or, later on the same loop, from Redis. Ends the request itself when the key is refused.
  using Stage = void (Pipeline::*)(const std::shared_ptr<Context>& ctx);
  void Authenticate(const std::shared_ptr<Context>& ctx, Stage next);
  void KeyAuthenticated(const std::shared_ptr<Context>& ctx, const keys::KeyAuth& key, Stage next);
  void Authenticated(const std::shared_ptr<Context>& ctx, const AuthResult& auth, Stage next);
  void Authorise(const std::shared_ptr<Context>& ctx);
  // Issue 12: each value in `values` (from index `next`) must be owned by the caller or its
  // owner_group, then Owned; else 403 (not owned) or 503 (the store failed).
  void CheckOwners(const std::shared_ptr<Context>& ctx, std::vector<std::string> values,
                   size_t next);
  // A 2xx JSON answer on a record_owner route: its value is recorded, then FinishBuffered.
  void RecordOwner(const std::shared_ptr<Context>& ctx);
  void Whoami(const std::shared_ptr<Context>& ctx);
  // Past authorisation and ownership: ApplyBody when the rule has body rules, else Limit.
  void Owned(const std::shared_ptr<Context>& ctx);
  // A rule's body rules and body cost (issue 12): after the owner checks, before Limit.
  void ApplyBody(const std::shared_ptr<Context>& ctx);
  void Limit(const std::shared_ptr<Context>& ctx);
  // Issue 14: the limiter reserved the request's tokens ahead: Forward once the wait is over, by
  // a timer on the request's loop (no thread waits). A caller that leaves meanwhile is audited
  // 499 client_closed (its tokens stay spent); past the drain timeout, 503 shutting_down.
  void WaitThenForward(const std::shared_ptr<Context>& ctx);
  void EndWait(Context& ctx);
  void Forward(const std::shared_ptr<Context>& ctx);
  // The upstream transfer's events (Context is its StreamSink).
  void OnUpstreamHeaders(Context& ctx, int status, upstream::HeaderList headers);
  bool OnUpstreamData(Context& ctx, const char* data, size_t len);
  void OnUpstreamEnd(Context& ctx, const upstream::StreamEnd& end);
  void OnUpstreamFailure(const std::shared_ptr<Context>& ctx, const upstream::StreamEnd& end);
  void FinishBuffered(const std::shared_ptr<Context>& ctx);
  // The caller's body could not be received whole (bad framing, over max_body_bytes).
  void FailBody(const std::shared_ptr<Context>& ctx, int status);
  // Ends a streamed answer: one audit record and metrics sample, like Finish.
  void FinishStream(const std::shared_ptr<Context>& ctx, std::string_view ended_by);
  // Runs `fn` on the request's loop (at once when already there).
  void OnLoop(const std::shared_ptr<Context>& ctx, std::function<void()> fn);
  // Ends the request with the error envelope. `audit_error`, when given, is what the audit
  // record says instead of `message` (details a caller should not see).
  void Fail(const std::shared_ptr<Context>& ctx, int status, std::string_view reason,
            std::string_view decision, std::string message, std::string audit_error = "");
  void Finish(const std::shared_ptr<Context>& ctx, HttpResponse response);
  void Done(const std::shared_ptr<Context>& ctx);

  PipelineDeps deps_;
  std::atomic<int64_t> open_streams_{0};
  std::atomic<int64_t> upstream_in_flight_{0};
  // Runs the connection-less exchanges (tests); made on first use.
  std::mutex fallback_mu_;
  std::unique_ptr<loop::LoopThread> fallback_loop_;
  std::shared_ptr<const Snapshot> snapshot_;  // accessed with std::atomic_load/store
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  WaitingCallers waiting_;  // max_waiting per caller and limit
  std::mutex drain_mu_;
  std::condition_variable drained_;
};

}  // namespace tollgate::gateway
