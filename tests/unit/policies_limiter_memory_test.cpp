// The in-process limiter: decisions, cooldowns, eviction and exactness under concurrency.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "policies/rate_limiter.h"
#include "policies/rate_limiter_memory.h"

namespace tollgate::policies {
namespace {

using Outcome = LimitDecision::Outcome;

constexpr int64_t kSecond = 1000000;

BucketSpec Bucket(const std::string& name, uint64_t tokens, uint64_t period, uint64_t burst = 0,
                  bool shadow = false, uint64_t cost = 1) {
  BucketSpec spec;
  spec.cost = cost;
  spec.key = "bucket:" + name + ":_shared";
  spec.name = name;
  spec.rate = config::Rate{tokens, period};
  spec.burst = burst;
  spec.shadow = shadow;
  return spec;
}

LimitRequest Request(std::vector<BucketSpec> buckets, std::string upstream = "") {
  LimitRequest request;
  request.buckets = std::move(buckets);
  request.cooldown_upstream = std::move(upstream);
  return request;
}

// Acquire answers inline, so the decision is there when the call returns.
LimitDecision AcquireNow(RateLimiter& limiter, LimitRequest request) {
  LimitDecision out;
  bool called = false;
  limiter.Acquire(std::move(request), [&](LimitDecision decision) {
    out = std::move(decision);
    called = true;
  });
  EXPECT_TRUE(called);
  return out;
}

LimitDecision PeekNow(RateLimiter& limiter, std::vector<BucketSpec> buckets) {
  LimitDecision out;
  limiter.Peek(std::move(buckets), [&](LimitDecision decision) { out = std::move(decision); });
  return out;
}

class MemoryLimiterTest : public ::testing::Test {
 protected:
  std::atomic<int64_t> now_{1000 * kSecond};
  MemoryLimiter limiter_{[this] { return now_.load(); }};
};

TEST_F(MemoryLimiterTest, AllowsUpToBurstThenLimitsWithRetryAfter) {
  const auto bucket = Bucket("a", 2, 1);
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).outcome, Outcome::kAllowed);
  const LimitDecision second = AcquireNow(limiter_, Request({bucket}));
  EXPECT_EQ(second.outcome, Outcome::kAllowed);
  ASSERT_EQ(second.levels.size(), 1u);
  EXPECT_EQ(second.levels[0].name, "a");
  EXPECT_EQ(second.levels[0].burst, 2u);
  EXPECT_DOUBLE_EQ(second.levels[0].remaining, 0);
  EXPECT_DOUBLE_EQ(second.levels[0].reset_seconds, 1);

  const LimitDecision third = AcquireNow(limiter_, Request({bucket}));
  EXPECT_EQ(third.outcome, Outcome::kLimited);
  EXPECT_EQ(third.limited_by, "a");
  EXPECT_DOUBLE_EQ(third.retry_after_seconds, 0.5);
  EXPECT_FALSE(third.fallback);

  now_ += kSecond / 2;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).outcome, Outcome::kAllowed);
}

TEST_F(MemoryLimiterTest, RejectedRequestTakesNothingFromAnyBucket) {
  const auto wide = Bucket("wide", 10, 1);
  const auto narrow = Bucket("narrow", 1, 60);
  EXPECT_EQ(AcquireNow(limiter_, Request({wide, narrow})).outcome, Outcome::kAllowed);
  const LimitDecision limited = AcquireNow(limiter_, Request({wide, narrow}));
  EXPECT_EQ(limited.outcome, Outcome::kLimited);
  EXPECT_EQ(limited.limited_by, "narrow");
  EXPECT_DOUBLE_EQ(limited.levels[0].remaining, 9);
  EXPECT_DOUBLE_EQ(PeekNow(limiter_, {wide}).levels[0].remaining, 9);
}

TEST_F(MemoryLimiterTest, CostIsTakenFromEveryBucketOrFromNone) {
  const auto wide = Bucket("wide", 1, 86400, 10, false, 4);
  const auto narrow = Bucket("narrow", 1, 86400, 6, false, 4);
  const LimitDecision first = AcquireNow(limiter_, Request({wide, narrow}));
  ASSERT_EQ(first.outcome, Outcome::kAllowed);
  EXPECT_DOUBLE_EQ(first.levels[0].remaining, 6);
  EXPECT_DOUBLE_EQ(first.levels[1].remaining, 2);
  const LimitDecision second = AcquireNow(limiter_, Request({wide, narrow}));
  EXPECT_EQ(second.outcome, Outcome::kLimited);
  EXPECT_EQ(second.limited_by, "narrow");
  EXPECT_DOUBLE_EQ(second.retry_after_seconds, 2 * 86400);  // two tokens of one a day
  EXPECT_DOUBLE_EQ(PeekNow(limiter_, {wide}).levels[0].remaining, 6);
  EXPECT_EQ(AcquireNow(limiter_, Request({wide})).outcome, Outcome::kAllowed);
  EXPECT_EQ(AcquireNow(limiter_, Request({wide})).outcome, Outcome::kLimited);
}

