// Redis Cluster end to end (issue 14): gateways configured with the seed addresses of a real
// three-master `redis-server --cluster-enabled` set.
//   - a shared bucket is exact across two gateways (every decision from the cluster);
//   - run-time keys and usage work on a cluster, and a key lookup follows an ASK redirect while
//     the keys' slot is being migrated (a single-key command, which a migrating slot serves);
//   - the slot holding a caller's bucket is resharded to another node while requests flow: the
//     gateways follow the MOVED redirect, no decision falls back, and the bucket stays exact
//     (its state moved with the key).
//
// Key names are read from the cluster (KEYS on every node), never computed: in cluster mode the
// gateway adds a hash tag to them.
#include <algorithm>
#include <functional>
#include <map>
#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/request_stream.h"
#include "tests/support/redis_sets.h"

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSelf = "/devin/v3beta1/enterprise/self";
const std::string kClusterAdmin = "tga_it_cluster_admin_token_0123456789";

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(20000)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// `limits`: the devin upstream's limits; `data_limits`: data-team's own.
std::string ClusterConfig(const std::string& limits, const std::string& data_limits = "[]") {
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "audit": {"file": "${AUDIT}"},
  "redis": {"cluster": {"addresses": [${NODES}]}, "timeout_ms": 200, "on_error": "local"},
  "usage": {"flush_interval_seconds": 1},
  "admin": {"tokens": [{"name": "it-cluster", "sha256": "${CLUSTER_ADMIN_HASH}",
                        "scopes": ["keys", "usage", "read"]}]},
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 1000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"},
              "limits": )" +
         limits + R"(}
  },
  "roles": {"all": {"rules": [{"upstream": "devin", "path": "/**"}]}},
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["all"], "limits": )" +
         data_limits + R"(},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["all"]}
  }
})";
}

double Metric(const GatewayProcess& g, const std::string& series) {
  return MetricValue(Http("GET", g.admin_url() + "/metrics").body, series).value_or(0);
}

double Redirects(const GatewayProcess& g, const std::string& kind) {
  return Metric(g, R"(tollgate_redis_cluster_redirects_total{kind=")" + kind + R"("})");
}

// Waits until every id has an audit record; they are then in *audit.
bool WaitForAudit(const std::vector<const GatewayProcess*>& gateways,
                  const std::vector<std::string>& ids, std::map<std::string, Json>* audit) {
  return WaitUntil([&] {
    *audit = AuditById(gateways);
    return std::all_of(ids.begin(), ids.end(),
                       [&](const std::string& id) { return audit->count(id) == 1; });
  });
}

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fake_.started()) << fake_.log();
    ASSERT_TRUE(cluster_.ready()) << cluster_.Describe();
  }

  std::unique_ptr<GatewayProcess> StartGateway(const std::string& config) {
    GatewayOptions o = StandardOptions(fake_, config);
    o.vars["NODES"] = cluster_.AddressesJson();
    o.vars["CLUSTER_ADMIN_HASH"] = upstream::Sha256Hex(kClusterAdmin);
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  HttpResponse Get(const GatewayProcess& g, const std::string& key, const std::string& id = "") {
    HeaderList headers = {{"Authorization", "Bearer " + key}};
    if (!id.empty()) headers.emplace_back("X-Request-Id", id);
    return Http("GET", g.url() + kSelf, headers);
  }

  HttpResponse Admin(const GatewayProcess& g, const std::string& method, const std::string& path,
                     const std::string& body = "") {
    HeaderList headers = {{"Authorization", "Bearer " + kClusterAdmin}};
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return Http(method, g.admin_url() + path, headers, body);
  }

  // A port of the cluster other than `port`.
  int OtherNode(int port) const {
    for (int p : cluster_.ports()) {
      if (p != port) return p;
    }
    return 0;
  }

  FakeUpstream fake_;
  RedisClusterSet cluster_;
};

