#include "gateway/metrics.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <initializer_list>
#include <mutex>

#include "upstream/headers.h"

#ifndef TOLLGATE_VERSION
#define TOLLGATE_VERSION "unknown"
#endif

namespace tollgate::gateway {
namespace {

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

void AppendEscapedLabelValue(std::string_view value, std::string* out) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

// `{a="x",b="y"}` (or nothing for no labels), with an optional extra label appended last.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(names[i]).append("=\"");
    AppendEscapedLabelValue(values[i], &out);
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out.push_back(',');
    out.append(extra_name).append("=\"");
    AppendEscapedLabelValue(extra_value, &out);
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

void AppendHeader(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void AppendSample(std::string* out, std::string_view name, const std::string& labels,
                  const std::string& value) {
  out->append(name).append(labels).append(" ").append(value).append("\n");
}

void AppendScalar(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help, const std::string& value, const std::string& labels = "") {
  AppendHeader(out, name, type, help);
  AppendSample(out, name, labels, value);
}

uint64_t Load(const std::atomic<uint64_t>* counter) {
  return counter == nullptr ? 0 : counter->load(std::memory_order_relaxed);
}

}  // namespace

struct Metrics::Histogram {
  // Per-bucket (not cumulative) counts; the last one is +Inf. The count is their sum, so a
  // render racing with an observation still shows `+Inf` == `_count`.
  std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};
  std::atomic<uint64_t> sum_ns{0};

  void Observe(double seconds) {
    size_t i = 0;
    while (i < kBuckets.size() && seconds > kBuckets[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    if (seconds > 0 && std::isfinite(seconds)) {
      sum_ns.fetch_add(static_cast<uint64_t>(std::llround(seconds * 1e9)),
                       std::memory_order_relaxed);
    }
  }
};

// One metric name and its series, keyed by label values. Series are never removed, so a
// reference handed out stays valid for the life of the family.
template <typename Series>
class Metrics::Family {
 public:
  explicit Family(std::vector<std::string> label_names) : label_names_(std::move(label_names)) {}

  Series& Get(std::initializer_list<std::string_view> values) {
    // The key is built in a per-thread buffer so that a lookup allocates nothing once warm.
    thread_local std::string key;
    key.clear();
    for (std::string_view v : values) key.append(v).push_back('\0');
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      const auto it = series_.find(key);
      if (it != series_.end()) return it->second->series;
    }
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto& entry = series_[key];
    if (!entry) {
      entry = std::make_unique<Entry>();
      entry->values.assign(values.begin(), values.end());
    }
    return entry->series;
  }

  // Calls fn(label_values, series) for every series, in label order.
  template <typename Fn>
  void ForEach(Fn fn) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [key, entry] : series_) fn(entry->values, entry->series);
  }

  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  struct Entry {
    std::vector<std::string> values;
    Series series{};
  };
  const std::vector<std::string> label_names_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> series_;
};

namespace {

template <typename FamilyT>
void RenderCounters(std::string* out, std::string_view name, std::string_view help,
                    const FamilyT& family) {
  AppendHeader(out, name, "counter", help);
  family.ForEach([&](const std::vector<std::string>& values, const std::atomic<uint64_t>& c) {
    AppendSample(out, name, LabelSet(family.label_names(), values),
                 std::to_string(c.load(std::memory_order_relaxed)));
  });
}

template <typename FamilyT>
void RenderHistograms(std::string* out, std::string_view name, std::string_view help,
                      const FamilyT& family) {
  AppendHeader(out, name, "histogram", help);
  const std::string bucket_name = std::string(name) + "_bucket";
  family.ForEach([&](const std::vector<std::string>& values, const auto& h) {
    const auto& names = family.label_names();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i].load(std::memory_order_relaxed);
      const std::string le =
          i < Metrics::kBuckets.size() ? FormatDouble(Metrics::kBuckets[i]) : std::string("+Inf");
      AppendSample(out, bucket_name, LabelSet(names, values, "le", le), std::to_string(cumulative));
    }
    const std::string labels = LabelSet(names, values);
    AppendSample(out, std::string(name) + "_sum", labels,
                 FormatDouble(static_cast<double>(h.sum_ns.load(std::memory_order_relaxed)) / 1e9));
    AppendSample(out, std::string(name) + "_count", labels, std::to_string(cumulative));
  });
}

}  // namespace

