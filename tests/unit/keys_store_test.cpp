// KeyStore against a real redis-server, through a RedisLoopClient on a loop thread: what each
// script writes, what it refuses, what it announces on the events channel (seen by a plain
// hiredis subscriber), and how failures map to StoreStatus. Times are the test's own fixed
// clock, passed in as the gateway passes its own.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keys/key_store.h"
#include "loop/loop.h"
#include "tests/support/process.h"
#include "tests/unit/redis_peek.h"

namespace tollgate::keys {
namespace {

using testing::RedisPeek;

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint kNow = FromUnixMs(1'800'000'000'000);

KeyRecord NewRecord(const std::string& id, const std::string& caller, TimePoint created_at,
                    std::optional<TimePoint> expires_at = std::nullopt) {
  KeyRecord record;
  record.id = id;
  record.caller = caller;
  record.sha256 = std::string(64, id.back());
  record.created_at = created_at;
  record.expires_at = expires_at;
  record.note = "note of " + id;
  record.created_by = "ops";
  return record;
}

using Found = std::pair<StoreStatus, std::optional<KeyRecord>>;
using Listed = std::pair<StoreStatus, std::vector<KeyRecord>>;

class KeyStoreTest : public ::testing::Test {
 protected:
  KeyStoreTest() {
    config::RedisConfig config;
    config.host = "127.0.0.1";
    config.port = redis_.port();
    config.timeout_ms = 5000;
    config.key_prefix = "t:";
    client_ = std::make_unique<policies::RedisLoopClient>(config);
    store_ = std::make_unique<KeyStore>(client_.get());
    thread_ = std::make_unique<loop::LoopThread>("store-test");
  }

