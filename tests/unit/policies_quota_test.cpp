// Calendar quotas (issue 12): the window arithmetic (a pure function of an injected instant), and
// the quota decisions of the C++ limiter and of the Lua script in a real redis-server (the
// clock passed in, as the token-bucket table does), which must agree exactly.

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "policies/quota_window.h"
#include "policies/rate_limiter_memory.h"
#include "policies/token_bucket.h"
#include "policies/token_bucket_script.h"
#include "tests/support/process.h"

namespace tollgate::policies {
namespace {

using config::QuotaPeriod;
using Status = Evaluation::Status;

constexpr int64_t kSecond = 1000000;
constexpr int64_t kHour = 3600;
constexpr int64_t kDaySeconds = 86400;

// Unix seconds of a UTC date and time.
int64_t At(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm));
}

std::tm Utc(int64_t seconds) {
  const time_t t = static_cast<time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

void ExpectWindow(QuotaPeriod period, int hour, int64_t now, int64_t start, int64_t end) {
  const QuotaWindow w = QuotaWindowAt(period, hour, now);
  EXPECT_EQ(w.start_s, start) << "start " << w.start_s - start << " s off";
  EXPECT_EQ(w.end_s, end) << "end " << w.end_s - end << " s off";
}

TEST(QuotaWindow, DaysFromCivilAgreesWithTimegm) {
  EXPECT_EQ(DaysFromCivil(1970, 1, 1), 0);
  EXPECT_EQ(DaysFromCivil(1969, 12, 31), -1);
  for (int y : {1900, 1999, 2000, 2024, 2026, 2100, 2400}) {
    for (int m = 1; m <= 12; ++m) {
      EXPECT_EQ(DaysFromCivil(y, m, 1) * kDaySeconds, At(y, m, 1)) << y << "-" << m;
    }
  }
}

TEST(QuotaWindow, Days) {
  ExpectWindow(QuotaPeriod::kDay, 0, At(2024, 2, 29, 12), At(2024, 2, 29), At(2024, 3, 1));
  ExpectWindow(QuotaPeriod::kDay, 0, At(2026, 12, 31, 23, 59, 59), At(2026, 12, 31),
               At(2027, 1, 1));
  // The instant of reset belongs to the new window; one second before, to the old one.
  ExpectWindow(QuotaPeriod::kDay, 0, At(2027, 1, 1), At(2027, 1, 1), At(2027, 1, 2));
  // Before 1970 (negative Unix time) the division still floors.
  ExpectWindow(QuotaPeriod::kDay, 0, At(1969, 12, 31, 12), At(1969, 12, 31), At(1970, 1, 1));
}

TEST(QuotaWindow, ResetHourShiftsTheWindowAcrossMidnight) {
  // reset_hour_utc 8: 07:59:59 is still yesterday's window, 08:00:00 opens today's.
  ExpectWindow(QuotaPeriod::kDay, 8, At(2026, 12, 1, 7, 59, 59), At(2026, 11, 30, 8),
               At(2026, 12, 1, 8));
  ExpectWindow(QuotaPeriod::kDay, 8, At(2026, 12, 1, 8), At(2026, 12, 1, 8), At(2026, 12, 2, 8));
  ExpectWindow(QuotaPeriod::kDay, 23, At(2026, 12, 1, 0, 30), At(2026, 11, 30, 23),
               At(2026, 12, 1, 23));
  // Months: the first of the month before 08:00 still belongs to the previous month's window.
  ExpectWindow(QuotaPeriod::kMonth, 8, At(2026, 12, 1, 7), At(2026, 11, 1, 8), At(2026, 12, 1, 8));
  ExpectWindow(QuotaPeriod::kMonth, 8, At(2027, 1, 1, 7, 59, 59), At(2026, 12, 1, 8),
               At(2027, 1, 1, 8));
  ExpectWindow(QuotaPeriod::kMonth, 8, At(2027, 1, 1, 8), At(2027, 1, 1, 8), At(2027, 2, 1, 8));
  // Weeks: Monday before the reset hour is still last week.
  ExpectWindow(QuotaPeriod::kWeek, 8, At(2026, 11, 30, 3), At(2026, 11, 23, 8),
               At(2026, 11, 30, 8));
}

TEST(QuotaWindow, MonthsAndLeapYears) {
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2024, 2, 15), At(2024, 2, 1), At(2024, 3, 1));
  EXPECT_EQ(At(2024, 3, 1) - At(2024, 2, 1), 29 * kDaySeconds);
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2023, 2, 28, 23, 59, 59), At(2023, 2, 1), At(2023, 3, 1));
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2100, 2, 28, 12), At(2100, 2, 1), At(2100, 3, 1));
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2000, 2, 29, 12), At(2000, 2, 1), At(2000, 3, 1));
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2026, 12, 31, 23), At(2026, 12, 1), At(2027, 1, 1));
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2026, 1, 31), At(2026, 1, 1), At(2026, 2, 1));
  ExpectWindow(QuotaPeriod::kMonth, 0, At(2026, 4, 30, 23, 59, 59), At(2026, 4, 1), At(2026, 5, 1));
}

