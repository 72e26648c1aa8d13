// Operating the gateway (issue 6): one well-formed audit line for every outcome, with no secret
// in it; the same records in the Redis stream; the admin listener (health, readiness, metrics,
// reload); reload by POST and by SIGHUP, valid and invalid; SIGTERM draining the calls in
// flight; SIGHUP reopening the audit file; a bad config at start exiting 2.
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

// An upstream whose answers the test releases: a request whose path starts with /held is held
// until Release(), any other is answered at once; both get 200 with kHeldBody. A drain or a
// reload can then happen while a call is provably in flight, with no timing window.
using HeldUpstream = upstream::testing::TestServer;
const std::string kHeldBody = R"({"name":"held-record","token":"held-token-value"})";

upstream::testing::Reply HeldUpstreamAnswer(const upstream::testing::ReceivedRequest& request) {
  upstream::testing::Reply reply;
  reply.raw = upstream::testing::HttpResponse(200, kHeldBody, "Content-Type: application/json\r\n");
  reply.gated = request.target.rfind("/held", 0) == 0;
  return reply;
}

// Releases the held upstream and joins the test's caller thread however the test ends, so a
// failed assertion cannot leave a thread running or a call held.
class ReleaseAndJoin {
 public:
  ReleaseAndJoin(HeldUpstream* upstream, std::thread* thread)
      : upstream_(upstream), thread_(thread) {}
  ~ReleaseAndJoin() { Now(); }
  void Now() {
    upstream_->Release();
    if (thread_->joinable()) thread_->join();
  }

 private:
  HeldUpstream* upstream_;
  std::thread* thread_;
};

