// Hostile clients against the real gateway: a very long pipeline behind a slow call (once a
// stack overflow: each local reply dispatched the next request one level deeper), a flood of
// bytes while a request is answered (once buffered without bound), and a lower-case method.
#include <fcntl.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

// An upstream whose answers the test releases: a request whose path starts with /held waits
// until Release(), any other is answered at once (200, a small JSON body).
upstream::testing::Reply HeldUpstreamAnswer(const upstream::testing::ReceivedRequest& request) {
  upstream::testing::Reply reply;
  reply.raw = upstream::testing::HttpResponse(200, R"({"held":true})",
                                              "Content-Type: application/json\r\n");
  reply.gated = request.target.rfind("/held", 0) == 0;
  return reply;
}

class AbuseTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig());
  }

  // Restarts the gateway with devin, devo and devo-query on `upstream` instead of the fake, and
  // devin's timeout at a minute, so a held call is never cut by it.
  void RestartBefore(const upstream::testing::TestServer& upstream) {
    gateway_.reset();
    std::string config = StandardConfig();
    const std::string timeout = R"("timeout_ms": 10000,)";
    config.replace(config.find(timeout), timeout.size(), R"("timeout_ms": 60000,)");
    GatewayOptions options = StandardOptions(fake_, config);
    options.upstream = upstream.Url("");
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }

  void ExpectStillServing() {
    ASSERT_TRUE(gateway_->running()) << gateway_->log();
    EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  }
};

TEST_F(AbuseTest, AVeryLongPipelineIsAnsweredInOrderWithoutCrashing) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 200);
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string raw =
      "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\n\r\n";
  // Small requests, so that thousands fit under the in-flight input cap (header + body limit +
  // 64 KiB): all are answered by the loop that runs once the slow call is answered.
  const int n = 6000;
  for (int i = 0; i < n; ++i) raw += "GET /n HTTP/1.1\r\n\r\n";
  raw += "GET /n HTTP/1.1\r\nConnection: close\r\n\r\n";
  std::string answers;
  std::thread reader([&] { answers = ReadUntil(fd, "", 20000); });
  EXPECT_TRUE(SendAll(fd, raw));
  reader.join();
  close(fd);
  size_t count = 0;
  for (size_t pos = answers.find("HTTP/1.1 "); pos != std::string::npos;
       pos = answers.find("HTTP/1.1 ", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, static_cast<size_t>(n + 2));
  EXPECT_EQ(answers.rfind("HTTP/1.1 200", 0), 0u);  // the slow call's answer comes first
  ExpectStillServing();
}

long RssKiB(pid_t pid) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find("VmRSS:");
  return at == std::string::npos ? -1 : std::stol(status.substr(at + 6));
}

TEST_F(AbuseTest, AFloodWhileARequestIsAnsweredIsNotBuffered) {
  // The upstream holds the call until the whole flood was written, however long that takes.
  upstream::testing::TestServer upstream(HeldUpstreamAnswer);
  RestartBefore(upstream);
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string req =
      "GET /devin/held/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kDataKey + "\r\n\r\n";
  ASSERT_TRUE(SendAll(fd, req));
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000))) << gateway_->log();
  long before = RssKiB(gateway_->pid());
  // Junk while the call is in flight: the gateway stops reading past its buffer limit, so TCP
  // pushes back on the sender. Write without blocking until the socket stays full.
  int flags = fcntl(fd, F_GETFL, 0);
  ASSERT_EQ(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
  std::string junk(1 << 20, 'j');
  size_t accepted = 0;
  int stalls = 0;
  while (accepted < (size_t{256} << 20) && stalls < 20) {
    ssize_t n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    if (n > 0) {
      accepted += static_cast<size_t>(n);
      stalls = 0;
    } else {
      ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << strerror(errno);
      ++stalls;
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  ASSERT_EQ(fcntl(fd, F_SETFL, flags), 0);
  long after = RssKiB(gateway_->pid());
  // What the sender got rid of is the kernel's socket buffers plus the connection's one
  // buffer (headers + body limits): never 256 MiB.
  EXPECT_LT(accepted, size_t{48} << 20) << accepted;
  upstream.Release();
  // The call in flight is still answered; the junk after it is then refused (400) and the
  // connection closed.
  std::string answer = ReadUntil(fd, "", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer.substr(0, 200);
  EXPECT_NE(answer.find(R"({"held":true})"), std::string::npos) << answer.substr(0, 400);
  EXPECT_NE(answer.find("HTTP/1.1 4"), std::string::npos) << answer.substr(0, 600);
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_LT(after - before, 16 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
  ExpectStillServing();
}

// Past max_connections a new connection is closed on arrival without an answer and counted; the
// connections already open keep working, and closing one makes room for the next.
TEST_F(AbuseTest, ConnectionsPastMaxConnectionsAreClosedOnArrivalAndCounted) {
  gateway_.reset();
  StartGateway(StandardConfig(R"("max_connections": 2,)"));
  const int port = gateway_->listen_port();
  const std::string health = "GET /_tollgate/health HTTP/1.1\r\nHost: x\r\n\r\n";
  auto metric = [&](const std::string& series) {
    return MetricValue(Http("GET", gateway_->admin_url() + "/metrics").body, series).value_or(-1);
  };
  // The harness's own readiness probe may still hold a place until the gateway has seen it
  // close: wait for no connection to be open, so the two below are the only ones.
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       metric("tollgate_connections_open") != 0 && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(metric("tollgate_connections_open"), 0);
  // Two keep-alive connections, each answered once (so the gateway has registered both).
  int open[2];
  for (int& fd : open) {
    fd = ConnectLoopback(port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, health));
    EXPECT_EQ(StatusOf(ReadUntil(fd, R"({"status":"ok"})", 10000)), 200);
  }
  // The third is closed by the gateway without a byte (not merely left waiting).
  int third = ConnectLoopback(port);
  ASSERT_GE(third, 0);
  pollfd p{third, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "the connection over max_connections was left open";
  char c;
  EXPECT_LE(read(third, &c, 1), 0);
  close(third);
  EXPECT_EQ(metric("tollgate_connections_refused_total"), 1);
  // The open ones still work.
  ASSERT_TRUE(SendAll(open[1], health));
  EXPECT_EQ(StatusOf(ReadUntil(open[1], R"({"status":"ok"})", 10000)), 200);
  // Once one closes (and the gateway has seen it), a new connection is served.
  close(open[0]);
  bool one_open = false;
  for (int i = 0; i < 500 && !one_open; ++i) {
    one_open = metric("tollgate_connections_open") == 1;
    if (!one_open) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(one_open) << metric("tollgate_connections_open") << " connections open";
  int next = ConnectLoopback(port);
  ASSERT_GE(next, 0);
  ASSERT_TRUE(SendAll(next, health));
  EXPECT_EQ(StatusOf(ReadUntil(next, R"({"status":"ok"})", 10000)), 200);
  close(next);
  close(open[1]);
  EXPECT_EQ(metric("tollgate_connections_refused_total"), 1);
}

TEST_F(AbuseTest, LowerCaseMethodsAreRefused) {
  // "delete" is another method than DELETE (methods are case-sensitive): not implemented.
  std::string req =
      "delete /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(StatusOf(RawExchange(gateway_->listen_port(), req)), 501);
  EXPECT_TRUE(fake_.Requests().empty());
}

}  // namespace
}  // namespace tollgate::testing