Metrics::Metrics()
    : requests_(std::make_unique<Family<std::atomic<uint64_t>>>(
          std::vector<std::string>{"upstream", "decision", "code_class"})),
      request_duration_(std::make_unique<Family<Histogram>>(std::vector<std::string>{"upstream"})),
      upstream_duration_(std::make_unique<Family<Histogram>>(std::vector<std::string>{"upstream"})),
      upstream_responses_(std::make_unique<Family<std::atomic<uint64_t>>>(
          std::vector<std::string>{"upstream", "code_class"})),
      upstream_errors_(std::make_unique<Family<std::atomic<uint64_t>>>(
          std::vector<std::string>{"upstream", "kind"})),
      limit_decisions_(std::make_unique<Family<std::atomic<uint64_t>>>(
          std::vector<std::string>{"bucket", "result"})),
      cooldowns_(
          std::make_unique<Family<std::atomic<uint64_t>>>(std::vector<std::string>{"upstream"})),
      waits_(std::make_unique<Family<Histogram>>(std::vector<std::string>{"bucket"})),
      secrets_redacted_(
          std::make_unique<Family<std::atomic<uint64_t>>>(std::vector<std::string>{"upstream"})),
      request_headers_dropped_(std::make_unique<Family<std::atomic<uint64_t>>>(
          std::vector<std::string>{"upstream", "reason"})) {}

Metrics::~Metrics() = default;

std::string_view Metrics::CodeClass(int status) {
  static constexpr std::string_view kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  if (status < 100 || status > 599) return "other";
  return kClasses[status / 100 - 1];
}

void Metrics::RecordRequest(std::string_view upstream, std::string_view decision, int status,
                            double latency_seconds) {
  requests_->Get({upstream, decision, CodeClass(status)}).fetch_add(1, std::memory_order_relaxed);
  request_duration_->Get({upstream}).Observe(latency_seconds);
}

void Metrics::RecordUpstream(std::string_view upstream, int status, double seconds) {
  upstream_responses_->Get({upstream, CodeClass(status)}).fetch_add(1, std::memory_order_relaxed);
  upstream_duration_->Get({upstream}).Observe(seconds);
}

