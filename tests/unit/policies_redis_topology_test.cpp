// RedisTopology (issue 14): hash slots and redirect parsing as Redis defines them, then the
// sentinel and cluster topologies against real processes the tests start: a primary with a
// replica and redis-sentinel processes (a forced failover, a sentinel that dies, Suspect), and a
// three-node redis-server --cluster-enabled set (each slot's owner, Moved, a slot that moves).
// Every wait is a poll with a generous deadline, never a fixed sleep.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/model.h"
#include "policies/redis_cluster.h"
#include "policies/redis_connection.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_sentinel.h"
#include "policies/redis_topology.h"
#include "tests/support/process.h"
#include "tests/unit/redis_canned.h"

namespace tollgate::policies {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using tollgate::testing::ChildProcess;
using tollgate::testing::FreePort;
using tollgate::testing::TempDir;
using tollgate::testing::WaitForPort;

constexpr seconds kDeadline(30);
constexpr milliseconds kForever(3600 * 1000);  // timings that leave only the path under test

bool WaitUntil(const std::function<bool()>& done, seconds deadline = kDeadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return done();
}

// One command to 127.0.0.1:port (AUTH first when a password is given); nullptr when it did not
// answer.
RedisReplyPtr Ask(int port, const std::vector<std::string>& argv, const std::string& user = "",
                  const std::string& password = "") {
  redisContext* context = redisConnectWithTimeout("127.0.0.1", port, timeval{2, 0});
  if (context == nullptr || context->err != 0) {
    if (context != nullptr) redisFree(context);
    return nullptr;
  }
  redisSetTimeout(context, timeval{5, 0});
  if (!password.empty()) {
    redisReply* auth = static_cast<redisReply*>(
        user.empty() ? redisCommand(context, "AUTH %s", password.c_str())
                     : redisCommand(context, "AUTH %s %s", user.c_str(), password.c_str()));
    if (auth != nullptr) freeReplyObject(auth);
  }
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const std::string& arg : argv) {
    args.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  void* reply =
      redisCommandArgv(context, static_cast<int>(args.size()), args.data(), lengths.data());
  redisFree(context);
  return RedisReplyPtr(static_cast<redisReply*>(reply));
}

// The text of a string, status or error reply ("" otherwise).
std::string Text(const RedisReplyPtr& reply) {
  if (reply == nullptr || reply->str == nullptr) return "";
  return std::string(reply->str, reply->len);
}

redisReply ErrorReply(std::string& text, int type = REDIS_REPLY_ERROR) {
  redisReply reply{};
  reply.type = type;
  reply.str = text.data();
  reply.len = text.size();
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Pure functions.

TEST(RedisHashSlot, MatchesRedis) {
  EXPECT_EQ(RedisHashSlot("123456789"), 0x31C3);  // the CRC16/XMODEM check value
  EXPECT_EQ(RedisHashSlot("foo"), 12182);
  EXPECT_EQ(RedisHashSlot("bar"), 5061);
  EXPECT_EQ(RedisHashSlot("{user1000}.following"), RedisHashSlot("{user1000}.followers"));
  EXPECT_EQ(RedisHashSlot("{user1000}.following"), RedisHashSlot("user1000"));
  EXPECT_EQ(RedisHashSlot("foo{bar}{zap}"), RedisHashSlot("bar"));
  EXPECT_EQ(RedisHashSlot("foo{{bar}}zap"), RedisHashSlot("{bar"));
  // An empty tag hashes the whole key, not "" (slot 0).
  EXPECT_NE(RedisHashSlot("a{}b"), RedisHashSlot(""));
  EXPECT_NE(RedisHashSlot("a{}b"), RedisHashSlot("ab"));
  EXPECT_EQ(RedisHashSlot("foo{}{bar}"), RedisHashSlot(std::string("foo{}{bar}")));
  EXPECT_NE(RedisHashSlot("foo{}{bar}"), RedisHashSlot("bar"));
  for (const char* key : {"", "x", "{", "}", "{}", "a{b", "tollgate:{devin}:bucket:x"}) {
    EXPECT_GE(RedisHashSlot(key), 0) << key;
    EXPECT_LT(RedisHashSlot(key), 16384) << key;
  }
}

TEST(ParseRedisRedirect, MovedAndAsk) {
  std::string moved = "MOVED 3999 127.0.0.1:6381";
  auto redirect = ParseRedisRedirect(ErrorReply(moved));
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->kind, RedisRedirect::Kind::kMoved);
  EXPECT_EQ(redirect->slot, 3999);
  EXPECT_EQ(redirect->node, (RedisNode{"127.0.0.1", 6381}));

  std::string ask = "ASK 16383 10.0.0.2:7000";
  redirect = ParseRedisRedirect(ErrorReply(ask));
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->kind, RedisRedirect::Kind::kAsk);
  EXPECT_EQ(redirect->slot, 16383);
  EXPECT_EQ(redirect->node, (RedisNode{"10.0.0.2", 7000}));
}

