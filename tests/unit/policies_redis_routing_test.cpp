// Every Redis client asks a RedisTopology where a command goes (issue 14). A fake topology here
// says what the real sentinel/cluster topologies would (any node for any key, a new epoch, a
// replica as the primary, the wrong node of a cluster) and records what the clients report
// (Suspect, Moved); the servers are real: two redis-servers (one made a replica on cue) and a
// real 3-node cluster for MOVED and ASK.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loop/loop.h"
#include "policies/rate_limiter.h"
#include "policies/redis_cluster.h"
#include "policies/redis_connection.h"
#include "policies/redis_loop_client.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_topology.h"
#include "policies/token_bucket_script.h"
#include "tests/support/process.h"
#include "tests/unit/redis_canned.h"
#include "tests/unit/redis_peek.h"

namespace tollgate::policies {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using testing::RedisPeek;

RedisNode Node(int port) { return RedisNode{"127.0.0.1", port}; }

// Routes "" to the primary, any other key by its slot (a slot not set: the primary); the epoch
// moves only when the test says. Moved() is recorded, not kept: a test that routes a key to the
// wrong node keeps it wrong, so every command proves the client follows.
class FakeTopology : public RedisTopology {
 public:
  FakeTopology(Mode mode, RedisNode primary) : mode_(mode), primary_(std::move(primary)) {}

  Mode mode() const override { return mode_; }
  RedisNode Route(std::string_view key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (key.empty()) return primary_;
    auto found = slots_.find(RedisHashSlot(key));
    return found != slots_.end() ? found->second : primary_;
  }
  RedisNode RouteSlot(int slot) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto found = slots_.find(slot);
    return found != slots_.end() ? found->second : primary_;
  }
  uint64_t epoch() const override { return epoch_.load(); }
  void Suspect(const RedisNode& node) override {
    std::lock_guard<std::mutex> lock(mu_);
    suspects_.push_back(node);
  }
  void Moved(int slot, const RedisNode& node) override {
    std::lock_guard<std::mutex> lock(mu_);
    moved_.emplace_back(slot, node);
    stats_.moved.fetch_add(1);
  }
  std::string Describe() const override { return "fake"; }
  RedisTopologyStats& stats() override { return stats_; }

  void RouteKey(std::string_view key, RedisNode node) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[RedisHashSlot(key)] = std::move(node);
  }
  void SetPrimary(RedisNode node) {
    std::lock_guard<std::mutex> lock(mu_);
    primary_ = std::move(node);
  }
  void NextEpoch() { epoch_.fetch_add(1); }
  std::vector<RedisNode> suspects() const {
    std::lock_guard<std::mutex> lock(mu_);
    return suspects_;
  }
  std::vector<std::pair<int, RedisNode>> moved() const {
    std::lock_guard<std::mutex> lock(mu_);
    return moved_;
  }

 private:
  const Mode mode_;
  mutable std::mutex mu_;
  RedisNode primary_;
  std::map<int, RedisNode> slots_;
  std::atomic<uint64_t> epoch_{1};
  std::vector<RedisNode> suspects_;
  std::vector<std::pair<int, RedisNode>> moved_;
  RedisTopologyStats stats_;
};

config::RedisConfig Config(config::RedisOnError on_error = config::RedisOnError::kLocal,
                           std::string prefix = "tollgate:") {
  config::RedisConfig config;
  config.host = "127.0.0.1";
  config.port = 1;  // never used: the topology says where
  config.timeout_ms = 5000;
  config.on_error = on_error;
  config.key_prefix = std::move(prefix);
  return config;
}

BucketSpec Bucket(const std::string& name) {
  BucketSpec spec;
  spec.key = "bucket:" + name + ":_shared";
  spec.name = name;
  spec.rate = config::Rate{100, 60};
  return spec;
}

// The key the limiter's decision for `bucket` routes by (its script call's first key).
std::string FirstKey(const config::RedisConfig& config, const BucketSpec& bucket) {
  return MakeTokenBucketCall({bucket}, "", config.key_prefix, true).keys.front();
}