void Metrics::RecordUpstreamError(std::string_view upstream, std::string_view kind) {
  upstream_errors_->Get({upstream, kind}).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordLimit(std::string_view bucket, std::string_view result) {
  limit_decisions_->Get({bucket, result}).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordWait(std::string_view bucket, double seconds) {
  waits_->Get({bucket}).Observe(seconds);
}

void Metrics::RecordUpstreamCooldown(std::string_view upstream) {
  cooldowns_->Get({upstream}).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordSecretsRedacted(std::string_view upstream, uint64_t count) {
  secrets_redacted_->Get({upstream}).fetch_add(count, std::memory_order_relaxed);
}

void Metrics::RecordRequestHeadersDropped(std::string_view upstream,
                                          const upstream::RequestHeaderDrops& drops) {
  const std::pair<std::string_view, uint64_t> counts[] = {
      {"not_allowed", drops.not_allowed}, {"underscore", drops.underscore}, {"range", drops.range}};
  for (const auto& [reason, n] : counts) {
    if (n > 0)
      request_headers_dropped_->Get({upstream, reason}).fetch_add(n, std::memory_order_relaxed);
  }
}

void Metrics::RecordAuditRefused() { audit_refused_.fetch_add(1, std::memory_order_relaxed); }
void Metrics::RecordOwnershipFailure() {
  ownership_failures_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordReload(bool ok) {
  (ok ? reload_success_ : reload_failure_).fetch_add(1, std::memory_order_relaxed);
  if (ok) MarkConfigLoaded();
}

void Metrics::MarkConfigLoaded() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  last_reload_success_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(now).count(),
                                std::memory_order_relaxed);
}

std::string Metrics::Render(const MetricsSnapshot& g) const {
  std::string out;
  out.reserve(16384);
  RenderCounters(&out, "tollgate_requests_total",
                 "Requests ended by the gateway, by upstream, decision and status class.",
                 *requests_);
  RenderHistograms(&out, "tollgate_request_duration_seconds",
                   "Time from request received to response sent.", *request_duration_);
  RenderHistograms(&out, "tollgate_upstream_duration_seconds",
                   "Time spent waiting for upstream responses.", *upstream_duration_);
  RenderCounters(&out, "tollgate_upstream_responses_total",
                 "Responses received from upstreams, by status class.", *upstream_responses_);
  RenderCounters(&out, "tollgate_upstream_errors_total",
                 "Upstream calls that got no usable response (timeout, connect, too_large, "
                 "bad_header, other).",
                 *upstream_errors_);
  RenderCounters(&out, "tollgate_ratelimit_decisions_total",
                 "Token-bucket decisions, by bucket and result.", *limit_decisions_);
  quota_warnings_.Render(&out, std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
  callers_.Render(&out);
  RenderHistograms(&out, "tollgate_ratelimit_wait_seconds",
                   "How long requests waited for reserved tokens (waiting ones only), by the "
                   "bucket that made them wait longest.",
                   *waits_);
  AppendScalar(&out, "tollgate_ratelimit_waiting", "gauge",
               "Requests waiting for reserved tokens now.",
               std::to_string(waiting_.load(std::memory_order_relaxed)));
  RenderCounters(&out, "tollgate_upstream_cooldowns_total",
                 "Cooldowns started because an upstream answered 429.", *cooldowns_);
  RenderCounters(&out, "tollgate_upstream_secrets_redacted_total",
                 "Upstream secret values replaced by [redacted] in answers to callers.",
                 *secrets_redacted_);
  RenderCounters(&out, "tollgate_request_headers_dropped_total",
                 "Caller request headers not forwarded to the upstream, by reason: not_allowed "
                 "(not on the allowlist or the upstream's forward_headers), underscore (a name "
                 "with '_'), range (Range/If-Range on a route with redactions). Fields the "
                 "gateway consumes (hop-by-hop, Host, Content-Length, Authorization, "
                 "X-Request-Id) are not counted.",
                 *request_headers_dropped_);

  AppendHeader(&out, "tollgate_config_reloads_total", "counter", "Config reload attempts.");
  AppendSample(&out, "tollgate_config_reloads_total", "{result=\"success\"}",
               std::to_string(reload_success_.load(std::memory_order_relaxed)));
  AppendSample(&out, "tollgate_config_reloads_total", "{result=\"failure\"}",
               std::to_string(reload_failure_.load(std::memory_order_relaxed)));
  AppendScalar(&out, "tollgate_config_last_reload_success_timestamp_seconds", "gauge",
               "Unix time of the last successful config load (0 = never).",
               FormatDouble(static_cast<double>(last_reload_success_ms_.load()) / 1000.0));

  AppendHeader(&out, "tollgate_usage_flush_total", "counter",
               "Usage counter batches flushed to their store, by result.");
  AppendSample(&out, "tollgate_usage_flush_total", "{result=\"ok\"}",
               std::to_string(g.usage_flush_ok));
  AppendSample(&out, "tollgate_usage_flush_total", "{result=\"failed\"}",
               std::to_string(g.usage_flush_failed));

  AppendScalar(&out, "tollgate_in_flight_requests", "gauge", "Requests being handled.",
               std::to_string(g.in_flight));
  AppendScalar(&out, "tollgate_audit_queue_depth", "gauge", "Audit records waiting for the writer.",
               std::to_string(g.audit_queue_depth));
  AppendScalar(&out, "tollgate_audit_records_total", "counter", "Audit records written.",
               std::to_string(g.audit_written));
  AppendScalar(&out, "tollgate_audit_stream_errors_total", "counter",
               "Failed writes to the audit Redis stream.", std::to_string(g.audit_stream_errors));
  AppendScalar(&out, "tollgate_audit_stream_dropped_total", "counter",
               "Audit records given up on for the Redis stream (the file has them).",
               std::to_string(g.audit_stream_dropped));
  AppendScalar(&out, "tollgate_audit_file_dropped_total", "counter",
               "Audit records the audit file could not take (disk full, file gone); alert on it.",
               std::to_string(g.audit_file_dropped));
  AppendScalar(&out, "tollgate_audit_slots_used", "gauge",
               "Audit queue places taken: records queued or being written, and places reserved "
               "by calls in flight. At audit.queue_capacity new requests are refused.",
               std::to_string(g.audit_slots_used));
  AppendScalar(&out, "tollgate_audit_refused_total", "counter",
               "Requests refused with 503 audit_unavailable because the audit queue had no free "
               "place (a stalled audit sink); they have no audit record.",
               std::to_string(audit_refused_.load(std::memory_order_relaxed)));
  AppendScalar(&out, "tollgate_ownership_record_failures_total", "counter",
               "2xx answers on record_owner routes whose owner was not recorded (the store "
               "failed, or the answer lacked the value); the answers went out regardless.",
               std::to_string(ownership_failures_.load(std::memory_order_relaxed)));

  const policies::LimiterStats* l = g.limiter;
  AppendScalar(&out, "tollgate_limiter_ready", "gauge",
               "1 when the rate limiter can decide (Redis reachable or fallback active).",
               g.limiter_ready ? "1" : "0", LabelSet({"backend"}, {g.limiter_backend}));
  AppendScalar(&out, "tollgate_redis_errors_total", "counter",
               "Failed rate-limiter calls to Redis.",
               std::to_string(Load(l ? &l->redis_errors : nullptr)));
  AppendScalar(&out, "tollgate_ratelimit_fallbacks_total", "counter",
               "Rate-limit decisions made locally because Redis failed.",
               std::to_string(Load(l ? &l->fallbacks : nullptr)));
  AppendScalar(&out, "tollgate_redis_breaker_skips_total", "counter",
               "Rate-limit decisions that skipped Redis while its circuit breaker was open.",
               std::to_string(Load(l ? &l->breaker_skips : nullptr)));
  AppendScalar(
      &out, "tollgate_redis_breaker_backoff_seconds", "gauge",
      "How long the open Redis circuit breaker skips Redis before its next probe (0: closed).",
      FormatDouble(static_cast<double>(l ? l->breaker_backoff_ms.load() : 0) / 1000.0));
  AppendScalar(&out, "tollgate_redis_script_reloads_total", "counter",
               "Rate-limit scripts reloaded after NOSCRIPT.",
               std::to_string(Load(l ? &l->script_reloads : nullptr)));
  if (const policies::RedisTopologyStats* t = g.redis_topology) {  // issue 14
    AppendScalar(&out, "tollgate_redis_primary_switches_total", "counter",
                 "Times the Redis primary named by the sentinels changed (failovers followed).",
                 std::to_string(Load(&t->primary_switches)));
    AppendScalar(&out, "tollgate_redis_resolve_failures_total", "counter",
                 "Resolves that found no primary (no sentinel answered, or the server named was "
                 "not a master) or no slot map (no cluster node answered CLUSTER SLOTS).",
                 std::to_string(Load(&t->resolve_failures)));
    AppendScalar(&out, "tollgate_redis_slot_map_refreshes_total", "counter",
                 "Redis Cluster slot maps read (CLUSTER SLOTS) that changed where a slot goes.",
                 std::to_string(Load(&t->slot_map_refreshes)));
    AppendHeader(&out, "tollgate_redis_cluster_redirects_total", "counter",
                 "Redis Cluster redirects, by kind: moved (the slot map was updated), ask (a "
                 "slot in migration; the command was sent to the other node once).");
    AppendSample(&out, "tollgate_redis_cluster_redirects_total", LabelSet({"kind"}, {"moved"}),
                 std::to_string(Load(&t->moved)));
    AppendSample(&out, "tollgate_redis_cluster_redirects_total", LabelSet({"kind"}, {"ask"}),
                 std::to_string(Load(&t->asked)));
  }

  if (const keys::KeyStats* k = g.keys) {
    AppendHeader(&out, "tollgate_keys", "gauge",
                 "Run-time caller keys in Redis, by state (counted every 15 s and after each "
                 "admin change; absent until the first count).");
    if (g.key_counts.known) {
      const std::pair<const char*, int64_t> states[] = {{"active", g.key_counts.active},
                                                        {"grace", g.key_counts.grace},
                                                        {"expired", g.key_counts.expired},
                                                        {"revoked", g.key_counts.revoked}};
      for (const auto& [state, n] : states) {
        AppendSample(&out, "tollgate_keys", LabelSet({"state"}, {state}), std::to_string(n));
      }
    }
    AppendHeader(&out, "tollgate_key_lookups_total", "counter",
                 "Run-time key lookups in Redis, by result: found, not_found, failed (Redis "
                 "down or an error), throttled (the lookup budget was spent: none made).");
    const std::pair<const char*, const std::atomic<uint64_t>*> lookups[] = {
        {"found", &k->lookups_found},
        {"not_found", &k->lookups_not_found},
        {"failed", &k->lookups_failed},
        {"throttled", &k->lookups_throttled}};
    for (const auto& [result, counter] : lookups) {
      AppendSample(&out, "tollgate_key_lookups_total", LabelSet({"result"}, {result}),
                   std::to_string(Load(counter)));
    }
    AppendHeader(&out, "tollgate_key_cache_total", "counter",
                 "Run-time key authentications by what this replica's cache knew: hit (a fresh "
                 "record), negative_hit (an id Redis recently did not know), miss (looked up).");
    const std::pair<const char*, const std::atomic<uint64_t>*> cache[] = {
        {"hit", &k->cache_hits},
        {"negative_hit", &k->cache_negative_hits},
        {"miss", &k->cache_misses}};
    for (const auto& [result, counter] : cache) {
      AppendSample(&out, "tollgate_key_cache_total", LabelSet({"result"}, {result}),
                   std::to_string(Load(counter)));
    }
    AppendScalar(&out, "tollgate_key_stale_used_total", "counter",
                 "Run-time keys accepted from the cache because Redis could not be asked (within "
                 "keys.cache_ttl_seconds of their last verification).",
                 std::to_string(Load(&k->stale_used)));
    AppendScalar(&out, "tollgate_key_events_subscribed", "gauge",
                 "1 while the key invalidation subscription (Redis pub/sub) is live.",
                 g.key_events_subscribed ? "1" : "0");
  }

  const upstream::UpstreamClientStats* u = g.upstream;
  AppendScalar(&out, "tollgate_upstream_in_flight", "gauge", "Upstream transfers in progress.",
               std::to_string(g.upstream_in_flight));
  AppendScalar(&out, "tollgate_open_streams", "gauge",
               "Answers being streamed to callers (status sent, body still flowing).",
               std::to_string(g.open_streams));
  AppendScalar(&out, "tollgate_connections_open", "gauge", "Caller connections open now.",
               std::to_string(g.connections_open));
  AppendScalar(&out, "tollgate_connections_refused_total", "counter",
               "Caller connections closed on arrival because max_connections were open.",
               std::to_string(g.connections_refused));
  AppendHeader(&out, "tollgate_upstream_transfers_total", "counter",
               "Upstream transfers by the HTTP client, by result.");
  const std::pair<const char*, const std::atomic<uint64_t>*> transfers[] = {
      {"started", u ? &u->started : nullptr},
      {"completed", u ? &u->completed : nullptr},
      {"timeout", u ? &u->timeouts : nullptr},
      {"connect_error", u ? &u->connect_errors : nullptr},
      {"other_error", u ? &u->other_errors : nullptr}};
  for (const auto& [result, counter] : transfers) {
    AppendSample(&out, "tollgate_upstream_transfers_total", LabelSet({"result"}, {result}),
                 std::to_string(Load(counter)));
  }

  AppendScalar(&out, "tollgate_build_info", "gauge", "The running tollgate version.", "1",
               LabelSet({"version"}, {TOLLGATE_VERSION}));
  return out;
}

}  // namespace tollgate::gateway
