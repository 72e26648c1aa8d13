// The console's data answers (gateway/admin_console_data.h) and the audit log's ring of recent
// refusals, without a server.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <string>
#include <vector>

#include "config/model.h"
#include "gateway/admin_console_data.h"
#include "gateway/audit_log.h"
#include "keys/key_record.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

using std::chrono::hours;

const SystemTime kNow = keys::FromUnixMs(1800000000000);  // 2027-01-15T08:00:00.000Z

rapidjson::Document Parse(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  EXPECT_FALSE(doc.HasParseError()) << text;
  return doc;
}

config::Config TwoCallers() {
  config::Config c;
  config::Caller data;
  data.name = "data-team";
  data.key_sha256 = {upstream::Sha256Hex("tg_data_key"), upstream::Sha256Hex("tg_data_key_2")};
  data.description = "Data platform \"ETL\" jobs";
  data.roles = {"beta"};
  data.attributes["team"] = {"data"};
  c.callers["data-team"] = data;
  config::Caller old;
  old.name = "old-team";
  old.key_sha256 = {upstream::Sha256Hex("tg_old_key")};
  old.expires = kNow - hours(1);
  old.disabled = true;
  c.callers["old-team"] = old;
  return c;
}

TEST(CallersJson, NamesConfigKeysByTheirIdAndNeverByHash) {
  const config::Config c = TwoCallers();
  const std::string json = CallersJson(c, nullptr, false, kNow);
  for (const auto& [name, caller] : c.callers) {
    for (const std::string& hash : caller.key_sha256) {
      EXPECT_EQ(json.find(hash), std::string::npos) << json;
      EXPECT_NE(json.find("\"" + hash.substr(0, 8) + "\""), std::string::npos) << json;
    }
  }
  rapidjson::Document doc = Parse(json);
  const auto& items = doc["items"];
  ASSERT_EQ(items.Size(), 2u);
  EXPECT_STREQ(items[0]["name"].GetString(), "data-team");
  EXPECT_EQ(items[0]["keys"].Size(), 2u);
  EXPECT_STREQ(items[0]["keys"][0]["kind"].GetString(), "config");
  EXPECT_STREQ(items[0]["keys"][0]["state"].GetString(), "active");
  EXPECT_STREQ(items[0]["attributes"]["team"][0].GetString(), "data");
  EXPECT_STREQ(items[0]["description"].GetString(), "Data platform \"ETL\" jobs");
  EXPECT_TRUE(items[1]["description"].IsNull());
  EXPECT_TRUE(items[1]["disabled"].GetBool());
  EXPECT_STREQ(items[1]["keys"][0]["state"].GetString(), "expired");
  EXPECT_STREQ(items[1]["expires"].GetString(), "2027-01-15T07:00:00.000Z");
  EXPECT_FALSE(doc.HasMember("keys_error"));
}

TEST(CallersJson, RunTimeKeysGoUnderTheirCallerWithTheirStateAndNoHash) {
  keys::KeyRecord live;
  live.id = "abcdefghijkl";
  live.caller = "data-team";
  live.sha256 = upstream::Sha256Hex("tg_abcdefghijkl_secret");
  live.created_at = kNow - hours(2);
  keys::KeyRecord revoked = live;
  revoked.id = "mnopqrstuvwx";
  revoked.revoked_at = kNow - hours(1);
  keys::KeyRecord orphan = live;
  orphan.id = "zzzzzzzzzzzz";
  orphan.caller = "gone-team";  // no longer in the config: not listed
  const std::vector<keys::KeyRecord> records = {live, revoked, orphan};
  const std::string json = CallersJson(TwoCallers(), &records, false, kNow);
  EXPECT_EQ(json.find(live.sha256), std::string::npos) << json;
  EXPECT_EQ(json.find("zzzzzzzzzzzz"), std::string::npos) << json;
  rapidjson::Document doc = Parse(json);
  const auto& keys = doc["items"][0]["keys"];
  ASSERT_EQ(keys.Size(), 4u);
  EXPECT_STREQ(keys[2]["id"].GetString(), "abcdefghijkl");
  EXPECT_STREQ(keys[2]["kind"].GetString(), "run-time");
  EXPECT_STREQ(keys[2]["state"].GetString(), "active");
  EXPECT_STREQ(keys[3]["state"].GetString(), "revoked");
}

