// Issue 10, what an upstream's answer may carry to a caller: redaction on every status (point 2),
// no partial or length-revealing answers on redacted routes (point 3), and no upstream secret
// value in any answer, header or body, whole or streamed (point 5). The upstream is the test's
// own (TestServer): it answers whatever bytes a test scripts and echoes the request headers it
// received (as JSON in the body, and as X-Echo-<name> headers), like the attacker's did.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdio>
#include <future>
#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

namespace ts = upstream::testing;

const FakeUpstreamOptions kSecrets;  // the gateway's upstream secrets (StandardOptions)

// devin (bearer) has a redacted route; every upstream may be called on every other path.
const std::string kRules = R"([
        {"upstream": "devin", "path": "/redacted/**", "redact": ["/token"]},
        {"upstream": "devin", "path": "/**"},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])";

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// The echo: the request's headers as a JSON object, and each as X-Echo-<name>.
ts::Reply Echo(const ts::ReceivedRequest& r) {
  std::string body = "{";
  std::string headers = "Content-Type: application/json\r\n";
  for (const auto& [name, value] : r.headers) {
    if (body.size() > 1) body += ",";
    body += "\"" + JsonEscape(name) + "\":\"" + JsonEscape(value) + "\"";
    headers += "X-Echo-" + name + ": " + value + "\r\n";
  }
  body += "}";
  return ts::Reply{ts::HttpResponse(200, body, headers)};
}

// /status/<n>/<kind>: status n with a JSON token body (json), an HTML body (html) or none.
// /head: a HEAD answer naming a 1234-byte body. /partial: a 206; /range: a 200 with
// Content-Range. /gzip: a gzip-encoded answer. /say/<what>: a body naming that secret.
// /echo: the echo.
ts::Reply Script(const ts::ReceivedRequest& r) {
  std::string path = r.target.substr(0, r.target.find('?'));
  if (path.rfind("/redacted", 0) == 0) path = path.substr(9);
  const std::string json = "Content-Type: application/json\r\n";
  if (path.rfind("/status/", 0) == 0) {
    const int status = std::stoi(path.substr(8, 3));
    const std::string kind = path.substr(12);
    const std::string location = status / 100 == 3 ? "Location: /elsewhere\r\n" : "";
    if (kind == "json") {
      return ts::Reply{
          ts::HttpResponse(status, R"({"id":"t-1","token":"tok-abc-123"})", json + location)};
    }
    if (kind == "html") {
      return ts::Reply{ts::HttpResponse(status, "<html>token=tok-abc-123</html>",
                                        "Content-Type: text/html\r\n" + location)};
    }
    if (status == 204 || status == 304) {
      return ts::Reply{"HTTP/1.1 " + std::to_string(status) + " X\r\n" + location + "\r\n"};
    }
    return ts::Reply{ts::HttpResponse(status, "", location)};
  }
  if (path == "/head") {
    return ts::Reply{"HTTP/1.1 200 X\r\n" + json + "Content-Length: 1234\r\n\r\n"};
  }
  if (path == "/partial") {
    return ts::Reply{
        ts::HttpResponse(206, "\"tok-abc-123\"", json + "Content-Range: bytes 20-32/40\r\n")};
  }
  if (path == "/range") {
    return ts::Reply{ts::HttpResponse(200, R"({"id":"t-1","token":"tok-abc-123"})",
                                      json + "Content-Range: bytes 0-34/35\r\n")};
  }
  if (path == "/gzip") {
    return ts::Reply{ts::HttpResponse(200,
                                      std::string("\x1f\x8b\x08\x00", 4) + kSecrets.devin_token,
                                      "Content-Encoding: gzip\r\n")};
  }
  if (path == "/say/devo-secret") {
    return ts::Reply{ts::HttpResponse(
        200, R"({"debug":{"signing_secret":")" + kSecrets.devo_hmac_secret + R"("}})", json)};
  }
  if (path == "/say/devo-token") {
    return ts::Reply{
        ts::HttpResponse(200, R"({"debug":{"other":")" + kSecrets.devo_token + R"("}})", json)};
  }
  return Echo(r);
}