TEST(QuotaWindow, WeeksStartOnMonday) {
  // 2026-12-01 is a Tuesday.
  ExpectWindow(QuotaPeriod::kWeek, 0, At(2026, 12, 1, 12), At(2026, 11, 30), At(2026, 12, 7));
  ExpectWindow(QuotaPeriod::kWeek, 0, At(2026, 12, 6, 23, 59, 59), At(2026, 11, 30),
               At(2026, 12, 7));
  ExpectWindow(QuotaPeriod::kWeek, 0, At(2026, 12, 7), At(2026, 12, 7), At(2026, 12, 14));
  // A week across the new year, and 1970-01-01 (a Thursday).
  ExpectWindow(QuotaPeriod::kWeek, 0, At(2027, 1, 1), At(2026, 12, 28), At(2027, 1, 4));
  ExpectWindow(QuotaPeriod::kWeek, 0, 0, At(1969, 12, 29), At(1970, 1, 5));
}

// Every ~2.2 hours for 40 years, every period and a few reset hours: the window holds the
// instant, starts and ends at the reset hour on a 1st / a Monday / any day, and has the length
// of its month, week or day.
TEST(QuotaWindow, PropertiesOverFortyYears) {
  for (int hour : {0, 7, 23}) {
    for (int64_t now = At(1999, 12, 1); now < At(2040, 1, 1); now += 7919) {
      for (QuotaPeriod period : {QuotaPeriod::kDay, QuotaPeriod::kWeek, QuotaPeriod::kMonth}) {
        const QuotaWindow w = QuotaWindowAt(period, hour, now);
        ASSERT_LE(w.start_s, now);
        ASSERT_LT(now, w.end_s);
        const std::tm start = Utc(w.start_s);
        const std::tm end = Utc(w.end_s);
        ASSERT_EQ(start.tm_hour, hour);
        ASSERT_EQ(end.tm_hour, hour);
        ASSERT_EQ(start.tm_min + start.tm_sec + end.tm_min + end.tm_sec, 0);
        if (period == QuotaPeriod::kDay) {
          ASSERT_EQ(w.end_s - w.start_s, kDaySeconds);
        } else if (period == QuotaPeriod::kWeek) {
          ASSERT_EQ(start.tm_wday, 1) << now;
          ASSERT_EQ(w.end_s - w.start_s, 7 * kDaySeconds);
        } else {
          ASSERT_EQ(start.tm_mday, 1) << now;
          ASSERT_EQ(end.tm_mday, 1) << now;
          ASSERT_EQ((end.tm_mon - start.tm_mon + 12) % 12, 1) << now;
        }
      }
    }
  }
}

BucketSpec Quota(const std::string& name, uint64_t amount, QuotaPeriod period, int hour = 0,
                 uint64_t cost = 1) {
  BucketSpec spec;
  spec.key = "quota:" + name + ":_shared";
  spec.name = name;
  spec.burst = amount;
  spec.cost = cost;
  spec.quota = config::Quota{amount, period, hour, std::nullopt};
  return spec;
}

BucketSpec Bucket(const std::string& name, uint64_t tokens, uint64_t period, uint64_t cost = 1) {
  BucketSpec spec;
  spec.key = "bucket:" + name + ":_shared";
  spec.name = name;
  spec.rate = config::Rate{tokens, period};
  spec.burst = tokens;
  spec.cost = cost;
  return spec;
}

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
  int64_t Integer(const std::vector<std::string>& argv) {
    redisReply* reply = Command(argv);
    const int64_t value =
        reply != nullptr && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -999;
    if (reply != nullptr) freeReplyObject(reply);
    return value;
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

class QuotaDecisionTest : public ::testing::TestWithParam<std::string> {
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
      lua_ = new LuaRunner(redis_->port());
      runner_.reset(lua_);
    }
    runner_->Reset();
  }
  Evaluation Run(const std::vector<BucketSpec>& buckets, int64_t now_s, bool take = true,
                 int64_t plus_us = 0) {
    return runner_->Run(buckets, now_s * kSecond + plus_us, take);
  }

  static testing::RedisServer* redis_;
  std::unique_ptr<Runner> runner_;
  LuaRunner* lua_ = nullptr;
};