TEST(CallersJson, SaysWhenTheRunTimeKeysCouldNotBeRead) {
  rapidjson::Document doc = Parse(CallersJson(TwoCallers(), nullptr, true, kNow));
  EXPECT_STREQ(doc["keys_error"].GetString(), "redis_unavailable");
  EXPECT_EQ(doc["items"].Size(), 2u);
}

TEST(LimitsJson, OneCallersBucketsAndQuotasWithTheirUpstream) {
  CallerLimits c;
  c.caller = "data-team";
  policies::BucketSpec own;
  own.name = "per-caller";
  own.key = "bucket:per-caller:data-team";
  own.rate = {1, 3600};
  own.burst = 5;
  policies::BucketSpec wide;
  wide.name = "devin-wide";
  wide.key = "bucket:devin-wide:_shared";
  wide.burst = 1000;
  policies::BucketSpec quota;
  quota.name = "monthly";
  quota.key = "quota:monthly:data-team";
  quota.burst = 100;
  quota.quota = config::Quota{};
  c.buckets = {own, wide, quota};
  c.upstreams = {"", "devin", ""};
  policies::BucketLevel l1;
  l1.remaining = 3.0004;
  l1.reset_seconds = 7200;
  policies::BucketLevel l2;
  l2.remaining = 999;
  policies::BucketLevel l3;
  l3.remaining = 98;
  l3.used = 2;
  l3.quota = true;
  l3.reset_seconds = 60;
  c.levels = {l1, l2, l3};
  rapidjson::Document doc = Parse(LimitsJson({c}, true, false, kNow));
  EXPECT_STREQ(doc["caller"].GetString(), "data-team");
  const auto& items = doc["items"];
  ASSERT_EQ(items.Size(), 3u);
  EXPECT_STREQ(items[0]["kind"].GetString(), "bucket");
  EXPECT_STREQ(items[0]["scope"].GetString(), "caller");
  EXPECT_EQ(items[0]["limit"].GetUint64(), 5u);
  EXPECT_DOUBLE_EQ(items[0]["remaining"].GetDouble(), 3);
  EXPECT_STREQ(items[0]["reset_at"].GetString(), "2027-01-15T10:00:00.000Z");
  EXPECT_FALSE(items[0].HasMember("upstream"));
  EXPECT_STREQ(items[1]["scope"].GetString(), "shared");
  EXPECT_STREQ(items[1]["upstream"].GetString(), "devin");
  EXPECT_STREQ(items[2]["kind"].GetString(), "quota");
  EXPECT_EQ(items[2]["used"].GetUint64(), 2u);
  EXPECT_STREQ(items[2]["reset_at"].GetString(), "2027-01-15T08:01:00.000Z");
  EXPECT_FALSE(doc["fallback"].GetBool());

  doc = Parse(LimitsJson({c, c}, false, true, kNow));
  EXPECT_EQ(doc["callers"].Size(), 2u);
  EXPECT_TRUE(doc["fallback"].GetBool());
}

TEST(Refusals, AreTheLinesWithStatus401_403Or429) {
  EXPECT_TRUE(IsRefusalLine(R"({"ts":"x","status":401,"upstream_status":null})"));
  EXPECT_TRUE(IsRefusalLine(R"({"status":403,"a":1})"));
  EXPECT_TRUE(IsRefusalLine(R"({"upstream_status":200,"status":429})"));
  EXPECT_FALSE(IsRefusalLine(R"({"upstream_status":429,"status":200})"));
  EXPECT_FALSE(IsRefusalLine(R"({"path":"/\"status\":403","status":200})"));
  EXPECT_FALSE(IsRefusalLine(R"({"status":4290})"));
  EXPECT_FALSE(IsRefusalLine(""));
}

TEST(Refusals, JsonKeepsTheLinesAndDropsWhatIsNotAnObject) {
  rapidjson::Document doc =
      Parse(RefusalsJson("stream", {R"({"status":429,"request_id":"b"})", "not json", "[1]",
                                    R"({"status":401,"request_id":"a"})"}));
  EXPECT_STREQ(doc["source"].GetString(), "stream");
  ASSERT_EQ(doc["items"].Size(), 2u);
  EXPECT_STREQ(doc["items"][0]["request_id"].GetString(), "b");
  EXPECT_STREQ(doc["items"][1]["request_id"].GetString(), "a");
}

