// Tests of the fake upstream itself (tests/fakes), driven through tests/support/harness.h: the
// other integration tests trust what it records and how it misbehaves on request.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/pattern.h"
#include "tests/integration/raw_http.h"
#include "tests/support/harness.h"

namespace tollgate::testing {
namespace {

std::string HexHmacSha256(const std::string& secret, const std::string& message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kDigits[digest[i] >> 4]);
    hex.push_back(kDigits[digest[i] & 15]);
  }
  return hex;
}

class FakeUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  HeaderList DevinAuth() const {
    return {{"Authorization", "Bearer " + fake_.options().devin_token}};
  }
  HeaderList DevoAuth() const { return {{"standAloneToken", fake_.options().devo_token}}; }
  std::string Url(const std::string& target) const { return fake_.base_url() + target; }

  FakeUpstream fake_;
};

// ------------------------------------------------------------------------------------ Devin

TEST_F(FakeUpstreamTest, DevinRequiresTheBearerToken) {
  for (const HeaderList& headers : {HeaderList{}, HeaderList{{"Authorization", "Bearer wrong"}},
                                    HeaderList{{"Authorization", fake_.options().devin_token}}}) {
    HttpResponse r = Http("GET", Url("/v3beta1/enterprise/self"), headers);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.Header("Content-Type"), "application/problem+json");
    Json body = Json::Parse(r.body);
    EXPECT_EQ(body.Int("/status"), 401);
    EXPECT_TRUE(body.Has("/type") && body.Has("/title") && body.Has("/detail")) << r.body;
  }
  HttpResponse ok = Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Http("GET", Url("/v3/enterprise/self"), DevinAuth()).status, 200);
}

TEST_F(FakeUpstreamTest, UnknownPathsAreProblem404) {
  HttpResponse devin = Http("GET", Url("/v3beta1/enterprise/nothing"), DevinAuth());
  EXPECT_EQ(devin.status, 404);
  EXPECT_EQ(devin.Header("Content-Type"), "application/problem+json");
  EXPECT_EQ(Http("GET", Url("/elsewhere")).status, 404);
}

TEST_F(FakeUpstreamTest, DevinListsPageWithFirstAndAfter) {
  for (const std::string version : {"/v3beta1", "/v3"}) {
    std::vector<std::string> ids;
    std::string after;
    for (int page = 0; page < 10; ++page) {
      std::string query = "?first=2" + (after.empty() ? "" : "&after=" + after);
      HttpResponse r = Http("GET", Url(version + "/enterprise/organizations" + query), DevinAuth());
      ASSERT_EQ(r.status, 200) << r.body;
      Json body = Json::Parse(r.body);
      EXPECT_LE(body.Size("/items"), 2u);
      for (size_t i = 0; i < body.Size("/items"); ++i) {
        ids.push_back(body.String("/items/" + std::to_string(i) + "/org_id"));
      }
      if (!body.Bool("/has_more")) {
        EXPECT_TRUE(body.IsNull("/end_cursor"));
        break;
      }
      after = body.String("/end_cursor");
    }
    EXPECT_EQ(ids.size(), 5u) << version;
    EXPECT_EQ(ids.front(), "org-123");
  }
}

TEST_F(FakeUpstreamTest, DevinSessionsAndServiceUsers) {
  HttpResponse created = Http("POST", Url("/v3beta1/organizations/org-123/sessions"), DevinAuth(),
                              R"({"prompt":"fix the build"})");
  ASSERT_EQ(created.status, 200) << created.body;
  std::string id = Json::Parse(created.body).String("/session_id");
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(Json::Parse(created.body).String("/url").empty());
  HttpResponse got = Http("GET", Url("/v3beta1/organizations/org-123/sessions/" + id), DevinAuth());
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(Json::Parse(got.body).String("/prompt"), "fix the build");
  HttpResponse list = Http("GET", Url("/v3beta1/organizations/org-123/sessions"), DevinAuth());
  EXPECT_EQ(Json::Parse(list.body).Size("/items"), 1u);
  EXPECT_EQ(Http("GET", Url("/v3beta1/organizations/org-456/sessions/" + id), DevinAuth()).status,
            404);

  HttpResponse user =
      Http("POST", Url("/v3/enterprise/service-users"), DevinAuth(), R"({"name":"ci"})");
  ASSERT_EQ(user.status, 201) << user.body;
  Json body = Json::Parse(user.body);
  EXPECT_FALSE(body.String("/token").empty());
  EXPECT_EQ(body.String("/api_key"), body.String("/token"));
}

TEST_F(FakeUpstreamTest, DevinConsumptionAndAuditLogs) {
  HttpResponse usage = Http(
      "GET", Url("/v3beta1/enterprise/consumption/daily?start_date=2026-01-30&end_date=2026-02-02"),
      DevinAuth());
  ASSERT_EQ(usage.status, 200) << usage.body;
  EXPECT_EQ(Json::Parse(usage.body).Size("/items"), 4u);
  EXPECT_EQ(Json::Parse(usage.body).String("/items/3/date"), "2026-02-02");
  EXPECT_EQ(Http("GET", Url("/v3beta1/enterprise/consumption/daily"), DevinAuth()).status, 422);

  // Seeded entries are an hour apart from 1700000000; (after, before) is exclusive.
  HttpResponse logs = Http(
      "GET", Url("/v3beta1/enterprise/audit-logs?time_after=1700000000&time_before=1700010800"),
      DevinAuth());
  ASSERT_EQ(logs.status, 200) << logs.body;
  EXPECT_EQ(Json::Parse(logs.body).Size("/items"), 2u);
}