testing::RedisServer* QuotaDecisionTest::redis_ = nullptr;

// Keys expire at their window's end in Redis's own time (PXAT): the stateful cases below run in
// 2099, so that windows of a fixed date are never already over.

TEST_P(QuotaDecisionTest, CountsUpToTheAmountAndRefusesUntilTheWindowEnds) {
  const int64_t now = At(2099, 12, 1, 10);
  const int64_t end = At(2100, 1, 1);
  const BucketSpec acu = Quota("acu", 10, QuotaPeriod::kMonth, 0, 4);
  Evaluation e = Run({acu}, now);
  EXPECT_EQ(e.status, Status::kAllowed);
  EXPECT_EQ(e.buckets[0].level, 6);
  EXPECT_EQ(e.buckets[0].reset_us, (end - now) * kSecond);
  EXPECT_EQ(Run({acu}, now + 1).buckets[0].level, 2);
  // 4 more would pass 10: refused, nothing taken, retry at the window's end.
  e = Run({acu}, now + 2, true, 250);
  EXPECT_EQ(e.status, Status::kLimited);
  EXPECT_EQ(e.limiting, 0);
  EXPECT_EQ(e.retry_us, (end - now - 2) * kSecond - 250);
  EXPECT_EQ(e.buckets[0].level, 2);
  // What is left can still be used exactly.
  BucketSpec two = acu;
  two.cost = 2;
  EXPECT_EQ(Run({two}, now + 3).status, Status::kAllowed);
  EXPECT_EQ(Run({two}, now + 4).status, Status::kLimited);
}

TEST_P(QuotaDecisionTest, TheWindowResetsAtTheConfiguredHourExactly) {
  const BucketSpec day = Quota("day", 3, QuotaPeriod::kDay, 8, 3);
  const int64_t reset = At(2099, 12, 2, 8);
  EXPECT_EQ(Run({day}, reset - kHour).status, Status::kAllowed);
  // One microsecond before 08:00 the old window is spent...
  Evaluation e = Run({day}, reset, true, -1);
  EXPECT_EQ(e.status, Status::kLimited);
  EXPECT_EQ(e.retry_us, 1);
  // ...at 08:00:00.000000 the new one is full.
  e = Run({day}, reset);
  EXPECT_EQ(e.status, Status::kAllowed);
  EXPECT_EQ(e.buckets[0].level, 0);
  EXPECT_EQ(e.buckets[0].reset_us, kDaySeconds * kSecond);
}

TEST_P(QuotaDecisionTest, ARefusedRequestTakesNothingFromBucketsOrQuotas) {
  const int64_t now = At(2099, 12, 1, 10);
  const BucketSpec quota = Quota("acu", 10, QuotaPeriod::kWeek, 0, 3);
  BucketSpec bucket = Bucket("slow", 1, 86400, 3);
  bucket.burst = 4;
  // The bucket (4 tokens) refuses the second: the quota keeps its 7.
  EXPECT_EQ(Run({quota, bucket}, now).status, Status::kAllowed);
  Evaluation e = Run({quota, bucket}, now);
  EXPECT_EQ(e.status, Status::kLimited);
  EXPECT_EQ(e.limiting, 1);
  EXPECT_EQ(Run({quota}, now, false).buckets[0].level, 7);
  // A quota refuses (a cost above its amount): the bucket keeps what it had.
  const BucketSpec small = Quota("small", 2, QuotaPeriod::kDay, 0, 3);
  BucketSpec other = Bucket("other", 10, 1, 3);
  e = Run({other, small}, now);
  EXPECT_EQ(e.status, Status::kLimited);
  EXPECT_EQ(e.limiting, 1);
  EXPECT_EQ(e.retry_us, (At(2099, 12, 2) - now) * kSecond);
  EXPECT_EQ(Run({other}, now, false).buckets[0].level, MathFor(other).capacity);
  EXPECT_EQ(Run({quota}, now, false).buckets[0].level, 7);
}

TEST_P(QuotaDecisionTest, APeekTakesNothing) {
  const int64_t now = At(2099, 12, 1, 10);
  const BucketSpec quota = Quota("acu", 5, QuotaPeriod::kDay, 0, 2);
  EXPECT_EQ(Run({quota}, now, false).buckets[0].level, 5);
  EXPECT_EQ(Run({quota}, now, false).buckets[0].level, 5);
  EXPECT_EQ(Run({quota}, now).buckets[0].level, 3);
}