LimitDecision AcquireSync(RateLimiter& limiter, const BucketSpec& bucket) {
  auto promise = std::make_shared<std::promise<LimitDecision>>();
  std::future<LimitDecision> future = promise->get_future();
  LimitRequest request;
  request.buckets = {bucket};
  limiter.Acquire(std::move(request),
                  [promise](LimitDecision decision) { promise->set_value(std::move(decision)); });
  if (future.wait_for(seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no decision within 30 s";
    return {};
  }
  return future.get();
}

// A RedisLoopClient command's answer as text ("<failed>" for done(nullptr)), run on `thread`.
std::string Ask(loop::LoopThread& thread, RedisLoopClient& client, std::string route_key,
                std::vector<std::string> argv) {
  auto promise = std::make_shared<std::promise<std::string>>();
  std::future<std::string> future = promise->get_future();
  thread.loop().Post([&client, route_key, argv, promise] {
    client.Command(route_key, argv, [promise](const redisReply* reply) {
      if (reply == nullptr) return promise->set_value("<failed>");
      if (reply->str != nullptr) return promise->set_value(std::string(reply->str, reply->len));
      promise->set_value(std::to_string(reply->integer));
    });
  });
  if (future.wait_for(seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no answer within 30 s";
    return "<none>";
  }
  return future.get();
}

bool Contains(const std::vector<RedisNode>& nodes, const RedisNode& node) {
  for (const RedisNode& n : nodes) {
    if (n == node) return true;
  }
  return false;
}

// Waits (bounded, not a timing assertion) until `ready` holds.
template <class Ready>
bool Eventually(Ready ready) {
  const auto until = steady_clock::now() + seconds(10);
  while (steady_clock::now() < until) {
    if (ready()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return ready();
}

int ConnectedClients(int port) {
  RedisPeek peek(port);
  const std::string info = peek.Run({"INFO", "clients"});
  const size_t at = info.find("connected_clients:");
  if (at == std::string::npos) return -1;
  return std::atoi(info.c_str() + at + 18) - 1;  // not counting the peek
}

// ---- Two plain servers: routing by key, a new epoch, a replica --------------------------------

TEST(RedisRoutingTest, TheLimiterSendsEachDecisionToTheNodeOfItsFirstKey) {
  testing::RedisServer a;
  testing::RedisServer b;
  const config::RedisConfig config = Config();
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, Node(a.port()));
  const BucketSpec on_a = Bucket("on-a");
  const BucketSpec on_b = Bucket("on-b");
  topology->RouteKey(FirstKey(config, on_b), Node(b.port()));
  ASSERT_NE(RedisHashSlot(FirstKey(config, on_a)), RedisHashSlot(FirstKey(config, on_b)));
  auto limiter = MakeRedisLimiter(config, topology, 1);

  EXPECT_FALSE(AcquireSync(*limiter, on_a).fallback);
  EXPECT_FALSE(AcquireSync(*limiter, on_b).fallback);
  RedisPeek peek_a(a.port());
  RedisPeek peek_b(b.port());
  EXPECT_EQ(peek_a.Run({"EXISTS", FirstKey(config, on_a)}), "1");
  EXPECT_EQ(peek_b.Run({"EXISTS", FirstKey(config, on_a)}), "0");
  EXPECT_EQ(peek_b.Run({"EXISTS", FirstKey(config, on_b)}), "1");
  EXPECT_EQ(peek_a.Run({"EXISTS", FirstKey(config, on_b)}), "0");
  EXPECT_EQ(limiter->stats().redis_errors.load(), 0u);
}

TEST(RedisRoutingTest, TheLoopClientSendsEachCommandToTheNodeOfItsRouteKey) {
  testing::RedisServer a;
  testing::RedisServer b;
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, Node(a.port()));
  topology->RouteKey("key-on-b", Node(b.port()));
  ASSERT_NE(RedisHashSlot("key-on-a"), RedisHashSlot("key-on-b"));
  RedisLoopClient client(Config(), topology);
  loop::LoopThread thread("routing-test");

  EXPECT_EQ(Ask(thread, client, "key-on-a", {"SET", "key-on-a", "1"}), "OK");
  EXPECT_EQ(Ask(thread, client, "key-on-b", {"SET", "key-on-b", "2"}), "OK");
  EXPECT_EQ(RedisPeek(a.port()).Run({"GET", "key-on-a"}), "1");
  EXPECT_EQ(RedisPeek(b.port()).Run({"GET", "key-on-b"}), "2");
  EXPECT_EQ(RedisPeek(a.port()).Run({"EXISTS", "key-on-b"}), "0");
}

TEST(RedisRoutingTest, ANewEpochMovesTrafficAndClosesTheConnectionToTheOldPrimary) {
  testing::RedisServer a;
  testing::RedisServer b;
  const config::RedisConfig config = Config();
  // Sentinel mode: the ROLE check passes on both (both are masters).
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kSentinel, Node(a.port()));
  auto limiter = MakeRedisLimiter(config, topology, 1);
  RedisLoopClient client(config, topology);
  loop::LoopThread thread("routing-test");
  const BucketSpec bucket = Bucket("moving");

  EXPECT_FALSE(AcquireSync(*limiter, bucket).fallback);
  EXPECT_EQ(Ask(thread, client, "k", {"SET", "k", "before"}), "OK");
  EXPECT_EQ(RedisPeek(a.port()).Run({"EXISTS", FirstKey(config, bucket)}), "1");
  EXPECT_EQ(ConnectedClients(a.port()), 2);

  topology->SetPrimary(Node(b.port()));
  topology->NextEpoch();
  EXPECT_FALSE(AcquireSync(*limiter, bucket).fallback);
  EXPECT_EQ(Ask(thread, client, "k", {"SET", "k", "after"}), "OK");
  EXPECT_EQ(RedisPeek(b.port()).Run({"EXISTS", FirstKey(config, bucket)}), "1");
  EXPECT_EQ(RedisPeek(b.port()).Run({"GET", "k"}), "after");
  EXPECT_EQ(RedisPeek(a.port()).Run({"GET", "k"}), "before");
  // Both clients closed their connections to the node no longer routed to.
  EXPECT_TRUE(Eventually([&] { return ConnectedClients(a.port()) == 0; }))
      << ConnectedClients(a.port());
  EXPECT_TRUE(topology->suspects().empty());
}

// on_error deny: the old primary's breaker made the limiter unready. Once the topology names a
// new primary the limiter is ready again without any traffic: the old connection, which would
// otherwise keep probing the dead node and hold its breaker open, is abandoned at the next loop
// turn (its probe timer's). The back-off gauge goes back to 0 with it.
TEST(RedisRoutingTest, AfterAFailoverTheLimiterIsReadyAgainWithoutTraffic) {
  testing::RedisServer dead;
  testing::RedisServer alive;
  const RedisNode old_primary = Node(dead.port());
  dead.Stop();
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kSentinel, old_primary);
  auto limiter = MakeRedisLimiter(Config(config::RedisOnError::kDeny), topology, 1);
  const BucketSpec bucket = Bucket("failing");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(AcquireSync(*limiter, bucket).outcome, LimitDecision::Outcome::kUnavailable);
  }
  ASSERT_FALSE(limiter->Ready());
  ASSERT_GT(limiter->stats().breaker_backoff_ms.load(), 0);

  topology->SetPrimary(Node(alive.port()));
  topology->NextEpoch();
  EXPECT_TRUE(Eventually([&] { return limiter->Ready(); }))
      << "still unready after the new primary was named";
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 0);
  EXPECT_EQ(AcquireSync(*limiter, bucket).outcome, LimitDecision::Outcome::kAllowed);
  EXPECT_TRUE(limiter->Ready());
}

