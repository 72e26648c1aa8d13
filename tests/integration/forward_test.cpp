// The forward path (issue 3): every seed call to Devin and Devo goes through the gateway with only
// the base URL and the token changed; the upstream gets the real secret and never the caller's
// key; errors, limits on size and time, and HTTP/1.1 behaviour a client relies on.

#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

class ForwardTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig());
  }

  // The upstream saw the real secret and nothing of the caller's key.
  void ExpectCleanUpstreamRequest(const RecordedRequest& r) {
    for (const auto& [name, value] : r.headers) {
      EXPECT_EQ(value.find(kDataKey), std::string::npos) << name << " leaked the caller key";
    }
  }
};

TEST_F(ForwardTest, DevinSeedCallsGoThroughWithTheServiceUserToken) {
  struct SeedCall {
    std::string method, path, body;
    int status;
  };
  std::vector<SeedCall> calls = {
      {"GET", "/devin/v3beta1/enterprise/self", "", 200},
      {"GET", "/devin/v3beta1/enterprise/organizations?first=2", "", 200},
      {"POST", "/devin/v3beta1/enterprise/organizations", R"({"name":"new org"})", 201},
      {"POST", "/devin/v3beta1/organizations/org-123/sessions", R"({"prompt":"fix the build"})",
       200},
      {"GET",
       "/devin/v3beta1/enterprise/consumption/daily?start_date=2026-01-01&end_date=2026-01-31", "",
       200},
      {"POST", "/devin/v3beta1/enterprise/service-users", R"({"name":"ci-bot"})", 201},
      {"GET",
       "/devin/v3beta1/enterprise/audit-logs?time_after=1700000000&time_before=1800000000&first=50",
       "", 200},
      {"GET", "/devin/v3/enterprise/self", "", 200},
  };
  for (const auto& c : calls) {
    fake_.ClearRequests();
    HttpResponse r = Call(c.method, c.path, kDataKey, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << ": " << r.body;
    EXPECT_TRUE(Json::Parse(r.body).ok()) << r.body;
    EXPECT_TRUE(r.HasHeader("x-request-id"));
    auto seen = fake_.WaitForRequests(1);
    ASSERT_EQ(seen.size(), 1u) << c.path;
    EXPECT_EQ(seen[0].method, c.method);
    // Byte for byte: the path without the /devin prefix, the query as sent.
    EXPECT_EQ(seen[0].target(), c.path.substr(std::string("/devin").size()));
    EXPECT_EQ(seen[0].body, c.body);
    EXPECT_EQ(seen[0].Header("Authorization"), "Bearer " + fake_.options().devin_token);
    EXPECT_EQ(seen[0].HeaderCount("Authorization"), 1u);
    ExpectCleanUpstreamRequest(seen[0]);
  }
}

TEST_F(ForwardTest, DevinPagingAndTheMultiOrganisationLoop) {
  // The seed's loop: list organisations page by page, then list each one's sessions.
  std::string after;
  std::vector<std::string> orgs;
  for (int page = 0; page < 10; ++page) {
    std::string path = "/devin/v3beta1/enterprise/organizations?first=2";
    if (!after.empty()) path += "&after=" + after;
    HttpResponse r = Call("GET", path);
    ASSERT_EQ(r.status, 200) << r.body;
    Json j = Json::Parse(r.body);
    for (size_t i = 0; i < j.Size("/items"); ++i) {
      orgs.push_back(j.String("/items/" + std::to_string(i) + "/org_id"));
    }
    if (!j.Bool("/has_more")) break;
    after = j.String("/end_cursor");
  }
  ASSERT_GE(orgs.size(), 3u);
  for (const auto& org : orgs) {
    HttpResponse r = Call("GET", "/devin/v3beta1/organizations/" + org + "/sessions?first=10");
    EXPECT_EQ(r.status, 200) << org << ": " << r.body;
  }
}

TEST_F(ForwardTest, RepeatedQueryParametersKeepTheirOrder) {
  HttpResponse r =
      Call("GET", "/devin/v3beta1/enterprise/audit-logs?action=b&first=5&action=a&action=b");
  EXPECT_EQ(r.status, 200);
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].query, "action=b&first=5&action=a&action=b");
}