TEST_F(FakeUpstreamTest, DevinV3SessionsCarryTagsTheListFiltersOn) {
  for (const char* tags : {R"(["team:data","env:ci"])", R"(["team:platform"])", "[]"}) {
    HttpResponse r = Http("POST", Url("/v3/organizations/org-123/sessions"), DevinAuth(),
                          std::string(R"({"prompt":"p","tags":)") + tags + "}");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto list = [&](const std::string& query) {
    return Json::Parse(
        Http("GET", Url("/v3/organizations/org-123/sessions" + query), DevinAuth()).body);
  };
  EXPECT_EQ(list("").Size("/items"), 3u);
  Json data = list("?tags=team%3Adata");
  ASSERT_EQ(data.Size("/items"), 1u);
  EXPECT_EQ(data.String("/items/0/tags/1"), "env:ci");
  EXPECT_EQ(list("?tags=team:data&tags=env:ci").Size("/items"), 1u);
  EXPECT_EQ(list("?tags=team:data&tags=team:platform").Size("/items"), 0u);
  EXPECT_EQ(list("?tags=team:nobody").Size("/items"), 0u);
  EXPECT_EQ(Http("POST", Url("/v3/organizations/org-123/sessions"), DevinAuth(),
                 R"({"prompt":"p","tags":"team:data"})")
                .status,
            422);
}

TEST_F(FakeUpstreamTest, DevinV3SessionMessages) {
  HttpResponse created =
      Http("POST", Url("/v3/organizations/org-123/sessions"), DevinAuth(), R"({"prompt":"p"})");
  std::string id = Json::Parse(created.body).String("/session_id");
  ASSERT_EQ(id.rfind("devin-", 0), 0u) << created.body;
  EXPECT_FALSE(Json::Parse(created.body).Has("/max_acu_limit")) << created.body;
  std::string messages = "/v3/organizations/org-123/sessions/" + id + "/messages";
  EXPECT_EQ(Http("POST", Url(messages), DevinAuth(), R"({"message":"one"})").status, 200);
  EXPECT_EQ(Http("POST", Url(messages), DevinAuth(), R"({"message":"two"})").status, 200);
  EXPECT_EQ(Http("POST", Url(messages), DevinAuth(), R"({"text":"no"})").status, 422);
  Json got = Json::Parse(Http("GET", Url(messages), DevinAuth()).body);
  ASSERT_EQ(got.Size("/items"), 2u);
  EXPECT_EQ(got.String("/items/1/message"), "two");
  EXPECT_EQ(Http("GET", Url("/v3/organizations/org-456/sessions/" + id + "/messages"), DevinAuth())
                .status,
            404);
}

TEST_F(FakeUpstreamTest, DevinV3SessionsEchoTheirCostFields) {
  HttpResponse created =
      Http("POST", Url("/v3/organizations/org-123/sessions"), DevinAuth(),
           R"({"prompt":"p","max_acu_limit":50,"devin_mode":"normal","create_as_user_id":"u-7"})");
  ASSERT_EQ(created.status, 200) << created.body;
  Json body = Json::Parse(created.body);
  EXPECT_EQ(body.Int("/max_acu_limit"), 50);
  EXPECT_FALSE(body.Has("/advanced_mode"));
  Json got = Json::Parse(
      Http("GET", Url("/v3/organizations/org-123/sessions/" + body.String("/session_id")),
           DevinAuth())
          .body);
  EXPECT_EQ(got.String("/create_as_user_id"), "u-7");
  EXPECT_EQ(got.String("/devin_mode"), "normal");
}

TEST_F(FakeUpstreamTest, DevinV3AttachmentUploadThenDownloadIsA307ToAPresignedUrl) {
  const std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
      "Content-Type: text/plain\r\n\r\nline one\r\nline two\r\n--XyZ--\r\n";
  HeaderList headers = DevinAuth();
  headers.emplace_back("Content-Type", "multipart/form-data; boundary=XyZ");
  HttpResponse up = Http("POST", Url("/v3/organizations/org-123/attachments"), headers, body);
  ASSERT_EQ(up.status, 200) << up.body;
  Json uploaded = Json::Parse(up.body);
  std::string id = uploaded.String("/attachment_id");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(uploaded.String("/name"), "notes.txt");
  EXPECT_NE(uploaded.String("/url").find(id + "/notes.txt"), std::string::npos);
  EXPECT_EQ(Http("POST", Url("/v3/organizations/org-123/attachments"), DevinAuth(), "{}").status,
            422);

  std::string download = "/v3/organizations/org-123/attachments/" + id + "/notes.txt";
  HttpResponse redirect = Http("GET", Url(download), DevinAuth());
  ASSERT_EQ(redirect.status, 307) << redirect.body;
  std::string location = redirect.Header("Location");
  // Another origin than the API's (as S3 is), served by the fake itself.
  std::string origin = "http://localhost:" + std::to_string(fake_.port()) + "/presigned/";
  ASSERT_EQ(location.rfind(origin, 0), 0u) << location;
  EXPECT_NE(location.find("X-Amz-Signature="), std::string::npos);
  std::string local = "http://127.0.0.1:" + location.substr(location.find(':', 7) + 1);
  HttpResponse file = Http("GET", local);  // no credentials: the signature is the credential
  EXPECT_EQ(file.status, 200);
  EXPECT_EQ(file.body, "line one\r\nline two");
  EXPECT_EQ(file.Header("Content-Type"), "text/plain");
  EXPECT_EQ(Http("GET", local.substr(0, local.find("X-Amz-Signature="))).status, 403);
  EXPECT_EQ(
      Http("GET", Url("/v3/organizations/org-456/attachments/" + id + "/notes.txt"), DevinAuth())
          .status,
      404);
}

TEST_F(FakeUpstreamTest, DevinV3SecretsNeverShowTheirValue) {
  std::string secrets = "/v3/organizations/org-123/secrets";
  HttpResponse created =
      Http("POST", Url(secrets), DevinAuth(), R"({"key":"NPM_TOKEN","value":"s3cr3t-value"})");
  ASSERT_EQ(created.status, 200) << created.body;
  std::string id = Json::Parse(created.body).String("/secret_id");
  HttpResponse list = Http("GET", Url(secrets), DevinAuth());
  EXPECT_EQ(Json::Parse(list.body).String("/items/0/key"), "NPM_TOKEN");
  EXPECT_EQ((created.body + list.body).find("s3cr3t-value"), std::string::npos);
  EXPECT_EQ(Http("POST", Url(secrets), DevinAuth(), R"({"key":"K"})").status, 422);
  EXPECT_EQ(Http("DELETE", Url(secrets + "/" + id), DevinAuth()).status, 200);
  EXPECT_EQ(Http("DELETE", Url(secrets + "/" + id), DevinAuth()).status, 404);
  EXPECT_EQ(Json::Parse(Http("GET", Url(secrets), DevinAuth()).body).Size("/items"), 0u);
}

TEST_F(FakeUpstreamTest, DevinV3AcuLimits) {
  std::string limits = "/v3/enterprise/consumption/acu-limits/devin";
  std::string org = limits + "/organizations/org-456";
  EXPECT_EQ(Http("PUT", Url(org), DevinAuth(), R"({"cycle_acu_limit":500})").status, 200);
  EXPECT_EQ(Http("PUT", Url(org), DevinAuth(), R"({"cycle_acu_limit":-1})").status, 422);
  EXPECT_EQ(
      Http("PUT", Url(limits + "/organizations/org-nope"), DevinAuth(), R"({"cycle_acu_limit":1})")
          .status,
      404);
  Json list = Json::Parse(Http("GET", Url(limits), DevinAuth()).body);
  ASSERT_EQ(list.Size("/items"), 1u);
  EXPECT_EQ(list.Int("/items/0/cycle_acu_limit"), 500);
  EXPECT_EQ(list.String("/items/0/org_id"), "org-456");
  EXPECT_EQ(Http("DELETE", Url(org), DevinAuth()).status, 204);
  EXPECT_EQ(Json::Parse(Http("GET", Url(limits), DevinAuth()).body).Size("/items"), 0u);
}

TEST_F(FakeUpstreamTest, HeadIsAnsweredWithoutABody) {
  HttpResponse r = Http("HEAD", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
}

// ------------------------------------------------------------------------------------- Devo

TEST_F(FakeUpstreamTest, DevoAcceptsStandAloneTokenOrBearer) {
  HttpResponse none = Http("GET", Url("/v2/accounts/acme/tokens"));
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(Json::Parse(none.body).Int("/error/code"), 401);
  EXPECT_TRUE(Json::Parse(none.body).Has("/error/message"));
  EXPECT_EQ(Http("GET", Url("/v2/accounts/acme/tokens"), {{"standAloneToken", "wrong"}}).status,
            401);
  EXPECT_EQ(Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth()).status, 200);
  EXPECT_EQ(Http("GET", Url("/v2/accounts/acme/tokens"),
                 {{"Authorization", "Bearer " + fake_.options().devo_token}})
                .status,
            200);
}

TEST_F(FakeUpstreamTest, EveryDevoResponseHasAFreshCid) {
  HttpResponse denied = Http("GET", Url("/v2/accounts/acme/tokens"));
  HttpResponse first = Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth());
  HttpResponse second = Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth());
  HttpResponse missing = Http("GET", Url("/v2/accounts/acme/tokens/nope"), DevoAuth());
  EXPECT_EQ(missing.status, 404);
  for (const auto* r : {&denied, &first, &second, &missing}) {
    EXPECT_FALSE(r->Header("x-devo-cid").empty());
  }
  EXPECT_NE(first.Header("x-devo-cid"), second.Header("x-devo-cid"));
}