TEST_F(MemoryLimiterTest, ShadowBucketReportsWouldLimitButAllows) {
  const auto real = Bucket("real", 10, 1);
  const auto shadow = Bucket("shadow", 1, 60, 1, true);
  EXPECT_FALSE(AcquireNow(limiter_, Request({real, shadow})).would_limit);
  const LimitDecision second = AcquireNow(limiter_, Request({real, shadow}));
  EXPECT_EQ(second.outcome, Outcome::kAllowed);
  EXPECT_TRUE(second.would_limit);
  EXPECT_TRUE(second.levels[1].shadow);
  EXPECT_DOUBLE_EQ(second.levels[0].remaining, 8);
}

TEST_F(MemoryLimiterTest, PeekTakesNothing) {
  const auto bucket = Bucket("a", 5, 60);
  AcquireNow(limiter_, Request({bucket}));
  EXPECT_DOUBLE_EQ(PeekNow(limiter_, {bucket}).levels[0].remaining, 4);
  EXPECT_DOUBLE_EQ(PeekNow(limiter_, {bucket}).levels[0].remaining, 4);
  EXPECT_DOUBLE_EQ(PeekNow(limiter_, {Bucket("unused", 5, 60)}).levels[0].remaining, 5);
}

TEST_F(MemoryLimiterTest, CooldownRejectsItsUpstreamUntilItExpires) {
  const auto bucket = Bucket("a", 5, 60);
  limiter_.StartCooldown("devin", 2000);
  const LimitDecision cooled = AcquireNow(limiter_, Request({bucket}, "devin"));
  EXPECT_EQ(cooled.outcome, Outcome::kCooldown);
  EXPECT_EQ(cooled.limited_by, "devin");
  EXPECT_DOUBLE_EQ(cooled.retry_after_seconds, 2);
  EXPECT_DOUBLE_EQ(cooled.levels[0].remaining, 5);  // took nothing
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket}, "devo")).outcome, Outcome::kAllowed);

  limiter_.StartCooldown("devin", 500);  // a shorter one does not cut the longer short
  now_ += 1999 * 1000;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket}, "devin")).outcome, Outcome::kCooldown);
  now_ += 1000;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket}, "devin")).outcome, Outcome::kAllowed);
}

TEST_F(MemoryLimiterTest, BucketsThatWouldBeFullAreEvicted) {
  for (int i = 0; i < 100; ++i)
    AcquireNow(limiter_, Request({Bucket("fast" + std::to_string(i), 1000, 1, 1)}));
  AcquireNow(limiter_, Request({Bucket("slow", 1, 86400)}));
  EXPECT_EQ(limiter_.bucket_count(), 101u);
  now_ += 2 * kSecond;
  AcquireNow(limiter_, Request({Bucket("other", 1000, 1, 1)}));
  EXPECT_EQ(limiter_.bucket_count(), 2u);  // "slow" is still refilling; "other" is new
  // The evicted buckets start full again, exactly as if they had been kept.
  const LimitDecision again = AcquireNow(limiter_, Request({Bucket("fast0", 1000, 1, 1)}));
  EXPECT_EQ(again.outcome, Outcome::kAllowed);
  EXPECT_EQ(AcquireNow(limiter_, Request({Bucket("slow", 1, 86400)})).outcome, Outcome::kLimited);
}

