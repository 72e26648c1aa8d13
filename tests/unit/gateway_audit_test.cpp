#include <hiredis/hiredis.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gateway/audit_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace tollgate::gateway {
namespace {

using ::testing::ElementsAre;

std::chrono::system_clock::time_point Utc(int year, int month, int day, int h, int m, int s,
                                          int ms) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::milliseconds(ms);
}

rapidjson::Document Parse(const std::string& line) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size());
  EXPECT_FALSE(doc.HasParseError())
      << rapidjson::GetParseError_En(doc.GetParseError()) << " in " << line;
  return doc;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

AuditRecord FullRecord() {
  AuditRecord r;
  r.ts = Utc(2026, 11, 25, 12, 0, 0, 123);
  r.request_id = "req-1";
  r.caller = "data-team";
  r.client_ip = "127.0.0.1";
  r.method = "POST";
  r.upstream = "devin";
  r.path = "/v3beta1/organizations/org-123/sessions";
  r.query = "a=1&token=abc";
  r.rule = "/v3beta1/organizations/{org_id}/sessions";
  r.decision = "allowed";
  r.status = 201;
  r.upstream_status = 201;
  r.latency_ms = 12.5;
  r.upstream_ms = 10.25;
  r.bytes_in = 42;
  r.bytes_out = 1234;
  r.bucket = "sessions";
  r.remaining = 49;
  r.upstream_request_id = "cid-9";
  r.error = "";
  r.would_limit = {"devin-shadow"};
  r.fallback = true;
  return r;
}

TEST(SerializeAuditRecord, WritesEveryFieldInOrder) {
  const std::string line = SerializeAuditRecord(FullRecord());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const rapidjson::Document doc = Parse(line);
  std::vector<std::string> names;
  for (const auto& m : doc.GetObject()) names.emplace_back(m.name.GetString());
  EXPECT_THAT(names,
              ElementsAre("ts", "request_id", "caller", "client_ip", "method", "upstream", "path",
                          "query", "rule", "decision", "status", "upstream_status", "latency_ms",
                          "upstream_ms", "bytes_in", "bytes_out", "bucket", "remaining",
                          "upstream_request_id", "error", "would_limit", "limiter_fallback"));
  EXPECT_STREQ(doc["ts"].GetString(), "2026-11-25T12:00:00.123Z");
  EXPECT_STREQ(doc["request_id"].GetString(), "req-1");
  EXPECT_STREQ(doc["caller"].GetString(), "data-team");
  EXPECT_STREQ(doc["client_ip"].GetString(), "127.0.0.1");
  EXPECT_STREQ(doc["method"].GetString(), "POST");
  EXPECT_STREQ(doc["upstream"].GetString(), "devin");
  EXPECT_STREQ(doc["path"].GetString(), "/v3beta1/organizations/org-123/sessions");
  EXPECT_STREQ(doc["query"].GetString(), "a=1&token=***");
  EXPECT_STREQ(doc["rule"].GetString(), "/v3beta1/organizations/{org_id}/sessions");
  EXPECT_STREQ(doc["decision"].GetString(), "allowed");
  EXPECT_EQ(doc["status"].GetInt(), 201);
  EXPECT_EQ(doc["upstream_status"].GetInt(), 201);
  EXPECT_DOUBLE_EQ(doc["latency_ms"].GetDouble(), 12.5);
  EXPECT_DOUBLE_EQ(doc["upstream_ms"].GetDouble(), 10.25);
  EXPECT_EQ(doc["bytes_in"].GetUint64(), 42u);
  EXPECT_EQ(doc["bytes_out"].GetUint64(), 1234u);
  EXPECT_STREQ(doc["bucket"].GetString(), "sessions");
  EXPECT_DOUBLE_EQ(doc["remaining"].GetDouble(), 49);
  EXPECT_STREQ(doc["upstream_request_id"].GetString(), "cid-9");
  EXPECT_TRUE(doc["error"].IsNull());
  ASSERT_TRUE(doc["would_limit"].IsArray());
  ASSERT_EQ(doc["would_limit"].Size(), 1u);
  EXPECT_STREQ(doc["would_limit"][0].GetString(), "devin-shadow");
  EXPECT_TRUE(doc["limiter_fallback"].GetBool());
  EXPECT_EQ(line.find("abc"), std::string::npos);
}

