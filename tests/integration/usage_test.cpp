// Usage counters end to end (issue 13): traffic from three callers over two replicas on one
// Redis, both stopped gracefully (the last counts are flushed at shutdown), then GET /usage on a
// third replica: per caller and per decision, the sums equal what the audit records of the two
// say, exactly. A refused run-time key is counted by id; a made-up key's id never is. The CSV
// parses; bad parameters are 400 naming them; Redis gone is 503. Without a redis section the
// counters are kept in memory and read the same way.
#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kUsageAdmin = "tga_it_usage_admin_token_0123456789";
const std::string kDataKey2 = "tg_it_usage_data_key_0123456789";
const std::string kOpsKey2 = "tg_it_usage_ops_key_0123456789";
const std::string kWebKey = "tg_it_usage_web_key_0123456789";
const std::string kSelfPath = "/devin/v3beta1/enterprise/self";
const std::string kOrgsPath = "/devin/v3beta1/enterprise/organizations";

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(20000)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

std::string Config(bool redis) {
  return std::string(R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},)") +
         (redis ? R"(
  "redis": {"url": "${REDIS}", "timeout_ms": 500},)"
                : "") +
         R"(
  "usage": {"flush_interval_seconds": 1},
  "admin": {"tokens": [{"name": "it-usage", "sha256": "${ADMIN_HASH}", "scopes": ["usage", "keys"]}]},
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}}
  },
  "roles": {
    "all": {"rules": [{"upstream": "devin", "path": "/**"}]},
    "self-only": {"rules": [{"upstream": "devin", "path": "/v3beta1/enterprise/self"}]}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["all"]},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["self-only"]},
    "web-team": {"key_sha256": ["${WEB_HASH}"], "roles": ["all"],
                 "limits": [{"name": "web-calls", "rate": "1/h", "burst": 3, "scope": "caller"}]}
  }
})";
}

// Per caller ("-" for none): the counters the audit records give.
using Sums = std::map<std::string, std::map<std::string, int64_t>>;

void AddAudit(const std::vector<Json>& lines, Sums* sums) {
  for (const Json& j : lines) {
    ASSERT_TRUE(j.ok());
    const std::string decision = j.String("/decision");
    if (decision == "admin") continue;  // the admin listener's calls are not usage
    const std::string caller =
        decision == "unauthenticated" || j.IsNull("/caller") || !j.Has("/caller")
            ? "-"
            : j.String("/caller");
    auto& s = (*sums)[caller];
    s["requests"] += 1;
    const bool named = decision == "allowed" || decision == "forbidden" ||
                       decision == "rate_limited" || decision == "unauthenticated";
    s[named ? decision : "errors"] += 1;
    s["bytes_in"] += j.Int("/bytes_in", 0);
    s["bytes_out"] += j.Int("/bytes_out", 0);
    s["status_" + std::to_string(j.Int("/status") / 100) + "xx"] += 1;
  }
}

Sums FromUsage(const Json& usage) {
  Sums sums;
  for (size_t i = 0; i < usage.Size("/items"); ++i) {
    const std::string item = "/items/" + std::to_string(i);
    auto& s = sums[usage.String(item + "/caller")];
    for (const char* f : {"requests", "allowed", "forbidden", "rate_limited", "unauthenticated",
                          "errors", "bytes_in", "bytes_out"}) {
      if (usage.Int(item + "/" + f) != 0) s[f] = usage.Int(item + "/" + f);
    }
    for (const char* c : {"2xx", "3xx", "4xx", "5xx"}) {
      if (usage.Has(item + "/status/" + c))
        s[std::string("status_") + c] = usage.Int(item + "/status/" + c);
    }
  }
  return sums;
}

void DropZeros(Sums* sums) {
  for (auto& [caller, s] : *sums) {
    for (auto it = s.begin(); it != s.end();) it = it->second == 0 ? s.erase(it) : std::next(it);
  }
}

std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
      ++i;
    } else {
      field.push_back(c);
    }
  }
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

