// Devin v3 through the shipped example config (config/tollgate.example.json) against the fake
// Devin: the roles reach /v3/... as they reach /v3beta1/..., organization secrets only through
// devin-admin, ACU limits only through devin-billing, and an attachment download's 307 reaches
// the caller as Devin sent it: the gateway never follows it to the presigned URL.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/harness.h"
#include "upstream/upstream_auth.h"

namespace tollgate::testing {
namespace {

const std::string kDataKey = "tg_example_data_team_key";
const std::string kPlatformKey = "tg_example_platform_team_key";
// Two callers the test adds, each holding one role alone: the example's callers hold
// devin-admin and devin-billing together, which would hide which of the two grants what.
const std::string kAdminOnlyKey = "tg_v3_admin_only_key_0123456789";
const std::string kBillingOnlyKey = "tg_v3_billing_only_key_0123456789";
// Another team with data-team's roles, in every organization: ownership, not the organization,
// keeps it out of data-team's sessions.
const std::string kOtherTeamKey = "tg_v3_other_team_key_0123456789";

HeaderList Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

// The example's roles and callers (plus the two above), every upstream on the fake, no Redis,
// audit to a file.
std::string ExampleOnTheFake() {
  std::ifstream in(std::string(TOLLGATE_SOURCE_DIR) + "/config/tollgate.example.json");
  std::stringstream text;
  text << in.rdbuf();
  rapidjson::Document doc;
  doc.Parse(text.str().c_str());
  if (doc.HasParseError()) return "";
  auto& alloc = doc.GetAllocator();
  doc["listen"].SetString("${LISTEN}", alloc);
  doc["admin_listen"].SetString("${ADMIN}", alloc);
  doc.RemoveMember("redis");
  doc["audit"].SetObject();
  doc["audit"].AddMember("file", "${AUDIT}", alloc);
  for (auto& up : doc["upstreams"].GetObject()) {
    up.value["base_url"].SetString("${UPSTREAM}", alloc);
  }
  auto add_caller = [&](const char* name, const std::string& key,
                        std::vector<const char*> role_names) {
    rapidjson::Value caller(rapidjson::kObjectType), hashes(rapidjson::kArrayType),
        roles(rapidjson::kArrayType), attributes(rapidjson::kObjectType),
        orgs(rapidjson::kArrayType);
    hashes.PushBack(rapidjson::Value(upstream::Sha256Hex(key).c_str(), alloc), alloc);
    for (const char* role : role_names) roles.PushBack(rapidjson::StringRef(role), alloc);
    orgs.PushBack("*", alloc);
    attributes.AddMember("devin_orgs", orgs, alloc);
    rapidjson::Value user(rapidjson::kArrayType);
    user.PushBack(rapidjson::Value((std::string("user-") + name).c_str(), alloc), alloc);
    attributes.AddMember("devin_user_id", user, alloc);
    caller.AddMember("key_sha256", hashes, alloc);
    caller.AddMember("roles", roles, alloc);
    caller.AddMember("attributes", attributes, alloc);
    doc["callers"].AddMember(rapidjson::StringRef(name), caller, alloc);
  };
  add_caller("v3-admin-only", kAdminOnlyKey, {"devin-admin"});
  add_caller("v3-billing-only", kBillingOnlyKey, {"devin-billing"});
  add_caller("v3-other-team", kOtherTeamKey, {"devin-viewer", "devin-operator"});
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  doc.Accept(w);
  return buf.GetString();
}

class DevinV3Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fake_.started()) << fake_.log();
    GatewayOptions o;
    o.config = ExampleOnTheFake();
    ASSERT_FALSE(o.config.empty());
    o.upstream = fake_.base_url();
    o.env = {{"DEVIN_SERVICE_USER_TOKEN", fake_.options().devin_token},
             {"DEVO_TOKEN", fake_.options().devo_token},
             {"DEVO_API_KEY", fake_.options().devo_hmac_key},
             {"DEVO_API_SECRET", fake_.options().devo_hmac_secret}};
    gateway_ = std::make_unique<GatewayProcess>(o);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }

  HttpResponse Call(const std::string& key, const std::string& method, const std::string& path,
                    const std::string& body = "", HeaderList headers = {}) {
    HeaderList all = Bearer(key);
    all.insert(all.end(), headers.begin(), headers.end());
    return Http(method, gateway_->url() + "/devin" + path, all, body);
  }

  FakeUpstream fake_;
  std::unique_ptr<GatewayProcess> gateway_;
};