TEST(RedisRoutingTest, TheSyncConnectionFollowsTheEpoch) {
  testing::RedisServer a;
  testing::RedisServer b;
  const config::RedisConfig config = Config();
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kSentinel, Node(a.port()));
  RedisConnection connection(config, topology, "k");
  ASSERT_TRUE(connection.Open());
  ASSERT_NE(connection.Command({"SET", "k", "before"}), nullptr);
  topology->SetPrimary(Node(b.port()));
  topology->NextEpoch();
  ASSERT_TRUE(connection.Open());
  ASSERT_NE(connection.Command({"SET", "k", "after"}), nullptr);
  EXPECT_EQ(RedisPeek(a.port()).Run({"GET", "k"}), "before");
  EXPECT_EQ(RedisPeek(b.port()).Run({"GET", "k"}), "after");
}

// ---- A redirect's deadline, lost nodes, redirects by host name --------------------------------

// `x` goes to a node that answers MOVED (to a stalled node) only kMovedAfter later; `y` goes
// straight to the stalled node kYAfter after `x`, so the redirected `x` is queued there behind
// `y`, whose deadline is later. `x` must still be answered by its own deadline (no request waits
// longer than timeout_ms), not when `y` times out; and the stalled node is reported.
constexpr milliseconds kStallTimeout(2000);
constexpr milliseconds kMovedAfter(1200);
constexpr milliseconds kYAfter(800);

struct StalledBehindRedirect {
  StalledBehindRedirect()
      : redirector("-MOVED 0 127.0.0.1:" + std::to_string(stalled.port()) + "\r\n", kMovedAfter),
        topology(std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster,
                                                Node(redirector.port()))) {
    config.timeout_ms = static_cast<int>(kStallTimeout.count());
  }
  // Sends x, then y; true when x was answered before y's deadline (y sent + timeout).
  bool XAnsweredByItsOwnDeadline(const std::function<void(std::function<void()>)>& send_x,
                                 const std::function<void()>& send_y) {
    auto answered = std::make_shared<std::promise<steady_clock::time_point>>();
    std::future<steady_clock::time_point> x_answer = answered->get_future();
    send_x([answered] { answered->set_value(steady_clock::now()); });
    std::this_thread::sleep_for(kYAfter);
    const steady_clock::time_point y_sent = steady_clock::now();  // y's deadline is later
    send_y();
    if (x_answer.wait_for(seconds(30)) != std::future_status::ready) return false;
    return x_answer.get() < y_sent + kStallTimeout;
  }

  testing::SilentRedis stalled;
  testing::CannedRedis redirector;
  std::shared_ptr<FakeTopology> topology;
  config::RedisConfig config = Config();
};

