#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gateway/metrics.h"
#include "gtest/gtest.h"

namespace tollgate::gateway {
namespace {

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Canonical key for a series: name{a="x",b="y"} with labels sorted by name, values unescaped.
std::string Key(const std::string& name, const Labels& labels) {
  std::string key = name;
  if (labels.empty()) return key;
  key += "{";
  for (const auto& [k, v] : labels) {
    if (key.back() != '{') key += ",";
    key += k + "=\"" + v + "\"";
  }
  return key + "}";
}

// A strict reader for the text exposition format 0.0.4, enough for what the gateway emits.
// Records a failure for every rule a sample line breaks.
class Exposition {
 public:
  explicit Exposition(const std::string& text) {
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) ParseLine(line);
    CheckHistograms();
  }

  double Value(const std::string& name, const Labels& labels = {}) const {
    const auto it = values_.find(Key(name, labels));
    if (it == values_.end()) {
      ADD_FAILURE() << "no sample " << Key(name, labels);
      return NAN;
    }
    return it->second;
  }
  bool Has(const std::string& name, const Labels& labels = {}) const {
    return values_.count(Key(name, labels)) > 0;
  }
  std::string Type(const std::string& family) const {
    const auto it = types_.find(family);
    return it == types_.end() ? "" : it->second;
  }

 private:
  void ParseLine(const std::string& line) {
    ASSERT_FALSE(line.empty()) << "empty line";
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helps_.insert(name).second) << "second HELP for " << name;
      EXPECT_EQ(types_.count(name), 0u) << "HELP after TYPE for " << name;
      return;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream in(line.substr(7));
      std::string name, type;
      in >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_TRUE(helps_.count(name)) << "TYPE without HELP for " << name;
      EXPECT_TRUE(types_.emplace(name, type).second) << "second TYPE for " << name;
      EXPECT_EQ(seen_families_.count(name), 0u) << "TYPE after samples of " << name;
      return;
    }
    ASSERT_NE(line[0], '#') << "unknown comment: " << line;
    Sample s = ParseSample(line);
    const std::string family = Family(s.name);
    EXPECT_TRUE(types_.count(family)) << "sample before TYPE: " << line;
    seen_families_.insert(family);
    if (Type(family) == "counter") {
      EXPECT_EQ(s.name.size() > 6 && s.name.substr(s.name.size() - 6) == "_total", true) << line;
    }
    EXPECT_TRUE(values_.emplace(Key(s.name, s.labels), s.value).second) << "duplicate: " << line;
    samples_.push_back(std::move(s));
  }

  Sample ParseSample(const std::string& line) {
    Sample s;
    size_t i = 0;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) ||
                               line[i] == '_' || line[i] == ':')) {
      ++i;
    }
    s.name = line.substr(0, i);
    EXPECT_FALSE(s.name.empty()) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find("=\"", i);
        EXPECT_NE(eq, std::string::npos) << line;
        if (eq == std::string::npos) return s;
        const std::string label = line.substr(i, eq - i);
        std::string value;
        for (i = eq + 2; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') {
            ++i;
            EXPECT_TRUE(line[i] == '\\' || line[i] == '"' || line[i] == 'n') << line;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
        }
        ++i;  // closing quote
        EXPECT_TRUE(s.labels.emplace(label, value).second) << line;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // closing brace
    }
    EXPECT_LT(i, line.size()) << line;
    EXPECT_EQ(line[i], ' ') << line;
    const std::string value = line.substr(i + 1);
    if (value == "+Inf") {
      s.value = INFINITY;
    } else {
      size_t used = 0;
      s.value = std::stod(value, &used);
      EXPECT_EQ(used, value.size()) << line;
    }
    return s;
  }

  std::string Family(const std::string& name) const {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = suffix;
      if (name.size() > sfx.size() &&
          name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
        const std::string base = name.substr(0, name.size() - sfx.size());
        if (Type(base) == "histogram") return base;
      }
    }
    return name;
  }

  void CheckHistograms() {
    // Buckets in order, cumulative, and +Inf equal to _count, for every series.
    std::map<std::string, std::vector<std::pair<double, double>>> buckets;
    for (const Sample& s : samples_) {
      if (s.name.size() < 7 || s.name.compare(s.name.size() - 7, 7, "_bucket") != 0) continue;
      Labels labels = s.labels;
      const auto le = labels.find("le");
      ASSERT_NE(le, labels.end());
      const double bound = le->second == "+Inf" ? INFINITY : std::stod(le->second);
      labels.erase(le);
      buckets[Key(s.name.substr(0, s.name.size() - 7), labels)].emplace_back(bound, s.value);
    }
    for (const auto& [series, list] : buckets) {
      for (size_t i = 1; i < list.size(); ++i) {
        EXPECT_LT(list[i - 1].first, list[i].first) << series;
        EXPECT_LE(list[i - 1].second, list[i].second) << series;
      }
      ASSERT_FALSE(list.empty());
      EXPECT_TRUE(std::isinf(list.back().first)) << series;
      const std::string name = series.substr(0, series.find('{'));
      const std::string labels = series.substr(name.size());
      const auto count = values_.find(name + "_count" + labels);
      ASSERT_NE(count, values_.end()) << series;
      EXPECT_EQ(count->second, list.back().second) << series;
      EXPECT_TRUE(values_.count(name + "_sum" + labels)) << series;
    }
    histogram_series_ = buckets.size();
  }

  std::set<std::string> helps_;
  std::map<std::string, std::string> types_;
  std::set<std::string> seen_families_;
  std::vector<Sample> samples_;
  std::map<std::string, double> values_;

 public:
  size_t histogram_series_ = 0;
};