const std::string kNewKey = "tg_it_new_team_key_abcdefghij";
const std::string kStandardAudit = R"("audit": {"file": "${AUDIT}"},)";

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(10000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

std::string ReplaceOnce(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "the config no longer contains: " << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::vector<std::string> FileLines(const std::string& path) {
  std::vector<std::string> out;
  std::string text = ReadFile(path);
  for (size_t p = 0, e; (e = text.find('\n', p)) != std::string::npos; p = e + 1) {
    out.push_back(text.substr(p, e - p));
  }
  return out;
}

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// The standard config with one more caller (kNewKey, role "everything").
std::string ConfigWithNewCaller(const std::string& base) {
  return ReplaceOnce(base, R"("callers": {)",
                     R"("callers": {
    "new-team": {"key_sha256": [")" +
                         upstream::Sha256Hex(kNewKey) + R"("], "roles": ["everything"]},)");
}

// A semantic error the loader reports at /callers/data-team/roles/1.
std::string ConfigWithUndefinedRole(const std::string& base) {
  return ReplaceOnce(base, R"("roles": ["everything", "nowhere-caller"])",
                     R"("roles": ["everything", "ghost-role"])");
}
const std::string kUndefinedRolePointer = "/callers/data-team/roles/1";

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Audit line checks.

struct ExpectedAudit {
  std::optional<std::string> caller;  // nullopt: JSON null
  std::optional<std::string> method;  // nullopt: not checked
  std::string upstream;
  std::optional<std::string> path;  // nullopt: not checked
  int status;
  std::string decision;
  std::string query;
};

double Number(const Json& j, const std::string& pointer) {
  const rapidjson::Value* v = j.Get(pointer);
  return v && v->IsNumber() ? v->GetDouble() : -1;
}

void ExpectWellFormed(const Json& line) {
  ASSERT_TRUE(line.ok());
  for (const char* field : {"ts",
                            "request_id",
                            "caller",
                            "client_ip",
                            "method",
                            "upstream",
                            "path",
                            "query",
                            "rule",
                            "decision",
                            "status",
                            "upstream_status",
                            "latency_ms",
                            "upstream_ms",
                            "bytes_in",
                            "bytes_out",
                            "bucket",
                            "remaining",
                            "upstream_request_id",
                            "error"}) {
    EXPECT_TRUE(line.Has(std::string("/") + field)) << "missing " << field;
  }
  static const std::regex kTimestamp(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(line.String("/ts"), kTimestamp)) << line.String("/ts");
  EXPECT_GE(Number(line, "/latency_ms"), 0.0);
  EXPECT_EQ(line.String("/client_ip"), "127.0.0.1");
}

void ExpectAudit(const Json& line, const HttpResponse& response, const ExpectedAudit& want) {
  ExpectWellFormed(line);
  EXPECT_FALSE(response.Header("x-request-id").empty());
  EXPECT_EQ(line.String("/request_id"), response.Header("x-request-id"));
  if (want.caller) {
    EXPECT_EQ(line.String("/caller"), *want.caller);
  } else {
    EXPECT_TRUE(line.IsNull("/caller")) << line.String("/caller");
  }
  if (want.method) {
    EXPECT_EQ(line.String("/method"), *want.method);
  }
  EXPECT_EQ(line.String("/upstream"), want.upstream);
  if (want.path) {
    EXPECT_EQ(line.String("/path"), *want.path);
  }
  EXPECT_EQ(line.Int("/status"), want.status);
  EXPECT_EQ(response.status, want.status) << response.body << response.error;
  EXPECT_EQ(line.String("/decision"), want.decision);
  EXPECT_EQ(line.String("/query"), want.query);
}

class OperationsTest : public GatewayTest {
 protected:
  // Admin calls carry the standard config's admin token (reload scope).
  HttpResponse Admin(const std::string& method, const std::string& path) {
    return AdminCall(method, path);
  }
  std::string Metrics() { return Admin("GET", "/metrics").body; }
  // `n` calls from the data team to `<prefix>0` .. `<prefix>n-1`, for HttpParallel.
  std::vector<HttpRequest> HeldCalls(size_t n, const std::string& prefix) const {
    std::vector<HttpRequest> requests(n);
    for (size_t i = 0; i < n; ++i) {
      requests[i].url = gateway_->url() + prefix + std::to_string(i);
      requests[i].headers = Bearer(kDataKey);
    }
    return requests;
  }
  // The gateway with ${UPSTREAM} (devin, devo, devo-query) on `upstream` instead of the fake.
  void StartGatewayBefore(const HeldUpstream& upstream, const std::string& config) {
    GatewayOptions options = StandardOptions(fake_, config);
    options.upstream = upstream.Url("");
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }
  // Polls /metrics until the sample equals `want` (counters are bumped just after the response
  // is sent); returns the last value seen.
  std::optional<double> WaitForMetric(const std::string& name,
                                      const std::map<std::string, std::string>& labels,
                                      double want) {
    std::optional<double> seen;
    WaitUntil([&] { return (seen = MetricValue(Metrics(), name, labels)) == want; });
    return seen;
  }
  bool WaitForLogCount(const std::string& text, size_t count) {
    return WaitUntil([&] { return CountOf(gateway_->log(), text) >= count; });
  }
  std::vector<std::string> Secrets() const {
    return {fake_.options().devin_token,
            fake_.options().devo_token,
            fake_.options().devo_hmac_key,
            fake_.options().devo_hmac_secret,
            kDataKey,
            kOpsKey,
            kNewKey};
  }
};

// ---------------------------------------------------------------------------------------------
// 1, 2. Every outcome: exactly one well-formed line; no secret anywhere.

TEST_F(OperationsTest, EveryOutcomeWritesExactlyOneWellFormedAuditLine) {
  // The data team may read /enterprise/self, list organisations once an hour, and reach devo and
  // the dead upstream; nothing else on devin.
  const std::string rules = R"([
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/self"},
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/enterprise/organizations",
         "limits": [{"name": "tiny", "rate": "1/h", "burst": 1, "scope": "caller"}]},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])";
  StartGateway(StandardConfig("", rules));
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 500, std::nullopt, 1);
  fake_.SetBehaviour("/v2/accounts/slow", 4000);  // longer than devo's timeout_ms 2000

  struct Case {
    std::string name;
    std::function<HttpResponse()> call;
    ExpectedAudit want;
  };
  const std::string self = "/v3beta1/enterprise/self";
  const std::string orgs = "/v3beta1/enterprise/organizations";
  std::vector<Case> cases = {
      {"upstream error passed through",
       [&] { return Call("GET", "/devin" + self); },
       {"data-team", "GET", "devin", self, 500, "allowed", ""}},
      {"allowed, query masked",
       [&] { return Call("GET", "/devin" + self + "?token=abc&first=2&api_key=" + kOpsKey); },
       {"data-team", "GET", "devin", self, 200, "allowed", "token=***&first=2&api_key=***"}},
      {"bad target",
       [&] { return Call("GET", "/devin/a/../b"); },
       {std::nullopt, "GET", "", "/devin/a/../b", 400, "bad_request", ""}},
      {"missing key",
       [&] { return Call("GET", "/devin" + self + "?first=1", ""); },
       {std::nullopt, "GET", "devin", self, 401, "unauthenticated", "first=1"}},
      {"wrong key",
       [&] { return Call("GET", "/devin" + self, "tg_wrong_key_000111"); },
       {std::nullopt, "GET", "devin", self, 401, "unauthenticated", ""}},
      {"forbidden",
       [&] {
         return Call("POST", "/devin/v3beta1/organizations/org-123/sessions", kDataKey,
                     R"({"prompt":"x"})");
       },
       {"data-team", "POST", "devin", "/v3beta1/organizations/org-123/sessions", 403, "forbidden",
        ""}},
      {"unknown upstream",
       [&] { return Call("GET", "/github/repos?secret=s3"); },
       {std::nullopt, "GET", "", "/github/repos", 404, "not_found", "secret=***"}},
      {"oversize body",
       [&] { return Call("POST", "/devin" + orgs, kDataKey, std::string(70000, 'a')); },
       // Method and path: see OversizeBodyAuditNamesTheMethodAndPath.
       {std::nullopt, std::nullopt, "", std::nullopt, 413, "bad_request", ""}},
      {"within the limit",
       [&] { return Call("GET", "/devin" + orgs); },
       {"data-team", "GET", "devin", orgs, 200, "allowed", ""}},
      {"rate limited",
       [&] { return Call("GET", "/devin" + orgs); },
       {"data-team", "GET", "devin", orgs, 429, "rate_limited", ""}},
      {"connection refused",
       [&] { return Call("GET", "/nowhere/x"); },
       {"data-team", "GET", "nowhere", "/x", 502, "error", ""}},
      {"upstream timeout",
       [&] { return Call("GET", "/devo/v2/accounts/slow/tokens"); },
       {"data-team", "GET", "devo", "/v2/accounts/slow/tokens", 504, "error", ""}},
      {"hmac-signed",
       [&] { return Call("POST", "/devo-query/search/query", kDataKey, "{}"); },
       {"data-team", "POST", "devo-query", "/search/query", 200, "allowed", ""}},
  };

  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    HttpResponse r = cases[i].call();
    auto lines = gateway_->WaitForAuditLines(i + 1);
    ASSERT_EQ(lines.size(), i + 1);
    ExpectAudit(lines.back(), r, cases[i].want);
    if (cases[i].want.status == 429) {
      EXPECT_EQ(lines.back().String("/bucket"), "tiny");
    }
    if (cases[i].want.status == 500) {
      EXPECT_EQ(lines.back().Int("/upstream_status"), 500);
    }
  }

  // Nothing more is written once the gateway has flushed and stopped: one line per call.
  int status = gateway_->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto lines = gateway_->AuditLines();
  EXPECT_EQ(lines.size(), cases.size());
  for (const auto& line : lines) EXPECT_TRUE(line.ok());

  std::string audit = ReadFile(gateway_->audit_path());
  std::string log = gateway_->log();
  std::vector<std::string> secrets = Secrets();
  secrets.push_back("tg_wrong_key_000111");
  for (const auto& s : secrets) {
    EXPECT_EQ(audit.find(s), std::string::npos) << "audit holds a secret";
    EXPECT_EQ(log.find(s), std::string::npos) << "log holds a secret";
  }
}

