// Limits that wait instead of refusing (issue 14), end to end against a real redis-server: a
// burst past a 10/s bucket with wait_ms is served whole, each request after the token Redis
// reserved for it; no thread waits (another route answers meanwhile); past max_waiting, 429 at
// once; a caller that leaves while waiting is audited 499; two replicas on one Redis never give
// one token twice.
//
// Every timing assertion is a lower bound that follows from the reservation (the k-th token of
// a 10/s bucket cannot be forwarded before (k-1) * 100 ms after the first request was sent), or
// an order between two events; none is an upper bound a loaded machine could miss.
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSelf = "/devin/v3beta1/enterprise/self";
const std::string kOrganizations = "/devin/v3beta1/enterprise/organizations";

// `limit` applies to GET /v3beta1/enterprise/self only; every other Devin path has no limit.
std::string WaitConfig(const std::string& limit, const std::string& extra = "") {
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,)" +
         extra + R"(
  "audit": {"file": "${AUDIT}"},
  "redis": {"url": "${REDIS}", "timeout_ms": 2000, "on_error": "local"},
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 20000, "connect_timeout_ms": 5000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}}
  },
  "roles": {
    "batch": {"rules": [
      {"upstream": "devin", "path": "/v3beta1/enterprise/self", "limits": [)" +
         limit + R"(]},
      {"upstream": "devin", "path": "/**"}]}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["batch"]},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["batch"]}
  }
})";
}

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(20000)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

struct Timed {
  HttpResponse response;
  Clock::time_point done;
};

// Sends every request at once, one thread and connection each; answers in the order given,
// each with the moment it was complete.
std::vector<Timed> SendAll(const std::vector<HttpRequest>& requests,
                           milliseconds timeout = milliseconds(30000)) {
  std::vector<Timed> out(requests.size());
  std::vector<std::thread> threads;
  threads.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] {
      const HttpRequest& r = requests[i];
      out[i].response = Http(r.method, r.url, r.headers, r.body, timeout);
      out[i].done = Clock::now();
    });
  }
  for (auto& thread : threads) thread.join();
  return out;
}

std::vector<HttpRequest> Burst(const GatewayProcess& g, size_t count, const std::string& key,
                               const std::string& id_prefix) {
  std::vector<HttpRequest> requests(count);
  for (size_t i = 0; i < count; ++i) {
    requests[i].url = g.url() + kSelf;
    requests[i].headers = {{"Authorization", "Bearer " + key},
                           {"X-Request-Id", id_prefix + std::to_string(i)}};
  }
  return requests;
}

double Metric(const GatewayProcess& g, const std::string& series) {
  return MetricValue(Http("GET", g.admin_url() + "/metrics").body, series).value_or(-1);
}

// The k-th answer (k from 0, by completion) cannot come before the k-th reserved token:
// `start` + k * `spacing`, the first token being taken at once.
void ExpectNoAnswerBeforeItsToken(std::vector<Clock::time_point> done, Clock::time_point start,
                                  milliseconds spacing) {
  std::sort(done.begin(), done.end());
  for (size_t k = 0; k < done.size(); ++k) {
    // 2 ms: Redis's clock and ours are read at different instants, not at different rates.
    EXPECT_GE(done[k] - start, spacing * static_cast<int64_t>(k) - milliseconds(2))
        << "answer " << k << " came before its token";
  }
}

// An audit record's "ts" ("2026-12-02T01:02:03.456Z") in Unix milliseconds; -1 if malformed.
int64_t AuditTsMs(const std::string& ts) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(ts.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

// Redis's own TIME in microseconds, and the bucket's stored state.
std::optional<int64_t> RedisTimeUs(int port) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return std::nullopt;
  }
  auto* reply = static_cast<redisReply*>(redisCommand(c, "TIME"));
  std::optional<int64_t> out;
  if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
    out = std::stoll(reply->element[0]->str) * 1000000 + std::stoll(reply->element[1]->str);
  }
  if (reply) freeReplyObject(reply);
  redisFree(c);
  return out;
}

std::optional<std::pair<int64_t, int64_t>> BucketState(int port, const std::string& key) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return std::nullopt;
  }
  auto* reply = static_cast<redisReply*>(redisCommand(c, "GET %s", key.c_str()));
  std::optional<std::pair<int64_t, int64_t>> out;
  if (reply != nullptr && reply->type == REDIS_REPLY_STRING && reply->len == 16) {
    auto read = [&](size_t at) {
      uint64_t bits = 0;
      for (int i = 7; i >= 0; --i)
        bits = (bits << 8) | static_cast<unsigned char>(reply->str[at + i]);
      return static_cast<int64_t>(bits);
    };
    out = std::make_pair(read(0), read(8));
  }
  if (reply) freeReplyObject(reply);
  redisFree(c);
  return out;
}

class WaitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  std::unique_ptr<GatewayProcess> StartGateway(const std::string& limit,
                                               const std::string& extra = "") {
    GatewayOptions o = StandardOptions(fake_, WaitConfig(limit, extra));
    o.redis = redis_.url();
    auto g = std::make_unique<GatewayProcess>(o);
    EXPECT_TRUE(g->started()) << g->log();
    return g;
  }

  size_t UpstreamCallsTo(const std::string& path) {
    size_t n = 0;
    for (const auto& r : fake_.Requests()) n += r.path == path ? 1 : 0;
    return n;
  }

  FakeUpstream fake_;
  RedisServer redis_;
};

TEST_F(WaitTest, FiftyRequestsPastATenPerSecondBucketAllSucceedEachAfterItsToken) {
  auto g = StartGateway(
      R"({"name": "batch", "rate": "10/s", "burst": 1, "wait_ms": 5000, "scope": "shared"})");
  ASSERT_TRUE(g->started());
  const std::vector<HttpRequest> requests = Burst(*g, 50, kDataKey, "w-");

  // While 40 wait, a call on a route without a limit is answered: no thread is held by a wait.
  std::optional<Timed> fast;
  const Clock::time_point start = Clock::now();
  std::thread other([&] {
    if (!WaitUntil([&] { return Metric(*g, "tollgate_ratelimit_waiting") >= 40; })) return;
    Timed t;
    t.response = Http("GET", g->url() + kOrganizations, Bearer(kDataKey));
    t.done = Clock::now();
    fast = t;
  });
  const std::vector<Timed> answers = SendAll(requests);
  other.join();

  std::vector<Clock::time_point> done;
  for (const Timed& t : answers) {
    EXPECT_EQ(t.response.status, 200) << t.response.body << t.response.error;
    done.push_back(t.done);
  }
  EXPECT_EQ(UpstreamCallsTo("/v3beta1/enterprise/self"), 50u);
  ExpectNoAnswerBeforeItsToken(done, start, milliseconds(100));
  ASSERT_TRUE(fast.has_value()) << "40 requests never waited at once";
  EXPECT_EQ(fast->response.status, 200) << fast->response.body;
  EXPECT_LT(fast->done, *std::max_element(done.begin(), done.end()));

  // Each waited request's wait is in its audit record: the first took the burst at once, the
  // other 49 each waited for their own token, none longer than wait_ms.
  const std::vector<Json> lines = g->WaitForAuditLines(51);
  std::vector<double> waited;
  size_t without_wait = 0;
  for (const Json& line : lines) {
    if (line.String("/request_id").rfind("w-", 0) != 0) continue;
    EXPECT_EQ(line.Int("/status"), 200);
    EXPECT_EQ(line.String("/decision"), "allowed");
    EXPECT_FALSE(line.Has("/limiter_fallback"));
    if (const rapidjson::Value* w = line.Get("/waited_ms"); w != nullptr && w->IsNumber()) {
      waited.push_back(w->GetDouble());
    } else {
      ++without_wait;
    }
  }
  EXPECT_EQ(without_wait, 1u);
  ASSERT_EQ(waited.size(), 49u);
  for (double w : waited) {
    EXPECT_GT(w, 0);
    EXPECT_LE(w, 5000);
  }

  // Served in the order their tokens were reserved: the upstream received them in the order of
  // their token times (arrival + wait, from the audit records), and those are a token apart.
  // 40 ms of slack: a record's ts has millisecond resolution and a loaded machine forwards a
  // little late, but two tokens are 100 ms apart, so a swapped pair is still caught.
  std::map<std::string, double> token_ms;
  for (const Json& line : lines) {
    const std::string id = line.String("/request_id");
    if (id.rfind("w-", 0) != 0) continue;
    const int64_t ts = AuditTsMs(line.String("/ts"));
    ASSERT_GE(ts, 0) << line.String("/ts");
    const rapidjson::Value* w = line.Get("/waited_ms");
    token_ms[id] = static_cast<double>(ts) + (w != nullptr && w->IsNumber() ? w->GetDouble() : 0);
  }
  std::vector<double> received_order;
  for (const auto& r : fake_.Requests()) {
    if (r.path != "/v3beta1/enterprise/self") continue;
    auto it = token_ms.find(r.Header("x-request-id"));
    ASSERT_NE(it, token_ms.end()) << "forwarded without its id: " << r.Header("x-request-id");
    received_order.push_back(it->second);
  }
  ASSERT_EQ(received_order.size(), 50u);
  for (size_t k = 1; k < received_order.size(); ++k) {
    EXPECT_GE(received_order[k], received_order[k - 1] + 100 - 40)
        << "the upstream received request " << k << " out of its reserved order";
  }
  // The histogram counted every wait; nobody waits any more.
  EXPECT_EQ(Metric(*g, "tollgate_ratelimit_wait_seconds_count{bucket=\"batch\"}"), 49);
  EXPECT_EQ(Metric(*g, "tollgate_ratelimit_waiting"), 0);
}