TEST(Metrics, EmptyRenderIsValidAndHasEveryFamily) {
  Metrics metrics;
  const Exposition e(metrics.Render({}));
  for (const char* family :
       {"tollgate_requests_total", "tollgate_upstream_responses_total",
        "tollgate_upstream_errors_total", "tollgate_ratelimit_decisions_total",
        "tollgate_upstream_cooldowns_total", "tollgate_config_reloads_total",
        "tollgate_audit_records_total", "tollgate_redis_errors_total",
        "tollgate_ratelimit_fallbacks_total", "tollgate_redis_breaker_skips_total",
        "tollgate_audit_refused_total"}) {
    EXPECT_EQ(e.Type(family), "counter") << family;
  }
  for (const char* family :
       {"tollgate_request_duration_seconds", "tollgate_upstream_duration_seconds"}) {
    EXPECT_EQ(e.Type(family), "histogram") << family;
  }
  for (const char* family :
       {"tollgate_in_flight_requests", "tollgate_audit_queue_depth", "tollgate_audit_slots_used",
        "tollgate_limiter_ready", "tollgate_build_info",
        "tollgate_config_last_reload_success_timestamp_seconds"}) {
    EXPECT_EQ(e.Type(family), "gauge") << family;
  }
  EXPECT_EQ(e.Value("tollgate_build_info", {{"version", TOLLGATE_VERSION}}), 1);
  EXPECT_EQ(e.Value("tollgate_config_last_reload_success_timestamp_seconds"), 0);
}