TEST_F(ForwardTest, DevoTokenCallsWithStandAloneToken) {
  const std::string base = "/devo/v2/accounts/sampleAccount/tokens";
  HttpResponse list = Call("GET", base);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_TRUE(list.HasHeader("x-devo-cid"));
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Header("standAloneToken"), fake_.options().devo_token);
  EXPECT_FALSE(seen[0].HasHeader("Authorization"));  // the caller's never goes upstream

  HttpResponse created = Call("POST", base, kDataKey, R"({"name":"reporting"})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = Json::Parse(created.body).String("/id");
  ASSERT_FALSE(id.empty()) << created.body;
  // Location under the upstream's base URL is rewritten to the gateway prefix.
  EXPECT_EQ(created.Header("location"), base + "/" + id);

  EXPECT_EQ(Call("GET", base + "/" + id).status, 200);
  EXPECT_EQ(Call("POST", base + "/" + id + "/disable").status, 200);
  EXPECT_EQ(Call("POST", base + "/" + id + "/enable").status, 200);
  HttpResponse renamed = Call("PUT", base + "/" + id + "/name", kDataKey, R"({"value":"renamed"})");
  EXPECT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(Json::Parse(renamed.body).String("/name"), "renamed");
  HttpResponse deleted = Call("DELETE", base + "/" + id);
  EXPECT_EQ(deleted.status, 204);
  EXPECT_EQ(Call("GET", base + "/" + id).status, 404);
  for (const auto& r : fake_.Requests()) ExpectCleanUpstreamRequest(r);
}

TEST_F(ForwardTest, DevoQueryIsSignedWithHmac) {
  std::string body = R"({"query":"from siem.logtrust.web.activity select *","from":1700000000})";
  HttpResponse r = Call("POST", "/devo-query/search/query", kDataKey, body);
  EXPECT_EQ(r.status, 200) << r.body;  // the fake checks the signature
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Header("x-logtrust-apikey"), fake_.options().devo_hmac_key);
  std::string ts = seen[0].Header("x-logtrust-timestamp");
  EXPECT_EQ(seen[0].Header("x-logtrust-sign"),
            upstream::HmacSha256Hex(fake_.options().devo_hmac_secret,
                                    fake_.options().devo_hmac_key + body + ts));
}

TEST_F(ForwardTest, CallerAuthenticationFailuresAre401AndNeverReachTheUpstream) {
  for (const std::string& key :
       {std::string(""), std::string("wrong-key"), kDisabledKey, kExpiredKey}) {
    HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self", key);
    EXPECT_EQ(r.status, 401) << key;
    Json j = Json::Parse(r.body);
    EXPECT_EQ(j.String("/error/reason"), "unauthenticated");
    EXPECT_EQ(j.String("/error/request_id"), r.Header("x-request-id"));
  }
  HttpResponse basic = Http("GET", gateway_->url() + "/devin/v3beta1/enterprise/self",
                            {{"Authorization", "Basic dGVzdDp0ZXN0"}});
  EXPECT_EQ(basic.status, 401);
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(ForwardTest, UpstreamErrorsPassThroughUntouched) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 403);
  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.Header("content-type"), "application/problem+json");
  Json j = Json::Parse(r.body);
  EXPECT_EQ(j.Int("/status"), 403);  // the upstream's problem+json, not our envelope
  EXPECT_FALSE(j.Has("/error"));
}

