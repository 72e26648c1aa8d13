// Policies end to end (issue 4): a caller allowed only some paths tries to reach a forbidden one
// by every encoding trick we know; each is refused and the upstream never sees it.
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

const char* kNarrowRules = R"([
  {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/self"},
  {"upstream": "devin", "methods": ["GET", "POST"], "path": "/v3beta1/organizations/{org_id}/sessions",
   "where": {"org_id": "caller.devin_orgs"}},
  {"upstream": "devin", "methods": ["POST"], "path": "/v3beta1/enterprise/service-users",
   "redact": ["/token", "/api_key"]},
  {"upstream": "devo", "methods": ["GET"], "path": "/v2/accounts/{account}/tokens/**",
   "where": {"account": "caller.devo_accounts"}, "redact": ["/token", "/*/token"]},
  {"upstream": "devo", "methods": ["GET"], "path": "/v2/accounts/{account}/tokens",
   "where": {"account": "caller.devo_accounts"}, "redact": ["/*/token"]},
  {"upstream": "devin", "effect": "deny", "path": "/v3beta1/organizations/org-123/sessions",
   "methods": ["POST"]}
])";

class PolicyTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig("", kNarrowRules));
  }

  std::string RawResponse(const std::string& method, const std::string& target) {
    std::string req = method + " " + target +
                      " HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + kDataKey +
                      "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    return RawExchange(gateway_->listen_port(), req);
  }
  int Raw(const std::string& method, const std::string& target) {
    return StatusOf(RawResponse(method, target));
  }
};

TEST_F(PolicyTest, AllowedCallsGoThrough) {
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/organizations/org-123/sessions").status, 200);
  EXPECT_EQ(Call("HEAD", "/devin/v3beta1/enterprise/self").status, 200);  // HEAD where GET is
  // Percent-escapes of unreserved characters are decoded once: the same resource.
  EXPECT_EQ(Raw("GET", "/devin/v3beta1/enterprise/%73elf"), 200);
  auto seen = fake_.WaitForRequests(4);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[3].path, "/v3beta1/enterprise/self");  // what was authorised is what is sent
}

TEST_F(PolicyTest, ForbiddenCallsName403WithoutRules) {
  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/audit-logs");
  EXPECT_EQ(r.status, 403);
  Json j = Json::Parse(r.body);
  EXPECT_EQ(j.String("/error/reason"), "forbidden");
  EXPECT_NE(j.String("/error/message").find("GET /v3beta1/enterprise/audit-logs"),
            std::string::npos);
  EXPECT_EQ(j.String("/error/message").find("org_id"), std::string::npos);  // no rule text
  // Scoping: another organisation than the caller's.
  EXPECT_EQ(Call("GET", "/devin/v3beta1/organizations/org-456/sessions").status, 403);
  // Deny wins over allow: POST on the caller's own org is denied by an explicit rule.
  EXPECT_EQ(
      Call("POST", "/devin/v3beta1/organizations/org-123/sessions", kDataKey, R"({"prompt":"x"})")
          .status,
      403);
  // Method not in the rule.
  EXPECT_EQ(Call("DELETE", "/devin/v3beta1/enterprise/self").status, 403);
  EXPECT_TRUE(fake_.Requests().empty());
}