TEST_F(FakeUpstreamTest, DevoTokenLifecycleWithAbsoluteLocation) {
  HttpResponse created =
      Http("POST", Url("/v2/accounts/acme/tokens"), DevoAuth(), R"({"name":"reporting"})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = Json::Parse(created.body).String("/id");
  EXPECT_EQ(created.Header("Location"), fake_.base_url() + "/v2/accounts/acme/tokens/" + id);

  // The list carries every token's value, like the real API: the same value a get answers.
  HttpResponse list = Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth());
  Json items = Json::Parse(list.body);
  ASSERT_GE(items.Size(""), 3u);
  for (size_t i = 0; i < items.Size(""); ++i) {
    const std::string at = "/" + std::to_string(i);
    const std::string value = items.String(at + "/token");
    EXPECT_EQ(value.rfind("devo-value-", 0), 0u) << list.body;
    HttpResponse single =
        Http("GET", Url("/v2/accounts/acme/tokens/" + items.String(at + "/id")), DevoAuth());
    EXPECT_EQ(Json::Parse(single.body).String("/token"), value) << single.body;
  }
  std::string one = "/v2/accounts/acme/tokens/" + id;
  EXPECT_EQ(Json::Parse(Http("GET", Url(one), DevoAuth()).body).String("/token"),
            Json::Parse(created.body).String("/token"));

  HttpResponse disabled = Http("POST", Url(one + "/disable"), DevoAuth());
  EXPECT_FALSE(Json::Parse(disabled.body).Bool("/enabled", true));
  HttpResponse enabled = Http("POST", Url(one + "/enable"), DevoAuth());
  EXPECT_TRUE(Json::Parse(enabled.body).Bool("/enabled"));
  for (const char* method : {"PUT", "PATCH"}) {
    std::string name = std::string("renamed-") + method;
    HttpResponse renamed =
        Http(method, Url(one + "/name"), DevoAuth(), "{\"value\":\"" + name + "\"}");
    EXPECT_EQ(Json::Parse(renamed.body).String("/name"), name) << renamed.body;
  }
  EXPECT_EQ(Http("DELETE", Url(one), DevoAuth()).status, 204);
  EXPECT_EQ(Http("GET", Url(one), DevoAuth()).status, 404);
}

