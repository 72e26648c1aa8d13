// Each way a config can be wrong, asserting the JSON pointer and the reason of the error.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::HasError;

constexpr const char* kBase = R"json({
  "listen": "127.0.0.1:8080",
  "upstreams": {
    "devin": {"base_url": "https://api.devin.ai",
              "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"},
              "limits": [{"name": "devin-all", "rate": "20/s", "burst": 40}]},
    "devo": {"base_url": "https://api-us.devo.com",
             "auth": {"type": "header", "header": "standAloneToken", "secret_env": "DEVO_TOKEN"}}
  },
  "roles": {
    "reader": {"rules": [
      {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/organizations/{org_id}/sessions",
       "where": {"org_id": "caller.devin_orgs"}}
    ]}
  },
  "callers": {
    "team": {"key_sha256": ["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"],
             "roles": ["reader"], "attributes": {"devin_orgs": ["org-1"]}}
  }
})json";

struct Patch {
  const char* pointer;
  const char* json;  // nullptr removes the value
};

// kBase with each patch applied: a JSON value set at the pointer, or the value removed.
std::string Patched(std::initializer_list<Patch> patches) {
  rapidjson::Document document;
  document.Parse(kBase);
  for (const Patch& patch : patches) {
    if (patch.json == nullptr) {
      rapidjson::Pointer(patch.pointer).Erase(document);
      continue;
    }
    rapidjson::Document value(&document.GetAllocator());
    value.Parse(patch.json);
    EXPECT_FALSE(value.HasParseError()) << patch.json;
    rapidjson::Pointer(patch.pointer).Set(document, value);
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  document.Accept(writer);
  return buffer.GetString();
}

LoadResult Load(std::initializer_list<Patch> patches) {
  return LoadConfigString(Patched(patches), DummySecrets().source());
}

TEST(ConfigErrors, BaseConfigIsValid) {
  LoadResult result = Load({});
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(ConfigErrors, ParseErrorNamesLineAndColumn) {
  LoadResult result =
      LoadConfigString("{\n  \"listen\": \"x\",\n  oops\n}", DummySecrets().source());
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].pointer, "");
  EXPECT_NE(result.errors[0].message.find("line 3, column 3"), std::string::npos)
      << result.errors[0].message;
  EXPECT_NE(result.errors[0].message.find("offset"), std::string::npos);
}

TEST(ConfigErrors, SchemaTypeError) {
  LoadResult result = Load({{"/upstreams/devin/timeout_ms", R"("30s")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/timeout_ms", "expected integer"))
      << AllErrors(result);
}

TEST(ConfigErrors, UnknownPropertyIsNamedOnItsObject) {
  LoadResult result = Load({{"/callers/team/rolez", R"(["reader"])"}});
  EXPECT_TRUE(HasError(result, "/callers/team", "unknown property \"rolez\"")) << AllErrors(result);
}

TEST(ConfigErrors, MissingRequiredProperty) {
  LoadResult result = Load({{"/upstreams/devo/base_url", nullptr}});
  EXPECT_TRUE(HasError(result, "/upstreams/devo", "missing required property \"base_url\""))
      << AllErrors(result);
}

TEST(ConfigErrors, EnumAndRangeErrors) {
  LoadResult result = Load({{"/roles/reader/rules/0/methods/0", R"("FETCH")"},
                            {"/threads", "0"},
                            {"/upstreams/devin/auth/type", R"("basic")"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/methods/0", "\"FETCH\" is not one of"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/threads", "must be at least 1")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/upstreams/devin/auth/type", "is not one of")) << AllErrors(result);
}

TEST(ConfigErrors, CollectsEverySchemaAndSemanticError) {
  LoadResult result = Load({{"/threads", R"("two")"},
                            {"/upstreams/devin/timeout_ms", "-5"},
                            {"/callers/team/colour", R"("blue")"},
                            {"/upstreams/devin/limits/0/rate", R"("20/sec")"},
                            {"/roles/reader/rules/0/upstream", R"("nope")"}});
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(HasError(result, "/threads", "expected integer")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/upstreams/devin/timeout_ms", "at least 1")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/callers/team", "unknown property \"colour\""))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/upstreams/devin/limits/0/rate", "malformed rate"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/upstream", "unknown upstream \"nope\""))
      << AllErrors(result);
  EXPECT_EQ(result.errors.size(), 5u) << AllErrors(result);
}