// Spellings of a forbidden target that the normaliser must refuse outright: dot segments
// (raw, encoded, double-encoded, overlong UTF-8), encoded separators, empty segments, path
// parameters, NUL and control bytes, broken escapes, and non-origin forms.
const std::vector<std::string> kMalformedTargets = {
    "/devin/v3beta1/enterprise/self/../audit-logs",
    "/devin/v3beta1/enterprise/self/%2e%2e/audit-logs",
    "/devin/v3beta1/enterprise/self/%2E%2E/audit-logs",
    "/devin/v3beta1/enterprise/self/.%2e/audit-logs",
    "/devin/v3beta1/enterprise/self/%2e./audit-logs",
    "/devin/v3beta1/enterprise/self/%2E%2e/audit-logs",
    "/devin/v3beta1/enterprise/self/%252e%252e/audit-logs",
    "/devin/v3beta1/enterprise/self/%25252e%25252e/audit-logs",
    "/devin/v3beta1/enterprise/self%2f..%2faudit-logs",
    "/devin/v3beta1/enterprise/self%2F..%2Faudit-logs",
    "/devin/v3beta1/enterprise/self%2f%2e%2e%2faudit-logs",
    "/devin/v3beta1/enterprise/self/..%2faudit-logs",
    "/devin/v3beta1/enterprise/self/%2e%2e%2faudit-logs",
    "/devin/v3beta1/enterprise/self%5c..%5caudit-logs",
    "/devin/v3beta1/enterprise/self/..%5caudit-logs",
    "/devin/v3beta1/enterprise/self\\..\\audit-logs",
    "/devin/v3beta1/enterprise//audit-logs",
    "/devin/v3beta1/enterprise/self//../audit-logs",
    "/devin/v3beta1/enterprise/./audit-logs",
    "/devin/v3beta1/enterprise/%2e/audit-logs",
    "/devin/v3beta1/enterprise/self;/../audit-logs",
    "/devin/v3beta1/enterprise/self/..;/audit-logs",
    "/devin/v3beta1/enterprise/self;x=1",
    "/devin/v3beta1/enterprise/self%00/../audit-logs",
    "/devin/v3beta1/enterprise/self/..%00/audit-logs",
    "/devin/v3beta1/enterprise/audit-logs%00",
    "/devin/v3beta1/enterprise/self/%c0%ae%c0%ae/audit-logs",
    "/devin/v3beta1/enterprise/self/%e0%80%ae%e0%80%ae/audit-logs",
    "/devin/v3beta1/enterprise/self/%f0%80%80%ae%f0%80%80%ae/audit-logs",
    "/devin/v3beta1/enterprise/self%f4%90%80%80",
    "/devin/v3beta1/enterprise/self/%u002e%u002e/audit-logs",
    "/devin/v3beta1/enterprise/self/%2/audit-logs",
    "/devin/v3beta1/enterprise/self/%/audit-logs",
    "/devin/v3beta1/enterprise/self/%zz/audit-logs",
    "/devin/./v3beta1/enterprise/audit-logs",
    "/devin/../devin/v3beta1/enterprise/audit-logs",
    "/devin/v3beta1/enterprise/self/%2e%2e/%2e%2e/enterprise/audit-logs",
    "/devin/v3beta1/enterprise/self/%09/../audit-logs",
    "/devin/v3beta1/enterprise/self%23/../audit-logs",
    "/devin/v3beta1/enterprise/self/",
    "http://127.0.0.1/devin/v3beta1/enterprise/audit-logs",
    "//127.0.0.1/devin/v3beta1/enterprise/audit-logs",
    "127.0.0.1:80",
    "*",
    "/devin/v3beta1/organizations/org-123/../org-456/sessions",
    "/devin/v3beta1/organizations/org-123%2f..%2forg-456/sessions",
    "/devin/v3beta1/organizations/org-123/sessions/../../org-456/sessions",
    "/devin/v3beta1/organizations/org-123%2F/sessions",
    "/devin/v3beta1/organizations/%2e%2e/sessions",
};

// Well-formed targets that name something the caller may not call: decoding them (once) or
// comparing case-sensitively must not turn them into an allowed one.
const std::vector<std::string> kForbiddenTargets = {
    "/%64evin/v3beta1/enterprise/audit-logs",
    "/devin/V3BETA1/enterprise/self",
    "/devin/v3beta1/enterprise/Self",
    "/devin/v3beta1/enterprise/self%2e",
    "/devin/v3beta1/enterprise/self%20",
    "/devin/v3beta1/organizations/org-456/sessions",
    "/devin/v3beta1/organizations/ORG-123/sessions",
    "/devin/v3beta1/organizations/org-123%2e/sessions",
};

TEST_F(PolicyTest, MalformedSpellingsAreRefusedAsBadRequestsAndNeverForwarded) {
  // A guard on the list, not the test: the loop below must have something to check.
  ASSERT_FALSE(kMalformedTargets.empty());
  for (const std::string& t : kMalformedTargets) {
    const std::string response = RawResponse("GET", t);
    EXPECT_EQ(StatusOf(response), 400) << t << " -> " << response.substr(0, 200);
  }
  // The same for a method the rules allow on the target it tries to reach (POST on sessions).
  EXPECT_EQ(Raw("POST", "/devin/v3beta1/organizations/org-123/x/../sessions"), 400);
  // Nothing refused reached the upstream; the allowed call after them does, as sent.
  EXPECT_TRUE(fake_.Requests().empty()) << fake_.Requests()[0].target();
  EXPECT_EQ(Raw("GET", "/devin/v3beta1/enterprise/self"), 200);
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target(), "/v3beta1/enterprise/self");
}

