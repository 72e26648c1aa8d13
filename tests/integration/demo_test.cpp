// config/demo.json as `tollgate serve --demo` runs it (against the fake Devin): the ownership
// calls the demo prints hold. A session created by `demo` is read by `demo` (200) and refused to
// `demo-other`, a caller of the same role in the same organization (403); and the other way.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

#include "tests/support/harness.h"

namespace tollgate::testing {
namespace {

// The keys the demo prints.
const std::string kDemoKey = "tg_demo_key_not_secret";
const std::string kOtherKey = "tg_demo_other_key_not_secret";
const std::string kSessions = "/devin/v3/organizations/org-demo/sessions";

HeaderList As(const std::string& key) {
  return {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}};
}

// The demo config with its listeners on free ports, upstreams on the fake, audit to a file.
std::string DemoOnTheFake() {
  rapidjson::Document doc;
  doc.Parse(ReadFile(std::string(TOLLGATE_SOURCE_DIR) + "/config/demo.json").c_str());
  if (doc.HasParseError()) return "";
  auto& alloc = doc.GetAllocator();
  doc["listen"].SetString("${LISTEN}", alloc);
  doc["admin_listen"].SetString("${ADMIN}", alloc);
  doc["audit"]["file"].SetString("${AUDIT}", alloc);
  for (auto& up : doc["upstreams"].GetObject()) {
    up.value["base_url"].SetString("${UPSTREAM}", alloc);
  }
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  doc.Accept(w);
  return buf.GetString();
}

TEST(DemoTest, ASessionIsReadByTheTeamThatCreatedItOnly) {
  FakeUpstream fake;
  ASSERT_TRUE(fake.started()) << fake.log();
  GatewayOptions o;
  o.config = DemoOnTheFake();
  ASSERT_FALSE(o.config.empty());
  o.upstream = fake.base_url();
  o.env = {{"TOLLGATE_DEMO_DEVIN_TOKEN", fake.options().devin_token},
           {"TOLLGATE_DEMO_DEVO_TOKEN", fake.options().devo_token}};
  GatewayProcess g(o);
  ASSERT_TRUE(g.started()) << g.log();

  HttpResponse created =
      Http("POST", g.url() + kSessions, As(kDemoKey), R"({"prompt":"big","max_acu_limit":500})");
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string id = Json::Parse(created.body).String("/session_id");
  ASSERT_FALSE(id.empty()) << created.body;
  EXPECT_EQ(Http("GET", g.url() + kSessions + "/" + id, As(kDemoKey)).status, 200);
  HttpResponse other = Http("GET", g.url() + kSessions + "/" + id, As(kOtherKey));
  EXPECT_EQ(other.status, 403) << other.body;
  EXPECT_EQ(Http("POST", g.url() + kSessions + "/" + id + "/messages", As(kOtherKey),
                 R"({"message":"hi"})")
                .status,
            403);

  // demo-other's own session is its own.
  HttpResponse theirs = Http("POST", g.url() + kSessions, As(kOtherKey), R"({"prompt":"x"})");
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  const std::string their_id = Json::Parse(theirs.body).String("/session_id");
  EXPECT_EQ(Http("GET", g.url() + kSessions + "/" + their_id, As(kOtherKey)).status, 200);
  EXPECT_EQ(Http("GET", g.url() + kSessions + "/" + their_id, As(kDemoKey)).status, 403);
}

}  // namespace
}  // namespace tollgate::testing
