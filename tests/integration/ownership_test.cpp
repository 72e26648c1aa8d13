// Session ownership end to end (issue 12) against the fake Devin: what a caller creates is
// recorded as its own; another caller gets 403 on it unless the rule's owner_group joins them;
// two replicas on one Redis agree; a forced query parameter replaces the caller's; a Redis
// that cannot answer an owner check is a 503, never an allow.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

const std::string kKeyA = "tg_it_owner_team_a_0123456789";
const std::string kKeyA2 = "tg_it_owner_team_a2_0123456789";
const std::string kKeyB = "tg_it_owner_team_b_0123456789";
const std::string kSessions = "/devin/v3/organizations/org-1/sessions";

// Callers a and b check ownership alone ("own"); a2 and b through the `team` attribute
// ("group"): a2 shares team "a" with a, b is alone in team "b".
std::string OwnershipConfig(const std::string& redis = "") {
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)" +
         kStandardAdmin + redis + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}}
  },
  "roles": {
    "create": {"rules": [
      {"upstream": "devin", "methods": ["POST"], "path": "/v3/organizations/{org}/sessions",
       "record_owner": "/session_id"},
      {"upstream": "devin", "methods": ["GET"], "path": "/v3/organizations/{org}/sessions",
       "query": {"tags": "team:{caller}"}}]},
    "own": {"rules": [
      {"upstream": "devin", "methods": ["GET"],
       "path": "/v3/organizations/{org}/sessions/{devin_id}", "where": {"devin_id": "owner"}}]},
    "group": {"rules": [
      {"upstream": "devin", "methods": ["GET"],
       "path": "/v3/organizations/{org}/sessions/{devin_id}", "where": {"devin_id": "owner"},
       "owner_group": "team"}]}
  },
  "callers": {
    "a": {"key_sha256": ["${A_HASH}"], "roles": ["create", "own"], "attributes": {"team": ["a"]}},
    "a2": {"key_sha256": ["${A2_HASH}"], "roles": ["create", "group"],
           "attributes": {"team": ["a"]}},
    "b": {"key_sha256": ["${B_HASH}"], "roles": ["create", "group"], "attributes": {"team": ["b"]}}
  }
})";
}

std::string RedisMember() {
  return R"(
  "redis": {"url": "${REDIS}", "timeout_ms": 200, "on_error": "local"},)";
}

class OwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  std::unique_ptr<GatewayProcess> Start(const std::string& config, const std::string& redis = "") {
    GatewayOptions o = StandardOptions(fake_, config);
    o.vars["A_HASH"] = upstream::Sha256Hex(kKeyA);
    o.vars["A2_HASH"] = upstream::Sha256Hex(kKeyA2);
    o.vars["B_HASH"] = upstream::Sha256Hex(kKeyB);
    o.redis = redis;
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  static HttpResponse Call(const GatewayProcess& g, const std::string& method,
                           const std::string& path, const std::string& key,
                           const std::string& body = "") {
    HeaderList headers = Bearer(key);
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return Http(method, g.url() + path, headers, body);
  }

  // Creates a session as `key`'s caller; its id.
  static std::string Create(const GatewayProcess& g, const std::string& key) {
    HttpResponse r = Call(g, "POST", kSessions, key, R"({"prompt": "hello"})");
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::Parse(r.body).String("/session_id");
  }

  size_t SessionGetsReceived() const {
    size_t n = 0;
    for (const RecordedRequest& r : fake_.Requests()) {
      if (r.method == "GET" && r.path.rfind("/v3/organizations/org-1/sessions/", 0) == 0) ++n;
    }
    return n;
  }

  FakeUpstream fake_;
};

