// Per-caller series on /metrics (issue 13), scraped from a running gateway: off by default (no
// such series at all); on, a series per caller for requests and for the cost each allowed
// request took per limit; past max_callers, later callers are caller="other"; a request without
// a caller is caller="-" (its key appears nowhere); a change to "metrics" needs a restart, and
// the reload report says so.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

const std::string kKeyA = "tg_it_callers_a_0123456789";
const std::string kKeyB = "tg_it_callers_b_0123456789";
const std::string kKeyC = "tg_it_callers_c_0123456789";
const std::string kUnknownKey = "tg_it_callers_nobody_0123456789";
const std::string kSelf = "/devin/v3beta1/enterprise/self";

// Three callers; every call costs 3 from the caller's own `per-team` bucket and the shared
// `devin-all` one. `metrics`: the top-level "metrics" member, or "".
std::string CallerConfig(const std::string& metrics) {
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)" +
         kStandardAdmin + metrics + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"},
              "limits": [{"name": "devin-all", "rate": "1000/s", "scope": "shared"}]}
  },
  "roles": {
    "all": {"rules": [{"upstream": "devin", "methods": ["GET"], "path": "/**", "cost": 3,
                       "limits": [{"name": "per-team", "rate": "1000/min", "scope": "caller"}]}]}
  },
  "callers": {
    "team-a": {"key_sha256": ["${A_HASH}"], "roles": ["all"]},
    "team-b": {"key_sha256": ["${B_HASH}"], "roles": ["all"]},
    "team-c": {"key_sha256": ["${C_HASH}"], "roles": ["all"]}
  }
})";
}

// The value part (" <n>") of the one sample of `name` whose labels hold both `a` and `b`; "" when
// there is none, "several" when there are more.
std::string SampleWith(const std::string& exposition, const std::string& name, const std::string& a,
                       const std::string& b) {
  std::string found;
  size_t start = 0;
  while (start < exposition.size()) {
    size_t end = exposition.find('\n', start);
    if (end == std::string::npos) end = exposition.size();
    std::string line = exposition.substr(start, end - start);
    start = end + 1;
    if (line.rfind(name + "{", 0) != 0) continue;
    if (line.find(a) == std::string::npos || line.find(b) == std::string::npos) continue;
    if (!found.empty()) return "several";
    found = line.substr(line.rfind('}') + 1);
  }
  return found;
}

class CallerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  std::unique_ptr<GatewayProcess> Start(const std::string& metrics) {
    GatewayOptions o = StandardOptions(fake_, CallerConfig(metrics));
    o.vars["A_HASH"] = upstream::Sha256Hex(kKeyA);
    o.vars["B_HASH"] = upstream::Sha256Hex(kKeyB);
    o.vars["C_HASH"] = upstream::Sha256Hex(kKeyC);
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  static int Get(const GatewayProcess& g, const std::string& key) {
    return Http("GET", g.url() + kSelf, Bearer(key)).status;
  }

  static std::string Scrape(const GatewayProcess& g) {
    return Http("GET", g.admin_url() + "/metrics").body;
  }

  FakeUpstream fake_;
};

