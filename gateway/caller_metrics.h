// Per-caller Prometheus series (issue 13) and the count of callers past a quota's warn_at
// (issue 12), rendered by Metrics::Render.
//
// Per-caller series are off unless the config's `"metrics": {"per_caller": true}` turns them on
// (read once at start: a reload does not change them). Each caller is a label value, so each
// multiplies the series a scraper stores: the first `max_callers` distinct callers get their
// own, every later one is counted as caller="other" (tollgate_caller_folded_requests_total
// says how often). Requests without a caller are caller="-" (never the key they sent).
//
// Thread-safety: every method may be called from any thread. Recording allocates nothing once a
// caller's series exist: the caller is found under a shared lock, the series under another,
// and the values are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "policies/rate_limiter.h"

namespace tollgate::gateway {

class CallerMetrics {
 public:
  static constexpr std::string_view kOther = "other";
  static constexpr std::string_view kNoCaller = "-";

  CallerMetrics();
  ~CallerMetrics();
  CallerMetrics(const CallerMetrics&) = delete;
  CallerMetrics& operator=(const CallerMetrics&) = delete;

  // Before any request is recorded (at start). Off: Record does nothing, Render writes nothing.
  void Configure(const config::MetricsConfig& config);
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

  // One call per request the gateway ended (Pipeline::Done). `caller` empty = unauthenticated.
  // `buckets`/`limit`: what the limiter was asked and answered (empty when it was not asked):
  // an allowed request adds each non-shadow bucket's cost to tollgate_caller_cost_total.
  void Record(std::string_view caller, std::string_view upstream, std::string_view decision,
              const std::vector<policies::BucketSpec>& buckets,
              const policies::LimitDecision& limit);

  // The label value `caller` is counted under: itself while it is one of the first max_callers
  // seen (or "-" for none), else "other". The view stays valid for the object's life.
  std::string_view Label(std::string_view caller);

  void Render(std::string* out) const;

 private:
  class Counters;

  std::atomic<bool> enabled_{false};
  size_t max_callers_ = 200;
  mutable std::shared_mutex callers_mu_;
  std::set<std::string, std::less<>> callers_;  // the callers with their own series; only grows
  std::atomic<uint64_t> folded_{0};
  std::unique_ptr<Counters> requests_;  // caller, upstream, decision
  std::unique_ptr<Counters> cost_;      // caller, limit
};

// tollgate_quota_warning_callers{limit}: the distinct callers this replica saw past a quota's
// warn_at in the quota's current window (0 once the window it counted has ended).
class QuotaWarnings {
 public:
  // `now_s`: Unix seconds (tests pass any instant).
  void Record(std::string_view limit, std::string_view caller, const config::Quota& quota,
              int64_t now_s);
  void Render(std::string* out, int64_t now_s) const;

 private:
  struct Window {
    int64_t start_s = 0;
    int64_t end_s = 0;
    std::set<std::string, std::less<>> callers;
  };
  mutable std::mutex mu_;
  std::map<std::string, Window, std::less<>> limits_;
};

}  // namespace tollgate::gateway