TEST_F(ForwardTest, UnknownUpstreamIs404AndReservedPrefixIsNotForwarded) {
  HttpResponse r = Call("GET", "/github/repos");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "not_found");
  HttpResponse health = Http("GET", gateway_->url() + "/_tollgate/health");
  EXPECT_EQ(health.status, 200);
  HttpResponse whoami = Call("GET", "/_tollgate/whoami");
  ASSERT_EQ(whoami.status, 200);
  Json w = Json::Parse(whoami.body);
  EXPECT_EQ(w.String("/caller"), "data-team");
  EXPECT_EQ(w.String("/roles/0"), "everything");
  EXPECT_EQ(Http("GET", gateway_->url() + "/_tollgate/whoami").status, 401);
  EXPECT_EQ(Call("GET", "/_tollgate/other").status, 404);
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(ForwardTest, SecretsNeverReachTheCallerOrTheLogs) {
  fake_.SetBehaviour("/v3beta1/enterprise/organizations", 0, 500);
  std::vector<HttpResponse> responses = {
      Call("GET", "/devin/v3beta1/enterprise/self"),
      Call("GET", "/devin/v3beta1/enterprise/organizations"),
      Call("GET", "/devo/v2/accounts/sampleAccount/tokens"),
      Call("GET", "/nowhere/x"),
      Call("GET", "/devin/v3beta1/enterprise/self", "bad-key"),
  };
  ASSERT_EQ(gateway_->Stop(), 0);
  std::vector<std::string> secrets = {fake_.options().devin_token, fake_.options().devo_token,
                                      fake_.options().devo_hmac_secret, kDataKey};
  for (const auto& r : responses) {
    for (const auto& s : secrets) {
      EXPECT_EQ(r.body.find(s), std::string::npos);
      for (const auto& [k, v] : r.headers) EXPECT_EQ(v.find(s), std::string::npos) << k;
    }
  }
  std::string audit = ReadFile(gateway_->audit_path());
  std::string log = gateway_->log();
  for (const auto& s : secrets) {
    EXPECT_EQ(audit.find(s), std::string::npos);
    EXPECT_EQ(log.find(s), std::string::npos);
  }
}

TEST_F(ForwardTest, HopByHopAndCallerControlledHeadersAreStripped) {
  // Each of these could change what the upstream thinks the request is (method and path
  // overrides), who sent it (forwarding claims), or carries the caller's credentials or
  // connection-level state; none may reach the upstream.
  const HeaderList stripped = {{"Forwarded", "for=10.0.0.1;host=evil.example;proto=https"},
                               {"X-Forwarded-For", "10.0.0.1"},
                               {"X-Forwarded-Host", "evil.example"},
                               {"X-Forwarded-Proto", "https"},
                               {"X-Forwarded-Prefix", "/admin"},
                               {"X-Real-IP", "10.0.0.1"},
                               {"X-HTTP-Method-Override", "DELETE"},
                               {"X-HTTP-Method", "DELETE"},
                               {"X-Method-Override", "DELETE"},
                               {"X-Original-URL", "/v3beta1/enterprise/service-users"},
                               {"X-Rewrite-URL", "/v3beta1/enterprise/service-users"},
                               {"X-Override-URL", "/v3beta1/enterprise/service-users"},
                               {"Cookie", "session=abc"},
                               {"Proxy-Authorization", "Basic eA=="},
                               {"Proxy-Connection", "keep-alive"},
                               {"Keep-Alive", "timeout=5"},
                               {"TE", "trailers"},
                               {"Trailer", "X-Checksum"},
                               {"Upgrade", "h2c"},
                               // Named hop-by-hop by the caller's own Connection header.
                               {"Connection", "X-Drop-Me, x-drop-me-too"},
                               {"X-Drop-Me", "1"},
                               {"X-Drop-Me-Too", "2"},
                               // Not on the allowlist (issue 10 point 4).
                               {"X-Custom", "dropped"}};
  HeaderList sent = stripped;
  sent.emplace_back("standAloneToken", "caller-supplied");
  sent.emplace_back("Idempotency-Key", "kept");
  HttpResponse r = Call("GET", "/devo/v2/accounts/sampleAccount/tokens", kDataKey, "", sent);
  EXPECT_EQ(r.status, 200) << r.body;
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  for (const auto& [name, value] : stripped) {
    EXPECT_FALSE(seen[0].HasHeader(name)) << name << ": " << seen[0].Header(name);
  }
  // The caller's key goes nowhere: this upstream authenticates by its own header only.
  EXPECT_FALSE(seen[0].HasHeader("Authorization"));
  EXPECT_EQ(seen[0].Header("standAloneToken"), fake_.options().devo_token);
  EXPECT_EQ(seen[0].HeaderCount("standAloneToken"), 1u);
  EXPECT_EQ(seen[0].Header("Idempotency-Key"), "kept");
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, "/v2/accounts/sampleAccount/tokens");
  EXPECT_EQ(seen[0].Header("X-Request-Id"), r.Header("x-request-id"));
  EXPECT_EQ(seen[0].Header("Host"), fake_.base_url().substr(std::string("http://").size()));
  ExpectCleanUpstreamRequest(seen[0]);
}

