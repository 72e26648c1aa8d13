#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <random>
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
  r.gateway_request_id = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
  r.caller = "data-team";
  r.key_id = "k7q2m9x4p1z8";
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
  r.ttfb_ms = 3.5;
  r.duration_ms = 14.75;
  r.ended_by = "client_closed";
  r.bytes_in = 42;
  r.bytes_out = 1234;
  r.bucket = "sessions";
  r.remaining = 49;
  r.upstream_request_id = "cid-9";
  r.error = "";
  r.would_limit = {"devin-shadow"};
  r.body_rules = {"/max_acu_limit", "/a~1b"};
  r.waited_ms = 300.25;
  r.fallback = true;
  return r;
}

TEST(SerializeAuditRecord, WritesEveryFieldInOrder) {
  const std::string line = SerializeAuditRecord(FullRecord());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const rapidjson::Document doc = Parse(line);
  std::vector<std::string> names;
  for (const auto& m : doc.GetObject()) names.emplace_back(m.name.GetString());
  EXPECT_THAT(names, ElementsAre("ts", "request_id", "gateway_request_id", "caller", "key_id",
                                 "client_ip", "method", "upstream", "path", "query", "rule",
                                 "decision", "status", "upstream_status", "latency_ms",
                                 "upstream_ms", "ttfb_ms", "duration_ms", "ended_by", "bytes_in",
                                 "bytes_out", "bucket", "remaining", "upstream_request_id", "error",
                                 "would_limit", "body_rules", "waited_ms", "limiter_fallback"));
  EXPECT_STREQ(doc["ts"].GetString(), "2026-11-25T12:00:00.123Z");
  EXPECT_STREQ(doc["request_id"].GetString(), "req-1");
  EXPECT_STREQ(doc["gateway_request_id"].GetString(), "9f8e7d6c5b4a39281706f5e4d3c2b1a0");
  EXPECT_STREQ(doc["caller"].GetString(), "data-team");
  EXPECT_STREQ(doc["key_id"].GetString(), "k7q2m9x4p1z8");
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
  EXPECT_DOUBLE_EQ(doc["ttfb_ms"].GetDouble(), 3.5);
  EXPECT_DOUBLE_EQ(doc["duration_ms"].GetDouble(), 14.75);
  EXPECT_STREQ(doc["ended_by"].GetString(), "client_closed");
  EXPECT_EQ(doc["bytes_in"].GetUint64(), 42u);
  EXPECT_EQ(doc["bytes_out"].GetUint64(), 1234u);
  EXPECT_STREQ(doc["bucket"].GetString(), "sessions");
  EXPECT_DOUBLE_EQ(doc["remaining"].GetDouble(), 49);
  EXPECT_STREQ(doc["upstream_request_id"].GetString(), "cid-9");
  EXPECT_TRUE(doc["error"].IsNull());
  ASSERT_TRUE(doc["would_limit"].IsArray());
  ASSERT_EQ(doc["would_limit"].Size(), 1u);
  EXPECT_STREQ(doc["would_limit"][0].GetString(), "devin-shadow");
  ASSERT_TRUE(doc["body_rules"].IsArray());
  ASSERT_EQ(doc["body_rules"].Size(), 2u);
  EXPECT_STREQ(doc["body_rules"][0].GetString(), "/max_acu_limit");
  EXPECT_STREQ(doc["body_rules"][1].GetString(), "/a~1b");
  EXPECT_DOUBLE_EQ(doc["waited_ms"].GetDouble(), 300.25);
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
  EXPECT_FALSE(doc.HasMember("body_rules"));
  EXPECT_FALSE(doc.HasMember("waited_ms"));
  EXPECT_FALSE(doc.HasMember("limiter_fallback"));
  for (const char* name : {"admin", "action", "applied", "changes", "restart_required"}) {
    EXPECT_FALSE(doc.HasMember(name)) << name;  // admin records only
  }
  EXPECT_STREQ(doc["query"].GetString(), "");
  EXPECT_EQ(doc["status"].GetInt(), 401);
  EXPECT_EQ(doc["latency_ms"].GetDouble(), 0);
}

AuditRecord AdminRecord() {
  AuditRecord r = FullRecord();
  r.decision = "admin";
  auto a = std::make_shared<AdminAction>();
  a->admin = "ops";
  a->action = "reload";
  a->applied = true;
  a->changes = {"callers/data-team", "roles/ops"};
  a->restart_required = {"listen"};
  r.admin = std::move(a);
  return r;
}

