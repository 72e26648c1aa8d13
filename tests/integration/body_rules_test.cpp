// Body rules and the cost read from the body (issue 12), against the fake Devin: what the fake
// received is what the rules made of the caller's body; a refusal forwards nothing.
#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

constexpr const char* kCreate = "/devin/v3/organizations/org-123/sessions";

// The data team's one rule: creating sessions, with the issue's body rules. `cap` is the
// max_acu_limit rule's operators.
std::string Rules(const std::string& cap) {
  return R"([
    {"upstream": "devin", "methods": ["POST"], "path": "/v3/organizations/{org}/sessions",
     "cost": "/max_acu_limit",
     "limits": [{"name": "acu", "quota": "10/day", "scope": "caller"},
                {"name": "creates", "rate": "1/h", "burst": 2, "scope": "caller"}],
     "body": {
       "/max_acu_limit": )" +
         cap + R"(,
       "/devin_mode": {"enum": ["normal"]},
       "/advanced_mode": {"forbid": true},
       "/tags": {"append": ["team:{caller}"]},
       "/create_as_user_id": {"set": "caller.devin_orgs"}
     }},
    {"upstream": "devin", "methods": ["GET"], "path": "/v3/organizations/{org}/sessions"},
    {"upstream": "devo-query", "methods": ["POST"], "path": "/search/query",
     "body": {"/limit": {"max": 100, "on_exceed": "clamp"}}}])";
}

const std::string kClamp = R"({"max": 8, "default": 2, "on_exceed": "clamp"})";
const std::string kReject = R"({"max": 8, "default": 2, "on_exceed": "reject"})";

class BodyRulesTest : public GatewayTest {
 protected:
  void Start(const std::string& cap) { StartGateway(StandardConfig("", Rules(cap))); }

  // The one create the fake received, as JSON.
  Json Received() {
    auto seen = fake_.Requests();
    EXPECT_EQ(seen.size(), 1u);
    if (seen.empty()) return Json::Parse("");
    EXPECT_EQ(seen[0].Header("Content-Length"), std::to_string(seen[0].body.size()));
    return Json::Parse(seen[0].body);
  }

  // The audit line of the request with this status (the last one).
  Json AuditOf(int status) {
    auto lines = gateway_->WaitForAuditLines(1);
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
      if (it->Int("/status") == status) return *it;
    }
    ADD_FAILURE() << "no audit line with status " << status;
    return Json::Parse("");
  }
};

TEST_F(BodyRulesTest, ACreateOverTheCapIsClampedAndTheFakeReceivesTheClampedValue) {
  Start(kClamp);
  HttpResponse r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","max_acu_limit":80})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = Received();
  EXPECT_EQ(sent.Int("/max_acu_limit"), 8);
  EXPECT_EQ(sent.String("/prompt"), "hi");
  Json audit = AuditOf(200);
  ASSERT_EQ(audit.Size("/body_rules"), 3u) << ReadFile(gateway_->audit_path());
  EXPECT_EQ(audit.String("/body_rules/0"), "/max_acu_limit");
  EXPECT_EQ(audit.String("/body_rules/1"), "/tags");
  EXPECT_EQ(audit.String("/body_rules/2"), "/create_as_user_id");
}

