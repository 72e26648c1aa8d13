// Usage flushing (usage/usage_service.h): a failed flush is sent again as the same batch (counts
// recorded meanwhile wait for the next one), a batch is applied once per (replica, sequence
// number), in memory and in a real redis-server, and reads give back what was flushed.
#include "usage/usage_service.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <future>

#include "loop/loop.h"
#include "tests/support/process.h"

namespace tollgate::usage {
namespace {

using std::chrono::system_clock;

const int64_t kDay = *ParseDay("2026-12-01");

UsageEvent Allowed(std::string_view caller, uint64_t acu = 0) {
  UsageEvent e;
  e.when = system_clock::time_point(std::chrono::seconds(kDay * 86400 + 60));
  e.caller = caller;
  e.upstream = "devin";
  e.decision = "allowed";
  e.status = 200;
  if (acu > 0) e.costs = {{"acu-month", acu}};
  return e;
}

// Records every batch it is sent; fails while `fail` is set (after applying, when
// `apply_then_fail`: a reply lost on the way back).
class FlakySink : public UsageSink {
 public:
  struct Sent {
    std::string replica;
    uint64_t seq;
    std::vector<UsageField> fields;
  };
  bool Apply(const std::string& replica, uint64_t seq,
             const std::vector<UsageField>& fields) override {
    sent.push_back({replica, seq, fields});
    if (fail && !apply_then_fail) return false;
    store.Apply(replica, seq, fields);
    return !fail;
  }
  bool fail = false;
  bool apply_then_fail = false;
  std::vector<Sent> sent;
  MemoryUsageStore store;
};

UsageTable ReadAll(UsageReader& reader) {
  UsageTable out;
  reader.Read(kDay - 1, kDay + 1, [&out](bool ok, UsageTable t) {
    EXPECT_TRUE(ok);
    out = std::move(t);
  });
  return out;
}

TEST(UsageFlush, AFailedBatchIsSentAgainAsItWasAndLaterCountsWaitForTheNext) {
  auto sink = std::make_shared<FlakySink>();
  UsageService service(sink, std::make_shared<MemoryUsageStore>(), std::chrono::milliseconds(0));
  service.Record(Allowed("data-team", 5));
  sink->fail = true;
  sink->apply_then_fail = true;  // applied, but the reply was lost
  EXPECT_FALSE(service.Flush());
  service.Record(Allowed("ops-team"));  // arrives while the batch is pending
  sink->fail = false;
  EXPECT_TRUE(service.Flush());  // the same batch again
  ASSERT_EQ(sink->sent.size(), 2u);
  EXPECT_EQ(sink->sent[0].seq, sink->sent[1].seq);
  EXPECT_EQ(sink->sent[0].replica, sink->sent[1].replica);
  ASSERT_EQ(sink->sent[0].fields.size(), sink->sent[1].fields.size());
  for (size_t i = 0; i < sink->sent[0].fields.size(); ++i) {
    EXPECT_EQ(sink->sent[0].fields[i].field, sink->sent[1].fields[i].field);
    EXPECT_EQ(sink->sent[0].fields[i].n, sink->sent[1].fields[i].n);
  }
  for (const auto& f : sink->sent[1].fields) EXPECT_EQ(f.field.find("ops-team"), std::string::npos);
  EXPECT_TRUE(service.Flush());  // the next batch: ops-team's request
  ASSERT_EQ(sink->sent.size(), 3u);
  EXPECT_EQ(sink->sent[2].seq, sink->sent[1].seq + 1);
  EXPECT_TRUE(service.Flush());  // nothing left: nothing sent
  EXPECT_EQ(sink->sent.size(), 3u);
  EXPECT_EQ(service.flushes_failed(), 1u);
  EXPECT_EQ(service.flushes_ok(), 2u);

  const UsageTable stored = ReadAll(sink->store);
  EXPECT_EQ(stored.at(UsageKey(kDay, "data-team", "devin")).n[kRequests], 1);  // not 2
  EXPECT_EQ(stored.at(UsageKey(kDay, "data-team", "devin")).cost.at("acu-month"), 5);
  EXPECT_EQ(stored.at(UsageKey(kDay, "ops-team", "devin")).n[kRequests], 1);
}

TEST(UsageFlush, StopFlushesWhatIsLeft) {
  auto store = std::make_shared<MemoryUsageStore>();
  {
    UsageService service(store, store, std::chrono::hours(1));  // the thread never gets to it
    service.Record(Allowed("data-team"));
    service.Record(Allowed("data-team"));
  }
  EXPECT_EQ(ReadAll(*store).at(UsageKey(kDay, "data-team", "devin")).n[kAllowed], 2);
}

TEST(UsageFlush, TheBackgroundThreadFlushes) {
  auto store = std::make_shared<MemoryUsageStore>();
  UsageService service(store, store, std::chrono::milliseconds(10));
  service.Record(Allowed("data-team"));
  for (int i = 0; i < 1000 && service.flushes_ok() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(service.flushes_ok(), 1u);
  EXPECT_EQ(ReadAll(*store).size(), 1u);
}

TEST(UsageMemoryStore, AppliesABatchOncePerReplicaAndSequence) {
  MemoryUsageStore store;
  const std::vector<UsageField> batch = {{kDay, "a|devin|requests", 3}};
  EXPECT_TRUE(store.Apply("r1", 1, batch));
  EXPECT_TRUE(store.Apply("r1", 1, batch));  // a retry after a lost reply
  EXPECT_TRUE(store.Apply("r2", 1, batch));  // another replica's first batch
  EXPECT_EQ(ReadAll(store).at(UsageKey(kDay, "a", "devin")).n[kRequests], 6);
}

// ---------------------------------------------------------------------------------------------
// Against a real redis-server.

class UsageRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_.host = "127.0.0.1";
    redis_.port = server_.port();
    redis_.key_prefix = "t:";
  }
  std::string Call(const std::vector<std::string>& argv) {
    redisContext* c = redisConnect("127.0.0.1", server_.port());
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
    std::string out;
    if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
      out.assign(r->str, r->len);
    } else if (r != nullptr && r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(c);
    return out;
  }