TEST_F(OwnershipTest, OnlyTheCreatorOrItsOwnerGroupGetsTheSession) {
  auto g = Start(OwnershipConfig());
  const std::string id = Create(*g, kKeyA);
  ASSERT_FALSE(id.empty());

  // b (even through its owner_group: its team is another) is refused before any upstream call.
  HttpResponse b = Call(*g, "GET", kSessions + "/" + id, kKeyB);
  EXPECT_EQ(b.status, 403) << b.body;
  EXPECT_EQ(Json::Parse(b.body).String("/error/reason"), "forbidden") << b.body;
  EXPECT_EQ(SessionGetsReceived(), 0u);

  HttpResponse a = Call(*g, "GET", kSessions + "/" + id, kKeyA);
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(Json::Parse(a.body).String("/session_id"), id);
  // a2 shares team "a" with the owner.
  HttpResponse a2 = Call(*g, "GET", kSessions + "/" + id, kKeyA2);
  EXPECT_EQ(a2.status, 200) << a2.body;
  EXPECT_EQ(SessionGetsReceived(), 2u);

  // What b creates is b's: a (no group) is refused, b gets it.
  const std::string mine = Create(*g, kKeyB);
  EXPECT_EQ(Call(*g, "GET", kSessions + "/" + mine, kKeyA).status, 403);
  EXPECT_EQ(Call(*g, "GET", kSessions + "/" + mine, kKeyB).status, 200);
  // A session nobody recorded is nobody's.
  EXPECT_EQ(Call(*g, "GET", kSessions + "/devin-unknown", kKeyA).status, 403);
}

TEST_F(OwnershipTest, TwoReplicasOnOneRedisAgree) {
  RedisServer redis;
  auto one = Start(OwnershipConfig(RedisMember()), redis.url());
  auto two = Start(OwnershipConfig(RedisMember()), redis.url());
  const std::string id = Create(*one, kKeyA);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Call(*two, "GET", kSessions + "/" + id, kKeyA).status, 200);
  EXPECT_EQ(Call(*two, "GET", kSessions + "/" + id, kKeyA2).status, 200);
  EXPECT_EQ(Call(*two, "GET", kSessions + "/" + id, kKeyB).status, 403);
  EXPECT_EQ(Call(*one, "GET", kSessions + "/" + id, kKeyB).status, 403);
}

TEST_F(OwnershipTest, AForcedQueryParameterReplacesTheCallers) {
  auto g = Start(OwnershipConfig());
  HttpResponse r = Call(*g, "GET", kSessions + "?tags=team%3Ab&limit=5&t%61gs=x&tags", kKeyA);
  EXPECT_EQ(r.status, 200) << r.body;
  auto seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].query, "limit=5&tags=team%3Aa");
  // Without a query of its own, the caller still gets only its team's.
  fake_.ClearRequests();
  EXPECT_EQ(Call(*g, "GET", kSessions, kKeyB).status, 200);
  seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].query, "tags=team%3Ab");
}

TEST_F(OwnershipTest, ARedisThatCannotAnswerIsA503NeverAnAllow) {
  RedisServer redis;
  auto g = Start(OwnershipConfig(RedisMember()), redis.url());
  const std::string id = Create(*g, kKeyA);
  ASSERT_EQ(Call(*g, "GET", kSessions + "/" + id, kKeyA).status, 200);
  redis.Stop();
  fake_.ClearRequests();

  HttpResponse r = Call(*g, "GET", kSessions + "/" + id, kKeyA);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "redis_unavailable") << r.body;
  EXPECT_EQ(SessionGetsReceived(), 0u);

  // A create still answers (the session exists upstream); the failed record is counted.
  HttpResponse created = Call(*g, "POST", kSessions, kKeyA, R"({"prompt": "again"})");
  EXPECT_EQ(created.status, 200) << created.body;
  EXPECT_FALSE(Json::Parse(created.body).String("/session_id").empty());
  EXPECT_EQ(MetricValue(Http("GET", g->admin_url() + "/metrics").body,
                        "tollgate_ownership_record_failures_total"),
            1.0);
}

}  // namespace
}  // namespace tollgate::testing
