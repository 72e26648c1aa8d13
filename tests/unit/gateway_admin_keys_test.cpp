// The admin key endpoints' pure half (gateway/admin_keys.h): bodies and the list query parsed,
// each mistake named by its member, and the JSON answers (never a hash; the key only where a
// key was made).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <string>

#include "gateway/admin_keys.h"

namespace tollgate::gateway {
namespace {

using std::chrono::seconds;

keys::TimePoint At(int64_t unix_ms) { return keys::FromUnixMs(unix_ms); }

TEST(AdminKeysCreateBody, TakesCallerTtlAndNote) {
  CreateKeyRequest req;
  ASSERT_EQ(ParseCreateKeyBody(R"({"caller": "data-team", "ttl_seconds": 2592000, "note": "ci"})",
                               0, &req),
            "");
  EXPECT_EQ(req.caller, "data-team");
  EXPECT_EQ(req.ttl_seconds, 2592000);
  EXPECT_EQ(req.note, "ci");
  CreateKeyRequest bare;
  ASSERT_EQ(ParseCreateKeyBody(R"({"caller": "data-team"})", 0, &bare), "");
  EXPECT_FALSE(bare.ttl_seconds);
  EXPECT_EQ(bare.note, "");
}

struct BadBody {
  const char* body;
  const char* message;  // a part of the 400's message
};

TEST(AdminKeysCreateBody, EachMistakeIsNamed) {
  const std::string long_note(201, 'x');
  const std::string too_long = R"({"caller": "c", "note": ")" + long_note + R"("})";
  const BadBody cases[] = {
      {"", "must be a JSON object"},
      {"not json", "must be a JSON object"},
      {"[1]", "must be a JSON object"},
      {R"({"caller": "c",})", "must be a JSON object"},
      {"{\"caller\": \"\xff\"}", "must be a JSON object"},  // not UTF-8
      {"{}", "\"caller\" is required"},
      {R"({"caller": 7})", "\"caller\" must be a string"},
      {R"({"caller": ""})", "\"caller\" must not be empty"},
      {R"({"caller": "c", "ttl_seconds": "30d"})", "\"ttl_seconds\" must be an integer"},
      {R"({"caller": "c", "ttl_seconds": 1.5})", "\"ttl_seconds\" must be an integer"},
      {R"({"caller": "c", "ttl_seconds": null})", "\"ttl_seconds\" must be an integer"},
      {R"({"caller": "c", "ttl_seconds": 0})", "\"ttl_seconds\" must be at least 1"},
      {R"({"caller": "c", "ttl_seconds": -5})", "\"ttl_seconds\" must be at least 1"},
      {R"({"caller": "c", "ttl_seconds": 315360001})", "\"ttl_seconds\" must be at most 315360000"},
      {R"({"caller": "c", "note": 5})", "\"note\" must be a string"},
      {too_long.c_str(), "\"note\" must be at most 200 bytes"},
      {R"({"caller": "c", "note": "a\u001b[31mred"})", "\"note\" must not hold control"},
      {R"({"caller": "c", "owner": "x"})", "unknown member 'owner'"},
      {R"({"caller": "c", "caller": "d"})", "member \"caller\" is given twice"},
  };
  for (const BadBody& c : cases) {
    CreateKeyRequest req;
    const std::string error = ParseCreateKeyBody(c.body, 0, &req);
    EXPECT_NE(error.find(c.message), std::string::npos)
        << c.body << " -> \"" << error << "\", wanted \"" << c.message << "\"";
  }
}

TEST(AdminKeysCreateBody, MaxTtlBoundsTtlSeconds) {
  CreateKeyRequest req;
  EXPECT_EQ(ParseCreateKeyBody(R"({"caller": "c", "ttl_seconds": 3600})", 3600, &req), "");
  EXPECT_EQ(req.ttl_seconds, 3600);
  const std::string error =
      ParseCreateKeyBody(R"({"caller": "c", "ttl_seconds": 3601})", 3600, &req);
  EXPECT_NE(error.find("\"ttl_seconds\" must be at most 3600 (keys.max_ttl_seconds)"),
            std::string::npos)
      << error;
  // 0 = no bound but the built-in one.
  EXPECT_EQ(ParseCreateKeyBody(R"({"caller": "c", "ttl_seconds": 315360000})", 0, &req), "");
  // With a bound, a key asked for without a ttl lives as long as the bound allows, no longer.
  CreateKeyRequest unbounded;
  EXPECT_EQ(ParseCreateKeyBody(R"({"caller": "c"})", 0, &unbounded), "");
  EXPECT_FALSE(unbounded.ttl_seconds);
  CreateKeyRequest bounded;
  EXPECT_EQ(ParseCreateKeyBody(R"({"caller": "c"})", 3600, &bounded), "");
  EXPECT_EQ(bounded.ttl_seconds, 3600);
}

// A key pasted where a name belongs never comes back in a message (messages reach the audit
// record).
TEST(AdminKeysCreateBody, MessagesNeverEchoSomethingShapedLikeAKey) {
  const std::string key = "tg_abcdefghijkl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  CreateKeyRequest req;
  std::string error = ParseCreateKeyBody(R"({"caller": "c", ")" + key + R"(": 1})", 0, &req);
  EXPECT_NE(error.find("unknown member"), std::string::npos) << error;
  EXPECT_EQ(error.find(key), std::string::npos) << error;
  EXPECT_EQ(EchoName(key), "(not shown: not a plain name)");
  EXPECT_EQ(EchoName("tga_admintoken"), "(not shown: not a plain name)");
  EXPECT_EQ(EchoName("bad name"), "(not shown: not a plain name)");
  EXPECT_EQ(EchoName("nobody"), "'nobody'");
}

TEST(AdminKeysRotateBody, EverythingIsOptional) {
  RotateKeyRequest req;
  ASSERT_EQ(ParseRotateKeyBody("", 0, &req), "");
  EXPECT_EQ(req.grace_seconds, 0);
  EXPECT_FALSE(req.ttl_seconds);
  ASSERT_EQ(ParseRotateKeyBody("{}", 0, &req), "");
  ASSERT_EQ(ParseRotateKeyBody(R"({"grace_seconds": 3600, "ttl_seconds": 60})", 0, &req), "");
  EXPECT_EQ(req.grace_seconds, 3600);
  EXPECT_EQ(req.ttl_seconds, 60);
  RotateKeyRequest zero;
  ASSERT_EQ(ParseRotateKeyBody(R"({"grace_seconds": 0})", 0, &zero), "");
  EXPECT_EQ(zero.grace_seconds, 0);
}

TEST(AdminKeysRotateBody, EachMistakeIsNamed) {
  const BadBody cases[] = {
      {"nope", "must be a JSON object"},
      {R"({"grace_seconds": -1})", "\"grace_seconds\" must be at least 0"},
      {R"({"grace_seconds": "1h"})", "\"grace_seconds\" must be an integer"},
      {R"({"grace_seconds": 315360001})", "\"grace_seconds\" must be at most 315360000"},
      {R"({"ttl_seconds": 0})", "\"ttl_seconds\" must be at least 1"},
      {R"({"ttl_seconds": 61})", "\"ttl_seconds\" must be at most 60 (keys.max_ttl_seconds)"},
      {R"({"grace": 5})", "unknown member 'grace'"},
  };
  for (const BadBody& c : cases) {
    RotateKeyRequest req;
    const std::string error = ParseRotateKeyBody(c.body, 60, &req);
    EXPECT_NE(error.find(c.message), std::string::npos)
        << c.body << " -> \"" << error << "\", wanted \"" << c.message << "\"";
  }
}

TEST(AdminKeysListQuery, TakesOnlyACallerName) {
  std::string caller;
  EXPECT_EQ(ParseListKeysQuery("", &caller), "");
  EXPECT_EQ(caller, "");
  EXPECT_EQ(ParseListKeysQuery("caller=data-team", &caller), "");
  EXPECT_EQ(caller, "data-team");
  EXPECT_NE(ParseListKeysQuery("user=x", &caller).find("unknown query parameter 'user'"),
            std::string::npos);
  EXPECT_NE(ParseListKeysQuery("caller=a&caller=b", &caller).find("given twice"),
            std::string::npos);
  EXPECT_NE(ParseListKeysQuery("caller=a%20b", &caller).find("must be a caller name"),
            std::string::npos);
  EXPECT_NE(ParseListKeysQuery("caller=", &caller).find("must be a caller name"),
            std::string::npos);
}

TEST(AdminKeysRotation, TheNewKeyKeepsCallerAndNoteAndTakesTheOldLifetimeByDefault) {
  keys::KeyRecord old;
  old.id = "abcdefghijkl";
  old.caller = "data-team";
  old.sha256 = "old-hash";
  old.note = "ci";
  old.created_by = "alice";
  old.created_at = At(1796148000000);
  old.expires_at = old.created_at + seconds(30 * 86400);
  keys::NewKey key{"mnopqrstuvwx", "tg_mnopqrstuvwx_secret", "new-hash"};
  const keys::TimePoint now = old.created_at + seconds(86400);

  keys::KeyRecord r = RotationReplacement(old, key, now, std::nullopt, 0, "ops");
  EXPECT_EQ(r.id, "mnopqrstuvwx");
  EXPECT_EQ(r.sha256, "new-hash");
  EXPECT_EQ(r.caller, "data-team");
  EXPECT_EQ(r.note, "ci");
  EXPECT_EQ(r.created_by, "ops");
  EXPECT_EQ(r.created_at, now);
  EXPECT_EQ(r.expires_at, now + seconds(30 * 86400));
  EXPECT_FALSE(r.revoked_at);
  EXPECT_EQ(r.replaced_by, "");

  // ttl_seconds wins; keys.max_ttl_seconds bounds the inherited lifetime.
  EXPECT_EQ(RotationReplacement(old, key, now, 60, 0, "ops").expires_at, now + seconds(60));
  EXPECT_EQ(RotationReplacement(old, key, now, std::nullopt, 3600, "ops").expires_at,
            now + seconds(3600));
  // A key that never expired is replaced by one that never expires.
  old.expires_at.reset();
  EXPECT_FALSE(RotationReplacement(old, key, now, std::nullopt, 0, "ops").expires_at);
  // ... unless keys.max_ttl_seconds now bounds every key.
  EXPECT_EQ(RotationReplacement(old, key, now, std::nullopt, 3600, "ops").expires_at,
            now + seconds(3600));
}

TEST(AdminKeysJson, TimesAreRfc3339UtcWithMilliseconds) {
  EXPECT_EQ(FormatKeyTime(At(1796148000000)), "2026-12-01T18:00:00.000Z");
  EXPECT_EQ(FormatKeyTime(At(1796148000007)), "2026-12-01T18:00:00.007Z");
  EXPECT_EQ(FormatKeyTime(At(1796148000999)), "2026-12-01T18:00:00.999Z");
}

keys::KeyRecord Record() {
  keys::KeyRecord r;
  r.id = "abcdefghijkl";
  r.caller = "data-team";
  r.sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
  r.created_at = At(1796148000000);
  return r;
}

TEST(AdminKeysJson, ACreatedKeyCarriesTheKeyOnceAndNoHash) {
  keys::KeyRecord r = Record();
  r.expires_at = r.created_at + seconds(3600);
  const std::string key = "tg_abcdefghijkl_" + std::string(43, 'Q');
  const std::string json = CreatedKeyJson(r, key);
  EXPECT_EQ(json, R"({"id":"abcdefghijkl","key":")" + key +
                      R"(","caller":"data-team","created_at":"2026-12-01T18:00:00.000Z",)"
                      R"("expires_at":"2026-12-01T19:00:00.000Z"})");
  keys::KeyRecord forever = Record();
  EXPECT_NE(CreatedKeyJson(forever, key).find(R"("expires_at":null)"), std::string::npos);
}

TEST(AdminKeysJson, ARotationNamesTheKeyItReplacesAndItsNewExpiry) {
  keys::KeyRecord fresh = Record();
  fresh.id = "mnopqrstuvwx";
  keys::KeyRecord old = Record();
  old.expires_at = At(1796148060000);
  old.replaced_by = fresh.id;
  rapidjson::Document doc;
  doc.Parse(RotatedKeyJson(fresh, "tg_key", old).c_str());
  ASSERT_TRUE(doc.IsObject());
  EXPECT_STREQ(doc["id"].GetString(), "mnopqrstuvwx");
  EXPECT_STREQ(doc["key"].GetString(), "tg_key");
  EXPECT_STREQ(doc["replaces"].GetString(), "abcdefghijkl");
  EXPECT_STREQ(doc["replaced_expires_at"].GetString(), "2026-12-01T18:01:00.000Z");
  EXPECT_TRUE(doc["expires_at"].IsNull());
}

TEST(AdminKeysJson, AListingShowsEachStateAndNeverAKeyOrHash) {
  const keys::TimePoint now = At(1796148000000) + seconds(100);
  keys::KeyRecord active = Record();
  active.note = "ci";
  active.created_by = "ops";
  active.last_used_at = now - seconds(5);
  keys::KeyRecord revoked = Record();
  revoked.id = "revokedkey01";
  revoked.revoked_at = now - seconds(1);
  keys::KeyRecord expired = Record();
  expired.id = "expiredkey01";
  expired.expires_at = now - seconds(1);
  keys::KeyRecord grace = Record();
  grace.id = "gracekey0001";
  grace.expires_at = now + seconds(60);
  grace.replaced_by = "abcdefghijkl";
  const std::string json = KeyListJson({active, revoked, expired, grace}, now);
  EXPECT_EQ(json.find(active.sha256), std::string::npos) << json;
  EXPECT_EQ(json.find("sha256"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"key\""), std::string::npos) << json;
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  ASSERT_TRUE(doc.IsObject() && doc["items"].IsArray()) << json;
  const auto& items = doc["items"];
  ASSERT_EQ(items.Size(), 4u);
  EXPECT_STREQ(items[0]["state"].GetString(), "active");
  EXPECT_STREQ(items[1]["state"].GetString(), "revoked");
  EXPECT_STREQ(items[2]["state"].GetString(), "expired");
  EXPECT_STREQ(items[3]["state"].GetString(), "grace");
  EXPECT_STREQ(items[0]["note"].GetString(), "ci");
  EXPECT_STREQ(items[0]["created_by"].GetString(), "ops");
  EXPECT_STREQ(items[0]["last_used_at"].GetString(), "2026-12-01T18:01:35.000Z");
  EXPECT_TRUE(items[0]["replaced_by"].IsNull());
  EXPECT_TRUE(items[0]["revoked_at"].IsNull());
  EXPECT_TRUE(items[1]["note"].IsNull());
  EXPECT_STREQ(items[3]["replaced_by"].GetString(), "abcdefghijkl");
  for (const char* field : {"id", "caller", "created_at", "expires_at", "revoked_at",
                            "last_used_at", "note", "created_by", "state", "replaced_by"}) {
    EXPECT_TRUE(items[0].HasMember(field)) << field;
  }
  EXPECT_EQ(items[0].MemberCount(), 10u);
  EXPECT_EQ(KeyListJson({}, now), R"({"items":[]})");
}

}  // namespace
}  // namespace tollgate::gateway
