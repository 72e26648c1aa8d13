// The pipeline as a whole, in-process: gateway::Pipeline with real parts (a Snapshot built from
// a config text, the memory limiter, a real UpstreamClient against the in-process test server,
// an AuditLog writing to a temp file, Metrics) and an Exchange that captures the response
// instead of writing it to a socket. Each test drives one ending of the request (DESIGN.md, "The
// request pipeline") and checks what the caller got, what the upstream received, the audit
// record's values and, where it matters, the metrics. Every call writes exactly one audit
// record (checked after every test).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "config/loader.h"
#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/pipeline.h"
#include "gateway/rate_limit_headers.h"
#include "gateway/snapshot.h"
#include "policies/rate_limiter.h"
#include "tests/support/harness.h"
#include "tests/support/process.h"
#include "tests/unit/upstream_test_server.h"
#include "upstream/upstream_auth.h"
#include "upstream/upstream_client.h"

namespace tollgate::gateway {
namespace {

namespace ts = tollgate::upstream::testing;
using std::chrono::milliseconds;

// Generous: reached only when something is broken, never part of an assertion on speed.
constexpr milliseconds kWait(30000);

const std::string kCallerKey = "tg_unit_caller_key_0123456789";
const std::string kUpstreamSecret = "unit-upstream-secret-value";
constexpr uint64_t kMaxResponseBytes = 4096;

// What the test server answers, by path. Runs on the server's connection threads.
ts::Reply Answer(const ts::ReceivedRequest& r) {
  const std::string path = r.target.substr(0, r.target.find('?'));
  auto json = [](int status, const std::string& body, const std::string& extra = "") {
    return ts::Reply{ts::HttpResponse(status, body, "Content-Type: application/json\r\n" + extra),
                     false, false};
  };
  if (r.method == "HEAD") {
    // A HEAD answer names the GET body's length and sends no body.
    return ts::Reply{
        "HTTP/1.1 200 X\r\nContent-Type: application/json\r\nContent-Length: "
        "1234\r\n\r\n",
        false, false};
  }
  if (path == "/redacted/doc") {
    return json(200,
                R"({"id":"doc-1","token":"tok-secret","items":[{"n":1,"token":"a"},{"n":2}]})");
  }
  if (path == "/redacted/html") {
    return ts::Reply{
        ts::HttpResponse(200, "<html>token=tok-secret</html>", "Content-Type: text/html\r\n"),
        false, false};
  }
  if (path == "/redacted/missing") {
    return ts::Reply{
        ts::HttpResponse(404, "<html>no token=tok-secret</html>", "Content-Type: text/html\r\n"),
        false, false};
  }
  if (path == "/quota-hostile") {
    return json(429, R"({"error":"quota"})", "Retry-After: 999999\r\n");
  }
  if (path == "/quota-bare") return json(429, R"({"error":"quota"})");
  if (path == "/big" || path == "/redacted/big") {
    return json(200, "\"" + std::string(kMaxResponseBytes * 2, 'b') + "\"");
  }
  if (path == "/hold") return ts::Reply{"", true, false};
  if (path == "/created") {
    // The upstream names its own origin; the caller must get the gateway path.
    std::string host;
    for (const auto& [k, v] : r.headers) {
      if (ts::ReceivedRequest::Lower(k) == "host") host = v;
    }
    return json(201, R"({"id":"new-1"})", "Location: http://" + host + "/created/new-1\r\n");
  }
  return json(200, R"({"ok":true})");
}

// A loopback port that refuses connections: bound, never listened on, held for the test.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string PipelineConfig(const std::string& audit_file, const std::string& upstream_url,
                           int refusing_port) {
  const std::string bearer = R"({"type": "bearer", "secret_env": "UP_SECRET"})";
  return R"({
  "audit": {"file": ")" +
         audit_file + R"("},
  "upstreams": {
    "up": {"base_url": ")" +
         upstream_url + R"(", "timeout_ms": 20000, "auth": )" + bearer + R"(},
    "limited": {"base_url": ")" +
         upstream_url + R"(", "timeout_ms": 20000,
                "auth": {"type": "header", "header": "X-Api-Token", "secret_env": "UP_SECRET"},
                "limits": [{"name": "one-per-hour", "rate": "1/h", "burst": 1, "scope": "shared"}]},
    "slow": {"base_url": ")" +
         upstream_url + R"(", "timeout_ms": 300, "auth": )" + bearer + R"(},
    "dead": {"base_url": "http://127.0.0.1:)" +
         std::to_string(refusing_port) + R"(", "connect_timeout_ms": 20000, "auth": )" + bearer +
         R"(}
  },
  "roles": {
    "reader": {"rules": [
      {"upstream": "up", "methods": ["GET"], "path": "/redacted/**",
       "redact": ["/token", "/items/*/token"]},
      {"upstream": "up", "effect": "deny", "path": "/admin/**"},
      {"upstream": "up", "path": "/**"},
      {"upstream": "limited", "effect": "deny", "path": "/forbidden/**"},
      {"upstream": "limited", "path": "/**"},
      {"upstream": "slow", "path": "/**"},
      {"upstream": "dead", "path": "/**"}
    ]}
  },
  "callers": {
    "unit-caller": {"key_sha256": [")" +
         upstream::Sha256Hex(kCallerKey) + R"("], "roles": ["reader"]}
  }
})";
}

