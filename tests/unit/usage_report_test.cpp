// GET /usage's parameters, grouping, JSON and CSV, and the CLI's table (usage/usage_report.h).
#include "usage/usage_report.h"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

namespace tollgate::usage {
namespace {

const int64_t kToday = *ParseDay("2026-12-20");

UsageQuery Parse(const std::string& raw, std::string* error = nullptr) {
  UsageQuery q;
  std::string e = ParseUsageQuery(raw, kToday, 400, &q);
  if (error != nullptr) {
    *error = e;
  } else {
    EXPECT_EQ(e, "") << raw;
  }
  return q;
}

TEST(UsageQueryParse, DefaultsToTheLast30DaysByDay) {
  UsageQuery q = Parse("");
  EXPECT_EQ(FormatDay(q.from), "2026-11-21");
  EXPECT_EQ(FormatDay(q.to), "2026-12-20");
  EXPECT_EQ(q.group_by, std::vector<std::string>{"day"});
  EXPECT_FALSE(q.csv);
}

TEST(UsageQueryParse, ReadsEveryParameter) {
  UsageQuery q = Parse(
      "from=2026-12-01&to=2026-12-03&caller=data-team&upstream=devin&group_by=caller%2Cday&"
      "format=csv&_=123");
  EXPECT_EQ(FormatDay(q.from), "2026-12-01");
  EXPECT_EQ(FormatDay(q.to), "2026-12-03");
  EXPECT_EQ(q.caller, "data-team");
  EXPECT_EQ(q.upstream, "devin");
  EXPECT_EQ(q.group_by, (std::vector<std::string>{"caller", "day"}));
  EXPECT_TRUE(q.csv);
}

TEST(UsageQueryParse, ABadParameterIsNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"from=2026-02-30", "from:"},
      {"to=yesterday", "to:"},
      {"from=2026-12-05&to=2026-12-01", "from:"},
      {"from=2024-01-01&to=2026-12-01", "from:"},  // more than retention_days apart
      {"group_by=day,week", "group_by:"},
      {"group_by=day,day", "group_by:"},
      {"group_by=", "group_by:"},
      {"format=xml", "format:"},
      {"caller=%zz", "caller:"},
  };
  for (const auto& [raw, prefix] : cases) {
    std::string error;
    Parse(raw, &error);
    EXPECT_EQ(error.rfind(prefix, 0), 0u) << raw << " -> " << error;
  }
}

UsageTable Sample() {
  const int64_t d1 = *ParseDay("2026-12-01"), d2 = d1 + 1;
  UsageTable t;
  auto& a = t[UsageKey(d1, "data-team", "devin")];
  a.n[kRequests] = 3;
  a.n[kAllowed] = 2;
  a.n[kForbidden] = 1;
  a.n[kStatus2xx] = 2;
  a.n[kStatus4xx] = 1;
  a.cost["acu-month"] = 50;
  auto& b = t[UsageKey(d2, "data-team", "devo")];
  b.n[kRequests] = 1;
  b.n[kErrors] = 1;
  b.n[kStatus5xx] = 1;
  auto& c = t[UsageKey(d1, "-", "devin")];
  c.n[kRequests] = 2;
  c.n[kUnauthenticated] = 2;
  c.n[kStatus4xx] = 2;
  c.unauthenticated_keys["abcdefghijkl"] = 1;
  auto& old = t[UsageKey(d1 - 40, "data-team", "devin")];  // outside the range
  old.n[kRequests] = 100;
  return t;
}

TEST(UsageRows, GroupsFiltersAndSorts) {
  UsageQuery by_day = Parse("from=2026-12-01&to=2026-12-02");
  auto rows = BuildUsageRows(by_day, Sample());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].keys, std::vector<std::string>{"2026-12-01"});
  EXPECT_EQ(rows[0].counts.n[kRequests], 5);
  EXPECT_EQ(rows[1].counts.n[kRequests], 1);

  auto by_caller = BuildUsageRows(Parse("from=2026-12-01&to=2026-12-02&group_by=caller"), Sample());
  ASSERT_EQ(by_caller.size(), 2u);
  EXPECT_EQ(by_caller[0].keys, std::vector<std::string>{"-"});
  EXPECT_EQ(by_caller[1].keys, std::vector<std::string>{"data-team"});
  EXPECT_EQ(by_caller[1].counts.n[kRequests], 4);

  auto filtered = BuildUsageRows(
      Parse("from=2026-12-01&to=2026-12-02&upstream=devin&caller=data-team&group_by=day,caller"),
      Sample());
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_EQ(filtered[0].keys, (std::vector<std::string>{"2026-12-01", "data-team"}));
  EXPECT_EQ(filtered[0].counts.n[kRequests], 3);
}

