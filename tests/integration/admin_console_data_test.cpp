// The admin console's data endpoints (issue 13) against the real binary, a real redis-server and
// the fake upstream: GET /status, /callers, /limits and /refusals answer what this replica sees,
// need the "read" scope, are audited, and never carry a key, a key hash or a token; and the
// admin listener's browser rule (same-origin pages may call token endpoints; open endpoints and
// other sites' pages stay refused).
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

const std::string kSelf = "/devin/v3beta1/enterprise/self";
const std::string kOutsideRole = "/devin/v3/organizations";  // 403 after authentication
const std::string kConsoleToken = "tga_it_console_token_0123456789";
const std::string kKeysToken = "tga_it_console_keys_token_987654";
const std::string kMadeUpKey = "tg_it_not_a_key_000000";

// ${STREAM}: "" or the audit's redis_stream member with its leading comma.
const std::string kConfig = R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"${STREAM}},
  "redis": {"url": "${REDIS}", "timeout_ms": 500, "on_error": "local"},
  "admin": {"tokens": [
    {"name": "console", "sha256": "${CONSOLE_HASH}", "scopes": ["read", "reload"]},
    {"name": "keys-admin", "sha256": "${KEYS_HASH}", "scopes": ["keys"]}]},
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"},
              "limits": [{"name": "devin-wide", "rate": "1/h", "burst": 1000, "scope": "shared"}]}
  },
  "roles": {"beta": {"rules": [{"upstream": "devin", "path": "/v3beta1/**"}]}},
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["beta"],
                  "attributes": {"team": ["data"]},
                  "limits": [{"name": "per-caller", "rate": "1/h", "burst": 5, "scope": "caller"},
                             {"name": "monthly", "quota": "100/month", "scope": "caller"}]},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["beta"],
                 "limits": [{"name": "tiny", "rate": "1/h", "burst": 1, "scope": "caller"}]}
  }
})";

class ConsoleDataTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  void Start(bool stream) {
    GatewayOptions o;
    o.config = kConfig;
    o.upstream = fake_.base_url();
    o.redis = redis_.url();
    o.env = {{"IT_DEVIN_TOKEN", fake_.options().devin_token}};
    o.vars = {{"DATA_HASH", upstream::Sha256Hex(kDataKey)},
              {"OPS_HASH", upstream::Sha256Hex(kOpsKey)},
              {"CONSOLE_HASH", upstream::Sha256Hex(kConsoleToken)},
              {"KEYS_HASH", upstream::Sha256Hex(kKeysToken)},
              {"STREAM", stream ? R"(, "redis_stream": "tollgate:audit")" : ""}};
    gateway_ = std::make_unique<GatewayProcess>(o);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }

  HttpResponse Call(const std::string& path, const std::string& key) {
    return Http("GET", gateway_->url() + path, Bearer(key));
  }

  // An admin call; every answer is kept for the secret check.
  HttpResponse Admin(const std::string& method, const std::string& path,
                     const std::string& token = kConsoleToken, HeaderList headers = {},
                     const std::string& body = "") {
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    HttpResponse r = Http(method, gateway_->admin_url() + path, headers, body);
    answers_.push_back(r.body);
    return r;
  }

  Json Get(const std::string& path) {
    HttpResponse r = Admin("GET", path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    EXPECT_EQ(r.Header("cache-control"), "no-store");
    Json body = Json::Parse(r.body);
    EXPECT_TRUE(body.ok()) << r.body;
    return body;
  }

  // Polls GET /refusals until it lists `count` items (the audit writer adds them after the
  // answer went out).
  Json Refusals(size_t count) {
    Json body;
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
    do {
      body = Get("/refusals");
      if (body.Size("/items") >= count) break;
      std::this_thread::sleep_for(milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return body;
  }

  // A number (integer or not) at `pointer`; -1 when absent.
  static double Number(const Json& body, const std::string& pointer) {
    const rapidjson::Value* v = body.Get(pointer);
    return v != nullptr && v->IsNumber() ? v->GetDouble() : -1;
  }

  // The item of `items` (an array of objects) whose `member` is `value`, as a pointer; "" if none.
  static std::string Find(const Json& body, const std::string& items, const std::string& member,
                          const std::string& value) {
    for (size_t i = 0; i < body.Size(items); ++i) {
      const std::string at = items + "/" + std::to_string(i);
      if (body.String(at + member) == value) return at;
    }
    return "";
  }

  // No answer seen so far holds a secret: keys, their hashes, tokens, the upstream token.
  void ExpectNoSecretIn(const std::vector<std::string>& more_secrets = {}) {
    std::vector<std::string> secrets = {kDataKey,
                                        kOpsKey,
                                        upstream::Sha256Hex(kDataKey),
                                        upstream::Sha256Hex(kOpsKey),
                                        kConsoleToken,
                                        kKeysToken,
                                        upstream::Sha256Hex(kConsoleToken),
                                        upstream::Sha256Hex(kKeysToken),
                                        fake_.options().devin_token};
    secrets.insert(secrets.end(), more_secrets.begin(), more_secrets.end());
    for (const std::string& body : answers_) {
      for (const std::string& secret : secrets) {
        EXPECT_EQ(body.find(secret), std::string::npos) << "secret " << secret << " in " << body;
      }
    }
  }

  // After a 401, a 403 and a 429, /refusals lists them newest first, with their request ids.
  void ExpectRefusalsNewestFirst(const std::string& source) {
    ASSERT_EQ(Call(kSelf, kOpsKey).status, 200);
    const HttpResponse unauthenticated = Call(kSelf, kMadeUpKey);
    ASSERT_EQ(unauthenticated.status, 401);
    const HttpResponse forbidden = Call(kOutsideRole, kDataKey);
    ASSERT_EQ(forbidden.status, 403);
    const HttpResponse limited = Call(kSelf, kOpsKey);
    ASSERT_EQ(limited.status, 429);

    Json r = Refusals(3);
    EXPECT_EQ(r.String("/source"), source);
    ASSERT_EQ(r.Size("/items"), 3u);
    EXPECT_EQ(r.String("/items/0/request_id"), limited.Header("x-request-id"));
    EXPECT_EQ(r.Int("/items/0/status"), 429);
    EXPECT_EQ(r.String("/items/0/caller"), "ops-team");
    EXPECT_EQ(r.String("/items/0/decision"), "rate_limited");
    EXPECT_EQ(r.String("/items/1/request_id"), forbidden.Header("x-request-id"));
    EXPECT_EQ(r.Int("/items/1/status"), 403);
    EXPECT_EQ(r.String("/items/2/request_id"), unauthenticated.Header("x-request-id"));
    EXPECT_EQ(r.Int("/items/2/status"), 401);

    r = Get("/refusals?limit=1");
    ASSERT_EQ(r.Size("/items"), 1u);
    EXPECT_EQ(r.String("/items/0/request_id"), limited.Header("x-request-id"));
  }

  FakeUpstream fake_;
  RedisServer redis_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::vector<std::string> answers_;
};

TEST_F(ConsoleDataTest, ASameOriginPageMayCallTokenEndpointsOtherPagesAndOpenEndpointsNot) {
  Start(false);
  const std::string own = "http://127.0.0.1:" + std::to_string(gateway_->admin_port());
  // The console's own fetch: same-origin, with or without Origin.
  EXPECT_EQ(
      Admin("GET", "/status", kConsoleToken, {{"Sec-Fetch-Site", "same-origin"}, {"Origin", own}})
          .status,
      200);
  EXPECT_EQ(Admin("GET", "/callers", kConsoleToken, {{"Sec-Fetch-Site", "same-origin"}}).status,
            200);
  // Still the token that counts: a same-origin page without it is 401.
  EXPECT_EQ(Admin("GET", "/status", "", {{"Sec-Fetch-Site", "same-origin"}}).status, 401);
  // Another origin, or another site, is refused whatever the token.
  const std::vector<HeaderList> refused = {
      {{"Sec-Fetch-Site", "same-origin"}, {"Origin", "http://evil.com"}},
      {{"Sec-Fetch-Site", "same-origin"}, {"Origin", "http://127.0.0.1"}},
      {{"Sec-Fetch-Site", "same-site"}},
      {{"Sec-Fetch-Site", "cross-site"}, {"Origin", "http://evil.com"}},
      {{"Origin", own}},  // an Origin without Sec-Fetch-Site: not provably same-origin
  };
  for (const HeaderList& headers : refused) {
    SCOPED_TRACE(headers.back().second);
    HttpResponse r = Admin("GET", "/status", kConsoleToken, headers);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(Json::Parse(r.body).String("/error/reason"), "forbidden");
  }
  // A cross-site POST that would act.
  EXPECT_EQ(Admin("POST", "/reload", kConsoleToken,
                  {{"Sec-Fetch-Site", "cross-site"}, {"Origin", "http://evil.com"}})
                .status,
            403);
  // The open endpoints take no page's request, not even this origin's.
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(Admin("GET", path, "", {{"Origin", own}}).status, 403);
    EXPECT_EQ(Admin("GET", path, "", {{"Sec-Fetch-Site", "same-origin"}, {"Origin", own}}).status,
              403);
    EXPECT_EQ(Admin("GET", path, "", {{"Sec-Fetch-Site", "same-origin"}}).status, 403);
    EXPECT_EQ(Admin("GET", path, "", {{"Sec-Fetch-Site", "none"}}).status, 200);
  }
}

TEST_F(ConsoleDataTest, EveryEndpointNeedsTheReadScopeAndIsAudited) {
  Start(false);
  for (const char* path : {"/status", "/callers", "/limits", "/refusals"}) {
    SCOPED_TRACE(path);
    HttpResponse r = Admin("GET", path, kKeysToken);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_NE(Json::Parse(r.body).String("/error/message").find("\"read\""), std::string::npos)
        << r.body;
    EXPECT_EQ(Admin("GET", path, "").status, 401);
    EXPECT_EQ(Admin("GET", path, kConsoleToken).status, 200);
  }
  // Each call has its record: admin, action, decision.
  std::vector<std::string> actions;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
  while (std::chrono::steady_clock::now() < deadline) {
    actions.clear();
    for (const Json& line : gateway_->AuditLines()) {
      if (line.String("/admin") == "console" && line.String("/decision") == "admin") {
        actions.push_back(line.String("/action"));
      }
    }
    if (actions.size() >= 4) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"console.status", "console.callers",
                                               "console.limits", "console.refusals"}));
  ExpectNoSecretIn();
}