TEST(ConfigErrors, RemovedValuesDoNotCascade) {
  // The role is dropped by the schema check (its only rule is malformed); the caller naming it
  // must not get a second, misleading "undefined role" error.
  LoadResult result = Load({{"/roles/reader/rules/0/path", "7"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/path", "expected string"))
      << AllErrors(result);
  EXPECT_EQ(result.errors.size(), 1u) << AllErrors(result);
}

TEST(ConfigErrors, DuplicatePropertyName) {
  LoadResult result = LoadConfigString(
      R"({"threads": 2, "threads": 3, "upstreams": {"u": {"base_url": "http://a",
          "auth": {"type": "bearer", "secret_env": "TOKEN"}}}})",
      DummySecrets().source());
  EXPECT_TRUE(HasError(result, "/threads", "defined twice")) << AllErrors(result);
}

TEST(ConfigErrors, NoUpstreams) {
  LoadResult result = Load({{"/upstreams", "{}"}, {"/roles", "{}"}, {"/callers", "{}"}});
  EXPECT_TRUE(HasError(result, "/upstreams", "at least one upstream")) << AllErrors(result);
}

TEST(ConfigErrors, RuleNamesUnknownUpstream) {
  LoadResult result = Load({{"/roles/reader/rules/0/upstream", R"("devon")"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/upstream", "unknown upstream \"devon\""))
      << AllErrors(result);
}

TEST(ConfigErrors, CallerNamesUndefinedRole) {
  LoadResult result = Load({{"/callers/team/roles/1", R"("writer")"}});
  EXPECT_TRUE(HasError(result, "/callers/team/roles/1", "undefined role \"writer\""))
      << AllErrors(result);
}

TEST(ConfigErrors, MalformedRate) {
  LoadResult result = Load({{"/upstreams/devin/limits/0/rate", R"("0/s")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/limits/0/rate", "malformed rate \"0/s\""))
      << AllErrors(result);
}

TEST(ConfigErrors, KeyHashNot64Hex) {
  LoadResult result = Load({{"/callers/team/key_sha256/0", R"("tg_live_the_actual_key")"}});
  EXPECT_TRUE(HasError(result, "/callers/team/key_sha256/0", "64 hex digits")) << AllErrors(result);
  // The value is never echoed: it may be a key pasted by mistake.
  EXPECT_EQ(AllErrors(result).find("tg_live_the_actual_key"), std::string::npos);
  result = Load({{"/callers/team/key_sha256/0", ('"' + std::string(63, 'a') + '"').c_str()}});
  EXPECT_TRUE(HasError(result, "/callers/team/key_sha256/0", "64 hex digits")) << AllErrors(result);
}

TEST(ConfigErrors, SameKeyHashTwice) {
  const std::string upper =
      R"(["DAFF0A6505B26E14AC642A2CBC3A08B61BE19B30D4C277664FC1CB3725DE4121"])";
  LoadResult result = Load({{"/callers/other", R"({"key_sha256": [], "roles": []})"},
                            {"/callers/other/key_sha256", upper.c_str()}});
  EXPECT_TRUE(HasError(result, "/callers/other/key_sha256/0",
                       "already listed at /callers/team/key_sha256/0"))
      << AllErrors(result);

  const std::string twice =
      R"(["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121",
          "daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"])";
  result = Load({{"/callers/team/key_sha256", twice.c_str()}});
  EXPECT_TRUE(HasError(result, "/callers/team/key_sha256/1",
                       "already listed at /callers/team/key_sha256/0"))
      << AllErrors(result);
}

