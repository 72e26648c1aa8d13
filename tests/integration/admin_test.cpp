// Issue 10 point 7, "The admin listener trusts everyone": each guarantee of the admin listener,
// one test each. Every refused reload is checked to have changed nothing: the config on disk
// then adds a caller (kNewKey), so a reload that went through would turn that caller's 401
// into a 200.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

const std::string kNewKey = "tg_it_admin_new_team_key_abcdef";
const std::string kSelf = "/devin/v3beta1/enterprise/self";

std::string ReplaceOnce(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "the config no longer contains: " << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// `base` with one more caller (kNewKey, role "everything").
std::string WithNewCaller(const std::string& base) {
  return ReplaceOnce(base, R"("callers": {)",
                     R"("callers": {
    "new-team": {"key_sha256": [")" +
                         upstream::Sha256Hex(kNewKey) + R"("], "roles": ["everything"]},)");
}

std::string WithoutAdminTokens(const std::string& base) {
  return ReplaceOnce(base, kStandardAdmin, "");
}

class AdminPoint7Test : public GatewayTest {
 protected:
  // The gateway runs `config`; the file on disk then holds the same plus the new caller.
  void StartWithAPendingChange(const std::string& config) {
    StartGateway(config);
    ASSERT_EQ(Call("GET", kSelf, kNewKey).status, 401);
    gateway_->WriteConfig(WithNewCaller(config));
  }

  // Nothing was reloaded: the new caller is still unknown, no reload was counted.
  void ExpectNothingChanged() {
    EXPECT_EQ(Call("GET", kSelf, kNewKey).status, 401);
    const std::string metrics = AdminCall("GET", "/metrics", "").body;
    EXPECT_EQ(MetricValue(metrics, "tollgate_config_reloads_total", {{"result", "success"}}), 0)
        << metrics;
    EXPECT_EQ(gateway_->log().find("config reloaded"), std::string::npos) << gateway_->log();
  }

  // The one audit record with `request_id`, after the others (nullopt when not exactly one).
  std::optional<Json> AuditRecordOf(const HttpResponse& response) {
    const std::string id = response.Header("x-request-id");
    EXPECT_FALSE(id.empty()) << response.body;
    std::optional<Json> found;
    bool ok = WaitUntilRecord(id, &found);
    EXPECT_TRUE(ok) << "no single audit record for " << id;
    return found;
  }

  bool WaitUntilRecord(const std::string& id, std::optional<Json>* found) {
    auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
    for (;;) {
      int n = 0;
      for (const Json& line : gateway_->AuditLines()) {
        if (line.String("/request_id") == id) {
          ++n;
          *found = line;
        }
      }
      if (n == 1) return true;
      if (n > 1 || std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  // A refused admin call's record: its decision and action, no change applied.
  void ExpectRefusalRecord(const HttpResponse& response, const std::string& decision,
                           const std::string& admin) {
    std::optional<Json> line = AuditRecordOf(response);
    ASSERT_TRUE(line);
    EXPECT_EQ(line->String("/decision"), decision);
    EXPECT_EQ(line->String("/action"), "reload");
    if (admin.empty()) {
      EXPECT_TRUE(line->IsNull("/admin"));
    } else {
      EXPECT_EQ(line->String("/admin"), admin);
    }
    EXPECT_EQ(line->Int("/status"), response.status);
    EXPECT_EQ(line->String("/client_ip"), "127.0.0.1");
    EXPECT_EQ(line->String("/path"), "/reload");
    EXPECT_FALSE(line->Has("/applied"));
    EXPECT_EQ(line->Size("/changes"), 0u);
    EXPECT_TRUE(line->IsNull("/caller"));
  }
};

void ExpectEnvelope(const HttpResponse& r, int status, const std::string& reason) {
  EXPECT_EQ(r.status, status) << r.body << r.error;
  Json body = Json::Parse(r.body);
  EXPECT_EQ(body.String("/error/reason"), reason) << r.body;
  EXPECT_EQ(body.Int("/error/code"), status) << r.body;
}

TEST_F(AdminPoint7Test, ReloadWithoutATokenIs401AndChangesNothing) {
  StartWithAPendingChange(StandardConfig());
  HttpResponse r = AdminCall("POST", "/reload", "");
  ExpectEnvelope(r, 401, "unauthenticated");
  EXPECT_EQ(r.Header("www-authenticate"), "Bearer");
  ExpectNothingChanged();
  ExpectRefusalRecord(r, "unauthenticated", "");
}

TEST_F(AdminPoint7Test, ReloadWithAWrongTokenIs401AndChangesNothing) {
  StartWithAPendingChange(StandardConfig());
  // A caller's key is not an admin token; nor is a token one character off, the hash itself, or
  // the right token under another scheme.
  const std::vector<HeaderList> attempts = {
      {{"Authorization", "Bearer " + kDataKey}},
      {{"Authorization", "Bearer " + kAdminToken + "x"}},
      {{"Authorization", "Bearer " + upstream::Sha256Hex(kAdminToken)}},
      {{"Authorization", "Basic " + kAdminToken}},
      {{"Authorization", "Bearer"}},
  };
  for (const HeaderList& headers : attempts) {
    SCOPED_TRACE(headers[0].second);
    HttpResponse r = AdminCall("POST", "/reload", "", headers);
    ExpectEnvelope(r, 401, "unauthenticated");
    EXPECT_EQ(r.Header("www-authenticate"), "Bearer");
    EXPECT_EQ(r.body.find(kAdminToken), std::string::npos) << r.body;
    ExpectRefusalRecord(r, "unauthenticated", "");
  }
  ExpectNothingChanged();
}

TEST_F(AdminPoint7Test, ATokenWithoutTheReloadScopeIs403AndChangesNothing) {
  StartWithAPendingChange(StandardConfig());
  HttpResponse r = AdminCall("POST", "/reload", kReaderAdminToken);
  ExpectEnvelope(r, 403, "forbidden");
  EXPECT_NE(r.body.find("reload"), std::string::npos) << r.body;
  ExpectNothingChanged();
  ExpectRefusalRecord(r, "forbidden", "it-reader");
}

// A browser page (or a DNS-rebinding one) always sends Origin with a POST: refused whatever the
// token, and whatever the endpoint. A page's same-origin GET carries Sec-Fetch-Site instead.
TEST_F(AdminPoint7Test, ARequestWithAnOriginHeaderIs403EvenWithAValidToken) {
  StartWithAPendingChange(StandardConfig());
  for (const char* origin : {"http://evil.com", "null", "http://127.0.0.1"}) {
    SCOPED_TRACE(origin);
    HttpResponse r = AdminCall("POST", "/reload", kAdminToken, {{"Origin", origin}});
    ExpectEnvelope(r, 403, "forbidden");
    ExpectRefusalRecord(r, "forbidden", "");
  }
  ExpectNothingChanged();
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    SCOPED_TRACE(path);
    ExpectEnvelope(AdminCall("GET", path, "", {{"Origin", "http://evil.com"}}), 403, "forbidden");
    ExpectEnvelope(AdminCall("GET", path, "", {{"Sec-Fetch-Site", "same-origin"}}), 403,
                   "forbidden");
    ExpectEnvelope(AdminCall("GET", path, "", {{"Sec-Fetch-Site", "cross-site"}}), 403,
                   "forbidden");
    // An address the user typed into the browser is not a page's request.
    EXPECT_EQ(AdminCall("GET", path, "", {{"Sec-Fetch-Site", "none"}}).status, 200);
  }
  // The same token without the Origin header reloads.
  EXPECT_EQ(AdminCall("POST", "/reload").status, 200);
  EXPECT_EQ(Call("GET", kSelf, kNewKey).status, 200);
}

TEST_F(AdminPoint7Test, WithNoAdminTokenConfiguredReloadIs403AndSighupStillReloads) {
  StartWithAPendingChange(WithoutAdminTokens(StandardConfig()));
  for (const std::string& token : {std::string(), kAdminToken}) {
    HttpResponse r = AdminCall("POST", "/reload", token);
    ExpectEnvelope(r, 403, "forbidden");
    EXPECT_NE(Json::Parse(r.body).String("/error/message").find("SIGHUP"), std::string::npos)
        << r.body;
    ExpectRefusalRecord(r, "forbidden", "");
  }
  ExpectNothingChanged();

  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(gateway_->WaitForLog("config reloaded")) << gateway_->log();
  EXPECT_EQ(Call("GET", kSelf, kNewKey).status, 200);
  // The signal's reload is on record, by the admin "SIGHUP".
  bool found = false;
  auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
  while (!found && std::chrono::steady_clock::now() < deadline) {
    for (const Json& line : gateway_->AuditLines()) {
      if (line.String("/admin") != "SIGHUP") continue;
      found = true;
      EXPECT_EQ(line.String("/decision"), "admin");
      EXPECT_EQ(line.String("/action"), "reload");
      EXPECT_TRUE(line.Bool("/applied"));
      ASSERT_EQ(line.Size("/changes"), 1u);
      EXPECT_EQ(line.String("/changes/0"), "callers/new-team");
    }
    if (!found) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(found) << "no SIGHUP reload record";
}

// The request of the finding, byte for byte: a browser-style POST with a foreign Host, a
// text/plain body and no credential.
TEST_F(AdminPoint7Test, HostEvilComWithATextPlainBodyAndNoTokenDoesNothing) {
  StartWithAPendingChange(StandardConfig());
  const std::string body = "reload=please";
  const std::string head =
      "POST /reload HTTP/1.1\r\nHost: evil.com\r\nContent-Type: text/plain\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n";
  std::string answer = RawExchange(gateway_->admin_port(), head + "\r\n" + body);
  EXPECT_EQ(StatusOf(answer), 401) << answer;
  EXPECT_NE(answer.find("unauthenticated"), std::string::npos) << answer;
  answer = RawExchange(gateway_->admin_port(), head + "Origin: http://evil.com\r\n\r\n" + body);
  EXPECT_EQ(StatusOf(answer), 403) << answer;
  ExpectNothingChanged();
}

TEST_F(AdminPoint7Test, ASuccessfulReloadIsAuditedWithTheAdminTheActionAndWhatChanged) {
  StartGateway(StandardConfig());
  // A new caller, and the data team's role changes: two entries, named, never their values.
  gateway_->WriteConfig(WithNewCaller(StandardConfig("", R"([
        {"upstream": "devin", "path": "/**"}])")));
  HttpResponse r = AdminCall("POST", "/reload", kAdminToken, {{"X-Request-Id", "reload-1"}});
  EXPECT_EQ(r.status, 200) << r.body;
  Json summary = Json::Parse(r.body);
  EXPECT_TRUE(summary.Bool("/reloaded")) << r.body;
  EXPECT_EQ(summary.String("/changes/0"), "callers/new-team") << r.body;
  EXPECT_EQ(summary.String("/changes/1"), "roles/everything") << r.body;
  EXPECT_EQ(Call("GET", kSelf, kNewKey).status, 200);

  std::optional<Json> line = AuditRecordOf(r);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->String("/request_id"), "reload-1");
  EXPECT_EQ(line->String("/decision"), "admin");
  EXPECT_EQ(line->String("/admin"), "it-ops");
  EXPECT_EQ(line->String("/action"), "reload");
  EXPECT_TRUE(line->Bool("/applied"));
  EXPECT_EQ(line->Int("/status"), 200);
  EXPECT_EQ(line->String("/client_ip"), "127.0.0.1");
  EXPECT_EQ(line->String("/method"), "POST");
  EXPECT_EQ(line->String("/path"), "/reload");
  EXPECT_TRUE(line->IsNull("/error"));
  ASSERT_EQ(line->Size("/changes"), 2u);
  EXPECT_EQ(line->String("/changes/0"), "callers/new-team");
  EXPECT_EQ(line->String("/changes/1"), "roles/everything");
  EXPECT_FALSE(line->Has("/restart_required"));
  // No token and no hash in the record.
  const std::string text = ReadFile(gateway_->audit_path());
  EXPECT_EQ(text.find(kAdminToken), std::string::npos);
  EXPECT_EQ(text.find(upstream::Sha256Hex(kAdminToken)), std::string::npos);
  EXPECT_EQ(text.find(upstream::Sha256Hex(kNewKey)), std::string::npos);
}

TEST_F(AdminPoint7Test, AFailedReloadIsAuditedWithItsErrors) {
  StartGateway(StandardConfig());
  gateway_->WriteConfig(ReplaceOnce(WithNewCaller(StandardConfig()),
                                    R"("roles": ["everything", "nowhere-caller"])",
                                    R"("roles": ["everything", "ghost-role"])"));
  HttpResponse r = AdminCall("POST", "/reload");
  EXPECT_EQ(r.status, 400) << r.body;
  ExpectNothingChanged();
  std::optional<Json> line = AuditRecordOf(r);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->String("/decision"), "admin");
  EXPECT_EQ(line->String("/admin"), "it-ops");
  EXPECT_EQ(line->String("/action"), "reload");
  EXPECT_FALSE(line->Bool("/applied", true));
  EXPECT_EQ(line->Int("/status"), 400);
  EXPECT_NE(line->String("/error").find("/callers/data-team/roles/1"), std::string::npos)
      << line->String("/error");
  EXPECT_EQ(line->Size("/changes"), 0u);
}

// Changing the admin tokens applies on reload: the token removed no longer reloads.
TEST_F(AdminPoint7Test, AdminTokensChangeOnReload) {
  StartGateway(StandardConfig());
  const std::string reader_reloads = ReplaceOnce(
      StandardConfig(), R"({"name": "it-reader", "sha256": "${READER_HASH}", "scopes": ["read"]})",
      R"({"name": "it-reader", "sha256": "${READER_HASH}", "scopes": ["read", "reload"]})");
  gateway_->WriteConfig(ReplaceOnce(
      reader_reloads,
      R"({"name": "it-ops", "sha256": "${ADMIN_HASH}", "scopes": ["reload", "read"]},)", ""));
  HttpResponse r = AdminCall("POST", "/reload");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("admin/tokens/it-ops"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("admin/tokens/it-reader"), std::string::npos) << r.body;
  ExpectEnvelope(AdminCall("POST", "/reload"), 401, "unauthenticated");
  EXPECT_EQ(AdminCall("POST", "/reload", kReaderAdminToken).status, 200);
}

// No admin action goes unaudited: with the audit sink stalled (a FIFO nobody reads, its pipe
// buffer full before the gateway starts) and every audit place taken, POST /reload is refused
// with 503 audit_unavailable and SIGHUP does not reload; once the sink moves, nothing had changed.
TEST_F(AdminPoint7Test, WithNoAuditPlaceAReloadIs503AndChangesNothing) {
  TempDir dir;
  const std::string fifo = dir.path() + "/audit.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  int read_fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(read_fd, 0) << std::strerror(errno);
  const int fill = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(fill, 0) << std::strerror(errno);
  const std::string filler(512, '#');
  while (write(fill, filler.data(), filler.size()) == static_cast<ssize_t>(filler.size())) {
  }
  close(fill);
  const std::string config = ReplaceOnce(StandardConfig(), R"("audit": {"file": "${AUDIT}"})",
                                         R"("audit": {"file": "${FIFO}", "queue_capacity": 2})");
  GatewayOptions options = StandardOptions(fake_, config);
  options.vars["FIFO"] = fifo;
  gateway_ = std::make_unique<GatewayProcess>(options);
  ASSERT_TRUE(gateway_->started()) << gateway_->log();
  gateway_->WriteConfig(WithNewCaller(config));

  // Calls until the places are gone (the writer is stuck on its first write).
  bool full = false;
  for (int i = 0; i < 50 && !full; ++i) full = Call("GET", kSelf).status == 503;
  ASSERT_TRUE(full) << gateway_->log();
  HttpResponse r = AdminCall("POST", "/reload");
  ExpectEnvelope(r, 503, "audit_unavailable");
  EXPECT_EQ(r.Header("retry-after"), "1");
  gateway_->Signal(SIGHUP);
  ASSERT_TRUE(gateway_->WaitForLog("SIGHUP: not reloading")) << gateway_->log();
  EXPECT_EQ(gateway_->log().find("config reloaded"), std::string::npos) << gateway_->log();

  // The sink moves again: nothing was reloaded.
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    char buf[65536];
    while (!stop) {
      pollfd p{read_fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0 && read(read_fd, buf, sizeof buf) == 0) break;
    }
  });
  bool admitted = false;
  for (int i = 0; i < 500 && !admitted; ++i) {
    admitted = Call("GET", kSelf).status == 200;
    if (!admitted) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(admitted) << gateway_->log();
  EXPECT_EQ(Call("GET", kSelf, kNewKey).status, 401);
  EXPECT_EQ(MetricValue(AdminCall("GET", "/metrics", "").body, "tollgate_config_reloads_total",
                        {{"result", "success"}}),
            0);
  EXPECT_EQ(gateway_->Stop(), 0);
  stop = true;
  reader.join();
  close(read_fd);
}

TEST_F(AdminPoint7Test, HealthzReadyzAndMetricsStayOpen) {
  StartGateway(WithoutAdminTokens(StandardConfig()));
  EXPECT_EQ(AdminCall("GET", "/healthz", "").status, 200);
  EXPECT_EQ(AdminCall("GET", "/readyz", "").status, 200);
  HttpResponse metrics = AdminCall("GET", "/metrics", "");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("tollgate_config_reloads_total"), std::string::npos);
  // Open endpoints write no audit record.
  EXPECT_EQ(Call("GET", kSelf).status, 200);
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].String("/decision"), "allowed");
}

}  // namespace
}  // namespace tollgate::testing
