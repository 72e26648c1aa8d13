// Calendar quotas end to end (issue 12), against a real redis-server: a quota shared by two
// gateways is exact under concurrent requests of cost > 1; a refused request answers 429
// quota_exceeded with Retry-After up to the window's end and the RateLimit fields; whoami shows
// used/remaining; the Tollgate-Quota-Warning header and its metrics past warn_at (decisions and
// distinct callers); the in-process limiter enforces quotas too.
//
// Redis TIME cannot be moved: the window reset at reset_hour_utc is tested with an injected clock
// in tests/unit/policies_quota_test.cpp. Here the reset hour is chosen from the current UTC hour
// (the hour just begun, or the next one) so the current window is known, and the Redis key's
// expiry and Retry-After must be that window's end.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

const std::string kSelf = "/devin/v3beta1/enterprise/self";

// One upstream with `upstream_limits`; the data team's rule over all of it costs `cost`.
std::string QuotaConfig(const std::string& redis, const std::string& upstream_limits,
                        int cost = 1) {
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)" +
         redis + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"},
              "limits": )" +
         upstream_limits + R"(}
  },
  "roles": {
    "data": {"rules": [{"upstream": "devin", "path": "/**", "cost": )" +
         std::to_string(cost) + R"(}]},
    "ops": {"rules": [{"upstream": "devin", "path": "/**"}]}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["data"]},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["ops"]}
  }
})";
}

const std::string kRedis = R"(
  "redis": {"url": "${REDIS}", "timeout_ms": 2000, "on_error": "deny"},)";

// An integer reply of one command on a fresh connection (nullopt on anything else).
std::optional<long long> RedisInteger(int port, const std::vector<std::string>& argv) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return std::nullopt;
  }
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data()));
  std::optional<long long> out;
  if (reply != nullptr && reply->type == REDIS_REPLY_INTEGER) out = reply->integer;
  if (reply != nullptr) freeReplyObject(reply);
  redisFree(c);
  return out;
}

// End (Unix seconds) of the daily window holding `now` that starts at `hour`:00 UTC.
int64_t DayWindowEnd(int64_t now, int hour) {
  const int64_t offset = int64_t{hour} * 3600;
  const int64_t day = (now - offset) / 86400;  // now > offset: truncation is floor
  return (day + 1) * 86400 + offset;
}

int64_t UnixNow() { return static_cast<int64_t>(std::time(nullptr)); }

// The whoami entry named `name`, as a JSON pointer prefix ("" if absent).
std::string WhoamiEntry(const Json& whoami, const std::string& name) {
  for (size_t i = 0; i < whoami.Size("/buckets"); ++i) {
    std::string at = "/buckets/" + std::to_string(i);
    if (whoami.String(at + "/name") == name) return at;
  }
  return "";
}

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  std::unique_ptr<GatewayProcess> StartGateway(const std::string& config) {
    GatewayOptions o = StandardOptions(fake_, config);
    o.redis = redis_.url();
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  HttpResponse Get(const GatewayProcess& g, const std::string& path,
                   const std::string& key = kDataKey) {
    return Http("GET", g.url() + path, Bearer(key));
  }

  FakeUpstream fake_;
  RedisServer redis_;
};