class UsageTest : public ::testing::Test {
 protected:
  std::unique_ptr<GatewayProcess> Start(bool redis) {
    GatewayOptions o;
    o.config = Config(redis);
    o.env = {{"IT_DEVIN_TOKEN", upstream_.options().devin_token}};
    o.upstream = upstream_.base_url();
    if (redis) o.redis = redis_->url();
    o.vars = {{"ADMIN_HASH", upstream::Sha256Hex(kUsageAdmin)},
              {"DATA_HASH", upstream::Sha256Hex(kDataKey2)},
              {"OPS_HASH", upstream::Sha256Hex(kOpsKey2)},
              {"WEB_HASH", upstream::Sha256Hex(kWebKey)}};
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  HttpResponse Admin(const GatewayProcess& g, const std::string& method, const std::string& path,
                     const std::string& body = "") {
    HeaderList headers = {{"Authorization", "Bearer " + kUsageAdmin}};
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return Http(method, g.admin_url() + path, headers, body);
  }

  // Each caller's traffic on `g`: allowed, forbidden, rate limited, unauthenticated, not found.
  void Traffic(const GatewayProcess& g) {
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(Http("GET", g.url() + kSelfPath, Bearer(kDataKey2)).status, 200);
    EXPECT_EQ(Http("GET", g.url() + kOrgsPath, Bearer(kDataKey2)).status, 200);
    EXPECT_EQ(Http("GET", g.url() + kSelfPath, Bearer(kOpsKey2)).status, 200);
    EXPECT_EQ(Http("GET", g.url() + kOrgsPath, Bearer(kOpsKey2)).status, 403);
    for (int i = 0; i < 3; ++i) Http("GET", g.url() + kSelfPath, Bearer(kWebKey));  // 200 or 429
    EXPECT_EQ(Http("GET", g.url() + kSelfPath, Bearer("tg_it_not_a_key")).status, 401);
    EXPECT_EQ(Http("GET", g.url() + kSelfPath).status, 401);
    EXPECT_EQ(Http("GET", g.url() + "/no-such-upstream/x", Bearer(kDataKey2)).status, 404);
  }

  FakeUpstream upstream_;
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(UsageTest, TwoReplicasCountExactlyWhatTheirAuditRecordsSay) {
  redis_ = std::make_unique<RedisServer>();
  auto a = Start(true);
  auto b = Start(true);
  ASSERT_TRUE(a->started() && b->started());

  // Run-time keys: one revoked, one used with a wrong secret; and a made-up key of that shape.
  auto created = Json::Parse(Admin(*a, "POST", "/keys", R"({"caller": "data-team"})").body);
  const std::string revoked_id = created.String("/id");
  const std::string revoked_key = created.String("/key");
  ASSERT_FALSE(revoked_id.empty());
  ASSERT_EQ(Admin(*a, "DELETE", "/keys/" + revoked_id).status, 204);
  auto live = Json::Parse(Admin(*a, "POST", "/keys", R"({"caller": "ops-team"})").body);
  std::string wrong_secret = live.String("/key");
  ASSERT_FALSE(wrong_secret.empty());
  wrong_secret.back() = wrong_secret.back() == 'A' ? 'B' : 'A';
  const std::string made_up = "tg_zzzzzzzzzzzz_" + std::string(43, 'Q');

  Traffic(*a);
  Traffic(*b);
  EXPECT_EQ(Http("GET", a->url() + kSelfPath, Bearer(revoked_key)).status, 401);
  EXPECT_EQ(Http("GET", b->url() + kSelfPath, Bearer(revoked_key)).status, 401);
  EXPECT_EQ(Http("GET", a->url() + kSelfPath, Bearer(wrong_secret)).status, 401);
  EXPECT_EQ(Http("GET", b->url() + kSelfPath, Bearer(made_up)).status, 401);
  EXPECT_EQ(Http("GET", b->url() + kSelfPath, Bearer(live.String("/key"))).status, 200);

  // Stopped gracefully: each flushes its last counts before it exits.
  ASSERT_EQ(a->Stop(), 0) << a->log();
  ASSERT_EQ(b->Stop(), 0) << b->log();
  Sums audit;
  AddAudit(a->AuditLines(), &audit);
  AddAudit(b->AuditLines(), &audit);
  ASSERT_EQ(audit["web-team"]["rate_limited"], 3);  // burst 3 shared by both replicas
  DropZeros(&audit);

  auto c = Start(true);
  HttpResponse r = Admin(*c, "GET", "/usage?group_by=caller");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  Json usage = Json::Parse(r.body);
  EXPECT_EQ(FromUsage(usage), audit) << r.body;
  // Only the real keys' ids are counted: never the made-up one.
  std::string anon;
  for (size_t i = 0; i < usage.Size("/items"); ++i) {
    if (usage.String("/items/" + std::to_string(i) + "/caller") == "-") {
      anon = "/items/" + std::to_string(i);
    }
  }
  ASSERT_FALSE(anon.empty()) << r.body;
  EXPECT_EQ(usage.Size(anon + "/unauthenticated_keys"), 2u) << r.body;
  EXPECT_EQ(usage.Int(anon + "/unauthenticated_keys/" + revoked_id), 2);
  EXPECT_EQ(usage.Int(anon + "/unauthenticated_keys/" + live.String("/id")), 1);
  EXPECT_EQ(r.body.find("zzzzzzzzzzzz"), std::string::npos);

  // By day and caller, as the console asks: the same sums per caller.
  Json by_day = Json::Parse(Admin(*c, "GET", "/usage?group_by=day,caller").body);
  EXPECT_EQ(FromUsage(by_day), audit);
  EXPECT_EQ(by_day.String("/items/0/day").size(), 10u);

  // The CSV: a header, then one line per caller, the same numbers.
  HttpResponse csv = Admin(*c, "GET", "/usage?group_by=caller&format=csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.Header("Content-Type").rfind("text/csv", 0), 0u);
  auto rows = ParseCsv(csv.body);
  ASSERT_EQ(rows.size(), audit.size() + 1) << csv.body;
  EXPECT_EQ(rows[0][0], "caller");
  EXPECT_EQ(rows[0][1], "requests");
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), rows[0].size()) << csv.body;
    EXPECT_EQ(std::stoll(rows[i][1]), audit[rows[i][0]]["requests"]) << rows[i][0];
  }

