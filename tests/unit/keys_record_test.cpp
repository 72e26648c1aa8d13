// KeyRecord: its state at a time, its hash fields (times as unix ms), and reading it back from
// HGETALL's reply in both shapes (RESP2 flat array, RESP3 map).

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "keys/key_record.h"

namespace tollgate::keys {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;

const TimePoint kNow = FromUnixMs(1'800'000'000'123);

KeyRecord Full() {
  KeyRecord record;
  record.id = "abcdefghij12";
  record.caller = "data-team";
  record.sha256 = std::string(64, 'a');
  record.created_at = kNow - hours(24);
  record.expires_at = kNow + hours(24);
  record.revoked_at = kNow + hours(1);
  record.note = "ci, with \"quotes\" and \xc3\xa9";
  record.created_by = "ops";
  record.replaced_by = "zyxwvutsrq98";
  return record;
}

// A hand-built reply (what hiredis hands a callback), holding its strings.
class FakeReply {
 public:
  FakeReply(int type, const std::vector<std::string>& items) : texts_(items) {
    reply_.type = type;
    for (std::string& text : texts_) {
      auto element = std::make_unique<redisReply>();
      *element = redisReply{};
      element->type = REDIS_REPLY_STRING;
      element->str = text.data();
      element->len = text.size();
      pointers_.push_back(element.get());
      elements_.push_back(std::move(element));
    }
    reply_.elements = pointers_.size();
    reply_.element = pointers_.data();
  }
  const redisReply& get() const { return reply_; }
  redisReply& element(size_t i) { return *elements_[i]; }