class ResponseHardeningTest : public GatewayTest {
 protected:
  // The gateway with devin, devo and devo-query on `upstream` instead of the fake.
  void StartBefore(const ts::TestServer& upstream) {
    GatewayOptions options = StandardOptions(fake_, StandardConfig("", kRules));
    options.upstream = upstream.Url("");
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }
  // The last audit record (waits for `count` of them).
  Json LastAudit(size_t count) {
    auto lines = gateway_->WaitForAuditLines(count);
    return lines.size() >= count ? lines[count - 1] : Json::Parse("{}");
  }
  std::string RawGet(const std::string& method, const std::string& path,
                     const std::string& extra = "") {
    return RawExchange(gateway_->listen_port(),
                       method + " " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                           kDataKey + "\r\n" + extra + "Connection: close\r\n\r\n");
  }
  // Nothing any answer or record carried names an upstream secret.
  void ExpectNoSecretIn(const std::string& text) {
    for (const std::string* s : {&kSecrets.devin_token, &kSecrets.devo_token,
                                 &kSecrets.devo_hmac_key, &kSecrets.devo_hmac_secret}) {
      EXPECT_EQ(text.find(*s), std::string::npos) << "the secret '" << *s << "' in: " << text;
    }
  }
  void ExpectNoSecretInLogOrAudit() {
    ExpectNoSecretIn(gateway_->log());
    for (const Json& line : gateway_->AuditLines()) {
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      line.root().Accept(w);
      ExpectNoSecretIn(buf.GetString());
    }
  }
};

TEST_F(ResponseHardeningTest, Point2_RedactsTheTokenOnEveryStatus) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  for (int status : {200, 300, 302, 400, 404, 409, 500}) {
    HttpResponse r = Call("GET", "/devin/redacted/status/" + std::to_string(status) + "/json");
    EXPECT_EQ(r.status, status) << r.body;
    Json body = Json::Parse(r.body);
    EXPECT_EQ(body.String("/id"), "t-1") << status << ": " << r.body;
    EXPECT_FALSE(body.Has("/token")) << status << ": " << r.body;
    EXPECT_EQ(r.body.find("tok-abc-123"), std::string::npos) << status << ": " << r.body;
  }
  // The same answers on a route without redactions pass whole: the upstream did send them.
  HttpResponse plain = Call("GET", "/devin/status/404/json");
  EXPECT_NE(plain.body.find("tok-abc-123"), std::string::npos) << plain.body;
}

TEST_F(ResponseHardeningTest, Point2_NonJsonBodyIsWithheldWhateverItsStatus) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  for (int status : {200, 302, 404, 500}) {
    HttpResponse r = Call("GET", "/devin/redacted/status/" + std::to_string(status) + "/html");
    EXPECT_EQ(r.status, 502) << status << ": " << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "upstream_unavailable") << r.body;
    EXPECT_EQ(r.body.find("tok-abc-123"), std::string::npos) << r.body;
  }
  // An empty body has nothing to redact: it passes, whatever its status.
  for (int status : {204, 304, 302}) {
    HttpResponse r = Call("GET", "/devin/redacted/status/" + std::to_string(status) + "/empty");
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.body, "");
  }
}

TEST_F(ResponseHardeningTest, Point3_A206OrContentRangeAnswerOnARedactedRouteIs502) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  for (const char* path : {"/devin/redacted/partial", "/devin/redacted/range"}) {
    HttpResponse r = Call("GET", path);
    EXPECT_EQ(r.status, 502) << path << ": " << r.body;
    EXPECT_EQ(r.body.find("tok-abc-123"), std::string::npos) << r.body;
    EXPECT_FALSE(r.HasHeader("Content-Range")) << path;
  }
  ASSERT_TRUE(upstream.WaitForRequests(2, milliseconds(10000)));
  auto lines = gateway_->WaitForAuditLines(2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].Int("/status"), 502);
  EXPECT_NE(lines[0].String("/error").find("206"), std::string::npos) << lines[0].String("/error");
  EXPECT_NE(lines[1].String("/error").find("Content-Range"), std::string::npos);
}

TEST_F(ResponseHardeningTest, Point3_HeadOnARedactedRouteCarriesNoUpstreamLength) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  // Raw: a client library would not show a HEAD answer's Content-Length as sent.
  const std::string redacted = RawGet("HEAD", "/devin/redacted/head");
  EXPECT_EQ(StatusOf(redacted), 200) << redacted;
  EXPECT_EQ(redacted.find("Content-Length: 1234\r\n"), std::string::npos) << redacted;
  // Nor any made-up length: the field is omitted, as RFC 9110 allows for HEAD.
  EXPECT_EQ(redacted.find("Content-Length"), std::string::npos) << redacted;
  // Without redactions the upstream's length is the real one, and is passed.
  const std::string plain = RawGet("HEAD", "/devin/head");
  EXPECT_NE(plain.find("Content-Length: 1234\r\n"), std::string::npos) << plain;
}

