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

  int Raw(const std::string& method, const std::string& target) {
    std::string req = method + " " + target +
                      " HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + kDataKey +
                      "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    return StatusOf(RawExchange(gateway_->listen_port(), req));
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

TEST_F(PolicyTest, BypassSpellingsAreAllRefusedAndNeverForwarded) {
  // Each tries to reach audit-logs (forbidden) or another organisation's sessions.
  const std::vector<std::string> targets = {
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
      "/devin/v3beta1/enterprise/self/%u002e%u002e/audit-logs",
      "/devin/v3beta1/enterprise/self/%2/audit-logs",
      "/devin/v3beta1/enterprise/self/%/audit-logs",
      "/devin/v3beta1/enterprise/self/%zz/audit-logs",
      "/devin/./v3beta1/enterprise/audit-logs",
      "/devin/../devin/v3beta1/enterprise/audit-logs",
      "/%64evin/v3beta1/enterprise/audit-logs",
      "/devin/V3BETA1/enterprise/audit-logs",
      "/devin/v3beta1/enterprise/self/%2e%2e/%2e%2e/enterprise/audit-logs",
      "/devin/v3beta1/enterprise/self/%09/../audit-logs",
      "/devin/v3beta1/enterprise/self%23/../audit-logs",
      "http://127.0.0.1/devin/v3beta1/enterprise/audit-logs",
      "//127.0.0.1/devin/v3beta1/enterprise/audit-logs",
      "127.0.0.1:80",
      "*",
      "/devin/v3beta1/organizations/org-123/../org-456/sessions",
      "/devin/v3beta1/organizations/org-123%2f..%2forg-456/sessions",
      "/devin/v3beta1/organizations/org-123/sessions/../../org-456/sessions",
      "/devin/v3beta1/organizations/org-456/sessions",
      "/devin/v3beta1/organizations/ORG-123/sessions",
      "/devin/v3beta1/organizations/org-123%2F/sessions",
      "/devin/v3beta1/organizations/%2e%2e/sessions",
  };
  ASSERT_GE(targets.size(), 30u);
  for (const auto& t : targets) {
    int status = Raw("GET", t);
    EXPECT_TRUE(status == 400 || status == 403 || status == 404) << t << " -> " << status;
  }
  // Method overrides do not turn a refused POST into an allowed GET, or the reverse.
  HttpResponse overridden = Call("POST", "/devin/v3beta1/enterprise/self", kDataKey, "{}",
                                 {{"X-HTTP-Method-Override", "GET"}});
  EXPECT_EQ(overridden.status, 403);
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

  HttpResponse list = Call("GET", "/devo/v2/accounts/sampleAccount/tokens");
  ASSERT_EQ(list.status, 200);
  Json l = Json::Parse(list.body);
  ASSERT_GT(l.Size(""), 0u);
  std::string id = l.String("/0/id");
  HttpResponse one = Call("GET", "/devo/v2/accounts/sampleAccount/tokens/" + id);
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_FALSE(Json::Parse(one.body).Has("/token")) << one.body;
  // The upstream did send the value: the gateway removed it.
  EXPECT_EQ(Call("GET", "/devo/v2/accounts/otherAccount/tokens").status, 403);
}

TEST_F(PolicyTest, NonJsonBodyOnARedactedRouteIsWithheld) {
  // The route's rule redacts "/token" and "/*/token"; the gateway cannot redact what it cannot
  // parse, so a 2xx body that is not JSON must not reach the caller at all.
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

  // Redaction applies to 2xx only; an upstream error body passes through untouched.
  FakeBehaviour missing;
  missing.prefix = route + "missing";
  missing.status = 404;
  missing.body = "<html>no such token=abc</html>";
  missing.content_type = "text/html";
  fake_.SetBehaviour(missing);
  HttpResponse passed = Call("GET", "/devo" + route + "missing");
  EXPECT_EQ(passed.status, 404);
  EXPECT_EQ(passed.body, "<html>no such token=abc</html>");
  EXPECT_EQ(passed.Header("Content-Type"), "text/html");

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