TEST(ConfigErrors, WhereValueMustBeCallerAttribute) {
  LoadResult result = Load({{"/roles/reader/rules/0/where/org_id", R"("devin_orgs")"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/where/org_id", "caller.<attribute>"))
      << AllErrors(result);
  result = Load({{"/roles/reader/rules/0/where/org_id", R"("caller.")"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/where/org_id", "caller.<attribute>"))
      << AllErrors(result);
}

TEST(ConfigErrors, WhereParamNotBoundByTemplate) {
  LoadResult result = Load({{"/roles/reader/rules/0/where/account", R"("caller.devo_accounts")"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/where/account",
                       "\"account\" is not a {parameter} of the path template"))
      << AllErrors(result);
}

TEST(ConfigErrors, MalformedPathTemplates) {
  struct Case {
    const char* path;
    const char* reason;
  };
  for (const Case& c :
       {Case{R"("/v3/**/sessions")", "'**' must be the last segment"},
        Case{R"("v3/sessions")", "must start with '/'"}, Case{R"("/v3/{org_id")", "'}'"},
        Case{R"("/v3/{org}x")", "'}'"}, Case{R"("/v3/a{org}")", "whole segment"}}) {
    LoadResult result =
        Load({{"/roles/reader/rules/0/path", c.path}, {"/roles/reader/rules/0/where", "{}"}});
    EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/path", c.reason)) << c.path << "\n"
                                                                          << AllErrors(result);
  }
}

TEST(ConfigErrors, SameLimitNameWithDifferentSettings) {
  LoadResult result =
      Load({{"/roles/reader/rules/0/limits", R"([{"name": "devin-all", "rate": "10/s"}])"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/limits/0",
                       "already defined with different settings at /upstreams/devin/limits/0"))
      << AllErrors(result);
  // The same settings under the same name are the same bucket: fine.
  result = Load({{"/roles/reader/rules/0/limits",
                  R"([{"name": "devin-all", "rate": "20/s", "burst": 40}])"}});
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(ConfigErrors, BaseUrlMustBeHttp) {
  LoadResult result = Load({{"/upstreams/devin/base_url", R"("ftp://api.devin.ai")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/base_url", "http:// or https://"))
      << AllErrors(result);
  result = Load({{"/upstreams/devin/base_url", R"("https://user:pw@api.devin.ai")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/base_url", "user info")) << AllErrors(result);
}

TEST(ConfigErrors, ListenAddressesMustBeHostPort) {
  LoadResult result = Load({{"/listen", R"("8080")"}, {"/admin_listen", R"("localhost")"}});
  EXPECT_TRUE(HasError(result, "/listen", "host:port")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin_listen", "host:port")) << AllErrors(result);
  result = Load({{"/admin_listen", R"("127.0.0.1:8080")"}});
  EXPECT_TRUE(HasError(result, "/admin_listen", "differ")) << AllErrors(result);
}

TEST(ConfigErrors, ExpiresMustBeRfc3339) {
  LoadResult result = Load({{"/callers/team/expires", R"("2027-01-01")"}});
  EXPECT_TRUE(HasError(result, "/callers/team/expires", "RFC 3339")) << AllErrors(result);
}

TEST(ConfigErrors, RedisUrlMustBeRedisHostPortWithoutPassword) {
  LoadResult result = Load({{"/redis", R"({"url": "http://127.0.0.1:6379"})"}});
  EXPECT_TRUE(HasError(result, "/redis/url", "redis://host:port")) << AllErrors(result);
  result = Load({{"/redis", R"({"url": "redis://:hunter2@127.0.0.1:6379/0"})"}});
  EXPECT_TRUE(HasError(result, "/redis/url", "password_env")) << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("hunter2"), std::string::npos);
}

TEST(ConfigErrors, LimitThatWouldOverflowExactArithmetic) {
  LoadResult result = Load({{"/upstreams/devin/limits/0/rate", R"("1000000/day")"},
                            {"/upstreams/devin/limits/0/burst", nullptr}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/limits/0/rate", "2^53")) << AllErrors(result);
  // 9007199255 * 1 s * 1e6 is just above 2^53; one less is just below.
  result = Load({{"/upstreams/devin/limits/0/burst", "9007199255"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/limits/0/burst", "2^53")) << AllErrors(result);
  result = Load({{"/upstreams/devin/limits/0/burst", "9007199254"}});
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(ConfigErrors, CostAboveBurstCouldNeverPass) {
  LoadResult result = Load({{"/roles/reader/rules/0/cost", "41"}});
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/cost", "exceeds the burst 40"))
      << AllErrors(result);
  result = Load({{"/callers/team/limits", R"([{"name": "team", "rate": "1/s"}])"},
                 {"/roles/reader/rules/0/cost", "2"}});
  EXPECT_TRUE(HasError(result, "/callers/team/limits/0", "below the cost 2")) << AllErrors(result);
}

TEST(ConfigErrors, AuthFieldsMustMatchTheType) {
  LoadResult result = Load({{"/upstreams/devo/auth/header", nullptr}});
  EXPECT_TRUE(HasError(result, "/upstreams/devo/auth", "needs \"header\"")) << AllErrors(result);
  result = Load({{"/upstreams/devin/auth/key_env", R"("DEVO_API_KEY")"}});
  EXPECT_TRUE(
      HasError(result, "/upstreams/devin/auth/key_env", "only used with type \"devo_hmac\""))
      << AllErrors(result);
  result = Load({{"/upstreams/devin/auth/header", R"("X-Token")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/auth/header", "only used with type \"header\""))
      << AllErrors(result);
  result = Load({{"/upstreams/devo/auth/header", R"("bad header")"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devo/auth/header", "not a valid HTTP header name"))
      << AllErrors(result);
}

// Issue 10 point 4: forward_headers adds names to the request allowlist, never one that no
// upstream may get from a caller; the error names the entry.
TEST(ConfigErrors, ForwardHeadersRefusesNamesNoUpstreamMayGet) {
  const std::pair<const char*, const char*> refused[] = {
      {"Connection", "hop-by-hop"},
      {"Keep-Alive", "hop-by-hop"},
      {"Proxy-Authorization", "hop-by-hop"},
      {"Host", "set by the gateway"},
      {"Content-Length", "set by the gateway"},
      {"Transfer-Encoding", "hop-by-hop"},
      {"Authorization", "carries credentials"},
      {"Cookie", "carries credentials"},
      {"standAloneToken", "carries credentials"},
      {"x-logtrust-apikey", "carries credentials"},
      {"X-Forwarded-For", "client_ip_headers"},
      {"Forwarded", "client_ip_headers"},
      {"X-Original-Method", "what the upstream takes"},
      {"X_Custom", "'_'"},
      {"bad name", "RFC 9110 token"},
      {"Accept-Encoding", "compressed"},
  };
  for (const auto& [name, why] : refused) {
    std::string list = std::string(R"(["X-Fine", ")") + name + "\"]";
    LoadResult result = Load({{"/upstreams/devin/forward_headers", list.c_str()}});
    EXPECT_TRUE(HasError(result, "/upstreams/devin/forward_headers/1", why))
        << name << ": " << AllErrors(result);
    EXPECT_EQ(result.errors.size(), 1u) << AllErrors(result);
  }
  // The upstream's own credential header, for that upstream.
  LoadResult result = Load({{"/upstreams/devo/forward_headers", R"(["STANDALONETOKEN"])"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devo/forward_headers/0", "credentials"))
      << AllErrors(result);
  result = Load({{"/upstreams/devo/auth/header", R"("X-Api-Token")"},
                 {"/upstreams/devo/forward_headers", R"(["x-api-token"])"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devo/forward_headers/0", "credentials"))
      << AllErrors(result);
  result = Load({{"/upstreams/devin/forward_headers", R"(["x-api-token"])"}});
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(ConfigErrors, ClientIpHeadersAreAFixedList) {
  LoadResult result = Load({{"/upstreams/devin/client_ip_headers", R"(["x-real-ip"])"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/client_ip_headers/0", "is not one of"))
      << AllErrors(result);
  result = Load({{"/upstreams/devin/forward_headers", R"(["x", 3])"}});
  EXPECT_TRUE(HasError(result, "/upstreams/devin/forward_headers/1", "")) << AllErrors(result);
}

TEST(ConfigModel, ForwardHeadersAreLowerCaseSortedAndUnique) {
  LoadResult result =
      Load({{"/upstreams/devin/forward_headers", R"(["X-B", "x-a", "X-A", "Idempotency-Key"])"},
            {"/upstreams/devin/client_ip_headers", R"(["forwarded"])"},
            {"/upstreams/devo/client_ip_headers", R"(["x-forwarded-for", "forwarded"])"}});
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Upstream& devin = result.config->upstreams.at("devin");
  EXPECT_EQ(devin.forward_headers, (std::vector<std::string>{"idempotency-key", "x-a", "x-b"}));
  EXPECT_TRUE(devin.send_forwarded);
  EXPECT_FALSE(devin.send_x_forwarded_for);
  const Upstream& devo = result.config->upstreams.at("devo");
  EXPECT_TRUE(devo.forward_headers.empty());
  EXPECT_TRUE(devo.send_forwarded);
  EXPECT_TRUE(devo.send_x_forwarded_for);
}

TEST(ConfigErrors, BadNamesAndRedactPointers) {
  LoadResult result = Load({{"/upstreams/_tollgate", R"({"base_url": "http://a",
      "auth": {"type": "bearer", "secret_env": "TOKEN"}})"},
                            {"/roles/reader/rules/0/redact", R"(["token"])"}});
  EXPECT_TRUE(HasError(result, "/upstreams/_tollgate", "upstream name")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/roles/reader/rules/0/redact/0", "JSON pointer"))
      << AllErrors(result);
}

TEST(ConfigErrors, AuditStreamNeedsRedis) {
  LoadResult result = Load({{"/audit", R"({"redis_stream": "tollgate:audit"})"}});
  EXPECT_TRUE(HasError(result, "/audit/redis_stream", "redis")) << AllErrors(result);
}

// The listener's TLS was dropped in 0.2.0 (Pistache 0.0.5 does the handshake on its one accept
// thread with no timeout: one silent client stalls every new connection). A config that still
// asks for it is refused, whatever its shape, with one error at /tls that says where TLS goes
// instead; it is never silently served as plain HTTP.
TEST(ConfigErrors, ListenerTlsIsRefusedSayingWhereToTerminateIt) {
  for (const char* tls :
       {R"({"cert_file": "/etc/tollgate/cert.pem", "key_file": "/etc/tollgate/key.pem"})", "{}",
        "null", "false"}) {
    SCOPED_TRACE(tls);
    LoadResult result = Load({{"/tls", tls}});
    EXPECT_FALSE(result.ok());
    ASSERT_EQ(result.errors.size(), 1u) << AllErrors(result);
    EXPECT_EQ(result.errors[0].pointer, "/tls");
    const std::string& message = result.errors[0].message;
    EXPECT_NE(message.find("not supported"), std::string::npos) << message;
    EXPECT_NE(message.find("terminate TLS in front of tollgate"), std::string::npos) << message;
    for (const char* where : {"load balancer", "ingress", "stunnel"}) {
      EXPECT_NE(message.find(where), std::string::npos) << where << ": " << message;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Admin tokens (issue 10 point 7).

const char* const kAdminHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const char* const kOtherHash = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

TEST(ConfigAdmin, TokensAreBuiltWithTheirScopesAndLowerCaseHashes) {
  LoadResult result = Load({{"/admin", R"({"tokens": [
        {"name": "ops", "sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
         "scopes": ["reload", "read", "reload"]},
        {"name": "billing", "sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
         "scopes": ["usage"]}]})"}});
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const auto& tokens = result.config->admin.tokens;
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].name, "ops");
  EXPECT_EQ(tokens[0].sha256, kAdminHash);
  EXPECT_EQ(tokens[0].scopes, (std::vector<std::string>{"reload", "read"}));
  EXPECT_TRUE(tokens[0].Allows("reload"));
  EXPECT_FALSE(tokens[0].Allows("keys"));
  EXPECT_EQ(tokens[1].scopes, (std::vector<std::string>{"usage"}));
  // No admin section: no tokens (the acting endpoints answer 403).
  LoadResult none = Load({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none.config->admin.tokens.empty());
}

TEST(ConfigAdmin, EachMistakeNamesItsPointerAndNeverEchoesTheValue) {
  const std::string hash = kAdminHash;
  const std::string other = kOtherHash;
  const std::string admin = R"({"tokens": [
        {"name": "ops", "sha256": "tga_this-is-the-token-itself", "scopes": ["reload"]},
        {"name": "ops", "sha256": ")" +
                            hash + R"(", "scopes": ["reload"]},
        {"name": "audit", "sha256": ")" +
                            hash + R"(", "scopes": ["read"]},
        {"name": "SIGHUP", "sha256": ")" +
                            other + R"(", "scopes": ["read"]},
        {"name": "bad name", "sha256": "0)" +
                            other.substr(1) + R"(", "scopes": ["read"]}
      ]})";
  LoadResult result = Load({{"/admin", admin.c_str()}});
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(HasError(result, "/admin/tokens/0/sha256", "64 hex digits")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin/tokens/1/name", "already defined at /admin/tokens/0"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin/tokens/2/sha256", "already listed at /admin/tokens/1"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin/tokens/3/name", "reserved")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin/tokens/4/name", "letters, digits")) << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("this-is-the-token-itself"), std::string::npos)
      << AllErrors(result);
}

TEST(ConfigAdmin, AnUnknownScopeOrNoScopeIsASchemaError) {
  const std::string hash = kAdminHash;
  const std::string unknown =
      R"({"tokens": [{"name": "x", "sha256": ")" + hash + R"(", "scopes": ["delete"]}]})";
  LoadResult result = Load({{"/admin", unknown.c_str()}});
  EXPECT_TRUE(HasError(result, "/admin/tokens/0/scopes/0", "\"delete\" is not one of"))
      << AllErrors(result);
  const std::string empty =
      R"({"tokens": [{"name": "x", "sha256": ")" + hash + R"(", "scopes": []}]})";
  result = Load({{"/admin", empty.c_str()}});
  EXPECT_TRUE(HasError(result, "/admin/tokens/0/scopes", "at least 1")) << AllErrors(result);
}

TEST(ConfigAdmin, UnknownMembersAndMissingFieldsAreSchemaErrors) {
  LoadResult result = Load({{"/admin", R"({"token": [], "tokens": [{"name": "ops"}]})"}});
  EXPECT_TRUE(HasError(result, "/admin", "unknown property \"token\"")) << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/admin/tokens/0", "missing required property \"sha256\""))
      << AllErrors(result);
}

// A reload names the entries it changed, by name only: "roles/reader", "admin/tokens/ops".
TEST(ConfigAdmin, ChangedEntriesNameWhatAReloadChangedNeverTheValues) {
  const std::string hash = kAdminHash;
  const std::string admin =
      R"({"tokens": [{"name": "ops", "sha256": ")" + hash + R"(", "scopes": ["reload"]}]})";
  LoadResult before = Load({{"/admin", admin.c_str()}});
  ASSERT_TRUE(before.ok()) << AllErrors(before);
  EXPECT_TRUE(ChangedEntries(*before.config, *before.config).empty());
  LoadResult same = Load({{"/admin", admin.c_str()}});
  EXPECT_TRUE(ChangedEntries(*before.config, *same.config).empty());

  const std::string admin2 =
      R"({"tokens": [{"name": "ops", "sha256": ")" + hash + R"(", "scopes": ["reload", "read"]}]})";
  const std::string caller = R"({"key_sha256": [")" + hash + R"("], "roles": []})";
  LoadResult after = Load({{"/admin", admin2.c_str()},
                           {"/roles/reader/rules/0/methods", R"(["GET", "HEAD"])"},
                           {"/upstreams/devo", nullptr},
                           {"/callers/new-team", caller.c_str()},
                           {"/threads", "4"}});
  ASSERT_TRUE(after.ok()) << AllErrors(after);
  EXPECT_EQ(ChangedEntries(*before.config, *after.config),
            (std::vector<std::string>{"admin/tokens/ops", "callers/new-team", "roles/reader",
                                      "threads", "upstreams/devo"}));
}

}  // namespace
}  // namespace tollgate::config