TEST(RedisRoutingTest, ARedirectedCommandIsAnsweredByItsOwnDeadline) {
  StalledBehindRedirect setup;
  ASSERT_GT(setup.stalled.port(), 0);
  setup.topology->RouteKey("y", Node(setup.stalled.port()));
  RedisLoopClient client(setup.config, setup.topology);
  loop::LoopThread thread("routing-test");
  const bool in_time = setup.XAnsweredByItsOwnDeadline(
      [&](std::function<void()> answered) {
        thread.loop().Post([&client, answered] {
          client.Command("x", {"GET", "x"}, [answered](const redisReply* reply) {
            EXPECT_EQ(reply, nullptr);
            answered();
          });
        });
      },
      [&] { thread.loop().Post([&client] {
              client.Command("y", {"GET", "y"}, [](auto) {});
            }); });
  EXPECT_TRUE(in_time) << "answered only when the command queued before it timed out";
  EXPECT_EQ(setup.topology->moved().size(), 1u);
  EXPECT_TRUE(Contains(setup.topology->suspects(), Node(setup.stalled.port())));
}

TEST(RedisRoutingTest, ARedirectedDecisionIsAnsweredByItsOwnDeadline) {
  StalledBehindRedirect setup;
  ASSERT_GT(setup.stalled.port(), 0);
  const BucketSpec x = Bucket("x");
  const BucketSpec y = Bucket("y");
  setup.topology->RouteKey(FirstKey(setup.config, y), Node(setup.stalled.port()));
  ASSERT_NE(setup.topology->Route(FirstKey(setup.config, x)), Node(setup.stalled.port()));
  auto limiter = MakeRedisLimiter(setup.config, setup.topology, 1);
  const bool in_time = setup.XAnsweredByItsOwnDeadline(
      [&](std::function<void()> answered) {
        LimitRequest request;
        request.buckets = {x};
        limiter->Acquire(std::move(request), [answered](LimitDecision decision) {
          EXPECT_TRUE(decision.fallback);
          answered();
        });
      },
      [&] {
        LimitRequest request;
        request.buckets = {y};
        limiter->Acquire(std::move(request), [](LimitDecision) {});
      });
  EXPECT_TRUE(in_time) << "answered only when the decision queued before it timed out";
  EXPECT_EQ(setup.topology->moved().size(), 1u);
  EXPECT_TRUE(Contains(setup.topology->suspects(), Node(setup.stalled.port())));
}

// An EVALSHA answered NOSCRIPT late is sent again behind a SCRIPT LOAD with the deadline it
// started with: when the node then stalls, it fails by timeout_ms after it was asked (not a
// timeout_ms after the NOSCRIPT came).
TEST(RedisRoutingTest, AScriptSentAgainKeepsItsDeadline) {
  constexpr milliseconds kNoScriptAfter(1800);
  testing::CannedRedis node("-NOSCRIPT No matching script.\r\n", kNoScriptAfter, 1);
  ASSERT_GT(node.port(), 0);
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kDirect, Node(node.port()));
  config::RedisConfig config = Config();
  config.timeout_ms = static_cast<int>(kStallTimeout.count());
  RedisLoopClient client(config, topology);
  loop::LoopThread thread("routing-test");
  static const RedisScript script("return 1");
  auto answered = std::make_shared<std::promise<steady_clock::time_point>>();
  std::future<steady_clock::time_point> answer = answered->get_future();
  const steady_clock::time_point sent = steady_clock::now();
  thread.loop().Post([&client, answered] {
    client.Eval(script, {"k"}, {}, [answered](const redisReply* reply) {
      EXPECT_EQ(reply, nullptr);
      answered->set_value(steady_clock::now());
    });
  });
  ASSERT_EQ(answer.wait_for(seconds(30)), std::future_status::ready);
  // Extended, it could not fail before kNoScriptAfter + kStallTimeout.
  EXPECT_LT(answer.get(), sent + kNoScriptAfter + kStallTimeout - milliseconds(300));
}

// A node that goes away is reported at once by both loop clients (a cluster then reads its slot
// map again instead of waiting for the periodic read).
TEST(RedisRoutingTest, ALostConnectionReportsItsNode) {
  testing::RedisServer server;
  const RedisNode node = Node(server.port());
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, node);
  RedisLoopClient client(Config(), topology);
  auto limiter = MakeRedisLimiter(Config(), topology, 1);
  loop::LoopThread thread("routing-test");
  ASSERT_EQ(Ask(thread, client, "k", {"SET", "k", "v"}), "OK");
  ASSERT_FALSE(AcquireSync(*limiter, Bucket("lost")).fallback);
  ASSERT_TRUE(topology->suspects().empty());

  server.Stop();
  EXPECT_EQ(Ask(thread, client, "k", {"GET", "k"}), "<failed>");
  EXPECT_TRUE(AcquireSync(*limiter, Bucket("lost")).fallback);
  const std::vector<RedisNode> suspects = topology->suspects();
  EXPECT_GE(suspects.size(), 2u);
  for (const RedisNode& suspect : suspects) EXPECT_EQ(suspect, node);
}

