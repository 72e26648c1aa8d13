#include <gtest/gtest.h>

#include "config/loader.h"
#include "config/syntax.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::FakeSecrets;

// Sets every field the model has, most of them away from their defaults.
constexpr const char* kFullConfig = R"json({
  "listen": "0.0.0.0:8443",
  "admin_listen": "127.0.0.1:9091",
  "threads": 4,
  "max_body_bytes": 2048,
  "max_header_bytes": 8192,
  "drain_timeout_ms": 2500,
  "upstream_threads": 2,
  "redis": {"url": "redis://redis.internal:6380/2", "username": "tollgate",
            "password_file": "/run/secrets/redis", "timeout_ms": 75, "on_error": "deny",
            "key_prefix": "tg:"},
  "audit": {"file": "/var/log/tollgate/audit.log", "redis_stream": "tg:audit",
            "stream_maxlen": 5000, "queue_capacity": 1024},
  "upstreams": {
    "devin": {
      "base_url": "https://api.devin.ai/",
      "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"},
      "timeout_ms": 20000, "connect_timeout_ms": 1500,
      "limits": [{"name": "devin-all", "rate": "20/s", "burst": 40, "scope": "shared"}]
    },
    "devo": {
      "base_url": "https://api-us.devo.com",
      "auth": {"type": "header", "header": "standAloneToken", "secret_file": "/run/secrets/devo"}
    },
    "devo-query": {
      "base_url": "https://apiv2-us.devo.com",
      "auth": {"type": "devo_hmac", "key_env": "DEVO_API_KEY", "secret_env": "DEVO_API_SECRET"}
    }
  },
  "roles": {
    "operator": {"rules": [
      {"upstream": "devin", "methods": ["POST", "GET"], "path": "/v3beta1/organizations/{org_id}/sessions",
       "where": {"org_id": "caller.devin_orgs"}, "cost": 2,
       "limits": [{"name": "sessions", "rate": "50/day", "scope": "caller", "shadow": true}],
       "redact": ["/token", "/*/api_key"]},
      {"upstream": "devin", "path": "/v3beta1/**", "effect": "deny"}
    ]},
    "empty": {"rules": []}
  },
  "callers": {
    "data-team": {
      "key_sha256": ["DAFF0A6505B26E14AC642A2CBC3A08B61BE19B30D4C277664FC1CB3725DE4121",
                     "a2b18d40408f8e34c7d000a55f44a39e7286ac8e57bc0aac465077cee3247d11"],
      "roles": ["operator", "empty"],
      "attributes": {"devin_orgs": ["org-1", "org-2"], "devo_accounts": ["*"]},
      "limits": [{"name": "data-team", "rate": "120/min"}],
      "expires": "2027-01-01T00:00:00Z",
      "disabled": true
    }
  }
})json";

FakeSecrets FullSecrets() {
  FakeSecrets secrets = DummySecrets();
  secrets.files["/run/secrets/redis"] = "redis-pw\n";
  secrets.files["/run/secrets/devo"] = "devo-token\r\n";
  return secrets;
}