TEST_F(ForwardTest, ForgedSigningHeadersAreReplacedNotAdded) {
  std::string body = R"({"query":"from siem.logtrust.web.activity select *","from":1700000000})";
  HttpResponse r = Call("POST", "/devo-query/search/query", kDataKey, body,
                        {{"x-logtrust-apikey", "forged-key"},
                         {"X-Logtrust-Timestamp", "1"},
                         {"x-logtrust-sign", "forged-sign"}});
  EXPECT_EQ(r.status, 200) << r.body;  // the fake checks the signature
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].HeaderCount("x-logtrust-apikey"), 1u);
  EXPECT_EQ(seen[0].HeaderCount("x-logtrust-timestamp"), 1u);
  EXPECT_EQ(seen[0].HeaderCount("x-logtrust-sign"), 1u);
  EXPECT_EQ(seen[0].Header("x-logtrust-apikey"), fake_.options().devo_hmac_key);
  EXPECT_FALSE(seen[0].HasHeader("Authorization"));
}

TEST_F(ForwardTest, HopByHopAndCookieResponseHeadersStopAtTheGateway) {
  const HeaderList dropped = {{"Proxy-Authenticate", "Basic realm=\"inner\""},
                              {"Proxy-Connection", "keep-alive"},
                              {"Upgrade", "h2c"},
                              {"TE", "trailers"},
                              {"Trailer", "X-Checksum"},
                              {"Keep-Alive", "timeout=5"},
                              {"Set-Cookie", "upstream_session=inner-value"},
                              {"X-Request-Id", "upstream-request-id"}};
  FakeBehaviour extra;
  extra.prefix = "/v3beta1/enterprise/self";
  extra.headers = dropped;
  extra.headers.emplace_back("X-Upstream-Extra", "kept");
  fake_.SetBehaviour(extra);
  // The fake does send them: asked directly, it answers with every one.
  HttpResponse direct = Http("GET", fake_.base_url() + "/v3beta1/enterprise/self",
                             {{"Authorization", "Bearer " + fake_.options().devin_token}});
  ASSERT_EQ(direct.status, 200) << direct.body;
  for (const auto& [name, value] : dropped) {
    ASSERT_EQ(direct.Header(name), value) << name << " was not sent by the fake";
  }
  fake_.ClearRequests();

  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(r.status, 200) << r.body;
  for (const auto& [name, value] : dropped) {
    EXPECT_NE(r.Header(name), value) << name << " reached the caller";
  }
  EXPECT_FALSE(r.HasHeader("set-cookie"));
  EXPECT_FALSE(r.HasHeader("proxy-authenticate"));
  EXPECT_FALSE(r.HasHeader("upgrade"));
  EXPECT_FALSE(r.HasHeader("trailer"));
  EXPECT_FALSE(r.HasHeader("te"));
  EXPECT_EQ(r.Header("X-Upstream-Extra"), "kept");
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(r.Header("x-request-id"), seen[0].Header("X-Request-Id"));  // the gateway's own
  EXPECT_EQ(r.HeaderCount("x-request-id"), 1u);
}

TEST_F(ForwardTest, RangeAndEncodingAreDroppedOnlyOnRedactedRoutes) {
  // A byte range of a body could carry a secret the redactor cannot see: on a route with
  // `redact` the upstream is asked for the whole body; elsewhere a range is the caller's
  // business. Compression is asked for on no route: answers are scanned for secrets.
  gateway_.reset();
  StartGateway(StandardConfig("", R"([
        {"upstream": "devo", "methods": ["GET"], "path": "/v2/accounts/{account}/tokens",
         "where": {"account": "caller.devo_accounts"}, "redact": ["/*/token"]},
        {"upstream": "devin", "path": "/**"}])"));
  const HeaderList partial = {
      {"Range", "bytes=0-99"}, {"If-Range", "\"v1\""}, {"Accept-Encoding", "gzip, br"}};
  HttpResponse redacted =
      Call("GET", "/devo/v2/accounts/sampleAccount/tokens", kDataKey, "", partial);
  EXPECT_EQ(redacted.status, 200) << redacted.body;
  HttpResponse plain = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "", partial);
  EXPECT_EQ(plain.status, 200) << plain.body;
  auto seen = fake_.WaitForRequests(2);
  ASSERT_EQ(seen.size(), 2u);
  ASSERT_EQ(seen[0].path, "/v2/accounts/sampleAccount/tokens");
  for (const auto& [name, value] : partial) {
    EXPECT_FALSE(seen[0].HasHeader(name)) << name << " reached the upstream on a redacted route";
    if (name == "Accept-Encoding") {
      EXPECT_FALSE(seen[1].HasHeader(name)) << name << " reached the upstream";
      continue;
    }
    EXPECT_EQ(seen[1].Header(name), value) << name << " was not forwarded on a plain route";
    EXPECT_EQ(seen[1].HeaderCount(name), 1u) << name;
  }
}