TEST(SerializeAuditRecord, WritesNullsForUnsetFieldsAndOmitsOptionalOnes) {
  AuditRecord r;
  r.decision = "unauthenticated";
  r.status = 401;
  const rapidjson::Document doc = Parse(SerializeAuditRecord(r));
  for (const char* name : {"caller", "rule", "upstream_status", "upstream_ms", "bucket",
                           "remaining", "upstream_request_id", "error"}) {
    ASSERT_TRUE(doc.HasMember(name)) << name;
    EXPECT_TRUE(doc[name].IsNull()) << name;
  }
  EXPECT_FALSE(doc.HasMember("would_limit"));
  EXPECT_FALSE(doc.HasMember("limiter_fallback"));
  EXPECT_STREQ(doc["query"].GetString(), "");
  EXPECT_EQ(doc["status"].GetInt(), 401);
  EXPECT_EQ(doc["latency_ms"].GetDouble(), 0);
}

TEST(SerializeAuditRecord, ZeroUpstreamMsIsAValueNotNull) {
  AuditRecord r;
  r.upstream_ms = 0;
  r.remaining = 0;
  const rapidjson::Document doc = Parse(SerializeAuditRecord(r));
  EXPECT_TRUE(doc["upstream_ms"].IsNumber());
  EXPECT_TRUE(doc["remaining"].IsNumber());
}

TEST(SerializeAuditRecord, TimestampIsRfc3339WithMillisecondsInUtc) {
  AuditRecord r;
  r.ts = Utc(2026, 1, 2, 3, 4, 5, 0) + std::chrono::microseconds(999999);
  EXPECT_STREQ(Parse(SerializeAuditRecord(r))["ts"].GetString(), "2026-01-02T03:04:05.999Z");
  r.ts = Utc(1999, 12, 31, 23, 59, 59, 7);
  EXPECT_STREQ(Parse(SerializeAuditRecord(r))["ts"].GetString(), "1999-12-31T23:59:59.007Z");
}

TEST(SerializeAuditRecord, EscapesControlCharactersAndQuotes) {
  AuditRecord r;
  r.path = std::string("/a\"b\\c\nd\te\x01g\x1f", 13) + std::string(1, '\0') + "h";
  r.error = "bad \"thing\"\r\n";
  const std::string line = SerializeAuditRecord(r);
  for (char c : line) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
  const rapidjson::Document doc = Parse(line);
  EXPECT_EQ(std::string(doc["path"].GetString(), doc["path"].GetStringLength()), r.path);
  EXPECT_STREQ(doc["error"].GetString(), "bad \"thing\"\r\n");
}