redisReply ErrorReplyOf(std::string& text) {
  redisReply reply{};
  reply.type = REDIS_REPLY_ERROR;
  reply.str = text.data();
  reply.len = text.size();
  return reply;
}

// With cluster-preferred-endpoint-type hostname a redirect names a host: a loop would resolve it
// (DNS) to connect. The command fails instead and the map is read again (its names resolved off
// the loops); nothing is kept from it.
TEST(RedisRoutingTest, ARedirectToAHostNameIsRefusedAndTheMapReadAgain) {
  FakeTopology topology(RedisTopology::Mode::kCluster, Node(7000));
  for (std::string text : {"MOVED 3999 redis-b.internal:6379", "ASK 3999 localhost:6379"}) {
    const ReplyVerdict verdict = JudgeReply(ErrorReplyOf(text), topology, Node(7000), false);
    EXPECT_EQ(verdict.kind, ReplyVerdict::Kind::kRefused) << text;
  }
  EXPECT_TRUE(topology.moved().empty());
  EXPECT_EQ(topology.stats().asked.load(), 0u);
  ASSERT_EQ(topology.suspects().size(), 2u);
  EXPECT_EQ(topology.suspects()[0], Node(7000));

  for (std::string text : {"MOVED 3999 127.0.0.1:7001", "MOVED 3999 ::1:7001"}) {
    const ReplyVerdict verdict = JudgeReply(ErrorReplyOf(text), topology, Node(7000), false);
    EXPECT_EQ(verdict.kind, ReplyVerdict::Kind::kRedirect) << text;
  }
  EXPECT_EQ(topology.moved().size(), 2u);
}

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(
        RedisPeek(replica_.port()).Run({"REPLICAOF", "127.0.0.1", std::to_string(primary_.port())}),
        "OK");
  }
  testing::RedisServer primary_;
  testing::RedisServer replica_;
};

TEST_F(ReplicaTest, AReadOnlyAnswerIsReportedAndTheLimiterFallsBack) {
  // Direct mode: no ROLE check, so only the READONLY answer can tell.
  auto topology =
      std::make_shared<FakeTopology>(RedisTopology::Mode::kDirect, Node(replica_.port()));
  auto local = MakeRedisLimiter(Config(config::RedisOnError::kLocal), topology, 1);
  const LimitDecision decision = AcquireSync(*local, Bucket("replica"));
  EXPECT_TRUE(decision.fallback);
  EXPECT_EQ(decision.outcome, LimitDecision::Outcome::kAllowed);
  EXPECT_TRUE(Contains(topology->suspects(), Node(replica_.port())));

  auto deny = MakeRedisLimiter(Config(config::RedisOnError::kDeny), topology, 1);
  EXPECT_EQ(AcquireSync(*deny, Bucket("replica")).outcome, LimitDecision::Outcome::kUnavailable);
}

TEST_F(ReplicaTest, AReadOnlyAnswerIsReportedAndTheCommandFails) {
  auto topology =
      std::make_shared<FakeTopology>(RedisTopology::Mode::kDirect, Node(replica_.port()));
  RedisLoopClient client(Config(), topology);
  loop::LoopThread thread("routing-test");
  EXPECT_EQ(Ask(thread, client, "k", {"SET", "k", "v"}), "<failed>");
  EXPECT_TRUE(Contains(topology->suspects(), Node(replica_.port())));
  EXPECT_EQ(client.failures(), 1u);

  RedisConnection connection(Config(), topology, "k");
  ASSERT_TRUE(connection.Open());
  EXPECT_EQ(connection.Command({"SET", "k", "v"}), nullptr);
  EXPECT_FALSE(connection.connected());
}

TEST_F(ReplicaTest, InSentinelModeTheRoleCheckDropsAReplicaBeforeAnyCommand) {
  auto topology =
      std::make_shared<FakeTopology>(RedisTopology::Mode::kSentinel, Node(replica_.port()));
  RedisLoopClient client(Config(), topology);
  auto limiter = MakeRedisLimiter(Config(config::RedisOnError::kLocal), topology, 1);
  loop::LoopThread thread("routing-test");

  // A read the replica would have answered: the ROLE check refuses it first.
  EXPECT_EQ(Ask(thread, client, "", {"PING"}), "<failed>");
  EXPECT_TRUE(AcquireSync(*limiter, Bucket("role")).fallback);
  RedisConnection connection(Config(), topology, "");
  EXPECT_FALSE(connection.Open());
  EXPECT_EQ(topology->suspects().size(), 3u);
  for (const RedisNode& node : topology->suspects()) EXPECT_EQ(node, Node(replica_.port()));

  // The sentinels name the primary: everything works again.
  topology->SetPrimary(Node(primary_.port()));
  topology->NextEpoch();
  EXPECT_EQ(Ask(thread, client, "", {"PING"}), "PONG");
  EXPECT_FALSE(AcquireSync(*limiter, Bucket("role")).fallback);
  EXPECT_TRUE(connection.Open());
}