TEST(SerializeAuditRecord, AdminRecordsCarryTheAdminTheActionAndWhatChanged) {
  const rapidjson::Document doc = Parse(SerializeAuditRecord(AdminRecord()));
  EXPECT_STREQ(doc["admin"].GetString(), "ops");
  EXPECT_STREQ(doc["action"].GetString(), "reload");
  EXPECT_TRUE(doc["applied"].GetBool());
  ASSERT_EQ(doc["changes"].Size(), 2u);
  EXPECT_STREQ(doc["changes"][1].GetString(), "roles/ops");
  ASSERT_EQ(doc["restart_required"].Size(), 1u);
  EXPECT_STREQ(doc["restart_required"][0].GetString(), "listen");

  // A refused call: no admin known, nothing applied, nothing changed (an empty list, said).
  AuditRecord refused;
  refused.decision = "unauthenticated";
  auto a = std::make_shared<AdminAction>();
  a->action = "reload";
  refused.admin = a;
  const rapidjson::Document r = Parse(SerializeAuditRecord(refused));
  EXPECT_TRUE(r["admin"].IsNull());
  EXPECT_STREQ(r["action"].GetString(), "reload");
  EXPECT_FALSE(r.HasMember("applied"));
  ASSERT_TRUE(r["changes"].IsArray());
  EXPECT_EQ(r["changes"].Size(), 0u);
  EXPECT_FALSE(r.HasMember("restart_required"));
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

// The serialiser as it was written with RapidJSON's Writer (validate, then escape, then write),
// kept as the oracle for the hand-written one: the audit line's bytes must not change.
namespace reference {

class Append {
 public:
  using Ch = char;
  explicit Append(std::string* out) : out_(out) {}
  void Put(char c) { out_->push_back(c); }
  void Flush() {}

 private:
  std::string* out_;
};

size_t Utf8Length(std::string_view in, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(in[k]); };
  const auto cont = [&](size_t k) { return k < in.size() && (byte(k) & 0xC0) == 0x80; };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    if (b == 0xE0 && byte(i + 1) < 0xA0) return 0;
    if (b == 0xED && byte(i + 1) >= 0xA0) return 0;
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (b == 0xF0 && byte(i + 1) < 0x90) return 0;
    if (b == 0xF4 && byte(i + 1) >= 0x90) return 0;
    return 4;
  }
  return 0;
}

