// The token-bucket math, one table of cases run against the C++ functions and against the Lua
// script in a real redis-server (with the clock passed in), so both must agree exactly.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policies/token_bucket.h"
#include "policies/token_bucket_script.h"
#include "tests/support/process.h"

namespace tollgate::policies {
namespace {

using Status = Evaluation::Status;

constexpr int64_t kSecond = 1000000;
constexpr int64_t kDay = 86400 * kSecond;
// A realistic Unix time in µs, so the Lua side works with numbers of the size TIME gives.
constexpr int64_t kEpoch = 1795000000 * kSecond;

BucketSpec Bucket(const std::string& name, uint64_t tokens, uint64_t period, uint64_t burst = 0,
                  bool shadow = false, uint32_t wait_ms = 0) {
  BucketSpec spec;
  spec.wait_ms = wait_ms;
  spec.key = "bucket:" + name + ":_shared";
  spec.name = name;
  spec.rate = config::Rate{tokens, period};
  spec.burst = burst;
  spec.shadow = shadow;
  return spec;
}

// Decides one request at `now_us` against stored state, like a backend does.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void Reset() = 0;
  virtual Evaluation Run(const std::vector<BucketSpec>& buckets, int64_t now_us, bool take) = 0;
};

class CppRunner : public Runner {
 public:
  void Reset() override { states_.clear(); }
  Evaluation Run(const std::vector<BucketSpec>& buckets, int64_t now_us, bool take) override {
    std::vector<BucketMath> math;
    std::vector<BucketState> states;
    for (const BucketSpec& spec : buckets) {
      math.push_back(MathFor(spec));
      states.push_back(states_[spec.key]);
    }
    Evaluation evaluation = EvaluateBuckets(math, states, now_us, take);
    for (size_t i = 0; i < buckets.size(); ++i) states_[buckets[i].key] = states[i];
    return evaluation;
  }

 private:
  std::map<std::string, BucketState> states_;
};

class LuaRunner : public Runner {
 public:
  explicit LuaRunner(int port) {
    context_ = redisConnect("127.0.0.1", port);
    EXPECT_TRUE(context_ != nullptr && context_->err == 0);
  }
  ~LuaRunner() override { redisFree(context_); }
  void Reset() override { freeReplyObject(Command({"FLUSHALL"})); }
  Evaluation Run(const std::vector<BucketSpec>& buckets, int64_t now_us, bool take) override {
    TokenBucketCall call = MakeTokenBucketCall(buckets, "", "test:", take, now_us);
    std::vector<std::string> argv = {"EVAL", kTokenBucketScript, std::to_string(call.keys.size())};
    argv.insert(argv.end(), call.keys.begin(), call.keys.end());
    argv.insert(argv.end(), call.args.begin(), call.args.end());
    redisReply* reply = Command(argv);
    Evaluation evaluation;
    EXPECT_TRUE(reply != nullptr && ParseTokenBucketReply(*reply, buckets.size(), &evaluation))
        << (reply != nullptr && reply->str != nullptr ? reply->str : "no reply");
    if (reply != nullptr) freeReplyObject(reply);
    return evaluation;
  }

 private:
  redisReply* Command(const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& arg : argv) {
      pointers.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), pointers.data(), lengths.data()));
  }
  redisContext* context_ = nullptr;
};

struct Step {
  int64_t at_us;               // since kEpoch
  uint64_t cost;               // taken from every bucket
  Status status;               // expected
  std::vector<double> tokens;  // expected level of each bucket afterwards, in tokens
  int64_t retry_us = 0;        // expected request retry-after (kLimited)
  bool would_limit = false;
  bool take = true;
  int64_t wait_us = 0;  // expected wait (kAllowed)
};

struct Case {
  std::string name;
  std::vector<BucketSpec> buckets;
  std::vector<Step> steps;
};

