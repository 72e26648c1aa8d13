// The `keys` section (issue 11): what parses into KeysConfig, and each bad value named by its
// JSON pointer.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::HasError;

// A minimal valid config with a redis section, plus `keys` (a JSON object, or "" for none).
std::string WithKeys(const std::string& keys, bool redis = true) {
  return std::string(R"({"upstreams": {"devin": {"base_url": "https://api.devin.ai",)"
                     R"( "auth": {"type": "bearer", "secret_env": "TOKEN"}}})") +
         (redis ? R"(, "redis": {"url": "redis://127.0.0.1:6379"})" : "") +
         (keys.empty() ? "" : R"(, "keys": )" + keys) + "}";
}

LoadResult Load(const std::string& keys, bool redis = true) {
  return LoadConfigString(WithKeys(keys, redis), DummySecrets().source());
}

TEST(ConfigKeys, AKeysSectionParses) {
  LoadResult result = Load(R"({"cache_ttl_seconds": 120, "negative_ttl_seconds": 5,
      "lookups_per_second": 2.5, "lookup_burst": 50, "max_ttl_seconds": 2592000})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const KeysConfig& keys = result.config->keys;
  EXPECT_EQ(keys.cache_ttl_seconds, 120);
  EXPECT_EQ(keys.negative_ttl_seconds, 5);
  EXPECT_DOUBLE_EQ(keys.lookups_per_second, 2.5);
  EXPECT_DOUBLE_EQ(keys.lookup_burst, 50);
  EXPECT_EQ(keys.max_ttl_seconds, 2592000);
  const std::string summary = DescribeConfig(*result.config);
  EXPECT_NE(summary.find("run-time keys: in redis, trusted 120 s once verified, unknown ids "
                         "remembered 5 s, lookups 2.5/s burst 50, max ttl 2592000 s"),
            std::string::npos)
      << summary;
}

TEST(ConfigKeys, EverySettingIsOptionalWithTheDocumentedDefaults) {
  for (const char* keys : {"", "{}"}) {
    LoadResult result = Load(keys);
    ASSERT_TRUE(result.ok()) << keys << ": " << AllErrors(result);
    const KeysConfig& k = result.config->keys;
    EXPECT_EQ(k.cache_ttl_seconds, 300);
    EXPECT_EQ(k.negative_ttl_seconds, 10);
    EXPECT_DOUBLE_EQ(k.lookups_per_second, 100);
    EXPECT_DOUBLE_EQ(k.lookup_burst, 200);
    EXPECT_EQ(k.max_ttl_seconds, 0);
    EXPECT_NE(DescribeConfig(*result.config).find("max ttl none"), std::string::npos);
  }
  // Only config keys without Redis: the summary says so.
  LoadResult none = Load("", /*redis=*/false);
  ASSERT_TRUE(none.ok()) << AllErrors(none);
  EXPECT_NE(DescribeConfig(*none.config).find("run-time keys: off (no redis section"),
            std::string::npos)
      << DescribeConfig(*none.config);
}

struct BadKeys {
  const char* keys;
  const char* pointer;
  const char* reason;
};

TEST(ConfigKeys, EachBadValueIsNamedByItsPointer) {
  const BadKeys cases[] = {
      {R"({"cache_ttl_seconds": 0})", "/keys/cache_ttl_seconds", "at least 1"},
      {R"({"cache_ttl_seconds": 86401})", "/keys/cache_ttl_seconds", "at most 86400"},
      {R"({"cache_ttl_seconds": 1.5})", "/keys/cache_ttl_seconds", "expected integer"},
      {R"({"cache_ttl_seconds": "300"})", "/keys/cache_ttl_seconds", "expected integer"},
      {R"({"negative_ttl_seconds": 0})", "/keys/negative_ttl_seconds", "at least 1"},
      {R"({"negative_ttl_seconds": 3601})", "/keys/negative_ttl_seconds", "at most 3600"},
      {R"({"lookups_per_second": 0})", "/keys/lookups_per_second", "greater than 0"},
      {R"({"lookups_per_second": -1})", "/keys/lookups_per_second", "at least 0"},
      {R"({"lookups_per_second": "many"})", "/keys/lookups_per_second", "expected number"},
      {R"({"lookup_burst": 0.5})", "/keys/lookup_burst", "at least 1"},
      {R"({"max_ttl_seconds": -1})", "/keys/max_ttl_seconds", "at least 0"},
      {R"({"max_ttl_seconds": 315360001})", "/keys/max_ttl_seconds", "at most 315360000"},
      {R"({"cache_ttl": 300})", "/keys", "unknown property \"cache_ttl\""},
      {R"([300])", "/keys", "expected object"},
  };
  for (const BadKeys& c : cases) {
    LoadResult result = Load(c.keys);
    EXPECT_FALSE(result.ok()) << c.keys;
    EXPECT_TRUE(HasError(result, c.pointer, c.reason))
        << c.keys << " wanted " << c.pointer << ": " << c.reason << ", got:\n"
        << AllErrors(result);
  }
}

TEST(ConfigKeys, TheSmallestLegalValuesAreAccepted) {
  LoadResult result = Load(R"({"cache_ttl_seconds": 1, "negative_ttl_seconds": 1,
      "lookups_per_second": 0.01, "lookup_burst": 1, "max_ttl_seconds": 0})");
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(ConfigKeys, AKeysSectionWithoutRedisIsAnError) {
  LoadResult result = Load(R"({"cache_ttl_seconds": 60})", /*redis=*/false);
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(HasError(result, "/keys", "need a \"redis\" section")) << AllErrors(result);
}

// A reload reports the section as changed by name (the server lists it as restart-only).
TEST(ConfigKeys, AChangedKeysSectionIsNamedAsAChangedEntry) {
  LoadResult before = Load(R"({"cache_ttl_seconds": 60})");
  LoadResult after = Load(R"({"cache_ttl_seconds": 61})");
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(ChangedEntries(*before.config, *after.config), std::vector<std::string>{"keys"});
}

}  // namespace
}  // namespace tollgate::config