TEST(LoadConfig, FullConfigFillsEveryModelField) {
  FakeSecrets secrets = FullSecrets();
  LoadResult result = LoadConfigString(kFullConfig, secrets.source(), "/etc/tollgate.json");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Config& config = *result.config;
  EXPECT_EQ(config.source_path, "/etc/tollgate.json");
  EXPECT_EQ(config.listen, "0.0.0.0:8443");
  EXPECT_EQ(config.admin_listen, "127.0.0.1:9091");
  EXPECT_EQ(config.threads, 4);
  EXPECT_EQ(config.max_body_bytes, 2048u);
  EXPECT_EQ(config.max_header_bytes, 8192u);
  EXPECT_EQ(config.drain_timeout_ms, 2500);
  EXPECT_EQ(config.upstream_threads, 2);

  ASSERT_TRUE(config.redis);
  EXPECT_EQ(config.redis->url, "redis://redis.internal:6380/2");
  EXPECT_EQ(config.redis->host, "redis.internal");
  EXPECT_EQ(config.redis->port, 6380);
  EXPECT_EQ(config.redis->db, 2);
  EXPECT_EQ(config.redis->username, "tollgate");
  EXPECT_EQ(config.redis->password, "redis-pw");
  EXPECT_EQ(config.redis->timeout_ms, 75);
  EXPECT_EQ(config.redis->on_error, RedisOnError::kDeny);
  EXPECT_EQ(config.redis->key_prefix, "tg:");

  EXPECT_EQ(config.audit.file, "/var/log/tollgate/audit.log");
  EXPECT_EQ(config.audit.redis_stream, "tg:audit");
  EXPECT_EQ(config.audit.stream_maxlen, 5000u);
  EXPECT_EQ(config.audit.queue_capacity, 1024u);

  ASSERT_EQ(config.upstreams.size(), 3u);
  const Upstream& devin = config.upstreams.at("devin");
  EXPECT_EQ(devin.name, "devin");
  EXPECT_EQ(devin.base_url, "https://api.devin.ai");
  EXPECT_EQ(devin.auth.type, AuthType::kBearer);
  EXPECT_EQ(devin.auth.secret, "sekrit-value-of-DEVIN_SERVICE_USER_TOKEN");
  EXPECT_EQ(devin.auth.secret_source, "env:DEVIN_SERVICE_USER_TOKEN");
  EXPECT_EQ(devin.timeout_ms, 20000);
  EXPECT_EQ(devin.connect_timeout_ms, 1500);
  ASSERT_EQ(devin.limits.size(), 1u);
  EXPECT_EQ(devin.limits[0].name, "devin-all");
  EXPECT_EQ(devin.limits[0].rate.tokens, 20u);
  EXPECT_EQ(devin.limits[0].rate.period_seconds, 1u);
  EXPECT_EQ(devin.limits[0].burst, 40u);
  EXPECT_EQ(devin.limits[0].scope, LimitScope::kShared);
  EXPECT_FALSE(devin.limits[0].shadow);

  const Upstream& devo = config.upstreams.at("devo");
  EXPECT_EQ(devo.auth.type, AuthType::kHeader);
  EXPECT_EQ(devo.auth.header, "standAloneToken");
  EXPECT_EQ(devo.auth.secret, "devo-token");
  EXPECT_EQ(devo.auth.secret_source, "file:/run/secrets/devo");
  EXPECT_EQ(devo.timeout_ms, 30000);
  EXPECT_EQ(devo.connect_timeout_ms, 3000);

  const Upstream& query = config.upstreams.at("devo-query");
  EXPECT_EQ(query.auth.type, AuthType::kDevoHmac);
  EXPECT_EQ(query.auth.key, "sekrit-value-of-DEVO_API_KEY");
  EXPECT_EQ(query.auth.secret, "sekrit-value-of-DEVO_API_SECRET");
  EXPECT_EQ(query.auth.secret_source, "env:DEVO_API_SECRET");

  ASSERT_EQ(config.roles.size(), 2u);
  const Role& role = config.roles.at("operator");
  EXPECT_EQ(role.name, "operator");
  ASSERT_EQ(role.rules.size(), 2u);
  const Rule& create = role.rules[0];
  EXPECT_EQ(create.role, "operator");
  EXPECT_EQ(create.index, 0u);
  EXPECT_EQ(create.pointer, "/roles/operator/rules/0");
  EXPECT_EQ(create.upstream, "devin");
  EXPECT_EQ(create.methods, (std::vector<std::string>{"POST", "GET"}));
  EXPECT_EQ(create.path, "/v3beta1/organizations/{org_id}/sessions");
  EXPECT_EQ(create.effect, Effect::kAllow);
  EXPECT_EQ(create.where, (std::map<std::string, std::string>{{"org_id", "devin_orgs"}}));
  EXPECT_EQ(create.cost, 2u);
  ASSERT_EQ(create.limits.size(), 1u);
  EXPECT_EQ(create.limits[0].name, "sessions");
  EXPECT_EQ(create.limits[0].rate.tokens, 50u);
  EXPECT_EQ(create.limits[0].rate.period_seconds, 86400u);
  EXPECT_EQ(create.limits[0].burst, 50u);  // defaults to N
  EXPECT_EQ(create.limits[0].scope, LimitScope::kCaller);
  EXPECT_TRUE(create.limits[0].shadow);
  EXPECT_EQ(create.redact, (std::vector<std::string>{"/token", "/*/api_key"}));
  const Rule& deny = role.rules[1];
  EXPECT_EQ(deny.index, 1u);
  EXPECT_EQ(deny.effect, Effect::kDeny);
  EXPECT_TRUE(deny.methods.empty());
  EXPECT_EQ(deny.cost, 1u);
  EXPECT_TRUE(config.roles.at("empty").rules.empty());

  ASSERT_EQ(config.callers.size(), 1u);
  const Caller& caller = config.callers.at("data-team");
  EXPECT_EQ(caller.name, "data-team");
  EXPECT_EQ(caller.key_sha256,
            (std::vector<std::string>{
                "daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121",
                "a2b18d40408f8e34c7d000a55f44a39e7286ac8e57bc0aac465077cee3247d11"}));
  EXPECT_EQ(caller.roles, (std::vector<std::string>{"operator", "empty"}));
  EXPECT_EQ(caller.attributes.at("devin_orgs"), (std::vector<std::string>{"org-1", "org-2"}));
  EXPECT_EQ(caller.attributes.at("devo_accounts"), std::vector<std::string>{"*"});
  ASSERT_EQ(caller.limits.size(), 1u);
  EXPECT_EQ(caller.limits[0].rate.period_seconds, 60u);
  EXPECT_EQ(caller.limits[0].burst, 120u);
  EXPECT_EQ(caller.limits[0].scope, LimitScope::kCaller);  // a caller's own limit
  ASSERT_TRUE(caller.expires);
  EXPECT_EQ(syntax::FormatRfc3339(*caller.expires), "2027-01-01T00:00:00Z");
  EXPECT_TRUE(caller.disabled);
}