TEST(SerializeAuditRecord, InvalidUtf8StillParsesAndValidUtf8IsKept) {
  AuditRecord r;
  r.path = "/caf\xC3\xA9/\xE2\x82\xAC/\xF0\x9F\x98\x80";  // é € 😀
  r.client_ip = "\xFF\xFEx\xC3(\xED\xA0\x80\xC0\xAF\xF4\x90\x80\x80\xE2\x82";
  r.error = "\x80";
  const rapidjson::Document doc = Parse(SerializeAuditRecord(r));
  EXPECT_STREQ(doc["path"].GetString(), r.path.c_str());
  const std::string ip = doc["client_ip"].GetString();
  EXPECT_NE(ip.find('x'), std::string::npos);
  EXPECT_NE(ip.find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_STREQ(doc["error"].GetString(), "\xEF\xBF\xBD");
}

TEST(MaskQuery, MasksSecretLookingNamesOnly) {
  const std::pair<const char*, const char*> cases[] = {
      {"", ""},
      {"a=1&b=2", "a=1&b=2"},
      {"token=abc", "token=***"},
      {"Access_Token=abc&x=1", "Access_Token=***&x=1"},
      {"API_KEY=k&apikey=k2&api%5Fkey=k3", "API_KEY=***&apikey=***&api%5Fkey=***"},
      {"client_secret=s&Password=p&passwd=q", "client_secret=***&Password=***&passwd=***"},
      {"x-logtrust-sign=abc&signature=d&sig=e", "x-logtrust-sign=***&signature=***&sig=***"},
      {"Authorization=Bearer%20x&credential=c", "Authorization=***&credential=***"},
      {"token=a&token=b&q=token", "token=***&token=***&q=token"},
      {"token&key&a", "token&key&a"},
      {"token=&a=", "token=&a="},
      {"&&token=x&", "&&token=***&"},
      {"a=b=c&key=v=w", "a=b=c&key=***"},
      {"from=2026-01-01&limit=10", "from=2026-01-01&limit=10"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(MaskQuery(in), want) << in;
}

config::AuditConfig FileConfig(const std::string& path, size_t capacity = 1024) {
  config::AuditConfig c;
  c.file = path;
  c.queue_capacity = capacity;
  return c;
}

AuditRecord Numbered(int thread, int i) {
  AuditRecord r;
  r.ts = std::chrono::system_clock::now();
  r.request_id = "t" + std::to_string(thread) + "-" + std::to_string(i);
  r.decision = "allowed";
  r.status = 200;
  r.query = "token=secret-value";
  return r;
}

// Submits threads x per_thread records concurrently.
void SubmitFromThreads(AuditLog* log, int threads, int per_thread) {
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([=] {
      for (int i = 0; i < per_thread; ++i) log->Submit(Numbered(t, i));
    });
  }
  for (auto& w : workers) w.join();
}

// Every line parses and every request id appears exactly once.
void ExpectEachExactlyOnce(const std::string& text, int threads, int per_thread) {
  const std::vector<std::string> lines = Lines(text);
  ASSERT_EQ(lines.size(), static_cast<size_t>(threads * per_thread));
  std::set<std::string> ids;
  for (const std::string& line : lines) {
    const rapidjson::Document doc = Parse(line);
    ASSERT_TRUE(doc.IsObject());
    EXPECT_TRUE(ids.insert(doc["request_id"].GetString()).second) << line;
  }
  EXPECT_EQ(ids.size(), lines.size());
  EXPECT_EQ(text.find("secret-value"), std::string::npos);
}

TEST(AuditLog, WritesEveryRecordFromSeveralThreadsExactlyOnce) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  AuditLog log(FileConfig(path), std::nullopt);
  SubmitFromThreads(&log, 4, 2500);
  log.Flush();
  EXPECT_EQ(log.written(), 10000u);
  EXPECT_EQ(log.queue_depth(), 0);
  ExpectEachExactlyOnce(testing::ReadFile(path), 4, 2500);
}

TEST(AuditLog, FullQueueBlocksInsteadOfDropping) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  {
    AuditLog log(FileConfig(path, 4), std::nullopt);
    SubmitFromThreads(&log, 4, 2500);
  }  // the destructor writes what is still queued
  ExpectEachExactlyOnce(testing::ReadFile(path), 4, 2500);
}

TEST(AuditLog, FlushWaitsForEverythingSubmittedBefore) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  AuditLog log(FileConfig(path), std::nullopt);
  for (int round = 1; round <= 3; ++round) {
    for (int i = 0; i < 100; ++i) log.Submit(Numbered(round, i));
    log.Flush();
    EXPECT_EQ(Lines(testing::ReadFile(path)).size(), static_cast<size_t>(100 * round));
  }
  log.Flush();  // nothing pending: returns at once
}

TEST(AuditLog, AppendsToAnExistingFile) {
  testing::TempDir dir;
  const std::string path = dir.Write("audit.log", "earlier\n");
  {
    AuditLog log(FileConfig(path), std::nullopt);
    log.Submit(Numbered(0, 0));
  }
  const std::vector<std::string> lines = Lines(testing::ReadFile(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "earlier");
}

TEST(AuditLog, ReopenWritesNewRecordsToANewFileAfterRotation) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  AuditLog log(FileConfig(path), std::nullopt);
  for (int i = 0; i < 10; ++i) log.Submit(Numbered(0, i));
  log.Flush();
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  log.Reopen();
  for (int i = 0; i < 5; ++i) log.Submit(Numbered(1, i));
  log.Flush();
  const std::vector<std::string> old_lines = Lines(testing::ReadFile(path + ".1"));
  const std::vector<std::string> new_lines = Lines(testing::ReadFile(path));
  ASSERT_EQ(old_lines.size(), 10u);
  ASSERT_EQ(new_lines.size(), 5u);
  EXPECT_STREQ(Parse(new_lines[0])["request_id"].GetString(), "t1-0");
}

TEST(AuditLog, WithoutSinksRecordsAreStillAccounted) {
  AuditLog log(FileConfig(""), std::nullopt);
  for (int i = 0; i < 50; ++i) log.Submit(Numbered(0, i));
  log.Flush();
  EXPECT_EQ(log.written(), 50u);
  EXPECT_EQ(log.file_errors(), 0u);
}