TEST_F(ForwardTest, RequestIdIsKeptWhenValidAndGeneratedOtherwise) {
  HttpResponse kept = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "",
                           {{"X-Request-Id", "trace-abc-123"}});
  EXPECT_EQ(kept.Header("x-request-id"), "trace-abc-123");
  HttpResponse replaced = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "",
                               {{"X-Request-Id", std::string(200, 'x')}});
  EXPECT_EQ(replaced.Header("x-request-id").size(), 32u);
  auto seen = fake_.WaitForRequests(2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].Header("X-Request-Id"), "trace-abc-123");
  EXPECT_EQ(seen[1].Header("X-Request-Id"), replaced.Header("x-request-id"));
  EXPECT_EQ(seen[1].HeaderCount("X-Request-Id"), 1u);
}

TEST_F(ForwardTest, SlowCallsDoNotHoldUpAFastOne) {
  fake_.SetBehaviour("/v3beta1/organizations/org-slow", 3000);
  std::vector<HttpRequest> slow;
  for (int i = 0; i < 200; ++i) {
    HttpRequest r;
    r.url = gateway_->url() + "/devin/v3beta1/organizations/org-slow/sessions";
    r.headers = Bearer(kDataKey);
    slow.push_back(std::move(r));
  }
  // Start the slow calls on another thread and wait until the fake holds all of them.
  std::vector<HttpResponse> slow_results;
  std::thread slow_thread([&] { slow_results = HttpParallel(slow, milliseconds(60000)); });
  bool all_in_flight = false;
  for (int i = 0; i < 300 && !all_in_flight; ++i) {
    all_in_flight = fake_.Stats().in_flight >= 200;
    if (!all_in_flight) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(all_in_flight) << "in flight: " << fake_.Stats().in_flight;
  HttpResponse fast = Call("GET", "/devin/v3beta1/enterprise/self");
  // Order, not time: the fast call was answered while every slow call was still held.
  int64_t still_held = fake_.Stats().in_flight;
  EXPECT_EQ(fast.status, 200);
  EXPECT_GE(still_held, 200);
  slow_thread.join();
  ASSERT_EQ(slow_results.size(), 200u);
  for (const auto& r : slow_results) EXPECT_EQ(r.status, 200) << r.error;
}

TEST_F(ForwardTest, TimeoutsAndRefusedConnections) {
  fake_.SetBehaviour("/v2/accounts/slow", 4000);  // longer than devo's timeout_ms 2000
  HttpResponse timeout = Call("GET", "/devo/v2/accounts/slow/tokens");
  EXPECT_EQ(timeout.status, 504);
  EXPECT_EQ(Json::Parse(timeout.body).String("/error/reason"), "upstream_timeout");
  HttpResponse refused = Call("GET", "/nowhere/anything");
  EXPECT_EQ(refused.status, 502);
  EXPECT_EQ(Json::Parse(refused.body).String("/error/reason"), "upstream_unavailable");
}

TEST_F(ForwardTest, OversizeBodiesAndHeadersAreRefusedBeforeForwarding) {
  HttpResponse big_body =
      Call("POST", "/devin/v3beta1/enterprise/organizations", kDataKey, std::string(70000, 'a'));
  EXPECT_EQ(big_body.status, 413);
  EXPECT_EQ(Json::Parse(big_body.body).String("/error/reason"), "payload_too_large");
  HttpResponse big_header = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "",
                                 {{"X-Big", std::string(17 * 1024, 'h')}});
  EXPECT_EQ(big_header.status, 431);
  EXPECT_EQ(Json::Parse(big_header.body).String("/error/reason"), "headers_too_large");
  // Just under the limits passes.
  HttpResponse ok = Call("POST", "/devin/v3beta1/enterprise/organizations", kDataKey,
                         R"({"name":")" + std::string(60000, 'n') + R"("})");
  EXPECT_EQ(ok.status, 201) << ok.body;
  auto seen = fake_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body.size(), 60011u);
}