TEST_F(QuotaTest, AQuotaIsExactAcrossTwoGatewaysUnderConcurrency) {
  // 100 ACUs a month, 7 a call: 14 calls (98) fit, never a 15th, whichever replica asks.
  const std::string config =
      QuotaConfig(kRedis, R"([{"name": "acu", "quota": "100/month", "scope": "shared"}])", 7);
  auto a = StartGateway(config);
  auto b = StartGateway(config);
  ASSERT_TRUE(a->started() && b->started());
  std::vector<HttpRequest> requests;
  for (int i = 0; i < 60; ++i) {
    HttpRequest r;
    r.url = (i % 2 == 0 ? *a : *b).url() + kSelf;
    r.headers = Bearer(kDataKey);
    requests.push_back(std::move(r));
  }
  const int64_t before = UnixNow();
  std::vector<HttpResponse> responses = HttpParallel(requests, milliseconds(60000));
  ASSERT_EQ(responses.size(), 60u);
  size_t allowed = 0;
  std::optional<HttpResponse> refused;
  for (const auto& r : responses) {
    if (r.status == 200) ++allowed;
    if (r.status == 429 && !refused) refused = r;
  }
  EXPECT_EQ(allowed, 14u);
  EXPECT_EQ(fake_.Stats().requests, 14);
  // The sum reserved in Redis is exactly 14 * 7: refused calls took nothing.
  const Json whoami = Json::Parse(Get(*a, "/_tollgate/whoami").body);
  const std::string at = WhoamiEntry(whoami, "acu");
  ASSERT_FALSE(at.empty());
  EXPECT_TRUE(whoami.Bool(at + "/quota"));
  EXPECT_EQ(whoami.Int(at + "/used"), 98);
  const rapidjson::Value* remaining = whoami.Get(at + "/remaining");
  ASSERT_TRUE(remaining != nullptr && remaining->IsNumber());
  EXPECT_EQ(remaining->GetDouble(), 2);
  EXPECT_EQ(whoami.Int(at + "/burst"), 100);

  ASSERT_TRUE(refused.has_value());
  const Json error = Json::Parse(refused->body);
  EXPECT_EQ(error.String("/error/reason"), "quota_exceeded") << refused->body;
  EXPECT_EQ(error.String("/error/bucket"), "acu") << refused->body;
  // Retry-After: up to the month's end (between 1 s and 31 days, and not past the 1st).
  const std::string retry = refused->Header("retry-after");
  ASSERT_FALSE(retry.empty());
  const int64_t seconds = std::stoll(retry);
  EXPECT_GE(seconds, 1);
  EXPECT_LE(seconds, 31 * 86400);
  const time_t reset_at = static_cast<time_t>(before + seconds);
  std::tm tm{};
  gmtime_r(&reset_at, &tm);
  EXPECT_TRUE((tm.tm_mday == 1 && tm.tm_hour == 0 && tm.tm_min < 2) ||
              (tm.tm_mday != 1 && tm.tm_hour == 23 && tm.tm_min >= 58))
      << "Retry-After " << seconds << " does not end at a month's start";
  EXPECT_NE(refused->Header("ratelimit-policy").find("\"acu\";q=100;w=2592000"), std::string::npos)
      << refused->Header("ratelimit-policy");
  EXPECT_NE(refused->Header("ratelimit").find("\"acu\";r=2;t="), std::string::npos)
      << refused->Header("ratelimit");
}

TEST_F(QuotaTest, AnAcuQuotaReadFromTheBodyIsExactAcrossTwoGateways) {
  // The issue's case: session creates whose cost is the body's max_acu_limit (after the clamp
  // to 50), against a monthly ACU quota of 300 shared by two replicas. However the concurrent
  // creates interleave, the ACUs the upstream was asked for never exceed the quota, equal what
  // the quota counts as used, and a refusal means what was left could not pay for that create.
  const std::string config = R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)" +
                             kRedis + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}}
  },
  "roles": {
    "data": {"rules": [
      {"upstream": "devin", "methods": ["POST"], "path": "/v3/organizations/{org}/sessions",
       "body": {"/max_acu_limit": {"max": 50, "default": 10, "on_exceed": "clamp"}},
       "cost": "/max_acu_limit",
       "limits": [{"name": "acu-month", "quota": "300/month", "reset_hour_utc": 8,
                   "scope": "caller"}]},
      {"upstream": "devin", "path": "/**"}]}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["data"]},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["data"]}
  }
})";
  auto a = StartGateway(config);
  auto b = StartGateway(config);
  ASSERT_TRUE(a->started() && b->started());
  std::vector<HttpRequest> requests;
  for (int i = 0; i < 40; ++i) {
    HttpRequest r;
    r.method = "POST";
    r.url = (i % 2 == 0 ? *a : *b).url() + "/devin/v3/organizations/org-1/sessions";
    r.headers = Bearer(kDataKey);
    r.headers.emplace_back("Content-Type", "application/json");
    // 1..49 ACUs, some over the cap (clamped to 50), some absent (the default, 10).
    const int asked = i % 5 == 4 ? 90 : (i * 17) % 49 + 1;
    r.body = i % 7 == 6 ? R"({"prompt":"x"})"
                        : R"({"prompt":"x","max_acu_limit":)" + std::to_string(asked) + "}";
    requests.push_back(std::move(r));
  }
  std::vector<HttpResponse> responses = HttpParallel(requests, milliseconds(60000));
  ASSERT_EQ(responses.size(), 40u);
  int refused = 0;
  int smallest_refused = 1000;
  for (size_t i = 0; i < responses.size(); ++i) {
    if (responses[i].status == 429) {
      ++refused;
      const Json body = Json::Parse(requests[i].body);
      const int64_t asked =
          body.Get("/max_acu_limit") ? std::min<int64_t>(body.Int("/max_acu_limit"), 50) : 10;
      smallest_refused = std::min<int>(smallest_refused, static_cast<int>(asked));
    } else {
      EXPECT_EQ(responses[i].status, 200) << responses[i].body;
    }
  }
  int64_t forwarded = 0;
  for (const auto& seen : fake_.Requests()) {
    forwarded += Json::Parse(seen.body).Int("/max_acu_limit");
  }
  EXPECT_GT(refused, 0);  // 40 creates of ~20 ACUs cannot all fit in 300
  EXPECT_LE(forwarded, 300);
  const Json whoami = Json::Parse(Get(*b, "/_tollgate/whoami").body);
  const std::string at = WhoamiEntry(whoami, "acu-month");
  ASSERT_FALSE(at.empty());
  EXPECT_EQ(whoami.Int(at + "/used"), forwarded);
  // What was left at the end could not pay for the cheapest refused create.
  EXPECT_LT(300 - forwarded, smallest_refused);
}