TEST_F(BodyRulesTest, ACreateOverTheCapIsRefusedWhenTheRuleRejectsAndNothingIsForwarded) {
  Start(kReject);
  HttpResponse r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","max_acu_limit":80})");
  ASSERT_EQ(r.status, 403) << r.body;
  Json body = Json::Parse(r.body);
  EXPECT_EQ(body.String("/error/reason"), "body_rule") << r.body;
  EXPECT_NE(r.body.find("/max_acu_limit"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("8"), std::string::npos) << r.body;
  EXPECT_TRUE(fake_.Requests().empty());
  EXPECT_EQ(AuditOf(403).String("/decision"), "forbidden");
  // No token was taken: a create costing the whole burst still passes.
  r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","max_acu_limit":8})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(BodyRulesTest, FastModeIsRefusedForARoleWithoutIt) {
  Start(kClamp);
  HttpResponse r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","devin_mode":"fast"})");
  ASSERT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "body_rule");
  EXPECT_NE(r.body.find("/devin_mode"), std::string::npos) << r.body;
  r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","advanced_mode":true})");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_TRUE(fake_.Requests().empty());
  r = Call("POST", kCreate, kDataKey, R"({"prompt":"hi","devin_mode":"normal"})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(BodyRulesTest, TagsGetTheTeamAndCreateAsUserIdComesFromTheCallerNeverFromTheBody) {
  Start(kClamp);
  HttpResponse r = Call("POST", kCreate, kDataKey,
                        R"({"prompt":"hi","tags":["mine"],"create_as_user_id":"someone-else"})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = Received();
  ASSERT_EQ(sent.Size("/tags"), 2u);
  EXPECT_EQ(sent.String("/tags/0"), "mine");
  EXPECT_EQ(sent.String("/tags/1"), "team:data-team");
  EXPECT_EQ(sent.String("/create_as_user_id"), "org-123");  // the caller's single attribute value
  EXPECT_EQ(sent.Int("/max_acu_limit"), 2);                 // the default
}

TEST_F(BodyRulesTest, TheCostReadFromTheBodyChargesThatManyTokens) {
  Start(kClamp);
  // The ACU quota is 10 a day: 6 then 6 cannot both pass; 6 then 4 can. The "creates" bucket
  // (burst 2) counts requests, not ACUs: a create of 6 ACUs takes one of its tokens.
  ASSERT_EQ(Call("POST", kCreate, kDataKey, R"({"prompt":"a","max_acu_limit":6})").status, 200);
  HttpResponse r = Call("POST", kCreate, kDataKey, R"({"prompt":"b","max_acu_limit":6})");
  EXPECT_EQ(r.status, 429) << r.body;
  r = Call("POST", kCreate, kDataKey, R"({"prompt":"c","max_acu_limit":3.2})");  // rounds to 4
  EXPECT_EQ(r.status, 200) << r.body;
  r = Call("POST", kCreate, kDataKey, R"({"prompt":"d","max_acu_limit":1})");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(fake_.Requests().size(), 2u);
}

TEST_F(BodyRulesTest, ADevoHmacBodyIsSignedAfterItWasRewritten) {
  Start(kClamp);
  // The fake Devo answers 401 unless the signature covers the body it received.
  HttpResponse r =
      Call("POST", "/devo-query/search/query", kDataKey, R"({"query":"from x","limit":1000})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json sent = Received();
  EXPECT_EQ(sent.Int("/limit"), 100);
  EXPECT_EQ(sent.String("/query"), "from x");
}

TEST_F(BodyRulesTest, ABodyThatIsNotAJsonObjectIsRefusedWith400) {
  Start(kClamp);
  for (const char* body : {"[1,2]", "not json", "\"x\""}) {
    HttpResponse r = Call("POST", kCreate, kDataKey, body);
    EXPECT_EQ(r.status, 400) << body << ": " << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "body_rule") << r.body;
  }
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(BodyRulesTest, ExplainWithABodyAgreesWithWhatServeForwards) {
  Start(kClamp);
  const std::string body = R"({"prompt":"hi","max_acu_limit":80,"tags":["x"]})";
  TempDir dir;
  std::string path = dir.Write("body.json", body);
  std::string out;
  int rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", gateway_->config_path(), "--caller",
                       "data-team", "--body", path, "POST", kCreate},
                      &out, StandardOptions(fake_, "").env);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("body rule:  /max_acu_limit: clamped to 8"), std::string::npos) << out;
  EXPECT_NE(out.find("cost:       8 (from /max_acu_limit)"), std::string::npos) << out;
  EXPECT_NE(out.find("cost=8"), std::string::npos) << out;

  ASSERT_EQ(Call("POST", kCreate, kDataKey, body).status, 200);
  auto seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(out.find("body:       " + seen[0].body + "\n"), std::string::npos)
      << out << "\nforwarded: " << seen[0].body;

  path = dir.Write("fast.json", R"({"devin_mode":"fast"})");
  rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", gateway_->config_path(), "--caller",
                   "data-team", "--body", path, "POST", kCreate},
                  &out, StandardOptions(fake_, "").env);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("decision:   body_rule (403)"), std::string::npos) << out;
}

}  // namespace
}  // namespace tollgate::testing