TEST_P(QuotaDecisionTest, AShadowQuotaNeverRefuses) {
  const int64_t now = At(2099, 12, 1, 10);
  BucketSpec quota = Quota("acu", 1, QuotaPeriod::kDay);
  quota.shadow = true;
  EXPECT_EQ(Run({quota}, now).status, Status::kAllowed);
  const Evaluation e = Run({quota}, now);
  EXPECT_EQ(e.status, Status::kAllowed);
  EXPECT_TRUE(e.would_limit);
}

// The Lua windows match the C++ ones at and around each reset instant.
TEST_P(QuotaDecisionTest, WindowEndsMatchQuotaWindowAt) {
  for (QuotaPeriod period : {QuotaPeriod::kDay, QuotaPeriod::kWeek, QuotaPeriod::kMonth}) {
    for (int hour : {0, 8, 23}) {
      for (int64_t base : {At(2024, 2, 29, 8), At(2026, 12, 31, 23), At(2027, 1, 1, 0),
                           At(2027, 1, 4, 8), At(2100, 3, 1, 0)}) {
        for (int64_t plus_us : {int64_t{-1}, int64_t{0}, int64_t{1}}) {
          const int64_t now_us = base * kSecond + plus_us;
          const QuotaWindow w = QuotaWindowAt(period, hour, now_us / kSecond);
          const Evaluation e = runner_->Run({Quota("q", 5, period, hour)}, now_us, /*take=*/false);
          EXPECT_EQ(e.buckets[0].reset_us, w.end_s * kSecond - now_us)
              << "period " << static_cast<int>(period) << " hour " << hour << " at " << now_us;
        }
      }
    }
  }
}

TEST_P(QuotaDecisionTest, TheRedisKeyExpiresAtTheWindowsEnd) {
  if (lua_ == nullptr) GTEST_SKIP() << "Redis only";
  const int64_t now = At(2099, 12, 1, 10);
  Run({Quota("acu", 5, QuotaPeriod::kMonth, 8)}, now);
  EXPECT_EQ(lua_->Integer({"PEXPIRETIME", BucketStateKey("test:", "quota:acu:_shared")}),
            At(2100, 1, 1, 8) * 1000);
}

INSTANTIATE_TEST_SUITE_P(Backends, QuotaDecisionTest, ::testing::Values("cpp", "lua"));

TEST(QuotaDecision, ReportsUsedRemainingAndTheWarning) {
  BucketSpec quota = Quota("acu", 10, QuotaPeriod::kMonth, 0, 8);
  quota.quota->warn_at = 0.8;
  std::vector<BucketMath> math = {MathFor(quota)};
  std::vector<BucketState> states(1);
  const int64_t now_us = At(2026, 12, 1, 10) * kSecond;
  Evaluation e = EvaluateBuckets(math, states, now_us, true);
  LimitDecision d = ToDecision({quota}, e, "");
  ASSERT_EQ(d.levels.size(), 1u);
  EXPECT_TRUE(d.levels[0].quota);
  EXPECT_EQ(d.levels[0].burst, 10u);
  EXPECT_EQ(d.levels[0].used, 8u);
  EXPECT_DOUBLE_EQ(d.levels[0].remaining, 2);
  EXPECT_TRUE(d.levels[0].warn);  // 8 of 10 is at warn_at 0.8
  quota.cost = 1;
  states[0] = BucketState{};
  e = EvaluateBuckets(math, states, now_us, false);
  d = ToDecision({quota}, e, "");
  EXPECT_FALSE(d.levels[0].warn);
  EXPECT_EQ(d.levels[0].used, 0u);
}

// The in-process limiter enforces quotas too, on its (injected) clock as UTC time.
TEST(QuotaDecision, TheMemoryLimiterCountsPerWindow) {
  int64_t now_us = At(2026, 12, 1, 7, 59, 59) * kSecond;
  MemoryLimiter limiter([&] { return now_us; });
  LimitRequest request;
  request.buckets = {Quota("acu", 3, QuotaPeriod::kDay, 8, 2)};
  EXPECT_EQ(limiter.Decide(request, true).outcome, LimitDecision::Outcome::kAllowed);
  LimitDecision d = limiter.Decide(request, true);
  EXPECT_EQ(d.outcome, LimitDecision::Outcome::kLimited);
  EXPECT_EQ(d.limited_by, "acu");
  EXPECT_DOUBLE_EQ(d.retry_after_seconds, 1);
  now_us += kSecond;  // 08:00:00: a new window
  EXPECT_EQ(limiter.Decide(request, true).outcome, LimitDecision::Outcome::kAllowed);
  EXPECT_EQ(limiter.Decide(request, true).outcome, LimitDecision::Outcome::kLimited);
}

}  // namespace
}  // namespace tollgate::policies
