// Slow or abandoned clients cannot pin connections: a request not wholly received within
// client_header_timeout_ms is answered 408 (and audited), an idle keep-alive connection is closed
// after client_idle_timeout_ms, and a request waiting on its upstream is never cut by either.
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

const std::string kTimeouts = R"(
  "client_header_timeout_ms": 300, "client_idle_timeout_ms": 600,)";

class ClientTimeoutsTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig(kTimeouts));
  }
};

TEST_F(ClientTimeoutsTest, AnUnfinishedRequestGets408AndIsAudited) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string partial = "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  ASSERT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  // The gateway answers by itself, then closes; no more bytes are needed from the client.
  std::string answer = ReadUntil(fd, "", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 408) << answer;
  EXPECT_NE(answer.find("\"reason\":\"request_timeout\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].Int("/status"), 408);
  EXPECT_EQ(lines[0].String("/decision"), "bad_request");
  EXPECT_TRUE(fake_.Requests().empty());
}

TEST_F(ClientTimeoutsTest, AnIdleKeepAliveConnectionIsClosed) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string req = "GET /_tollgate/health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string answer = ReadUntil(fd, "{\"status\":\"ok\"}", 5000);
  EXPECT_EQ(StatusOf(answer), 200);
  // Then silence: the gateway closes the connection (read returns end of file).
  char c;
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  EXPECT_EQ(read(fd, &c, 1), 0);
  close(fd);
}

// The call is held by an upstream the test releases, and two witness connections opened after
// the call started show that both client timeouts have fired meanwhile: an idle one is closed, an
// unfinished request gets its 408. The held call's connection, older than both, must survive.
TEST_F(ClientTimeoutsTest, ACallWaitingOnItsUpstreamIsNotTimedOut) {
  upstream::testing::TestServer upstream([](const upstream::testing::ReceivedRequest&) {
    upstream::testing::Reply reply;
    reply.raw = upstream::testing::HttpResponse(200, R"({"held":true})",
                                                "Content-Type: application/json\r\n");
    reply.gated = true;
    return reply;
  });
  GatewayOptions options = StandardOptions(fake_, StandardConfig(kTimeouts));
  options.upstream = upstream.Url("");
  gateway_ = std::make_unique<GatewayProcess>(options);
  ASSERT_TRUE(gateway_->started()) << gateway_->log();

  int held = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(held, 0);
  std::string req =
      "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: "
      "Bearer " +
      kDataKey + "\r\n\r\n";
  ASSERT_EQ(write(held, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  ASSERT_TRUE(upstream.WaitForRequests(1, milliseconds(10000))) << gateway_->log();

  int idle = ConnectLoopback(gateway_->listen_port());
  int unfinished = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(idle, 0);
  ASSERT_GE(unfinished, 0);
  std::string partial = "GET /_tollgate/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  ASSERT_EQ(write(unfinished, partial.data(), partial.size()),
            static_cast<ssize_t>(partial.size()));
  EXPECT_EQ(StatusOf(ReadUntil(unfinished, "", 10000)), 408);
  char c;
  pollfd p{idle, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  EXPECT_EQ(read(idle, &c, 1), 0);  // closed by the gateway
  close(idle);
  close(unfinished);

  upstream.Release();
  std::string answer = ReadUntil(held, R"({"held":true})", 10000);
  close(held);
  EXPECT_EQ(StatusOf(answer), 200) << answer;
  EXPECT_NE(answer.find(R"({"held":true})"), std::string::npos) << answer;
}

}  // namespace
}  // namespace tollgate::testing
