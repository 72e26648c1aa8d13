// A stalled audit sink, through the real binary: the audit file is a FIFO whose read end the test
// holds open without reading, and whose pipe buffer the test fills before the gateway starts, so
// the gateway's audit writer blocks on its first write and stays blocked until the test reads.
// Then the bounded audit queue (queue_capacity 4) fills, and:
//   - new calls are refused at once with 503 `audit_unavailable` (Retry-After: 1) and never reach
//     the upstream, and the refusals are counted in tollgate_audit_refused_total;
//   - /healthz, /metrics and /_tollgate/health keep answering, /readyz turns 503 ("audit": false);
//   - a call admitted before the queue filled (held at the fake upstream meanwhile) completes
//     with 200: the request path never waits for the audit sink;
// and once the test reads the FIFO, calls are admitted again and every admitted call has exactly
// one audit line (no refused one has any).
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.h"

namespace tollgate::testing {
namespace {

constexpr int kCapacity = 4;
const std::string kFillerLine = "# filler: the test put this in the pipe to stall the writer\n";

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout = milliseconds(30000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

class AuditBackpressureTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    fifo_ = dir_.path() + "/audit.fifo";
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0) << std::strerror(errno);
    // The read end first (so the gateway's writer can open the FIFO), never read until Drain().
    read_fd_ = open(fifo_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(read_fd_, 0) << std::strerror(errno);
    // Fill the pipe buffer: the gateway's first audit write blocks.
    const int fill = open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(fill, 0) << std::strerror(errno);
    while (write(fill, kFillerLine.data(), kFillerLine.size()) ==
           static_cast<ssize_t>(kFillerLine.size())) {
    }
    EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
    close(fill);

    std::string config = StandardConfig();
    const std::string audit = R"("audit": {"file": "${AUDIT}"})";
    const size_t at = config.find(audit);
    ASSERT_NE(at, std::string::npos);
    config.replace(
        at, audit.size(),
        R"("audit": {"file": "${FIFO}", "queue_capacity": )" + std::to_string(kCapacity) + "}");
    GatewayOptions options = StandardOptions(fake_, config);
    options.vars["FIFO"] = fifo_;
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }

  void TearDown() override {
    stop_reading_ = true;
    if (reader_.joinable()) reader_.join();
    // Closing the read end ends a writer still blocked (EPIPE), so the gateway can stop.
    if (read_fd_ >= 0) close(read_fd_);
    read_fd_ = -1;
  }