TEST_F(ForwardTest, KeepAliveWithoutAConnectionHeader) {
  HttpSession session;  // libcurl sends no Connection header on HTTP/1.1
  for (int i = 0; i < 20; ++i) {
    HttpResponse r = session.Request("GET", gateway_->url() + "/devin/v3beta1/enterprise/self",
                                     Bearer(kDataKey));
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("connection"), "keep-alive");
  }
  EXPECT_EQ(session.total_connections(), 1);
}

TEST_F(ForwardTest, ExpectContinueIsAnsweredBeforeTheBodyIsSent) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string body = R"({"name":")" + std::string(2048, 'x') + R"("})";
  std::string head =
      "POST /devin/v3beta1/enterprise/organizations HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer " +
      kDataKey +
      "\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  ASSERT_EQ(write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  // The interim answer arrives although no body byte was sent (a client would otherwise wait).
  std::string interim = ReadUntil(fd, "\r\n\r\n", 5000);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  std::string response = ReadUntil(fd, "}", 5000);
  EXPECT_EQ(response.rfind("HTTP/1.1 201", 0), 0u) << response;
  close(fd);
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, body);
  EXPECT_FALSE(seen[0].HasHeader("Expect"));
}

TEST_F(ForwardTest, PipelinedRequestsAreAnsweredInOrder) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string req1 =
      "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\nX-Request-Id: first\r\n\r\n";
  std::string req2 = "GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: second\r\n\r\n";
  std::string both = req1 + req2;
  ASSERT_EQ(write(fd, both.data(), both.size()), static_cast<ssize_t>(both.size()));
  std::string out = ReadUntil(fd, "\"request_id\":\"second\"}}", 5000);
  close(fd);
  size_t first = out.find("X-Request-Id: first");
  size_t second = out.find("X-Request-Id: second");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
}

TEST_F(ForwardTest, HeadHasNoBody) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string req =
      "HEAD /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\n\r\nGET /_tollgate/health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string out = ReadUntil(fd, "{\"status\":\"ok\"}", 5000);
  close(fd);
  // The HEAD answer's head is followed directly by the next response: no body in between.
  size_t end_of_first = out.find("\r\n\r\n");
  ASSERT_NE(end_of_first, std::string::npos) << out;
  EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_EQ(out.compare(end_of_first + 4, 12, "HTTP/1.1 200"), 0) << out;
  auto seen = fake_.WaitForRequests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "HEAD");
}

TEST_F(ForwardTest, ArbitraryUpstreamHeadersReachTheCallerAndSetCookieDoesNot) {
  HttpResponse r = Call("GET", "/devo/v2/accounts/sampleAccount/tokens");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.Header("x-devo-cid").empty());  // an unregistered header passes
  EXPECT_FALSE(r.HasHeader("set-cookie"));
}

TEST_F(ForwardTest, ARequestLongerThanPistacheHeaderTimeoutStillCompletes) {
  // Pistache's Http layer would answer 408 while an async answer is pending past its header
  // timeout; the front-end has no such timer on requests it has dispatched.
  fake_.SetBehaviour("/v3beta1/enterprise/self", 1500);
  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(r.status, 200);
}

// The value of one series on the gateway's /metrics, or -1 when it is absent.
double Metric(const GatewayProcess& g, const std::string& series) {
  return MetricValue(Http("GET", g.admin_url() + "/metrics").body, series).value_or(-1);
}

