// Unit tests for the pure parts of the gateway: the error envelope, request ids, the rate-limit
// response fields, the reading of an upstream's Retry-After, and caller authentication against a
// snapshot.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "gateway/pipeline.h"
#include "gateway/rate_limit_headers.h"
#include "gateway/snapshot.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

const std::string* Get(const HeaderList& h, std::string_view name) {
  for (const auto& [k, v] : h) {
    if (EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

TEST(ErrorResponse, IsTheDocumentedEnvelope) {
  HttpResponse r = ErrorResponse(403, "forbidden", "may not \"GET\" /x", "rid-1");
  EXPECT_EQ(r.status, 403);
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  ASSERT_FALSE(d.HasParseError());
  EXPECT_EQ(d["error"]["code"].GetInt(), 403);
  EXPECT_STREQ(d["error"]["reason"].GetString(), "forbidden");
  EXPECT_STREQ(d["error"]["message"].GetString(), "may not \"GET\" /x");
  EXPECT_STREQ(d["error"]["request_id"].GetString(), "rid-1");
  EXPECT_EQ(*Get(r.headers, "content-type"), "application/json");
}

TEST(RequestId, ValidationAndGeneration) {
  EXPECT_TRUE(IsValidRequestId("abc-123_XYZ.:/"));
  EXPECT_FALSE(IsValidRequestId(""));
  EXPECT_FALSE(IsValidRequestId("has space"));
  EXPECT_FALSE(IsValidRequestId("tab\there"));
  EXPECT_FALSE(IsValidRequestId("caf\xc3\xa9"));
  EXPECT_TRUE(IsValidRequestId(std::string(128, 'a')));
  EXPECT_FALSE(IsValidRequestId(std::string(129, 'a')));
  std::string a = NewRequestId(), b = NewRequestId();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(IsValidRequestId(a));
  for (const std::string& id : {a, b}) {
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }
  // 128 random bits: over a few ids every hex digit shows up in both halves.
  std::string first, second;
  for (int i = 0; i < 64; ++i) {
    const std::string id = NewRequestId();
    first += id.substr(0, 16);
    second += id.substr(16);
  }
  for (char digit : std::string("0123456789abcdef")) {
    EXPECT_NE(first.find(digit), std::string::npos) << digit;
    EXPECT_NE(second.find(digit), std::string::npos) << digit;
  }
}

policies::BucketSpec Spec(const std::string& name, uint64_t tokens, uint64_t period, uint64_t burst,
                          bool shadow = false) {
  policies::BucketSpec s;
  s.name = name;
  s.key = "bucket:" + name + ":_shared";
  s.rate = {tokens, period};
  s.burst = burst;
  s.shadow = shadow;
  return s;
}

policies::BucketLevel Level(double remaining, double reset) {
  policies::BucketLevel l;
  l.remaining = remaining;
  l.reset_seconds = reset;
  return l;
}

TEST(RateLimitHeaders, ReportTheTightestEnforcingBucket) {
  std::vector<policies::BucketSpec> specs = {Spec("devin-all", 20, 1, 40),
                                             Spec("shadowed", 1, 1, 1, true),
                                             Spec("sessions", 50, 86400, 50)};
  std::vector<policies::BucketLevel> levels = {Level(12.5, 1.4), Level(0, 1), Level(3, 7000.2)};
  ASSERT_EQ(TightestBucket(specs, levels), 2u);
  HeaderList h;
  AddRateLimitHeaders(specs, levels, &h);
  EXPECT_EQ(*Get(h, "RateLimit-Policy"), "\"sessions\";q=50;w=86400");
  EXPECT_EQ(*Get(h, "RateLimit"), "\"sessions\";r=3;t=7001");
  EXPECT_EQ(*Get(h, "RateLimit-Limit"), "50");
  EXPECT_EQ(*Get(h, "RateLimit-Remaining"), "3");
  EXPECT_EQ(*Get(h, "RateLimit-Reset"), "7001");
}

TEST(RateLimitHeaders, WindowIsTheTimeToRefillTheBurst) {
  std::vector<policies::BucketSpec> specs = {Spec("devin-all", 20, 1, 40)};
  std::vector<policies::BucketLevel> levels = {Level(12, 1)};
  HeaderList h;
  AddRateLimitHeaders(specs, levels, &h);
  EXPECT_EQ(*Get(h, "RateLimit-Policy"), "\"devin-all\";q=40;w=2");
  EXPECT_EQ(*Get(h, "RateLimit"), "\"devin-all\";r=12;t=1");
}

TEST(RateLimitHeaders, UpstreamFieldsAreOnlyMadeStricter) {
  std::vector<policies::BucketSpec> specs = {Spec("devin-all", 20, 1, 40)};
  std::vector<policies::BucketLevel> levels = {Level(12, 1)};
  // The upstream is stricter on remaining and reset: its values stay.
  HeaderList stricter = {
      {"RateLimit-Remaining", "2"}, {"RateLimit-Reset", "30"}, {"RateLimit-Limit", "100"}};
  AddRateLimitHeaders(specs, levels, &stricter);
  EXPECT_EQ(*Get(stricter, "RateLimit-Remaining"), "2");
  EXPECT_EQ(*Get(stricter, "RateLimit-Reset"), "30");
  EXPECT_EQ(*Get(stricter, "RateLimit-Limit"), "40");
  // The upstream is more permissive: ours replace them.
  HeaderList looser = {{"ratelimit-remaining", "999"}, {"ratelimit-reset", "0"}};
  AddRateLimitHeaders(specs, levels, &looser);
  EXPECT_EQ(*Get(looser, "RateLimit-Remaining"), "12");
  EXPECT_EQ(*Get(looser, "RateLimit-Reset"), "1");
  // Structured lists keep the upstream's member after ours.
  HeaderList structured = {{"RateLimit", "\"up\";r=5;t=3"}};
  AddRateLimitHeaders(specs, levels, &structured);
  EXPECT_EQ(*Get(structured, "RateLimit"), "\"devin-all\";r=12;t=1, \"up\";r=5;t=3");
}

// The upstream's fields are found whatever their case, the first of each name is the one
// tightened, they stay where they are, and ours that it lacks follow in their usual order.
TEST(RateLimitHeaders, UpstreamFieldsAreFoundInAnyCaseAndStayInPlace) {
  std::vector<policies::BucketSpec> specs = {Spec("devin-all", 20, 1, 40)};
  std::vector<policies::BucketLevel> levels = {Level(12, 1)};
  HeaderList h = {{"Content-Type", "application/json"},
                  {"ratelimit-policy", "\"up\";q=9;w=1"},
                  {"RateLimitX", "7"},
                  {"RATELIMIT-LIMIT", "abc"},
                  {"RateLimit-Remaining", "5"},
                  {"RateLimit-Remaining", "100"}};
  AddRateLimitHeaders(specs, levels, &h);
  const HeaderList want = {{"Content-Type", "application/json"},
                           {"ratelimit-policy", "\"devin-all\";q=40;w=2, \"up\";q=9;w=1"},
                           {"RateLimitX", "7"},
                           {"RATELIMIT-LIMIT", "40"},
                           {"RateLimit-Remaining", "5"},
                           {"RateLimit-Remaining", "100"},
                           {"RateLimit", "\"devin-all\";r=12;t=1"},
                           {"RateLimit-Reset", "1"}};
  EXPECT_EQ(h, want);
}

TEST(RateLimitHeaders, OursAloneComeInOrderAndBucketNamesAreQuoted) {
  std::vector<policies::BucketSpec> specs = {Spec("a\"b\\c", 3, 60, 10)};
  std::vector<policies::BucketLevel> levels = {Level(9.99, 0.01)};
  HeaderList h;
  AddRateLimitHeaders(specs, levels, &h);
  const HeaderList want = {{"RateLimit-Policy", "\"a\\\"b\\\\c\";q=10;w=200"},
                           {"RateLimit", "\"a\\\"b\\\\c\";r=9;t=1"},
                           {"RateLimit-Limit", "10"},
                           {"RateLimit-Remaining", "9"},
                           {"RateLimit-Reset", "1"}};
  EXPECT_EQ(h, want);
}

TEST(RateLimitHeaders, NothingWhenOnlyShadowBucketsApply) {
  std::vector<policies::BucketSpec> specs = {Spec("s", 1, 1, 1, true)};
  std::vector<policies::BucketLevel> levels = {Level(0, 1)};
  HeaderList h;
  AddRateLimitHeaders(specs, levels, &h);
  EXPECT_TRUE(h.empty());
}

// 2026-01-01T00:00:00Z, a Thursday: the HTTP-date cases are relative to it.
std::chrono::system_clock::time_point NewYear2026() {
  return std::chrono::system_clock::from_time_t(1767225600);
}

int64_t RetryAfter(const std::string& value) {
  return ParseRetryAfterSeconds(&value, NewYear2026());
}

TEST(ParseRetryAfterSeconds, AbsentOrEmptyIsOneSecond) {
  EXPECT_EQ(ParseRetryAfterSeconds(nullptr, NewYear2026()), 1);
  EXPECT_EQ(RetryAfter(""), 1);
}

TEST(ParseRetryAfterSeconds, DeltaSecondsWithinOneSecondToOneHour) {
  EXPECT_EQ(RetryAfter("1"), 1);
  EXPECT_EQ(RetryAfter("120"), 120);
  EXPECT_EQ(RetryAfter("0120"), 120);
  EXPECT_EQ(RetryAfter("0"), 1);  // "now" still cools the upstream for the minimum
  EXPECT_EQ(RetryAfter("3599"), 3599);
  EXPECT_EQ(RetryAfter("3600"), kMaxUpstreamCooldownSeconds);
  EXPECT_EQ(kMaxUpstreamCooldownSeconds, 3600);
}

TEST(ParseRetryAfterSeconds, AHostileValueIsCappedAtOneHour) {
  EXPECT_EQ(RetryAfter("3601"), 3600);
  EXPECT_EQ(RetryAfter("999999"), 3600);
  EXPECT_EQ(RetryAfter("31536000"), 3600);  // a year
  // Past the range of long long (strtoll's ERANGE): still the cap, not an overflowed value.
  EXPECT_EQ(RetryAfter("123456789012345678901234567890"), 3600);
  EXPECT_EQ(RetryAfter("999999999999999999999999999999"), 3600);
}

TEST(ParseRetryAfterSeconds, NegativeAndGarbageAreOneSecond) {
  EXPECT_EQ(RetryAfter("-5"), 1);
  EXPECT_EQ(RetryAfter("-123456789012345678901234567890"), 1);
  EXPECT_EQ(RetryAfter("+5"), 1);
  EXPECT_EQ(RetryAfter("soon"), 1);
  EXPECT_EQ(RetryAfter("12abc"), 1);
  EXPECT_EQ(RetryAfter("1.5"), 1);
  EXPECT_EQ(RetryAfter("0x10"), 1);
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 00:02:00 GMT trailing"), 1);
  EXPECT_EQ(RetryAfter("Thu, 32 Jan 2026 00:02:00 GMT"), 1);
}

TEST(ParseRetryAfterSeconds, HttpDateInTheFutureIsTheSecondsUntilIt) {
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 00:02:00 GMT"), 120);
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 00:00:01 GMT"), 1);
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 00:59:59 GMT"), 3599);
  // The obsolete forms a recipient must also accept (RFC 9110 5.6.7).
  EXPECT_EQ(RetryAfter("Thursday, 01-Jan-26 00:02:00 GMT"), 120);
  EXPECT_EQ(RetryAfter("Thu Jan  1 00:02:00 2026"), 120);
}

TEST(ParseRetryAfterSeconds, HttpDateFarAheadIsCapped) {
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 01:00:01 GMT"), 3600);
  EXPECT_EQ(RetryAfter("Fri, 01 Jan 2027 00:00:00 GMT"), 3600);
}

TEST(ParseRetryAfterSeconds, HttpDateNowOrInThePastIsOneSecond) {
  EXPECT_EQ(RetryAfter("Thu, 01 Jan 2026 00:00:00 GMT"), 1);
  EXPECT_EQ(RetryAfter("Wed, 31 Dec 2025 23:00:00 GMT"), 1);
  EXPECT_EQ(RetryAfter("Sun, 06 Nov 1994 08:49:37 GMT"), 1);
}

std::shared_ptr<const Snapshot> MakeSnapshot() {
  auto cfg = std::make_shared<config::Config>();
  config::Upstream up;
  up.name = "devin";
  up.base_url = "http://127.0.0.1:1";
  cfg->upstreams["devin"] = up;
  config::Role role;
  role.name = "reader";
  config::Rule rule;
  rule.role = "reader";
  rule.upstream = "devin";
  rule.methods = {"GET"};
  rule.path = "/v3/**";
  rule.pointer = "/roles/reader/rules/0";
  role.rules.push_back(rule);
  cfg->roles["reader"] = role;
  auto add = [&](const std::string& name, const std::string& key, bool disabled,
                 std::optional<std::chrono::system_clock::time_point> expires) {
    config::Caller c;
    c.name = name;
    c.key_sha256 = {upstream::Sha256Hex(key)};
    c.roles = {"reader"};
    c.disabled = disabled;
    c.expires = expires;
    cfg->callers[name] = c;
  };
  auto now = std::chrono::system_clock::now();
  add("ok", "key-ok", false, now + std::chrono::hours(1));
  add("off", "key-off", true, std::nullopt);
  add("old", "key-old", false, now - std::chrono::hours(1));
  std::string error;
  auto snap = Snapshot::Build(cfg, &error);
  EXPECT_NE(snap, nullptr) << error;
  return snap;
}

TEST(Authenticate, BearerKeysMapToCallers) {
  auto snap = MakeSnapshot();
  ASSERT_NE(snap, nullptr);
  auto now = std::chrono::system_clock::now();
  using O = AuthResult::Outcome;
  std::string h = "Bearer key-ok";
  AuthResult r = snap->Authenticate(&h, now);
  ASSERT_EQ(r.outcome, O::kOk);
  EXPECT_EQ(r.caller->name, "ok");
  h = "bearer key-ok";  // the scheme is case-insensitive
  EXPECT_EQ(snap->Authenticate(&h, now).outcome, O::kOk);
  EXPECT_EQ(snap->Authenticate(nullptr, now).outcome, O::kMissing);
  h = "Basic a2V5LW9rOg==";
  EXPECT_EQ(snap->Authenticate(&h, now).outcome, O::kMissing);
  h = "Bearer key-nope";
  r = snap->Authenticate(&h, now);
  EXPECT_EQ(r.outcome, O::kUnknown);
  EXPECT_EQ(r.message.find("key-nope"), std::string::npos);  // never echoes the key
  h = "Bearer key-off";
  EXPECT_EQ(snap->Authenticate(&h, now).outcome, O::kDisabled);
  h = "Bearer key-old";
  EXPECT_EQ(snap->Authenticate(&h, now).outcome, O::kExpired);
}

TEST(Snapshot, BucketKeysAreScopedAndReadable) {
  config::Limit shared{"devin-all", {20, 1}, 40, config::LimitScope::kShared, false, {}, 0, 100};
  config::Limit per{"sessions", {50, 86400}, 0, config::LimitScope::kCaller, true, {}, 0, 100};
  auto a = MakeBucket(shared, "data-team", 3);
  EXPECT_EQ(a.key, "bucket:devin-all:_shared");
  EXPECT_EQ(a.cost, 3u);
  EXPECT_EQ(a.burst, 40u);
  auto b = MakeBucket(per, "data-team", 1);
  EXPECT_EQ(b.key, "bucket:sessions:data-team");
  EXPECT_EQ(b.burst, 50u);  // defaults to N
  EXPECT_TRUE(b.shadow);
}

// Issue 14: in a Redis Cluster every key of one request's script carries its upstream group's
// hash tag; outside a cluster no key is renamed.
TEST(Snapshot, BucketsAndCooldownsCarryTheUpstreamsSlotTagOnlyInACluster) {
  auto build = [](bool cluster) {
    auto cfg = std::make_shared<config::Config>();
    for (const char* name : {"devin", "devo"}) {
      cfg->upstreams[name].name = name;
      cfg->upstreams[name].base_url = "http://127.0.0.1:1";
    }
    cfg->upstreams["devo"].limits = {
        {"devo-all", {20, 1}, 0, config::LimitScope::kShared, false, {}, 0, 100}};
    config::Role role;
    role.name = "reader";
    for (const char* upstream : {"devin", "devo"}) {
      config::Rule rule;
      rule.role = "reader";
      rule.upstream = upstream;
      rule.methods = {"GET"};
      rule.path = "/v3/**";
      rule.pointer = "/roles/reader/rules/" + std::to_string(role.rules.size());
      role.rules.push_back(rule);
    }
    cfg->roles["reader"] = role;
    config::Caller caller;
    caller.name = "team";
    caller.key_sha256 = {upstream::Sha256Hex("key-team")};
    caller.roles = {"reader"};
    cfg->callers["team"] = caller;
    cfg->redis.emplace();
    if (cluster) cfg->redis->cluster = config::RedisClusterConfig{{{"127.0.0.1", 7000}}};
    std::string error;
    auto snap = Snapshot::Build(cfg, &error);
    EXPECT_NE(snap, nullptr) << error;
    return snap;
  };
  auto plain = build(false);
  auto clustered = build(true);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(clustered, nullptr);
  const config::Caller& team = plain->config().callers.at("team");
  const config::Upstream& devo = plain->config().upstreams.at("devo");
  EXPECT_EQ(plain->SlotTagOf("devo"), "");
  EXPECT_EQ(plain->BucketsFor(devo, nullptr, team, 1).at(0).slot_tag, "");
  EXPECT_EQ(clustered->SlotTagOf("devo"), "devo");
  EXPECT_EQ(clustered->SlotTagOf("devin"), "devin");
  EXPECT_EQ(clustered->BucketsFor(devo, nullptr, team, 1).at(0).slot_tag, "devo");
  EXPECT_EQ(clustered->BucketsOfCaller(team).at(0).slot_tag, "devo");
}

}  // namespace
}  // namespace tollgate::gateway