TEST_F(ResponseHardeningTest, Point5_TheBearerTokenEchoedInBodyAndHeadersIsReplaced) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse r = Call("GET", "/devin/echo");
  ASSERT_EQ(r.status, 200) << r.body;
  // The upstream got the token (so its echo carried it) ...
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000)));
  EXPECT_EQ(upstream.received()[0].Values("Authorization"),
            std::vector<std::string>{"Bearer " + kSecrets.devin_token});
  // ... and the caller got none of it, in the body or a header; the length is the new one.
  EXPECT_EQ(Json::Parse(r.body).String("/Authorization"), "Bearer [redacted]") << r.body;
  EXPECT_EQ(r.Header("X-Echo-Authorization"), "Bearer [redacted]");
  EXPECT_EQ(r.Header("Content-Length"), std::to_string(r.body.size()));
  ExpectNoSecretIn(r.body);
  for (const auto& [name, value] : r.headers) ExpectNoSecretIn(value);
  ExpectNoSecretInLogOrAudit();
}

TEST_F(ResponseHardeningTest, Point5_TheHeaderSecretIsReplaced) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse r = Call("GET", "/devo/echo");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000)));
  EXPECT_EQ(upstream.received()[0].Values("standAloneToken"),
            std::vector<std::string>{kSecrets.devo_token});
  EXPECT_EQ(Json::Parse(r.body).String("/standAloneToken"), "[redacted]") << r.body;
  EXPECT_EQ(r.Header("X-Echo-standAloneToken"), "[redacted]");
  ExpectNoSecretIn(r.body);
  for (const auto& [name, value] : r.headers) ExpectNoSecretIn(value);
}

TEST_F(ResponseHardeningTest, Point5_TheDevoHmacKeyAndSecretAreReplaced) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse echo = Call("GET", "/devo-query/echo");
  ASSERT_EQ(echo.status, 200) << echo.body;
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000)));
  EXPECT_EQ(upstream.received()[0].Values("x-logtrust-apikey"),
            std::vector<std::string>{kSecrets.devo_hmac_key});
  EXPECT_EQ(Json::Parse(echo.body).String("/x-logtrust-apikey"), "[redacted]") << echo.body;
  EXPECT_EQ(echo.Header("X-Echo-x-logtrust-apikey"), "[redacted]");
  // The signing secret never travels, but an upstream that knows it can still say it.
  HttpResponse said = Call("GET", "/devo-query/say/devo-secret");
  ASSERT_EQ(said.status, 200) << said.body;
  EXPECT_EQ(Json::Parse(said.body).String("/debug/signing_secret"), "[redacted]") << said.body;
  ExpectNoSecretIn(echo.body + said.body);
}

TEST_F(ResponseHardeningTest, Point5_AnotherUpstreamsSecretIsReplacedToo) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse r = Call("GET", "/devin/say/devo-token");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Json::Parse(r.body).String("/debug/other"), "[redacted]") << r.body;
}

TEST_F(ResponseHardeningTest, Point5_AStreamedAnswerWithTheSecretSplitAcrossChunksIsReplaced) {
  // The upstream sends the first chunk, ending inside the token, and the rest only once the
  // caller has received the first chunk's clean bytes: the two halves reach the gateway apart.
  std::promise<void> first_seen;
  std::shared_future<void> go = first_seen.get_future().share();
  const std::string& token = kSecrets.devin_token;
  const std::string head = "token is " + token.substr(0, 7);
  const std::string tail = token.substr(7) + " and that is all";
  ts::TestServer upstream([&](const ts::ReceivedRequest&) {
    ts::Reply reply{
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"};
    reply.stream = [&, go](ts::StreamConn& conn) {
      auto chunk = [](const std::string& data) {
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", data.size());
        return size + data + "\r\n";
      };
      conn.Write(chunk(head));
      go.wait_for(std::chrono::seconds(20));
      conn.Write(chunk(tail) + "0\r\n\r\n");
    };
    return reply;
  });
  StartBefore(upstream);
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /devin/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                              kDataKey + "\r\nConnection: close\r\n\r\n"));
  std::string before = ReadUntil(fd, "token is ", 20000);
  first_seen.set_value();
  std::string answer = before + ReadUntil(fd, "", 20000);
  close(fd);
  ASSERT_EQ(StatusOf(answer), 200) << answer;
  // What passed before the second half arrived held back the token's start.
  EXPECT_EQ(before.find(token.substr(0, 7)), std::string::npos) << before;
  EXPECT_NE(answer.find("Transfer-Encoding: chunked"), std::string::npos) << answer;
  std::string body;
  for (size_t at = answer.find("\r\n\r\n") + 4; at < answer.size();) {
    size_t line = answer.find("\r\n", at);
    size_t size = std::strtoul(answer.substr(at, line - at).c_str(), nullptr, 16);
    body += answer.substr(line + 2, size);
    at = line + 2 + size + 2;
    if (size == 0) break;
  }
  EXPECT_EQ(body, "token is [redacted] and that is all") << answer;
  ExpectNoSecretIn(answer);
}