  // Starts reading the FIFO (until the gateway closes it, or TearDown).
  void Drain() {
    reader_ = std::thread([this] {
      char buf[65536];
      while (!stop_reading_) {
        pollfd p{read_fd_, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        const ssize_t n = read(read_fd_, buf, sizeof buf);
        if (n > 0) {
          std::lock_guard<std::mutex> lock(mu_);
          read_.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          break;  // EOF: the gateway closed its end
        }
      }
    });
  }

  // The audit records read so far (the test's filler lines skipped), by request id.
  std::map<std::string, std::vector<Json>> RecordsById() {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, std::vector<Json>> out;
    size_t start = 0;
    for (size_t nl = read_.find('\n'); nl != std::string::npos; nl = read_.find('\n', start)) {
      const std::string line = read_.substr(start, nl - start);
      start = nl + 1;
      if (line.rfind("# filler", 0) == 0) continue;
      Json j = Json::Parse(line);
      EXPECT_TRUE(j.ok()) << line;
      out[j.String("/request_id")].push_back(j);
    }
    return out;
  }

  HttpResponse CallWithId(const std::string& path, const std::string& id,
                          milliseconds timeout = milliseconds(10000)) {
    return Http("GET", gateway_->url() + path,
                {{"Authorization", "Bearer " + kDataKey}, {"X-Request-Id", id}}, "", timeout);
  }

  HttpResponse Admin(const std::string& path) { return Http("GET", gateway_->admin_url() + path); }

  static void ExpectAuditUnavailable(const HttpResponse& r, const std::string& id) {
    EXPECT_EQ(r.status, 503) << r.body;
    Json j = Json::Parse(r.body);
    EXPECT_EQ(j.Int("/error/code"), 503) << r.body;
    EXPECT_EQ(j.String("/error/reason"), "audit_unavailable") << r.body;
    EXPECT_EQ(j.String("/error/request_id"), id) << r.body;
    EXPECT_EQ(r.Header("retry-after"), "1");
    EXPECT_EQ(r.Header("x-request-id"), id);
  }

  std::string fifo_;
  TempDir dir_;
  int read_fd_ = -1;
  std::thread reader_;
  std::atomic<bool> stop_reading_{false};
  std::mutex mu_;
  std::string read_;
};

TEST_F(AuditBackpressureTest, AStalledSinkRefusesNewCallsWhileHealthAndAdmittedCallsCarryOn) {
  // A call admitted while the queue has room, held at the upstream: it keeps its audit place.
  FakeBehaviour hold;
  hold.prefix = "/v3beta1/enterprise/self";
  hold.hold = true;
  fake_.SetBehaviour(hold);
  HttpResponse held;
  std::thread held_call([&] {
    held = CallWithId("/devin/v3beta1/enterprise/self", "held-call", milliseconds(120000));
  });
  struct JoinOnExit {  // a failed ASSERT must not leave the thread joinable
    std::thread& thread;
    const FakeUpstream& fake;
    ~JoinOnExit() {
      if (thread.joinable()) {
        fake.Release();
        thread.join();
      }
    }
  } join_on_exit{held_call, fake_};
  ASSERT_EQ(fake_.WaitForRequests(1).size(), 1u);

  // Calls that end at the gateway (404) take the other places: their records cannot be written,
  // so exactly kCapacity - 1 are admitted and the next one is refused.
  std::vector<std::string> admitted = {"held-call"};
  std::vector<std::string> refused;
  for (int i = 0; i < 100 && refused.empty(); ++i) {
    const std::string id = "fill-" + std::to_string(i);
    HttpResponse r = CallWithId("/no-such-upstream/x", id);
    if (r.status == 404) {
      admitted.push_back(id);
    } else {
      ExpectAuditUnavailable(r, id);
      refused.push_back(id);
    }
  }
  ASSERT_EQ(refused.size(), 1u) << "the queue never filled";
  EXPECT_EQ(admitted.size(), static_cast<size_t>(kCapacity))
      << "places: the call in flight plus the records the writer could not write";

  // A call for the upstream is refused too, and never forwarded.
  HttpResponse blocked = CallWithId("/devin/v3beta1/enterprise/organizations", "refused-forward");
  ExpectAuditUnavailable(blocked, "refused-forward");
  refused.push_back("refused-forward");
  EXPECT_EQ(fake_.Requests().size(), 1u) << "a refused call reached the upstream";

  // Liveness keeps answering; readiness says why traffic should go elsewhere.
  EXPECT_EQ(Admin("/healthz").status, 200);
  HttpResponse health = Http("GET", gateway_->url() + "/_tollgate/health");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(Json::Parse(health.body).String("/status"), "ok") << health.body;
  HttpResponse ready = Admin("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_FALSE(Json::Parse(ready.body).Bool("/ready", true)) << ready.body;
  EXPECT_FALSE(Json::Parse(ready.body).Bool("/audit", true)) << ready.body;
  HttpResponse metrics = Admin("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(MetricValue(metrics.body, "tollgate_audit_refused_total").value_or(-1), 2)
      << metrics.body;
  EXPECT_EQ(MetricValue(metrics.body, "tollgate_audit_slots_used").value_or(-1), kCapacity)
      << metrics.body;

  // The admitted call completes: its record goes into the place it reserved, without waiting.
  EXPECT_EQ(fake_.Release(), 1);
  held_call.join();
  EXPECT_EQ(held.status, 200) << held.error << held.body;
  EXPECT_EQ(held.Header("x-request-id"), "held-call");

  // The sink moves again: places come back, and calls are admitted (and forwarded) again.
  Drain();
  EXPECT_TRUE(WaitUntil([&] { return Admin("/readyz").status == 200; })) << Admin("/readyz").body;
  HttpResponse after = CallWithId("/devin/v3beta1/enterprise/organizations", "after-drain");
  EXPECT_EQ(after.status, 200) << after.body;
  admitted.push_back("after-drain");
  EXPECT_EQ(fake_.Requests().size(), 2u);
  EXPECT_EQ(MetricValue(Admin("/metrics").body, "tollgate_audit_refused_total").value_or(-1), 2);

  // Every admitted call has exactly one audit line, with its outcome; no refused call has one.
  const int status = gateway_->Stop();  // flushes the audit log and closes the FIFO
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << gateway_->log();
  reader_.join();
  const auto records = RecordsById();
  for (const std::string& id : admitted) {
    const auto it = records.find(id);
    ASSERT_NE(it, records.end()) << "no audit line for admitted call " << id;
    EXPECT_EQ(it->second.size(), 1u) << id;
  }
  for (const std::string& id : refused) EXPECT_EQ(records.count(id), 0u) << id;
  EXPECT_EQ(records.size(), admitted.size());
  const Json& held_line = records.at("held-call").front();
  EXPECT_EQ(held_line.Int("/status"), 200);
  EXPECT_EQ(held_line.String("/decision"), "allowed");
  EXPECT_EQ(held_line.Int("/upstream_status"), 200);
  EXPECT_EQ(records.at("fill-0").front().Int("/status"), 404);
  EXPECT_EQ(records.at("after-drain").front().Int("/status"), 200);
}

}  // namespace
}  // namespace tollgate::testing