TEST(ParseRedisRedirect, AnythingElseIsNotARedirect) {
  for (const char* text :
       {"ERR unknown command", "MOVED", "MOVED 3999", "MOVED 3999 127.0.0.1", "MOVED 16384 h:1",
        "MOVED -1 h:1", "MOVED x h:1", "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 :6379",
        "MOVED 1 h:6379x", "ASKING 1 h:1", "moved 1 h:1", ""}) {
    std::string copy = text;
    EXPECT_FALSE(ParseRedisRedirect(ErrorReply(copy))) << text;
  }
  std::string status = "MOVED 3999 127.0.0.1:6381";
  EXPECT_FALSE(ParseRedisRedirect(ErrorReply(status, REDIS_REPLY_STATUS)));
  EXPECT_FALSE(ParseRedisRedirect(ErrorReply(status, REDIS_REPLY_STRING)));
}

TEST(IsRedisReadOnly, PlainAndInsideAScriptError) {
  std::string plain = "READONLY You can't write against a read only replica.";
  EXPECT_TRUE(IsRedisReadOnly(ErrorReply(plain)));
  std::string script =
      "ERR Error running script (call to f_0123): @user_script:1: @user_script: 1: -READONLY "
      "You can't write against a read only replica.";
  EXPECT_TRUE(IsRedisReadOnly(ErrorReply(script)));
  std::string redis7 =
      "READONLY You can't write against a read only replica. script: "
      "d223ed8c7345b684e8ed044ed472601f536fa58b, on @user_script:1.";
  EXPECT_TRUE(IsRedisReadOnly(ErrorReply(redis7)));
  std::string other = "ERR wrong number of arguments";
  EXPECT_FALSE(IsRedisReadOnly(ErrorReply(other)));
  // Naming READONLY is not being refused as a replica.
  for (std::string named : {"ERR caller READONLY-bot over quota", "READONLY-bot: refused",
                            "ERR user_script:1: no access for READONLY_USERS script: ab"}) {
    EXPECT_FALSE(IsRedisReadOnly(ErrorReply(named))) << named;
  }
  EXPECT_FALSE(IsRedisReadOnly(ErrorReply(plain, REDIS_REPLY_STATUS)));
  EXPECT_FALSE(IsRedisReadOnly(ErrorReply(plain, REDIS_REPLY_STRING)));
}

// ---------------------------------------------------------------------------------------------
// Processes.