// What Redis 7 answers for a script's write on a replica, and a script error that only names
// READONLY (a caller called so): only the first is a replica's refusal.
TEST_F(ReplicaTest, OnlyARealReadOnlyAnswerReadsAsReadOnly) {
  RedisPeek replica(replica_.port());
  std::string write = replica.Run({"EVAL", "return redis.call('SET', KEYS[1], '1')", "1", "k"});
  EXPECT_TRUE(IsRedisReadOnly(ErrorReplyOf(write))) << write;
  std::string plain = replica.Run({"SET", "k", "1"});
  EXPECT_TRUE(IsRedisReadOnly(ErrorReplyOf(plain))) << plain;
  RedisPeek primary(primary_.port());
  std::string named =
      primary.Run({"EVAL", "return redis.error_reply('ERR caller READONLY-bot: over quota')", "0"});
  EXPECT_NE(named.find("READONLY-bot"), std::string::npos) << named;
  EXPECT_FALSE(IsRedisReadOnly(ErrorReplyOf(named))) << named;
  std::string raised = primary.Run({"EVAL", "error('READONLY-bot is not allowed')", "0"});
  EXPECT_NE(raised.find("READONLY-bot"), std::string::npos) << raised;
  EXPECT_FALSE(IsRedisReadOnly(ErrorReplyOf(raised))) << raised;
}

// ---- A real cluster: MOVED and ASK -------------------------------------------------------------

struct ClusterNode {
  int port = 0;
  std::string id;
  int first_slot = -1;
  int last_slot = -1;
};

// Three masters (no replicas) on free loopback ports, their slots as `redis-cli --cluster
// create` split them, each node's id and range read back from CLUSTER NODES.
class Cluster {
 public:
  Cluster() {
    for (int i = 0; i < 3; ++i) {
      const int port = testing::FreePort();
      // The bus port is not port + 10000 (that may be taken, or above 65535): a free one too.
      const int bus_port = testing::FreePort();
      processes_.emplace_back(
          std::vector<std::string>{"/usr/bin/redis-server", "--port", std::to_string(port),
                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                   "--cluster-enabled", "yes", "--cluster-port",
                                   std::to_string(bus_port), "--cluster-config-file",
                                   dir_.path() + "/nodes-" + std::to_string(i) + ".conf", "--dir",
                                   dir_.path(), "--loglevel", "warning"},
          std::map<std::string, std::string>{}, "/dev/null");
      nodes_.push_back(ClusterNode{port, "", -1, -1});
    }
    for (const ClusterNode& node : nodes_) {
      if (!testing::WaitForPort(node.port, seconds(10))) {
        ADD_FAILURE() << "cluster node did not start";
        return;
      }
    }
    std::vector<std::string> create = {"/usr/bin/redis-cli", "--cluster", "create"};
    for (const ClusterNode& node : nodes_)
      create.push_back("127.0.0.1:" + std::to_string(node.port));
    create.insert(create.end(), {"--cluster-replicas", "0", "--cluster-yes"});
    std::string output;
    if (testing::RunCommand(create, &output, {}, seconds(60)) != 0) {
      ADD_FAILURE() << "redis-cli --cluster create: " << output;
      return;
    }
    for (const ClusterNode& node : nodes_) {
      const bool ok = Eventually([&] {
        return RedisPeek(node.port).Run({"CLUSTER", "INFO"}).find("cluster_state:ok") !=
               std::string::npos;
      });
      if (!ok) {
        ADD_FAILURE() << "cluster_state never ok on " << node.port;
        return;
      }
    }
    ReadNodes();
    ok_ = true;
  }

  bool ok() const { return ok_; }
  const std::vector<ClusterNode>& nodes() const { return nodes_; }
  const ClusterNode& Owner(int slot) const {
    for (const ClusterNode& node : nodes_) {
      if (slot >= node.first_slot && slot <= node.last_slot) return node;
    }
    return nodes_.front();
  }
  const ClusterNode& Other(const ClusterNode& than) const {
    return nodes_[0].port != than.port ? nodes_[0] : nodes_[1];
  }
  // A hash tag whose slot `node` serves.
  std::string TagOn(const ClusterNode& node) const {
    for (int i = 0;; ++i) {
      const std::string tag = "t" + std::to_string(i);
      if (Owner(RedisHashSlot(tag)).port == node.port) return tag;
    }
  }