TEST_F(OperationsTest, OversizeBodyAuditNamesTheMethodAndPath) {
  StartGateway(StandardConfig());
  HttpResponse r = Call("POST", "/devin/v3beta1/enterprise/organizations?first=1", kDataKey,
                        std::string(70000, 'a'));
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  ExpectAudit(lines[0], r,
              {std::nullopt, "POST", "", "/devin/v3beta1/enterprise/organizations", 413,
               "bad_request", ""});
}

// ---------------------------------------------------------------------------------------------
// 3. The Redis stream gets the same records as the file.

TEST_F(OperationsTest, RedisStreamReceivesTheSameRecordsAsTheFile) {
  RedisServer redis;
  ASSERT_TRUE(redis.running());
  GatewayOptions options = StandardOptions(fake_, ReplaceOnce(StandardConfig(), kStandardAudit,
                                                              R"("redis": {"url": "${REDIS}"},
  "audit": {"file": "${AUDIT}", "redis_stream": "tollgate:audit"},)"));
  options.redis = redis.url();
  gateway_ = std::make_unique<GatewayProcess>(options);
  ASSERT_TRUE(gateway_->started()) << gateway_->log();

  const size_t n = 6;
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  EXPECT_EQ(Call("GET", "/devo/v2/accounts/sampleAccount/tokens?token=x").status, 200);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", "bad-key").status, 401);
  EXPECT_EQ(Call("GET", "/unknown/x").status, 404);
  EXPECT_EQ(Call("GET", "/nowhere/x").status, 502);
  EXPECT_EQ(Call("POST", "/devo-query/search/query", kDataKey, "{}").status, 200);
  auto file_lines = gateway_->WaitForAuditLines(n);
  ASSERT_EQ(file_lines.size(), n);

  redisContext* ctx = redisConnect("127.0.0.1", redis.port());
  ASSERT_TRUE(ctx != nullptr && ctx->err == 0);
  std::vector<std::string> stream;
  WaitUntil([&] {
    stream.clear();
    auto* reply = static_cast<redisReply*>(redisCommand(ctx, "XRANGE %s - +", "tollgate:audit"));
    if (reply == nullptr) return false;
    if (reply->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < reply->elements; ++i) {
        const redisReply* entry = reply->element[i];
        const redisReply* fields = entry->element[1];
        EXPECT_EQ(fields->elements, 2u);
        EXPECT_EQ(std::string(fields->element[0]->str, fields->element[0]->len), "record");
        stream.emplace_back(fields->element[1]->str, fields->element[1]->len);
      }
    }
    freeReplyObject(reply);
    return stream.size() >= n;
  });
  redisFree(ctx);

  ASSERT_EQ(stream.size(), n);
  std::string file = ReadFile(gateway_->audit_path());
  std::string joined;
  for (const auto& s : stream) joined += s + "\n";
  EXPECT_EQ(joined, file);  // the same records, in the same order, byte for byte
  for (const auto& s : Secrets()) EXPECT_EQ(joined.find(s), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// 4, 5. The admin listener.

TEST_F(OperationsTest, MetricsCountRequestsByUpstreamDecisionAndClass) {
  StartGateway(StandardConfig());
  fake_.SetBehaviour("/v3beta1/enterprise/organizations", 0, 500);
  const int allowed = 3;
  for (int i = 0; i < allowed; ++i) {
    EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  }
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/organizations").status, 500);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", "bad-key").status, 401);

  EXPECT_EQ(WaitForMetric("tollgate_requests_total",
                          {{"upstream", "devin"}, {"decision", "allowed"}, {"code_class", "2xx"}},
                          allowed),
            allowed);
  EXPECT_EQ(
      WaitForMetric("tollgate_requests_total",
                    {{"upstream", "devin"}, {"decision", "allowed"}, {"code_class", "5xx"}}, 1),
      1);
  EXPECT_EQ(WaitForMetric(
                "tollgate_requests_total",
                {{"upstream", "devin"}, {"decision", "unauthenticated"}, {"code_class", "4xx"}}, 1),
            1);
  EXPECT_EQ(WaitForMetric("tollgate_request_duration_seconds_count", {{"upstream", "devin"}},
                          allowed + 2),
            allowed + 2);
  std::string text = Metrics();
  EXPECT_EQ(MetricValue(text, "tollgate_request_duration_seconds_bucket",
                        {{"upstream", "devin"}, {"le", "+Inf"}}),
            allowed + 2);
  EXPECT_TRUE(MetricValue(text, "tollgate_in_flight_requests").has_value()) << text;
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "success"}}), 0);
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "failure"}}), 0);
  HttpResponse raw = Admin("GET", "/metrics");
  EXPECT_EQ(raw.status, 200);
  EXPECT_EQ(raw.Header("content-type").rfind("text/plain", 0), 0u);
}

