// Rate limits end to end (issue 5), against a real redis-server: a shared bucket is exact across
// two gateways; per-caller buckets, cost, daily quotas and shadow limits; the RateLimit headers
// and the 429 envelope; Redis dead, killed and restarted under both on_error modes; an upstream
// 429 cooling that upstream for every replica; the in-process limiter without Redis.
//
// Rates such as "1/h" make refill during a test zero, so every expected count is exact.
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <functional>
#include <optional>
#include <thread>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSelf = "/devin/v3beta1/enterprise/self";
const std::string kOrganizations = "/devin/v3beta1/enterprise/organizations";
const std::string kAllDevin = R"([{"upstream": "devin", "path": "/**"}])";

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(10000)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// What a test varies in the config; the rest is the shape of StandardConfig with one upstream.
struct LimitConfig {
  std::string redis;                // the whole "redis" member and its comma; "" = memory limiter
  std::string devin_limits = "[]";  // upstream-wide limits
  std::string data_rules = kAllDevin;
  std::string data_limits = "[]";  // the data team's own limits
  std::string ops_limits = "[]";

  std::string Render() const {
    return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)" +
           redis + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"},
              "limits": )" +
           devin_limits + R"(}
  },
  "roles": {
    "data": {"rules": )" +
           data_rules + R"(},
    "ops": {"rules": )" +
           kAllDevin + R"(}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["data"], "limits": )" +
           data_limits + R"(},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["ops"], "limits": )" +
           ops_limits + R"(}
  }
})";
  }
};

std::string RedisMember(const std::string& on_error, const std::string& url = "${REDIS}") {
  return R"(
  "redis": {"url": ")" +
         url + R"(", "timeout_ms": 200, "on_error": ")" + on_error + R"("},)";
}

double Metric(const GatewayProcess& g, const std::string& series) {
  return MetricValue(Http("GET", g.admin_url() + "/metrics").body, series).value_or(-1);
}

// One command on a fresh connection to the test's Redis; the reply as text ("" for nil).
std::optional<std::string> RedisCall(int port, const std::vector<std::string>& argv) {
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
  std::optional<std::string> out;
  if (reply != nullptr) {
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
      out = std::string(reply->str, reply->len);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(reply->integer);
    } else if (reply->type == REDIS_REPLY_NIL) {
      out = "";
    }
    freeReplyObject(reply);
  }
  redisFree(c);
  return out;
}

// Makes Redis log every command it runs in its slow log (read back by LoggedCommands).
bool LogEveryRedisCommand(int port) {
  return RedisCall(port, {"CONFIG", "SET", "slowlog-max-len", "100000"}) == "OK" &&
         RedisCall(port, {"CONFIG", "SET", "slowlog-log-slower-than", "0"}) == "OK";
}

// Every command in Redis's slow log, oldest first, as its arguments.
std::vector<std::vector<std::string>> LoggedCommands(int port) {
  std::vector<std::vector<std::string>> out;
  redisContext* c = redisConnect("127.0.0.1", port);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return out;
  }
  auto* reply = static_cast<redisReply*>(redisCommand(c, "SLOWLOG GET -1"));
  if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY) {
    for (size_t i = reply->elements; i-- > 0;) {
      const redisReply* entry = reply->element[i];
      if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 4) continue;
      const redisReply* args = entry->element[3];
      std::vector<std::string> command;
      for (size_t a = 0; a < args->elements; ++a) {
        command.emplace_back(args->element[a]->str, args->element[a]->len);
      }
      out.push_back(std::move(command));
    }
  }
  if (reply != nullptr) freeReplyObject(reply);
  redisFree(c);
  return out;
}

// The whoami entry of the bucket named `name`, as a JSON pointer prefix ("" if absent).
std::string WhoamiBucket(const Json& whoami, const std::string& name) {
  for (size_t i = 0; i < whoami.Size("/buckets"); ++i) {
    std::string at = "/buckets/" + std::to_string(i);
    if (whoami.String(at + "/name") == name) return at;
  }
  return "";
}

double Remaining(const Json& whoami, const std::string& name) {
  std::string at = WhoamiBucket(whoami, name);
  const rapidjson::Value* v = at.empty() ? nullptr : whoami.Get(at + "/remaining");
  return v && v->IsNumber() ? v->GetDouble() : -1;
}

size_t CountStatus(const std::vector<HttpResponse>& responses, long status) {
  size_t n = 0;
  for (const auto& r : responses) n += r.status == status ? 1 : 0;
  return n;
}

bool IsWholeSeconds(const std::string& value) {
  return !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
}

// A 429 made by the gateway: the envelope with the bucket and a whole-second Retry-After.
void ExpectLocal429(const HttpResponse& r, const std::string& bucket) {
  ASSERT_EQ(r.status, 429) << r.body;
  Json j = Json::Parse(r.body);
  EXPECT_EQ(j.Int("/error/code"), 429) << r.body;
  EXPECT_EQ(j.String("/error/reason"), "rate_limited") << r.body;
  EXPECT_EQ(j.String("/error/bucket"), bucket) << r.body;
  EXPECT_GT(j.Int("/error/retry_after_ms", 0), 0) << r.body;
  EXPECT_EQ(j.String("/error/request_id"), r.Header("x-request-id"));
  std::string retry = r.Header("retry-after");
  ASSERT_TRUE(IsWholeSeconds(retry)) << "Retry-After: " << retry;
  EXPECT_GE(std::stoll(retry), 1);
}

class LimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  std::unique_ptr<GatewayProcess> StartGateway(const LimitConfig& config) {
    GatewayOptions o = StandardOptions(fake_, config.Render());
    o.redis = redis_.url();
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  HttpResponse Get(const GatewayProcess& g, const std::string& path,
                   const std::string& key = kDataKey, HeaderList headers = {}) {
    headers.emplace_back("Authorization", "Bearer " + key);
    return Http("GET", g.url() + path, headers);
  }

  Json Whoami(const GatewayProcess& g, const std::string& key = kDataKey) {
    HttpResponse r = Get(g, "/_tollgate/whoami", key);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::Parse(r.body);
  }

  // The audit line of the request sent with X-Request-Id `id`, waiting for the writer.
  std::optional<Json> AuditLineFor(const GatewayProcess& g, const std::string& id) {
    std::optional<Json> found;
    WaitUntil([&] {
      for (const Json& line : g.AuditLines()) {
        if (line.String("/request_id") == id) found = line;
      }
      return found.has_value();
    });
    return found;
  }

  size_t UpstreamCallsUnder(const std::string& prefix) {
    size_t n = 0;
    for (const auto& r : fake_.Requests()) n += r.path.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  }

  FakeUpstream fake_;
  RedisServer redis_;
};

TEST_F(LimitTest, ASharedBucketIsExactAcrossTwoGatewaysUnderConcurrency) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.devin_limits = R"([{"name": "devin-all", "rate": "1/h", "burst": 20, "scope": "shared"}])";
  auto a = StartGateway(c);
  auto b = StartGateway(c);
  ASSERT_TRUE(a->started() && b->started());

  std::vector<HttpRequest> requests;
  for (int i = 0; i < 300; ++i) {
    const GatewayProcess& g = i % 2 == 0 ? *a : *b;
    HttpRequest r;
    r.url = g.url() + kSelf;
    r.headers = Bearer(i % 3 == 0 ? kOpsKey : kDataKey);
    requests.push_back(std::move(r));
  }
  std::vector<HttpResponse> responses = HttpParallel(requests, milliseconds(60000));
  ASSERT_EQ(responses.size(), 300u);
  // 1 token an hour refills nothing within the test: exactly the burst gets through.
  EXPECT_EQ(CountStatus(responses, 200), 20u);
  EXPECT_EQ(CountStatus(responses, 429), 280u);
  EXPECT_EQ(fake_.Stats().requests, 20);
  for (const auto& r : responses) {
    if (r.status == 429) {
      ExpectLocal429(r, "devin-all");
      EXPECT_GE(std::stoll(r.Header("retry-after")), 3000);  // one token of "1/h"
      EXPECT_EQ(r.Header("ratelimit-remaining"), "0");
      break;
    }
  }

  // Every 429 is in one of the two audit logs.
  auto lines_a = a->WaitForAuditLines(150);
  auto lines_b = b->WaitForAuditLines(150);
  ASSERT_EQ(lines_a.size(), 150u);
  ASSERT_EQ(lines_b.size(), 150u);
  size_t limited = 0, allowed = 0;
  for (const auto* lines : {&lines_a, &lines_b}) {
    for (const Json& line : *lines) {
      ASSERT_TRUE(line.ok());
      if (line.String("/decision") == "rate_limited") {
        ++limited;
        EXPECT_EQ(line.String("/bucket"), "devin-all");
        EXPECT_EQ(line.Int("/status"), 429);
      } else if (line.String("/decision") == "allowed") {
        ++allowed;
      }
      EXPECT_FALSE(line.Has("/limiter_fallback"));
    }
  }
  EXPECT_EQ(limited, 280u);
  EXPECT_EQ(allowed, 20u);
}

TEST_F(LimitTest, CallerScopedBucketsDoNotAffectOtherCallers) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.devin_limits = R"([{"name": "per-caller", "rate": "1/h", "burst": 3, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get(*g, kSelf).status, 200) << i;
  ExpectLocal429(Get(*g, kSelf), "per-caller");
  // The other caller's bucket of the same limit is untouched.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get(*g, kSelf, kOpsKey).status, 200) << i;
  ExpectLocal429(Get(*g, kSelf, kOpsKey), "per-caller");
  EXPECT_EQ(fake_.Stats().requests, 6);
  // One key per caller, as snapshot.cpp names them (behind the state format's version).
  EXPECT_EQ(RedisCall(redis_.port(), {"EXISTS", "tollgate:v2:bucket:per-caller:data-team"}), "1");
  EXPECT_EQ(RedisCall(redis_.port(), {"EXISTS", "tollgate:v2:bucket:per-caller:ops-team"}), "1");
}

TEST_F(LimitTest, CostIsTakenFromTheBucket) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.data_rules = R"([
      {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/self", "cost": 5},
      {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/organizations"}])";
  c.data_limits = R"([{"name": "data-calls", "rate": "1/h", "burst": 10, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  EXPECT_EQ(std::floor(Remaining(Whoami(*g), "data-calls")), 10);
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(std::floor(Remaining(Whoami(*g), "data-calls")), 5);
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  HttpResponse third = Get(*g, kSelf);
  ExpectLocal429(third, "data-calls");
  // Five tokens of "1/h" are missing: the wait is for all five, not one.
  EXPECT_GT(std::stoll(third.Header("retry-after")), 4 * 3600);
  // The cost-1 rule shares the emptied bucket.
  ExpectLocal429(Get(*g, kOrganizations), "data-calls");
  EXPECT_EQ(fake_.Stats().requests, 2);
  EXPECT_EQ(std::floor(Remaining(Whoami(*g), "data-calls")), 0);
}

TEST_F(LimitTest, ADailyQuotaHoldsAndSaysWhenItRefills) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.data_rules = R"([{"upstream": "devin", "methods": ["GET"], "path": "/**",
                      "limits": [{"name": "daily", "rate": "3/day", "scope": "caller"}]}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  for (int i = 0; i < 3; ++i) {
    HttpResponse r = Get(*g, kSelf);
    EXPECT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.Header("ratelimit-remaining"), std::to_string(2 - i));
  }
  HttpResponse limited = Get(*g, kSelf);
  ExpectLocal429(limited, "daily");
  // One token of "3/day" takes 86400 / 3 = 28800 s.
  EXPECT_GE(std::stoll(limited.Header("retry-after")), 28000);
  EXPECT_LE(std::stoll(limited.Header("retry-after")), 28800);
  EXPECT_GE(Json::Parse(limited.body).Int("/error/retry_after_ms"), 28000 * 1000);
  EXPECT_EQ(limited.Header("ratelimit-policy"), R"("daily";q=3;w=86400)");
  EXPECT_EQ(limited.Header("ratelimit-limit"), "3");
  EXPECT_EQ(limited.Header("ratelimit-remaining"), "0");
  EXPECT_TRUE(limited.HasHeader("ratelimit"));
  EXPECT_TRUE(limited.HasHeader("ratelimit-reset"));
  EXPECT_EQ(fake_.Stats().requests, 3);
}

TEST_F(LimitTest, ARejectedRequestTakesNothingFromAnyBucket) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.devin_limits = R"([{"name": "devin-shared", "rate": "1/h", "burst": 3, "scope": "shared"}])";
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 5, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(Get(*g, kSelf, kOpsKey).status, 200);  // the shared bucket is now empty
  const std::string key = "tollgate:v2:bucket:data-own:data-team";
  // The bucket's state: level and stamp in one value (policies/token_bucket_script.h).
  auto state = RedisCall(redis_.port(), {"GET", key});
  ASSERT_TRUE(state && state->size() == 16);

  for (int i = 0; i < 3; ++i) ExpectLocal429(Get(*g, kSelf), "devin-shared");
  // The caller's bucket is byte for byte as the last allowed request left it.
  EXPECT_EQ(RedisCall(redis_.port(), {"GET", key}), state);
  Json who = Whoami(*g);
  EXPECT_EQ(std::floor(Remaining(who, "data-own")), 3) << who.String("");
  EXPECT_EQ(std::floor(Remaining(who, "devin-shared")), 0);
  EXPECT_EQ(who.String(WhoamiBucket(who, "data-own") + "/key"), "bucket:data-own:data-team");
  EXPECT_EQ(fake_.Stats().requests, 3);
}

TEST_F(LimitTest, AShadowLimitNeverRejectsButIsAuditedAndCounted) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.data_limits =
      R"([{"name": "trial", "rate": "1/h", "burst": 2, "scope": "caller", "shadow": true}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  for (int i = 0; i < 5; ++i) {
    HttpResponse r = Get(*g, kSelf, kDataKey, {{"X-Request-Id", "shadow-" + std::to_string(i)}});
    EXPECT_EQ(r.status, 200) << i << ": " << r.body;
  }
  EXPECT_EQ(fake_.Stats().requests, 5);
  for (int i = 0; i < 5; ++i) {
    auto line = AuditLineFor(*g, "shadow-" + std::to_string(i));
    ASSERT_TRUE(line.has_value()) << i;
    EXPECT_EQ(line->String("/decision"), "allowed");
    if (i < 2) {
      EXPECT_FALSE(line->Has("/would_limit")) << i;
    } else {
      EXPECT_EQ(line->Size("/would_limit"), 1u) << i;
      EXPECT_EQ(line->String("/would_limit/0"), "trial") << i;
    }
  }
  EXPECT_EQ(
      Metric(*g, R"(tollgate_ratelimit_decisions_total{bucket="trial",result="would_limit"})"), 3);
}

TEST_F(LimitTest, RateLimitHeadersDescribeTheTightestBucket) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.devin_limits = R"([{"name": "devin-all", "rate": "1/h", "burst": 20, "scope": "shared"}])";
  c.data_limits = R"([{"name": "data-minute", "rate": "5/min", "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  HttpResponse first = Get(*g, kSelf);
  ASSERT_EQ(first.status, 200);
  // data-minute holds 4 of 5 (devin-all 19 of 20); a token of "5/min" comes back in 12 s.
  EXPECT_EQ(first.Header("ratelimit-policy"), R"("data-minute";q=5;w=60)");
  EXPECT_EQ(first.Header("ratelimit"), R"("data-minute";r=4;t=12)");
  EXPECT_EQ(first.Header("ratelimit-limit"), "5");
  EXPECT_EQ(first.Header("ratelimit-remaining"), "4");
  EXPECT_EQ(first.Header("ratelimit-reset"), "12");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Get(*g, kSelf).status, 200);
  HttpResponse limited = Get(*g, kSelf);
  ExpectLocal429(limited, "data-minute");
  // The next token is at most 12 s away.
  EXPECT_LE(std::stoll(limited.Header("retry-after")), 12);
  EXPECT_LE(Json::Parse(limited.body).Int("/error/retry_after_ms"), 12000);
  EXPECT_EQ(limited.Header("ratelimit-remaining"), "0");
  EXPECT_EQ(limited.Header("ratelimit-limit"), "5");
  // The other caller sees the shared bucket, the tightest it has.
  HttpResponse ops = Get(*g, kSelf, kOpsKey);
  ASSERT_EQ(ops.status, 200);
  EXPECT_EQ(ops.Header("ratelimit-policy"), R"("devin-all";q=20;w=72000)");
  EXPECT_EQ(ops.Header("ratelimit-remaining"), "14");
  EXPECT_EQ(ops.Header("ratelimit-limit"), "20");
  // A route without any bucket gets no RateLimit fields.
  HttpResponse health = Http("GET", g->url() + "/_tollgate/health");
  EXPECT_FALSE(health.HasHeader("ratelimit-policy"));
}

// Without the breaker every one of `requests` would try Redis (and wait timeout_ms for a silent
// one). With it, three failures open it and only probes try again, one per back-off (250 ms
// doubling to 5 s): even a run stretched to a minute by a busy machine makes about a dozen.
void ExpectTheBreakerSparedMostRequests(const GatewayProcess& g, int requests) {
  const double errors = Metric(g, "tollgate_redis_errors_total");
  const double skips = Metric(g, "tollgate_redis_breaker_skips_total");
  EXPECT_GE(errors, 3);
  EXPECT_LE(errors, 30);
  EXPECT_GE(skips, requests - 30);
  EXPECT_LE(skips, requests - 3);
}

TEST_F(LimitTest, DeadRedisFallsBackToLocalBucketsWithoutWaitingOnEveryRequest) {
  redis_.Stop();
  LimitConfig c;
  c.redis = RedisMember("local");
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 5, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  std::vector<HttpResponse> responses;
  for (int i = 0; i < 100; ++i) responses.push_back(Get(*g, kSelf));
  EXPECT_EQ(CountStatus(responses, 200), 5u);  // the local bucket is exact too
  EXPECT_EQ(CountStatus(responses, 429), 95u);
  ExpectTheBreakerSparedMostRequests(*g, 100);
  EXPECT_EQ(Metric(*g, "tollgate_ratelimit_fallbacks_total"), 100);
  auto lines = g->WaitForAuditLines(100);
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_TRUE(lines.back().Bool("/limiter_fallback"));
  EXPECT_EQ(Http("GET", g->admin_url() + "/readyz").status, 200);  // local: still ready
}

// A listener that accepts connections (the kernel's backlog does) and never answers: every Redis
// call would take the whole timeout_ms without the circuit breaker.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 256) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(LimitTest, ARedisThatNeverAnswersCostsTheTimeoutOnlyUntilTheBreakerOpens) {
  SilentListener silent;
  LimitConfig c;
  c.redis = RedisMember("local", "redis://127.0.0.1:" + std::to_string(silent.port()) + "/0");
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 5, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  std::vector<HttpResponse> responses;
  for (int i = 0; i < 100; ++i) responses.push_back(Get(*g, kSelf));
  EXPECT_EQ(CountStatus(responses, 200) + CountStatus(responses, 429), 100u);
  EXPECT_EQ(CountStatus(responses, 200), 5u);
  ExpectTheBreakerSparedMostRequests(*g, 100);
  EXPECT_EQ(Metric(*g, "tollgate_ratelimit_fallbacks_total"), 100);
}

TEST_F(LimitTest, RedisKilledMidRunWithLocalFallbackKeepsServingAndIsUsedAgainAfterARestart) {
  LimitConfig c;
  c.redis = RedisMember("local");
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 1000, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  int n = 0;
  auto call = [&] {
    std::string id = "local-" + std::to_string(n++);
    HttpResponse r = Get(*g, kSelf, kDataKey, {{"X-Request-Id", id}});
    return std::make_pair(r, id);
  };
  auto [before, before_id] = call();
  EXPECT_EQ(before.status, 200);
  auto line = AuditLineFor(*g, before_id);
  ASSERT_TRUE(line.has_value());
  EXPECT_FALSE(line->Has("/limiter_fallback"));

  redis_.Stop();
  for (int i = 0; i < 10; ++i) {
    auto [r, id] = call();
    EXPECT_EQ(r.status, 200) << r.body;
  }
  EXPECT_GT(Metric(*g, "tollgate_ratelimit_fallbacks_total"), 0);
  EXPECT_EQ(Http("GET", g->admin_url() + "/readyz").status, 200);

  redis_.Start();
  std::string last_line;
  bool redis_again = WaitUntil([&] {
    auto [r, id] = call();
    EXPECT_EQ(r.status, 200) << r.body;
    auto l = AuditLineFor(*g, id);
    if (!l) return false;
    last_line = l->String("/request_id");
    return !l->Has("/limiter_fallback");
  });
  EXPECT_TRUE(redis_again) << "still falling back after a restart; last: " << last_line;
  // Point 9 of issue 10: the kind of limiter only, never where Redis lives.
  EXPECT_EQ(Whoami(*g).String("/limiter"), "redis");
  EXPECT_EQ(Http("GET", g->url() + "/_tollgate/whoami", Bearer(kDataKey))
                .body.find(std::to_string(redis_.port())),
            std::string::npos);
  // The restarted (empty) Redis holds the bucket again.
  EXPECT_EQ(RedisCall(redis_.port(), {"EXISTS", "tollgate:v2:bucket:data-own:data-team"}), "1");
  // The empty Redis lacked the script: answered NOSCRIPT once at start and once after restart.
  EXPECT_GE(Metric(*g, "tollgate_redis_script_reloads_total"), 2);
}

TEST_F(LimitTest, RedisKilledMidRunWithDenyIs503UntilItIsBack) {
  LimitConfig c;
  c.redis = RedisMember("deny");
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 1000, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  EXPECT_EQ(Get(*g, kSelf).status, 200);
  EXPECT_EQ(Http("GET", g->admin_url() + "/readyz").status, 200);
  const int64_t served = fake_.Stats().requests;

  redis_.Stop();
  for (int i = 0; i < 5; ++i) {
    HttpResponse r = Get(*g, kSelf);
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "redis_unavailable") << r.body;
  }
  EXPECT_EQ(fake_.Stats().requests, served);  // nothing went upstream unmetered
  EXPECT_TRUE(WaitUntil([&] { return Http("GET", g->admin_url() + "/readyz").status == 503; }))
      << Http("GET", g->admin_url() + "/readyz").body;

  redis_.Start();
  EXPECT_TRUE(WaitUntil([&] { return Http("GET", g->admin_url() + "/readyz").status == 200; }))
      << Http("GET", g->admin_url() + "/readyz").body;
  EXPECT_TRUE(WaitUntil([&] { return Get(*g, kSelf).status == 200; }));
  EXPECT_EQ(Whoami(*g).String("/limiter"), "redis");
}

TEST_F(LimitTest, AnUpstream429PausesThatUpstreamForEveryReplica) {
  const std::string prefix = "/v3beta1/enterprise/self";
  LimitConfig c;
  c.redis = RedisMember("local");
  auto a = StartGateway(c);
  auto b = StartGateway(c);
  ASSERT_TRUE(a->started() && b->started());
  // A minute: every call below lands inside it, however busy the machine.
  fake_.SetBehaviour(prefix, 0, 429, "60", 1);

  HttpResponse upstream429 = Get(*a, kSelf);
  ASSERT_EQ(upstream429.status, 429);
  EXPECT_EQ(upstream429.Header("retry-after"), "60");
  EXPECT_FALSE(Json::Parse(upstream429.body).Has("/error/reason")) << "passed through untouched";
  // The cooldown is written to Redis next to answering; wait for it rather than race it.
  ASSERT_TRUE(WaitUntil([&] {
    return RedisCall(redis_.port(), {"EXISTS", "tollgate:cooldown:devin"}) == "1";
  }));

  // Held by Redis for the upstream's Retry-After, so it ends by itself.
  const auto pttl = RedisCall(redis_.port(), {"PTTL", "tollgate:cooldown:devin"});
  ASSERT_TRUE(pttl.has_value());
  EXPECT_GT(std::stoll(*pttl), 0);
  EXPECT_LE(std::stoll(*pttl), 60000);

  for (const GatewayProcess* g : {b.get(), a.get()}) {
    for (const std::string& key : {kDataKey, kOpsKey}) {
      HttpResponse local = Get(*g, kSelf, key);
      ExpectLocal429(local, "upstream:devin");
      EXPECT_LE(std::stoll(local.Header("retry-after")), 60);
      EXPECT_LE(Json::Parse(local.body).Int("/error/retry_after_ms"), 60000);
    }
  }
  ExpectLocal429(Get(*b, kOrganizations), "upstream:devin");  // the whole upstream pauses
  EXPECT_EQ(UpstreamCallsUnder(prefix), 1u);
  EXPECT_EQ(fake_.Stats().requests, 1);
  EXPECT_EQ(Metric(*a, R"(tollgate_upstream_cooldowns_total{upstream="devin"})"), 1);

  // When Redis lets the cooldown lapse (brought forward here), both replicas forward again.
  ASSERT_EQ(RedisCall(redis_.port(), {"PEXPIRE", "tollgate:cooldown:devin", "1"}), "1");
  EXPECT_TRUE(WaitUntil([&] { return Get(*b, kSelf).status == 200; }));
  EXPECT_EQ(Get(*a, kSelf).status, 200);
}

TEST_F(LimitTest, AnUpstream429WithoutRetryAfterCoolsForOneSecond) {
  const std::string prefix = "/v3beta1/enterprise/self";
  LimitConfig c;
  c.redis = RedisMember("local");
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  ASSERT_TRUE(LogEveryRedisCommand(redis_.port()));
  fake_.SetBehaviour(prefix, 0, 429, std::nullopt, 1);
  HttpResponse upstream429 = Get(*g, kSelf);
  ASSERT_EQ(upstream429.status, 429);
  EXPECT_EQ(upstream429.Header("retry-after"), "1");  // added by the gateway
  // A call that must land inside one second would be a race on a busy machine: what the gateway
  // asked Redis for is checked instead (a cooldown key living 1000 ms).
  std::vector<std::string> set;
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& command : LoggedCommands(redis_.port())) {
      if (command.size() >= 2 && command[0] == "SET" && command[1] == "tollgate:cooldown:devin") {
        set = command;
      }
    }
    return !set.empty();
  }));
  EXPECT_EQ(set,
            (std::vector<std::string>{"SET", "tollgate:cooldown:devin", "1", "PX", "1000", "NX"}));
  EXPECT_EQ(UpstreamCallsUnder(prefix), 1u);
  // And it ends by itself: the upstream is called again (a deadline, not a window).
  EXPECT_TRUE(WaitUntil([&] { return Get(*g, kSelf).status == 200; }));
  EXPECT_EQ(UpstreamCallsUnder(prefix), 2u);
}

TEST_F(LimitTest, TheMemoryLimiterEnforcesTheBurstExactly) {
  LimitConfig c;  // no redis member: the in-process limiter
  c.data_limits = R"([{"name": "data-own", "rate": "1/h", "burst": 5, "scope": "caller"}])";
  auto g = StartGateway(c);
  ASSERT_TRUE(g->started());
  std::vector<HttpResponse> responses;
  for (int i = 0; i < 20; ++i) responses.push_back(Get(*g, kSelf));
  EXPECT_EQ(CountStatus(responses, 200), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(responses[static_cast<size_t>(i)].status, 200) << i;
  ExpectLocal429(responses.back(), "data-own");
  EXPECT_EQ(fake_.Stats().requests, 5);
  EXPECT_EQ(Whoami(*g).String("/limiter"), "memory");
  EXPECT_EQ(RedisCall(redis_.port(), {"DBSIZE"}), "0");  // nothing went to any Redis
}

}  // namespace
}  // namespace tollgate::testing