// The harness itself: a slot moves to another node with its keys, and every node agrees.
TEST_F(RedisClusterTest, TheClusterSetMovesASlotWithItsKeys) {
  const std::string key = "harness:{moved}:key";
  const int slot = cluster_.KeySlot(key);
  ASSERT_GE(slot, 0);
  const int source = cluster_.SlotOwner(slot);
  ASSERT_NE(source, 0);
  auto set = RedisQuery(source, {"SET", key, "value"});
  ASSERT_TRUE(set && set->str == "OK") << (set ? set->Text() : "no answer");
  const int target = OtherNode(source);
  auto moved = RedisQuery(target, {"GET", key});
  ASSERT_TRUE(moved && moved->is_error()) << "the target served a slot it does not own";
  EXPECT_EQ(moved->str.rfind("MOVED " + std::to_string(slot) + " ", 0), 0u) << moved->str;

  ASSERT_TRUE(cluster_.MoveSlot(slot, target));
  for (int port : cluster_.ports()) EXPECT_EQ(cluster_.SlotOwner(slot, port), target) << port;
  EXPECT_EQ(cluster_.Keys("harness:*"), (std::map<std::string, int>{{key, target}}));
  auto got = RedisQuery(target, {"GET", key});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->Text(), "value");
}

TEST_F(RedisClusterTest, ASharedBucketIsExactAcrossTwoGateways) {
  const std::string config =
      ClusterConfig(R"([{"name": "devin-all", "rate": "1/h", "burst": 20, "scope": "shared"}])");
  auto a = StartGateway(config);
  auto b = StartGateway(config);
  ASSERT_TRUE(a->started() && b->started());
  const std::vector<const GatewayProcess*> both = {a.get(), b.get()};

  std::vector<HttpRequest> requests;
  std::vector<std::string> ids;
  for (int i = 0; i < 120; ++i) {
    HttpRequest r;
    r.url = both[i % 2]->url() + kSelf;
    ids.push_back("shared-" + std::to_string(i));
    r.headers = {{"Authorization", "Bearer " + (i % 3 == 0 ? kOpsKey : kDataKey)},
                 {"X-Request-Id", ids.back()}};
    requests.push_back(std::move(r));
  }
  std::vector<HttpResponse> answers = HttpParallel(requests, milliseconds(60000));
  size_t allowed = 0, limited = 0;
  for (const auto& r : answers) {
    allowed += r.status == 200 ? 1 : 0;
    limited += r.status == 429 ? 1 : 0;
  }
  EXPECT_EQ(allowed, 20u);
  EXPECT_EQ(limited, 100u);
  EXPECT_EQ(fake_.Stats().requests, 20);

  std::map<std::string, Json> audit;
  ASSERT_TRUE(WaitForAudit(both, ids, &audit));
  EXPECT_EQ(DecidedWithoutRedis(ids, audit), "");
  EXPECT_EQ(Metric(*a, "tollgate_ratelimit_fallbacks_total"), 0);
  EXPECT_EQ(Metric(*b, "tollgate_ratelimit_fallbacks_total"), 0);
  // The bucket is one key in the cluster.
  EXPECT_EQ(cluster_.Keys("*devin-all*").size(), 1u) << cluster_.Describe();
}