TEST_F(OperationsTest, AuditRecordsAFullDiskRefusesAreCountedAsDroppedNotWritten) {
  std::string config = StandardConfig();
  const std::string sink = R"("audit": {"file": "${AUDIT}"})";
  ASSERT_NE(config.find(sink), std::string::npos);
  config.replace(config.find(sink), sink.size(), R"("audit": {"file": "/dev/full"})");
  StartGateway(config);
  const int calls = 3;
  for (int i = 0; i < calls; ++i) {
    EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  }
  // Every call is still answered; its record is counted where an operator alerts on it.
  EXPECT_EQ(WaitForMetric("tollgate_audit_file_dropped_total", {}, calls), calls);
  EXPECT_EQ(MetricValue(Metrics(), "tollgate_audit_records_total"), 0);
  EXPECT_TRUE(WaitForLogCount("audit: write to /dev/full failed", 1)) << gateway_->log();
}

TEST_F(OperationsTest, HealthReadinessAndUnknownAdminPaths) {
  StartGateway(StandardConfig());
  HttpResponse health = Admin("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  HttpResponse ready = Admin("GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  Json j = Json::Parse(ready.body);
  EXPECT_TRUE(j.Bool("/ready")) << ready.body;
  EXPECT_TRUE(j.Bool("/config"));
  EXPECT_FALSE(j.Bool("/draining", true));
  HttpResponse unknown = Admin("GET", "/nope");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(Json::Parse(unknown.body).String("/error/reason"), "not_found") << unknown.body;
  EXPECT_EQ(Admin("POST", "/healthz").status, 405);
  // The admin endpoints are not on the main listener.
  EXPECT_EQ(Http("GET", gateway_->url() + "/metrics").status, 404);
}

// Reload changes what the gateway does, so only POST does it: a GET (a crawler, a prefetch, a
// health checker pointed at the wrong path) is refused and the config on disk is not applied.
TEST_F(OperationsTest, ReloadIsPostOnly) {
  StartGateway(StandardConfig());
  gateway_->WriteConfig(ConfigWithNewCaller(StandardConfig()));
  for (const char* method : {"GET", "HEAD", "PUT"}) {
    SCOPED_TRACE(method);
    HttpResponse r = Admin(method, "/reload");
    EXPECT_EQ(r.status, 405);
    if (std::string(method) != "HEAD") {
      EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "method_not_allowed") << r.body;
    }
  }
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 401);
  EXPECT_EQ(MetricValue(Metrics(), "tollgate_config_reloads_total", {{"result", "success"}}), 0);
  // The same file is valid: a POST applies it.
  EXPECT_EQ(Admin("POST", "/reload").status, 200);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 200);
}