// redis-server on a free loopback port with no persistence, plus `extra` arguments. Its files
// (a replica's copy of the primary's data, a cluster's nodes file) go to `dir`.
struct LocalRedis {
  LocalRedis(const TempDir& dir, const std::vector<std::string>& extra,
             const std::string& log = "") {
    port = FreePort();
    std::vector<std::string> argv = {"/usr/bin/redis-server", "--port", std::to_string(port),
                                     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--loglevel", "warning", "--dir", dir.path(),
                                     // A replica's full sync starts at once, not 5 s later.
                                     "--repl-diskless-sync-delay", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = ChildProcess(argv, {}, log.empty() ? "/dev/null" : log);
    EXPECT_TRUE(WaitForPort(port, milliseconds(10000))) << "redis-server on " << port;
  }
  RedisNode node() const { return RedisNode{"127.0.0.1", port}; }

  int port = 0;
  ChildProcess process;
};

// redis-sentinel monitoring `tollgate` at 127.0.0.1:primary_port, with a config file of its own
// (sentinels rewrite theirs) in `dir`, plus `extra` config lines.
struct LocalSentinel {
  LocalSentinel(const TempDir& dir, int primary_port, const std::string& extra = "") {
    port = FreePort();
    const std::string name = "sentinel-" + std::to_string(port);
    const std::string path =
        dir.Write(name + ".conf", "port " + std::to_string(port) +
                                      "\nbind 127.0.0.1\ndaemonize no\n"
                                      "sentinel monitor tollgate 127.0.0.1 " +
                                      std::to_string(primary_port) +
                                      " 2\n"
                                      "sentinel down-after-milliseconds tollgate 1000\n"
                                      "sentinel failover-timeout tollgate 5000\n" +
                                      extra);
    process = ChildProcess({"/usr/bin/redis-sentinel", path}, {}, dir.path() + "/" + name + ".log");
    EXPECT_TRUE(WaitForPort(port, milliseconds(10000))) << "redis-sentinel on " << port;
  }
  config::RedisEndpoint endpoint() const { return config::RedisEndpoint{"127.0.0.1", port}; }

  int port = 0;
  ChildProcess process;
};

// A primary, its replica, and the sentinels each test starts.
class SentinelTopologyTest : public ::testing::Test {
 protected:
  // `data_password`: the primary and the replica require it (the topology's ROLE check must
  // AUTH with the data nodes' credentials).
  void StartServers(const std::string& data_password = "") {
    data_password_ = data_password;
    std::vector<std::string> auth;
    if (!data_password.empty())
      auth = {"--requirepass", data_password, "--masterauth", data_password};
    primary_ = std::make_unique<LocalRedis>(dir_, auth);
    std::vector<std::string> replica_args = {"--replicaof", "127.0.0.1",
                                             std::to_string(primary_->port)};
    replica_args.insert(replica_args.end(), auth.begin(), auth.end());
    replica_ = std::make_unique<LocalRedis>(dir_, replica_args);
    ASSERT_TRUE(WaitUntil([&] {
      return Text(Ask(replica_->port, {"INFO", "replication"}, "", data_password_))
                 .find("master_link_status:up") != std::string::npos;
    })) << "the replica never synced";
  }

  LocalSentinel& AddSentinel(const std::string& extra = "") {
    std::string lines = extra;
    if (!data_password_.empty()) lines += "sentinel auth-pass tollgate " + data_password_ + "\n";
    sentinels_.push_back(std::make_unique<LocalSentinel>(dir_, primary_->port, lines));
    return *sentinels_.back();
  }

  config::RedisConfig Config(const std::vector<config::RedisEndpoint>& addresses) const {
    config::RedisConfig config;
    config::RedisSentinelConfig sentinel;
    sentinel.addresses = addresses;
    sentinel.master = "tollgate";
    config.sentinel = sentinel;
    config.url = "sentinel:tollgate@127.0.0.1:" + std::to_string(addresses.front().port);
    config.password = data_password_;
    config.timeout_ms = 200;
    return config;
  }

  // Forces a failover through one sentinel: retried while it has not discovered the replica
  // yet (NOGOODSLAVE). `user`/`password`: the sentinel's admin, when it has ACL users.
  void Failover(int sentinel_port, const std::string& user = "", const std::string& password = "") {
    std::string last;
    ASSERT_TRUE(WaitUntil([&] {
      RedisReplyPtr reply =
          Ask(sentinel_port, {"SENTINEL", "FAILOVER", "tollgate"}, user, password);
      last = Text(reply);
      return reply != nullptr && reply->type == REDIS_REPLY_STATUS && last == "OK";
    })) << "SENTINEL FAILOVER: "
        << last;
  }