  testing::RedisServer server_;
  config::RedisConfig redis_;
};

TEST_F(UsageRedisTest, ABatchSentAgainIsCountedOnceAndEveryDayKeyExpires) {
  auto sink = MakeRedisUsageSink(redis_, 400);
  const std::vector<UsageField> batch = {{kDay, "data-team|devin|requests", 3},
                                         {kDay, "data-team|devin|cost:acu|month", 50},
                                         {kDay + 1, "-|devin|unauthenticated", 1}};
  ASSERT_TRUE(sink->Apply("replica1", 1, batch));
  ASSERT_TRUE(sink->Apply("replica1", 1, batch));  // the reply was lost: sent again
  const std::string day_key = UsageDayKey("t:", kDay);
  EXPECT_EQ(day_key, "t:{usage}:day:2026-12-01");
  EXPECT_EQ(Call({"HGET", day_key, "data-team|devin|requests"}), "3");
  EXPECT_EQ(Call({"HGET", day_key, "data-team|devin|cost:acu|month"}), "50");
  EXPECT_EQ(Call({"GET", UsageMarkerKey("t:", "replica1")}), "1");
  // Kept 400 days after the day ended.
  EXPECT_EQ(Call({"EXPIRETIME", day_key}), std::to_string((kDay + 401) * 86400));
  ASSERT_TRUE(sink->Apply("replica1", 2, batch));  // the next batch counts
  ASSERT_TRUE(sink->Apply("replica2", 1, batch));  // another replica's counts
  EXPECT_EQ(Call({"HGET", day_key, "data-team|devin|requests"}), "9");
  EXPECT_EQ(Call({"HGET", UsageDayKey("t:", kDay + 1), "-|devin|unauthenticated"}), "3");
}

TEST_F(UsageRedisTest, ReadsEveryDayFromTheLoopAndFailsWhenRedisIsGone) {
  auto sink = MakeRedisUsageSink(redis_, 400);
  ASSERT_TRUE(sink->Apply(
      "r", 1, {{kDay, "data-team|devin|requests", 3}, {kDay + 2, "ops-team|devo|allowed", 1}}));
  auto reader = MakeRedisUsageReader(redis_);
  loop::LoopThread loop("usage-test");  // stopped before the reader goes
  auto read = [&](int64_t from, int64_t to) {
    std::promise<std::pair<bool, UsageTable>> result;
    loop.RunSync([&] {
      reader->Read(from, to, [&result](bool ok, UsageTable t) {
        result.set_value({ok, std::move(t)});
      });
    });
    return result.get_future().get();
  };
  auto [ok, table] = read(kDay - 5, kDay + 5);
  ASSERT_TRUE(ok);
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table.at(UsageKey(kDay, "data-team", "devin")).n[kRequests], 3);
  EXPECT_EQ(table.at(UsageKey(kDay + 2, "ops-team", "devo")).n[kAllowed], 1);
  server_.Stop();
  EXPECT_FALSE(read(kDay, kDay + 1).first);
  EXPECT_FALSE(sink->Apply("r", 2, {{kDay, "data-team|devin|requests", 1}}));
}

}  // namespace
}  // namespace tollgate::usage