std::vector<Case> Cases() {
  return {
      {"refill",
       {Bucket("a", 10, 1)},
       {{0, 10, Status::kAllowed, {0}},
        {0, 1, Status::kLimited, {0}, 100000},
        {99999, 1, Status::kLimited, {0.99999}, 1},
        {100000, 1, Status::kAllowed, {0}},
        {250000, 1, Status::kAllowed, {0.5}},
        {10 * kSecond, 0, Status::kAllowed, {10}}}},
      // 3 a second does not divide a token: 333333.3 µs each. The refill must stop at the
      // burst exactly when the time to full (rounded up) has passed, and not a unit above it.
      {"refill_stops_at_the_burst_when_the_rate_does_not_divide_it",
       {Bucket("a", 3, 1, 1)},
       {{0, 1, Status::kAllowed, {0}},
        {0, 1, Status::kLimited, {0}, 333334},
        {333333, 0, Status::kAllowed, {0.999999}},
        {333333, 1, Status::kLimited, {0.999999}, 1},
        {333334, 0, Status::kAllowed, {1}},
        {333334, 1, Status::kAllowed, {0}}}},
      {"burst_defaults_to_rate_and_caps_refill",
       {Bucket("a", 3, 60)},
       {{0, 3, Status::kAllowed, {0}},
        {kDay, 1, Status::kAllowed, {2}},
        {kDay, 3, Status::kLimited, {2}, 20 * kSecond}}},
      {"explicit_burst",
       {Bucket("a", 1, 1, 5)},
       {{0, 1, Status::kAllowed, {4}},
        {0, 4, Status::kAllowed, {0}},
        {0, 1, Status::kLimited, {0}, kSecond},
        {kDay, 0, Status::kAllowed, {5}}}},
      {"cost",
       {Bucket("a", 1, 1, 5)},
       {{0, 3, Status::kAllowed, {2}}, {0, 3, Status::kLimited, {2}, kSecond}}},
      {"multi_bucket_all_or_nothing",
       {Bucket("a", 10, 1), Bucket("b", 1, 60, 2)},
       {{0, 1, Status::kAllowed, {9, 1}},
        {0, 1, Status::kAllowed, {8, 0}},
        {0, 1, Status::kLimited, {8, 0}, 60 * kSecond},
        {30 * kSecond, 1, Status::kLimited, {10, 0.5}, 30 * kSecond},
        {60 * kSecond, 1, Status::kAllowed, {9, 0}}}},
      {"retry_is_the_longest_wait",
       {Bucket("a", 1, 10, 1), Bucket("b", 1, 60, 1)},
       {{0, 1, Status::kAllowed, {0, 0}}, {0, 1, Status::kLimited, {0, 0}, 60 * kSecond}}},
      {"shadow_takes_when_it_can_and_never_rejects",
       {Bucket("a", 10, 1), Bucket("s", 1, 60, 1, true)},
       {{0, 1, Status::kAllowed, {9, 0}},
        {0, 1, Status::kAllowed, {8, 0}, 0, true},
        {60 * kSecond, 1, Status::kAllowed, {9, 0}}}},
      {"cost_above_burst_never_succeeds",
       {Bucket("a", 1, 1, 2)},
       {{0, 3, Status::kLimited, {2}, 0},
        {0, 1, Status::kAllowed, {1}},
        {0, 3, Status::kLimited, {1}, kSecond},
        {kDay, 3, Status::kLimited, {2}, 0}}},
      {"peek_takes_nothing",
       {Bucket("a", 1, 1, 2)},
       {{0, 1, Status::kAllowed, {2}, 0, false, false},
        {0, 2, Status::kAllowed, {0}},
        {0, 1, Status::kLimited, {0}, kSecond, false, false}}},
      // Issue 14: 10/s, burst 1, wait 500 ms. Requests past the burst reserve the next tokens,
      // one every 100 ms in order; the level goes below zero but never below what 500 ms
      // refills; past that, refused (taking nothing). A peek never reserves.
      {"wait_reserves_the_next_tokens_in_order_down_to_the_wait",
       {Bucket("a", 10, 1, 1, false, 500)},
       {{0, 1, Status::kAllowed, {0}},
        {0, 1, Status::kAllowed, {-1}, 0, false, true, 100000},
        {0, 1, Status::kAllowed, {-2}, 0, false, true, 200000},
        {0, 1, Status::kAllowed, {-3}, 0, false, true, 300000},
        {0, 1, Status::kAllowed, {-4}, 0, false, true, 400000},
        {0, 1, Status::kAllowed, {-5}, 0, false, true, 500000},
        {0, 1, Status::kLimited, {-5}, 600000},
        {0, 1, Status::kLimited, {-5}, 600000, false, false},
        {1, 1, Status::kLimited, {-4.99999}, 599999},
        {100000, 1, Status::kAllowed, {-5}, 0, false, true, 500000},
        {150000, 1, Status::kLimited, {-4.5}, 550000},
        {kDay, 1, Status::kAllowed, {0}}}},
      {"wait_is_all_or_nothing_over_every_bucket",
       {Bucket("a", 10, 1, 1, false, 500), Bucket("b", 1, 60, 1)},
       {{0, 1, Status::kAllowed, {0, 0}},
        // a would wait 100 ms, b refuses: nothing is taken from a either.
        {0, 1, Status::kLimited, {0, 0}, 60 * kSecond},
        {60 * kSecond, 1, Status::kAllowed, {0, 0}}}},
      {"the_longest_wait_of_two_waiting_buckets_is_the_requests",
       {Bucket("a", 10, 1, 1, false, 500), Bucket("b", 5, 1, 1, false, 2000)},
       {{0, 1, Status::kAllowed, {0, 0}},
        {0, 1, Status::kAllowed, {-1, -1}, 0, false, true, 200000},
        {0, 1, Status::kAllowed, {-2, -2}, 0, false, true, 400000},
        {0, 1, Status::kAllowed, {-3, -3}, 0, false, true, 600000},
        {0, 1, Status::kAllowed, {-4, -4}, 0, false, true, 800000},
        {0, 1, Status::kAllowed, {-5, -5}, 0, false, true, 1000000},
        // b would wait 1.2 s (within its 2 s), a would need 600 ms (over its 500): refused by
        // a alone, and nothing is reserved in b either.
        {0, 1, Status::kLimited, {-5, -5}, 600000}}},
      {"a_cost_above_the_burst_never_waits",
       {Bucket("a", 10, 1, 2, false, 5000)},
       {{0, 3, Status::kLimited, {2}, 0}, {0, 2, Status::kAllowed, {0}}}},
      {"clock_going_back_refills_nothing",
       {Bucket("a", 1, 1, 2)},
       {{kSecond, 2, Status::kAllowed, {0}}, {0, 1, Status::kLimited, {0}, kSecond}}},
  };
}

class BucketMathTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { redis_ = new testing::RedisServer(); }
  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
  }
  void SetUp() override {
    if (GetParam() == "cpp") {
      runner_ = std::make_unique<CppRunner>();
    } else {
      runner_ = std::make_unique<LuaRunner>(redis_->port());
    }
    runner_->Reset();
  }

  static testing::RedisServer* redis_;
  std::unique_ptr<Runner> runner_;
};

testing::RedisServer* BucketMathTest::redis_ = nullptr;

TEST_P(BucketMathTest, Table) {
  for (const Case& c : Cases()) {
    runner_->Reset();
    for (size_t s = 0; s < c.steps.size(); ++s) {
      const Step& step = c.steps[s];
      SCOPED_TRACE(c.name + " step " + std::to_string(s));
      std::vector<BucketSpec> buckets = c.buckets;
      for (BucketSpec& spec : buckets) spec.cost = step.cost;
      const Evaluation got = runner_->Run(buckets, kEpoch + step.at_us, step.take);
      EXPECT_EQ(got.status, step.status);
      EXPECT_EQ(got.would_limit, step.would_limit);
      if (step.status == Status::kLimited) {
        EXPECT_EQ(got.retry_us, step.retry_us);
      } else {
        EXPECT_EQ(got.wait_us, step.wait_us);
      }
      ASSERT_EQ(got.buckets.size(), buckets.size());
      for (size_t b = 0; b < buckets.size(); ++b) {
        const BucketMath math = MathFor(buckets[b]);
        EXPECT_EQ(got.buckets[b].level, std::llround(step.tokens[b] * math.unit)) << "bucket " << b;
        EXPECT_EQ(got.buckets[b].reset_us,
                  CeilDiv(math.capacity - got.buckets[b].level, math.refill));
      }
    }
  }
}