  // Until a client of `sentinel` is subscribed (the topology's thread), so a failover cannot
  // happen before it listens.
  static bool WaitForSubscriber(const LocalSentinel& sentinel) {
    return WaitUntil([&] {
      return Text(Ask(sentinel.port, {"CLIENT", "LIST"})).find(" sub=1 ") != std::string::npos;
    });
  }

  TempDir dir_;
  std::string data_password_;
  std::unique_ptr<LocalRedis> primary_;
  std::unique_ptr<LocalRedis> replica_;
  std::vector<std::unique_ptr<LocalSentinel>> sentinels_;
};

TEST_F(SentinelTopologyTest, RoutesToThePrimaryTheSentinelsNameAskingEachInOrder) {
  ASSERT_NO_FATAL_FAILURE(StartServers("data-sekrit"));
  LocalSentinel& sentinel = AddSentinel();
  const config::RedisEndpoint dead{"127.0.0.1", FreePort()};  // nothing listens there
  const config::RedisConfig config = Config({dead, sentinel.endpoint()});

  std::shared_ptr<RedisTopology> topology = RedisTopology::For(config);
  EXPECT_EQ(topology, RedisTopology::For(config));  // one per section
  EXPECT_EQ(topology->mode(), RedisTopology::Mode::kSentinel);
  EXPECT_EQ(topology->Route("any-key"), primary_->node());
  EXPECT_EQ(topology->Route(""), primary_->node());
  EXPECT_EQ(topology->RouteSlot(12), primary_->node());
  EXPECT_GT(topology->epoch(), 0u);
  EXPECT_EQ(topology->stats().resolve_failures.load(), 0u);
  EXPECT_EQ(topology->stats().primary_switches.load(), 0u);
  EXPECT_EQ(topology->Describe(), "sentinel tollgate -> " + primary_->node().ToString());
}

TEST_F(SentinelTopologyTest, NothingKnownWhenNoSentinelAnswers) {
  ASSERT_NO_FATAL_FAILURE(StartServers());
  const config::RedisConfig config = Config({{"127.0.0.1", FreePort()}, {"127.0.0.1", FreePort()}});
  std::shared_ptr<RedisTopology> topology = MakeSentinelTopology(config, {kForever});
  EXPECT_FALSE(topology->Route("k").valid());
  EXPECT_EQ(topology->epoch(), 0u);
  EXPECT_GE(topology->stats().resolve_failures.load(), 1u);
  EXPECT_EQ(topology->Describe(), "sentinel tollgate -> (unknown)");
}

// With re-checks far away, only the +switch-master subscription can move Route.
TEST_F(SentinelTopologyTest, FollowsAFailoverItHearsOf) {
  ASSERT_NO_FATAL_FAILURE(StartServers());
  LocalSentinel& first = AddSentinel();
  LocalSentinel& second = AddSentinel();
  std::shared_ptr<RedisTopology> topology =
      MakeSentinelTopology(Config({first.endpoint(), second.endpoint()}), {kForever});
  ASSERT_EQ(topology->Route(""), primary_->node());
  const uint64_t epoch = topology->epoch();
  ASSERT_TRUE(WaitForSubscriber(first));

  ASSERT_NO_FATAL_FAILURE(Failover(first.port));
  EXPECT_TRUE(WaitUntil([&] { return topology->Route("") == replica_->node(); }))
      << topology->Describe();
  EXPECT_GT(topology->epoch(), epoch);
  EXPECT_EQ(topology->stats().primary_switches.load(), 1u);
  RedisReplyPtr role = Ask(replica_->port, {"ROLE"});
  ASSERT_TRUE(role != nullptr && role->type == REDIS_REPLY_ARRAY);
  EXPECT_EQ(std::string(role->element[0]->str, role->element[0]->len), "master");
}

TEST_F(SentinelTopologyTest, MovesToTheNextSentinelWhenOneDies) {
  ASSERT_NO_FATAL_FAILURE(StartServers());
  LocalSentinel& first = AddSentinel();
  LocalSentinel& second = AddSentinel();
  std::shared_ptr<RedisTopology> topology =
      MakeSentinelTopology(Config({first.endpoint(), second.endpoint()}), {kForever});
  ASSERT_EQ(topology->Route(""), primary_->node());
  ASSERT_TRUE(WaitForSubscriber(first));

  first.process.Stop();
  ASSERT_NO_FATAL_FAILURE(Failover(second.port));
  EXPECT_TRUE(WaitUntil([&] { return topology->Route("") == replica_->node(); }))
      << topology->Describe();
  EXPECT_EQ(topology->stats().primary_switches.load(), 1u);
}

// The sentinel's ACL user for tollgate may ask where the master is but not subscribe, and
// re-checks are far away: only Suspect() can make it ask again.
TEST_F(SentinelTopologyTest, SuspectOfThePrimaryReResolvesAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartServers("data-sekrit"));
  LocalSentinel& sentinel = AddSentinel(
      "user default off\n"
      "user admin on >admin-pw ~* &* +@all\n"
      "user watcher on >watcher-pw -@all +auth +ping +sentinel|get-master-addr-by-name "
      "resetchannels\n");
  config::RedisConfig config = Config({sentinel.endpoint()});
  config.sentinel->username = "watcher";
  config.sentinel->password = "watcher-pw";
  std::shared_ptr<RedisTopology> topology = MakeSentinelTopology(config, {kForever});
  ASSERT_EQ(topology->Route(""), primary_->node()) << topology->Describe();

