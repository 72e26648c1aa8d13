// The "metrics" section (issue 13): per-caller series off by default, max_callers 200; each way
// it can be wrong names its JSON pointer; check-config's summary says what is on.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;

LoadResult WithMetrics(const std::string& metrics) {
  const std::string json = R"json({
  "listen": "127.0.0.1:8080",)json" +
                           metrics +
                           R"json(
  "upstreams": {
    "devin": {"base_url": "https://api.devin.ai",
              "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"}}
  }
})json";
  return LoadConfigString(json, DummySecrets().source());
}

// An error at `pointer` or under it (an unknown member may be named by its own pointer).
bool HasErrorAt(const LoadResult& result, const std::string& pointer) {
  for (const ConfigError& error : result.errors) {
    if (error.pointer.rfind(pointer, 0) == 0) return true;
  }
  return false;
}

TEST(ConfigMetrics, PerCallerSeriesAreOffByDefault) {
  LoadResult result = WithMetrics("");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_FALSE(result.config->metrics.per_caller);
  EXPECT_EQ(result.config->metrics.max_callers, 200);
  EXPECT_NE(DescribeConfig(*result.config).find("metrics: no per-caller series\n"),
            std::string::npos);
}

TEST(ConfigMetrics, PerCallerAndMaxCallersAreRead) {
  LoadResult result = WithMetrics(R"( "metrics": {"per_caller": true, "max_callers": 2},)");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_TRUE(result.config->metrics.per_caller);
  EXPECT_EQ(result.config->metrics.max_callers, 2);
  std::string summary = DescribeConfig(*result.config);
  EXPECT_NE(summary.find("metrics: per-caller series for the first 2 callers (later ones as "
                         "caller=\"other\")\n"),
            std::string::npos)
      << summary;
}

TEST(ConfigUsage, TheSummarySaysWhereUsageIsKeptAndForHowLong) {
  LoadResult result =
      WithMetrics(R"( "usage": {"flush_interval_seconds": 2, "retention_days": 30},)");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->usage.flush_interval_seconds, 2);
  EXPECT_EQ(result.config->usage.retention_days, 30);
  const std::string summary = DescribeConfig(*result.config);
  EXPECT_NE(summary.find("usage: counted per caller, upstream and UTC day in memory (no redis "
                         "section: lost at exit), flushed every 2 s, kept 30 days\n"),
            std::string::npos)
      << summary;
}

TEST(ConfigMetrics, EachMistakeNamesItsPointer) {
  for (const auto& [metrics, pointer] : {
           std::pair<std::string, std::string>{R"("metrics": {"max_callers": 0},)",
                                               "/metrics/max_callers"},
           {R"("metrics": {"max_callers": 10001},)", "/metrics/max_callers"},
           {R"("metrics": {"max_callers": "many"},)", "/metrics/max_callers"},
           {R"("metrics": {"per_caller": "yes"},)", "/metrics/per_caller"},
           {R"("metrics": {"per_callers": true},)", "/metrics"},
           {R"("metrics": true,)", "/metrics"},
       }) {
    LoadResult result = WithMetrics(metrics);
    EXPECT_FALSE(result.ok()) << metrics;
    EXPECT_TRUE(HasErrorAt(result, pointer)) << metrics << " -> " << AllErrors(result);
  }
}

}  // namespace
}  // namespace tollgate::config