TEST_F(QuotaTest, TheWindowIsTheOneStartingAtTheConfiguredHour) {
  // reset_hour_utc = the hour after this one: the window began yesterday at that hour and ends
  // within the hour. (If the hour turns during the test, the window is the one just begun.)
  const int64_t now = UnixNow();
  const int next_hour = static_cast<int>((now / 3600 + 1) % 24);
  const std::string config =
      QuotaConfig(kRedis, R"([{"name": "daily", "quota": "2/day", "reset_hour_utc": )" +
                              std::to_string(next_hour) + R"(, "scope": "caller"}])");
  auto g = StartGateway(config);
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  HttpResponse third = Get(*g, kSelf);
  ASSERT_EQ(third.status, 429) << third.body;
  const int64_t after = UnixNow();
  const int64_t end = DayWindowEnd(now, next_hour);
  const int64_t end_after = DayWindowEnd(after, next_hour);
  const auto expires_ms =
      RedisInteger(redis_.port(), {"PEXPIRETIME", "tollgate:v2:quota:daily:data-team"});
  ASSERT_TRUE(expires_ms.has_value());
  EXPECT_TRUE(*expires_ms == end * 1000 || *expires_ms == end_after * 1000)
      << *expires_ms << " vs " << end * 1000;
  const int64_t retry = std::stoll(third.Header("retry-after"));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, end_after - now + 1);
  if (end == end_after) {
    EXPECT_LE(retry, 3600);
  }
  // The other caller's window is its own.
  EXPECT_EQ(Get(*g, kSelf, kOpsKey).status, 200);
}

TEST_F(QuotaTest, PastWarnAtAnswersCarryTheWarningAndAMetricCountsIt) {
  const std::string config = QuotaConfig(
      kRedis, R"([{"name": "acu", "quota": "10/week", "warn_at": 0.5, "scope": "caller"}])", 2);
  auto g = StartGateway(config);
  ASSERT_TRUE(g->started());
  HttpResponse r = Get(*g, kSelf);  // used 2
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("tollgate-quota-warning"), "");
  r = Get(*g, kSelf);  // used 4
  EXPECT_EQ(r.Header("tollgate-quota-warning"), "");
  r = Get(*g, kSelf);  // used 6 >= 5
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("tollgate-quota-warning"), "\"acu\";used=6;limit=10");
  r = Get(*g, kSelf);  // used 8
  EXPECT_EQ(r.Header("tollgate-quota-warning"), "\"acu\";used=8;limit=10");
  const std::string metrics = Http("GET", g->admin_url() + "/metrics").body;
  EXPECT_EQ(MetricValue(metrics, "tollgate_ratelimit_decisions_total",
                        {{"bucket", "acu"}, {"result", "quota_warning"}}),
            2);
  // The gauge counts callers, not requests: one so far; ops-team (cost 1) passes warn_at too.
  EXPECT_EQ(MetricValue(metrics, "tollgate_quota_warning_callers", {{"limit", "acu"}}), 1)
      << metrics;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Get(*g, kSelf, kOpsKey).status, 200);
  EXPECT_EQ(Get(*g, kSelf).status, 200);  // data-team again (used 10): still one caller
  const std::string after = Http("GET", g->admin_url() + "/metrics").body;
  EXPECT_EQ(MetricValue(after, "tollgate_quota_warning_callers", {{"limit", "acu"}}), 2) << after;
}

TEST_F(QuotaTest, TheInProcessLimiterEnforcesQuotas) {
  auto g =
      StartGateway(QuotaConfig("", R"([{"name": "acu", "quota": "5/day", "scope": "caller"}])", 2));
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  HttpResponse r = Get(*g, kSelf);
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "quota_exceeded");
  EXPECT_LE(std::stoll(r.Header("retry-after")), 86400);
  EXPECT_EQ(fake_.Stats().requests, 2);
}

}  // namespace
}  // namespace tollgate::testing