TEST(Metrics, RequestsAreCountedByUpstreamDecisionAndCodeClass) {
  Metrics metrics;
  metrics.RecordRequest("devin", "allowed", 200, 0.003);
  metrics.RecordRequest("devin", "allowed", 201, 0.2);
  metrics.RecordRequest("devin", "rate_limited", 429, 0.0005);
  metrics.RecordRequest("devo", "error", 504, 40);
  metrics.RecordRequest("", "not_found", 404, 0.001);
  const Exposition e(metrics.Render({}));
  const std::string name = "tollgate_requests_total";
  EXPECT_EQ(e.Value(name, {{"upstream", "devin"}, {"decision", "allowed"}, {"code_class", "2xx"}}),
            2);
  EXPECT_EQ(
      e.Value(name, {{"upstream", "devin"}, {"decision", "rate_limited"}, {"code_class", "4xx"}}),
      1);
  EXPECT_EQ(e.Value(name, {{"upstream", "devo"}, {"decision", "error"}, {"code_class", "5xx"}}), 1);
  EXPECT_EQ(e.Value(name, {{"upstream", ""}, {"decision", "not_found"}, {"code_class", "4xx"}}), 1);

  const std::string h = "tollgate_request_duration_seconds";
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devin"}, {"le", "0.001"}}), 1);
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devin"}, {"le", "0.0025"}}), 1);
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devin"}, {"le", "0.005"}}), 2);
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devin"}, {"le", "0.25"}}), 3);
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devin"}, {"le", "+Inf"}}), 3);
  EXPECT_EQ(e.Value(h + "_count", {{"upstream", "devin"}}), 3);
  EXPECT_NEAR(e.Value(h + "_sum", {{"upstream", "devin"}}), 0.2035, 1e-9);
  // A value on a bound belongs to that bucket (le = less or equal).
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", ""}, {"le", "0.001"}}), 1);
  // Above the last bound: only +Inf.
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devo"}, {"le", "30"}}), 0);
  EXPECT_EQ(e.Value(h + "_bucket", {{"upstream", "devo"}, {"le", "+Inf"}}), 1);
  EXPECT_EQ(e.histogram_series_, 3u);
}

TEST(Metrics, UpstreamLimitCooldownAndReloadRecordings) {
  Metrics metrics;
  metrics.RecordUpstream("devin", 200, 0.05);
  metrics.RecordUpstream("devin", 429, 0.01);
  metrics.RecordUpstreamError("devin", "timeout");
  metrics.RecordUpstreamError("devin", "timeout");
  metrics.RecordUpstreamError("devo", "connect");
  metrics.RecordLimit("devin-all", "allowed");
  metrics.RecordLimit("devin-all", "limited");
  metrics.RecordLimit("shadow", "would_limit");
  metrics.RecordUpstreamCooldown("devin");
  metrics.RecordReload(false);
  const Exposition before(metrics.Render({}));
  EXPECT_EQ(before.Value("tollgate_config_last_reload_success_timestamp_seconds"), 0);
  metrics.RecordReload(true);
  metrics.RecordReload(true);

  const Exposition e(metrics.Render({}));
  EXPECT_EQ(
      e.Value("tollgate_upstream_responses_total", {{"upstream", "devin"}, {"code_class", "2xx"}}),
      1);
  EXPECT_EQ(
      e.Value("tollgate_upstream_responses_total", {{"upstream", "devin"}, {"code_class", "4xx"}}),
      1);
  EXPECT_EQ(e.Value("tollgate_upstream_duration_seconds_count", {{"upstream", "devin"}}), 2);
  EXPECT_EQ(e.Value("tollgate_upstream_errors_total", {{"upstream", "devin"}, {"kind", "timeout"}}),
            2);
  EXPECT_EQ(e.Value("tollgate_upstream_errors_total", {{"upstream", "devo"}, {"kind", "connect"}}),
            1);
  EXPECT_EQ(e.Value("tollgate_ratelimit_decisions_total",
                    {{"bucket", "devin-all"}, {"result", "allowed"}}),
            1);
  EXPECT_EQ(e.Value("tollgate_ratelimit_decisions_total",
                    {{"bucket", "devin-all"}, {"result", "limited"}}),
            1);
  EXPECT_EQ(e.Value("tollgate_ratelimit_decisions_total",
                    {{"bucket", "shadow"}, {"result", "would_limit"}}),
            1);
  EXPECT_EQ(e.Value("tollgate_upstream_cooldowns_total", {{"upstream", "devin"}}), 1);
  EXPECT_EQ(e.Value("tollgate_config_reloads_total", {{"result", "success"}}), 2);
  EXPECT_EQ(e.Value("tollgate_config_reloads_total", {{"result", "failure"}}), 1);
  EXPECT_GT(e.Value("tollgate_config_last_reload_success_timestamp_seconds"), 1.7e9);
}