  // Bad parameters are named; Redis gone is 503.
  HttpResponse bad = Admin(*c, "GET", "/usage?from=2026-02-30");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Json::Parse(bad.body).String("/error/message").rfind("from:", 0), 0u) << bad.body;
  EXPECT_EQ(Admin(*c, "GET", "/usage?group_by=week").status, 400);
  HttpResponse unauthorised = Http("GET", c->admin_url() + "/usage");
  EXPECT_EQ(unauthorised.status, 401);
  redis_->Stop();
  HttpResponse down = Admin(*c, "GET", "/usage");
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(Json::Parse(down.body).String("/error/reason"), "redis_unavailable") << down.body;
}

TEST_F(UsageTest, WithoutRedisTheCountsAreKeptInMemory) {
  auto g = Start(false);
  ASSERT_TRUE(g->started());
  Traffic(*g);
  const size_t sent = 12;
  auto lines = g->WaitForAuditLines(sent);
  ASSERT_EQ(lines.size(), sent);
  Sums audit;
  AddAudit(lines, &audit);
  DropZeros(&audit);
  Json usage;
  // Flushed within a second or so: polled, not slept on.
  const bool counted = WaitUntil([&] {
    usage = Json::Parse(Admin(*g, "GET", "/usage?group_by=caller").body);
    int64_t total = 0;
    for (size_t i = 0; i < usage.Size("/items"); ++i) {
      total += usage.Int("/items/" + std::to_string(i) + "/requests");
    }
    return total == static_cast<int64_t>(sent);
  });
  ASSERT_TRUE(counted) << usage.root().IsObject();
  EXPECT_EQ(FromUsage(usage), audit);
  // The CLI: a table by default, the API's CSV with --csv.
  auto cli = [&](const std::string& args) {
    const std::string cmd = "TOLLGATE_ADMIN_TOKEN=" + kUsageAdmin + " " + TOLLGATE_BINARY +
                            " usage --admin-url " + g->admin_url() + " " + args + " 2>&1";
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      EXPECT_EQ(pclose(p), 0) << out;
    }
    return out;
  };
  const std::string table = cli("--group-by caller");
  EXPECT_EQ(table.rfind("CALLER", 0), 0u) << table;
  EXPECT_NE(table.find("web-calls=3"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 5) << table;  // header, 4 callers
  EXPECT_EQ(cli("--group-by caller --csv").rfind("caller,requests,", 0), 0u);
  const std::string metrics = Http("GET", g->admin_url() + "/metrics").body;
  EXPECT_GE(MetricValue(metrics, "tollgate_usage_flush_total", {{"result", "ok"}}).value_or(0), 1);
  EXPECT_EQ(MetricValue(metrics, "tollgate_usage_flush_total", {{"result", "failed"}}), 0);
}

}  // namespace
}  // namespace tollgate::testing