  ASSERT_NO_FATAL_FAILURE(Failover(sentinel.port, "admin", "admin-pw"));
  ASSERT_TRUE(WaitUntil([&] {
    RedisReplyPtr named = Ask(sentinel.port, {"SENTINEL", "get-master-addr-by-name", "tollgate"},
                              "admin", "admin-pw");
    if (named == nullptr || named->type != REDIS_REPLY_ARRAY || named->elements != 2) return false;
    RedisReplyPtr role = Ask(replica_->port, {"ROLE"}, "", data_password_);
    return std::string(named->element[1]->str, named->element[1]->len) ==
               std::to_string(replica_->port) &&
           role != nullptr && role->type == REDIS_REPLY_ARRAY &&
           std::string(role->element[0]->str, role->element[0]->len) == "master";
  })) << "the sentinel never named the replica";
  EXPECT_EQ(topology->Route(""), primary_->node());  // nothing told it yet

  topology->Suspect(primary_->node());
  EXPECT_TRUE(WaitUntil([&] { return topology->Route("") == replica_->node(); }))
      << topology->Describe();
  EXPECT_EQ(topology->stats().primary_switches.load(), 1u);
}

// ---------------------------------------------------------------------------------------------
// A three-node cluster, shared by the cluster tests (forming one takes a few seconds).