TEST(MemoryLimiter, ExactUnderConcurrency) {
  std::unique_ptr<RateLimiter> limiter = MakeMemoryLimiter();
  EXPECT_EQ(limiter->Describe(), "memory");
  EXPECT_TRUE(limiter->Ready());
  const auto shared = Bucket("shared", 1, 86400, 20);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads name the buckets in the other order: shard locking must not deadlock.
      const auto other = Bucket("wide" + std::to_string(t % 2), 1000000, 1);
      for (int i = 0; i < 50; ++i) {
        LimitRequest request = t % 2 == 0 ? Request({shared, other}) : Request({other, shared});
        limiter->Acquire(std::move(request), [&](LimitDecision decision) {
          if (decision.outcome == Outcome::kAllowed) allowed.fetch_add(1);
        });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(allowed.load(), 20);
}

// Issue 14: a bucket with wait_ms reserves the next tokens for the requests past its burst, in
// order, down to what the wait covers; the decision says how long each waits, and the headers'
// fields describe the bucket as it will be when the request is forwarded.
TEST_F(MemoryLimiterTest, WaitingRequestsReserveTheNextTokensInOrderUpToTheWait) {
  auto bucket = Bucket("a", 10, 1, 1);
  bucket.wait_ms = 500;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).wait_us, 0);
  for (int k = 1; k <= 5; ++k) {
    const LimitDecision d = AcquireNow(limiter_, Request({bucket}));
    ASSERT_EQ(d.outcome, Outcome::kAllowed) << k;
    EXPECT_EQ(d.wait_us, k * 100000) << k;
    EXPECT_EQ(d.wait_bucket, "a");
    EXPECT_NEAR(d.levels[0].remaining, 0, 1e-9) << k;  // after its token is taken, then
    EXPECT_NEAR(d.levels[0].reset_seconds, 0.1, 1e-9) << k;
  }
  // The level is 5 tokens below zero: the 500 ms wait covers no more.
  const LimitDecision refused = AcquireNow(limiter_, Request({bucket}));
  EXPECT_EQ(refused.outcome, Outcome::kLimited);
  EXPECT_EQ(refused.wait_us, 0);
  EXPECT_NEAR(refused.retry_after_seconds, 0.6, 1e-9);
  EXPECT_NEAR(refused.levels[0].remaining, -5, 1e-9);
  // 100 ms later one token came back: one more may wait, the whole 500 ms.
  now_ += 100000;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).wait_us, 500000);
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).outcome, Outcome::kLimited);
  // Without wait_ms the same bucket refuses as before.
  bucket.wait_ms = 0;
  now_ += 10 * kSecond;
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).outcome, Outcome::kAllowed);
  EXPECT_EQ(AcquireNow(limiter_, Request({bucket})).outcome, Outcome::kLimited);
}

TEST_F(MemoryLimiterTest, ARequestThatWouldWaitOnOneBucketAndIsRefusedByAnotherTakesNothing) {
  auto waits = Bucket("waits", 10, 1, 1);
  waits.wait_ms = 5000;
  const auto hourly = Bucket("hourly", 2, 3600, 2);
  auto strict = Bucket("strict", 1, 3600, 1);
  ASSERT_EQ(AcquireNow(limiter_, Request({waits, hourly})).outcome, Outcome::kAllowed);
  ASSERT_EQ(AcquireNow(limiter_, Request({waits, hourly})).wait_us, 100000);
  // hourly is empty now: refused, and `waits` keeps its reservation count (the next wait is
  // 200 ms, not 300).
  for (int i = 0; i < 3; ++i) {
    const LimitDecision d = AcquireNow(limiter_, Request({waits, hourly}));
    EXPECT_EQ(d.outcome, Outcome::kLimited);
    EXPECT_EQ(d.limited_by, "hourly");
  }
  EXPECT_EQ(AcquireNow(limiter_, Request({waits})).wait_us, 200000);
  ASSERT_EQ(AcquireNow(limiter_, Request({strict})).outcome, Outcome::kAllowed);
  EXPECT_EQ(AcquireNow(limiter_, Request({waits, strict})).outcome, Outcome::kLimited);
  EXPECT_EQ(AcquireNow(limiter_, Request({waits})).wait_us, 300000);
}

TEST_F(MemoryLimiterTest, ShadowAndQuotaBucketsNeverWait) {
  auto shadow = Bucket("shadow", 1, 3600, 1, true);
  shadow.wait_ms = 60000;
  auto quota = Bucket("quota", 1, 1, 1);
  quota.quota = config::Quota{1, config::QuotaPeriod::kDay, 0, std::nullopt};
  quota.wait_ms = 60000;
  EXPECT_EQ(AcquireNow(limiter_, Request({shadow, quota})).outcome, Outcome::kAllowed);
  const LimitDecision d = AcquireNow(limiter_, Request({shadow, quota}));
  EXPECT_EQ(d.outcome, Outcome::kLimited);
  EXPECT_EQ(d.limited_by, "quota");
  EXPECT_TRUE(d.would_limit);
  EXPECT_EQ(d.wait_us, 0);
}

// Concurrent waiters on one bucket each get their own token: the waits are exactly the
// multiples of the token time, none twice.
TEST_F(MemoryLimiterTest, ConcurrentWaitersGetDistinctTokens) {
  auto bucket = Bucket("a", 1, 10, 1);  // a token every 10 s
  bucket.wait_ms = 60000;               // 6 tokens ahead
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<int64_t> waits;
  int refused = 0;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        const LimitDecision d = AcquireNow(limiter_, Request({bucket}));
        std::lock_guard<std::mutex> lock(mu);
        if (d.outcome == Outcome::kAllowed) {
          waits.push_back(d.wait_us);
        } else {
          ++refused;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::sort(waits.begin(), waits.end());
  EXPECT_EQ(waits, (std::vector<int64_t>{0, 10 * kSecond, 20 * kSecond, 30 * kSecond, 40 * kSecond,
                                         50 * kSecond, 60 * kSecond}));
  EXPECT_EQ(refused, 40 - 7);
}

}  // namespace
}  // namespace tollgate::policies