 private:
  void ReadNodes() {
    std::istringstream lines(RedisPeek(nodes_[0].port).Run({"CLUSTER", "NODES"}));
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::vector<std::string> field;
      for (std::string f; fields >> f;) field.push_back(f);
      if (field.size() < 9) continue;
      const int port = std::atoi(field[1].substr(field[1].rfind(':') + 1).c_str());
      for (ClusterNode& node : nodes_) {
        if (node.port != port) continue;
        node.id = field[0];
        const std::string& range = field[8];
        node.first_slot = std::atoi(range.c_str());
        const size_t dash = range.find('-');
        node.last_slot =
            dash == std::string::npos ? node.first_slot : std::atoi(range.c_str() + dash + 1);
      }
    }
  }

  testing::TempDir dir_;
  std::vector<testing::ChildProcess> processes_;
  std::vector<ClusterNode> nodes_;
  bool ok_ = false;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.ok()); }
  Cluster cluster_;
};

TEST_F(ClusterTest, AMovedAnswerIsReportedAndFollowedOnce) {
  const ClusterNode& right = cluster_.Owner(0);
  const ClusterNode& wrong = cluster_.Other(right);
  const std::string tag = cluster_.TagOn(right);
  const int slot = RedisHashSlot(tag);
  // Everything goes to the wrong node (and stays wrong: the fake keeps no Moved()).
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, Node(wrong.port));
  const config::RedisConfig config = Config(config::RedisOnError::kDeny, "{" + tag + "}:");

  RedisLoopClient client(config, topology);
  loop::LoopThread thread("routing-test");
  const std::string key = "{" + tag + "}:k";
  EXPECT_EQ(Ask(thread, client, key, {"SET", key, "v"}), "OK");
  EXPECT_EQ(RedisPeek(right.port).Run({"GET", key}), "v");

  auto limiter = MakeRedisLimiter(config, topology, 1);
  const BucketSpec bucket = Bucket("moved");
  const LimitDecision decision = AcquireSync(*limiter, bucket);
  EXPECT_EQ(decision.outcome, LimitDecision::Outcome::kAllowed);
  EXPECT_FALSE(decision.fallback);
  EXPECT_EQ(RedisPeek(right.port).Run({"EXISTS", FirstKey(config, bucket)}), "1");

  RedisConnection connection(config, topology, key);
  ASSERT_TRUE(connection.Open());
  auto reply = connection.Command({"GET", key});
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(std::string(reply->str, reply->len), "v");

  const auto moved = topology->moved();
  // One each: the limiter's retry after NOSCRIPT goes to the node it was redirected to.
  ASSERT_EQ(moved.size(), 3u);
  for (const auto& [moved_slot, node] : moved) {
    EXPECT_EQ(moved_slot, slot);
    EXPECT_EQ(node, Node(right.port));
  }
  EXPECT_EQ(topology->stats().asked.load(), 0u);
}