TEST_F(FakeUpstreamTest, DevoQueryChecksTheHmacSignature) {
  const std::string body = R"({"query":"from demo.ecommerce.data select *","from":1,"to":2})";
  const std::string timestamp = "1700000000000";
  const std::string& key = fake_.options().devo_hmac_key;
  std::string sign = HexHmacSha256(fake_.options().devo_hmac_secret, key + body + timestamp);
  auto query = [&](const std::string& k, const std::string& ts, const std::string& s) {
    return Http("POST", Url("/search/query"),
                {{"x-logtrust-apikey", k}, {"x-logtrust-timestamp", ts}, {"x-logtrust-sign", s}},
                body);
  };
  HttpResponse ok = query(key, timestamp, sign);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_GT(Json::Parse(ok.body).Size("/object"), 0u);
  EXPECT_EQ(query(key, timestamp, HexHmacSha256("other", key + body + timestamp)).status, 401);
  EXPECT_EQ(query(key, "1700000000001", sign).status, 401);
  EXPECT_EQ(query("other-key", timestamp, sign).status, 401);
  EXPECT_EQ(Http("POST", Url("/search/query"), {}, body).status, 401);
}

// -------------------------------------------------------------------------------- recording

TEST_F(FakeUpstreamTest, RecordsRawQueryAndHeadersAsReceived) {
  const std::string query = "z=1&a=2&a=1&flag&enc=%2F%20x&empty=";
  HttpResponse r = Http("GET", Url("/v3beta1/enterprise/self?" + query),
                        {{"Authorization", "Bearer " + fake_.options().devin_token},
                         {"X-Dup", "first"},
                         {"X-Dup", "second"},
                         {"X-Case", "MiXeD value"}});
  ASSERT_EQ(r.status, 200);
  Http("GET", Url("/_fake/stats"));  // control calls are not recorded
  std::vector<RecordedRequest> seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, "/v3beta1/enterprise/self");
  EXPECT_EQ(seen[0].query, query);
  EXPECT_EQ(seen[0].target(), "/v3beta1/enterprise/self?" + query);
  EXPECT_EQ(seen[0].HeaderCount("x-dup"), 2u);
  std::vector<std::string> dups;
  for (const auto& [name, value] : seen[0].headers) {
    if (name == "X-Dup") dups.push_back(value);
  }
  EXPECT_EQ(dups, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(seen[0].Header("x-case"), "MiXeD value");

  fake_.ClearRequests();
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(FakeUpstreamTest, RecordsBodiesLargerThanPistachesDefaultLimit) {
  std::string name(200 * 1024, 'n');
  HttpResponse r =
      Http("POST", Url("/v2/accounts/acme/tokens"), DevoAuth(), "{\"name\":\"" + name + "\"}");
  EXPECT_EQ(r.status, 201);
  std::vector<RecordedRequest> seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body.size(), name.size() + 11);
}

TEST_F(FakeUpstreamTest, AnswersExpectContinue) {
  // The harness sends the body only after "100 Continue": without it this call times out.
  HeaderList headers = DevoAuth();
  headers.emplace_back("Expect", "100-continue");
  std::string body = "{\"name\":\"" + std::string(3000, 'c') + "\"}";
  HttpResponse r = Http("POST", Url("/v2/accounts/acme/tokens"), headers, body, milliseconds(5000));
  EXPECT_EQ(r.status, 201) << r.error;
  ASSERT_EQ(fake_.Requests().size(), 1u);
  EXPECT_EQ(fake_.Requests()[0].body, body);
}

// ------------------------------------------------------------------------------- behaviours

TEST_F(FakeUpstreamTest, ForcedStatusWithAndWithoutRetryAfter) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 429, "2");
  fake_.SetBehaviour("/v3beta1/enterprise/organizations", 0, 429);
  fake_.SetBehaviour("/v2/", 0, 503);
  HttpResponse with = Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(with.status, 429);
  EXPECT_EQ(with.Header("Retry-After"), "2");
  EXPECT_EQ(Json::Parse(with.body).Int("/status"), 429);
  HttpResponse without = Http("GET", Url("/v3beta1/enterprise/organizations"), DevinAuth());
  EXPECT_EQ(without.status, 429);
  EXPECT_FALSE(without.HasHeader("Retry-After"));
  HttpResponse devo = Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth());
  EXPECT_EQ(devo.status, 503);
  EXPECT_EQ(Json::Parse(devo.body).Int("/error/code"), 503);
  EXPECT_FALSE(devo.Header("x-devo-cid").empty());
  EXPECT_EQ(fake_.Requests().size(), 3u);  // forced answers are still recorded

  fake_.ClearBehaviour();
  EXPECT_EQ(Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth()).status, 200);
}