TEST(Refusals, QueryTakesALimitFrom1To1000) {
  size_t n = 0;
  EXPECT_EQ(ParseRefusalsQuery("", &n), "");
  EXPECT_EQ(n, 50u);
  EXPECT_EQ(ParseRefusalsQuery("limit=1000", &n), "");
  EXPECT_EQ(n, 1000u);
  for (const char* bad :
       {"limit=0", "limit=1001", "limit=", "limit=2x", "limit=-1", "count=2", "limit=1&limit=2"}) {
    EXPECT_NE(ParseRefusalsQuery(bad, &n), "") << bad;
  }
}

TEST(AuditLogRecentRefusals, KeepsTheLastThousandRefusalsNewestFirst) {
  config::AuditConfig audit;
  audit.file = "";
  AuditLog log(audit, std::nullopt);
  const int statuses[] = {200, 401, 403, 429, 500, 404};
  for (int i = 0; i < 1200; ++i) {
    AuditRecord r;
    r.request_id = "r" + std::to_string(i);
    r.status = statuses[i % 6];
    ASSERT_TRUE(log.Submit(std::move(r)));
  }
  log.Flush();
  const std::vector<std::string> all = log.RecentRefusals(5000);
  ASSERT_EQ(all.size(), 600u);  // 1200 records, half of them refusals
  EXPECT_NE(all.front().find("\"request_id\":\"r1197\""), std::string::npos) << all.front();
  EXPECT_NE(all.back().find("\"request_id\":\"r1\""), std::string::npos) << all.back();
  for (const std::string& line : all) EXPECT_TRUE(IsRefusalLine(line)) << line;
  EXPECT_EQ(log.RecentRefusals(2).size(), 2u);

  for (int i = 0; i < 1200; ++i) {
    AuditRecord r;
    r.request_id = "s" + std::to_string(i);
    r.status = 429;
    ASSERT_TRUE(log.Submit(std::move(r)));
  }
  log.Flush();
  const std::vector<std::string> capped = log.RecentRefusals(5000);
  ASSERT_EQ(capped.size(), AuditLog::kRecentRefusals);
  EXPECT_NE(capped.front().find("\"request_id\":\"s1199\""), std::string::npos);
  EXPECT_NE(capped.back().find("\"request_id\":\"s200\""), std::string::npos);
}

TEST(ConfigSha256, FollowsTheEntriesFingerprints) {
  config::Config a;
  a.entry_digests = {{"listen", "1"}, {"callers/x", "2"}};
  config::Config b = a;
  EXPECT_EQ(ConfigSha256(a), ConfigSha256(b));
  EXPECT_EQ(ConfigSha256(a).size(), 64u);
  b.entry_digests["callers/x"] = "3";
  EXPECT_NE(ConfigSha256(a), ConfigSha256(b));
}

TEST(StatusJson, HasTheShapeTheConsoleReads) {
  StatusView s;
  s.config.sha256 = std::string(64, 'a');
  s.config.loaded_at = kNow;
  s.config.last_reload = ConfigHistory::Reload{kNow, false, {"/callers: bad"}};
  s.replica_id = "host/1";
  s.started_at = kNow;
  s.upstreams = {{"devin", true}};
  rapidjson::Document doc = Parse(StatusJson(s));
  EXPECT_TRUE(doc["version"].IsString());
  EXPECT_STREQ(doc["config"]["loaded_at"].GetString(), "2027-01-15T08:00:00.000Z");
  EXPECT_FALSE(doc["config"]["last_reload"]["applied"].GetBool());
  EXPECT_STREQ(doc["config"]["last_reload"]["errors"][0].GetString(), "/callers: bad");
  EXPECT_STREQ(doc["replica"]["id"].GetString(), "host/1");
  EXPECT_TRUE(doc["replica"]["upstreams"][0]["cooldown"].GetBool());
  EXPECT_TRUE(doc["replica"]["limiter"].HasMember("fallback"));
  EXPECT_TRUE(doc["replica"]["audit"].HasMember("queue_depth"));
}

}  // namespace
}  // namespace tollgate::gateway