TEST_F(WaitTest, PastMaxWaitingTheCallersRequestsAre429AtOnceAndTakeNothing) {
  // A token a second: a waiter is answered a second or more after the burst was sent.
  auto g = StartGateway(R"({"name": "batch", "rate": "1/s", "burst": 1, "wait_ms": 10000,
                            "max_waiting": 3, "scope": "shared"})");
  ASSERT_TRUE(g->started());
  const Clock::time_point start = Clock::now();
  const std::vector<Timed> answers = SendAll(Burst(*g, 20, kDataKey, "m-"));
  std::vector<Clock::time_point> served, refused;
  for (const Timed& t : answers) {
    if (t.response.status == 200) {
      served.push_back(t.done);
    } else {
      EXPECT_EQ(t.response.status, 429) << t.response.body << t.response.error;
      EXPECT_EQ(Json::Parse(t.response.body).String("/error/reason"), "rate_limited");
      EXPECT_FALSE(t.response.Header("retry-after").empty());
      refused.push_back(t.done);
    }
  }
  // One served at once, and at most max_waiting (3) waited: a place is taken before the limiter
  // is asked, so the one served at once may have held one for a moment.
  EXPECT_GE(served.size(), 3u);
  EXPECT_LE(served.size(), 4u);
  EXPECT_EQ(served.size() + refused.size(), 20u);
  ExpectNoAnswerBeforeItsToken(served, start, milliseconds(1000));
  // Refused at once: every 429 came before the first waiter's answer.
  std::sort(served.begin(), served.end());
  ASSERT_GE(served.size(), 2u);
  for (const auto& t : refused) EXPECT_LT(t, served[1]);
  // The refused took nothing (16 tokens more would put the next wait past 10 s): another
  // caller's request, past this caller's max_waiting, still gets the token after the waiters'.
  const HttpResponse ops = Http("GET", g->url() + kSelf,
                                {{"Authorization", "Bearer " + kOpsKey}, {"X-Request-Id", "ops"}},
                                "", milliseconds(20000));
  EXPECT_EQ(ops.status, 200) << ops.body;
  EXPECT_EQ(UpstreamCallsTo("/v3beta1/enterprise/self"), served.size() + 1);
}

TEST_F(WaitTest, ACallerThatLeavesWhileWaitingIsAudited499AndNeverForwarded) {
  auto g = StartGateway(
      R"({"name": "batch", "rate": "1/s", "burst": 1, "wait_ms": 10000, "scope": "shared"})");
  ASSERT_TRUE(g->started());
  const Clock::time_point start = Clock::now();
  ASSERT_EQ(Http("GET", g->url() + kSelf, Bearer(kDataKey)).status, 200);
  // The next token is a second away; the caller gives up after 200 ms.
  const HttpResponse gone = Http(
      "GET", g->url() + kSelf, {{"Authorization", "Bearer " + kDataKey}, {"X-Request-Id", "gone"}},
      "", milliseconds(200));
  EXPECT_EQ(gone.status, 0);
  std::optional<Json> record;
  ASSERT_TRUE(WaitUntil([&] {
    for (const Json& line : g->AuditLines()) {
      if (line.String("/request_id") == "gone") record = line;
    }
    return record.has_value();
  }));
  EXPECT_EQ(record->Int("/status"), 499);
  EXPECT_EQ(record->String("/ended_by"), "client_closed");
  EXPECT_EQ(record->String("/decision"), "allowed");
  EXPECT_TRUE(record->Has("/waited_ms"));
  EXPECT_EQ(Metric(*g, "tollgate_ratelimit_waiting"), 0);
  // Its token stays spent: as of its reservation the bucket is below zero (one token, less
  // what refilled between the two requests); nothing gave it back.
  const auto state = BucketState(redis_.port(), "tollgate:v2:bucket:batch:_shared");
  ASSERT_TRUE(state.has_value());
  EXPECT_LT(state->first, 0);
  EXPECT_GE(state->first, -1000000);
  // Past the moment its token was for, nothing was forwarded for it.
  std::this_thread::sleep_until(start + milliseconds(1500));
  EXPECT_EQ(UpstreamCallsTo("/v3beta1/enterprise/self"), 1u);
}

