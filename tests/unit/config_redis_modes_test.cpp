// `redis.sentinel` and `redis.cluster` (issue 14): exactly one of url / sentinel / cluster, the
// addresses as host:port, the sentinels' own password, and what check-config prints (never a
// secret). Each error asserts its JSON pointer.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::FakeSecrets;
using testing::HasError;

// A minimal config whose `redis` section is `redis` (a JSON object).
LoadResult WithRedis(const std::string& redis, const FakeSecrets& secrets = DummySecrets()) {
  const std::string json = R"({"redis": )" + redis + R"(,
  "upstreams": {"u": {"base_url": "http://a", "auth": {"type": "bearer", "secret_env": "TOKEN"}}}
})";
  return LoadConfigString(json, secrets.source());
}

TEST(ConfigRedisModes, SentinelIsRead) {
  FakeSecrets secrets = DummySecrets();
  secrets.env["SENTINEL_PW"] = "sentinel-sekrit-9";
  LoadResult result = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379", "s2:26380"],
                                    "master": "tollgate", "username": "watcher",
                                    "password_env": "SENTINEL_PW"},
                                    "username": "tg", "password_env": "REDIS_PASSWORD"})",
                                secrets);
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const RedisConfig& redis = *result.config->redis;
  ASSERT_TRUE(redis.sentinel);
  EXPECT_FALSE(redis.cluster);
  ASSERT_EQ(redis.sentinel->addresses.size(), 2u);
  EXPECT_EQ(redis.sentinel->addresses[1].host, "s2");
  EXPECT_EQ(redis.sentinel->addresses[1].port, 26380);
  EXPECT_EQ(redis.sentinel->master, "tollgate");
  EXPECT_EQ(redis.sentinel->username, "watcher");
  EXPECT_EQ(redis.sentinel->password, "sentinel-sekrit-9");
  EXPECT_EQ(redis.username, "tg");
  EXPECT_EQ(redis.password, "sekrit-value-of-REDIS_PASSWORD");
  EXPECT_EQ(redis.url, "sentinel:tollgate@127.0.0.1:26379,s2:26380");
  EXPECT_EQ(redis.host, "127.0.0.1");
  EXPECT_EQ(redis.port, 26379);
  EXPECT_EQ(redis.db, 0);

  const std::string described = DescribeConfig(*result.config);
  EXPECT_NE(described.find("limiter: redis sentinel master \"tollgate\" via sentinels "
                           "127.0.0.1:26379 s2:26380 as watcher with sentinel password; data "
                           "nodes as tg with password, on error: local"),
            std::string::npos)
      << described;
  EXPECT_EQ(described.find("sekrit"), std::string::npos) << described;
}