// ---------------------------------------------------------------------------------------------
// 6. Reload.

TEST_F(OperationsTest, PostReloadAppliesAValidConfig) {
  StartGateway(StandardConfig());
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 401);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  // A new caller, and the data team keeps only the role for the dead upstream.
  gateway_->WriteConfig(ReplaceOnce(ConfigWithNewCaller(StandardConfig()),
                                    R"("roles": ["everything", "nowhere-caller"])",
                                    R"("roles": ["nowhere-caller"])"));
  HttpResponse reload = Admin("POST", "/reload");
  EXPECT_EQ(reload.status, 200) << reload.body;
  EXPECT_TRUE(Json::Parse(reload.body).Bool("/reloaded")) << reload.body;
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 200);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 403);
  EXPECT_TRUE(gateway_->WaitForLog("config reloaded"));
  std::string text = Metrics();
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "success"}}), 1);
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "failure"}}), 0);
}

TEST_F(OperationsTest, PostReloadRejectsAnInvalidConfigAndKeepsTheOldOne) {
  StartGateway(StandardConfig());
  gateway_->WriteConfig("{\"listen\": ");
  HttpResponse bad_json = Admin("POST", "/reload");
  EXPECT_EQ(bad_json.status, 400);
  Json j = Json::Parse(bad_json.body);
  EXPECT_FALSE(j.Bool("/reloaded", true)) << bad_json.body;
  EXPECT_NE(j.String("/errors/0").find("invalid JSON"), std::string::npos) << bad_json.body;
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);

  gateway_->WriteConfig(ConfigWithNewCaller(ConfigWithUndefinedRole(StandardConfig())));
  HttpResponse semantic = Admin("POST", "/reload");
  EXPECT_EQ(semantic.status, 400);
  EXPECT_NE(semantic.body.find(kUndefinedRolePointer), std::string::npos) << semantic.body;
  EXPECT_NE(semantic.body.find("ghost-role"), std::string::npos) << semantic.body;
  // The old config serves: the data team still has its roles and the new key is unknown.
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 401);

  // A config asking for TLS on the listener (dropped in 0.2.0) is refused like any other error.
  gateway_->WriteConfig(ConfigWithNewCaller(StandardConfig(R"(
  "tls": {"cert_file": "/etc/tollgate/cert.pem", "key_file": "/etc/tollgate/key.pem"},)")));
  HttpResponse tls = Admin("POST", "/reload");
  EXPECT_EQ(tls.status, 400);
  EXPECT_NE(tls.body.find("/tls: TLS on the listener is not supported"), std::string::npos)
      << tls.body;
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 401);

  EXPECT_TRUE(WaitForLogCount("the running config stays in force", 3)) << gateway_->log();
  EXPECT_NE(gateway_->log().find(kUndefinedRolePointer), std::string::npos);
  std::string text = Metrics();
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "success"}}), 0);
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "failure"}}), 3);
}