struct LocalCluster {
  LocalCluster() {
    const std::vector<std::pair<int, int>> ranges = {{0, 5460}, {5461, 10922}, {10923, 16383}};
    for (size_t i = 0; i < ranges.size(); ++i) {
      const int bus = FreePort();  // not port+10000: that can be past 65535
      nodes.push_back(std::make_unique<LocalRedis>(
          dir,
          std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file",
                                   dir.path() + "/nodes-" + std::to_string(i) + ".conf",
                                   "--cluster-port", std::to_string(bus), "--cluster-node-timeout",
                                   "5000"},
          dir.path() + "/node-" + std::to_string(i) + ".log"));
      buses.push_back(bus);
      Ask(nodes[i]->port, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(ranges[i].first),
                           std::to_string(ranges[i].second)});
      ids.push_back(Text(Ask(nodes[i]->port, {"CLUSTER", "MYID"})));
    }
    for (size_t i = 1; i < nodes.size(); ++i) {
      Ask(nodes[0]->port, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes[i]->port),
                           std::to_string(buses[i])});
    }
    ok = WaitUntil([&] {
      for (const auto& node : nodes) {
        const std::string info = Text(Ask(node->port, {"CLUSTER", "INFO"}));
        if (info.find("cluster_state:ok") == std::string::npos ||
            info.find("cluster_known_nodes:3") == std::string::npos) {
          return false;
        }
      }
      return true;
    });
  }

  // Moves an empty slot from node `from` to node `to` as a reshard does (IMPORTING, MIGRATING,
  // then NODE on the new owner first, so it claims the slot with a new config epoch).
  bool MoveSlot(int slot, size_t from, size_t to) {
    const std::string s = std::to_string(slot);
    bool done =
        Text(Ask(nodes[to]->port, {"CLUSTER", "SETSLOT", s, "IMPORTING", ids[from]})) == "OK";
    done = done &&
           Text(Ask(nodes[from]->port, {"CLUSTER", "SETSLOT", s, "MIGRATING", ids[to]})) == "OK";
    done = done && Text(Ask(nodes[to]->port, {"CLUSTER", "SETSLOT", s, "NODE", ids[to]})) == "OK";
    done = done && Text(Ask(nodes[from]->port, {"CLUSTER", "SETSLOT", s, "NODE", ids[to]})) == "OK";
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (i != from && i != to) Ask(nodes[i]->port, {"CLUSTER", "SETSLOT", s, "NODE", ids[to]});
    }
    return done;
  }

  config::RedisConfig Config(std::vector<config::RedisEndpoint> seeds = {}) const {
    if (seeds.empty()) seeds.push_back({"127.0.0.1", nodes[0]->port});
    config::RedisConfig config;
    config.cluster = config::RedisClusterConfig{seeds};
    config.url = "cluster:127.0.0.1:" + std::to_string(seeds.front().port);
    config.timeout_ms = 200;
    return config;
  }

  RedisNode node(size_t i) const { return nodes[i]->node(); }

  TempDir dir;
  std::vector<std::unique_ptr<LocalRedis>> nodes;
  std::vector<int> buses;
  std::vector<std::string> ids;
  bool ok = false;
};

class ClusterTopologyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new LocalCluster(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(cluster_->ok) << "the cluster never formed"; }

  // A key of `slot` (found by trying).
  static std::string KeyOfSlot(int slot) {
    for (int i = 0;; ++i) {
      std::string key = "k" + std::to_string(i);
      if (RedisHashSlot(key) == slot) return key;
    }
  }

  static LocalCluster* cluster_;
};
LocalCluster* ClusterTopologyTest::cluster_ = nullptr;

