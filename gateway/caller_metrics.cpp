#include "gateway/caller_metrics.h"

#include <chrono>

#include "gateway/metrics.h"
#include "policies/quota_window.h"

namespace tollgate::gateway {
namespace {

void AppendLabel(std::string* out, std::string_view name, std::string_view value, bool first) {
  if (!first) out->push_back(',');
  out->append(name).append("=\"");
  for (char c : value) {
    if (c == '\\' || c == '"') out->push_back('\\');
    if (c == '\n') {
      out->append("\\n");
      continue;
    }
    out->push_back(c);
  }
  out->push_back('"');
}

void AppendHeader(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

// Counters keyed by two or three label values; never removed, so a found counter stays valid.
class CallerMetrics::Counters {
 public:
  explicit Counters(std::vector<std::string> names) : names_(std::move(names)) {}

  std::atomic<uint64_t>& Get(std::initializer_list<std::string_view> values) {
    // Built in a per-thread buffer: a lookup allocates nothing once the series exists.
    thread_local std::string key;
    key.clear();
    for (std::string_view v : values) key.append(v).push_back('\0');
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      auto it = series_.find(key);
      if (it != series_.end()) return it->second->value;
    }
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto& entry = series_[key];
    if (!entry) {
      entry = std::make_unique<Entry>();
      entry->values.assign(values.begin(), values.end());
    }
    return entry->value;
  }

  void Render(std::string* out, std::string_view name) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [key, entry] : series_) {
      out->append(name).push_back('{');
      for (size_t i = 0; i < names_.size(); ++i) {
        AppendLabel(out, names_[i], entry->values[i], i == 0);
      }
      out->append("} ")
          .append(std::to_string(entry->value.load(std::memory_order_relaxed)))
          .append("\n");
    }
  }

 private:
  struct Entry {
    std::vector<std::string> values;
    std::atomic<uint64_t> value{0};
  };
  const std::vector<std::string> names_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> series_;
};

CallerMetrics::CallerMetrics()
    : requests_(
          std::make_unique<Counters>(std::vector<std::string>{"caller", "upstream", "decision"})),
      cost_(std::make_unique<Counters>(std::vector<std::string>{"caller", "limit"})) {}

CallerMetrics::~CallerMetrics() = default;

void CallerMetrics::Configure(const config::MetricsConfig& config) {
  std::unique_lock<std::shared_mutex> lock(callers_mu_);
  max_callers_ = config.max_callers > 0 ? static_cast<size_t>(config.max_callers) : 0;
  enabled_.store(config.per_caller, std::memory_order_relaxed);
}

std::string_view CallerMetrics::Label(std::string_view caller) {
  if (caller.empty()) return kNoCaller;
  {
    std::shared_lock<std::shared_mutex> lock(callers_mu_);
    auto it = callers_.find(caller);
    if (it != callers_.end()) return *it;
    // Full: the set only grows, so it stays full; a later caller never takes the write lock.
    if (callers_.size() >= max_callers_) {
      folded_.fetch_add(1, std::memory_order_relaxed);
      return kOther;
    }
  }
  std::unique_lock<std::shared_mutex> lock(callers_mu_);
  auto it = callers_.find(caller);
  if (it != callers_.end()) return *it;
  if (callers_.size() >= max_callers_) {
    folded_.fetch_add(1, std::memory_order_relaxed);
    return kOther;
  }
  return *callers_.emplace(caller).first;
}

void CallerMetrics::Record(std::string_view caller, std::string_view upstream,
                           std::string_view decision,
                           const std::vector<policies::BucketSpec>& buckets,
                           const policies::LimitDecision& limit) {
  if (!enabled()) return;
  std::string_view label = Label(caller);
  requests_->Get({label, upstream, decision}).fetch_add(1, std::memory_order_relaxed);
  // The limiter answers one level per bucket asked; none = it was not asked.
  if (limit.outcome != policies::LimitDecision::Outcome::kAllowed ||
      limit.levels.size() != buckets.size()) {
    return;
  }
  for (const policies::BucketSpec& b : buckets) {
    if (!b.shadow) cost_->Get({label, b.name}).fetch_add(b.cost, std::memory_order_relaxed);
  }
}

void CallerMetrics::Render(std::string* out) const {
  if (!enabled()) return;
  AppendHeader(out, "tollgate_caller_requests_total", "counter",
               "Requests ended by the gateway, by caller (the first metrics.max_callers callers; "
               "later ones as \"other\", none as \"-\"), upstream and decision.");
  requests_->Render(out, "tollgate_caller_requests_total");
  AppendHeader(out, "tollgate_caller_cost_total", "counter",
               "What allowed requests took from each limit (tokens, or quota units such as "
               "ACUs), by caller and limit.");
  cost_->Render(out, "tollgate_caller_cost_total");
  size_t callers = 0;
  {
    std::shared_lock<std::shared_mutex> lock(callers_mu_);
    callers = callers_.size();
  }
  AppendHeader(out, "tollgate_caller_series_callers", "gauge",
               "Callers with their own per-caller series (at most metrics.max_callers).");
  out->append("tollgate_caller_series_callers ").append(std::to_string(callers)).append("\n");
  AppendHeader(out, "tollgate_caller_folded_requests_total", "counter",
               "Requests of callers past metrics.max_callers, counted as caller=\"other\".");
  out->append("tollgate_caller_folded_requests_total ")
      .append(std::to_string(folded_.load(std::memory_order_relaxed)))
      .append("\n");
}

void QuotaWarnings::Record(std::string_view limit, std::string_view caller,
                           const config::Quota& quota, int64_t now_s) {
  policies::QuotaWindow window = policies::QuotaWindowAt(quota.period, quota.reset_hour_utc, now_s);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = limits_.find(limit);
  if (it == limits_.end()) it = limits_.emplace(std::string(limit), Window{}).first;
  Window& w = it->second;
  if (w.start_s != window.start_s) {  // a new window (or the first): count afresh
    w.start_s = window.start_s;
    w.end_s = window.end_s;
    w.callers.clear();
  }
  if (w.callers.find(caller) == w.callers.end()) w.callers.emplace(caller);
}

void QuotaWarnings::Render(std::string* out, int64_t now_s) const {
  AppendHeader(out, "tollgate_quota_warning_callers", "gauge",
               "Distinct callers this replica saw past a quota's warn_at in the quota's current "
               "window, by limit.");
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [limit, w] : limits_) {
    out->append("tollgate_quota_warning_callers{");
    AppendLabel(out, "limit", limit, true);
    size_t n = now_s >= w.start_s && now_s < w.end_s ? w.callers.size() : 0;
    out->append("} ").append(std::to_string(n)).append("\n");
  }
}

void Metrics::RecordQuotaWarning(std::string_view limit, std::string_view caller,
                                 const config::Quota& quota) {
  quota_warnings_.Record(limit, caller, quota,
                         std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());
}

}  // namespace tollgate::gateway