TEST_F(OperationsTest, SighupReloadsValidAndKeepsTheOldConfigOnInvalid) {
  StartGateway(StandardConfig());
  gateway_->WriteConfig(ConfigWithNewCaller(StandardConfig()));
  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(gateway_->WaitForLog("config reloaded")) << gateway_->log();
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 200);

  gateway_->WriteConfig(ConfigWithUndefinedRole(StandardConfig()));  // also drops the new caller
  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(gateway_->WaitForLog("the running config stays in force")) << gateway_->log();
  EXPECT_NE(gateway_->log().find(kUndefinedRolePointer), std::string::npos);
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self", kNewKey).status, 200);
  EXPECT_TRUE(gateway_->running());

  std::string text = Metrics();
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "success"}}), 1);
  EXPECT_EQ(MetricValue(text, "tollgate_config_reloads_total", {{"result", "failure"}}), 1);
}

// A call keeps the config it started with to its end (here: the redaction of its answer), and
// the call after the reload gets the new one. The upstream holds the first call until the
// reload has been answered, so the reload happens mid-call every time.
TEST_F(OperationsTest, ACallInFlightFinishesWithTheConfigItStartedWith) {
  const std::string redacted_rules = R"([
        {"upstream": "devin", "path": "/**", "redact": ["/token"]},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])";
  const std::string plain_rules = R"([
        {"upstream": "devin", "path": "/**"},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])";
  HeldUpstream upstream(HeldUpstreamAnswer);
  StartGatewayBefore(upstream, StandardConfig("", redacted_rules));

  HttpResponse held;
  std::thread caller([&] { held = Call("GET", "/devin/held/record", kOpsKey); });
  ReleaseAndJoin release(&upstream, &caller);
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000))) << gateway_->log();

  // The reload removes the ops team and the redaction while the ops team's call is held.
  gateway_->WriteConfig(
      ReplaceOnce(StandardConfig("", plain_rules),
                  R"("ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["everything"]},)", ""));
  HttpResponse reload = Admin("POST", "/reload");
  EXPECT_EQ(reload.status, 200) << reload.body;
  // New calls get the new config: the ops team is unknown, answers are no longer redacted.
  EXPECT_EQ(Call("GET", "/devin/free/record", kOpsKey).status, 401);
  HttpResponse after = Call("GET", "/devin/free/record");
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(Json::Parse(after.body).String("/token"), "held-token-value") << after.body;
  EXPECT_EQ(upstream.received().size(), 2u);  // the held call and `after`; no answer yet

  release.Now();
  // The held call ends with the old config: the ops team's call, its answer redacted.
  EXPECT_EQ(held.status, 200) << held.body << held.error;
  Json body = Json::Parse(held.body);
  EXPECT_EQ(body.String("/name"), "held-record") << held.body;
  EXPECT_FALSE(body.Has("/token")) << held.body;
  EXPECT_EQ(held.body.find("held-token-value"), std::string::npos) << held.body;

  // The two calls, the reload (by the admin it-ops) and the held call.
  auto lines = gateway_->WaitForAuditLines(4);
  ASSERT_EQ(lines.size(), 4u);
  int found = 0;
  int reloads = 0;
  for (const auto& line : lines) {
    if (line.String("/decision") != "admin") continue;
    ++reloads;
    EXPECT_EQ(line.String("/admin"), "it-ops");
    EXPECT_EQ(line.String("/action"), "reload");
    EXPECT_EQ(line.String("/request_id"), reload.Header("x-request-id"));
  }
  EXPECT_EQ(reloads, 1);
  for (const auto& line : lines) {
    if (line.String("/request_id") != held.Header("x-request-id")) continue;
    ++found;
    EXPECT_EQ(line.String("/caller"), "ops-team");
    EXPECT_EQ(line.String("/rule"), "/**");
    EXPECT_EQ(line.String("/decision"), "allowed");
    EXPECT_EQ(line.Int("/status"), 200);
  }
  EXPECT_EQ(found, 1);
}