TEST_F(FakeUpstreamTest, BehaviourTimesAndLongestPrefix) {
  fake_.SetBehaviour("/v3beta1/", 0, 500);
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 503, std::nullopt, 2);
  EXPECT_EQ(Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth()).status, 503);
  EXPECT_EQ(Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth()).status, 503);
  // The two-shot rule is used up; the shorter prefix applies again.
  EXPECT_EQ(Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth()).status, 500);
  EXPECT_EQ(Http("GET", Url("/v3/enterprise/self"), DevinAuth()).status, 200);
}

TEST_F(FakeUpstreamTest, BehaviourReplacesBodyAndContentType) {
  FakeBehaviour page;
  page.prefix = "/v3beta1/enterprise/self";
  page.status = 200;
  page.times = 1;
  page.body = "<html>token=abc</html>";
  page.content_type = "text/html";
  fake_.SetBehaviour(page);
  HttpResponse html = Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(html.status, 200);
  EXPECT_EQ(html.body, "<html>token=abc</html>");
  EXPECT_EQ(html.Header("Content-Type"), "text/html");
  EXPECT_EQ(html.HeaderCount("Content-Type"), 1u);
  // The one-shot rule is used up: the model answers again, as JSON.
  HttpResponse model = Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(model.status, 200);
  EXPECT_EQ(model.Header("Content-Type"), "application/json");
  EXPECT_TRUE(Json::Parse(model.body).ok()) << model.body;

  // A body alone, after a forced status, keeps that status's Content-Type.
  FakeBehaviour missing;
  missing.prefix = "/v2/";
  missing.status = 404;
  missing.body = "not here";
  fake_.SetBehaviour(missing);
  HttpResponse devo = Http("GET", Url("/v2/accounts/acme/tokens"), DevoAuth());
  EXPECT_EQ(devo.status, 404);
  EXPECT_EQ(devo.body, "not here");
  EXPECT_EQ(devo.Header("Content-Type"), "application/json");

  // A Content-Type alone relabels the model's own answer; an empty body is a body.
  FakeBehaviour relabel;
  relabel.prefix = "/v3beta1/enterprise/organizations";
  relabel.content_type = "text/plain";
  fake_.SetBehaviour(relabel);
  HttpResponse orgs = Http("GET", Url("/v3beta1/enterprise/organizations"), DevinAuth());
  EXPECT_EQ(orgs.status, 200);
  EXPECT_EQ(orgs.Header("Content-Type"), "text/plain");
  EXPECT_TRUE(Json::Parse(orgs.body).ok()) << orgs.body;
  FakeBehaviour empty;
  empty.prefix = "/v3/";
  empty.body = "";
  fake_.SetBehaviour(empty);
  HttpResponse nothing = Http("GET", Url("/v3/enterprise/self"), DevinAuth());
  EXPECT_EQ(nothing.status, 200);
  EXPECT_EQ(nothing.body, "");

  // Fields of the wrong type are refused.
  for (const char* bad :
       {R"({"prefix": "/x", "body": 5})", R"({"prefix": "/x", "content_type": []})"}) {
    EXPECT_EQ(
        Http("POST", Url("/_fake/behaviour"), {{"Content-Type", "application/json"}}, bad).status,
        400)
        << bad;
  }
}

TEST_F(FakeUpstreamTest, DelayedAnswerArrivesLater) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 200);
  HttpResponse r = Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(fake_.Stats().in_flight, 0);
}

TEST_F(FakeUpstreamTest, DelayHoldsTheAnswerWithoutBlockingOthers) {
  // Far longer than the client waits: the held request times out at the client, while requests
  // to other paths are answered meanwhile by the same (2-thread) server.
  fake_.SetBehaviour("/v3beta1/enterprise/self", 60000);
  auto held = std::async(std::launch::async, [&] {
    return Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth(), "", milliseconds(1500));
  });
  fake_.WaitForRequests(1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Http("GET", Url("/v3/enterprise/self"), DevinAuth()).status, 200);
  }
  HttpResponse r = held.get();
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(fake_.Stats().in_flight, 1);
}

TEST_F(FakeUpstreamTest, ServesHundredsOfConcurrentDelayedRequests) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 500);
  std::vector<HttpRequest> requests(
      320, HttpRequest{"GET", Url("/v3beta1/enterprise/self"), DevinAuth(), ""});
  std::vector<HttpResponse> responses = HttpParallel(requests, milliseconds(60000));
  int ok = 0;
  for (const auto& r : responses) ok += r.status == 200 ? 1 : 0;
  EXPECT_EQ(ok, 320) << responses.front().error;
  FakeStats stats = fake_.Stats();
  EXPECT_EQ(stats.requests, 320);
  EXPECT_EQ(stats.in_flight, 0);
}

TEST_F(FakeUpstreamTest, CountsAcceptedConnectionsAndKeepsThemAlive) {
  int64_t before = fake_.Stats().connections;
  HttpSession session;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(session.Request("GET", Url("/v3beta1/enterprise/self"), DevinAuth()).status, 200);
  }
  EXPECT_EQ(session.total_connections(), 1);
  // The session's one connection, plus the one this Stats() call opens.
  EXPECT_EQ(fake_.Stats().connections - before, 2);

  before = fake_.Stats().connections;
  for (int i = 0; i < 3; ++i) Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth());
  EXPECT_EQ(fake_.Stats().connections - before, 4);
}