TEST(ConfigRedisModes, ClusterIsRead) {
  LoadResult result = WithRedis(
      R"({"cluster": {"addresses": ["10.0.0.1:7000", "10.0.0.2:7001"]}, "timeout_ms": 80})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const RedisConfig& redis = *result.config->redis;
  ASSERT_TRUE(redis.cluster);
  EXPECT_FALSE(redis.sentinel);
  ASSERT_EQ(redis.cluster->addresses.size(), 2u);
  EXPECT_EQ(redis.cluster->addresses[0].host, "10.0.0.1");
  EXPECT_EQ(redis.cluster->addresses[0].port, 7000);
  EXPECT_EQ(redis.url, "cluster:10.0.0.1:7000,10.0.0.2:7001");
  EXPECT_EQ(redis.host, "10.0.0.1");
  EXPECT_EQ(redis.port, 7000);
  EXPECT_EQ(redis.timeout_ms, 80);
  const std::string described = DescribeConfig(*result.config);
  EXPECT_NE(described.find("limiter: redis cluster, seeds 10.0.0.1:7000 10.0.0.2:7001, on error"),
            std::string::npos)
      << described;
}

// Moving from redis://h/3 to sentinel keeps the database: `db` in the sentinel section.
TEST(ConfigRedisModes, SentinelSelectsADatabaseAndAClusterPrefixHasNoBraces) {
  LoadResult result =
      WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m", "db": 3}})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->redis->db, 3);
  EXPECT_EQ(result.config->redis->url, "sentinel:m@127.0.0.1:26379/3");
  EXPECT_NE(DescribeConfig(*result.config).find("127.0.0.1:26379, db 3"), std::string::npos)
      << DescribeConfig(*result.config);
  EXPECT_TRUE(HasError(
      WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m", "db": -1}})"),
      "/redis/sentinel/db", ""));

  for (const char* prefix : {"tg{x}:", "a{}b:", "}"}) {
    LoadResult braces = WithRedis(R"({"cluster": {"addresses": ["127.0.0.1:7000"]},
                                     "key_prefix": ")" +
                                  std::string(prefix) + R"("})");
    EXPECT_TRUE(HasError(braces, "/redis/key_prefix", "must not contain '{' or '}'"))
        << prefix << "\n"
        << AllErrors(braces);
  }
  EXPECT_TRUE(WithRedis(R"({"url": "redis://127.0.0.1:6379/0", "key_prefix": "tg{x}:"})").ok());
}

// check-config shows which upstreams share a slot (a shard) in a cluster, and what joined them.
TEST(ConfigRedisModes, ClusterPrintsTheSlotGroups) {
  const std::string json = R"({"redis": {"cluster": {"addresses": ["10.0.0.1:7000"]}},
  "upstreams": {
    "devin": {"base_url": "http://a", "auth": {"type": "bearer", "secret_env": "TOKEN"},
              "limits": [{"name": "both", "rate": "10/s"}]},
    "devo": {"base_url": "http://b", "auth": {"type": "bearer", "secret_env": "TOKEN"},
             "limits": [{"name": "both", "rate": "10/s"}]},
    "search": {"base_url": "http://c", "auth": {"type": "bearer", "secret_env": "TOKEN"}}
  }
})";
  LoadResult result = LoadConfigString(json, DummySecrets().source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const std::string described = DescribeConfig(*result.config);
  EXPECT_NE(described.find("cluster slot groups: 2 "), std::string::npos) << described;
  EXPECT_NE(described.find("  {devin}: devin devo (joined by both)\n"), std::string::npos)
      << described;
  EXPECT_NE(described.find("  {search}: search\n"), std::string::npos) << described;

  LoadResult plain = WithRedis(R"({"url": "redis://127.0.0.1:6390/2"})");
  ASSERT_TRUE(plain.ok()) << AllErrors(plain);
  EXPECT_EQ(DescribeConfig(*plain.config).find("slot groups"), std::string::npos);
}

TEST(ConfigRedisModes, UrlStillWorksAndPrintsAsBefore) {
  LoadResult result = WithRedis(R"({"url": "redis://127.0.0.1:6390/2"})");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_FALSE(result.config->redis->sentinel);
  EXPECT_FALSE(result.config->redis->cluster);
  EXPECT_NE(DescribeConfig(*result.config).find("limiter: redis redis://127.0.0.1:6390/2, on "),
            std::string::npos)
      << DescribeConfig(*result.config);
}

TEST(ConfigRedisModes, ExactlyOneModeIsNeeded) {
  LoadResult none = WithRedis(R"({"timeout_ms": 50})");
  EXPECT_TRUE(HasError(none, "/redis", "exactly one of")) << AllErrors(none);

  LoadResult two = WithRedis(R"({"url": "redis://127.0.0.1:6379",
                                 "cluster": {"addresses": ["127.0.0.1:7000"]}})");
  EXPECT_TRUE(HasError(two, "/redis", "exactly one of")) << AllErrors(two);

  LoadResult three = WithRedis(R"({"url": "redis://127.0.0.1:6379",
                                   "sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m"},
                                   "cluster": {"addresses": ["127.0.0.1:7000"]}})");
  EXPECT_TRUE(HasError(three, "/redis", "exactly one of")) << AllErrors(three);

  // Each section present is still checked: every error at once.
  LoadResult both_bad = WithRedis(R"({"url": "redis://127.0.0.1:6379",
                                      "cluster": {"addresses": ["127.0.0.1"]}})");
  EXPECT_TRUE(HasError(both_bad, "/redis", "exactly one of")) << AllErrors(both_bad);
  EXPECT_TRUE(HasError(both_bad, "/redis/cluster/addresses/0", "host:port")) << AllErrors(both_bad);
}

