// Calendar quotas in the config (issue 12): what a limit with "quota" becomes, and each way it
// can be wrong, asserting the JSON pointer of the error.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::HasError;

// One upstream whose first limit is `limit` (a JSON object).
LoadResult WithLimit(const std::string& limit) {
  const std::string json = R"json({
  "listen": "127.0.0.1:8080",
  "upstreams": {
    "devin": {"base_url": "https://api.devin.ai",
              "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"},
              "limits": [)json" +
                           limit + R"json(]}
  },
  "roles": {"reader": {"rules": [{"upstream": "devin", "methods": ["GET"], "path": "/v3/x"}]}},
  "callers": {
    "team": {"key_sha256": ["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"],
             "roles": ["reader"]}
  }
})json";
  return LoadConfigString(json, DummySecrets().source());
}

constexpr const char* kPointer = "/upstreams/devin/limits/0";

TEST(ConfigQuota, AQuotaLimitIsRead) {
  LoadResult result = WithLimit(
      R"({"name": "acu", "quota": "2000/month", "reset_hour_utc": 8, "warn_at": 0.8,
          "scope": "caller"})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Limit& limit = result.config->upstreams.at("devin").limits.at(0);
  ASSERT_TRUE(limit.quota.has_value());
  EXPECT_EQ(limit.quota->amount, 2000u);
  EXPECT_EQ(limit.quota->period, QuotaPeriod::kMonth);
  EXPECT_EQ(limit.quota->reset_hour_utc, 8);
  ASSERT_TRUE(limit.quota->warn_at.has_value());
  EXPECT_DOUBLE_EQ(*limit.quota->warn_at, 0.8);
  EXPECT_EQ(limit.scope, LimitScope::kCaller);
  EXPECT_EQ(limit.burst, 2000u);  // the most one call may cost

  for (const auto& [text, period] :
       {std::pair{"5/day", QuotaPeriod::kDay}, std::pair{"7/week", QuotaPeriod::kWeek}}) {
    LoadResult r = WithLimit(std::string(R"({"name": "q", "quota": ")") + text + "\"}");
    ASSERT_TRUE(r.ok()) << AllErrors(r);
    EXPECT_EQ(r.config->upstreams.at("devin").limits.at(0).quota->period, period);
    EXPECT_EQ(r.config->upstreams.at("devin").limits.at(0).quota->reset_hour_utc, 0);
  }
}

TEST(ConfigQuota, QuotaWithRateOrBurstIsAnError) {
  LoadResult result = WithLimit(R"({"name": "acu", "quota": "10/day", "rate": "1/s"})");
  EXPECT_TRUE(HasError(result, std::string(kPointer) + "/rate", "takes no \"rate\""))
      << AllErrors(result);
  result = WithLimit(R"({"name": "acu", "quota": "10/day", "burst": 3})");
  EXPECT_TRUE(HasError(result, std::string(kPointer) + "/burst", "takes no \"burst\""))
      << AllErrors(result);
}

TEST(ConfigQuota, MalformedQuota) {
  for (const char* text : {"0/day", "10/year", "10", "/day", "-1/day", "1.5/day", "ten/day",
                           "9007199254740992/month"}) {
    LoadResult result = WithLimit(std::string(R"({"name": "acu", "quota": ")") + text + "\"}");
    EXPECT_TRUE(HasError(result, std::string(kPointer) + "/quota", "malformed quota"))
        << text << ": " << AllErrors(result);
  }
}

TEST(ConfigQuota, ResetHourOutOfRange) {
  for (const char* hour : {"24", "-1"}) {
    LoadResult result = WithLimit(
        std::string(R"({"name": "acu", "quota": "10/day", "reset_hour_utc": )") + hour + "}");
    EXPECT_FALSE(result.ok());
    EXPECT_TRUE(HasError(result, std::string(kPointer) + "/reset_hour_utc", ""))
        << AllErrors(result);
  }
}

TEST(ConfigQuota, WarnAtMustBeAFraction) {
  for (const char* warn : {"0", "1", "1.5", "-0.2"}) {
    LoadResult result =
        WithLimit(std::string(R"({"name": "acu", "quota": "10/day", "warn_at": )") + warn + "}");
    EXPECT_TRUE(HasError(result, std::string(kPointer) + "/warn_at", "0 < warn_at < 1"))
        << warn << ": " << AllErrors(result);
  }
}

TEST(ConfigQuota, QuotaFieldsWithoutAQuota) {
  LoadResult result = WithLimit(R"({"name": "b", "rate": "1/s", "warn_at": 0.5})");
  EXPECT_TRUE(HasError(result, std::string(kPointer) + "/warn_at", "applies only to a \"quota\""))
      << AllErrors(result);
  result = WithLimit(R"({"name": "b", "rate": "1/s", "reset_hour_utc": 3})");
  EXPECT_TRUE(HasError(result, std::string(kPointer) + "/reset_hour_utc", "applies only"))
      << AllErrors(result);
}

TEST(ConfigQuota, NeitherRateNorQuota) {
  LoadResult result = WithLimit(R"({"name": "b"})");
  EXPECT_TRUE(HasError(result, kPointer, "needs \"rate\"")) << AllErrors(result);
}

TEST(ConfigQuota, DescribeSaysWhatTheQuotaIs) {
  LoadResult result = WithLimit(
      R"({"name": "acu", "quota": "2000/month", "reset_hour_utc": 8, "warn_at": 0.8,
          "scope": "caller"})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_NE(DescribeConfig(*result.config)
                .find("acu quota 2000/month from 8:00 UTC per caller warn at 80%"),
            std::string::npos)
      << DescribeConfig(*result.config);
}

}  // namespace
}  // namespace tollgate::config