// A request refused at admission (no audit place) has no audit record: this counter is its trace.
TEST(Metrics, AuditRefusalsAreCountedOnePerRecording) {
  Metrics metrics;
  EXPECT_EQ(Exposition(metrics.Render({})).Value("tollgate_audit_refused_total"), 0);
  metrics.RecordAuditRefused();
  metrics.RecordAuditRefused();
  metrics.RecordAuditRefused();
  const Exposition e(metrics.Render({}));
  EXPECT_EQ(e.Value("tollgate_audit_refused_total"), 3);
  EXPECT_EQ(e.Type("tollgate_audit_refused_total"), "counter");
}

TEST(Metrics, MarkConfigLoadedSetsTheTimestampWithoutCountingAReload) {
  Metrics metrics;
  metrics.MarkConfigLoaded();
  const Exposition e(metrics.Render({}));
  EXPECT_GT(e.Value("tollgate_config_last_reload_success_timestamp_seconds"), 1.7e9);
  EXPECT_EQ(e.Value("tollgate_config_reloads_total", {{"result", "success"}}), 0);
}

TEST(Metrics, SnapshotValuesAreRendered) {
  Metrics metrics;
  policies::LimiterStats limiter;
  limiter.redis_errors = 3;
  limiter.fallbacks = 2;
  limiter.breaker_skips = 7;
  limiter.breaker_backoff_ms = 1500;
  upstream::UpstreamClientStats client;
  client.started = 10;
  client.completed = 9;
  client.timeouts = 1;
  MetricsSnapshot g;
  g.in_flight = 5;
  g.audit_queue_depth = 12;
  g.audit_written = 1000;
  g.audit_stream_errors = 4;
  g.audit_stream_dropped = 6;
  g.audit_file_dropped = 8;
  g.audit_slots_used = 9;
  g.limiter = &limiter;
  g.limiter_ready = true;
  g.limiter_backend = "redis 127.0.0.1:6379/0";
  g.upstream = &client;
  g.upstream_in_flight = 1;
  const Exposition e(metrics.Render(g));
  EXPECT_EQ(e.Value("tollgate_in_flight_requests"), 5);
  EXPECT_EQ(e.Value("tollgate_audit_queue_depth"), 12);
  EXPECT_EQ(e.Value("tollgate_audit_records_total"), 1000);
  EXPECT_EQ(e.Value("tollgate_audit_stream_errors_total"), 4);
  EXPECT_EQ(e.Value("tollgate_audit_stream_dropped_total"), 6);
  EXPECT_EQ(e.Value("tollgate_redis_errors_total"), 3);
  EXPECT_EQ(e.Value("tollgate_ratelimit_fallbacks_total"), 2);
  EXPECT_EQ(e.Value("tollgate_redis_breaker_skips_total"), 7);
  EXPECT_EQ(e.Value("tollgate_audit_file_dropped_total"), 8);
  EXPECT_EQ(e.Value("tollgate_audit_slots_used"), 9);
  EXPECT_DOUBLE_EQ(e.Value("tollgate_redis_breaker_backoff_seconds"), 1.5);
  EXPECT_EQ(e.Value("tollgate_limiter_ready", {{"backend", "redis 127.0.0.1:6379/0"}}), 1);
  EXPECT_EQ(e.Value("tollgate_upstream_in_flight"), 1);
  EXPECT_EQ(e.Value("tollgate_upstream_transfers_total", {{"result", "started"}}), 10);
  EXPECT_EQ(e.Value("tollgate_upstream_transfers_total", {{"result", "completed"}}), 9);
  EXPECT_EQ(e.Value("tollgate_upstream_transfers_total", {{"result", "timeout"}}), 1);

  g.limiter = nullptr;
  g.upstream = nullptr;
  g.limiter_ready = false;
  const Exposition without(metrics.Render(g));
  EXPECT_EQ(without.Value("tollgate_redis_errors_total"), 0);
  EXPECT_EQ(without.Value("tollgate_limiter_ready", {{"backend", "redis 127.0.0.1:6379/0"}}), 0);
}