TEST(UsageJsonAnswer, HasTheSharedShape) {
  UsageQuery q = Parse("from=2026-12-01&to=2026-12-02&group_by=day,caller");
  const std::string json = UsageJson(q, BuildUsageRows(q, Sample()));
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  ASSERT_FALSE(doc.HasParseError()) << json;
  EXPECT_STREQ(doc["from"].GetString(), "2026-12-01");
  EXPECT_STREQ(doc["to"].GetString(), "2026-12-02");
  EXPECT_EQ(doc["group_by"].Size(), 2u);
  const auto& items = doc["items"];
  ASSERT_EQ(items.Size(), 3u) << json;
  const auto& anon = items[0];  // 2026-12-01, "-"
  EXPECT_STREQ(anon["caller"].GetString(), "-");
  EXPECT_FALSE(anon.HasMember("upstream"));
  EXPECT_EQ(anon["unauthenticated"].GetInt64(), 2);
  EXPECT_EQ(anon["unauthenticated_keys"]["abcdefghijkl"].GetInt64(), 1);
  const auto& data = items[1];
  EXPECT_STREQ(data["day"].GetString(), "2026-12-01");
  EXPECT_EQ(data["requests"].GetInt64(), 3);
  EXPECT_EQ(data["allowed"].GetInt64(), 2);
  EXPECT_EQ(data["forbidden"].GetInt64(), 1);
  EXPECT_EQ(data["rate_limited"].GetInt64(), 0);
  EXPECT_EQ(data["errors"].GetInt64(), 0);
  EXPECT_EQ(data["bytes_in"].GetInt64(), 0);
  EXPECT_EQ(data["status"]["2xx"].GetInt64(), 2);
  EXPECT_EQ(data["status"]["4xx"].GetInt64(), 1);
  EXPECT_FALSE(data["status"].HasMember("3xx"));
  EXPECT_EQ(data["cost"]["acu-month"].GetInt64(), 50);
  EXPECT_FALSE(data.HasMember("unauthenticated_keys"));
  EXPECT_EQ(items[2]["errors"].GetInt64(), 1);
}

TEST(UsageCsvAnswer, HeaderColumnsAndQuoting) {
  UsageQuery q = Parse("from=2026-12-01&to=2026-12-02&group_by=caller");
  const std::string csv = UsageCsv(q, BuildUsageRows(q, Sample()));
  EXPECT_EQ(csv,
            "caller,requests,allowed,forbidden,rate_limited,unauthenticated,errors,bytes_in,"
            "bytes_out,status_2xx,status_3xx,status_4xx,status_5xx,cost:acu-month\r\n"
            "-,2,0,0,0,2,0,0,0,0,0,2,0,0\r\n"
            "data-team,4,2,1,0,0,1,0,0,2,0,1,1,50\r\n");
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("two\nlines"), "\"two\nlines\"");
  // A cost name with a comma or a quote (limit names may hold them) stays one column.
  UsageTable t;
  t[UsageKey(*ParseDay("2026-12-01"), "a", "b")].cost["x,\"y\""] = 1;
  const std::string quoted = UsageCsv(q, BuildUsageRows(q, t));
  EXPECT_NE(quoted.find(",\"cost:x,\"\"y\"\"\"\r\n"), std::string::npos) << quoted;
}

TEST(UsageTableText, OneLinePerItemAndAHeader) {
  UsageQuery q = Parse("from=2026-12-01&to=2026-12-02&group_by=day,caller");
  std::string error;
  const std::string table = FormatUsageTable(UsageJson(q, BuildUsageRows(q, Sample())), &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(table.rfind("DAY", 0), 0u) << table;
  EXPECT_NE(table.find("acu-month=50"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 4);
  FormatUsageTable("{\"nope\": 1}", &error);
  EXPECT_NE(error, "");
}

}  // namespace
}  // namespace tollgate::usage