TEST_F(ResponseHardeningTest, Point5_ALargeAnswerCarryingTheSecretIsCutBeforeIt) {
  // Over 64 KiB with a Content-Length: streamed with that length, so a replacement cannot be
  // sent; the stream is cut where the secret begins.
  const std::string& token = kSecrets.devin_token;
  const std::string body = std::string(100000, 'x') + token + std::string(100000, 'y');
  ts::TestServer upstream([&](const ts::ReceivedRequest&) {
    return ts::Reply{ts::HttpResponse(200, body, "Content-Type: text/plain\r\n")};
  });
  StartBefore(upstream);
  const std::string answer = RawGet("GET", "/devin/big");
  ASSERT_EQ(StatusOf(answer), 200) << answer.substr(0, 300);
  EXPECT_NE(answer.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos)
      << answer.substr(0, 300);
  const std::string received = answer.substr(answer.find("\r\n\r\n") + 4);
  EXPECT_LT(received.size(), body.size());
  EXPECT_EQ(received.find_first_not_of('x'), std::string::npos)
      << "bytes past the secret's start reached the caller";
  Json audit = LastAudit(1);
  EXPECT_EQ(audit.String("/ended_by"), "secret_withheld");
  EXPECT_FALSE(audit.String("/error").empty());
  ExpectNoSecretInLogOrAudit();
}

TEST_F(ResponseHardeningTest, Point5_AGzipEncodedAnswerIs502) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse r = Call("GET", "/devin/gzip");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_FALSE(r.HasHeader("Content-Encoding"));
  EXPECT_EQ(r.body.find("\x1f\x8b"), std::string::npos);
  ExpectNoSecretIn(r.body);
  EXPECT_NE(LastAudit(1).String("/error").find("Content-Encoding"), std::string::npos);
}

TEST_F(ResponseHardeningTest, Point5_ReplacementsAreCountedAndWarnedWithTheRequestId) {
  ts::TestServer upstream(Script);
  StartBefore(upstream);
  HttpResponse r =
      Call("GET", "/devin/echo", kDataKey, "", {{"X-Request-Id", "resp-hardening-req-1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  // Authorization and X-Echo-Authorization: two replacements, in a header and in the body.
  const std::string metric = "tollgate_upstream_secrets_redacted_total";
  std::optional<double> seen;
  for (int i = 0;
       i < 100 && (seen = MetricValue(Http("GET", gateway_->admin_url() + "/metrics").body, metric,
                                      {{"upstream", "devin"}})) != 2.0;
       ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(seen, 2.0);
  ASSERT_TRUE(gateway_->WaitForLog("resp-hardening-req-1")) << gateway_->log();
  const std::string log = gateway_->log();
  const size_t at = log.find("resp-hardening-req-1");
  const std::string line =
      log.substr(log.rfind('\n', at) + 1, log.find('\n', at) - log.rfind('\n', at) - 1);
  EXPECT_NE(line.find("warn"), std::string::npos) << line;
  EXPECT_NE(line.find("devin"), std::string::npos) << line;
  // Once per answer.
  size_t count = 0;
  for (size_t p = log.find("resp-hardening-req-1"); p != std::string::npos;
       p = log.find("resp-hardening-req-1", p + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << log;
  ExpectNoSecretInLogOrAudit();
}

}  // namespace
}  // namespace tollgate::testing
