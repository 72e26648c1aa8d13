// The response fields of calendar quotas (issue 12): a quota described in RateLimit-Policy /
// RateLimit like a bucket, and Tollgate-Quota-Warning past warn_at.
#include <gtest/gtest.h>

#include "gateway/rate_limit_headers.h"

namespace tollgate::gateway {
namespace {

const std::string* Find(const HeaderList& h, const std::string& name) {
  for (const auto& [k, v] : h) {
    if (k == name) return &v;
  }
  return nullptr;
}

policies::BucketSpec QuotaSpec(const std::string& name, uint64_t amount,
                               config::QuotaPeriod period) {
  policies::BucketSpec s;
  s.name = name;
  s.key = "quota:" + name + ":_shared";
  s.burst = amount;
  s.quota = config::Quota{amount, period, 0, 0.8};
  return s;
}

policies::BucketLevel QuotaLevel(const std::string& name, uint64_t amount, uint64_t used, bool warn,
                                 double reset) {
  policies::BucketLevel l;
  l.name = name;
  l.burst = amount;
  l.quota = true;
  l.used = used;
  l.remaining = static_cast<double>(amount - used);
  l.reset_seconds = reset;
  l.warn = warn;
  return l;
}

TEST(QuotaHeaders, AQuotaIsDescribedLikeABucket) {
  HeaderList h;
  AddRateLimitHeaders({QuotaSpec("acu", 2000, config::QuotaPeriod::kDay)},
                      {QuotaLevel("acu", 2000, 1500, false, 3600.2)}, &h);
  ASSERT_NE(Find(h, "RateLimit-Policy"), nullptr);
  EXPECT_EQ(*Find(h, "RateLimit-Policy"), "\"acu\";q=2000;w=86400");
  EXPECT_EQ(*Find(h, "RateLimit"), "\"acu\";r=500;t=3601");
  EXPECT_EQ(Find(h, kQuotaWarningHeader), nullptr);
  EXPECT_EQ(QuotaWindowSeconds(config::QuotaPeriod::kWeek), 7 * 86400);
}

TEST(QuotaHeaders, PastWarnAtEachQuotaIsNamedWithItsUseAndLimit) {
  HeaderList h;
  AddRateLimitHeaders(
      {QuotaSpec("acu", 2000, config::QuotaPeriod::kMonth),
       QuotaSpec("daily", 10, config::QuotaPeriod::kDay)},
      {QuotaLevel("acu", 2000, 1700, true, 10), QuotaLevel("daily", 10, 9, true, 10)}, &h);
  ASSERT_NE(Find(h, kQuotaWarningHeader), nullptr);
  EXPECT_EQ(*Find(h, kQuotaWarningHeader),
            "\"acu\";used=1700;limit=2000, \"daily\";used=9;limit=10");
}

}  // namespace
}  // namespace tollgate::gateway