TEST(AuditLog, UnwritableFileIsCountedNotFatal) {
  testing::TempDir dir;
  AuditLog log(FileConfig(dir.path() + "/missing/dir/audit.log"), std::nullopt);
  log.Submit(Numbered(0, 0));
  log.Flush();
  EXPECT_EQ(log.written(), 1u);
  EXPECT_GT(log.file_errors(), 0u);
}

// A hiredis connection for the test's own checks.
class RedisProbe {
 public:
  explicit RedisProbe(int port) : ctx_(redisConnect("127.0.0.1", port)) {}
  ~RedisProbe() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  long long XLen(const std::string& key) {
    auto* reply = static_cast<redisReply*>(redisCommand(ctx_, "XLEN %s", key.c_str()));
    EXPECT_NE(reply, nullptr);
    const long long n =
        reply != nullptr && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (reply != nullptr) freeReplyObject(reply);
    return n;
  }
  // The `record` field of every entry, oldest first.
  std::vector<std::string> Records(const std::string& key) {
    std::vector<std::string> out;
    auto* reply = static_cast<redisReply*>(redisCommand(ctx_, "XRANGE %s - +", key.c_str()));
    EXPECT_NE(reply, nullptr);
    if (reply == nullptr) return out;
    for (size_t i = 0; i < reply->elements; ++i) {
      const redisReply* fields = reply->element[i]->element[1];
      EXPECT_EQ(fields->elements, 2u);
      EXPECT_EQ(std::string(fields->element[0]->str), "record");
      out.emplace_back(fields->element[1]->str, fields->element[1]->len);
    }
    freeReplyObject(reply);
    return out;
  }

 private:
  redisContext* ctx_;
};

config::RedisConfig RedisAt(int port) {
  config::RedisConfig redis;
  redis.host = "127.0.0.1";
  redis.port = port;
  redis.url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
  return redis;
}

TEST(AuditLogStream, RedisStreamGetsTheSameRecordsAsTheFile) {
  testing::RedisServer redis;
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  config::AuditConfig audit = FileConfig(path);
  audit.redis_stream = "tollgate:audit";
  AuditLog log(audit, RedisAt(redis.port()));
  SubmitFromThreads(&log, 2, 250);
  log.Flush();
  EXPECT_EQ(log.stream_written(), 500u);
  EXPECT_EQ(log.stream_errors(), 0u);
  RedisProbe probe(redis.port());
  EXPECT_EQ(probe.XLen("tollgate:audit"), 500);
  EXPECT_EQ(probe.Records("tollgate:audit"), Lines(testing::ReadFile(path)));
}

TEST(AuditLogStream, StreamIsTrimmedToAboutMaxlen) {
  testing::RedisServer redis;
  config::AuditConfig audit = FileConfig("");
  audit.redis_stream = "audit";
  audit.stream_maxlen = 100;
  AuditLog log(audit, RedisAt(redis.port()));
  for (int i = 0; i < 2000; ++i) log.Submit(Numbered(0, i));
  log.Flush();
  RedisProbe probe(redis.port());
  // "MAXLEN ~" trims whole radix-tree nodes (100 entries by default), so the length is inexact.
  EXPECT_LT(probe.XLen("audit"), 2000);
  EXPECT_GE(probe.XLen("audit"), 100);
}

TEST(AuditLogStream, RedisOutageNeverCostsTheFileARecord) {
  testing::RedisServer redis;
  testing::TempDir dir;
  const std::string path = dir.path() + "/audit.log";
  config::AuditConfig audit = FileConfig(path);
  audit.redis_stream = "tollgate:audit";
  AuditLog log(audit, RedisAt(redis.port()));
  redis.Stop();
  for (int i = 0; i < 10; ++i) log.Submit(Numbered(0, i));
  log.Flush();
  EXPECT_EQ(Lines(testing::ReadFile(path)).size(), 10u);
  EXPECT_GT(log.stream_errors(), 0u);

  // Once Redis is back, records written after the outage reach the stream; those from during it
  // either reach it too (retried) or are counted as dropped, never lost silently.
  redis.Start();
  for (int i = 0; i < 10; ++i) log.Submit(Numbered(1, i));
  log.Flush();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (log.stream_written() + log.stream_dropped() < 20 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(log.stream_written() + log.stream_dropped(), 20u);
  EXPECT_GE(log.stream_written(), 10u);
  RedisProbe probe(redis.port());
  EXPECT_EQ(probe.XLen("tollgate:audit"), static_cast<long long>(log.stream_written()));
  EXPECT_EQ(Lines(testing::ReadFile(path)).size(), 20u);
}

}  // namespace
}  // namespace tollgate::gateway