const std::string* FindHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

std::string HeaderOr(const HttpResponse& r, std::string_view name, std::string fallback = "") {
  const std::string* v = FindHeader(r.headers, name);
  return v ? *v : fallback;
}

struct Parsed {
  std::shared_ptr<rapidjson::Document> doc = std::make_shared<rapidjson::Document>();
  explicit Parsed(const std::string& text) { doc->Parse(text.c_str(), text.size()); }
  bool ok() const { return !doc->HasParseError(); }
  const rapidjson::Value* At(const char* pointer) const {
    if (!ok()) return nullptr;
    return rapidjson::Pointer(pointer).Get(*doc);
  }
  std::string Str(const char* pointer) const {
    const rapidjson::Value* v = At(pointer);
    return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : "<absent>";
  }
  int64_t Int(const char* pointer) const {
    const rapidjson::Value* v = At(pointer);
    return v && v->IsInt64() ? v->GetInt64() : -999;
  }
  bool IsNull(const char* pointer) const {
    const rapidjson::Value* v = At(pointer);
    return v && v->IsNull();
  }
  bool Has(const char* pointer) const { return At(pointer) != nullptr; }
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("no_proxy", "127.0.0.1", 1);
    setenv("NO_PROXY", "127.0.0.1", 1);
    audit_path_ = dir_.path() + "/audit.log";
    config::SecretSource secrets;
    secrets.env = [](const std::string& name) -> std::optional<std::string> {
      if (name == "UP_SECRET") return kUpstreamSecret;
      return std::nullopt;
    };
    secrets.file = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
    config::LoadResult loaded = config::LoadConfigString(
        PipelineConfig(audit_path_, server_.Url(""), refusing_.port()), secrets);
    ASSERT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : FormatError(loaded.errors[0]));
    std::string error;
    snapshot_ = Snapshot::Build(loaded.config, &error);
    ASSERT_NE(snapshot_, nullptr) << error;
    limiter_ = policies::MakeMemoryLimiter();
    audit_ = std::make_unique<AuditLog>(snapshot_->config().audit, std::nullopt);
    PipelineDeps deps;
    deps.limiter = limiter_.get();
    deps.audit = audit_.get();
    deps.metrics = &metrics_;
    deps.upstream_options.max_response_bytes = kMaxResponseBytes;
    deps.upstream_stats = &upstream_stats_;
    pipeline_ = std::make_unique<Pipeline>(std::move(deps));
    pipeline_->SetSnapshot(snapshot_);
  }

  void TearDown() override {
    if (!pipeline_) return;
    // Every ending wrote exactly one audit record: as many lines as calls, one per request id.
    std::vector<Parsed> records = Audit();
    ASSERT_EQ(records.size(), request_ids_.size());
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].Str("/request_id"), request_ids_[i]) << "record " << i;
    }
  }

  // One request through the pipeline; returns once the response was sent and the pipeline has
  // finished with the request (its audit record submitted).
  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& key = kCallerKey, HeaderList headers = {},
                    int parse_error_status = 0) {
    HttpRequest request;
    request.method = method;
    request.target = target;
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    request.headers = std::move(headers);
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    std::future<HttpResponse> future = promise->get_future();
    auto exchange = std::make_shared<Exchange>(
        std::move(request), "192.0.2.7",
        [promise](HttpResponse response) { promise->set_value(std::move(response)); },
        parse_error_status, parse_error_status ? "the parser said no" : "");
    pipeline_->Handle(std::move(exchange));
    if (future.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "no response to " << method << " " << target;
      return HttpResponse{0, {}, "", std::nullopt};
    }
    EXPECT_TRUE(pipeline_->Drain(kWait)) << "the pipeline still holds a request";
    HttpResponse response = future.get();
    request_ids_.push_back(HeaderOr(response, "x-request-id", "<none>"));
    return response;
  }

  std::vector<Parsed> Audit() {
    audit_->Flush();
    std::vector<Parsed> out;
    std::string text = testing::ReadFile(audit_path_);
    for (size_t p = 0; p < text.size();) {
      size_t e = text.find('\n', p);
      if (e == std::string::npos) e = text.size();
      out.emplace_back(text.substr(p, e - p));
      p = e + 1;
    }
    return out;
  }

  // The one audit record of the latest call.
  Parsed LastAudit() {
    std::vector<Parsed> records = Audit();
    EXPECT_FALSE(records.empty());
    return records.empty() ? Parsed("") : records.back();
  }

  double Metric(const std::string& series) {
    return testing::MetricValue(metrics_.Render(MetricsSnapshot{}), series).value_or(0);
  }

  // The error envelope's fields, and the request id it names is the response header's.
  static Parsed Envelope(const HttpResponse& r, int status, const std::string& reason) {
    Parsed body(r.body);
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_TRUE(body.ok()) << r.body;
    EXPECT_EQ(body.Int("/error/code"), status) << r.body;
    EXPECT_EQ(body.Str("/error/reason"), reason) << r.body;
    EXPECT_EQ(body.Str("/error/request_id"), HeaderOr(r, "x-request-id")) << r.body;
    EXPECT_EQ(HeaderOr(r, "content-type"), "application/json");
    return body;
  }

  testing::TempDir dir_;
  std::string audit_path_;
  ts::TestServer server_{Answer};
  RefusingPort refusing_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::unique_ptr<policies::RateLimiter> limiter_;
  upstream::UpstreamClientStats upstream_stats_;
  std::unique_ptr<AuditLog> audit_;
  Metrics metrics_;
  std::unique_ptr<Pipeline> pipeline_;
  std::vector<std::string> request_ids_;
};