TEST_F(DevinV3Test, AttachmentDownloadIs307PassedOnAndNeverFollowed) {
  const std::string multipart =
      "--tgBoundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"log.txt\"\r\n"
      "Content-Type: text/plain\r\n\r\nbuild failed at step 3\r\n--tgBoundary--\r\n";
  HttpResponse up = Call(kDataKey, "POST", "/v3/organizations/org-123/attachments", multipart,
                         {{"Content-Type", "multipart/form-data; boundary=tgBoundary"}});
  ASSERT_EQ(up.status, 200) << up.body;
  std::string id = Json::Parse(up.body).String("/attachment_id");
  ASSERT_FALSE(id.empty()) << up.body;

  fake_.ClearRequests();
  HttpResponse r =
      Call(kDataKey, "GET", "/v3/organizations/org-123/attachments/" + id + "/log.txt");
  ASSERT_EQ(r.status, 307) << r.body;
  std::string location = r.Header("Location");
  const std::string presigned = "http://localhost:" + std::to_string(fake_.port()) + "/presigned/";
  EXPECT_EQ(location.rfind(presigned + id + "/log.txt?", 0), 0u) << location;
  EXPECT_NE(location.find("X-Amz-Signature="), std::string::npos) << location;
  EXPECT_EQ(r.body.find("build failed"), std::string::npos) << "the gateway fetched the file";

  // The fake saw the API call and nothing else: no request for the presigned URL.
  std::vector<RecordedRequest> seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].path, "/v3/organizations/org-123/attachments/" + id + "/log.txt");
  // The caller follows the Location itself (here on 127.0.0.1, the fake's address).
  std::string direct = "http://127.0.0.1:" + location.substr(location.find(':', 7) + 1);
  HttpResponse file = Http("GET", direct);
  EXPECT_EQ(file.status, 200);
  EXPECT_EQ(file.body, "build failed at step 3");
  seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].path.rfind("/presigned/", 0), 0u);
  EXPECT_FALSE(seen[1].HasHeader("Authorization")) << "the service user's token left the gateway";

  // Only in the caller's own organizations.
  EXPECT_EQ(
      Call(kDataKey, "GET", "/v3/organizations/org-456/attachments/" + id + "/log.txt").status,
      403);
}

TEST_F(DevinV3Test, OperatorDrivesV3SessionsInItsOwnOrganization) {
  fake_.ClearRequests();
  HttpResponse created =
      Call(kDataKey, "POST", "/v3/organizations/org-123/sessions",
           R"({"prompt":"fix the build","tags":["mine"],"create_as_user_id":"user-admin"})",
           {{"Content-Type", "application/json"}});
  ASSERT_EQ(created.status, 200) << created.body;
  std::string id = Json::Parse(created.body).String("/session_id");
  // The example's cost governance reached Devin: the default ACU cap, the team's tag, the
  // team's own Devin user (whatever the caller sent).
  std::vector<RecordedRequest> sent = fake_.WaitForRequests(1);
  ASSERT_EQ(sent.size(), 1u);
  Json body = Json::Parse(sent[0].body);
  EXPECT_EQ(body.Int("/max_acu_limit"), 10) << sent[0].body;
  EXPECT_EQ(body.String("/tags/1"), "team:data-team") << sent[0].body;
  EXPECT_EQ(body.String("/create_as_user_id"), "user-data-team-svc") << sent[0].body;
  // Another team with the same roles creates one too; neither sees the other's.
  HttpResponse theirs = Call(kOtherTeamKey, "POST", "/v3/organizations/org-123/sessions",
                             R"({"prompt":"other"})", {{"Content-Type", "application/json"}});
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  std::string session = "/v3/organizations/org-123/sessions/" + id;
  EXPECT_EQ(Call(kDataKey, "POST", session + "/messages", R"({"message":"and the tests"})",
                 {{"Content-Type", "application/json"}})
                .status,
            200);
  HttpResponse messages = Call(kDataKey, "GET", session + "/messages");
  EXPECT_EQ(Json::Parse(messages.body).String("/items/0/message"), "and the tests");
  EXPECT_EQ(Call(kDataKey, "GET", session).status, 200);
  // The list's tags are forced to the team's: whatever the caller asks, its own session only.
  for (const char* query : {"", "?tags=anything", "?tags=team:v3-other-team"}) {
    HttpResponse list =
        Call(kDataKey, "GET", std::string("/v3/organizations/org-123/sessions") + query);
    ASSERT_EQ(list.status, 200) << list.body;
    ASSERT_EQ(Json::Parse(list.body).Size("/items"), 1u) << query << ": " << list.body;
    EXPECT_EQ(Json::Parse(list.body).String("/items/0/session_id"), id) << list.body;
  }
  // Ownership: the other team is refused data-team's session (it holds the same roles and
  // reaches org-123), and data-team is refused the other team's.
  EXPECT_EQ(Call(kOtherTeamKey, "GET", session).status, 403);
  EXPECT_EQ(Call(kOtherTeamKey, "GET", session + "/messages").status, 403);
  EXPECT_EQ(
      Call(kDataKey, "GET",
           "/v3/organizations/org-123/sessions/" + Json::Parse(theirs.body).String("/session_id"))
          .status,
      403);
  EXPECT_EQ(Call(kDataKey, "GET", "/v3/organizations/org-456/sessions").status, 403);
  EXPECT_EQ(Call(kDataKey, "POST", "/v3/organizations/org-456/sessions", R"({"prompt":"x"})",
                 {{"Content-Type", "application/json"}})
                .status,
            403);
  EXPECT_EQ(Call(kDataKey, "DELETE", session).status, 403);
}