TEST_F(RedisClusterTest, RunTimeKeysAndUsageWorkAndAKeyLookupFollowsAnAskRedirect) {
  const std::string config = ClusterConfig("[]");
  auto a = StartGateway(config);
  auto b = StartGateway(config);
  ASSERT_TRUE(a->started() && b->started());
  for (const GatewayProcess* g : {a.get(), b.get()}) {
    EXPECT_TRUE(WaitUntil([&] { return Metric(*g, "tollgate_key_events_subscribed") == 1; }))
        << "the key events subscription is not live:\n"
        << g->log();
  }

  HttpResponse created = Admin(*a, "POST", "/keys", R"({"caller": "data-team"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Json::Parse(created.body).String("/id");
  const std::string key = Json::Parse(created.body).String("/key");
  ASSERT_FALSE(id.empty());
  // Every answer the key gets is counted: usage must say exactly as many were allowed.
  int64_t allowed = 0;
  auto use = [&](const GatewayProcess& g) {
    HttpResponse r = Get(g, key);
    allowed += r.status == 200 ? 1 : 0;
    return r;
  };
  ASSERT_EQ(use(*a).status, 200);
  ASSERT_EQ(use(*a).status, 200);

  // The key's record, and its slot held mid-migration with the record already moved: the source
  // answers ASK for it, the target serves it after ASKING.
  auto records = cluster_.Keys("*" + id + "*");
  ASSERT_EQ(records.size(), 1u) << cluster_.Describe();
  const std::string record = records.begin()->first;
  const int source = records.begin()->second;
  const int slot = cluster_.KeySlot(record);
  const int target = OtherNode(source);
  ASSERT_TRUE(cluster_.BeginSlotMigration(slot, target));
  ASSERT_TRUE(cluster_.MigrateSlotKeys(slot));
  ASSERT_EQ(cluster_.Keys("*" + id + "*")[record], target);

  // B never saw the key: it looks it up, and is redirected.
  HttpResponse asked = use(*b);
  EXPECT_EQ(asked.status, 200) << asked.body << "\n" << b->log();
  EXPECT_GE(Redirects(*b, "ask"), 1) << Http("GET", b->admin_url() + "/metrics").body;

  ASSERT_TRUE(cluster_.FinishSlotMigration(slot));
  // Revoked through B (its map still names the source: MOVED), refused on A, which cached it.
  HttpResponse revoked = Admin(*b, "DELETE", "/keys/" + id);
  EXPECT_EQ(revoked.status, 204) << revoked.body << "\n" << b->log();
  EXPECT_TRUE(WaitUntil([&] { return use(*a).status == 401; }, milliseconds(10000)))
      << "A still accepts the revoked key";
  EXPECT_EQ(use(*b).status, 401);

  // Usage: data-team's allowed calls (the key's only), counted by both gateways, read through B.
  std::string usage;
  const bool counted = WaitUntil([&] {
    HttpResponse r = Admin(*b, "GET", "/usage?group_by=caller");
    usage = r.body;
    Json j = Json::Parse(r.body);
    for (size_t i = 0; i < j.Size("/items"); ++i) {
      const std::string item = "/items/" + std::to_string(i);
      if (j.String(item + "/caller") == "data-team") return j.Int(item + "/allowed") == allowed;
    }
    return false;
  });
  EXPECT_TRUE(counted) << "wanted " << allowed << " allowed: " << usage << "\n" << a->log();
  EXPECT_EQ(Metric(*a, "tollgate_ratelimit_fallbacks_total"), 0);
}

TEST_F(RedisClusterTest, AReshardOfTheBucketsSlotIsFollowedAndTheBucketStaysExact) {
  constexpr size_t kBurst = 40;
  const std::string config = ClusterConfig(
      "[]", R"([{"name": "data-own", "rate": "1/h", "burst": 40, "scope": "caller"}])");
  auto a = StartGateway(config);
  auto b = StartGateway(config);
  ASSERT_TRUE(a->started() && b->started());
  const std::vector<const GatewayProcess*> both = {a.get(), b.get()};
  std::vector<std::string> ids = {"first"};
  size_t allowed = 0, limited = 0;
  ASSERT_EQ(Get(*a, kDataKey, "first").status, 200);
  ++allowed;

  auto buckets = cluster_.Keys("*data-own*");
  ASSERT_EQ(buckets.size(), 1u) << cluster_.Describe();
  const std::string bucket = buckets.begin()->first;
  const int source = buckets.begin()->second;
  const int slot = cluster_.KeySlot(bucket);
  const int target = OtherNode(source);
  ASSERT_EQ(cluster_.SlotOwner(slot), source);

  RequestStream stream(both, kSelf, kDataKey, "flow-");
  ASSERT_TRUE(stream.WaitForMore(10));
  // The reshard, under the stream: while the slot migrates, the source answers ASK and the
  // importing node TRYAGAIN (the script's keys, the upstream's cooldown and the bucket, are not
  // all on one node); the limiter asks again within timeout_ms until the source answers MOVED.
  ASSERT_TRUE(cluster_.MoveSlot(slot, target));
  ASSERT_EQ(cluster_.Keys("*data-own*")[bucket], target) << "the bucket did not move";
  ASSERT_TRUE(stream.WaitForMore(20));
  stream.Stop();

  std::vector<StreamedCall> calls = stream.calls();
  for (const StreamedCall& c : calls) {
    EXPECT_TRUE(c.status == 200 || c.status == 429) << c.id << ": " << c.status << c.error;
    allowed += c.status == 200 ? 1 : 0;
    limited += c.status == 429 ? 1 : 0;
    ids.push_back(c.id);
  }
  // Then until the bucket must be empty: exactly kBurst were allowed in all.
  for (size_t i = 0; allowed + limited < kBurst + 10; ++i) {
    ids.push_back("drain-" + std::to_string(i));
    HttpResponse r = Get(*both[i % 2], kDataKey, ids.back());
    EXPECT_TRUE(r.status == 200 || r.status == 429) << ids.back() << ": " << r.status << r.body;
    allowed += r.status == 200 ? 1 : 0;
    limited += r.status == 429 ? 1 : 0;
  }
  EXPECT_EQ(allowed, kBurst);
  EXPECT_EQ(limited, ids.size() - kBurst);
  EXPECT_EQ(fake_.Stats().requests, static_cast<int64_t>(kBurst));

  std::map<std::string, Json> audit;
  ASSERT_TRUE(WaitForAudit(both, ids, &audit));
  EXPECT_EQ(DecidedWithoutRedis(ids, audit), "");
  // The old owner redirected at least one of the gateways.
  EXPECT_GE(Redirects(*a, "moved") + Redirects(*b, "moved"), 1)
      << Http("GET", a->admin_url() + "/metrics").body;
  EXPECT_EQ(cluster_.SlotOwner(slot), target);
}

// The Redis section is restart-only: a reload that switches from a url to a cluster is applied
// otherwise, says "redis" needs a restart, and the gateway keeps deciding on the running Redis
// with that mode's key names (no hash tags on a plain Redis, where a cluster's tags would rename
// every bucket and quota and start them afresh).
TEST_F(RedisClusterTest, AReloadIntoAClusterWaitsForARestartAndKeepsTheRunningKeyNames) {
  RedisServer plain;
  auto config = [&](bool cluster) {
    std::string text =
        ClusterConfig(R"([{"name": "devin-all", "rate": "100/s", "scope": "shared"}])");
    const std::string scopes = R"("scopes": ["keys", "usage", "read"])";
    text.replace(text.find(scopes), scopes.size(),
                 R"("scopes": ["keys", "usage", "read", "reload"])");
    if (!cluster) {
      const std::string section = R"("cluster": {"addresses": [${NODES}]})";
      text.replace(text.find(section), section.size(), R"("url": ")" + plain.url() + R"(")");
    }
    return text;
  };
  auto g = StartGateway(config(false));
  ASSERT_TRUE(g->started());
  ASSERT_EQ(Get(*g, kDataKey, "before").status, 200);
  auto before = RedisQuery(plain.port(), {"KEYS", "*devin-all*"});
  ASSERT_TRUE(before.has_value());
  ASSERT_EQ(before->Text(), "tollgate:v2:bucket:devin-all:_shared");

  g->WriteConfig(config(true));
  HttpResponse r = Admin(*g, "POST", "/reload");
  ASSERT_EQ(r.status, 200) << r.body;
  Json summary = Json::Parse(r.body);
  EXPECT_TRUE(summary.Bool("/reloaded")) << r.body;
  EXPECT_EQ(summary.String("/restart_required/0"), "redis") << r.body;

  ASSERT_EQ(Get(*g, kDataKey, "after").status, 200);
  auto after = RedisQuery(plain.port(), {"KEYS", "*"});
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->Text().find('{'), std::string::npos) << after->Text();
  std::map<std::string, Json> audit;
  ASSERT_TRUE(WaitForAudit({g.get()}, {"before", "after"}, &audit));
  EXPECT_EQ(DecidedWithoutRedis({"before", "after"}, audit), "");
}

}  // namespace
}  // namespace tollgate::testing
