// Prometheus metrics (text exposition format 0.0.4), kept without a client library.
//
// Thread-safety: every Record* method and Render may be called from any thread, concurrently.
// Recording is cheap enough for the request path: a series (one label combination) is created
// once under an exclusive lock and found afterwards under a shared lock; its values are
// atomics, so requests never serialise on one mutex. Sums of durations are kept in whole
// nanoseconds so that concurrent additions are exact.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/caller_metrics.h"
#include "keys/run_time_keys.h"
#include "policies/rate_limiter.h"
#include "policies/redis_topology.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {
struct RequestHeaderDrops;  // upstream/headers.h
}  // namespace tollgate::upstream

namespace tollgate::gateway {

// Values owned by other components, read when /metrics is served.
struct MetricsSnapshot {
  int64_t in_flight = 0;
  int64_t audit_queue_depth = 0;
  uint64_t audit_written = 0;
  uint64_t audit_stream_errors = 0;
  const policies::LimiterStats* limiter = nullptr;  // may be null
  bool limiter_ready = false;
  std::string limiter_backend;                              // RateLimiter::Describe()
  const upstream::UpstreamClientStats* upstream = nullptr;  // may be null
  uint64_t upstream_in_flight = 0;
  int64_t open_streams = 0;          // answers being streamed to callers
  int64_t connections_open = 0;      // caller connections on the main listener
  uint64_t connections_refused = 0;  // closed on arrival over max_connections
  uint64_t audit_stream_dropped = 0;
  uint64_t audit_file_dropped = 0;  // records the audit file could not take (disk full...)
  int64_t audit_slots_used = 0;     // audit places taken (reserved, queued or being written)
  // Run-time keys; null without a `redis` section (then their series are left out).
  const keys::KeyStats* keys = nullptr;
  keys::KeyStateCounts key_counts;
  bool key_events_subscribed = false;
  // Usage counter flushes (issue 13): tollgate_usage_flush_total{result="ok|failed"}.
  uint64_t usage_flush_ok = 0;
  uint64_t usage_flush_failed = 0;
  // Where Redis commands go (issue 14): failovers, slot maps. Null without a `redis` section.
  const policies::RedisTopologyStats* redis_topology = nullptr;
};

class Metrics {
 public:
  // Upper bounds (seconds) of every latency histogram.
  static constexpr std::array<double, 14> kBuckets = {.001, .0025, .005, .01, .025, .05, .1,
                                                      .25,  .5,    1,    2.5, 5,    10,  30};

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One call per request the gateway ended; `status` is the status sent to the caller.
  void RecordRequest(std::string_view upstream, std::string_view decision, int status,
                     double latency_seconds);
  // One call per upstream response received (any status).
  void RecordUpstream(std::string_view upstream, int status, double seconds);
  // `kind`: "timeout", "connect", "too_large" (over max_response_bytes), "withheld" (an answer
  // the gateway cannot pass on: encoded, or partial on a redacted route), "secret_withheld" (a
  // stream cut before a secret value), "bad_header" (a control character in a response header:
  // refused), a stream's `ended_by`, or "other".
  void RecordUpstreamError(std::string_view upstream, std::string_view kind);
  // `result`: "allowed", "limited" or "would_limit".
  void RecordLimit(std::string_view bucket, std::string_view result);
  void RecordUpstreamCooldown(std::string_view upstream);
  // Issue 14: a request made to wait `seconds` for tokens reserved in `bucket` (the bucket that
  // made it wait longest).
  void RecordWait(std::string_view bucket, double seconds);
  // The requests waiting now: +1 when a wait starts, -1 when it ends.
  void AddWaiting(int64_t delta) { waiting_.fetch_add(delta, std::memory_order_relaxed); }
  // `count` upstream secret values replaced by `[redacted]` in an answer of `upstream`.
  void RecordSecretsRedacted(std::string_view upstream, uint64_t count);
  // Caller headers a request to `upstream` did not carry, by reason (never by header name: the
  // caller chooses those).
  void RecordRequestHeadersDropped(std::string_view upstream,
                                   const upstream::RequestHeaderDrops& drops);
  // A request refused at admission (503 audit_unavailable): no audit place was free, so it has
  // no audit record and is counted here instead.
  void RecordAuditRefused();
  // A 2xx answer on a record_owner route whose owner was not recorded (issue 12).
  void RecordOwnershipFailure();
  // A reload attempt; a success also sets the last-success timestamp.
  void RecordReload(bool ok);
  // Sets the last-success timestamp for the config loaded at start, without counting a reload.
  void MarkConfigLoaded();

  // Per-caller series (issue 13; off unless configured) and callers past a quota's warn_at
  // (issue 12): gateway/caller_metrics.h.
  CallerMetrics& callers() { return callers_; }
  // A request of `caller` got past `quota`'s warn_at (now, by the system clock).
  void RecordQuotaWarning(std::string_view limit, std::string_view caller,
                          const config::Quota& quota);

  std::string Render(const MetricsSnapshot& gauges) const;

  // "2xx" ... "5xx"; "other" for anything outside 100..599 (e.g. 0 when nothing was sent).
  static std::string_view CodeClass(int status);

 private:
  struct Histogram;
  template <typename Series>
  class Family;

  std::unique_ptr<Family<std::atomic<uint64_t>>> requests_;
  std::unique_ptr<Family<Histogram>> request_duration_;
  std::unique_ptr<Family<Histogram>> upstream_duration_;
  std::unique_ptr<Family<std::atomic<uint64_t>>> upstream_responses_;
  std::unique_ptr<Family<std::atomic<uint64_t>>> upstream_errors_;
  std::unique_ptr<Family<std::atomic<uint64_t>>> limit_decisions_;
  std::unique_ptr<Family<std::atomic<uint64_t>>> cooldowns_;
  std::unique_ptr<Family<Histogram>> waits_;
  std::atomic<int64_t> waiting_{0};
  std::unique_ptr<Family<std::atomic<uint64_t>>> secrets_redacted_;
  std::unique_ptr<Family<std::atomic<uint64_t>>> request_headers_dropped_;
  std::atomic<uint64_t> audit_refused_{0};
  std::atomic<uint64_t> ownership_failures_{0};
  std::atomic<uint64_t> reload_success_{0};
  std::atomic<uint64_t> reload_failure_{0};
  std::atomic<int64_t> last_reload_success_ms_{0};  // unix time in ms, 0 = never
  CallerMetrics callers_;
  QuotaWarnings quota_warnings_;
};

}  // namespace tollgate::gateway