// 7/day does not divide a day into whole seconds: any rounding would drift. Polling at an odd
// interval for exactly 24 h from empty must yield exactly 7 tokens, the 7th at 86400 s sharp.
TEST_P(BucketMathTest, NPerDayIsExactOverADay) {
  const std::vector<BucketSpec> bucket = {Bucket("day", 7, 86400)};
  std::vector<BucketSpec> drain = bucket;
  drain[0].cost = 7;
  ASSERT_EQ(runner_->Run(drain, kEpoch, true).status, Status::kAllowed);
  int allowed = 0;
  for (int64_t t = 997 * kSecond; t < kDay; t += 997 * kSecond) {
    if (runner_->Run(bucket, kEpoch + t, true).status == Status::kAllowed) ++allowed;
  }
  EXPECT_EQ(allowed, 6);
  EXPECT_EQ(runner_->Run(bucket, kEpoch + kDay - 1, true).status, Status::kLimited);
  const Evaluation last = runner_->Run(bucket, kEpoch + kDay, true);
  EXPECT_EQ(last.status, Status::kAllowed);
  EXPECT_EQ(last.buckets[0].level, 0);
}

TEST_P(BucketMathTest, LongIdleRefillsToFullWithoutOverflow) {
  std::vector<BucketSpec> bucket = {Bucket("big", 1000000, 86400, 100)};
  bucket[0].cost = 100;
  ASSERT_EQ(runner_->Run(bucket, kEpoch, true).status, Status::kAllowed);
  const Evaluation later = runner_->Run(bucket, kEpoch + 365 * kDay, false);
  EXPECT_EQ(later.buckets[0].level, MathFor(bucket[0]).capacity);
}

INSTANTIATE_TEST_SUITE_P(Backends, BucketMathTest, ::testing::Values("cpp", "lua"));

TEST(BucketMath, UnitsAreTokenMicroseconds) {
  BucketSpec spec = Bucket("a", 50, 86400, 60);
  spec.cost = 2;
  const BucketMath math = MathFor(spec);
  EXPECT_EQ(math.unit, 86400 * kSecond);
  EXPECT_EQ(math.refill, 50);
  EXPECT_EQ(math.capacity, 60 * 86400 * kSecond);
  EXPECT_EQ(math.cost, 2 * 86400 * kSecond);
}

TEST(BucketMath, OversizedLimitsSaturateInsteadOfOverflowing) {
  const BucketMath math = MathFor(Bucket("a", 1, 86400, uint64_t{1} << 62));
  EXPECT_EQ(math.capacity, kMaxExactUnits);
}

TEST(BucketMath, CeilDiv) {
  EXPECT_EQ(CeilDiv(0, 7), 0);
  EXPECT_EQ(CeilDiv(7, 7), 1);
  EXPECT_EQ(CeilDiv(8, 7), 2);
}

TEST(BucketMath, DecisionReportsTokensSecondsAndTheLimitingBucket) {
  std::vector<BucketSpec> specs = {Bucket("a", 10, 1), Bucket("b", 1, 60, 2)};
  Evaluation evaluation;
  evaluation.status = Status::kLimited;
  evaluation.limiting = 1;
  evaluation.retry_us = 30 * kSecond;
  evaluation.buckets = {{5 * kSecond, 500000, 0}, {30 * kSecond * 1, 90 * kSecond, 30 * kSecond}};
  const LimitDecision decision = ToDecision(specs, evaluation, "");
  EXPECT_EQ(decision.outcome, LimitDecision::Outcome::kLimited);
  EXPECT_EQ(decision.limited_by, "b");
  EXPECT_DOUBLE_EQ(decision.retry_after_seconds, 30);
  ASSERT_EQ(decision.levels.size(), 2u);
  EXPECT_DOUBLE_EQ(decision.levels[0].remaining, 5);
  EXPECT_EQ(decision.levels[0].burst, 10u);
  EXPECT_DOUBLE_EQ(decision.levels[0].reset_seconds, 0.5);
  EXPECT_DOUBLE_EQ(decision.levels[1].remaining, 0.5);
  EXPECT_DOUBLE_EQ(decision.levels[1].retry_after_seconds, 30);

  evaluation.status = Status::kCooldown;
  evaluation.cooldown_ms = 1500;
  const LimitDecision cooldown = ToDecision(specs, evaluation, "devin");
  EXPECT_EQ(cooldown.outcome, LimitDecision::Outcome::kCooldown);
  EXPECT_EQ(cooldown.limited_by, "devin");
  EXPECT_DOUBLE_EQ(cooldown.retry_after_seconds, 1.5);
}

}  // namespace
}  // namespace tollgate::policies
