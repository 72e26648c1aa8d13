// KeyEvents against a real redis-server: a PUBLISH on the keys' channel drops the id it names
// (or everything), a Redis restart is noticed and followed by a resubscription that starts with
// an empty cache, last-use stamps land in the hash, the keys are counted by state, and Stop is
// prompt. Every wait is a bounded poll with a generous deadline.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "config/model.h"
#include "keys/key_cache.h"
#include "keys/key_events.h"
#include "tests/support/process.h"

namespace tollgate::keys {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using std::chrono::system_clock;
using Found = KeyCache::Found;

constexpr const char* kPrefix = "t:";
constexpr const char* kChannel = "t:{keys}:events";

template <typename Probe>
bool Eventually(Probe probe, milliseconds limit = milliseconds(20000)) {
  const auto deadline = steady_clock::now() + limit;
  while (steady_clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return probe();
}

int64_t UnixMs(system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

// A plain hiredis client: publishes, writes hand-made records, reads what KeyEvents wrote.
class Client {
 public:
  explicit Client(int port) : context_(redisConnect("127.0.0.1", port)) {}
  ~Client() {
    if (context_ != nullptr) redisFree(context_);
  }
  std::string String(const std::vector<std::string>& argv) {
    redisReply* reply = Run(argv);
    std::string value =
        reply != nullptr && reply->str != nullptr ? std::string(reply->str, reply->len) : "";
    if (reply != nullptr) freeReplyObject(reply);
    return value;
  }
  long long Integer(const std::vector<std::string>& argv) {
    redisReply* reply = Run(argv);
    const long long value =
        reply != nullptr && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -999;
    if (reply != nullptr) freeReplyObject(reply);
    return value;
  }

 private:
  redisReply* Run(const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& arg : argv) {
      pointers.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), pointers.data(), lengths.data()));
  }
  redisContext* context_;
};

KeyRecord Record(const std::string& id) {
  KeyRecord record;
  record.id = id;
  record.caller = "data-team";
  record.sha256 = std::string(64, 'a');
  return record;
}

Found FindNow(const KeyCache& cache, const std::string& id) {
  KeyRecord record;
  SteadyTime fetched;
  return cache.Find(id, steady_clock::now(), &record, &fetched);
}

KeyEventsOptions Fast() {
  KeyEventsOptions options;
  options.flush_interval = milliseconds(100);
  options.count_interval = milliseconds(200);
  return options;
}

class KeyEventsTest : public ::testing::Test {
 protected:
  config::RedisConfig Config() {
    config::RedisConfig config;
    config.host = "127.0.0.1";
    config.port = redis_.port();
    config.key_prefix = kPrefix;
    return config;
  }

  tollgate::testing::RedisServer redis_;
  KeyCache cache_{KeyCacheOptions()};
};