TEST_F(FakeUpstreamTest, ExitsZeroOnSigtermEvenWithHeldAnswers) {
  fake_.SetBehaviour("/v3beta1/", 60000);
  auto held = std::async(std::launch::async, [&] {
    return Http("GET", Url("/v3beta1/enterprise/self"), DevinAuth(), "", milliseconds(20000));
  });
  fake_.WaitForRequests(1);
  int status = fake_.Stop();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(held.get().status, 0);  // the connection closed without an answer
}

// ---------------------------------------------------------------------------------- streams

// Sends one GET on a new loopback connection; -1 if it cannot connect.
int SendGet(int port, const std::string& target, int rcvbuf = 0) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: fake\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// The answer's head (up to the blank line); what followed it is left in *rest.
std::string ReadHead(int fd, std::string* rest) {
  std::string in = ReadUntil(fd, "\r\n\r\n", 10000);
  size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return in;
  *rest = in.substr(end + 4);
  return in.substr(0, end + 4);
}

int64_t StreamIdOf(const std::string& head) {
  size_t at = head.find("x-fake-stream-id: ");
  return at == std::string::npos ? -1 : std::stoll(head.substr(at + 18));
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kDigits[digest[i] >> 4]);
    hex.push_back(kDigits[digest[i] & 15]);
  }
  return hex;
}

// A process's memory figure from /proc/PID/status ("VmRSS", "VmHWM") in KiB, or -1.
int64_t ProcStatusKb(pid_t pid, const std::string& field) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find(field + ":");
  return at == std::string::npos ? -1 : std::stoll(status.substr(at + field.size() + 1));
}

std::string PatternOf(uint64_t seed, size_t length) {
  std::string out;
  fake::AppendPattern(seed, 0, length, &out);
  return out;
}