TEST_F(PolicyTest, ThePipelineNamesTheNormalisersReason) {
  // A request that reaches the pipeline (the codec has nothing against it) is refused with the
  // JSON envelope naming why, so a caller can tell a bad target from a forbidden one.
  const std::string response = RawResponse("GET", "/devin/v3beta1/enterprise/self/%2e%2e/x");
  ASSERT_EQ(StatusOf(response), 400) << response;
  const std::string body = response.substr(response.find("\r\n\r\n") + 4);
  Json j = Json::Parse(body);
  EXPECT_EQ(j.String("/error/reason"), "bad_request") << body;
  EXPECT_NE(j.String("/error/message").find("dot segment"), std::string::npos) << body;
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(PolicyTest, DecodedOrRecasedSpellingsAreJudgedAsWhatTheyNameAndNeverForwarded) {
  ASSERT_FALSE(kForbiddenTargets.empty());
  for (const std::string& t : kForbiddenTargets) {
    HttpResponse r = Call("GET", t);
    EXPECT_EQ(r.status, 403) << t << " -> " << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "forbidden") << t << " -> " << r.body;
  }
  // Method overrides do not turn a refused POST into an allowed GET, or the reverse.
  for (const char* header : {"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}) {
    HttpResponse overridden =
        Call("POST", "/devin/v3beta1/enterprise/self", kDataKey, "{}", {{header, "GET"}});
    EXPECT_EQ(overridden.status, 403) << header;
  }
  EXPECT_TRUE(fake_.Requests().empty()) << fake_.Requests()[0].target();
}

TEST_F(PolicyTest, MalformedRequestLinesAreRefused) {
  std::string spaced =
      "GET /devin/v3beta1/enterprise/self /../audit-logs HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer " +
      kDataKey + "\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(StatusOf(RawExchange(gateway_->listen_port(), spaced)), 400);
  std::string fragment =
      "GET /devin/v3beta1/enterprise/self#/../audit-logs HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer " +
      kDataKey + "\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(StatusOf(RawExchange(gateway_->listen_port(), fragment)), 400);
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(PolicyTest, ResponseRedactionRemovesSecretsFromJsonBodies) {
  HttpResponse created =
      Call("POST", "/devin/v3beta1/enterprise/service-users", kDataKey, R"({"name":"bot"})");
  ASSERT_EQ(created.status, 201) << created.body;
  Json j = Json::Parse(created.body);
  EXPECT_FALSE(j.Has("/token"));
  EXPECT_FALSE(j.Has("/api_key"));
  EXPECT_TRUE(j.Has("/service_user_id") || j.Has("/id") || j.Has("/name")) << created.body;

  EXPECT_EQ(Call("GET", "/devo/v2/accounts/otherAccount/tokens").status, 403);
}

TEST_F(PolicyTest, TokenValuesNeverReachTheCallerInAListOrASingleAnswer) {
  // What the upstream itself answers (asked directly, with its own credential): every token
  // with its value, in the list and in a single answer.
  const HeaderList devo_auth = {{"standAloneToken", fake_.options().devo_token}};
  const std::string route = "/v2/accounts/sampleAccount/tokens";
  Json upstream = Json::Parse(Http("GET", fake_.base_url() + route, devo_auth).body);
  const size_t count = upstream.Size("");
  ASSERT_GE(count, 2u);
  std::vector<std::string> values;
  for (size_t i = 0; i < count; ++i) {
    values.push_back(upstream.String("/" + std::to_string(i) + "/token"));
    ASSERT_FALSE(values.back().empty()) << "the fake must send values for this test to mean much";
  }
  fake_.ClearRequests();

  // Through the gateway (rule: "redact": ["/*/token"]): the same tokens, names and states, and
  // not one value.
  HttpResponse list = Call("GET", "/devo" + route);
  ASSERT_EQ(list.status, 200) << list.body;
  Json got = Json::Parse(list.body);
  ASSERT_EQ(got.Size(""), count) << list.body;
  for (size_t i = 0; i < count; ++i) {
    const std::string at = "/" + std::to_string(i);
    EXPECT_EQ(got.String(at + "/id"), upstream.String(at + "/id"));
    EXPECT_EQ(got.String(at + "/name"), upstream.String(at + "/name"));
    EXPECT_EQ(got.String(at + "/status"), upstream.String(at + "/status"));
    EXPECT_EQ(got.Bool(at + "/enabled"), upstream.Bool(at + "/enabled"));
    EXPECT_FALSE(got.Has(at + "/token")) << list.body;
  }
  for (const std::string& value : values) {
    EXPECT_EQ(list.body.find(value), std::string::npos) << list.body;
  }

  // A single token (rule: "redact": ["/token", "/*/token"]).
  for (size_t i = 0; i < count; ++i) {
    const std::string id = upstream.String("/" + std::to_string(i) + "/id");
    HttpResponse one = Call("GET", "/devo" + route + "/" + id);
    ASSERT_EQ(one.status, 200) << one.body;
    Json j = Json::Parse(one.body);
    EXPECT_EQ(j.String("/id"), id) << one.body;
    EXPECT_EQ(j.String("/name"), upstream.String("/" + std::to_string(i) + "/name"));
    EXPECT_FALSE(j.Has("/token")) << one.body;
    for (const std::string& value : values) {
      EXPECT_EQ(one.body.find(value), std::string::npos) << one.body;
    }
  }
  // Every answer came from the upstream (values and all): one list and `count` single tokens.
  EXPECT_EQ(fake_.WaitForRequests(1 + count).size(), 1 + count);
}

TEST_F(PolicyTest, NonJsonBodyOnARedactedRouteIsWithheld) {
  // The route's rule redacts "/token" and "/*/token"; the gateway cannot redact what it cannot
  // parse, so a body that is not JSON must not reach the caller at all.
  const std::string route = "/v2/accounts/sampleAccount/tokens/";
  FakeBehaviour page;
  page.prefix = route + "page";
  page.status = 200;
  page.body = "<html>token=abc</html>";
  page.content_type = "text/html";
  fake_.SetBehaviour(page);
  HttpResponse withheld = Call("GET", "/devo" + route + "page");
  EXPECT_EQ(withheld.status, 502) << withheld.body;
  EXPECT_EQ(Json::Parse(withheld.body).String("/error/reason"), "upstream_unavailable")
      << withheld.body;
  EXPECT_EQ(withheld.body.find("token=abc"), std::string::npos) << withheld.body;
  // The upstream did answer: the 502 is the gateway withholding it, not a failed connection.
  ASSERT_EQ(fake_.WaitForRequests(1).size(), 1u);

  // Whatever the status (issue 10 point 2): an error page can carry the token too.
  FakeBehaviour missing;
  missing.prefix = route + "missing";
  missing.status = 404;
  missing.body = "<html>no such token=abc</html>";
  missing.content_type = "text/html";
  fake_.SetBehaviour(missing);
  HttpResponse error_page = Call("GET", "/devo" + route + "missing");
  EXPECT_EQ(error_page.status, 502) << error_page.body;
  EXPECT_EQ(error_page.body.find("token=abc"), std::string::npos) << error_page.body;

  // A 2xx JSON body on the same route is redacted, not withheld.
  FakeBehaviour json;
  json.prefix = route + "json";
  json.status = 200;
  json.body = R"({"id":"t-1","token":"abc"})";
  json.content_type = "application/json";
  fake_.SetBehaviour(json);
  HttpResponse redacted = Call("GET", "/devo" + route + "json");
  ASSERT_EQ(redacted.status, 200) << redacted.body;
  EXPECT_EQ(Json::Parse(redacted.body).String("/id"), "t-1") << redacted.body;
  EXPECT_FALSE(Json::Parse(redacted.body).Has("/token")) << redacted.body;
}

}  // namespace
}  // namespace tollgate::testing