TEST_F(ClusterTopologyTest, HashSlotsAgreeWithTheServer) {
  for (const char* key : {"foo", "bar", "a{}b", "{user1000}.following", "foo{{bar}}zap",
                          "foo{}{bar}", "{", "}{x}", "tollgate:{devin}:bucket:team", "123456789"}) {
    RedisReplyPtr slot = Ask(cluster_->nodes[0]->port, {"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(slot != nullptr && slot->type == REDIS_REPLY_INTEGER) << key;
    EXPECT_EQ(RedisHashSlot(key), slot->integer) << key;
  }
}

TEST_F(ClusterTopologyTest, RoutesEachSlotToItsOwner) {
  // The first seed is dead: the map comes from the next.
  const config::RedisConfig config =
      cluster_->Config({{"127.0.0.1", FreePort()}, {"127.0.0.1", cluster_->nodes[1]->port}});
  std::shared_ptr<RedisTopology> topology = RedisTopology::For(config);
  EXPECT_EQ(topology, RedisTopology::For(config));
  EXPECT_EQ(topology->mode(), RedisTopology::Mode::kCluster);
  EXPECT_EQ(topology->RouteSlot(0), cluster_->node(0));
  EXPECT_EQ(topology->RouteSlot(5460), cluster_->node(0));
  EXPECT_EQ(topology->RouteSlot(5461), cluster_->node(1));
  EXPECT_EQ(topology->RouteSlot(10922), cluster_->node(1));
  EXPECT_EQ(topology->RouteSlot(10923), cluster_->node(2));
  EXPECT_EQ(topology->RouteSlot(16383), cluster_->node(2));
  EXPECT_FALSE(topology->RouteSlot(16384).valid());
  EXPECT_EQ(topology->Route("foo"), cluster_->node(2));  // slot 12182
  EXPECT_EQ(topology->Route("bar"), cluster_->node(0));  // slot 5061
  EXPECT_EQ(topology->Route("{user1000}.following"), topology->Route("{user1000}.followers"));
  const RedisNode any = topology->Route("");
  EXPECT_TRUE(any == cluster_->node(0) || any == cluster_->node(1) || any == cluster_->node(2))
      << any.ToString();
  EXPECT_GT(topology->epoch(), 0u);
  EXPECT_EQ(topology->Describe(), "cluster of 3 masters");
  EXPECT_EQ(topology->stats().resolve_failures.load(), 0u);
}

TEST_F(ClusterTopologyTest, NoSeedAnswersNothingKnown) {
  config::RedisConfig config = cluster_->Config({{"127.0.0.1", FreePort()}});
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(config, {kForever});
  EXPECT_FALSE(topology->RouteSlot(0).valid());
  EXPECT_FALSE(topology->Route("").valid());
  EXPECT_GE(topology->stats().resolve_failures.load(), 1u);
}

// With re-reads far away, only the read a Moved() asks for can set the slot back.
TEST_F(ClusterTopologyTest, MovedTakesEffectAtOnceAndTheMapIsReadSoonAfter) {
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(cluster_->Config(), {kForever});
  ASSERT_EQ(topology->RouteSlot(7), cluster_->node(0));
  const uint64_t epoch = topology->epoch();

  topology->Moved(7, cluster_->node(2));  // wrong on purpose: the re-read corrects it
  EXPECT_EQ(topology->RouteSlot(7), cluster_->node(2));
  EXPECT_EQ(topology->RouteSlot(8), cluster_->node(0));
  EXPECT_EQ(topology->stats().moved.load(), 1u);
  EXPECT_GT(topology->epoch(), epoch);
  const uint64_t moved_epoch = topology->epoch();

  EXPECT_TRUE(WaitUntil([&] { return topology->RouteSlot(7) == cluster_->node(0); }));
  EXPECT_GE(topology->stats().slot_map_refreshes.load(), 1u);
  EXPECT_GT(topology->epoch(), moved_epoch);
}

// A slot really moves: a command on the old owner answers MOVED, which the topology keeps.
TEST_F(ClusterTopologyTest, FollowsAMovedRedirect) {
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(cluster_->Config(), {kForever});
  const int slot = 100;
  ASSERT_EQ(topology->RouteSlot(slot), cluster_->node(0));
  ASSERT_TRUE(cluster_->MoveSlot(slot, 0, 1));

  RedisReplyPtr reply = Ask(cluster_->nodes[0]->port, {"GET", KeyOfSlot(slot)});
  ASSERT_TRUE(reply != nullptr);
  auto redirect = ParseRedisRedirect(*reply);
  ASSERT_TRUE(redirect) << Text(reply);
  EXPECT_EQ(redirect->kind, RedisRedirect::Kind::kMoved);
  EXPECT_EQ(redirect->slot, slot);
  EXPECT_EQ(redirect->node, cluster_->node(1));
  topology->Moved(redirect->slot, redirect->node);
  EXPECT_EQ(topology->RouteSlot(slot), cluster_->node(1));
}

// A slot moves and nobody says MOVED: Suspect() makes it read the map again.
TEST_F(ClusterTopologyTest, SuspectReadsTheMapAgain) {
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(cluster_->Config(), {kForever});
  const int slot = 101;
  ASSERT_EQ(topology->RouteSlot(slot), cluster_->node(0));
  ASSERT_TRUE(cluster_->MoveSlot(slot, 0, 1));
  const uint64_t refreshes = topology->stats().slot_map_refreshes.load();

  topology->Suspect(cluster_->node(0));
  EXPECT_TRUE(WaitUntil([&] { return topology->RouteSlot(slot) == cluster_->node(1); }));
  EXPECT_GT(topology->stats().slot_map_refreshes.load(), refreshes);
  EXPECT_EQ(topology->stats().moved.load(), 0u);
}

// Every connection of every loop asks Serves when the epoch moves: answered from the map.
TEST_F(ClusterTopologyTest, ServesTheNodesThatOwnSlots) {
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(cluster_->Config(), {kForever});
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(topology->Serves(cluster_->node(i))) << i;
  EXPECT_FALSE(topology->Serves(RedisNode{"127.0.0.1", FreePort()}));
  EXPECT_FALSE(topology->Serves(RedisNode{}));
  // A node that held a slot for a moment only (Moved there and back) serves nothing.
  const RedisNode passing{"127.0.0.1", 2};
  topology->Moved(8, passing);
  EXPECT_TRUE(topology->Serves(passing));
  topology->Moved(8, cluster_->node(0));
  EXPECT_FALSE(topology->Serves(passing));
  const RedisNode elsewhere{"127.0.0.1", 1};
  topology->Moved(7, elsewhere);
  EXPECT_TRUE(topology->Serves(elsewhere));
  EXPECT_TRUE(StillRouted(*topology, elsewhere));
  // The re-read the Moved() asked for gives slot 7 back: elsewhere serves nothing now.
  EXPECT_TRUE(WaitUntil([&] { return !topology->Serves(elsewhere); }));
  EXPECT_TRUE(topology->Serves(cluster_->node(0)));
}

// CLUSTER SLOTS as Redis 7 may answer it: "?" for a master whose endpoint is unknown (routes
// nowhere, not to the node asked), a host name (cluster-preferred-endpoint-type hostname: resolved
// by the topology, so no loop connects by name), "" (the node asked).
TEST(ClusterSlotsTest, UnknownEndpointsRouteNowhereAndNamesAreResolved) {
  int names_port = 0;
  const int names_fd = testing::ListenLoopback(&names_port);  // only its number is used
  ASSERT_GT(names_port, 0);
  const std::string port = std::to_string(names_port);
  std::string slots = "*3\r\n";
  slots += "*3\r\n:0\r\n:99\r\n*2\r\n$1\r\n?\r\n:7001\r\n";
  slots += "*3\r\n:100\r\n:199\r\n*2\r\n$9\r\nlocalhost\r\n:" + port + "\r\n";
  slots += "*3\r\n:200\r\n:16383\r\n*2\r\n$0\r\n\r\n:7003\r\n";
  testing::CannedRedis node(slots);
  ASSERT_GT(node.port(), 0);
  config::RedisConfig config;
  config.cluster = config::RedisClusterConfig{{{"127.0.0.1", node.port()}}};
  config.url = "cluster:127.0.0.1:" + std::to_string(node.port());
  config.timeout_ms = 1000;
  std::shared_ptr<RedisTopology> topology = MakeClusterTopology(config, {kForever});

  EXPECT_FALSE(topology->RouteSlot(0).valid()) << topology->RouteSlot(0).ToString();
  EXPECT_FALSE(topology->RouteSlot(99).valid());
  EXPECT_FALSE(topology->Serves(RedisNode{"127.0.0.1", 7001}));
  const RedisNode named = topology->RouteSlot(150);
  EXPECT_TRUE(IsIpLiteral(named.host)) << named.ToString();
  EXPECT_TRUE(named.host == "127.0.0.1" || named.host == "::1") << named.ToString();
  EXPECT_EQ(named.port, names_port);
  EXPECT_EQ(topology->RouteSlot(300), (RedisNode{"127.0.0.1", 7003}));
  EXPECT_EQ(topology->stats().resolve_failures.load(), 0u);
  close(names_fd);
}

}  // namespace
}  // namespace tollgate::policies