TEST_F(ConsoleDataTest, StatusReportsTheConfigTheReplicaTheLastReloadAndCooldowns) {
  Start(false);
  Json s = Get("/status");
  EXPECT_FALSE(s.String("/version").empty());
  const std::string sha256 = s.String("/config/sha256");
  EXPECT_EQ(sha256.size(), 64u) << sha256;
  EXPECT_FALSE(s.String("/config/loaded_at").empty());
  EXPECT_TRUE(s.IsNull("/config/last_reload"));
  EXPECT_FALSE(s.String("/replica/id").empty());
  EXPECT_FALSE(s.String("/replica/started_at").empty());
  EXPECT_TRUE(s.Bool("/replica/ready"));
  EXPECT_TRUE(s.Bool("/replica/redis/configured"));
  EXPECT_TRUE(s.Bool("/replica/limiter/ready"));
  EXPECT_FALSE(s.Bool("/replica/limiter/fallback", true));
  EXPECT_EQ(s.Int("/replica/in_flight"), 0);
  EXPECT_GE(s.Int("/replica/audit/capacity"), 1);
  ASSERT_EQ(s.Size("/replica/upstreams"), 1u);
  EXPECT_EQ(s.String("/replica/upstreams/0/name"), "devin");
  EXPECT_FALSE(s.Bool("/replica/upstreams/0/cooldown", true));

  // A reload of the same document keeps the fingerprint; a changed one changes it.
  ASSERT_EQ(Admin("POST", "/reload").status, 200);
  s = Get("/status");
  EXPECT_TRUE(s.Bool("/config/last_reload/applied"));
  EXPECT_EQ(s.Size("/config/last_reload/errors"), 0u);
  EXPECT_EQ(s.String("/config/sha256"), sha256);
  std::string changed = kConfig;
  changed.replace(changed.find("\"burst\": 5"), 10, "\"burst\": 6");
  gateway_->WriteConfig(changed);
  ASSERT_EQ(Admin("POST", "/reload").status, 200);
  s = Get("/status");
  EXPECT_NE(s.String("/config/sha256"), sha256);
  // A reload that fails is reported, and the running config stays.
  const std::string running = s.String("/config/sha256");
  gateway_->WriteConfig("{not json");
  ASSERT_EQ(Admin("POST", "/reload").status, 400);
  s = Get("/status");
  EXPECT_FALSE(s.Bool("/config/last_reload/applied", true));
  EXPECT_GE(s.Size("/config/last_reload/errors"), 1u);
  EXPECT_EQ(s.String("/config/sha256"), running);

  // An upstream 429 (a minute's Retry-After) puts devin in a cooldown.
  fake_.SetBehaviour("/v3beta1/enterprise/self", 0, 429, "60", 1);
  ASSERT_EQ(Call(kSelf, kDataKey).status, 429);
  bool cooling = false;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(10000);
  while (!cooling && std::chrono::steady_clock::now() < deadline) {
    cooling = Get("/status").Bool("/replica/upstreams/0/cooldown");
    if (!cooling) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(cooling);
  ExpectNoSecretIn();
}

TEST_F(ConsoleDataTest, CallersListConfigAndRunTimeKeysByIdNeverTheKey) {
  Start(false);
  HttpResponse created = Admin("POST", "/keys", kKeysToken, {}, R"({"caller": "data-team"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const Json key = Json::Parse(created.body);
  const std::string id = key.String("/id");
  const std::string secret = key.String("/key");
  ASSERT_FALSE(secret.empty());
  answers_.pop_back();  // the one answer that must carry the new key
  ASSERT_EQ(Call(kSelf, secret).status, 200);

  Json c = Get("/callers");
  EXPECT_FALSE(c.Has("/keys_error"));
  const std::string data = Find(c, "/items", "/name", "data-team");
  ASSERT_FALSE(data.empty()) << c.root().GetType();
  EXPECT_EQ(c.String(data + "/roles/0"), "beta");
  EXPECT_FALSE(c.Bool(data + "/disabled", true));
  EXPECT_TRUE(c.IsNull(data + "/expires"));
  EXPECT_EQ(c.String(data + "/attributes/team/0"), "data");
  ASSERT_EQ(c.Size(data + "/keys"), 2u);
  EXPECT_EQ(c.String(data + "/keys/0/id"), upstream::Sha256Hex(kDataKey).substr(0, 8));
  EXPECT_EQ(c.String(data + "/keys/0/kind"), "config");
  EXPECT_EQ(c.String(data + "/keys/0/state"), "active");
  EXPECT_EQ(c.String(data + "/keys/1/id"), id);
  EXPECT_EQ(c.String(data + "/keys/1/kind"), "run-time");
  EXPECT_EQ(c.String(data + "/keys/1/state"), "active");
  EXPECT_FALSE(c.String(data + "/keys/1/created_at").empty());
  const std::string ops = Find(c, "/items", "/name", "ops-team");
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(c.Size(ops + "/keys"), 1u);

  ASSERT_EQ(Admin("DELETE", "/keys/" + id, kKeysToken).status, 204);
  c = Get("/callers");
  EXPECT_EQ(c.String(data + "/keys/1/state"), "revoked");

  // Redis gone: the callers still come, with their config keys, and say the rest is missing.
  redis_.Stop();
  c = Get("/callers");
  EXPECT_EQ(c.String("/keys_error"), "redis_unavailable");
  EXPECT_EQ(c.Size(data + "/keys"), 1u);
  ExpectNoSecretIn({secret, upstream::Sha256Hex(secret)});
}

TEST_F(ConsoleDataTest, LimitsShowWhatWhoamiShowsAndPeekingTakesNothing) {
  Start(false);
  Json l = Get("/limits?caller=data-team");
  EXPECT_EQ(l.String("/caller"), "data-team");
  ASSERT_EQ(l.Size("/items"), 3u) << l.root().GetType();
  const std::string per = Find(l, "/items", "/name", "per-caller");
  const std::string monthly = Find(l, "/items", "/name", "monthly");
  const std::string wide = Find(l, "/items", "/name", "devin-wide");
  ASSERT_FALSE(per.empty() || monthly.empty() || wide.empty());
  EXPECT_EQ(l.String(per + "/kind"), "bucket");
  EXPECT_EQ(l.String(per + "/scope"), "caller");
  EXPECT_EQ(l.Int(per + "/limit"), 5);
  EXPECT_EQ(Number(l, per + "/remaining"), 5);
  EXPECT_FALSE(l.Has(per + "/upstream"));
  EXPECT_EQ(l.String(monthly + "/kind"), "quota");
  EXPECT_EQ(l.Int(monthly + "/limit"), 100);
  EXPECT_FALSE(l.String(monthly + "/reset_at").empty());
  EXPECT_EQ(l.String(wide + "/scope"), "shared");
  EXPECT_EQ(l.String(wide + "/upstream"), "devin");
  EXPECT_EQ(l.Int(wide + "/limit"), 1000);

  // Peeking again takes nothing; two requests take two.
  EXPECT_EQ(Number(Get("/limits?caller=data-team"), per + "/remaining"), 5);
  ASSERT_EQ(Call(kSelf, kDataKey).status, 200);
  ASSERT_EQ(Call(kSelf, kDataKey).status, 200);
  l = Get("/limits?caller=data-team");
  // A refill of 1/h adds at most a sliver meanwhile: the level is 3.00x.
  const double remaining = Number(l, per + "/remaining");
  EXPECT_GE(remaining, 3.0);
  EXPECT_LT(remaining, 3.5);
  EXPECT_EQ(Number(l, monthly + "/remaining"), 98);

  // Without caller=: every caller's.
  l = Get("/limits");
  EXPECT_EQ(l.Size("/callers"), 2u);
  const std::string ops = Find(l, "/callers", "/caller", "ops-team");
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(l.String(ops + "/items/0/name"), "tiny");

  EXPECT_EQ(Admin("GET", "/limits?caller=nobody").status, 404);
  EXPECT_EQ(Admin("GET", "/limits?who=data-team").status, 400);
  ExpectNoSecretIn();
}

TEST_F(ConsoleDataTest, RefusalsComeFromMemoryWithoutAnAuditStream) {
  Start(false);
  ExpectRefusalsNewestFirst("memory");
  for (const char* bad : {"?limit=0", "?limit=1001", "?limit=x", "?count=3"}) {
    EXPECT_EQ(Admin("GET", std::string("/refusals") + bad).status, 400) << bad;
  }
  ExpectNoSecretIn({kMadeUpKey});
}

TEST_F(ConsoleDataTest, RefusalsComeFromTheAuditStreamWhenThereIsOne) {
  Start(true);
  ExpectRefusalsNewestFirst("stream");
  // Redis gone: this replica's own refusals, and why the stream's are not there.
  redis_.Stop();
  Json r = Get("/refusals");
  EXPECT_EQ(r.String("/source"), "memory");
  EXPECT_EQ(r.String("/stream_error"), "redis_unavailable");
  EXPECT_EQ(r.Size("/items"), 3u);
  EXPECT_EQ(r.Int("/items/0/status"), 429);
  ExpectNoSecretIn({kMadeUpKey});
}

}  // namespace
}  // namespace tollgate::testing
