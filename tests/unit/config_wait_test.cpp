// Limits that wait instead of refusing (issue 14): wait_ms and max_waiting on a token bucket,
// and each way they can be wrong, asserting the JSON pointer of the error.
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

TEST(ConfigWait, WaitMsAndMaxWaitingAreRead) {
  LoadResult result = WithLimit(R"({"name": "batch", "rate": "10/s", "burst": 1, "wait_ms": 500,
                    "max_waiting": 20})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Limit& limit = result.config->upstreams.at("devin").limits.at(0);
  EXPECT_EQ(limit.wait_ms, 500u);
  EXPECT_EQ(limit.max_waiting, 20u);
  EXPECT_NE(DescribeConfig(*result.config)
                .find("batch 10/s burst 1 shared waits up to 500 ms (max 20 waiting per caller)"),
            std::string::npos)
      << DescribeConfig(*result.config);

  LoadResult defaults = WithLimit(R"({"name": "plain", "rate": "10/s"})");
  ASSERT_TRUE(defaults.ok()) << AllErrors(defaults);
  EXPECT_EQ(defaults.config->upstreams.at("devin").limits.at(0).wait_ms, 0u);
  EXPECT_EQ(defaults.config->upstreams.at("devin").limits.at(0).max_waiting, 100u);
  LoadResult waits = WithLimit(R"({"name": "w", "rate": "10/s", "wait_ms": 60000})");
  ASSERT_TRUE(waits.ok()) << AllErrors(waits);
  EXPECT_EQ(waits.config->upstreams.at("devin").limits.at(0).max_waiting, 100u);
}

TEST(ConfigWait, WaitMsOutOfRangeIsASchemaError) {
  for (const char* wait : {"-1", "60001", "1.5", "\"500\""}) {
    LoadResult r =
        WithLimit(std::string(R"({"name": "w", "rate": "10/s", "wait_ms": )") + wait + "}");
    EXPECT_FALSE(r.ok()) << wait;
    EXPECT_NE(AllErrors(r).find(std::string(kPointer) + "/wait_ms"), std::string::npos)
        << wait << ": " << AllErrors(r);
  }
  LoadResult zero = WithLimit(R"({"name": "w", "rate": "10/s", "wait_ms": 100, "max_waiting": 0})");
  EXPECT_FALSE(zero.ok());
  EXPECT_NE(AllErrors(zero).find(std::string(kPointer) + "/max_waiting"), std::string::npos)
      << AllErrors(zero);
}

TEST(ConfigWait, AQuotaNeverWaits) {
  LoadResult r = WithLimit(R"({"name": "acu", "quota": "100/day", "wait_ms": 500})");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(HasError(r, std::string(kPointer) + "/wait_ms", "a quota never waits"))
      << AllErrors(r);
  LoadResult cap = WithLimit(R"({"name": "acu", "quota": "100/day", "max_waiting": 5})");
  EXPECT_TRUE(HasError(cap, std::string(kPointer) + "/max_waiting", "a quota never waits"))
      << AllErrors(cap);
}

TEST(ConfigWait, MaxWaitingNeedsAWaitAndAShadowLimitNeverWaits) {
  LoadResult r = WithLimit(R"({"name": "w", "rate": "10/s", "max_waiting": 5})");
  EXPECT_TRUE(HasError(r, std::string(kPointer) + "/max_waiting", "only with \"wait_ms\""))
      << AllErrors(r);
  LoadResult shadow = WithLimit(R"({"name": "w", "rate": "10/s", "wait_ms": 100, "shadow": true})");
  EXPECT_TRUE(HasError(shadow, std::string(kPointer) + "/wait_ms", "never waits"))
      << AllErrors(shadow);
}

TEST(ConfigWait, AWaitTooLongForExactArithmeticIsRefused) {
  // 60 s of a billion tokens a second is 6e16 units below zero: past 2^53.
  LoadResult r =
      WithLimit(R"({"name": "w", "rate": "1000000000/s", "burst": 1, "wait_ms": 60000})");
  EXPECT_TRUE(HasError(r, std::string(kPointer) + "/wait_ms", "exact")) << AllErrors(r);
}

TEST(ConfigWait, OneNameIsOneBucketWaitIncluded) {
  const std::string json = R"json({
  "listen": "127.0.0.1:8080",
  "upstreams": {
    "devin": {"base_url": "https://api.devin.ai",
              "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"},
              "limits": [{"name": "w", "rate": "10/s", "wait_ms": 100}]}
  },
  "roles": {"reader": {"rules": [{"upstream": "devin", "path": "/v3/x",
                                  "limits": [{"name": "w", "rate": "10/s", "wait_ms": 200}]}]}},
  "callers": {
    "team": {"key_sha256": ["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"],
             "roles": ["reader"]}
  }
})json";
  LoadResult r = LoadConfigString(json, DummySecrets().source());
  EXPECT_FALSE(r.ok());
  EXPECT_NE(AllErrors(r).find("already defined with different settings"), std::string::npos)
      << AllErrors(r);
}

}  // namespace
}  // namespace tollgate::config