// ------------------------------------------------------------------------------- stage order

TEST_F(PipelineTest, ParseErrorsEndFirstWithTheParserStatus) {
  HttpResponse r = Call("POST", "/up/anything", kCallerKey, {}, 413);
  Envelope(r, 413, "payload_too_large");
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "bad_request");
  EXPECT_EQ(a.Int("/status"), 413);
  EXPECT_EQ(a.Str("/path"), "/up/anything");
  EXPECT_EQ(a.Str("/error"), "the parser said no");
  EXPECT_EQ(server_.received().size(), 0u);
}

TEST_F(PipelineTest, NormaliseComesBeforeRouteAndAuthentication) {
  // No key and an unknown upstream: the malformed path is what is reported.
  HttpResponse r = Call("GET", "/nosuch/a/../b", "");
  Envelope(r, 400, "bad_request");
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "bad_request");
  EXPECT_EQ(a.Int("/status"), 400);
  EXPECT_TRUE(a.IsNull("/caller"));
  EXPECT_EQ(a.Str("/upstream"), "");
  EXPECT_EQ(server_.received().size(), 0u);
}

TEST_F(PipelineTest, RouteComesBeforeAuthentication) {
  HttpResponse r = Call("GET", "/nosuch/x", "");
  Parsed body = Envelope(r, 404, "not_found");
  EXPECT_NE(body.Str("/error/message").find("nosuch"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "not_found");
  EXPECT_EQ(a.Int("/status"), 404);
  EXPECT_EQ(a.Str("/path"), "/nosuch/x");
  EXPECT_TRUE(a.IsNull("/caller"));
  EXPECT_EQ(server_.received().size(), 0u);
}

TEST_F(PipelineTest, AuthenticationComesBeforeAuthorisationAndTheLimit) {
  // A forbidden path without a key: 401, and the one-per-hour bucket is not touched.
  HttpResponse r = Call("GET", "/limited/forbidden/x", "wrong-key");
  Envelope(r, 401, "unauthenticated");
  EXPECT_EQ(r.body.find("wrong-key"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "unauthenticated");
  EXPECT_EQ(a.Int("/status"), 401);
  EXPECT_EQ(a.Str("/upstream"), "limited");
  EXPECT_TRUE(a.IsNull("/caller"));
  EXPECT_FALSE(FindHeader(r.headers, "ratelimit"));
  EXPECT_EQ(Call("GET", "/limited/ok").status, 200);  // the bucket's one token was still there
}

TEST_F(PipelineTest, AuthorisationComesBeforeTheLimit) {
  HttpResponse r = Call("GET", "/limited/forbidden/x");
  Parsed body = Envelope(r, 403, "forbidden");
  EXPECT_NE(body.Str("/error/message").find("GET /forbidden/x"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "forbidden");
  EXPECT_EQ(a.Int("/status"), 403);
  EXPECT_EQ(a.Str("/caller"), "unit-caller");
  EXPECT_EQ(a.Str("/rule"), "/forbidden/**");
  EXPECT_EQ(server_.received().size(), 0u);
  EXPECT_EQ(Call("GET", "/limited/ok").status, 200);  // the 403 took no token
  EXPECT_EQ(server_.received().size(), 1u);
}

TEST_F(PipelineTest, ALimitedCallIs429WithRetryAfterAndTheBucketAndNeverForwarded) {
  HttpResponse first = Call("GET", "/limited/ok");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(HeaderOr(first, "ratelimit-remaining"), "0");
  HttpResponse r = Call("GET", "/limited/ok");
  Parsed body = Envelope(r, 429, "rate_limited");
  EXPECT_EQ(body.Str("/error/bucket"), "one-per-hour");
  // One token per hour, just taken: the next is an hour away (whole seconds on the header).
  int64_t retry_ms = body.Int("/error/retry_after_ms");
  EXPECT_GT(retry_ms, 3500 * 1000);
  EXPECT_LE(retry_ms, 3600 * 1000);
  int64_t header = std::stoll(HeaderOr(r, "retry-after", "-1"));
  EXPECT_EQ(header, (retry_ms + 999) / 1000);
  EXPECT_EQ(HeaderOr(r, "ratelimit-policy"), "\"one-per-hour\";q=1;w=3600");
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "rate_limited");
  EXPECT_EQ(a.Int("/status"), 429);
  EXPECT_EQ(a.Str("/bucket"), "one-per-hour");
  EXPECT_TRUE(a.IsNull("/upstream_status"));
  EXPECT_EQ(server_.received().size(), 1u);  // only the first call was forwarded
  EXPECT_EQ(Metric(R"(tollgate_ratelimit_decisions_total{bucket="one-per-hour",result="limited"})"),
            1);
}

TEST_F(PipelineTest, DrainingAnswers503WithRetryAfterOne) {
  pipeline_->SetDraining();
  HttpResponse r = Call("GET", "/up/x");
  Envelope(r, 503, "shutting_down");
  EXPECT_EQ(HeaderOr(r, "retry-after"), "1");
  EXPECT_EQ(LastAudit().Int("/status"), 503);
  EXPECT_EQ(server_.received().size(), 0u);
}

// ---------------------------------------------------------------------------------- forwarding

TEST_F(PipelineTest, AnAllowedCallIsForwardedWithTheUpstreamSecretAndAudited) {
  HttpResponse r = Call("GET", "/up/v1/things?b=2&a=1", kCallerKey,
                        {{"Accept", "application/json"}, {"X-Request-Id", "trace-1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"ok":true})");
  EXPECT_EQ(HeaderOr(r, "x-request-id"), "trace-1");
  auto seen = server_.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1/things?b=2&a=1");
  EXPECT_EQ(seen[0].Values("Authorization"), std::vector<std::string>{"Bearer " + kUpstreamSecret});
  EXPECT_EQ(seen[0].Values("X-Request-Id"), std::vector<std::string>{"trace-1"});
  EXPECT_EQ(seen[0].Values("Accept"), std::vector<std::string>{"application/json"});
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "allowed");
  EXPECT_EQ(a.Int("/status"), 200);
  EXPECT_EQ(a.Int("/upstream_status"), 200);
  EXPECT_EQ(a.Str("/upstream"), "up");
  EXPECT_EQ(a.Str("/path"), "/v1/things");
  EXPECT_EQ(a.Str("/rule"), "/**");
  EXPECT_EQ(a.Str("/client_ip"), "192.0.2.7");
  EXPECT_EQ(a.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
  EXPECT_EQ(Metric(R"(tollgate_requests_total{upstream="up",decision="allowed",code_class="2xx"})"),
            1);
}

TEST_F(PipelineTest, AHeaderSecretReplacesTheCallersCopyAndNoAuthorizationIsForwarded) {
  HttpResponse r = Call("GET", "/limited/ok", kCallerKey, {{"X-Api-Token", "forged"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto seen = server_.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Values("X-Api-Token"), std::vector<std::string>{kUpstreamSecret});
  EXPECT_FALSE(seen[0].Has("Authorization"));
  for (const auto& [name, value] : seen[0].headers) {
    EXPECT_EQ(value.find(kCallerKey), std::string::npos) << name;
  }
}

TEST_F(PipelineTest, LocationUnderTheUpstreamIsRewrittenToTheGatewayPath) {
  HttpResponse r = Call("POST", "/up/created");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(HeaderOr(r, "location"), "/up/created/new-1");
}

TEST_F(PipelineTest, HeadCarriesTheUpstreamContentLengthAndAuditsNoBytesOut) {
  HttpResponse r = Call("HEAD", "/up/doc");
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(r.head_content_length.has_value());
  EXPECT_EQ(*r.head_content_length, 1234u);
  EXPECT_TRUE(r.body.empty());
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/method"), "HEAD");
  EXPECT_EQ(a.Int("/bytes_out"), 0);
}

// ------------------------------------------------------------------------------ upstream errors

TEST_F(PipelineTest, ARefusedConnectionIs502WithoutTheUpstreamsAddress) {
  HttpResponse r = Call("GET", "/dead/x");
  Parsed body = Envelope(r, 502, "upstream_unavailable");
  // libcurl's text names the internal host and port: the audit record gets it, the caller not.
  EXPECT_EQ(r.body.find("127.0.0.1"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find(std::to_string(refusing_.port())), std::string::npos) << r.body;
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "error");
  EXPECT_EQ(a.Int("/status"), 502);
  EXPECT_TRUE(a.IsNull("/upstream_status"));
  EXPECT_NE(a.Str("/error"), body.Str("/error/message"));
  EXPECT_NE(a.Str("/error").find(std::to_string(refusing_.port())), std::string::npos)
      << a.Str("/error");
  EXPECT_EQ(Metric(R"(tollgate_upstream_errors_total{upstream="dead",kind="connect"})"), 1);
}

TEST_F(PipelineTest, AnUpstreamThatNeverAnswersIs504) {
  // The test server holds the request forever, so only the 300 ms timeout can end it.
  HttpResponse r = Call("GET", "/slow/hold");
  Parsed body = Envelope(r, 504, "upstream_timeout");
  EXPECT_NE(body.Str("/error/message").find("300 ms"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "error");
  EXPECT_EQ(a.Int("/status"), 504);
  EXPECT_EQ(Metric(R"(tollgate_upstream_errors_total{upstream="slow",kind="timeout"})"), 1);
}

// A route without redactions streams: max_response_bytes does not apply, the body passes whole.
TEST_F(PipelineTest, AStreamedResponseIsNotBoundByMaxResponseBytes) {
  HttpResponse r = Call("GET", "/up/big");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"" + std::string(kMaxResponseBytes * 2, 'b') + "\"");
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "allowed");
  EXPECT_EQ(a.Str("/ended_by"), "complete");
  EXPECT_EQ(a.Int("/bytes_out"), static_cast<int64_t>(kMaxResponseBytes * 2 + 2));
  EXPECT_EQ(Metric(R"(tollgate_upstream_errors_total{upstream="up",kind="too_large"})"), 0);
}

// A redacted route needs the whole body: past max_response_bytes it is withheld.
TEST_F(PipelineTest, ARedactedResponseOverMaxResponseBytesIs502TooLarge) {
  HttpResponse r = Call("GET", "/up/redacted/big");
  Parsed body = Envelope(r, 502, "upstream_unavailable");
  EXPECT_EQ(r.body.find("bbbb"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "error");
  EXPECT_EQ(a.Int("/status"), 502);
  EXPECT_EQ(a.Str("/error"),
            "response body larger than " + std::to_string(kMaxResponseBytes) + " bytes");
  EXPECT_EQ(Metric(R"(tollgate_upstream_errors_total{upstream="up",kind="too_large"})"), 1);
  EXPECT_EQ(Metric(R"(tollgate_upstream_errors_total{upstream="up",kind="other"})"), 0);
}

// ------------------------------------------------------------------------------------ redaction

TEST_F(PipelineTest, RedactionRemovesThePointersFromA2xxJsonBody) {
  HttpResponse r = Call("GET", "/up/redacted/doc");
  ASSERT_EQ(r.status, 200) << r.body;
  Parsed body(r.body);
  ASSERT_TRUE(body.ok()) << r.body;
  EXPECT_EQ(body.Str("/id"), "doc-1");
  EXPECT_FALSE(body.Has("/token")) << r.body;
  EXPECT_FALSE(body.Has("/items/0/token")) << r.body;
  EXPECT_EQ(body.Int("/items/0/n"), 1);
  EXPECT_EQ(body.Int("/items/1/n"), 2);
  EXPECT_EQ(r.body.find("tok-secret"), std::string::npos);
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/rule"), "/redacted/**");
  EXPECT_EQ(a.Int("/bytes_out"), static_cast<int64_t>(r.body.size()));
}

TEST_F(PipelineTest, ANonJson2xxOnARedactedRouteIsWithheldAs502) {
  HttpResponse r = Call("GET", "/up/redacted/html");
  Envelope(r, 502, "upstream_unavailable");
  EXPECT_EQ(r.body.find("tok-secret"), std::string::npos) << r.body;
  EXPECT_NE(HeaderOr(r, "content-type"), "text/html");
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "error");
  EXPECT_EQ(a.Int("/status"), 502);
  EXPECT_EQ(a.Int("/upstream_status"), 200);  // it did answer; the gateway withheld it
}

// Issue 10 point 2: an error page can carry the token as well as a 200 can: redaction (and
// withholding what cannot be parsed) applies whatever the status.
TEST_F(PipelineTest, ANonJsonErrorBodyOnARedactedRouteIsWithheldAs502Too) {
  HttpResponse r = Call("GET", "/up/redacted/missing");
  Envelope(r, 502, "upstream_unavailable");
  EXPECT_EQ(r.body.find("tok-secret"), std::string::npos) << r.body;
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "error");
  EXPECT_EQ(a.Int("/upstream_status"), 404);
}

TEST_F(PipelineTest, ARedactedRouteAsksForTheWholeUnencodedBody) {
  const HeaderList partial = {{"Range", "bytes=0-10"},
                              {"If-Range", "\"etag-1\""},
                              {"Accept-Encoding", "gzip, br"},
                              {"If-None-Match", "\"etag-0\""}};
  ASSERT_EQ(Call("GET", "/up/redacted/doc", kCallerKey, partial).status, 200);
  ASSERT_EQ(Call("GET", "/up/plain", kCallerKey, partial).status, 200);
  auto seen = server_.received();
  ASSERT_EQ(seen.size(), 2u);
  for (const char* name : {"Range", "If-Range", "Accept-Encoding"}) {
    EXPECT_FALSE(seen[0].Has(name)) << name << " reached the upstream on a redacted route";
  }
  EXPECT_EQ(seen[0].Values("If-None-Match"), std::vector<std::string>{"\"etag-0\""});
  // Without redaction a byte range is the caller's business and passes unchanged; compression
  // is asked for on no route (answers are scanned for secrets).
  EXPECT_EQ(seen[1].Values("Range"), std::vector<std::string>{"bytes=0-10"});
  EXPECT_EQ(seen[1].Values("If-Range"), std::vector<std::string>{"\"etag-1\""});
  EXPECT_FALSE(seen[1].Has("Accept-Encoding"));
}

// -------------------------------------------------------------------------- upstream 429

TEST_F(PipelineTest, AnUpstream429CoolsTheUpstreamAndTheNextCallIsALocal429WithinTheCap) {
  HttpResponse passed = Call("GET", "/up/quota-hostile");
  EXPECT_EQ(passed.status, 429);
  EXPECT_EQ(passed.body, R"({"error":"quota"})");  // the upstream's own answer is passed on
  Parsed a = LastAudit();
  EXPECT_EQ(a.Str("/decision"), "allowed");
  EXPECT_EQ(a.Int("/upstream_status"), 429);
  EXPECT_EQ(Metric(R"(tollgate_upstream_cooldowns_total{upstream="up"})"), 1);

  // The cooldown is in force at once (the memory limiter sets it before the answer is sent):
  // the next call, to another path of the same upstream, never leaves the gateway.
  HttpResponse local = Call("GET", "/up/other");
  Parsed body = Envelope(local, 429, "rate_limited");
  EXPECT_EQ(body.Str("/error/bucket"), "upstream:up");
  int64_t retry_ms = body.Int("/error/retry_after_ms");
  EXPECT_LE(retry_ms, kMaxUpstreamCooldownSeconds * 1000);
  EXPECT_GT(retry_ms, (kMaxUpstreamCooldownSeconds - 60) * 1000);
  int64_t header = std::stoll(HeaderOr(local, "retry-after", "-1"));
  EXPECT_LE(header, kMaxUpstreamCooldownSeconds);
  EXPECT_GT(header, kMaxUpstreamCooldownSeconds - 60);
  Parsed l = LastAudit();
  EXPECT_EQ(l.Str("/decision"), "rate_limited");
  EXPECT_EQ(l.Str("/bucket"), "upstream:up");
  EXPECT_EQ(server_.received().size(), 1u);
}

TEST_F(PipelineTest, AnUpstream429WithoutRetryAfterGetsOneSecond) {
  HttpResponse r = Call("GET", "/up/quota-bare");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(HeaderOr(r, "retry-after"), "1");
  EXPECT_EQ(Metric(R"(tollgate_upstream_cooldowns_total{upstream="up"})"), 1);
}

}  // namespace
}  // namespace tollgate::gateway