TEST(Metrics, RunTimeKeySeriesAreRenderedOnlyWithRunTimeKeys) {
  Metrics metrics;
  keys::KeyStats stats;
  stats.lookups_found = 4;
  stats.lookups_not_found = 3;
  stats.lookups_failed = 2;
  stats.lookups_throttled = 1;
  stats.cache_hits = 40;
  stats.cache_negative_hits = 30;
  stats.cache_misses = 20;
  stats.stale_used = 5;
  MetricsSnapshot g;
  g.keys = &stats;
  g.key_events_subscribed = true;
  {
    // Before the first count the gauge has no sample: 0 keys would be a lie.
    const Exposition e(metrics.Render(g));
    EXPECT_EQ(e.Type("tollgate_keys"), "gauge");
    EXPECT_FALSE(e.Has("tollgate_keys", {{"state", "active"}}));
  }
  g.key_counts.known = true;
  g.key_counts.active = 7;
  g.key_counts.grace = 1;
  g.key_counts.expired = 2;
  g.key_counts.revoked = 3;
  const Exposition e(metrics.Render(g));
  EXPECT_EQ(e.Value("tollgate_keys", {{"state", "active"}}), 7);
  EXPECT_EQ(e.Value("tollgate_keys", {{"state", "grace"}}), 1);
  EXPECT_EQ(e.Value("tollgate_keys", {{"state", "expired"}}), 2);
  EXPECT_EQ(e.Value("tollgate_keys", {{"state", "revoked"}}), 3);
  EXPECT_EQ(e.Value("tollgate_key_lookups_total", {{"result", "found"}}), 4);
  EXPECT_EQ(e.Value("tollgate_key_lookups_total", {{"result", "not_found"}}), 3);
  EXPECT_EQ(e.Value("tollgate_key_lookups_total", {{"result", "failed"}}), 2);
  EXPECT_EQ(e.Value("tollgate_key_lookups_total", {{"result", "throttled"}}), 1);
  EXPECT_EQ(e.Value("tollgate_key_cache_total", {{"result", "hit"}}), 40);
  EXPECT_EQ(e.Value("tollgate_key_cache_total", {{"result", "negative_hit"}}), 30);
  EXPECT_EQ(e.Value("tollgate_key_cache_total", {{"result", "miss"}}), 20);
  EXPECT_EQ(e.Value("tollgate_key_stale_used_total"), 5);
  EXPECT_EQ(e.Value("tollgate_key_events_subscribed"), 1);

  g.keys = nullptr;
  const Exposition without(metrics.Render(g));
  EXPECT_EQ(without.Type("tollgate_keys"), "");
  EXPECT_EQ(without.Type("tollgate_key_lookups_total"), "");
}

TEST(Metrics, RedisTopologySeriesAreRenderedOnlyWithARedisSection) {  // issue 14
  Metrics metrics;
  policies::RedisTopologyStats stats;
  stats.primary_switches = 2;
  stats.resolve_failures = 3;
  stats.slot_map_refreshes = 4;
  stats.moved = 5;
  stats.asked = 6;
  MetricsSnapshot g;
  g.redis_topology = &stats;
  const Exposition e(metrics.Render(g));
  EXPECT_EQ(e.Type("tollgate_redis_primary_switches_total"), "counter");
  EXPECT_EQ(e.Value("tollgate_redis_primary_switches_total"), 2);
  EXPECT_EQ(e.Value("tollgate_redis_resolve_failures_total"), 3);
  EXPECT_EQ(e.Value("tollgate_redis_slot_map_refreshes_total"), 4);
  EXPECT_EQ(e.Type("tollgate_redis_cluster_redirects_total"), "counter");
  EXPECT_EQ(e.Value("tollgate_redis_cluster_redirects_total", {{"kind", "moved"}}), 5);
  EXPECT_EQ(e.Value("tollgate_redis_cluster_redirects_total", {{"kind", "ask"}}), 6);

  g.redis_topology = nullptr;
  const Exposition without(metrics.Render(g));
  EXPECT_EQ(without.Type("tollgate_redis_primary_switches_total"), "");
  EXPECT_EQ(without.Type("tollgate_redis_cluster_redirects_total"), "");
}