TEST_F(KeyEventsTest, APublishDropsTheIdItNames) {
  KeyEvents events(Config(), &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  cache_.Put(Record("aaaaaaaaaaaa"), steady_clock::now());
  cache_.Put(Record("bbbbbbbbbbbb"), steady_clock::now());

  Client client(redis_.port());
  EXPECT_EQ(client.Integer({"PUBLISH", "other:{keys}:events", "bbbbbbbbbbbb"}), 0);
  EXPECT_EQ(client.Integer({"PUBLISH", kChannel, "aaaaaaaaaaaa"}), 1);
  ASSERT_TRUE(Eventually([&] { return FindNow(cache_, "aaaaaaaaaaaa") == Found::kMiss; }));
  EXPECT_NE(FindNow(cache_, "bbbbbbbbbbbb"), Found::kMiss);
  EXPECT_EQ(events.events_received(), 1u);

  // A negative entry too: a key created on another replica works here at once.
  cache_.PutMissing("cccccccccccc", steady_clock::now() + seconds(10));
  EXPECT_EQ(FindNow(cache_, "cccccccccccc"), Found::kNegative);
  EXPECT_EQ(client.Integer({"PUBLISH", kChannel, "cccccccccccc"}), 1);
  ASSERT_TRUE(Eventually([&] { return FindNow(cache_, "cccccccccccc") == Found::kMiss; }));
}

TEST_F(KeyEventsTest, AStarDropsEverything) {
  KeyEvents events(Config(), &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  cache_.Put(Record("aaaaaaaaaaaa"), steady_clock::now());
  cache_.Put(Record("bbbbbbbbbbbb"), steady_clock::now());
  cache_.PutMissing("cccccccccccc", steady_clock::now());
  ASSERT_EQ(cache_.size(), 3u);

  Client client(redis_.port());
  EXPECT_EQ(client.Integer({"PUBLISH", kChannel, "*"}), 1);
  ASSERT_TRUE(Eventually([&] { return cache_.size() == 0; }));
}

TEST_F(KeyEventsTest, ARestartedRedisIsResubscribedAndNothingCachedBeforeIsTrusted) {
  KeyEvents events(Config(), &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  const SteadyTime first = steady_clock::now();
  cache_.Put(Record("aaaaaaaaaaaa"), first);
  cache_.PutMissing("dddddddddddd", first);

  redis_.Stop();
  ASSERT_TRUE(Eventually([&] { return !events.subscribed(); }));
  // The cache was told: what is fetched now is trusted for a second only.
  const SteadyTime fetched = steady_clock::now() + seconds(10);
  cache_.Put(Record("bbbbbbbbbbbb"), fetched);
  KeyRecord record;
  SteadyTime when;
  EXPECT_EQ(cache_.Find("bbbbbbbbbbbb", fetched + seconds(2), &record, &when), Found::kStale);
  EXPECT_EQ(cache_.size(), 3u);

  redis_.Start();
  ASSERT_TRUE(redis_.running());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  // Events published while it was down are lost: a "no such id" is forgotten (the key may have
  // been created meanwhile), and the records are looked up again before they are trusted.
  EXPECT_EQ(cache_.size(), 2u);
  EXPECT_EQ(cache_.Find("dddddddddddd", first + seconds(2), &record, &when), Found::kMiss);
  EXPECT_EQ(cache_.Find("aaaaaaaaaaaa", first + seconds(2), &record, &when), Found::kStale);

  // Covered by the new subscription (past the window in which "*" makes answers suspect).
  const SteadyTime later = steady_clock::now() + seconds(20);
  cache_.Put(Record("cccccccccccc"), later);
  EXPECT_EQ(cache_.Find("cccccccccccc", later + seconds(100), &record, &when), Found::kFresh);
  Client client(redis_.port());
  EXPECT_EQ(client.Integer({"PUBLISH", kChannel, "cccccccccccc"}), 1);
  ASSERT_TRUE(Eventually([&] { return FindNow(cache_, "cccccccccccc") == Found::kMiss; }));
}

// A connection a NAT or firewall dropped without a word looks like a Redis that stopped
// answering: nothing arrives, nothing fails. The heartbeat notices it within about a second, so
// the cache stops trusting entries for cache_ttl (events may be going missing), and the
// subscription comes back once Redis answers again, with nothing cached before trusted: the
// entry must be looked up again (kStale), never taken as fresh.
TEST_F(KeyEventsTest, ASubscriptionThatGoesSilentIsTakenAsLostAndRenewed) {
  KeyEvents events(Config(), &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  const SteadyTime fetched = steady_clock::now();
  cache_.Put(Record("aaaaaaaaaaaa"), fetched);
  ASSERT_EQ(kill(redis_.pid(), SIGSTOP), 0);
  const bool lost = Eventually([&] { return !events.subscribed(); }, milliseconds(10000));
  ASSERT_EQ(kill(redis_.pid(), SIGCONT), 0);
  ASSERT_TRUE(lost) << "a subscription that stopped answering was still taken as live";
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  KeyRecord record;
  SteadyTime when;
  EXPECT_EQ(cache_.Find("aaaaaaaaaaaa", fetched + seconds(2), &record, &when), Found::kStale);
}

TEST_F(KeyEventsTest, StampsLandInTheLastUsedHash) {
  KeyEvents events(Config(), &cache_, Fast());
  const system_clock::time_point used = system_clock::now() - seconds(5);
  cache_.Touch("aaaaaaaaaaaa", used);
  cache_.Touch("aaaaaaaaaaaa", used + seconds(1));
  cache_.Touch("bbbbbbbbbbbb", used);

  Client client(redis_.port());
  ASSERT_TRUE(Eventually([&] {
    return client.String({"HGET", "t:{keys}:last_used", "aaaaaaaaaaaa"}) ==
               std::to_string(UnixMs(used + seconds(1))) &&
           client.String({"HGET", "t:{keys}:last_used", "bbbbbbbbbbbb"}) ==
               std::to_string(UnixMs(used));
  }));
}

TEST_F(KeyEventsTest, StopIsPromptAndFlushesTheStampsOnceMore) {
  KeyEventsOptions options;
  options.flush_interval = hours(1);
  options.count_interval = hours(1);
  KeyEvents events(Config(), &cache_, options);
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  const system_clock::time_point used = system_clock::now();
  cache_.Touch("aaaaaaaaaaaa", used);

  const auto start = steady_clock::now();
  events.Stop();
  EXPECT_LT(steady_clock::now() - start, seconds(2));
  EXPECT_FALSE(events.subscribed());
  Client client(redis_.port());
  EXPECT_EQ(client.String({"HGET", "t:{keys}:last_used", "aaaaaaaaaaaa"}),
            std::to_string(UnixMs(used)));
  events.Stop();  // again: nothing happens
}

TEST_F(KeyEventsTest, StopIsPromptWhileRedisIsDown) {
  KeyEvents events(Config(), &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  redis_.Stop();
  ASSERT_TRUE(Eventually([&] { return !events.subscribed(); }));
  std::this_thread::sleep_for(milliseconds(500));  // well into the reconnect back-off
  const auto start = steady_clock::now();
  events.Stop();
  EXPECT_LT(steady_clock::now() - start, seconds(2));
}

TEST_F(KeyEventsTest, CountsKeysByStateAtTheGatewaysClock) {
  KeyEventsOptions options;
  options.flush_interval = hours(1);
  options.count_interval = hours(1);  // after the first count, only CountSoon counts
  KeyEvents events(Config(), &cache_, options);
  ASSERT_TRUE(Eventually([&] { return events.counts().known; }));
  EXPECT_EQ(events.counts().active + events.counts().grace + events.counts().expired +
                events.counts().revoked,
            0);

  Client client(redis_.port());
  const int64_t now = UnixMs(system_clock::now());
  const std::string past = std::to_string(now - 3600000);
  const std::string future = std::to_string(now + 3600000);
  const std::string created = std::to_string(now - 7200000);
  const auto write = [&](const std::string& id, std::vector<std::string> fields) {
    std::vector<std::string> argv = {"HSET",   "t:{keys}:key:" + id, "caller",     "data-team",
                                     "sha256", std::string(64, 'a'), "created_at", created};
    argv.insert(argv.end(), fields.begin(), fields.end());
    EXPECT_GE(client.Integer(argv), 1);
    EXPECT_EQ(client.Integer({"SADD", "t:{keys}:ids", id}), 1);
  };
  write("active000001", {});
  write("active000002", {"expires_at", future});
  write("active000003", {"revoked_at", future});  // revoked later: not yet
  write("grace0000001", {"replaced_by", "active000001", "expires_at", future});
  write("expired00001", {"expires_at", past});
  write("expired00002", {"replaced_by", "active000002", "expires_at", past});  // past its grace
  write("revoked00001", {"revoked_at", past});
  write("revoked00002", {"revoked_at", past, "expires_at", past});         // revoked wins
  EXPECT_EQ(client.Integer({"SADD", "t:{keys}:ids", "noreco000001"}), 1);  // no record: skipped
  EXPECT_GE(client.Integer({"HSET", "t:{keys}:key:notlisted001", "created_at", created}), 1);

  events.CountSoon();
  ASSERT_TRUE(Eventually([&] {
    const KeyStateCounts counts = events.counts();
    return counts.active == 3 && counts.grace == 1 && counts.expired == 2 && counts.revoked == 2;
  })) << "active "
      << events.counts().active << " grace " << events.counts().grace << " expired "
      << events.counts().expired << " revoked " << events.counts().revoked;
  EXPECT_TRUE(events.counts().known);
}

TEST_F(KeyEventsTest, AuthenticatesAndSelectsTheConfiguredDb) {
  Client admin(redis_.port());
  ASSERT_EQ(admin.String({"CONFIG", "SET", "requirepass", "s3cret-pw"}), "OK");
  config::RedisConfig config = Config();
  config.password = "s3cret-pw";
  config.db = 3;
  KeyEvents events(config, &cache_, Fast());
  ASSERT_TRUE(Eventually([&] { return events.subscribed(); }));
  cache_.Put(Record("aaaaaaaaaaaa"), steady_clock::now());
  const system_clock::time_point used = system_clock::now();
  cache_.Touch("aaaaaaaaaaaa", used);

  Client client(redis_.port());
  ASSERT_EQ(client.String({"AUTH", "s3cret-pw"}), "OK");
  EXPECT_EQ(client.Integer({"PUBLISH", kChannel, "aaaaaaaaaaaa"}), 1);
  ASSERT_TRUE(Eventually([&] { return FindNow(cache_, "aaaaaaaaaaaa") == Found::kMiss; }));
  ASSERT_EQ(client.String({"SELECT", "3"}), "OK");
  ASSERT_TRUE(Eventually([&] {
    return client.String({"HGET", "t:{keys}:last_used", "aaaaaaaaaaaa"}) ==
           std::to_string(UnixMs(used));
  }));
}

}  // namespace
}  // namespace tollgate::keys