TEST_F(CallerMetricsTest, OnASeriesPerCallerWithTheCostEachLimitTook) {
  auto g = Start(R"(
  "metrics": {"per_caller": true},)");
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kKeyA), 200);
  EXPECT_EQ(Get(*g, kKeyA), 200);
  EXPECT_EQ(Get(*g, kKeyB), 200);
  EXPECT_EQ(Get(*g, kUnknownKey), 401);
  const std::string m = Scrape(*g);
  const std::string requests = "tollgate_caller_requests_total";
  EXPECT_EQ(MetricValue(m, requests,
                        {{"caller", "team-a"}, {"upstream", "devin"}, {"decision", "allowed"}}),
            2)
      << m;
  EXPECT_EQ(MetricValue(m, requests,
                        {{"caller", "team-b"}, {"upstream", "devin"}, {"decision", "allowed"}}),
            1)
      << m;
  // The request whose key matched nobody: caller "-".
  EXPECT_EQ(SampleWith(m, requests, "caller=\"-\"", "decision=\"unauthenticated\""), " 1") << m;
  EXPECT_EQ(
      MetricValue(m, "tollgate_caller_cost_total", {{"caller", "team-a"}, {"limit", "per-team"}}),
      6)
      << m;
  EXPECT_EQ(
      MetricValue(m, "tollgate_caller_cost_total", {{"caller", "team-a"}, {"limit", "devin-all"}}),
      6)
      << m;
  EXPECT_EQ(
      MetricValue(m, "tollgate_caller_cost_total", {{"caller", "team-b"}, {"limit", "per-team"}}),
      3)
      << m;
  EXPECT_EQ(MetricValue(m, "tollgate_caller_series_callers"), 2) << m;
  EXPECT_EQ(MetricValue(m, "tollgate_caller_folded_requests_total"), 0) << m;
  for (const std::string& key : {kKeyA, kKeyB, kUnknownKey}) {
    EXPECT_EQ(m.find(key), std::string::npos) << "a key on /metrics";
    EXPECT_EQ(m.find(key.substr(0, 12)), std::string::npos) << "a key's prefix on /metrics";
  }
}

TEST_F(CallerMetricsTest, PastMaxCallersLaterCallersAreOther) {
  auto g = Start(R"(
  "metrics": {"per_caller": true, "max_callers": 2},)");
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kKeyA), 200);
  EXPECT_EQ(Get(*g, kKeyB), 200);
  EXPECT_EQ(Get(*g, kKeyC), 200);
  EXPECT_EQ(Get(*g, kKeyC), 200);
  EXPECT_EQ(Get(*g, kKeyA), 200);
  const std::string m = Scrape(*g);
  const std::string requests = "tollgate_caller_requests_total";
  auto count = [&](const char* caller) {
    return MetricValue(m, requests,
                       {{"caller", caller}, {"upstream", "devin"}, {"decision", "allowed"}});
  };
  EXPECT_EQ(count("team-a"), 2) << m;
  EXPECT_EQ(count("team-b"), 1) << m;
  EXPECT_EQ(count("other"), 2) << m;
  EXPECT_EQ(m.find("team-c"), std::string::npos) << m;
  EXPECT_EQ(
      MetricValue(m, "tollgate_caller_cost_total", {{"caller", "other"}, {"limit", "per-team"}}), 6)
      << m;
  EXPECT_EQ(MetricValue(m, "tollgate_caller_series_callers"), 2) << m;
  EXPECT_EQ(MetricValue(m, "tollgate_caller_folded_requests_total"), 2) << m;
}

TEST_F(CallerMetricsTest, OffByDefaultNoSeriesAndTurningThemOnNeedsARestart) {
  auto g = Start("");
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kKeyA), 200);
  EXPECT_EQ(Get(*g, kUnknownKey), 401);
  std::string m = Scrape(*g);
  EXPECT_NE(m.find("tollgate_requests_total{"), std::string::npos) << m;
  EXPECT_EQ(m.find("tollgate_caller_"), std::string::npos) << m;
  EXPECT_EQ(m.find("team-a"), std::string::npos) << m;

  // A reload that turns them on is applied (the rest of it) and reports "metrics" as needing a
  // restart; the series stay off.
  g->WriteConfig(CallerConfig(R"(
  "metrics": {"per_caller": true},)"));
  HttpResponse r = Http("POST", g->admin_url() + "/reload", Bearer(kAdminToken));
  ASSERT_EQ(r.status, 200) << r.body;
  Json summary = Json::Parse(r.body);
  EXPECT_TRUE(summary.Bool("/reloaded")) << r.body;
  EXPECT_EQ(summary.String("/restart_required/0"), "metrics") << r.body;
  EXPECT_EQ(Get(*g, kKeyA), 200);
  m = Scrape(*g);
  EXPECT_EQ(m.find("tollgate_caller_"), std::string::npos) << m;
}

}  // namespace
}  // namespace tollgate::testing