TEST(Metrics, LabelValuesAreEscaped) {
  Metrics metrics;
  const std::string odd = "a\\b\"c\nd";
  metrics.RecordLimit(odd, "allowed");
  const std::string text = metrics.Render({});
  EXPECT_NE(text.find("bucket=\"a\\\\b\\\"c\\nd\""), std::string::npos) << text;
  const Exposition e(text);  // also checks that no sample line was broken by the newline
  EXPECT_EQ(e.Value("tollgate_ratelimit_decisions_total", {{"bucket", odd}, {"result", "allowed"}}),
            1);
}

TEST(Metrics, CodeClass) {
  EXPECT_EQ(Metrics::CodeClass(100), "1xx");
  EXPECT_EQ(Metrics::CodeClass(204), "2xx");
  EXPECT_EQ(Metrics::CodeClass(308), "3xx");
  EXPECT_EQ(Metrics::CodeClass(499), "4xx");
  EXPECT_EQ(Metrics::CodeClass(599), "5xx");
  EXPECT_EQ(Metrics::CodeClass(0), "other");
  EXPECT_EQ(Metrics::CodeClass(600), "other");
}

TEST(Metrics, ConcurrentRecordingSumsExactly) {
  Metrics metrics;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      // Each thread creates series of its own and shares others, so creation races lookups.
      const std::string own = "u" + std::to_string(t);
      for (int i = 0; i < kPerThread; ++i) {
        metrics.RecordRequest("shared", "allowed", 200, 0.001);
        metrics.RecordRequest(own, i % 2 ? "allowed" : "forbidden", i % 2 ? 200 : 403, 0.5);
        metrics.RecordLimit("b" + std::to_string(i % 50), "allowed");
        metrics.RecordUpstream("shared", 200, 0.25);
      }
    });
  }
  // Rendering while recording must not crash or break the format.
  for (int i = 0; i < 20; ++i) Exposition(metrics.Render({}));
  for (auto& t : threads) t.join();

  const Exposition e(metrics.Render({}));
  const double total = kThreads * kPerThread;
  EXPECT_EQ(e.Value("tollgate_requests_total",
                    {{"upstream", "shared"}, {"decision", "allowed"}, {"code_class", "2xx"}}),
            total);
  EXPECT_EQ(e.Value("tollgate_request_duration_seconds_count", {{"upstream", "shared"}}), total);
  EXPECT_NEAR(e.Value("tollgate_request_duration_seconds_sum", {{"upstream", "shared"}}),
              total * 0.001, 1e-6);
  EXPECT_EQ(e.Value("tollgate_upstream_duration_seconds_bucket",
                    {{"upstream", "shared"}, {"le", "0.25"}}),
            total);
  for (int t = 0; t < kThreads; ++t) {
    const std::string own = "u" + std::to_string(t);
    EXPECT_EQ(e.Value("tollgate_requests_total",
                      {{"upstream", own}, {"decision", "forbidden"}, {"code_class", "4xx"}}),
              kPerThread / 2);
  }
  double limits = 0;
  for (int b = 0; b < 50; ++b) {
    limits += e.Value("tollgate_ratelimit_decisions_total",
                      {{"bucket", "b" + std::to_string(b)}, {"result", "allowed"}});
  }
  EXPECT_EQ(limits, total);
}

}  // namespace
}  // namespace tollgate::gateway
