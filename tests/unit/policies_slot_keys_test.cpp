// Issue 14: the limiter's keys in a Redis Cluster. A request's script names its cooldown key and
// every bucket's state key; with a slot tag they all hash to one slot, without one no key
// changes its name (no migration on upgrade).
#include <gtest/gtest.h>

#include <set>

#include "policies/redis_topology.h"
#include "policies/token_bucket_script.h"

namespace tollgate::policies {
namespace {

BucketSpec Bucket(const std::string& key, const std::string& tag) {
  BucketSpec spec;
  spec.key = key;
  spec.name = key;
  spec.rate = {10, 1};
  spec.slot_tag = tag;
  return spec;
}

TEST(SlotKeys, WithoutATagTheKeysAreUnchanged) {
  EXPECT_EQ(BucketStateKey("tg:", Bucket("bucket:a:team", "")),
            BucketStateKey("tg:", std::string("bucket:a:team")));
  EXPECT_EQ(CooldownKey("tg:", "devin", ""), "tg:cooldown:devin");
}

TEST(SlotKeys, WithATagEveryKeyOfARequestIsInOneSlot) {
  EXPECT_EQ(CooldownKey("tg:", "devin", "devin"), "tg:{devin}:cooldown:devin");
  EXPECT_EQ(BucketStateKey("tg:", Bucket("bucket:a:team", "devin")).rfind("tg:{devin}:", 0), 0u);
  LimitRequest request;
  request.cooldown_upstream = "search";
  request.slot_tag = "devin";  // search shares a limit with devin: their group's tag
  request.buckets = {Bucket("bucket:a:team", "devin"), Bucket("quota:acu:team", "devin"),
                     Bucket("bucket:b:_shared", "devin")};
  const TokenBucketCall call = MakeTokenBucketCall(request, "tollgate:", true);
  ASSERT_EQ(call.keys.size(), 4u);
  std::set<int> slots;
  for (const std::string& key : call.keys) slots.insert(RedisHashSlot(key));
  EXPECT_EQ(slots.size(), 1u);
  EXPECT_EQ(*slots.begin(), RedisHashSlot("devin"));

  // The same request without tags: its keys land on different slots (what a cluster refuses).
  for (BucketSpec& bucket : request.buckets) bucket.slot_tag.clear();
  request.slot_tag.clear();
  std::set<int> untagged;
  for (const std::string& key : MakeTokenBucketCall(request, "tollgate:", true).keys) {
    untagged.insert(RedisHashSlot(key));
  }
  EXPECT_GT(untagged.size(), 1u);
}

}  // namespace
}  // namespace tollgate::policies