TEST_F(FakeUpstreamTest, RowsStreamApartInChunksThenTheConnectionCloses) {
  FakeStreamSpec spec;
  spec.rows = 4;
  spec.interval_ms = 150;
  int fd = SendGet(fake_.port(), "/stream/rows?" + spec.Query());
  ASSERT_GE(fd, 0);
  std::string body;
  std::string head = ReadHead(fd, &body);
  EXPECT_EQ(StatusOf(head), 200) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  // Each row's arrival, seen as soon as its bytes are read.
  std::vector<int64_t> received(4, -1);
  for (;;) {
    for (int k = 0; k < 4; ++k) {
      if (received[k] < 0 && body.find("\"seq\":" + std::to_string(k) + ",") != std::string::npos) {
        received[k] = MonotonicMs();
      }
    }
    std::string more = ReadUntil(fd, "", 10000);  // returns on the first read
    if (more.empty()) break;                      // closed
    body += more;
  }
  close(fd);
  EXPECT_EQ(body.substr(body.size() - 5), "0\r\n\r\n");
  auto record = fake_.WaitForStream(StreamIdOf(head), [](auto& r) { return r.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(record->ended_by, "complete");
  EXPECT_EQ(record->rows_sent, 4);
  EXPECT_EQ(record->mode, "rows");
  std::string unchunked;
  for (int k = 0; k < 4; ++k) {
    size_t at = body.find("{\"eventdate\"");
    ASSERT_NE(at, std::string::npos) << body;
    size_t end = body.find('\n', at);
    Json row = Json::Parse(body.substr(at, end - at));
    unchunked += body.substr(at, end + 1 - at);
    body.erase(0, end + 1);
    EXPECT_EQ(row.Int("/seq"), k);
    // The fake keeps its schedule (row k not before k intervals) and a row is not received
    // before it was sent.
    EXPECT_GE(row.Int("/sent_ms"), record->started_at_ms + k * 150);
    EXPECT_GE(received[k], row.Int("/sent_ms"));
  }
  EXPECT_EQ(record->sha256, Sha256Hex(unchunked));
}

TEST_F(FakeUpstreamTest, RowsStreamThroughLibcurlWithoutContentLength) {
  FakeStreamSpec spec;
  spec.rows = 3;
  spec.interval_ms = 20;
  HttpResponse r = Http("GET", Url("/stream/rows?" + spec.Query()));
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.Header("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(r.HasHeader("Content-Length"));
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(std::count(r.body.begin(), r.body.end(), '\n'), 3) << r.body;
  // The client can read the last chunk before the fake has recorded the end.
  auto record = fake_.WaitForStream(std::stoll(r.Header("x-fake-stream-id")),
                                    [](auto& s) { return s.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(record->ended_by, "complete");
  EXPECT_EQ(record->sha256, Sha256Hex(r.body));
  EXPECT_EQ(record->body_bytes, static_cast<int64_t>(r.body.size()));
}

TEST_F(FakeUpstreamTest, ContinuousStreamKeepsAliveUntilTheClientLeaves) {
  FakeStreamSpec spec;
  spec.mode = "continuous";
  spec.interval_ms = 100;
  int fd = SendGet(fake_.port(), "/stream/live?" + spec.Query());
  ASSERT_GE(fd, 0);
  std::string rest;
  std::string head = ReadHead(fd, &rest);
  EXPECT_EQ(StatusOf(head), 200) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << head;
  // Rows and keep-alives alternate: row 0, spaces, row 1, spaces, row 2.
  std::string body = rest + ReadUntil(fd, "\"seq\":2,", 10000);
  size_t row1 = body.find("\"seq\":1,");
  size_t row2 = body.find("\"seq\":2,");
  ASSERT_NE(row2, std::string::npos) << body;
  EXPECT_NE(body.substr(0, row1).find("4\r\n    \r\n"), std::string::npos) << body;
  EXPECT_NE(body.substr(row1, row2 - row1).find("4\r\n    \r\n"), std::string::npos) << body;
  int64_t received = static_cast<int64_t>(head.size() + body.size());
  int64_t id = StreamIdOf(head);
  auto open = fake_.Stream(id);
  ASSERT_TRUE(open);
  EXPECT_FALSE(open->ended);
  int64_t closed_at = MonotonicMs();
  close(fd);
  auto record = fake_.WaitForStream(id, [](auto& r) { return r.ended; });
  ASSERT_TRUE(record && record->ended) << "the fake did not notice the client leaving";
  EXPECT_EQ(record->ended_by, "client_closed");
  EXPECT_GE(record->ended_at_ms, closed_at);
  EXPECT_GE(record->bytes_written, received);
  EXPECT_GE(record->rows_sent, 3);
  EXPECT_GE(record->keepalives_sent, 2);
  EXPECT_EQ(fake_.OpenStreams(), 0);
}

TEST_F(FakeUpstreamTest, BigStreamIsThePatternWithOrWithoutContentLength) {
  const int64_t kBytes = 8 * 1024 * 1024 + 3;  // not a whole number of pieces
  const std::string expected = Sha256Hex(PatternOf(7, kBytes));
  for (bool chunked : {false, true}) {
    FakeStreamSpec spec;
    spec.mode = "big";
    spec.bytes = kBytes;
    spec.seed = 7;
    spec.chunked = chunked;
    HttpResponse r = Http("GET", Url("/stream/big?" + spec.Query()), {}, "", milliseconds(30000));
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.Header("Content-Type"), "application/octet-stream");
    if (chunked) {
      EXPECT_EQ(r.Header("Transfer-Encoding"), "chunked");
      EXPECT_FALSE(r.HasHeader("Content-Length"));
    } else {
      EXPECT_EQ(r.Header("Content-Length"), std::to_string(kBytes));
    }
    EXPECT_EQ(Sha256Hex(r.body), expected) << "chunked " << chunked;
    auto record = fake_.WaitForStream(std::stoll(r.Header("x-fake-stream-id")),
                                      [](auto& s) { return s.ended; });
    ASSERT_TRUE(record);
    EXPECT_EQ(record->ended_by, "complete");
    EXPECT_EQ(record->sha256, expected);
    EXPECT_EQ(record->body_bytes, kBytes);
    EXPECT_EQ(record->content_length, chunked ? -1 : kBytes);
  }
  // Another seed is another body.
  EXPECT_NE(Sha256Hex(PatternOf(8, 64)), Sha256Hex(PatternOf(7, 64)));
}

TEST_F(FakeUpstreamTest, AGigabyteStreamsWithoutTheFakeHoldingIt) {
  const int64_t kBytes = int64_t{1} << 30;
  int64_t hwm_before = ProcStatusKb(fake_.pid(), "VmHWM");
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = kBytes;
  int fd = SendGet(fake_.port(), "/stream/gigabyte?" + spec.Query());
  ASSERT_GE(fd, 0);
  std::string first;
  std::string head = ReadHead(fd, &first);
  ASSERT_NE(head.find("Content-Length: " + std::to_string(kBytes) + "\r\n"), std::string::npos)
      << head;
  EVP_MD_CTX* sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(sha, EVP_sha256(), nullptr);
  EVP_DigestUpdate(sha, first.data(), first.size());
  int64_t received = static_cast<int64_t>(first.size());
  std::vector<char> buffer(1 << 20);
  while (received < kBytes) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 30000) <= 0) break;
    ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n <= 0) break;
    EVP_DigestUpdate(sha, buffer.data(), static_cast<size_t>(n));
    received += n;
  }
  close(fd);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(sha, digest, &length);
  EVP_MD_CTX_free(sha);
  ASSERT_EQ(received, kBytes);
  auto record = fake_.WaitForStream(StreamIdOf(head), [](auto& s) { return s.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(record->ended_by, "complete");
  static const char kDigits[] = "0123456789abcdef";
  std::string received_sha;
  for (unsigned int i = 0; i < length; ++i) {
    received_sha.push_back(kDigits[digest[i] >> 4]);
    received_sha.push_back(kDigits[digest[i] & 15]);
  }
  EXPECT_EQ(record->sha256, received_sha);
  EXPECT_EQ(record->body_bytes, kBytes);
  int64_t hwm_after = ProcStatusKb(fake_.pid(), "VmHWM");
  EXPECT_LT(hwm_after - hwm_before, 32 * 1024) << hwm_before << " -> " << hwm_after << " KiB";
}

TEST_F(FakeUpstreamTest, ASlowReaderStopsTheFakesWrites) {
  const int64_t kBytes = 64 * 1024 * 1024;
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = kBytes;
  spec.seed = 3;
  int fd = SendGet(fake_.port(), "/stream/slow?" + spec.Query(), 64 * 1024);
  ASSERT_GE(fd, 0);
  std::string body;
  std::string head = ReadHead(fd, &body);
  int64_t id = StreamIdOf(head);
  // Not reading: the socket fills and the fake waits for room.
  auto blocked = fake_.WaitForStream(id, [](auto& s) { return s.blocked; });
  ASSERT_TRUE(blocked && blocked->blocked);
  EXPECT_LT(blocked->bytes_written, kBytes / 4);
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    auto still = fake_.Stream(id);
    ASSERT_TRUE(still);
    EXPECT_EQ(still->bytes_written, blocked->bytes_written);
    EXPECT_TRUE(still->blocked);
  }
  // Reading lets it go on, to the end.
  std::vector<char> buffer(1 << 20);
  while (static_cast<int64_t>(body.size()) < kBytes) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 30000) <= 0) break;
    ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n <= 0) break;
    body.append(buffer.data(), static_cast<size_t>(n));
  }
  close(fd);
  auto done = fake_.WaitForStream(id, [](auto& s) { return s.ended; });
  ASSERT_TRUE(done);
  EXPECT_EQ(done->ended_by, "complete");
  EXPECT_EQ(done->sha256, Sha256Hex(body));
  EXPECT_EQ(done->sha256, Sha256Hex(PatternOf(3, kBytes)));
}

