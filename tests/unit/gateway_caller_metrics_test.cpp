// Per-caller series (issue 13): off by default, capped at max_callers (later callers folded into
// caller="other"), "-" for no caller; the cost each allowed request took per limit. And the
// count of callers past a quota's warn_at per window (issue 12).
#include <gtest/gtest.h>

#include <thread>

#include "gateway/caller_metrics.h"
#include "gateway/metrics.h"
#include "policies/quota_window.h"

namespace tollgate::gateway {
namespace {

config::MetricsConfig On(int max_callers) {
  config::MetricsConfig c;
  c.per_caller = true;
  c.max_callers = max_callers;
  return c;
}

policies::BucketSpec Spec(const std::string& name, uint64_t cost, bool shadow = false) {
  policies::BucketSpec s;
  s.name = name;
  s.key = "bucket:" + name + ":x";
  s.cost = cost;
  s.shadow = shadow;
  return s;
}

policies::LimitDecision Allowed(size_t levels) {
  policies::LimitDecision d;
  d.levels.resize(levels);
  return d;
}

void Request(CallerMetrics& m, std::string_view caller, std::string_view decision = "allowed") {
  m.Record(caller, "devin", decision, {}, {});
}

std::string Rendered(const CallerMetrics& m) {
  std::string out;
  m.Render(&out);
  return out;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(CallerMetrics, OffByDefaultRecordsAndRendersNothing) {
  CallerMetrics m;
  Request(m, "data-team");
  EXPECT_EQ(Rendered(m), "");
  Metrics metrics;
  metrics.callers().Record("data-team", "devin", "allowed", {Spec("acu", 10)}, Allowed(1));
  EXPECT_EQ(metrics.Render({}).find("tollgate_caller_"), std::string::npos);
  // Configured off explicitly: the same.
  m.Configure(config::MetricsConfig{});
  Request(m, "data-team");
  EXPECT_EQ(Rendered(m), "");
}

TEST(CallerMetrics, TheFirstMaxCallersGetTheirOwnSeriesLaterOnesAreOther) {
  CallerMetrics m;
  m.Configure(On(2));
  Request(m, "a");
  Request(m, "b");
  Request(m, "c");
  Request(m, "c", "forbidden");
  Request(m, "d");
  Request(m, "a");  // still its own
  Request(m, "");   // no caller: "-", which takes no place
  std::string out = Rendered(m);
  EXPECT_TRUE(Has(
      out, R"(tollgate_caller_requests_total{caller="a",upstream="devin",decision="allowed"} 2)"))
      << out;
  EXPECT_TRUE(Has(
      out, R"(tollgate_caller_requests_total{caller="b",upstream="devin",decision="allowed"} 1)"))
      << out;
  EXPECT_TRUE(Has(
      out,
      R"(tollgate_caller_requests_total{caller="other",upstream="devin",decision="allowed"} 2)"))
      << out;
  EXPECT_TRUE(Has(
      out,
      R"(tollgate_caller_requests_total{caller="other",upstream="devin",decision="forbidden"} 1)"))
      << out;
  EXPECT_TRUE(Has(
      out, R"(tollgate_caller_requests_total{caller="-",upstream="devin",decision="allowed"} 1)"))
      << out;
  EXPECT_EQ(out.find("caller=\"c\""), std::string::npos) << out;
  EXPECT_EQ(out.find("caller=\"d\""), std::string::npos) << out;
  EXPECT_TRUE(Has(out, "tollgate_caller_series_callers 2")) << out;
  EXPECT_TRUE(Has(out, "tollgate_caller_folded_requests_total 3")) << out;
}

TEST(CallerMetrics, LabelKeepsTheFirstCallersAcrossManyThreads) {
  CallerMetrics m;
  m.Configure(On(50));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 200; ++i) m.Label("caller-" + std::to_string((i * 7 + t) % 120));
    });
  }
  for (auto& t : threads) t.join();
  size_t own = 0, other = 0;
  for (int i = 0; i < 120; ++i) {
    (m.Label("caller-" + std::to_string(i)) == CallerMetrics::kOther ? other : own)++;
  }
  EXPECT_EQ(own, 50u);
  EXPECT_EQ(other, 70u);
  EXPECT_TRUE(Has(Rendered(m), "tollgate_caller_series_callers 50"));
}

TEST(CallerMetrics, CostIsWhatEachAllowedRequestTookPerLimit) {
  CallerMetrics m;
  m.Configure(On(1));
  std::vector<policies::BucketSpec> specs = {Spec("devin-all", 1), Spec("acu-month", 50),
                                             Spec("trial", 1, /*shadow=*/true)};
  m.Record("data-team", "devin", "allowed", specs, Allowed(3));
  m.Record("data-team", "devin", "allowed", specs, Allowed(3));
  policies::LimitDecision limited = Allowed(3);
  limited.outcome = policies::LimitDecision::Outcome::kLimited;
  m.Record("data-team", "devin", "rate_limited", specs, limited);  // took nothing
  m.Record("platform", "devin", "allowed", specs, Allowed(3));     // folded
  std::string out = Rendered(m);
  EXPECT_TRUE(Has(out, R"(tollgate_caller_cost_total{caller="data-team",limit="acu-month"} 100)"))
      << out;
  EXPECT_TRUE(Has(out, R"(tollgate_caller_cost_total{caller="data-team",limit="devin-all"} 2)"))
      << out;
  EXPECT_TRUE(Has(out, R"(tollgate_caller_cost_total{caller="other",limit="acu-month"} 50)"))
      << out;
  EXPECT_EQ(out.find("limit=\"trial\""), std::string::npos) << out;
}

TEST(QuotaWarnings, CountsDistinctCallersPerWindowAndResetsWithTheWindow) {
  config::Quota month;
  month.amount = 2000;
  month.period = config::QuotaPeriod::kMonth;
  month.reset_hour_utc = 8;
  month.warn_at = 0.8;
  // 2026-12-15 12:00 UTC; the window runs 2026-12-01 08:00 .. 2027-01-01 08:00.
  const int64_t mid = policies::DaysFromCivil(2026, 12, 15) * 86400 + 12 * 3600;
  const int64_t next = policies::DaysFromCivil(2027, 1, 1) * 86400 + 8 * 3600;
  QuotaWarnings w;
  auto rendered = [&](int64_t now) {
    std::string out;
    w.Render(&out, now);
    return out;
  };
  EXPECT_EQ(rendered(mid).find("tollgate_quota_warning_callers{"), std::string::npos);
  w.Record("acu-month", "a", month, mid);
  w.Record("acu-month", "a", month, mid + 60);
  w.Record("acu-month", "b", month, mid + 120);
  w.Record("sessions-day", "a", month, mid);
  EXPECT_TRUE(Has(rendered(mid), R"(tollgate_quota_warning_callers{limit="acu-month"} 2)"));
  EXPECT_TRUE(Has(rendered(mid), R"(tollgate_quota_warning_callers{limit="sessions-day"} 1)"));
  // The window ended: nobody is past warn_at in the new one yet.
  EXPECT_TRUE(Has(rendered(next), R"(tollgate_quota_warning_callers{limit="acu-month"} 0)"));
  EXPECT_TRUE(Has(rendered(next - 1), R"(tollgate_quota_warning_callers{limit="acu-month"} 2)"));
  // The first warning of the new window counts afresh.
  w.Record("acu-month", "b", month, next + 10);
  EXPECT_TRUE(Has(rendered(next + 20), R"(tollgate_quota_warning_callers{limit="acu-month"} 1)"));
}

}  // namespace
}  // namespace tollgate::gateway