namespace tollgate::testing {
namespace {

// A broad allow rule listed before a redacting one used to win alone: its (empty) redact list
// was the only one applied, and the token values went through. Every matching allow rule's
// redactions apply now (issue 10, with point 2).
TEST_F(GatewayTest, Point2_ABroadAllowRuleListedFirstDoesNotShadowARedactingOne) {
  StartGateway(StandardConfig("", R"([
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo", "methods": ["GET"], "path": "/v2/accounts/{account}/tokens",
         "where": {"account": "caller.devo_accounts"}, "redact": ["/*/token"]}])"));
  const std::string route = "/v2/accounts/sampleAccount/tokens";
  Json upstream = Json::Parse(
      Http("GET", fake_.base_url() + route, {{"standAloneToken", fake_.options().devo_token}})
          .body);
  ASSERT_GE(upstream.Size(""), 1u);
  const std::string value = upstream.String("/0/token");
  ASSERT_FALSE(value.empty());
  HttpResponse list = Call("GET", "/devo" + route);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.body.find(value), std::string::npos) << list.body;
  EXPECT_FALSE(Json::Parse(list.body).Has("/0/token")) << list.body;
  EXPECT_TRUE(Json::Parse(list.body).Has("/0/id")) << list.body;
}

}  // namespace
}  // namespace tollgate::testing