TEST_F(FakeUpstreamTest, HoldsTwoThousandContinuousStreams) {
  constexpr int kStreams = 2000;
  FakeStreamSpec spec;
  spec.mode = "continuous";
  spec.interval_ms = 1000;
  int64_t rss_before = ProcStatusKb(fake_.pid(), "VmRSS");
  std::vector<int> fds;
  for (int i = 0; i < kStreams; ++i) {
    int fd = SendGet(fake_.port(), "/stream/many?" + spec.Query());
    ASSERT_GE(fd, 0) << "connection " << i;
    fds.push_back(fd);
  }
  // Every client gets its head and first row.
  for (int fd : fds) {
    std::string in = ReadUntil(fd, "\"seq\":0,", 20000);
    ASSERT_NE(in.find("\"seq\":0,"), std::string::npos) << in;
  }
  EXPECT_EQ(fake_.OpenStreams(), kStreams);
  int64_t rss_open = ProcStatusKb(fake_.pid(), "VmRSS");
  EXPECT_LT(rss_open - rss_before, 64 * 1024) << rss_before << " -> " << rss_open << " KiB";
  for (int fd : fds) close(fd);
  auto deadline = std::chrono::steady_clock::now() + milliseconds(20000);
  while (fake_.OpenStreams() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(fake_.OpenStreams(), 0);
  auto streams = fake_.Streams();
  ASSERT_EQ(streams.size(), static_cast<size_t>(kStreams));
  for (const auto& s : streams) EXPECT_EQ(s.ended_by, "client_closed") << s.id;
  fake_.ClearStreams();
  EXPECT_TRUE(fake_.Streams().empty());
  // Still serving.
  EXPECT_EQ(Http("GET", Url("/stream/after")).status, 200);
}

TEST_F(FakeUpstreamTest, StreamsNeedTheModelsCredentialsAndValidParameters) {
  EXPECT_EQ(Http("GET", Url("/v3/enterprise/self?fake_stream=rows")).status, 401);
  HttpResponse devin =
      Http("GET", Url("/v3/enterprise/self?fake_stream=rows&fake_rows=1"), DevinAuth());
  EXPECT_EQ(devin.status, 200);
  EXPECT_EQ(devin.Header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(Http("GET", Url("/stream/x?fake_stream=sideways")).status, 400);
  EXPECT_EQ(Http("GET", Url("/stream/x?fake_stream=rows&fake_rows=-1")).status, 400);
  EXPECT_EQ(Http("GET", Url("/stream/x?fake_stream=rows&fake_interval_ms=0")).status, 400);
  // A forced status wins over the stream; a delay delays the head.
  fake_.SetBehaviour("/stream/forced", 0, 503);
  EXPECT_EQ(Http("GET", Url("/stream/forced?fake_stream=rows")).status, 503);
  fake_.SetBehaviour("/stream/late", 200);
  int64_t asked = MonotonicMs();
  HttpResponse late = Http("GET", Url("/stream/late?fake_stream=rows&fake_rows=1"));
  EXPECT_EQ(late.status, 200);
  auto record = fake_.WaitForStream(std::stoll(late.Header("x-fake-stream-id")),
                                    [](auto& s) { return s.ended; });
  ASSERT_TRUE(record);
  EXPECT_GE(record->ended_at_ms - asked, 200);
}

// ---------------------------------------------------------------------------------- harness

TEST(HarnessTest, SubstitutesKnownPlaceholdersOnly) {
  EXPECT_EQ(SubstitutePlaceholders(R"({"listen":"${LISTEN}","x":"${OTHER}","y":"${"})",
                                   {{"LISTEN", "127.0.0.1:1"}}),
            R"({"listen":"127.0.0.1:1","x":"${OTHER}","y":"${"})");
}

TEST(HarnessTest, JsonReadsByPointer) {
  Json json = Json::Parse(R"({"error":{"code":429,"ok":true},"items":[{"id":"a"}]})");
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json.Int("/error/code"), 429);
  EXPECT_TRUE(json.Bool("/error/ok"));
  EXPECT_EQ(json.String("/items/0/id"), "a");
  EXPECT_EQ(json.Size("/items"), 1u);
  EXPECT_FALSE(json.Has("/missing"));
  EXPECT_FALSE(Json::Parse("not json").ok());
}

}  // namespace
}  // namespace tollgate::testing
