// Session ownership (issue 12): the value a record_owner pointer names, the forced query string,
// the in-process and Redis stores, and what Decide reports for a `where` bound to "owner".
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "loop/loop.h"
#include "policies/ownership.h"
#include "policies/policy.h"
#include "tests/support/process.h"
#include "tests/unit/policy_test_helpers.h"
#include "tests/unit/redis_peek.h"

namespace tollgate::policies {
namespace {

TEST(OwnedValueAt, ReadsAStringOrAnIntegerAtThePointer) {
  EXPECT_EQ(OwnedValueAt(R"({"session_id": "devin-1", "x": 1})", "/session_id"), "devin-1");
  EXPECT_EQ(OwnedValueAt(R"({"a": {"b/c": [7, 42]}})", "/a/b~1c/1"), "42");
  EXPECT_EQ(OwnedValueAt(R"({"a~b": "t"})", "/a~0b"), "t");
  EXPECT_EQ(OwnedValueAt(R"({"n": -5})", "/n"), "-5");
}

TEST(OwnedValueAt, AnythingElseIsNothing) {
  EXPECT_EQ(OwnedValueAt(R"({"session_id": "devin-1"})", "/id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt("not json", "/session_id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt(R"({"session_id": ""})", "/session_id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt(R"({"session_id": 1.5})", "/session_id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt(R"({"session_id": {"a": 1}})", "/session_id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt(R"({"session_id": null})", "/session_id"), std::nullopt);
  EXPECT_EQ(OwnedValueAt(R"({"session_id": true})", "/session_id"), std::nullopt);
}

TEST(ForceQuery, ReplacesEveryOccurrenceOfAForcedName) {
  const std::map<std::string, std::string> forced = {{"tags", "team:{caller}"}};
  EXPECT_EQ(ForceQuery("tags=team:b&limit=5&tags=x", forced, "team-a"),
            "limit=5&tags=team%3Ateam-a");
  // A name spelled with escapes or '+' is still that name.
  EXPECT_EQ(ForceQuery("ta%67s=x&t%61gs&limit=5", forced, "a"), "limit=5&tags=team%3Aa");
  EXPECT_EQ(ForceQuery("", forced, "a"), "tags=team%3Aa");
  EXPECT_EQ(ForceQuery("&&tags=1&", forced, "a"), "tags=team%3Aa");
}

TEST(ForceQuery, KeepsTheRestByteForByteAndEncodesWhatItAdds) {
  const std::map<std::string, std::string> forced = {{"a b", "{caller}&{caller}=%"}};
  EXPECT_EQ(ForceQuery("x=%2F+y&tagsx=1&a=2", forced, "c/d"),
            "x=%2F+y&tagsx=1&a=2&a%20b=c%2Fd%26c%2Fd%3D%25");
  EXPECT_EQ(ForceQuery("a+b=1&a%20b=2&z", forced, "c"), "z&a%20b=c%26c%3D%25");
}

TEST(MemoryOwnershipStore, RecordsAndForgetsAfterTheTtl) {
  auto now = std::chrono::steady_clock::now();
  MemoryOwnershipStore store(2, [&now] { return now; });
  bool called = false;
  store.Record("devin", "s1", "team-a", [&](bool ok) {
    EXPECT_TRUE(ok);
    called = true;
  });
  EXPECT_TRUE(called);
  auto owner = [&](const std::string& upstream, const std::string& value) {
    std::optional<std::string> found;
    store.Lookup(upstream, value, [&](bool ok, std::optional<std::string> o) {
      EXPECT_TRUE(ok);
      found = std::move(o);
    });
    return found;
  };
  EXPECT_EQ(owner("devin", "s1"), "team-a");
  EXPECT_EQ(owner("devo", "s1"), std::nullopt);  // per upstream
  EXPECT_EQ(owner("devin", "s2"), std::nullopt);
  now += std::chrono::hours(47);
  EXPECT_EQ(owner("devin", "s1"), "team-a");
  now += std::chrono::hours(2);
  EXPECT_EQ(owner("devin", "s1"), std::nullopt);
}

config::RedisConfig RedisAt(int port) {
  config::RedisConfig config;
  config.host = "127.0.0.1";
  config.port = port;
  config.timeout_ms = 2000;
  config.key_prefix = "tg:";
  return config;
}

// Runs `fn(done)` on the loop and waits for done's value.
template <typename T, typename Fn>
T OnLoop(loop::LoopThread& thread, Fn fn) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  thread.loop().Post([fn, promise] { fn([promise](T value) { promise->set_value(value); }); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no answer";
    return T{};
  }
  return future.get();
}

using Found = std::pair<bool, std::optional<std::string>>;

Found Lookup(loop::LoopThread& thread, OwnershipStore& store, const std::string& value) {
  return OnLoop<Found>(thread, [&store, value](std::function<void(Found)> done) {
    store.Lookup("devin", value, [done](bool ok, std::optional<std::string> owner) {
      done({ok, std::move(owner)});
    });
  });
}

bool Record(loop::LoopThread& thread, OwnershipStore& store, const std::string& value,
            const std::string& caller) {
  return OnLoop<bool>(thread, [&store, value, caller](std::function<void(bool)> done) {
    store.Record("devin", value, caller, done);
  });
}

TEST(RedisOwnershipStore, TwoReplicasShareRecordsUnderThePrefixWithTheTtl) {
  tollgate::testing::RedisServer redis;
  RedisOwnershipStore a(RedisAt(redis.port()), 90);
  RedisOwnershipStore b(RedisAt(redis.port()), 90);
  loop::LoopThread thread("ownership-test");
  EXPECT_EQ(Lookup(thread, b, "devin-1"), Found(true, std::nullopt));
  EXPECT_TRUE(Record(thread, a, "devin-1", "team-a"));
  EXPECT_EQ(Lookup(thread, b, "devin-1"), Found(true, "team-a"));
  EXPECT_EQ(a.Key("devin", "devin-1"), "tg:owner:devin:devin-1");
  tollgate::testing::RedisPeek peek(redis.port());
  EXPECT_EQ(peek.Run({"GET", "tg:owner:devin:devin-1"}), "team-a");
  const long ttl = std::stol(peek.Run({"TTL", "tg:owner:devin:devin-1"}));
  EXPECT_GT(ttl, 90L * 86400 - 60);
  EXPECT_LE(ttl, 90L * 86400);
}

TEST(RedisOwnershipStore, AFailingRedisIsAFailureNeverNotOwned) {
  tollgate::testing::RedisServer redis;
  RedisOwnershipStore store(RedisAt(redis.port()), 90);
  loop::LoopThread thread("ownership-test");
  ASSERT_TRUE(Record(thread, store, "devin-1", "team-a"));
  redis.Stop();
  EXPECT_EQ(Lookup(thread, store, "devin-1"), Found(false, std::nullopt));
  EXPECT_FALSE(Record(thread, store, "devin-2", "team-a"));
}

config::Rule OwnerRule(std::string path, std::map<std::string, std::string> where) {
  config::Rule rule;
  rule.upstream = "devin";
  rule.methods = {"GET"};
  rule.path = std::move(path);
  rule.where = std::move(where);
  return rule;
}

TEST(PolicyOwner, OwnerBindingsAreReportedNotCheckedAsAttributes) {
  config::Config config;
  testing::AddRole(&config, "team",
                   {OwnerRule("/v3/organizations/{org}/sessions/{devin_id}",
                              {{"devin_id", "owner"}, {"org", "orgs"}})});
  testing::AddRole(&config, "admin",
                   {OwnerRule("/v3/organizations/{org}/sessions/{devin_id}", {})});
  std::string error;
  auto policy = Policy::Compile(config, &error);
  ASSERT_NE(policy, nullptr) << error;
  config::Caller caller;
  caller.name = "a";
  caller.roles = {"team"};
  caller.attributes = {{"orgs", {"o1"}}};  // no attribute named "owner"
  PolicyDecision d = policy->Decide(caller, "GET", "devin", "/v3/organizations/o1/sessions/s9");
  ASSERT_TRUE(d.allowed());
  EXPECT_EQ(d.owner_values, std::vector<std::string>{"s9"});
  // The other bindings still hold as before.
  EXPECT_FALSE(
      policy->Decide(caller, "GET", "devin", "/v3/organizations/o2/sessions/s9").allowed());
  // A rule needing no owner check wins, whatever the role order.
  caller.roles = {"team", "admin"};
  d = policy->Decide(caller, "GET", "devin", "/v3/organizations/o1/sessions/s9");
  ASSERT_TRUE(d.allowed());
  EXPECT_TRUE(d.owner_values.empty());
  EXPECT_EQ(d.rule->role, "admin");
}

}  // namespace
}  // namespace tollgate::policies
