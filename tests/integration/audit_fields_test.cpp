// The audit record's field VALUES, one test per outcome, through the real binary: the rule the
// request matched, what the caller sent and received (bytes_in, bytes_out), the upstream's own
// request id, how long the upstream took, the bucket level after the call, who the caller was
// (also for disabled and expired keys), and no secret anywhere. Also: the audit stream reaches a
// Redis that needs AUTH (an ACL user) in the database the URL names.
#include <hiredis/hiredis.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

// The data team's rules: a limited Devo tokens route, a route with a one-call bucket, a deny
// rule inside an allowed tree, a slow route on Devo (timeout_ms 2000), and Devo query.
const std::string kRules = R"([
        {"upstream": "devo", "methods": ["GET", "POST"], "path": "/v2/accounts/{account}/tokens",
         "where": {"account": "caller.devo_accounts"},
         "limits": [{"name": "fields", "rate": "100/h", "burst": 100, "scope": "caller"}]},
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/organizations",
         "limits": [{"name": "tiny", "rate": "1/h", "burst": 1, "scope": "caller"}]},
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/**"},
        {"upstream": "devin", "effect": "deny", "path": "/v3beta1/enterprise/audit-logs"},
        {"upstream": "devo", "methods": ["GET"], "path": "/v2/slow/**"},
        {"upstream": "devo-query", "path": "/**"}])";

const std::string kTokens = "/v2/accounts/sampleAccount/tokens";

double Number(const Json& j, const std::string& pointer) {
  const rapidjson::Value* v = j.Get(pointer);
  return v != nullptr && v->IsNumber() ? v->GetDouble() : std::nan("");
}

class AuditFieldsTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig("", kRules));
  }

  // One call with its own X-Request-Id; returns the answer and (in `line`) its audit record.
  HttpResponse CallAudited(const std::string& method, const std::string& path,
                           const std::string& key, const std::string& body, Json* line,
                           HeaderList headers = {}) {
    const std::string id = "audit-fields-" + std::to_string(++calls_);
    headers.emplace_back("X-Request-Id", id);
    HttpResponse r = Call(method, path, key, body, headers);
    EXPECT_EQ(r.Header("x-request-id"), id);
    std::optional<Json> found;
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         !found && std::chrono::steady_clock::now() < deadline;) {
      for (const Json& l : gateway_->AuditLines()) {
        if (l.String("/request_id") == id) found = l;
      }
      if (!found) std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(found.has_value()) << "no audit line for " << id;
    if (found) *line = *found;
    return r;
  }

  // The fields every gateway-made refusal before the upstream shares.
  void ExpectNotForwarded(const Json& line, const HttpResponse& r, const std::string& body) {
    EXPECT_TRUE(line.IsNull("/upstream_status"));
    EXPECT_TRUE(line.IsNull("/upstream_ms"));
    EXPECT_TRUE(line.IsNull("/upstream_request_id"));
    EXPECT_EQ(line.Int("/bytes_in"), static_cast<int64_t>(body.size()));
    EXPECT_EQ(line.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
    EXPECT_GT(r.body.size(), 0u);
    EXPECT_EQ(line.Int("/status"), r.status);
    EXPECT_TRUE(fake_.Requests().empty()) << "the upstream was called";
  }

  void ExpectUnauthenticated(const std::string& key, const std::optional<std::string>& caller,
                             const std::string& error) {
    const std::string body = R"({"name":"ci"})";
    Json line;
    HttpResponse r = CallAudited("POST", "/devo" + kTokens + "?first=1", key, body, &line);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(line.String("/decision"), "unauthenticated");
    if (caller) {
      EXPECT_EQ(line.String("/caller"), *caller);
    } else {
      EXPECT_TRUE(line.IsNull("/caller")) << line.String("/caller");
    }
    EXPECT_EQ(line.String("/error"), error);
    EXPECT_EQ(line.String("/upstream"), "devo");
    EXPECT_EQ(line.String("/path"), kTokens);
    EXPECT_EQ(line.String("/query"), "first=1");
    EXPECT_TRUE(line.IsNull("/rule"));
    EXPECT_TRUE(line.IsNull("/bucket"));
    EXPECT_TRUE(line.IsNull("/remaining"));
    ExpectNotForwarded(line, r, body);
    EXPECT_EQ(ReadFile(gateway_->audit_path()).find(key), std::string::npos);
  }

  int calls_ = 0;
};

TEST_F(AuditFieldsTest, Allowed) {
  // Held at the fake for 300 ms: upstream_ms cannot be less, latency_ms not less than that.
  fake_.SetBehaviour(kTokens, 300);
  const std::string body = R"({"name":"audit-fields-token"})";
  Json line;
  HttpResponse r =
      CallAudited("POST", "/devo" + kTokens + "?first=2&token=t0p", kDataKey, body, &line);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(line.String("/decision"), "allowed");
  EXPECT_EQ(line.Int("/status"), 201);
  EXPECT_EQ(line.Int("/upstream_status"), 201);
  EXPECT_EQ(line.String("/caller"), "data-team");
  EXPECT_EQ(line.String("/method"), "POST");
  EXPECT_EQ(line.String("/upstream"), "devo");
  EXPECT_EQ(line.String("/path"), kTokens);
  EXPECT_EQ(line.String("/query"), "first=2&token=***");
  EXPECT_EQ(line.String("/rule"), "/v2/accounts/{account}/tokens");
  EXPECT_EQ(line.Int("/bytes_in"), static_cast<int64_t>(body.size()));
  EXPECT_EQ(line.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
  EXPECT_GT(r.body.size(), 0u);
  // The fake's x-devo-cid, which the caller got too.
  ASSERT_FALSE(r.Header("x-devo-cid").empty());
  EXPECT_EQ(line.String("/upstream_request_id"), r.Header("x-devo-cid"));
  const double upstream_ms = Number(line, "/upstream_ms");
  EXPECT_GE(upstream_ms, 300.0);
  EXPECT_LE(upstream_ms, Number(line, "/latency_ms"));
  // 100 tokens, one taken: the level after the call, as the caller was told.
  EXPECT_EQ(line.String("/bucket"), "fields");
  EXPECT_EQ(Number(line, "/remaining"), 99.0);
  EXPECT_EQ(r.Header("ratelimit-remaining"), "99");
  EXPECT_TRUE(line.IsNull("/error"));
  // The upstream got the body and the gateway's credential, never the caller's key.
  auto seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(seen[0].Header("standAloneToken"), fake_.options().devo_token);
  EXPECT_FALSE(seen[0].HasHeader("Authorization"));
  for (const auto& [name, value] : seen[0].headers) {
    EXPECT_EQ(value.find(kDataKey), std::string::npos) << name;
  }
}

TEST_F(AuditFieldsTest, AllowedButTheUpstreamFailed) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 500);
  Json line;
  HttpResponse r = CallAudited("GET", "/devin/v3beta1/enterprise/self", kDataKey, "", &line);
  ASSERT_EQ(r.status, 500);
  EXPECT_EQ(line.String("/decision"), "allowed");
  EXPECT_EQ(line.Int("/status"), 500);
  EXPECT_EQ(line.Int("/upstream_status"), 500);
  EXPECT_EQ(line.String("/rule"), "/v3beta1/enterprise/**");
  EXPECT_EQ(line.Int("/bytes_in"), 0);
  EXPECT_EQ(line.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
  EXPECT_GT(r.body.size(), 0u);
  EXPECT_TRUE(line.IsNull("/upstream_request_id"));  // Devin's fake sends none
  EXPECT_GT(Number(line, "/upstream_ms"), 0.0);
  EXPECT_LE(Number(line, "/upstream_ms"), Number(line, "/latency_ms"));
  EXPECT_TRUE(line.IsNull("/bucket"));  // no limit applies to this rule
  EXPECT_TRUE(line.IsNull("/remaining"));
  EXPECT_TRUE(line.IsNull("/error"));
}

TEST_F(AuditFieldsTest, UpstreamRequestIdFallsBackToTheUpstreamsXRequestId) {
  // Devin answers with its own X-Request-Id (no x-devo-cid): the audit line keeps it, so an
  // operator can quote it to the upstream's support; the caller sees only the gateway's id.
  FakeBehaviour b;
  b.prefix = "/v3beta1/enterprise/self";
  b.headers = {{"X-Request-Id", "devin-req-4711"}};
  fake_.SetBehaviour(b);
  Json line;
  HttpResponse r = CallAudited("GET", "/devin/v3beta1/enterprise/self", kDataKey, "", &line);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(line.String("/upstream_request_id"), "devin-req-4711");
  EXPECT_EQ(r.HeaderCount("x-request-id"), 1u);
  EXPECT_EQ(r.Header("x-request-id"), line.String("/request_id"));
  EXPECT_NE(r.Header("x-request-id"), "devin-req-4711");
}

TEST_F(AuditFieldsTest, UnauthenticatedUnknownKey) {
  ExpectUnauthenticated("tg_audit_fields_unknown_key", std::nullopt, "unknown key");
}

TEST_F(AuditFieldsTest, UnauthenticatedMissingKey) {
  const std::string body = R"({"name":"ci"})";
  Json line;
  HttpResponse r = CallAudited("POST", "/devo" + kTokens, "", body, &line);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(line.String("/decision"), "unauthenticated");
  EXPECT_TRUE(line.IsNull("/caller"));
  EXPECT_EQ(line.String("/error"), "missing credentials: send Authorization: Bearer <key>");
  ExpectNotForwarded(line, r, body);
}

// A disabled or expired key names its caller (who tried matters to whoever reads the log).
TEST_F(AuditFieldsTest, UnauthenticatedDisabledKeyNamesTheCaller) {
  ExpectUnauthenticated(kDisabledKey, "disabled-team", "caller is disabled");
}

TEST_F(AuditFieldsTest, UnauthenticatedExpiredKeyNamesTheCaller) {
  ExpectUnauthenticated(kExpiredKey, "expired-team", "caller key has expired");
}

// A deny rule names itself as the rule; a path no rule allows has none.
TEST_F(AuditFieldsTest, Forbidden) {
  Json line;
  HttpResponse r =
      CallAudited("GET", "/devin/v3beta1/enterprise/audit-logs?first=1", kDataKey, "", &line);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(line.String("/decision"), "forbidden");
  EXPECT_EQ(line.String("/caller"), "data-team");
  EXPECT_EQ(line.String("/rule"), "/v3beta1/enterprise/audit-logs");
  EXPECT_EQ(line.String("/error"),
            "caller 'data-team' may not GET /v3beta1/enterprise/audit-logs on devin");
  EXPECT_TRUE(line.IsNull("/bucket"));
  EXPECT_TRUE(line.IsNull("/remaining"));
  ExpectNotForwarded(line, r, "");

  const std::string body = R"({"prompt":"x"})";
  r = CallAudited("POST", "/devin/v3beta1/organizations/org-123/sessions", kDataKey, body, &line);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(line.String("/decision"), "forbidden");
  EXPECT_TRUE(line.IsNull("/rule"));
  ExpectNotForwarded(line, r, body);
}

TEST_F(AuditFieldsTest, RateLimited) {
  const std::string orgs = "/devin/v3beta1/enterprise/organizations";
  Json first;
  HttpResponse r = CallAudited("GET", orgs, kDataKey, "", &first);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(first.String("/bucket"), "tiny");
  EXPECT_EQ(Number(first, "/remaining"), 0.0);
  fake_.ClearRequests();

  Json line;
  r = CallAudited("GET", orgs, kDataKey, "", &line);
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(line.String("/decision"), "rate_limited");
  EXPECT_EQ(line.String("/caller"), "data-team");
  EXPECT_EQ(line.String("/rule"), "/v3beta1/enterprise/organizations");
  EXPECT_EQ(line.String("/bucket"), "tiny");
  EXPECT_EQ(Number(line, "/remaining"), 0.0);
  EXPECT_EQ(r.Header("ratelimit-remaining"), "0");
  EXPECT_EQ(line.String("/error"), "rate limit 'tiny' exceeded");
  ExpectNotForwarded(line, r, "");
}

TEST_F(AuditFieldsTest, BadRequest) {
  Json line;
  HttpResponse r = CallAudited("GET", "/devin/a/%2e%2e/b?token=x1", kDataKey, "", &line);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(line.String("/decision"), "bad_request");
  EXPECT_TRUE(line.IsNull("/caller"));  // refused before authentication
  EXPECT_EQ(line.String("/upstream"), "");
  EXPECT_EQ(line.String("/path"), "/devin/a/%2e%2e/b");
  EXPECT_TRUE(line.IsNull("/rule"));
  EXPECT_EQ(line.String("/error").rfind("invalid request target: ", 0), 0u)
      << line.String("/error");
  EXPECT_TRUE(line.IsNull("/bucket"));
  EXPECT_TRUE(line.IsNull("/remaining"));
  ExpectNotForwarded(line, r, "");
}

TEST_F(AuditFieldsTest, NotFound) {
  Json line;
  HttpResponse r = CallAudited("GET", "/github/repos?secret=s3", kDataKey, "", &line);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(line.String("/decision"), "not_found");
  EXPECT_TRUE(line.IsNull("/caller"));
  EXPECT_EQ(line.String("/upstream"), "");
  EXPECT_EQ(line.String("/path"), "/github/repos");
  EXPECT_EQ(line.String("/query"), "secret=***");
  EXPECT_TRUE(line.IsNull("/rule"));
  EXPECT_EQ(line.String("/error"), "no upstream named 'github' (paths are /{upstream}/...)");
  ExpectNotForwarded(line, r, "");
}

// Connection refused: the caller gets a generic 502; the audit record keeps libcurl's reason.
TEST_F(AuditFieldsTest, UpstreamUnavailable502) {
  const std::string body = R"({"a":1})";
  Json line;
  HttpResponse r = CallAudited("POST", "/nowhere/x", kDataKey, body, &line);
  ASSERT_EQ(r.status, 502);
  EXPECT_EQ(line.String("/decision"), "error");
  EXPECT_EQ(line.Int("/status"), 502);
  EXPECT_EQ(line.String("/caller"), "data-team");
  EXPECT_EQ(line.String("/rule"), "/**");
  EXPECT_TRUE(line.IsNull("/upstream_status"));
  EXPECT_TRUE(line.IsNull("/upstream_request_id"));
  const double upstream_ms = Number(line, "/upstream_ms");  // the failed attempt's time
  EXPECT_GE(upstream_ms, 0.0);
  EXPECT_LE(upstream_ms, Number(line, "/latency_ms"));
  EXPECT_EQ(line.Int("/bytes_in"), static_cast<int64_t>(body.size()));
  EXPECT_EQ(line.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
  EXPECT_EQ(Json::Parse(r.body).String("/error/message"), "upstream 'nowhere' is unavailable");
  const std::string error = line.String("/error");
  EXPECT_FALSE(error.empty());
  EXPECT_NE(error, "upstream 'nowhere' is unavailable");  // libcurl's text, for the operator
}

TEST_F(AuditFieldsTest, UpstreamTimeout504) {
  fake_.SetBehaviour("/v2/slow", 6000);  // devo's timeout_ms is 2000
  Json line;
  HttpResponse r = CallAudited("GET", "/devo/v2/slow/x", kDataKey, "", &line);
  ASSERT_EQ(r.status, 504);
  EXPECT_EQ(line.String("/decision"), "error");
  EXPECT_EQ(line.Int("/status"), 504);
  EXPECT_EQ(line.String("/rule"), "/v2/slow/**");
  EXPECT_TRUE(line.IsNull("/upstream_status"));
  EXPECT_TRUE(line.IsNull("/upstream_request_id"));
  const double upstream_ms = Number(line, "/upstream_ms");
  EXPECT_GE(upstream_ms, 1900.0);  // the 2000 ms timeout, give or take libcurl's timer slack
  EXPECT_LE(upstream_ms, Number(line, "/latency_ms"));
  EXPECT_EQ(line.Int("/bytes_in"), 0);
  EXPECT_EQ(line.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
  EXPECT_EQ(line.String("/error"), "upstream 'devo' did not answer within 2000 ms");
}

// Secret-looking query values are masked; credential headers a caller sends (its key, Devo's
// standAloneToken and x-logtrust-* names) appear nowhere in the audit file, and neither do the
// upstream secrets the gateway injected.
TEST_F(AuditFieldsTest, NoSecretReachesTheAuditFile) {
  const std::string query =
      "first=2&token=q-token&standAloneToken=q-sat&x-logtrust-sign=q-sign&signature=q-sig&"
      "password=q-pass&client_secret=q-secret&api%5Fkey=q-key&Authorization=q-auth";
  Json line;
  HttpResponse r = CallAudited("GET", "/devo" + kTokens + "?" + query, kDataKey, "", &line,
                               {{"standAloneToken", "h-caller-sat"},
                                {"x-logtrust-apikey", "h-caller-apikey"},
                                {"x-logtrust-sign", "h-caller-sign"},
                                {"Cookie", "session=h-cookie"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(line.String("/query"),
            "first=2&token=***&standAloneToken=***&x-logtrust-sign=***&signature=***&"
            "password=***&client_secret=***&api%5Fkey=***&Authorization=***");
  // The devo-query upstream signs with the HMAC key and secret.
  HttpResponse q = CallAudited("POST", "/devo-query/search/query", kDataKey, "{}", &line);
  ASSERT_EQ(q.status, 200) << q.body;
  gateway_->Stop();
  const std::string audit = ReadFile(gateway_->audit_path());
  for (const std::string& secret :
       {kDataKey, fake_.options().devo_token, fake_.options().devo_hmac_key,
        fake_.options().devo_hmac_secret, std::string("q-token"), std::string("q-sat"),
        std::string("q-sign"), std::string("q-sig"), std::string("q-pass"), std::string("q-secret"),
        std::string("q-key"), std::string("q-auth"), std::string("h-caller"),
        std::string("h-cookie")}) {
    EXPECT_EQ(audit.find(secret), std::string::npos) << "the audit file holds " << secret;
  }
  // The caller's credential headers did not reach the upstream either.
  for (const auto& seen : fake_.Requests()) {
    for (const auto& [name, value] : seen.headers) {
      EXPECT_EQ(value.find("h-caller"), std::string::npos) << name;
      EXPECT_EQ(value.find(kDataKey), std::string::npos) << name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The audit stream on a Redis that needs AUTH with an ACL user, in database 3 (from the URL).

redisContext* Connect(int port) {
  redisContext* ctx = redisConnect("127.0.0.1", port);
  EXPECT_TRUE(ctx != nullptr && ctx->err == 0);
  return ctx;
}

std::string Reply(redisContext* ctx, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (reply == nullptr) return "(no reply)";
  std::string out;
  if (reply->type == REDIS_REPLY_INTEGER) {
    out = std::to_string(reply->integer);
  } else if (reply->str != nullptr) {
    out.assign(reply->str, reply->len);
  } else if (reply->type == REDIS_REPLY_ARRAY) {
    // XRANGE: the `record` field of each entry, one per line.
    for (size_t i = 0; i < reply->elements; ++i) {
      const redisReply* fields = reply->element[i]->element[1];
      out.append(fields->element[1]->str, fields->element[1]->len).push_back('\n');
    }
  }
  freeReplyObject(reply);
  return out;
}

class AuditStreamTest : public GatewayTest {};

TEST_F(AuditStreamTest, AuthenticatesAndSelectsTheDatabaseOfTheUrl) {
  RedisServer redis;
  ASSERT_TRUE(redis.running());
  redisContext* admin = Connect(redis.port());
  ASSERT_EQ(Reply(admin, {"ACL", "SETUSER", "gateway", "on", ">gateway-pw", "~*", "+@all"}), "OK");
  ASSERT_EQ(Reply(admin, {"CONFIG", "SET", "requirepass", "admin-pw"}), "OK");
  redisFree(admin);

  GatewayOptions options = StandardOptions(fake_, StandardConfig(R"(
  "redis": {"url": "redis://127.0.0.1:${REDIS_PORT}/3", "username": "gateway",
            "password_env": "IT_REDIS_PASSWORD"},)"));
  // The standard audit block gains the stream.
  const std::string plain = R"("audit": {"file": "${AUDIT}"},)";
  options.config.replace(options.config.find(plain), plain.size(),
                         R"("audit": {"file": "${AUDIT}", "redis_stream": "tollgate:audit"},)");
  options.vars["REDIS_PORT"] = std::to_string(redis.port());
  options.env["IT_REDIS_PASSWORD"] = "gateway-pw";
  gateway_ = std::make_unique<GatewayProcess>(options);
  ASSERT_TRUE(gateway_->started()) << gateway_->log();

  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "",
                        {{"X-Request-Id", "stream-auth-1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(gateway_->Stop(), 0) << gateway_->log();  // flushes the audit log

  redisContext* probe = Connect(redis.port());
  ASSERT_EQ(Reply(probe, {"AUTH", "admin-pw"}), "OK");
  EXPECT_EQ(Reply(probe, {"EXISTS", "tollgate:audit"}), "0") << "records went to db 0";
  ASSERT_EQ(Reply(probe, {"SELECT", "3"}), "OK");
  const std::string records = Reply(probe, {"XRANGE", "tollgate:audit", "-", "+"});
  redisFree(probe);
  const Json record = Json::Parse(records.substr(0, records.find('\n')));
  EXPECT_EQ(record.String("/request_id"), "stream-auth-1") << records;
  EXPECT_EQ(record.String("/caller"), "data-team");
  EXPECT_EQ(records, ReadFile(gateway_->audit_path()));  // the same line as the file's
}

}  // namespace
}  // namespace tollgate::testing