TEST(LoadConfig, MinimalConfigTakesTheModelDefaults) {
  FakeSecrets secrets = DummySecrets();
  LoadResult result = LoadConfigString(
      R"({"upstreams": {"u": {"base_url": "http://127.0.0.1:1", "auth": {"type": "bearer",
          "secret_env": "TOKEN"}}}})",
      secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Config defaults;
  const Config& config = *result.config;
  EXPECT_EQ(config.listen, defaults.listen);
  EXPECT_EQ(config.admin_listen, "");
  EXPECT_EQ(config.threads, defaults.threads);
  EXPECT_EQ(config.max_body_bytes, defaults.max_body_bytes);
  EXPECT_EQ(config.max_header_bytes, defaults.max_header_bytes);
  EXPECT_FALSE(config.redis);
  EXPECT_EQ(config.audit.file, "-");
  EXPECT_TRUE(config.roles.empty());
  EXPECT_TRUE(config.callers.empty());
}

TEST(LoadConfig, ExampleConfigLoads) {
  FakeSecrets secrets = DummySecrets();
  LoadResult result = LoadConfigFile(
      std::string(TOLLGATE_SOURCE_DIR) + "/config/tollgate.example.json", secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Config& config = *result.config;
  EXPECT_EQ(config.upstreams.at("devin").base_url, "https://api.devin.ai");
  EXPECT_EQ(config.upstreams.at("devo").base_url, "https://api-us.devo.com");
  EXPECT_EQ(config.upstreams.at("devo-query").auth.type, AuthType::kDevoHmac);
  for (const char* role : {"devin-viewer", "devin-operator", "devin-billing", "devin-auditor",
                           "devin-admin", "devo-token-reader", "devo-token-admin"}) {
    EXPECT_TRUE(config.roles.count(role)) << role;
  }
  EXPECT_EQ(config.callers.size(), 2u);
}

TEST(LoadConfig, DemoConfigLoadsWithTheDocumentedKey) {
  FakeSecrets secrets = DummySecrets();
  LoadResult result =
      LoadConfigFile(std::string(TOLLGATE_SOURCE_DIR) + "/config/demo.json", secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Config& config = *result.config;
  EXPECT_EQ(config.listen, "127.0.0.1:8080");
  EXPECT_EQ(config.admin_listen, "127.0.0.1:9090");
  EXPECT_EQ(config.upstreams.at("devin").base_url, "http://127.0.0.1:18081");
  EXPECT_EQ(config.upstreams.at("devo").base_url, "http://127.0.0.1:18081");
  // sha256("tg_demo_key_not_secret"), as the README's quick start sends it.
  EXPECT_EQ(
      config.callers.at("demo").key_sha256,
      std::vector<std::string>{"0453cbc2d7800b0f54048cb5e69a9794690e573f6925abb69a33ca25e51f827f"});
  EXPECT_FALSE(config.callers.at("demo").limits.empty());
}

TEST(LoadConfig, MissingFileIsAnError) {
  LoadResult result = LoadConfigFile("/nonexistent/tollgate.json", DummySecrets().source());
  ASSERT_FALSE(result.ok());
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_NE(result.errors[0].message.find("/nonexistent/tollgate.json"), std::string::npos);
}

TEST(DescribeConfig, SummarisesWithoutSecrets) {
  FakeSecrets secrets = FullSecrets();
  LoadResult result = LoadConfigString(kFullConfig, secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  std::string text = DescribeConfig(*result.config);
  for (const char* expected :
       {"0.0.0.0:8443", "127.0.0.1:9091", "redis://redis.internal:6380/2", "https://api.devin.ai",
        "bearer from env:DEVIN_SERVICE_USER_TOKEN",
        "header standAloneToken from file:/run/secrets/devo", "devo_hmac from env:DEVO_API_SECRET",
        "devin-all 20/s burst 40 shared", "operator: 2 rule(s), 1 deny",
        "sessions 50/day burst 50 per caller (shadow)",
        "data-team: roles [operator, empty], 2 key(s)", "expires 2027-01-01T00:00:00Z", "DISABLED",
        "redis stream tg:audit"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
  for (const auto& [name, value] : secrets.env) {
    EXPECT_EQ(text.find(value), std::string::npos) << name;
  }
  EXPECT_EQ(text.find("redis-pw"), std::string::npos);
  EXPECT_EQ(text.find("devo-token"), std::string::npos);
}

TEST(DescribeConfig, SaysInProcessLimiterWithoutRedis) {
  FakeSecrets secrets = DummySecrets();
  LoadResult result =
      LoadConfigFile(std::string(TOLLGATE_SOURCE_DIR) + "/config/demo.json", secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  std::string text = DescribeConfig(*result.config);
  EXPECT_NE(text.find("in-process limiter"), std::string::npos) << text;
  EXPECT_NE(text.find("audit: stdout"), std::string::npos) << text;
  EXPECT_NE(text.find("demo: roles [demo-devin, demo-devo], 1 key(s)"), std::string::npos) << text;
}

// check-config lists each admin token's name and scopes, never its hash.
TEST(DescribeConfig, ListsAdminTokenNamesAndScopesNeverTheirHashes) {
  const std::string hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  std::string json = R"({"upstreams": {"u": {"base_url": "http://127.0.0.1:1",
      "auth": {"type": "bearer", "secret_env": "TOKEN"}}},
      "admin": {"tokens": [{"name": "ops", "sha256": ")" +
                     hash + R"(", "scopes": ["reload", "read"]}]}})";
  LoadResult result = LoadConfigString(json, DummySecrets().source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  std::string text = DescribeConfig(*result.config);
  EXPECT_NE(text.find("admin tokens (1):\n  ops: scopes [reload, read]"), std::string::npos)
      << text;
  EXPECT_EQ(text.find(hash), std::string::npos) << text;
  EXPECT_EQ(text.find(hash.substr(0, 8)), std::string::npos) << text;

  LoadResult none = LoadConfigFile(std::string(TOLLGATE_SOURCE_DIR) + "/config/demo.json",
                                   DummySecrets().source());
  ASSERT_TRUE(none.ok()) << AllErrors(none);
  EXPECT_NE(DescribeConfig(*none.config).find("admin tokens (0): none"), std::string::npos);
}

}  // namespace
}  // namespace tollgate::config