 private:
  std::vector<std::string> texts_;
  std::vector<std::unique_ptr<redisReply>> elements_;
  std::vector<redisReply*> pointers_;
  redisReply reply_{};
};

constexpr int kRespMap = 9;  // REDIS_REPLY_MAP in hiredis >= 1.0

TEST(KeyRecordTest, StateFirstMatchWins) {
  KeyRecord record;
  record.created_at = kNow - hours(1);
  EXPECT_EQ(StateAt(record, kNow), KeyState::kActive);

  record.expires_at = kNow + milliseconds(1);
  EXPECT_EQ(StateAt(record, kNow), KeyState::kActive);
  record.replaced_by = "newkey000001";
  EXPECT_EQ(StateAt(record, kNow), KeyState::kGrace);
  record.expires_at = kNow;  // the boundary belongs to "expired"
  EXPECT_EQ(StateAt(record, kNow), KeyState::kExpired);
  record.revoked_at = kNow + milliseconds(1);  // not yet
  EXPECT_EQ(StateAt(record, kNow), KeyState::kExpired);
  record.revoked_at = kNow;  // revoked beats expired
  EXPECT_EQ(StateAt(record, kNow), KeyState::kRevoked);

  KeyRecord rotated_forever;
  rotated_forever.replaced_by = "newkey000001";
  EXPECT_EQ(StateAt(rotated_forever, kNow), KeyState::kGrace);
}

TEST(KeyRecordTest, StateNames) {
  EXPECT_EQ(StateName(KeyState::kActive), "active");
  EXPECT_EQ(StateName(KeyState::kExpired), "expired");
  EXPECT_EQ(StateName(KeyState::kRevoked), "revoked");
  EXPECT_EQ(StateName(KeyState::kGrace), "grace");
}

TEST(KeyRecordTest, UnixMillisecondsRoundTrip) {
  EXPECT_EQ(ToUnixMs(FromUnixMs(0)), 0);
  EXPECT_EQ(ToUnixMs(kNow), 1'800'000'000'123);
  EXPECT_EQ(ToUnixMs(FromUnixMs(-1500)), -1500);
  // Sub-millisecond parts are cut towards the past, never rounded into the future.
  EXPECT_EQ(ToUnixMs(kNow + std::chrono::microseconds(999)), 1'800'000'000'123);
  EXPECT_EQ(ToUnixMs(FromUnixMs(-1) + std::chrono::microseconds(1)), -1);
}

TEST(KeyRecordTest, HashFieldsAreDecimalMillisecondsAndLeaveUnsetOnesOut) {
  KeyRecord record;
  record.caller = "data-team";
  record.sha256 = "ab";
  record.created_at = kNow;
  EXPECT_EQ(ToHashFields(record), (std::vector<std::string>{"caller", "data-team", "sha256", "ab",
                                                            "created_at", "1800000000123"}));
  record.expires_at = kNow + milliseconds(1);
  record.note = "n";
  const std::vector<std::string> fields = ToHashFields(record);
  EXPECT_EQ(fields, (std::vector<std::string>{"caller", "data-team", "sha256", "ab", "created_at",
                                              "1800000000123", "expires_at", "1800000000124",
                                              "note", "n"}));
}

TEST(KeyRecordTest, RoundTripsThroughAFlatArrayAndAMap) {
  const KeyRecord record = Full();
  for (int type : {REDIS_REPLY_ARRAY, kRespMap}) {
    FakeReply reply(type, ToHashFields(record));
    KeyRecord read;
    read.id = record.id;
    ASSERT_TRUE(FromHashReply(reply.get(), &read)) << type;
    EXPECT_EQ(read.id, record.id);
    EXPECT_EQ(read.caller, record.caller);
    EXPECT_EQ(read.sha256, record.sha256);
    EXPECT_EQ(read.created_at, record.created_at);
    EXPECT_EQ(read.expires_at, record.expires_at);
    EXPECT_EQ(read.revoked_at, record.revoked_at);
    EXPECT_EQ(read.note, record.note);
    EXPECT_EQ(read.created_by, record.created_by);
    EXPECT_EQ(read.replaced_by, record.replaced_by);
    EXPECT_FALSE(read.last_used_at.has_value());
  }
}

TEST(KeyRecordTest, UnsetOptionalsReadBackUnset) {
  KeyRecord record;
  record.caller = "c";
  record.sha256 = "h";
  record.created_at = kNow;
  FakeReply reply(REDIS_REPLY_ARRAY, ToHashFields(record));
  KeyRecord read = Full();  // whatever it held before is replaced
  ASSERT_TRUE(FromHashReply(reply.get(), &read));
  EXPECT_EQ(read.id, Full().id);  // except the id, which the caller sets
  EXPECT_FALSE(read.expires_at.has_value());
  EXPECT_FALSE(read.revoked_at.has_value());
  EXPECT_EQ(read.note, "");
  EXPECT_EQ(read.created_by, "");
  EXPECT_EQ(read.replaced_by, "");
}

TEST(KeyRecordTest, UnknownFieldsAreIgnored) {
  FakeReply reply(REDIS_REPLY_ARRAY,
                  {"caller", "c", "future_field", "x", "sha256", "h", "created_at", "1"});
  KeyRecord read;
  ASSERT_TRUE(FromHashReply(reply.get(), &read));
  EXPECT_EQ(read.created_at, FromUnixMs(1));
}

TEST(KeyRecordTest, RefusesWhatIsNotACompleteRecord) {
  const std::vector<std::string> good = {"caller", "c", "sha256", "h", "created_at", "5"};
  KeyRecord read;
  EXPECT_TRUE(FromHashReply(FakeReply(REDIS_REPLY_ARRAY, good).get(), &read));

  EXPECT_FALSE(FromHashReply(FakeReply(REDIS_REPLY_ARRAY, {}).get(), &read));  // no such key
  for (size_t drop = 0; drop < good.size(); drop += 2) {  // each required field missing
    std::vector<std::string> fields = good;
    fields.erase(fields.begin() + static_cast<long>(drop),
                 fields.begin() + static_cast<long>(drop) + 2);
    EXPECT_FALSE(FromHashReply(FakeReply(REDIS_REPLY_ARRAY, fields).get(), &read)) << good[drop];
  }
  // Odd element count, times that do not parse, the wrong reply type.
  EXPECT_FALSE(FromHashReply(
      FakeReply(REDIS_REPLY_ARRAY, {"caller", "c", "sha256", "h", "created_at"}).get(), &read));
  for (const std::string bad : {"", "12x", "1.5", "+5", "1e12", "99999999999999999999"}) {
    EXPECT_FALSE(FromHashReply(
        FakeReply(REDIS_REPLY_ARRAY, {"caller", "c", "sha256", "h", "created_at", bad}).get(),
        &read))
        << bad;
    std::vector<std::string> with_expiry = good;
    with_expiry.insert(with_expiry.end(), {"expires_at", bad});
    EXPECT_FALSE(FromHashReply(FakeReply(REDIS_REPLY_ARRAY, with_expiry).get(), &read)) << bad;
  }
  EXPECT_FALSE(FromHashReply(FakeReply(REDIS_REPLY_ERROR, {}).get(), &read));
  EXPECT_FALSE(FromHashReply(FakeReply(REDIS_REPLY_NIL, {}).get(), &read));
  // A non-string element (an integer where a value belongs) counts as empty.
  FakeReply integer_caller(REDIS_REPLY_ARRAY, good);
  integer_caller.element(1).type = REDIS_REPLY_INTEGER;
  EXPECT_FALSE(FromHashReply(integer_caller.get(), &read));
}

}  // namespace
}  // namespace tollgate::keys