std::string ValidUtf8(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size();) {
    const size_t n = Utf8Length(in, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(in.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string Timestamp(std::chrono::system_clock::time_point ts) {
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(ts);
  const auto seconds = std::chrono::floor<std::chrono::seconds>(ms);
  const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[96];
  std::snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>((ms - seconds).count()));
  return out;
}

using Writer = rapidjson::Writer<Append>;

void String(Writer& w, std::string_view value) {
  const std::string safe = ValidUtf8(value);
  w.String(safe.data(), static_cast<rapidjson::SizeType>(safe.size()));
}

void StringOrNull(Writer& w, std::string_view value) {
  if (value.empty()) {
    w.Null();
  } else {
    String(w, value);
  }
}

void Number(Writer& w, double value) {
  if (std::isfinite(value)) {
    w.Double(value);
  } else {
    w.Null();
  }
}

std::string Serialize(const AuditRecord& r) {
  std::string out;
  Append stream(&out);
  Writer w(stream);
  w.SetMaxDecimalPlaces(3);
  w.StartObject();
  w.Key("ts");
  String(w, Timestamp(r.ts));
  w.Key("request_id");
  String(w, r.request_id);
  w.Key("gateway_request_id");
  String(w, r.gateway_request_id.empty() ? r.request_id : r.gateway_request_id);
  w.Key("caller");
  if (r.caller) {
    String(w, *r.caller);
  } else {
    w.Null();
  }
  w.Key("key_id");
  StringOrNull(w, r.key_id);
  w.Key("client_ip");
  String(w, r.client_ip);
  w.Key("method");
  String(w, r.method);
  w.Key("upstream");
  String(w, r.upstream);
  w.Key("path");
  String(w, r.path);
  w.Key("query");
  String(w, MaskQuery(r.query));
  w.Key("rule");
  StringOrNull(w, r.rule);
  w.Key("decision");
  String(w, r.decision);
  w.Key("status");
  w.Int(r.status);
  w.Key("upstream_status");
  if (r.upstream_status != 0) {
    w.Int(r.upstream_status);
  } else {
    w.Null();
  }
  w.Key("latency_ms");
  Number(w, r.latency_ms);
  w.Key("upstream_ms");
  if (r.upstream_ms >= 0) {
    Number(w, r.upstream_ms);
  } else {
    w.Null();
  }
  w.Key("ttfb_ms");
  if (r.ttfb_ms >= 0) {
    Number(w, r.ttfb_ms);
  } else {
    w.Null();
  }
  w.Key("duration_ms");
  Number(w, r.duration_ms);
  w.Key("ended_by");
  String(w, r.ended_by);
  w.Key("bytes_in");
  w.Uint64(r.bytes_in);
  w.Key("bytes_out");
  w.Uint64(r.bytes_out);
  w.Key("bucket");
  StringOrNull(w, r.bucket);
  w.Key("remaining");
  if (r.remaining) {
    Number(w, *r.remaining);
  } else {
    w.Null();
  }
  w.Key("upstream_request_id");
  StringOrNull(w, r.upstream_request_id);
  w.Key("error");
  StringOrNull(w, r.error);
  if (!r.would_limit.empty()) {
    w.Key("would_limit");
    w.StartArray();
    for (const std::string& bucket : r.would_limit) String(w, bucket);
    w.EndArray();
  }
  if (!r.body_rules.empty()) {
    w.Key("body_rules");
    w.StartArray();
    for (const std::string& field : r.body_rules) String(w, field);
    w.EndArray();
  }
  if (r.waited_ms) {
    w.Key("waited_ms");
    Number(w, *r.waited_ms);
  }
  if (r.fallback) {
    w.Key("limiter_fallback");
    w.Bool(true);
  }
  if (r.admin) {
    const AdminAction& a = *r.admin;
    w.Key("admin");
    StringOrNull(w, a.admin);
    w.Key("action");
    String(w, a.action);
    if (a.applied) {
      w.Key("applied");
      w.Bool(*a.applied);
    }
    w.Key("changes");
    w.StartArray();
    for (const std::string& change : a.changes) String(w, change);
    w.EndArray();
    if (!a.restart_required.empty()) {
      w.Key("restart_required");
      w.StartArray();
      for (const std::string& setting : a.restart_required) String(w, setting);
      w.EndArray();
    }
    if (!a.new_key_id.empty()) {
      w.Key("new_key_id");
      String(w, a.new_key_id);
    }
  }
  w.EndObject();
  return out;
}

}  // namespace reference

// Random records whose strings mix plain ASCII, characters JSON escapes, valid UTF-8 of every
// length, and broken UTF-8 (stray continuation bytes, truncated and overlong sequences,
// surrogates, code points past U+10FFFF), and whose numbers span what dtoa has to get right.
class RecordGenerator {
 public:
  explicit RecordGenerator(uint64_t seed) : rng_(seed) {}

  AuditRecord Next() {
    AuditRecord r;
    r.ts = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(Int(-100000000000LL, 4102444800000LL)) +
        std::chrono::microseconds(Int(0, 999)));
    r.request_id = Text();
    if (Int(0, 3) != 0) r.caller = Text();
    r.key_id = Maybe();
    r.client_ip = Text();
    r.method = Text();
    r.upstream = Text();
    r.path = Text();
    r.query = Query();
    r.rule = Maybe();
    r.decision = Text();
    r.status = static_cast<int>(Int(-1000, 1000000));
    r.upstream_status = Int(0, 2) == 0 ? 0 : static_cast<int>(Int(INT32_MIN, INT32_MAX));
    r.latency_ms = Double();
    r.upstream_ms = Double();
    r.ttfb_ms = Double();
    r.duration_ms = Double();
    r.ended_by = Text();
    r.bytes_in = Int(0, 3) == 0 ? rng_() : static_cast<uint64_t>(Int(0, 100000));
    r.bytes_out = Int(0, 3) == 0 ? rng_() : static_cast<uint64_t>(Int(0, 100000));
    r.bucket = Maybe();
    if (Int(0, 2) != 0) r.remaining = Double();
    r.upstream_request_id = Maybe();
    r.error = Maybe();
    for (int64_t n = Int(-2, 3); n > 0; --n) r.would_limit.push_back(Text());
    for (int64_t n = Int(-2, 3); n > 0; --n) r.body_rules.push_back(Text());
    if (Int(0, 2) == 0) r.waited_ms = Double();
    r.fallback = Int(0, 1) == 1;
    if (Int(0, 2) == 0) {
      auto a = std::make_shared<AdminAction>();
      a->admin = Maybe();
      a->action = Text();
      if (Int(0, 2) != 0) a->applied = Int(0, 1) == 1;
      for (int64_t n = Int(-1, 3); n > 0; --n) a->changes.push_back(Text());
      for (int64_t n = Int(-2, 2); n > 0; --n) a->restart_required.push_back(Text());
      a->new_key_id = Maybe();
      r.admin = std::move(a);
    }
    return r;
  }

 private:
  int64_t Int(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  std::string Maybe() { return Int(0, 2) == 0 ? std::string() : Text(); }

  std::string Text() {
    static const char* const kPieces[] = {"\"",           "\\",           "\n",
                                          "\r",           "\t",           "\b",
                                          "\f",           "\x01",         "\x1f",
                                          "" /* NUL */,   "\x7f",         "/",
                                          "\xC3\xA9",     "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                          "\xC3",         "\xE2\x82",     "\xF0\x9F\x98",
                                          "\x80",         "\xBF",         "\xC0\xAF",
                                          "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                          "\xF5",         "\xFF",         "\xFE"};
    std::string out;
    for (int64_t n = Int(0, 12); n > 0; --n) {
      switch (Int(0, 3)) {
        case 0:
        case 1:  // a run of plain printable ASCII
          for (int64_t k = Int(1, 24); k > 0; --k)
            out.push_back(static_cast<char>(Int(0x20, 0x7E)));
          break;
        case 2: {
          const size_t i = static_cast<size_t>(Int(0, std::size(kPieces) - 1));
          if (i == 9) {
            out.push_back('\0');
          } else {
            out.append(kPieces[i]);
          }
          break;
        }
        default:  // any byte at all
          out.push_back(static_cast<char>(Int(0, 255)));
      }
    }
    return out;
  }

  std::string Query() {
    static const char* const kNames[] = {"a", "limit", "token", "api_key",     "to%6Ben", "Secret",
                                         "x", "from",  "sig",   "caf\xC3\xA9", "\xC3"};
    std::string out;
    for (int64_t n = Int(0, 5); n > 0; --n) {
      if (!out.empty() || Int(0, 5) == 0) out.push_back('&');
      out.append(Int(0, 3) == 0 ? Text() : kNames[Int(0, std::size(kNames) - 1)]);
      if (Int(0, 4) != 0) out.append("=").append(Text());
    }
    return out;
  }

  double Double() {
    switch (Int(0, 9)) {
      case 0:
        return 0.0;
      case 1:
        return -0.0;
      case 2:
        return std::numeric_limits<double>::quiet_NaN();
      case 3:
        return Int(0, 1) ? std::numeric_limits<double>::infinity()
                         : -std::numeric_limits<double>::infinity();
      case 4:  // whole numbers
        return static_cast<double>(Int(-1000000, 1000000));
      case 5:  // milliseconds to the microsecond, as latencies are
        return static_cast<double>(Int(0, 100000000)) / 1000.0;
      case 6:  // tiny and huge
        return std::ldexp(std::uniform_real_distribution<double>(0.5, 1)(rng_),
                          static_cast<int>(Int(-1074, 1023)));
      default:
        return std::uniform_real_distribution<double>(-1e4, 1e6)(rng_);
    }
  }

  std::mt19937_64 rng_;
};

TEST(SerializeAuditRecord, WritesTheSameBytesAsRapidJsonsWriterDid) {
  EXPECT_EQ(SerializeAuditRecord(FullRecord()), reference::Serialize(FullRecord()));
  EXPECT_EQ(SerializeAuditRecord(AuditRecord()), reference::Serialize(AuditRecord()));
  EXPECT_EQ(SerializeAuditRecord(AdminRecord()), reference::Serialize(AdminRecord()));
  RecordGenerator generator(20260109);
  for (int i = 0; i < 20000; ++i) {
    const AuditRecord r = generator.Next();
    const std::string want = reference::Serialize(r);
    ASSERT_EQ(SerializeAuditRecord(r), want) << "record " << i;
    Parse(want);
  }
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

TEST(MaskQuery, DecodesEscapesInNamesSoAnEncodingCannotCarryASecretPast) {
  const std::pair<const char*, const char*> cases[] = {
      {"to%6Ben=a", "to%6Ben=***"},
      {"pass%77ord=b&x=1", "pass%77ord=***&x=1"},
      {"%53ECRET=c", "%53ECRET=***"},
      {"si%67nature=d", "si%67nature=***"},
      {"standAloneToken=e&x-logtrust-apikey=f", "standAloneToken=***&x-logtrust-apikey=***"},
      // A broken escape is matched as written (and does not read past the name).
      {"tok%=g&k%6=h", "tok%=g&k%6=h"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(MaskQuery(in), want) << in;
}

// Each secret-looking word masks on its own, in any case: a name that holds only that word
// (and no other word of the list) is masked.
TEST(MaskQuery, EverySecretWordMasksByItself) {
  for (const char* name : {"token", "KEY", "Secret", "pass", "PWD", "auth", "Bearer", "sig",
                           "credential", "jwt", "cookie", "hmac"}) {
    EXPECT_EQ(MaskQuery(std::string("x=1&") + name + "=v"), std::string("x=1&") + name + "=***")
        << name;
  }
}

// Issue 10 point 9: names a caller uses for a secret in a query, each masked.
TEST(MaskQuery, Point9_EveryNameHoldingASecretLikeWordIsMasked) {
  for (const char* name :
       {"bearer", "apikey", "api_key", "API-KEY", "access_token", "signature", "sign", "auth",
        "X-Amz-Signature", "x-logtrust-sign", "passphrase", "user_pwd", "id_jwt", "session_cookie",
        "hmac", "Authorization", "client_credentials", "refresh%5Ftoken", "Be%61rer"}) {
    EXPECT_EQ(MaskQuery(std::string("a=1&") + name + "=s3cr3t&b=2"),
              std::string("a=1&") + name + "=***&b=2")
        << name;
  }
  // Names that carry no secret stay readable: the audit is for reading.
  for (const char* name : {"session_id", "org_id", "limit", "from", "q", "page", "cursor"}) {
    EXPECT_EQ(MaskQuery(std::string(name) + "=v"), std::string(name) + "=v") << name;
  }
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

// Aborts the test binary (with a message) unless disarmed within `limit`: a test whose failure
// mode is "the writer hangs" fails instead of blocking the suite forever.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::string what)
      : thread_([this, limit, what = std::move(what)] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return disarmed_; })) {
            std::fprintf(stderr, "watchdog: %s did not finish within %lld s\n", what.c_str(),
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      disarmed_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

// Submits one record, again and again while the queue has no free place (Submit never waits:
// it refuses, and the writer gives places back as it writes).
void SubmitUntilTaken(AuditLog* log, int thread, int i) {
  while (!log->Submit(Numbered(thread, i))) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// Submits threads x per_thread records concurrently.
void SubmitFromThreads(AuditLog* log, int threads, int per_thread) {
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([=] {
      for (int i = 0; i < per_thread; ++i) SubmitUntilTaken(log, t, i);
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

// Many submitters on a tiny queue, each submitting a refused record again until it is taken:
// the writer gives every place back once its record is written (else they would wait forever),
// and every record taken is written exactly once.
TEST(AuditLog, TinyQueueUnderLoadWritesEveryRecordTakenExactlyOnce) {
  Watchdog watchdog(std::chrono::seconds(120), "TinyQueueUnderLoad");
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

// ---------------------------------------------------------------------------------------------
// Helpers for the tests that hold the writer or must not hang.

// An AuditLog whose file is a FIFO nobody reads yet: the writer blocks in open() before its
// first batch, so records pile up in the queue. Release() starts reading, which lets the writer
// go; Finish() destroys the log (everything submitted is written) and returns what was read.
class HeldAuditLog {
 public:
  HeldAuditLog(const testing::TempDir& dir, config::AuditConfig audit,
               const std::optional<config::RedisConfig>& redis = std::nullopt)
      : path_(dir.path() + "/audit.fifo") {
    EXPECT_EQ(mkfifo(path_.c_str(), 0600), 0) << std::strerror(errno);
    audit.file = path_;
    log_ = std::make_unique<AuditLog>(audit, redis);
  }
  ~HeldAuditLog() { Finish(); }

  AuditLog& log() { return *log_; }
  void Release() {
    if (released_) return;
    released_ = true;
    reader_ = std::thread([this] {
      const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return;
      char buf[65536];
      for (;;) {
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the writer closed the FIFO
        std::lock_guard<std::mutex> lock(mu_);
        data_.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    });
  }
  // Everything read so far (complete or not).
  std::string Read() const {
    std::lock_guard<std::mutex> lock(mu_);
    return data_;
  }
  std::string Finish() {
    Release();
    log_.reset();
    if (reader_.joinable()) reader_.join();
    return Read();
  }

 private:
  std::string path_;
  std::unique_ptr<AuditLog> log_;
  bool released_ = false;
  std::thread reader_;
  mutable std::mutex mu_;
  std::string data_;
};

bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// A stalled sink: the writer is stuck opening a FIFO nobody reads, so nothing leaves the queue.
// Places are reserved up to the capacity and the next reservation is refused; a place dropped
// unused is given back; records go into their reserved places, and a record without one is
// refused. None of these calls waits for the writer: they run on another thread, which has to
// finish while the writer is still stuck. Once the sink moves, every admitted record is written
// exactly once and in order, no refused one is, and the places are free again.
TEST(AuditLog, FullQueueRefusesReservationsAndNoCallWaitsForAStalledWriter) {
  Watchdog watchdog(std::chrono::seconds(30), "FullQueueRefusesReservations");
  testing::TempDir dir;
  HeldAuditLog held(dir, FileConfig("", 4));
  AuditLog& log = held.log();
  std::atomic<bool> returned{false};
  std::thread caller([&] {
    std::vector<AuditLog::Slot> slots;
    for (int i = 0; i < 4; ++i) {
      slots.push_back(log.Reserve());
      EXPECT_TRUE(slots.back()) << "reservation " << i << " of a queue of 4 refused";
    }
    EXPECT_FALSE(log.Reserve()) << "a fifth place reserved in a queue of 4";
    EXPECT_FALSE(log.Submit(Numbered(9, 0))) << "a record without a place was queued";
    slots.pop_back();  // a request that ends without a record gives its place back
    slots.push_back(log.Reserve());
    EXPECT_TRUE(slots.back()) << "the place given back is not free again";
    EXPECT_FALSE(log.Reserve());
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(log.Submit(std::move(slots[i]), Numbered(0, i)));
    // Queued records keep their places until they are written.
    EXPECT_FALSE(log.Reserve()) << "a place reserved while 4 records wait in a queue of 4";
    EXPECT_FALSE(log.Submit(Numbered(9, 1)));
    returned = true;
  });
  // Only an upper bound on "does not hang": nothing but Release() lets the writer go.
  EXPECT_TRUE(WaitUntil([&] { return returned.load(); }, std::chrono::seconds(10)))
      << "a call waited for the stalled writer";
  EXPECT_EQ(log.queue_depth(), 4);
  EXPECT_EQ(log.slots_used(), 4u);
  EXPECT_EQ(log.written(), 0u);

  held.Release();  // the sink moves (and lets a caller that waited, a failure already, go)
  caller.join();
  log.Flush();
  EXPECT_EQ(log.written(), 4u);
  EXPECT_EQ(log.slots_used(), 0u);
  AuditLog::Slot after = log.Reserve();
  EXPECT_TRUE(after) << "the places of written records were not given back";
  EXPECT_TRUE(log.Submit(std::move(after), Numbered(0, 4)));
  std::vector<std::string> ids;
  for (const std::string& line : Lines(held.Finish())) {
    ids.push_back(Parse(line)["request_id"].GetString());
  }
  EXPECT_THAT(ids, ElementsAre("t0-0", "t0-1", "t0-2", "t0-3", "t0-4"));
}

// A full disk: write() fails with ENOSPC. The records are counted as dropped (not as written),
// the failure is reported once on stderr, each batch costs one write attempt (no retry loop, the
// writer moves on), and the gateway's requests are not held up.
TEST(AuditLog, FullDiskRecordsAreCountedAsDroppedReportedOnceAndNotRetried) {
  Watchdog watchdog(std::chrono::seconds(30), "FullDisk");
  ::testing::internal::CaptureStderr();
  {
    AuditLog log(FileConfig("/dev/full"), std::nullopt);
    for (int i = 0; i < 5; ++i) {
      log.Submit(Numbered(0, i));
      log.Flush();  // one record per batch: one write attempt each
    }
    EXPECT_EQ(log.written(), 0u);
    EXPECT_EQ(log.file_dropped(), 5u);
    EXPECT_EQ(log.file_errors(), 5u);
    EXPECT_EQ(log.queue_depth(), 0);
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Count(err, "tollgate: audit: write to /dev/full failed: No space left on device"), 1u)
      << err;
}

// A directory that vanished under the log (the file cannot be reopened after a rotation): the
// records of that time are counted as dropped and reported; once the directory is back, the
// next batch opens the file again by itself and records are written again.
TEST(AuditLog, VanishedDirectoryDropsAndCountsRecordsUntilItIsBack) {
  Watchdog watchdog(std::chrono::seconds(60), "VanishedDirectory");
  testing::TempDir dir;
  const std::string sub = dir.path() + "/logs";
  const std::string path = sub + "/audit.log";
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  ::testing::internal::CaptureStderr();
  AuditLog log(FileConfig(path), std::nullopt);
  for (int i = 0; i < 2; ++i) log.Submit(Numbered(0, i));
  log.Flush();
  EXPECT_EQ(log.written(), 2u);
  ASSERT_EQ(std::rename(path.c_str(), (dir.path() + "/rotated.log").c_str()), 0);
  ASSERT_EQ(rmdir(sub.c_str()), 0);

  log.Reopen();
  for (int i = 0; i < 3; ++i) log.Submit(Numbered(1, i));
  log.Flush();
  EXPECT_EQ(log.written(), 2u);
  EXPECT_EQ(log.file_dropped(), 3u);
  EXPECT_GT(log.file_errors(), 0u);

  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  for (int i = 0; i < 4; ++i) log.Submit(Numbered(2, i));
  log.Flush();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Count(err, "tollgate: audit: cannot open " + path + ": No such file or directory"), 1u)
      << err;
  EXPECT_EQ(Count(err, "tollgate: audit: writing to " + path + " again"), 1u) << err;
  EXPECT_EQ(log.written(), 6u);
  EXPECT_EQ(log.file_dropped(), 3u);
  const std::vector<std::string> lines = Lines(testing::ReadFile(path));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_STREQ(Parse(lines[0])["request_id"].GetString(), "t2-0");
  EXPECT_EQ(Lines(testing::ReadFile(dir.path() + "/rotated.log")).size(), 2u);
}

TEST(AuditLog, UnopenableFileIsCountedNotFatal) {
  testing::TempDir dir;
  ::testing::internal::CaptureStderr();
  {
    AuditLog log(FileConfig(dir.path() + "/missing/dir/audit.log"), std::nullopt);
    log.Submit(Numbered(0, 0));
    log.Flush();
    EXPECT_EQ(log.written(), 0u);
    EXPECT_EQ(log.file_dropped(), 1u);
    EXPECT_GT(log.file_errors(), 0u);
  }
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("cannot open"), std::string::npos);
}

// A write that stops part-way (the disk filled up inside a record: here RLIMIT_FSIZE, in a child
// process) leaves a fragment; the record it cut is counted as dropped, and once writing works
// again the next record starts on a line of its own instead of being glued to the fragment.
TEST(AuditLogDeathTest, TornRecordIsCountedAndTheNextRecordStartsOnItsOwnLine) {
  testing::TempDir dir;
  const std::string path = dir.Write("audit.log", "{\"earlier\":1}\n");
  const size_t record_size = SerializeAuditRecord(Numbered(0, 0)).size() + 1;
  EXPECT_EXIT(
      {
        signal(SIGXFSZ, SIG_IGN);  // a write past the limit then fails with EFBIG
        rlimit limit{};
        getrlimit(RLIMIT_FSIZE, &limit);
        const rlim_t hard_limit = limit.rlim_cur;
        limit.rlim_cur = 14 + record_size + record_size / 2;  // room for 1.5 records
        setrlimit(RLIMIT_FSIZE, &limit);
        AuditLog log(FileConfig(path), std::nullopt);
        for (int i = 0; i < 2; ++i) {
          log.Submit(Numbered(0, i));
          log.Flush();
        }
        const uint64_t written_while_full = log.written();
        limit.rlim_cur = hard_limit;  // space again
        setrlimit(RLIMIT_FSIZE, &limit);
        for (int i = 0; i < 2; ++i) log.Submit(Numbered(1, i));
        log.Flush();
        std::fprintf(stderr, "written %llu then %llu, dropped %llu\n",
                     static_cast<unsigned long long>(written_while_full),
                     static_cast<unsigned long long>(log.written()),
                     static_cast<unsigned long long>(log.file_dropped()));
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "written 1 then 3, dropped 1");
  const std::vector<std::string> lines = Lines(testing::ReadFile(path));
  ASSERT_EQ(lines.size(), 5u) << testing::ReadFile(path);
  EXPECT_EQ(lines[0], "{\"earlier\":1}");
  EXPECT_STREQ(Parse(lines[1])["request_id"].GetString(), "t0-0");
  EXPECT_EQ(lines[2].rfind("{\"ts\":\"", 0), 0u) << lines[2];  // the fragment of t0-1
  EXPECT_LT(lines[2].size(), record_size - 1);
  EXPECT_STREQ(Parse(lines[3])["request_id"].GetString(), "t1-0");
  EXPECT_STREQ(Parse(lines[4])["request_id"].GetString(), "t1-1");
}

// A hiredis connection for the test's own checks.
class RedisProbe {
 public:
  explicit RedisProbe(int port) : ctx_(redisConnect("127.0.0.1", port)) {}
  ~RedisProbe() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  // Runs one command; returns its reply as text (status, string, integer, or "ERR: ..."), and
  // an array's elements joined by newlines.
  std::string Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    EXPECT_NE(reply, nullptr) << args[0];
    if (reply == nullptr) return "";
    std::string out;
    switch (reply->type) {
      case REDIS_REPLY_INTEGER:
        out = std::to_string(reply->integer);
        break;
      case REDIS_REPLY_ERROR:
        out = "ERR: " + std::string(reply->str, reply->len);
        break;
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        out.assign(reply->str, reply->len);
        break;
      case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < reply->elements; ++i) {
          if (reply->element[i]->type == REDIS_REPLY_STRING) {
            out.append(reply->element[i]->str, reply->element[i]->len).push_back('\n');
          }
        }
        break;
      default:
        break;
    }
    freeReplyObject(reply);
    return out;
  }
  // `calls` of one command from INFO commandstats (0 when never called).
  long long Calls(const std::string& command) {
    const std::string info = Command({"INFO", "commandstats"});
    const std::string tag = "cmdstat_" + command + ":calls=";
    const size_t at = info.find(tag);
    return at == std::string::npos ? 0 : std::stoll(info.substr(at + tag.size()));
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

// A Redis that requires a password, with an ACL user for the gateway, and the gateway's records
// in database 5: they arrive there (and only there) when the stream sends AUTH user password and
// SELECT 5 on connecting.
TEST(AuditLogStream, SendsAuthWithUserAndSelectsTheDatabase) {
  testing::RedisServer redis;
  {
    RedisProbe admin(redis.port());
    ASSERT_EQ(admin.Command({"ACL", "SETUSER", "auditor", "on", ">auditor-pw", "~*", "+@all"}),
              "OK");
    ASSERT_EQ(admin.Command({"CONFIG", "SET", "requirepass", "admin-pw"}), "OK");
  }
  config::RedisConfig cfg = RedisAt(redis.port());
  cfg.url = "redis://127.0.0.1:" + std::to_string(redis.port()) + "/5";
  cfg.db = 5;
  cfg.username = "auditor";
  cfg.password = "auditor-pw";
  config::AuditConfig audit = FileConfig("");
  audit.redis_stream = "tollgate:audit";
  {
    AuditLog log(audit, cfg);
    for (int i = 0; i < 20; ++i) log.Submit(Numbered(0, i));
    log.Flush();
    EXPECT_EQ(log.stream_written(), 20u);
    EXPECT_EQ(log.stream_errors(), 0u);
    EXPECT_EQ(log.stream_dropped(), 0u);
  }
  RedisProbe probe(redis.port());
  ASSERT_EQ(probe.Command({"AUTH", "admin-pw"}), "OK");
  EXPECT_EQ(probe.Command({"EXISTS", "tollgate:audit"}), "0") << "records went to db 0";
  ASSERT_EQ(probe.Command({"SELECT", "5"}), "OK");
  const std::vector<std::string> records = probe.Records("tollgate:audit");
  ASSERT_EQ(records.size(), 20u);
  EXPECT_STREQ(Parse(records[0])["request_id"].GetString(), "t0-0");
  EXPECT_STREQ(Parse(records[19])["request_id"].GetString(), "t0-19");
}

// A stream key that holds another type: Redis refuses every XADD (WRONGTYPE). Each record is
// tried exactly 5 times (the first send and 4 retries), then counted as dropped; the file has it.
TEST(AuditLogStream, RefusedRecordIsTriedFiveTimesThenDroppedButTheFileHasIt) {
  Watchdog watchdog(std::chrono::seconds(90), "RefusedRecordIsTriedFiveTimes");
  testing::RedisServer redis;
  RedisProbe probe(redis.port());
  ASSERT_EQ(probe.Command({"SET", "tollgate:audit", "not a stream"}), "OK");
  testing::TempDir dir;
  config::AuditConfig audit = FileConfig(dir.path() + "/audit.log");
  audit.redis_stream = "tollgate:audit";
  AuditLog log(audit, RedisAt(redis.port()));
  log.Submit(Numbered(0, 0));
  log.Flush();
  EXPECT_TRUE(WaitUntil([&] { return log.stream_dropped() > 0; }));
  EXPECT_EQ(log.stream_dropped(), 1u);
  EXPECT_EQ(log.stream_written(), 0u);
  EXPECT_EQ(probe.Calls("xadd"), 5);
  EXPECT_EQ(Lines(testing::ReadFile(dir.path() + "/audit.log")).size(), 1u);
  EXPECT_EQ(log.written(), 1u);
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
  for (int i = 0; i < 2000; ++i) SubmitUntilTaken(&log, 0, i);
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

// ---------------------------------------------------------------------------------------------
// A scripted Redis (RESP over TCP on loopback) for errors a real Redis gives only by chance: it
// answers each command with what `answer` returns (raw RESP) and records every command.
class ScriptedRedis {
 public:
  using Answer = std::function<std::string(const std::vector<std::string>&)>;
  explicit ScriptedRedis(Answer answer) : answer_(std::move(answer)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedRedis() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  // How many XADDs carried a record whose request_id is `id`.
  int XaddsOf(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& c : commands_) {
      if (c.size() == 8 && c[0] == "XADD" && RequestIdOf(c[7]) == id) ++n;
    }
    return n;
  }
  static std::string RequestIdOf(const std::string& line) {
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    return doc.IsObject() && doc.HasMember("request_id") ? doc["request_id"].GetString() : "";
  }

 private:
  void Serve() {
    int client = -1;
    std::string in;
    while (!stop_) {
      pollfd p{client >= 0 ? client : listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      if (client < 0) {
        client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        continue;
      }
      char buf[65536];
      const ssize_t n = read(client, buf, sizeof buf);
      if (n <= 0) {
        close(client);
        client = -1;
        in.clear();
        continue;
      }
      in.append(buf, static_cast<size_t>(n));
      std::vector<std::string> command;
      std::string out;
      while (ParseCommand(&in, &command)) {
        std::lock_guard<std::mutex> lock(mu_);
        commands_.push_back(command);
        out += answer_(command);
      }
      if (!out.empty() && write(client, out.data(), out.size()) != ssize_t(out.size())) {
        ADD_FAILURE() << "short write to the audit writer";
      }
    }
    if (client >= 0) close(client);
  }
  // Takes one complete "*N\r\n$len\r\n...\r\n" command off the front of `in`.
  static bool ParseCommand(std::string* in, std::vector<std::string>* command) {
    command->clear();
    if (in->empty() || (*in)[0] != '*') return false;
    size_t pos = in->find("\r\n");
    if (pos == std::string::npos) return false;
    const int count = std::stoi(in->substr(1, pos - 1));
    pos += 2;
    for (int i = 0; i < count; ++i) {
      const size_t eol = in->find("\r\n", pos);
      if (eol == std::string::npos || (*in)[pos] != '$') return false;
      const size_t len = std::stoul(in->substr(pos + 1, eol - pos - 1));
      if (in->size() < eol + 2 + len + 2) return false;
      command->push_back(in->substr(eol + 2, len));
      pos = eol + 2 + len + 2;
    }
    in->erase(0, pos);
    return true;
  }

  Answer answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::vector<std::string>> commands_;
  std::thread thread_;
};

const std::string kXaddOk = "$3\r\n1-0\r\n";
const std::string kXaddRefused = "-ERR refused by the test\r\n";

// One batch [good, bad, good]: Redis refuses the middle line only. The good lines are written
// once each (not retried, not lost), the refused one is tried 5 times in all, then dropped.
TEST(AuditLogStream, OneRefusedLineCostsTheOthersOfItsBatchNothing) {
  Watchdog watchdog(std::chrono::seconds(90), "OneRefusedLine");
  ScriptedRedis redis([](const std::vector<std::string>& c) {
    if (c[0] != "XADD") return std::string("+OK\r\n");
    return ScriptedRedis::RequestIdOf(c.back()) == "t0-1" ? kXaddRefused : kXaddOk;
  });
  testing::TempDir dir;
  config::AuditConfig audit = FileConfig("");
  audit.redis_stream = "tollgate:audit";
  HeldAuditLog held(dir, audit, RedisAt(redis.port()));
  for (int i = 0; i < 3; ++i) held.log().Submit(Numbered(0, i));  // queued: one batch
  held.Release();
  held.log().Flush();
  EXPECT_TRUE(WaitUntil([&] { return held.log().stream_dropped() > 0; }));
  EXPECT_EQ(held.log().stream_written(), 2u);
  EXPECT_EQ(held.log().stream_dropped(), 1u);
  EXPECT_EQ(redis.XaddsOf("t0-0"), 1);
  EXPECT_EQ(redis.XaddsOf("t0-2"), 1);
  EXPECT_EQ(redis.XaddsOf("t0-1"), 5);
  EXPECT_EQ(Lines(held.Finish()).size(), 3u);
}

// A record Redis keeps refusing must not use up the attempts of the records queued behind it:
// a later record refused once (a passing error) still gets its retry and is written.
TEST(AuditLogStream, ARecordRefusedForeverDoesNotUseUpTheAttemptsOfLaterOnes) {
  Watchdog watchdog(std::chrono::seconds(90), "ARecordRefusedForever");
  int flaky_refusals = 0;  // guarded by ScriptedRedis's lock
  ScriptedRedis redis([&](const std::vector<std::string>& c) {
    if (c[0] != "XADD") return std::string("+OK\r\n");
    const std::string id = ScriptedRedis::RequestIdOf(c.back());
    if (id == "t0-0") return kXaddRefused;
    if (id == "t1-0" && flaky_refusals++ == 0) return kXaddRefused;
    return kXaddOk;
  });
  config::AuditConfig audit = FileConfig("");
  audit.redis_stream = "tollgate:audit";
  AuditLog log(audit, RedisAt(redis.port()));
  log.Submit(Numbered(0, 0));
  log.Flush();  // sent once and refused: it waits for a retry
  log.Submit(Numbered(1, 0));
  log.Flush();
  EXPECT_TRUE(WaitUntil([&] { return log.stream_written() + log.stream_dropped() == 2; }));
  EXPECT_EQ(log.stream_written(), 1u);
  EXPECT_EQ(log.stream_dropped(), 1u);
  EXPECT_EQ(redis.XaddsOf("t0-0"), 5);
  EXPECT_EQ(redis.XaddsOf("t1-0"), 2);
}

}  // namespace
}  // namespace tollgate::gateway