  // Calls the store on the loop thread and waits for its answer, which must come on that
  // thread and after the call returned.
  template <typename Result, typename Call>
  Result Run(Call call) {
    auto promise = std::make_shared<std::promise<Result>>();
    std::future<Result> future = promise->get_future();
    loop::Loop* loop = &thread_->loop();
    loop->Post([call, promise, loop] {
      auto returned = std::make_shared<bool>(false);
      call([promise, returned, loop](Result result) {
        EXPECT_TRUE(*returned) << "answered inline";
        EXPECT_TRUE(loop->InLoopThread()) << "answered on another thread";
        promise->set_value(std::move(result));
      });
      *returned = true;
    });
    if (future.wait_for(seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "no answer within 30 s";
      return Result{};
    }
    return future.get();
  }

  StoreStatus Create(const KeyRecord& record) {
    return Run<StoreStatus>([this, record](std::function<void(StoreStatus)> answer) {
      store_->Create(record, answer);
    });
  }
  Found Get(const std::string& id) {
    return Run<Found>([this, id](std::function<void(Found)> answer) {
      store_->Get(id, [answer](StoreStatus s, std::optional<KeyRecord> r) { answer({s, r}); });
    });
  }
  Listed List(const std::string& caller) {
    return Run<Listed>([this, caller](std::function<void(Listed)> answer) {
      store_->List(caller, [answer](StoreStatus s, std::vector<KeyRecord> r) { answer({s, r}); });
    });
  }
  Found Revoke(const std::string& id, TimePoint now) {
    return Run<Found>([this, id, now](std::function<void(Found)> answer) {
      store_->Revoke(id, now, [answer](StoreStatus s, std::optional<KeyRecord> r) {
        answer({s, r});
      });
    });
  }
  Found Rotate(const std::string& id, const KeyRecord& replacement, TimePoint grace_end,
               TimePoint now) {
    return Run<Found>([this, id, replacement, grace_end, now](std::function<void(Found)> answer) {
      store_->Rotate(id, replacement, grace_end, now,
                     [answer](StoreStatus s, std::optional<KeyRecord> r) {
                       answer({s, r});
                     });
    });
  }

  std::vector<std::string> Ids(const std::vector<KeyRecord>& records) {
    std::vector<std::string> ids;
    for (const KeyRecord& record : records) ids.push_back(record.id);
    return ids;
  }

  testing::RedisServer redis_;
  std::unique_ptr<policies::RedisLoopClient> client_;
  std::unique_ptr<KeyStore> store_;
  std::unique_ptr<loop::LoopThread> thread_;  // last: stopped before what it uses goes
};

TEST(KeyNamesTest, EveryNameCarriesThePrefixAndTheKeysHashTag) {
  const KeyNames names("tollgate:");
  EXPECT_EQ(names.Record("abc"), "tollgate:{keys}:key:abc");
  EXPECT_EQ(names.Ids(), "tollgate:{keys}:ids");
  EXPECT_EQ(names.Caller("data-team"), "tollgate:{keys}:caller:data-team");
  EXPECT_EQ(names.LastUsed(), "tollgate:{keys}:last_used");
  EXPECT_EQ(names.Events(), "tollgate:{keys}:events");
}

TEST_F(KeyStoreTest, CreateThenGetRoundTripsAndIndexesTheId) {
  RedisPeek peek(redis_.port());
  RedisPeek subscriber(redis_.port());
  subscriber.Subscribe("t:{keys}:events");
  const KeyRecord record = NewRecord("aaaaaaaaaaa1", "data-team", kNow, kNow + hours(24));
  ASSERT_EQ(Create(record), StoreStatus::kOk);
  EXPECT_EQ(subscriber.NextMessage(), "aaaaaaaaaaa1");  // a negative cache entry elsewhere goes

  Found found = Get("aaaaaaaaaaa1");
  ASSERT_EQ(found.first, StoreStatus::kOk);
  ASSERT_TRUE(found.second.has_value());
  const KeyRecord& read = *found.second;
  EXPECT_EQ(read.id, record.id);
  EXPECT_EQ(read.caller, "data-team");
  EXPECT_EQ(read.sha256, record.sha256);
  EXPECT_EQ(read.created_at, kNow);
  EXPECT_EQ(read.expires_at, kNow + hours(24));
  EXPECT_FALSE(read.revoked_at.has_value());
  EXPECT_EQ(read.note, record.note);
  EXPECT_EQ(read.created_by, "ops");
  EXPECT_EQ(read.replaced_by, "");

  EXPECT_EQ(peek.Run({"HGET", "t:{keys}:key:aaaaaaaaaaa1", "created_at"}), "1800000000000");
  EXPECT_EQ(peek.Run({"SISMEMBER", "t:{keys}:ids", "aaaaaaaaaaa1"}), "1");
  EXPECT_EQ(peek.Run({"SISMEMBER", "t:{keys}:caller:data-team", "aaaaaaaaaaa1"}), "1");
}

TEST_F(KeyStoreTest, CreatingAnIdThatExistsIsAConflictAndChangesNothing) {
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaa1", "data-team", kNow)), StoreStatus::kOk);
  KeyRecord other = NewRecord("aaaaaaaaaaa1", "web-team", kNow + hours(1));
  other.sha256 = std::string(64, 'f');
  EXPECT_EQ(Create(other), StoreStatus::kConflict);
  Found found = Get("aaaaaaaaaaa1");
  ASSERT_EQ(found.first, StoreStatus::kOk);
  EXPECT_EQ(found.second->caller, "data-team");
  EXPECT_EQ(found.second->sha256, std::string(64, '1'));
  EXPECT_EQ(Ids(List("web-team").second), std::vector<std::string>{});
}

TEST_F(KeyStoreTest, AnIdOnceUsedIsNeverUsedAgainEvenIfItsRecordIsGone) {
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaa1", "data-team", kNow)), StoreStatus::kOk);
  RedisPeek peek(redis_.port());
  peek.Run({"DEL", "t:{keys}:key:aaaaaaaaaaa1"});  // someone cleaned up by hand
  EXPECT_EQ(Create(NewRecord("aaaaaaaaaaa1", "web-team", kNow)), StoreStatus::kConflict);
}

TEST_F(KeyStoreTest, GetOfAnUnknownIdIsNotFound) {
  Found found = Get("zzzzzzzzzzzz");
  EXPECT_EQ(found.first, StoreStatus::kNotFound);
  EXPECT_FALSE(found.second.has_value());
}

TEST_F(KeyStoreTest, RevokeKeepsTheFirstTimeAndAnnouncesTheIdEachTime) {
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaa1", "data-team", kNow)), StoreStatus::kOk);
  RedisPeek subscriber(redis_.port());
  subscriber.Subscribe("t:{keys}:events");

  Found first = Revoke("aaaaaaaaaaa1", kNow + minutes(5));
  ASSERT_EQ(first.first, StoreStatus::kOk);
  EXPECT_EQ(first.second->revoked_at, kNow + minutes(5));
  EXPECT_EQ(first.second->id, "aaaaaaaaaaa1");
  EXPECT_EQ(subscriber.NextMessage(), "aaaaaaaaaaa1");

  Found again = Revoke("aaaaaaaaaaa1", kNow + minutes(10));
  ASSERT_EQ(again.first, StoreStatus::kOk);
  EXPECT_EQ(again.second->revoked_at, kNow + minutes(5));
  EXPECT_EQ(subscriber.NextMessage(), "aaaaaaaaaaa1");
  EXPECT_EQ(Get("aaaaaaaaaaa1").second->revoked_at, kNow + minutes(5));
  EXPECT_EQ(StateAt(*Get("aaaaaaaaaaa1").second, kNow + minutes(10)), KeyState::kRevoked);
}

TEST_F(KeyStoreTest, RevokingAnUnknownIdIsNotFoundAndWritesNothing) {
  Found found = Revoke("zzzzzzzzzzzz", kNow);
  EXPECT_EQ(found.first, StoreStatus::kNotFound);
  RedisPeek peek(redis_.port());
  EXPECT_EQ(peek.Run({"EXISTS", "t:{keys}:key:zzzzzzzzzzzz"}), "0");
}

TEST_F(KeyStoreTest, RotateEndsTheOldKeyAtTheEarlierOfItsExpiryAndTheGraceEnd) {
  struct Case {
    std::optional<TimePoint> old_expiry;
    TimePoint grace_end;
    TimePoint want;
  };
  const std::vector<Case> cases = {
      {kNow + hours(240), kNow + hours(1), kNow + hours(1)},      // grace ends first
      {kNow + minutes(30), kNow + hours(1), kNow + minutes(30)},  // it expires first anyway
      {std::nullopt, kNow + hours(1), kNow + hours(1)},           // it had no expiry
      {kNow + hours(1), kNow + hours(1), kNow + hours(1)},        // both at once
      {kNow + hours(240), kNow, kNow},                            // no grace at all
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(n);
    const std::string old_id = "old00000000" + std::to_string(n);
    const std::string new_id = "new00000000" + std::to_string(n);
    ++n;
    ASSERT_EQ(Create(NewRecord(old_id, "data-team", kNow - hours(1), c.old_expiry)),
              StoreStatus::kOk);
    RedisPeek subscriber(redis_.port());
    subscriber.Subscribe("t:{keys}:events");
    const KeyRecord replacement = NewRecord(new_id, "data-team", kNow, kNow + hours(720));
    Found rotated = Rotate(old_id, replacement, c.grace_end, kNow);
    ASSERT_EQ(rotated.first, StoreStatus::kOk);
    ASSERT_TRUE(rotated.second.has_value());
    EXPECT_EQ(rotated.second->id, old_id);
    EXPECT_EQ(rotated.second->replaced_by, new_id);
    EXPECT_EQ(rotated.second->expires_at, c.want);
    EXPECT_EQ(subscriber.NextMessage(), old_id);
    EXPECT_EQ(subscriber.NextMessage(), new_id);

    Found old_now = Get(old_id);
    EXPECT_EQ(old_now.second->expires_at, c.want);
    EXPECT_EQ(old_now.second->replaced_by, new_id);
    EXPECT_EQ(StateAt(*old_now.second, c.want), KeyState::kExpired);
    Found fresh = Get(new_id);
    ASSERT_EQ(fresh.first, StoreStatus::kOk);
    EXPECT_EQ(fresh.second->caller, "data-team");
    EXPECT_EQ(fresh.second->sha256, replacement.sha256);
    EXPECT_EQ(fresh.second->expires_at, kNow + hours(720));
    EXPECT_EQ(fresh.second->replaced_by, "");
  }
  // Both keys of each rotation are the caller's.
  EXPECT_EQ(List("data-team").second.size(), 2 * cases.size());
}

TEST_F(KeyStoreTest, RotateRefusesRevokedExpiredRotatedAndAnotherCallersKey) {
  ASSERT_EQ(Create(NewRecord("revoked00001", "data-team", kNow - hours(2))), StoreStatus::kOk);
  ASSERT_EQ(Revoke("revoked00001", kNow - hours(1)).first, StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("expired00001", "data-team", kNow - hours(2), kNow)),
            StoreStatus::kOk);  // expires_at == now: expired
  ASSERT_EQ(Create(NewRecord("rotated00001", "data-team", kNow - hours(2))), StoreStatus::kOk);
  ASSERT_EQ(
      Rotate("rotated00001", NewRecord("rotated00002", "data-team", kNow), kNow + hours(1), kNow)
          .first,
      StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("theirs000001", "web-team", kNow - hours(2))), StoreStatus::kOk);
  // A revocation that is still in the future (another replica's clock ahead) is a revocation.
  ASSERT_EQ(Create(NewRecord("revoked00002", "data-team", kNow - hours(2))), StoreStatus::kOk);
  ASSERT_EQ(Revoke("revoked00002", kNow + minutes(1)).first, StoreStatus::kOk);