TEST_F(WaitTest, TwoReplicasOnOneRedisNeverGiveOneTokenTwice) {
  const std::string limit =
      R"({"name": "batch", "rate": "10/s", "burst": 1, "wait_ms": 5000, "scope": "shared"})";
  auto a = StartGateway(limit);
  auto b = StartGateway(limit);
  ASSERT_TRUE(a->started() && b->started());
  const std::optional<int64_t> before_us = RedisTimeUs(redis_.port());
  ASSERT_TRUE(before_us.has_value());
  const Clock::time_point start = Clock::now();
  std::vector<HttpRequest> requests = Burst(*a, 35, kDataKey, "a-");
  for (HttpRequest& r : Burst(*b, 35, kOpsKey, "b-")) requests.push_back(std::move(r));
  // The bucket's state as of its last reservation (the key expires once the bucket is full
  // again, soon after the last waiter is forwarded, so it is watched while the burst runs).
  std::atomic<bool> stop{false};
  std::optional<std::pair<int64_t, int64_t>> state;
  std::thread watcher([&] {
    while (!stop.load()) {
      auto now = BucketState(redis_.port(), "tollgate:v2:bucket:batch:_shared");
      if (now && (!state || now->second >= state->second)) state = now;
      std::this_thread::sleep_for(milliseconds(20));
    }
  });
  const std::vector<Timed> answers = SendAll(requests);
  stop.store(true);
  watcher.join();

  std::vector<Clock::time_point> served;
  for (const Timed& t : answers) {
    if (t.response.status == 200) {
      served.push_back(t.done);
    } else {
      EXPECT_EQ(t.response.status, 429) << t.response.body << t.response.error;
    }
  }
  // 5 s of wait covers 50 tokens after the burst's one: most are served, the rest refused.
  EXPECT_GE(served.size(), 51u);
  EXPECT_EQ(UpstreamCallsTo("/v3beta1/enterprise/self"), served.size());
  // Across both replicas, one token each, a tenth of a second apart.
  ExpectNoAnswerBeforeItsToken(served, start, milliseconds(100));
  // Exactness from Redis's own books: the bucket started full (1 token) at or after
  // `before_us` and gained 10 tokens a second up to its last stamp, so what it gave out is at
  // most 1 + the refill - the level left (below zero: tokens still reserved).
  ASSERT_TRUE(state.has_value());
  const auto [level, stamp] = *state;
  const int64_t unit = 1000000;  // one token of 10/s, in units
  const int64_t given = 1 * unit + (stamp - *before_us) * 10 - level;
  EXPECT_LE(static_cast<int64_t>(served.size()) * unit, given)
      << served.size() << " served, level " << level;
  for (const auto* g : {a.get(), b.get()}) {
    for (const Json& line : g->WaitForAuditLines(35)) {
      EXPECT_FALSE(line.Has("/limiter_fallback"));
    }
  }
}

// A drain serves a waiting request whose wait ends within drain_timeout_ms; past it, the ones
// still waiting are answered 503 shutting_down (audited `draining`) and never forwarded.
TEST_F(WaitTest, WaitersStillWaitingPastTheDrainTimeoutAre503ShuttingDown) {
  // Two tokens a minute: the two waiters are 30 s and 60 s away, far past the drain's 300 ms.
  auto g = StartGateway(
      R"({"name": "batch", "rate": "2/min", "burst": 1, "wait_ms": 60000, "scope": "shared"})",
      R"( "drain_timeout_ms": 300,)");
  ASSERT_TRUE(g->started());
  ASSERT_EQ(Http("GET", g->url() + kSelf, Bearer(kDataKey)).status, 200);
  std::vector<Timed> answers;
  std::thread callers([&] { answers = SendAll(Burst(*g, 2, kDataKey, "d-")); });
  const bool both_wait = WaitUntil([&] { return Metric(*g, "tollgate_ratelimit_waiting") == 2; });
  if (both_wait) g->Signal(SIGTERM);
  callers.join();
  ASSERT_TRUE(both_wait) << g->log();
  for (const Timed& t : answers) {
    EXPECT_EQ(t.response.status, 503) << t.response.body << t.response.error;
    EXPECT_EQ(Json::Parse(t.response.body).String("/error/reason"), "shutting_down");
  }
  const int status = g->Wait(milliseconds(20000));
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << g->log();
  size_t drained = 0;
  for (const Json& line : g->AuditLines()) {
    if (line.String("/request_id").rfind("d-", 0) != 0) continue;
    ++drained;
    EXPECT_EQ(line.Int("/status"), 503);
    EXPECT_EQ(line.String("/ended_by"), "draining");
    EXPECT_TRUE(line.Has("/waited_ms"));
  }
  EXPECT_EQ(drained, 2u);
  EXPECT_EQ(UpstreamCallsTo("/v3beta1/enterprise/self"), 1u);
}

}  // namespace
}  // namespace tollgate::testing