// max_response_bytes bounds only what must be held whole: answers on redacted routes. Others
// stream whatever their size (StreamingTest covers a gigabyte).
TEST_F(ForwardTest, AnUpstreamBodyOverMaxResponseBytesIs502AndCountedAsTooLarge) {
  gateway_.reset();
  StartGateway(StandardConfig(R"("max_response_bytes": 4096,)", R"([
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/**",
         "redact": ["/token"]},
        {"upstream": "devin", "path": "/**"}])"));
  FakeBehaviour big;
  big.prefix = "/v3beta1/enterprise/self";
  big.body = R"({"pad":")" + std::string(10000, 'x') + R"("})";
  fake_.SetBehaviour(big);
  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(r.status, 502) << r.body.substr(0, 200);
  Json j = Json::Parse(r.body);
  EXPECT_EQ(j.String("/error/reason"), "upstream_unavailable") << r.body.substr(0, 200);
  EXPECT_EQ(j.String("/error/message"), "upstream 'devin' is unavailable");
  EXPECT_EQ(r.body.find("xxxx"), std::string::npos);
  ASSERT_EQ(fake_.WaitForRequests(1).size(), 1u);  // the upstream did answer
  // A body within the limit on the same gateway passes whole.
  FakeBehaviour small = big;
  small.prefix = "/v3beta1/enterprise/organizations";
  small.body = R"({"pad":")" + std::string(3000, 'y') + R"("})";
  fake_.SetBehaviour(small);
  HttpResponse ok = Call("GET", "/devin/v3beta1/enterprise/organizations");
  // Everything the gateway said, printed on any failure below (this test once failed 1 run in
  // 10 without saying which assertion; the record is what would tell).
  SCOPED_TRACE("audit:\n" + ReadFile(gateway_->audit_path()) + "\nlog:\n" + gateway_->log() +
               "\nmetrics:\n" + Http("GET", gateway_->admin_url() + "/metrics").body);
  EXPECT_EQ(ok.status, 200) << ok.body.substr(0, 300);
  EXPECT_EQ(ok.body, small.body);

  EXPECT_EQ(
      Metric(*gateway_, R"(tollgate_upstream_errors_total{upstream="devin",kind="too_large"})"), 1);
  EXPECT_EQ(Metric(*gateway_, R"(tollgate_upstream_errors_total{upstream="devin",kind="other"})"),
            -1);
  auto lines = gateway_->WaitForAuditLines(2);
  ASSERT_EQ(lines.size(), 2u);
  const Json& a = lines[0];
  EXPECT_EQ(a.String("/request_id"), r.Header("x-request-id"));
  EXPECT_EQ(a.String("/decision"), "error");
  EXPECT_EQ(a.Int("/status"), 502);
  EXPECT_EQ(a.String("/upstream"), "devin");
  EXPECT_TRUE(a.IsNull("/upstream_status"));
  EXPECT_EQ(a.String("/error"), "response body larger than 4096 bytes");
  EXPECT_EQ(lines[1].Int("/status"), 200);
}

TEST_F(ForwardTest, AnUpstreamRetryAfterBeyondAnHourPausesTheUpstreamForAnHourAtMost) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 429, std::string("999999"), 1);
  HttpResponse passed = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(passed.status, 429);
  EXPECT_EQ(Json::Parse(passed.body).Int("/status"), 429);  // the upstream's own answer
  // The memory limiter starts the cooldown before the 429 is passed on, so the very next call
  // meets it, whenever it comes: the gateway answers itself and names at most an hour.
  HttpResponse local = Call("GET", "/devin/v3beta1/enterprise/organizations");
  ASSERT_EQ(local.status, 429) << local.body;
  Json j = Json::Parse(local.body);
  EXPECT_EQ(j.String("/error/reason"), "rate_limited");
  EXPECT_EQ(j.String("/error/bucket"), "upstream:devin");
  int64_t retry_ms = j.Int("/error/retry_after_ms");
  EXPECT_LE(retry_ms, 3600 * 1000);
  EXPECT_GT(retry_ms, 3000 * 1000);  // an hour, less however long this test took
  int64_t retry_after =
      std::stoll(local.Header("retry-after").empty() ? "-1" : local.Header("retry-after"));
  EXPECT_LE(retry_after, 3600);
  EXPECT_GT(retry_after, 3000);
  EXPECT_EQ(fake_.Requests().size(), 1u);  // the second call never left the gateway
}

}  // namespace
}  // namespace tollgate::testing