TEST_F(DevinV3Test, SecretsAreAdminOnly) {
  const std::string secrets = "/v3/organizations/org-123/secrets";
  const std::string body = R"({"key":"NPM_TOKEN","value":"v"})";
  HeaderList json = {{"Content-Type", "application/json"}};
  fake_.ClearRequests();
  EXPECT_EQ(Call(kDataKey, "GET", secrets).status, 403);
  EXPECT_EQ(Call(kDataKey, "POST", secrets, body, json).status, 403);
  EXPECT_EQ(Call(kDataKey, "GET", "/v3beta1/organizations/org-123/secrets").status, 403);
  EXPECT_TRUE(fake_.Requests().empty());
  HttpResponse created = Call(kPlatformKey, "POST", secrets, body, json);
  ASSERT_EQ(created.status, 200) << created.body;
  HttpResponse list = Call(kPlatformKey, "GET", secrets);
  EXPECT_EQ(Json::Parse(list.body).String("/items/0/key"), "NPM_TOKEN");
  // devin-admin is what grants them: alone it is enough, devin-billing alone is not.
  EXPECT_EQ(Call(kAdminOnlyKey, "GET", secrets).status, 200);
  EXPECT_EQ(Call(kBillingOnlyKey, "GET", secrets).status, 403);
}

TEST_F(DevinV3Test, AcuLimitsAreBillingOnly) {
  const std::string org = "/v3/enterprise/consumption/acu-limits/devin/organizations/org-456";
  HeaderList json = {{"Content-Type", "application/json"}};
  fake_.ClearRequests();
  EXPECT_EQ(Call(kDataKey, "PUT", org, R"({"cycle_acu_limit":1})", json).status, 403);
  EXPECT_EQ(Call(kDataKey, "GET", "/v3/enterprise/consumption/acu-limits/devin").status, 403);
  EXPECT_TRUE(fake_.Requests().empty());
  // platform-team holds devin-billing (and devin-admin, which does not grant ACU limits).
  EXPECT_EQ(Call(kPlatformKey, "PUT", org, R"({"cycle_acu_limit":800})", json).status, 200);
  HttpResponse list = Call(kPlatformKey, "GET", "/v3/enterprise/consumption/acu-limits/devin");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(Json::Parse(list.body).Int("/items/0/cycle_acu_limit"), 800);
  EXPECT_EQ(Call(kPlatformKey, "DELETE", org).status, 204);
  // devin-billing is what grants them: alone it is enough, devin-admin alone is not.
  fake_.ClearRequests();
  EXPECT_EQ(Call(kAdminOnlyKey, "PUT", org, R"({"cycle_acu_limit":1})", json).status, 403);
  EXPECT_EQ(Call(kAdminOnlyKey, "GET", "/v3/enterprise/consumption/acu-limits/devin").status, 403);
  EXPECT_EQ(Call(kAdminOnlyKey, "PUT",
                 "/v3beta1/enterprise/consumption/acu-limits/devin/organizations/org-456",
                 R"({"cycle_acu_limit":1})", json)
                .status,
            403);
  EXPECT_TRUE(fake_.Requests().empty());
  EXPECT_EQ(Call(kBillingOnlyKey, "PUT", org, R"({"cycle_acu_limit":7})", json).status, 200);
  EXPECT_EQ(Call(kBillingOnlyKey, "PUT",
                 "/v3beta1/enterprise/consumption/acu-limits/devin/organizations/org-456",
                 R"({"cycle_acu_limit":9})", json)
                .status,
            200);
}

}  // namespace
}  // namespace tollgate::testing