TEST(ConfigRedisModes, BadAddressesNameTheirIndex) {
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "host name:1", ":26379", "[::1]:26379"}) {
    LoadResult sentinel = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379", ")" +
                                    std::string(bad) + R"("], "master": "m"}})");
    EXPECT_TRUE(HasError(sentinel, "/redis/sentinel/addresses/1", "host:port"))
        << bad << "\n"
        << AllErrors(sentinel);
    LoadResult cluster =
        WithRedis(R"({"cluster": {"addresses": [")" + std::string(bad) + R"("]}})");
    EXPECT_TRUE(HasError(cluster, "/redis/cluster/addresses/0", "host:port")) << bad << "\n"
                                                                              << AllErrors(cluster);
  }
}

TEST(ConfigRedisModes, SchemaErrors) {
  LoadResult empty = WithRedis(R"({"sentinel": {"addresses": [], "master": "m"}})");
  EXPECT_TRUE(HasError(empty, "/redis/sentinel/addresses", "at least 1")) << AllErrors(empty);
  // Reported once, by the schema: no "exactly one" on top of it.
  EXPECT_FALSE(HasError(empty, "/redis", "exactly one of")) << AllErrors(empty);

  LoadResult no_master = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"]}})");
  EXPECT_FALSE(no_master.ok());
  EXPECT_NE(AllErrors(no_master).find("master"), std::string::npos) << AllErrors(no_master);

  LoadResult empty_master =
      WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": ""}})");
  EXPECT_FALSE(empty_master.ok());
  EXPECT_NE(AllErrors(empty_master).find("/redis/sentinel/master"), std::string::npos)
      << AllErrors(empty_master);

  LoadResult unknown = WithRedis(R"({"cluster": {"addresses": ["127.0.0.1:7000"], "db": 1}})");
  EXPECT_FALSE(unknown.ok());
  EXPECT_NE(AllErrors(unknown).find("/redis/cluster"), std::string::npos) << AllErrors(unknown);

  LoadResult not_string = WithRedis(R"({"cluster": {"addresses": [7000]}})");
  EXPECT_FALSE(not_string.ok());
  EXPECT_NE(AllErrors(not_string).find("/redis/cluster/addresses/0"), std::string::npos)
      << AllErrors(not_string);
}

TEST(ConfigRedisModes, SentinelPasswordErrorsNameTheSentinelObject) {
  LoadResult unset = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m",
                                    "password_env": "NOPE"}})");
  EXPECT_TRUE(HasError(unset, "/redis/sentinel/password_env", "\"NOPE\" is not set"))
      << AllErrors(unset);

  LoadResult both = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m",
                                   "password_env": "REDIS_PASSWORD", "password_file": "/x"}})");
  EXPECT_FALSE(both.ok());
  EXPECT_NE(AllErrors(both).find("/redis/sentinel"), std::string::npos) << AllErrors(both);

  LoadResult user_only = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"],
                                        "master": "m", "username": "watcher"}})");
  EXPECT_TRUE(HasError(user_only, "/redis/sentinel/username", "password_env"))
      << AllErrors(user_only);

  FakeSecrets secrets = DummySecrets();
  secrets.files["/run/sentinel-pw"] = "from-a-file-sekrit\n";
  LoadResult file = WithRedis(R"({"sentinel": {"addresses": ["127.0.0.1:26379"], "master": "m",
                                   "password_file": "/run/sentinel-pw"}})",
                              secrets);
  ASSERT_TRUE(file.ok()) << AllErrors(file);
  EXPECT_NE(file.config->redis->sentinel->password.find("from-a-file-sekrit"), std::string::npos);
  EXPECT_EQ(DescribeConfig(*file.config).find("sekrit"), std::string::npos);
  for (const LoadResult* result : {&unset, &both, &user_only}) {
    EXPECT_EQ(AllErrors(*result).find("sekrit"), std::string::npos) << AllErrors(*result);
  }
}

}  // namespace
}  // namespace tollgate::config