// ---------------------------------------------------------------------------------------------
// 7. SIGTERM drains the calls in flight.

// The upstream holds every call until the test has checked the gateway mid-drain, so each check
// below sees the drain under way, every time.
TEST_F(OperationsTest, SigtermFinishesEveryCallInFlightThenExitsZero) {
  HeldUpstream upstream(HeldUpstreamAnswer);
  StartGatewayBefore(upstream, StandardConfig(R"(
  "drain_timeout_ms": 60000,)"));
  const size_t n = 20;
  std::vector<HttpResponse> results;
  std::thread callers([&] { results = HttpParallel(HeldCalls(n, "/devin/held/sessions/")); });
  ReleaseAndJoin release(&upstream, &callers);
  ASSERT_TRUE(upstream.WaitForRequests(n, milliseconds(15000)))
      << "held: " << upstream.received().size() << "\n"
      << gateway_->log();
  gateway_->Signal(SIGTERM);
  ASSERT_TRUE(gateway_->WaitForLog("draining 20 in-flight request(s)")) << gateway_->log();

  // Mid-drain: alive, not ready, and new calls are turned away (with a hint to retry) without
  // reaching the upstream.
  EXPECT_EQ(Admin("GET", "/healthz").status, 200);
  HttpResponse ready = Admin("GET", "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  Json readiness = Json::Parse(ready.body);
  EXPECT_FALSE(readiness.Bool("/ready", true)) << ready.body;
  EXPECT_TRUE(readiness.Bool("/draining")) << ready.body;
  EXPECT_TRUE(readiness.Bool("/config")) << ready.body;
  HttpResponse turned_away = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(turned_away.status, 503) << turned_away.body;
  Json envelope = Json::Parse(turned_away.body);
  EXPECT_EQ(envelope.String("/error/reason"), "shutting_down") << turned_away.body;
  EXPECT_EQ(envelope.Int("/error/code"), 503);
  EXPECT_EQ(turned_away.Header("Retry-After"), "1");
  EXPECT_EQ(turned_away.HeaderCount("Retry-After"), 1u);
  EXPECT_FALSE(turned_away.Header("X-Request-Id").empty());
  EXPECT_EQ(upstream.received().size(), n);
  // The drain lasts as long as calls are held (up to drain_timeout_ms, a minute here).
  EXPECT_EQ(gateway_->Wait(milliseconds(1000)), -1) << "exited with calls in flight\n"
                                                    << gateway_->log();

  release.Now();
  ASSERT_EQ(results.size(), n);
  for (const auto& r : results) {
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body, kHeldBody);
  }
  int status = gateway_->Wait(milliseconds(15000));
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << gateway_->log();
  // Flushed on shutdown: exactly one line per held call, and one for the turned-away call.
  std::map<std::string, std::vector<Json>> lines_per_id;
  auto lines = gateway_->AuditLines();
  EXPECT_EQ(lines.size(), n + 1);
  for (const auto& line : lines) {
    EXPECT_TRUE(line.ok());
    lines_per_id[line.String("/request_id")].push_back(line);
  }
  for (const auto& r : results) {
    const auto& mine = lines_per_id[r.Header("x-request-id")];
    ASSERT_EQ(mine.size(), 1u) << r.Header("x-request-id");
    EXPECT_EQ(mine[0].String("/decision"), "allowed");
    EXPECT_EQ(mine[0].Int("/status"), 200);
  }
  const auto& away = lines_per_id[turned_away.Header("x-request-id")];
  ASSERT_EQ(away.size(), 1u);
  EXPECT_EQ(away[0].String("/decision"), "error");
  EXPECT_EQ(away[0].Int("/status"), 503);
  EXPECT_EQ(away[0].String("/path"), "/devin/v3beta1/enterprise/self");
}

// A drain does not wait forever: past drain_timeout_ms the calls still held are cut off, each
// still gets its one audit line, and the gateway exits 0.
TEST_F(OperationsTest, ADrainPastItsTimeoutCutsTheHeldCallsOffAndExitsZero) {
  HeldUpstream upstream(HeldUpstreamAnswer);
  StartGatewayBefore(upstream, StandardConfig(R"(
  "drain_timeout_ms": 200,)"));
  const size_t n = 3;
  std::vector<HttpResponse> results;
  std::thread callers([&] { results = HttpParallel(HeldCalls(n, "/devin/held/never/")); });
  ReleaseAndJoin release(&upstream, &callers);
  ASSERT_TRUE(upstream.WaitForRequests(n, milliseconds(15000))) << gateway_->log();
  gateway_->Signal(SIGTERM);
  // Exits by itself although the upstream never answers.
  int status = gateway_->Wait(milliseconds(20000));
  ASSERT_NE(status, -1) << "still draining after 20 s\n" << gateway_->log();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << gateway_->log();
  EXPECT_NE(gateway_->log().find("drain timeout: 3 request(s) still in flight are cut off"),
            std::string::npos)
      << gateway_->log();
  release.Now();
  ASSERT_EQ(results.size(), n);
  // Each caller is told (503 shutting_down, retry elsewhere) rather than left with a closed
  // connection, and each record says the drain ended it.
  for (const auto& r : results) {
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "shutting_down") << r.body;
  }
  auto lines = gateway_->AuditLines();
  EXPECT_EQ(lines.size(), n);
  for (const auto& line : lines) {
    EXPECT_EQ(line.String("/decision"), "error") << line.String("/error");
    EXPECT_EQ(line.Int("/status"), 503);
    EXPECT_EQ(line.String("/ended_by"), "draining");
  }
}

// ---------------------------------------------------------------------------------------------
// 8. SIGHUP reopens the audit file (logrotate).

TEST_F(OperationsTest, SighupReopensTheAuditFile) {
  StartGateway(StandardConfig());
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  ASSERT_EQ(gateway_->WaitForAuditLines(1).size(), 1u);
  const std::string rotated = gateway_->audit_path() + ".1";
  ASSERT_EQ(std::rename(gateway_->audit_path().c_str(), rotated.c_str()), 0);
  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(gateway_->WaitForLog("config reloaded"));
  // The reopen follows the reload message by a moment: call until a record lands in a new file.
  int calls = 0;
  bool reopened = WaitUntil([&] {
    EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
    ++calls;
    return WaitUntil([&] { return !gateway_->AuditLines().empty(); }, milliseconds(500));
  });
  ASSERT_TRUE(reopened);
  EXPECT_EQ(gateway_->Stop(), 0);
  // Every record is in one file or the other, and the new file is at the original path.
  size_t in_new = gateway_->AuditLines().size();
  size_t in_old = 0;
  for (const auto& line : FileLines(rotated)) {
    EXPECT_TRUE(Json::Parse(line).ok()) << line;
    ++in_old;
  }
  EXPECT_GE(in_new, 1u);
  EXPECT_GE(in_old, 1u);
  // Every call's record, and the SIGHUP reload's own.
  EXPECT_EQ(in_new + in_old, static_cast<size_t>(calls) + 2);
}

// ---------------------------------------------------------------------------------------------
// 9. A bad config at start.

TEST_F(OperationsTest, AnInvalidConfigAtStartExitsTwoNamingThePointer) {
  GatewayOptions options = StandardOptions(fake_, ConfigWithUndefinedRole(StandardConfig()));
  options.wait_until_listening = false;
  gateway_ = std::make_unique<GatewayProcess>(options);
  int status = gateway_->Wait(milliseconds(15000));
  ASSERT_NE(status, -1) << "still running: " << gateway_->log();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(gateway_->log().find(kUndefinedRolePointer), std::string::npos) << gateway_->log();
  EXPECT_NE(gateway_->log().find("ghost-role"), std::string::npos);
}

}  // namespace
}  // namespace tollgate::testing