  RedisPeek peek(redis_.port());
  int n = 0;
  for (const std::string old_id :
       {"revoked00001", "expired00001", "rotated00001", "theirs000001", "revoked00002"}) {
    SCOPED_TRACE(old_id);
    const std::string new_id = "refused0000" + std::to_string(n++);
    Found refused = Rotate(old_id, NewRecord(new_id, "data-team", kNow), kNow + hours(1), kNow);
    EXPECT_EQ(refused.first, StoreStatus::kConflict);
    EXPECT_FALSE(refused.second.has_value());
    EXPECT_EQ(Get(new_id).first, StoreStatus::kNotFound);
    EXPECT_EQ(peek.Run({"SISMEMBER", "t:{keys}:ids", new_id}), "0");
  }
  // Nothing about the refused keys changed.
  EXPECT_EQ(Get("expired00001").second->expires_at, kNow);
  EXPECT_EQ(Get("expired00001").second->replaced_by, "");
  EXPECT_EQ(Get("rotated00001").second->replaced_by, "rotated00002");
  EXPECT_EQ(Get("theirs000001").second->replaced_by, "");
  EXPECT_EQ(Get("revoked00001").second->replaced_by, "");

  // A replacement id that is already taken is refused too, and the old key stays as it was.
  ASSERT_EQ(Create(NewRecord("active000001", "data-team", kNow - hours(2))), StoreStatus::kOk);
  EXPECT_EQ(Rotate("active000001", NewRecord("theirs000001", "data-team", kNow), kNow, kNow).first,
            StoreStatus::kConflict);
  EXPECT_EQ(Get("active000001").second->replaced_by, "");
  EXPECT_FALSE(Get("active000001").second->expires_at.has_value());
}

TEST_F(KeyStoreTest, RotatingAnUnknownIdIsNotFoundAndCreatesNothing) {
  Found found =
      Rotate("zzzzzzzzzzzz", NewRecord("new000000001", "data-team", kNow), kNow + hours(1), kNow);
  EXPECT_EQ(found.first, StoreStatus::kNotFound);
  EXPECT_EQ(Get("new000000001").first, StoreStatus::kNotFound);
}

TEST_F(KeyStoreTest, ListsACallersKeysOrAllOrderedByCreationWithLastUse) {
  // Created out of order, so the set's order and the creation order differ.
  ASSERT_EQ(Create(NewRecord("dddddddddddd", "data-team", kNow + hours(3))), StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaaa", "data-team", kNow + hours(1))), StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("wwwwwwwwwwww", "web-team", kNow + hours(2))), StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("cccccccccccc", "data-team", kNow + hours(1))), StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("bbbbbbbbbbbb", "web-team", kNow)), StoreStatus::kOk);
  RedisPeek peek(redis_.port());
  peek.Run({"HSET", "t:{keys}:last_used", "cccccccccccc", "1800000123456"});

  Listed data = List("data-team");
  ASSERT_EQ(data.first, StoreStatus::kOk);
  // Same created_at: by id.
  EXPECT_EQ(Ids(data.second),
            (std::vector<std::string>{"aaaaaaaaaaaa", "cccccccccccc", "dddddddddddd"}));
  for (const KeyRecord& record : data.second) {
    EXPECT_EQ(record.caller, "data-team");
    EXPECT_EQ(record.note, "note of " + record.id);
    EXPECT_EQ(record.last_used_at.has_value(), record.id == "cccccccccccc") << record.id;
  }
  EXPECT_EQ(data.second[1].last_used_at, FromUnixMs(1'800'000'123'456));

  Listed all = List("");
  ASSERT_EQ(all.first, StoreStatus::kOk);
  EXPECT_EQ(Ids(all.second),
            (std::vector<std::string>{"bbbbbbbbbbbb", "aaaaaaaaaaaa", "cccccccccccc",
                                      "wwwwwwwwwwww", "dddddddddddd"}));

  Listed nobody = List("nobody");
  EXPECT_EQ(nobody.first, StoreStatus::kOk);
  EXPECT_TRUE(nobody.second.empty());
}

TEST_F(KeyStoreTest, ListingShowsRevokedAndRotatedKeysWithTheirState) {
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaaa", "data-team", kNow)), StoreStatus::kOk);
  ASSERT_EQ(Create(NewRecord("bbbbbbbbbbbb", "data-team", kNow + hours(1))), StoreStatus::kOk);
  ASSERT_EQ(Revoke("aaaaaaaaaaaa", kNow + hours(2)).first, StoreStatus::kOk);
  ASSERT_EQ(Rotate("bbbbbbbbbbbb", NewRecord("cccccccccccc", "data-team", kNow + hours(2)),
                   kNow + hours(3), kNow + hours(2))
                .first,
            StoreStatus::kOk);
  Listed listed = List("data-team");
  ASSERT_EQ(listed.second.size(), 3u);
  const TimePoint at = kNow + hours(2) + minutes(30);
  EXPECT_EQ(StateAt(listed.second[0], at), KeyState::kRevoked);
  EXPECT_EQ(StateAt(listed.second[1], at), KeyState::kGrace);
  EXPECT_EQ(StateAt(listed.second[2], at), KeyState::kActive);
}

TEST_F(KeyStoreTest, ErrorRepliesAreUnavailable) {
  RedisPeek peek(redis_.port());
  // Not a hash where a record belongs: HGETALL and the scripts answer WRONGTYPE.
  peek.Run({"SET", "t:{keys}:key:aaaaaaaaaaaa", "garbage"});
  EXPECT_EQ(Get("aaaaaaaaaaaa").first, StoreStatus::kUnavailable);
  EXPECT_EQ(Revoke("aaaaaaaaaaaa", kNow).first, StoreStatus::kUnavailable);
  EXPECT_EQ(Rotate("aaaaaaaaaaaa", NewRecord("bbbbbbbbbbbb", "data-team", kNow), kNow, kNow).first,
            StoreStatus::kUnavailable);
  peek.Run({"SET", "t:{keys}:ids", "garbage"});
  EXPECT_EQ(Create(NewRecord("cccccccccccc", "data-team", kNow)), StoreStatus::kUnavailable);
  EXPECT_EQ(List("").first, StoreStatus::kUnavailable);
  // A record missing what every record has is not a record.
  peek.Run({"HSET", "t:{keys}:key:dddddddddddd", "note", "only a note"});
  EXPECT_EQ(Get("dddddddddddd").first, StoreStatus::kUnavailable);
}

TEST_F(KeyStoreTest, ARedisThatIsDownIsUnavailableForEveryOperation) {
  ASSERT_EQ(Create(NewRecord("aaaaaaaaaaaa", "data-team", kNow)), StoreStatus::kOk);
  redis_.Stop();
  EXPECT_EQ(Create(NewRecord("bbbbbbbbbbbb", "data-team", kNow)), StoreStatus::kUnavailable);
  EXPECT_EQ(Get("aaaaaaaaaaaa").first, StoreStatus::kUnavailable);
  EXPECT_EQ(List("").first, StoreStatus::kUnavailable);
  EXPECT_EQ(Revoke("aaaaaaaaaaaa", kNow).first, StoreStatus::kUnavailable);
  EXPECT_EQ(Rotate("aaaaaaaaaaaa", NewRecord("cccccccccccc", "data-team", kNow), kNow, kNow).first,
            StoreStatus::kUnavailable);
}

}  // namespace
}  // namespace tollgate::keys