TEST_F(ClusterTest, AnAskAnswerIsFollowedWithAsking) {
  const ClusterNode& source = cluster_.Owner(0);
  const ClusterNode& target = cluster_.Other(source);
  const std::string tag = cluster_.TagOn(source);
  const int slot = RedisHashSlot(tag);
  // The slot is migrating: the source answers ASK for keys it does not have.
  ASSERT_EQ(RedisPeek(target.port)
                .Run({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", source.id}),
            "OK");
  ASSERT_EQ(RedisPeek(source.port)
                .Run({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", target.id}),
            "OK");
  const std::string key = "{" + tag + "}:k";
  ASSERT_EQ(RedisPeek(source.port).Run({"GET", key}).substr(0, 4), "ASK ");

  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, Node(source.port));
  const config::RedisConfig config = Config(config::RedisOnError::kDeny, "{" + tag + "}:");
  RedisLoopClient client(config, topology);
  loop::LoopThread thread("routing-test");
  EXPECT_EQ(Ask(thread, client, key, {"SET", key, "v"}), "OK");
  EXPECT_EQ(topology->stats().asked.load(), 1u);

  auto limiter = MakeRedisLimiter(config, topology, 1);
  const BucketSpec bucket = Bucket("asked");
  const LimitDecision decision = AcquireSync(*limiter, bucket);
  EXPECT_EQ(decision.outcome, LimitDecision::Outcome::kAllowed);
  EXPECT_FALSE(decision.fallback);
  EXPECT_EQ(topology->stats().asked.load(), 2u);

  // Both landed on the importing node; ASK is not MOVED: nothing was reported as moved.
  RedisPeek peek(target.port);
  ASSERT_EQ(peek.Run({"ASKING"}), "OK");
  EXPECT_EQ(peek.Run({"GET", key}), "v");
  ASSERT_EQ(peek.Run({"ASKING"}), "OK");
  EXPECT_EQ(peek.Run({"EXISTS", FirstKey(config, bucket)}), "1");
  EXPECT_TRUE(topology->moved().empty());
}

// A decision names two keys (the upstream's cooldown, usually absent, and its bucket). While
// their slot migrates, the source answers ASK (a key is missing there) and the importing node
// TRYAGAIN (not all keys are there either): the limiter asks again, within its deadline, until
// the migration is over and the source answers MOVED; the decision then comes from Redis.
TEST_F(ClusterTest, ATryAgainDuringAMigrationIsAskedAgainUntilTheSlotHasMoved) {
  const ClusterNode& source = cluster_.Owner(0);
  const ClusterNode& target = cluster_.Other(source);
  const std::string tag = cluster_.TagOn(source);
  const std::string slot = std::to_string(RedisHashSlot(tag));
  ASSERT_EQ(RedisPeek(target.port).Run({"CLUSTER", "SETSLOT", slot, "IMPORTING", source.id}), "OK");
  ASSERT_EQ(RedisPeek(source.port).Run({"CLUSTER", "SETSLOT", slot, "MIGRATING", target.id}), "OK");
  auto topology = std::make_shared<FakeTopology>(RedisTopology::Mode::kCluster, Node(source.port));
  const config::RedisConfig config = Config(config::RedisOnError::kDeny, "{" + tag + "}:");
  auto limiter = MakeRedisLimiter(config, topology, 1);
  LimitRequest request;
  request.buckets = {Bucket("migrating")};
  request.cooldown_upstream = "devin";
  ASSERT_EQ(MakeTokenBucketCall(request, config.key_prefix, true).keys.size(), 2u);
  ASSERT_EQ(RedisPeek(target.port).Run({"ASKING"}), "OK");

  auto promise = std::make_shared<std::promise<LimitDecision>>();
  std::future<LimitDecision> future = promise->get_future();
  limiter->Acquire(request,
                   [promise](LimitDecision decision) { promise->set_value(std::move(decision)); });
  // Not answered while the slot migrates (it would be a 503: on_error deny)...
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  // ...and answered by Redis once the migration is done: the target is told first, as the
  // reshard procedure has it (a source told first would send MOVED to a target still importing,
  // which would send it back).
  ASSERT_EQ(RedisPeek(target.port).Run({"CLUSTER", "SETSLOT", slot, "NODE", target.id}), "OK");
  for (const ClusterNode& node : cluster_.nodes()) {
    if (node.port == target.port) continue;
    ASSERT_EQ(RedisPeek(node.port).Run({"CLUSTER", "SETSLOT", slot, "NODE", target.id}), "OK");
  }
  ASSERT_EQ(future.wait_for(seconds(30)), std::future_status::ready);
  const LimitDecision decision = future.get();
  EXPECT_EQ(decision.outcome, LimitDecision::Outcome::kAllowed) << decision.error;
  EXPECT_FALSE(decision.fallback);
  EXPECT_EQ(RedisPeek(target.port).Run({"EXISTS", FirstKey(config, Bucket("migrating"))}), "1");
}

// In a cluster, buckets of different slot tags live on different slots (here on different
// nodes): a peek over them (the console's /limits, whoami) is one script per tag, each routed
// by the cluster topology, the levels answered in the order asked. One script over both would be
// refused (CROSSSLOT) and answered by the fallback.
TEST_F(ClusterTest, APeekAcrossSlotTagsIsOneScriptPerTagInTheOrderAsked) {
  const std::string on_first = cluster_.TagOn(cluster_.nodes()[0]);
  const std::string on_second = cluster_.TagOn(cluster_.nodes()[1]);
  config::RedisConfig config = Config(config::RedisOnError::kLocal);
  config.cluster = config::RedisClusterConfig{{{"127.0.0.1", cluster_.nodes()[0].port}}};
  auto limiter = MakeRedisLimiter(config, MakeClusterTopology(config), 1);
  BucketSpec first = Bucket("peek-first");
  first.slot_tag = on_first;
  BucketSpec second = Bucket("peek-second");
  second.slot_tag = on_second;
  const LimitDecision took = AcquireSync(*limiter, first);
  ASSERT_EQ(took.outcome, LimitDecision::Outcome::kAllowed);
  ASSERT_FALSE(took.fallback);

  auto promise = std::make_shared<std::promise<LimitDecision>>();
  std::future<LimitDecision> future = promise->get_future();
  limiter->Peek({second, first},
                [promise](LimitDecision decision) { promise->set_value(std::move(decision)); });
  ASSERT_EQ(future.wait_for(seconds(30)), std::future_status::ready);
  const LimitDecision peeked = future.get();
  EXPECT_FALSE(peeked.fallback);
  ASSERT_EQ(peeked.levels.size(), 2u);
  EXPECT_EQ(peeked.levels[0].name, "peek-second");
  EXPECT_NEAR(peeked.levels[0].remaining, 100, 0.001);
  EXPECT_EQ(peeked.levels[1].name, "peek-first");
  EXPECT_NEAR(peeked.levels[1].remaining, 99, 0.01);
}

}  // namespace
}  // namespace tollgate::policies
