// Usage counters: what one request adds, the recorder's aggregation across threads, and the
// stored field format (usage/usage_counts.h).
#include "usage/usage_counts.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace tollgate::usage {
namespace {

using std::chrono::system_clock;

system_clock::time_point At(int64_t day, int64_t second_of_day = 0) {
  return system_clock::time_point(std::chrono::seconds(day * 86400 + second_of_day));
}

TEST(UsageDay, FormatsAndParsesUtcDays) {
  const int64_t day = *ParseDay("2026-12-01");
  EXPECT_EQ(FormatDay(day), "2026-12-01");
  EXPECT_EQ(DayOf(At(day, 86399)), day);
  EXPECT_EQ(DayOf(At(day + 1)), day + 1);
  EXPECT_EQ(FormatDay(0), "1970-01-01");
  for (const char* bad :
       {"2026-02-30", "2026-13-01", "2026-1-01", "20261201", "2026-12-01x", "", "abcd-ef-gh"}) {
    EXPECT_FALSE(ParseDay(bad)) << bad;
  }
}

TEST(UsageCount, OneRequestOfEachDecision) {
  UsageCounts c;
  for (const char* d : {"allowed", "forbidden", "rate_limited", "unauthenticated", "bad_request",
                        "not_found", "error"}) {
    UsageEvent e;
    e.decision = d;
    e.status = 200;
    Count(e, &c);
  }
  EXPECT_EQ(c.n[kRequests], 7);
  EXPECT_EQ(c.n[kAllowed], 1);
  EXPECT_EQ(c.n[kForbidden], 1);
  EXPECT_EQ(c.n[kRateLimited], 1);
  EXPECT_EQ(c.n[kUnauthenticated], 1);
  EXPECT_EQ(c.n[kErrors], 3);
}

TEST(UsageCount, StatusClassesBytesCostsAndKeys) {
  UsageCounts c;
  UsageEvent e;
  e.decision = "allowed";
  e.bytes_in = 10;
  e.bytes_out = 100;
  e.costs = {{"acu-month", 50}, {"per-minute", 1}};
  for (int status : {200, 201, 302, 404, 499, 502, 0}) {
    e.status = status;
    Count(e, &c);
  }
  EXPECT_EQ(c.n[kStatus2xx], 2);
  EXPECT_EQ(c.n[kStatus3xx], 1);
  EXPECT_EQ(c.n[kStatus4xx], 2);  // 499: the caller left
  EXPECT_EQ(c.n[kStatus5xx], 1);
  EXPECT_EQ(c.n[kBytesIn], 70);
  EXPECT_EQ(c.n[kBytesOut], 700);
  EXPECT_EQ(c.cost.at("acu-month"), 350);
  EXPECT_EQ(c.cost.at("per-minute"), 7);
  EXPECT_TRUE(c.unauthenticated_keys.empty());
  UsageEvent refused;
  refused.decision = "unauthenticated";
  refused.unauthenticated_key = "abcdefghijkl";
  Count(refused, &c);
  Count(refused, &c);
  EXPECT_EQ(c.unauthenticated_keys.at("abcdefghijkl"), 2);
}

TEST(UsageRecorder, SumsEveryThreadsRequestsByDayCallerAndUpstream) {
  UsageRecorder recorder;
  const int64_t day = *ParseDay("2026-12-01");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&recorder, day, t] {
      for (int i = 0; i < 1000; ++i) {
        UsageEvent e;
        e.when = At(day + (i % 2), 3600);
        e.caller = t % 2 == 0 ? "data-team" : "";
        e.upstream = "devin";
        e.decision = t % 2 == 0 ? "allowed" : "unauthenticated";
        e.status = t % 2 == 0 ? 200 : 401;
        e.costs = {{"acu", 2}};
        recorder.Record(e);
      }
    });
  }
  for (auto& t : threads) t.join();
  UsageTable table = recorder.Take();
  ASSERT_EQ(table.size(), 4u);  // 2 days x {data-team, -}
  const auto& data = table.at(UsageKey(day, "data-team", "devin"));
  EXPECT_EQ(data.n[kRequests], 1000);
  EXPECT_EQ(data.n[kAllowed], 1000);
  EXPECT_EQ(data.cost.at("acu"), 2000);
  const auto& anonymous = table.at(UsageKey(day + 1, "-", "devin"));
  EXPECT_EQ(anonymous.n[kUnauthenticated], 1000);
  EXPECT_EQ(anonymous.n[kStatus4xx], 1000);
  EXPECT_TRUE(recorder.Take().empty());  // taken once
}

TEST(UsageFields, EncodeThenDecodeGivesTheSameTable) {
  UsageTable table;
  UsageCounts& c = table[UsageKey(20000, "data-team", "devin")];
  c.n[kRequests] = 3;
  c.n[kBytesOut] = 1234;
  c.cost["weird|limit:name"] = 7;  // a limit name may hold '|' and ':'
  table[UsageKey(20001, "-", "-")].unauthenticated_keys["abcdefghijkl"] = 2;
  table[UsageKey(20001, "-", "-")].n[kRequests] = 2;
  UsageTable decoded;
  for (const auto& f : EncodeTable(table)) EXPECT_TRUE(DecodeField(f.day, f.field, f.n, &decoded));
  EXPECT_EQ(decoded, table);
  EXPECT_FALSE(DecodeField(1, "no-separators", 1, &decoded));
  EXPECT_FALSE(DecodeField(1, "a|b|not_a_counter", 1, &decoded));
}

}  // namespace
}  // namespace tollgate::usage
