// Slow or abandoned clients cannot pin connections: a request not wholly received within
// client_header_timeout_ms is answered 408 (and audited), an idle keep-alive connection is closed
// after client_idle_timeout_ms, and a request waiting on its upstream is never cut by either.
#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

class ClientTimeoutsTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig(R"(
  "client_header_timeout_ms": 300, "client_idle_timeout_ms": 600,)"));
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

TEST_F(ClientTimeoutsTest, ACallWaitingOnItsUpstreamIsNotTimedOut) {
  fake_.SetBehaviour("/v3beta1/enterprise/self", 1500);  // longer than both client timeouts
  HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self");
  EXPECT_EQ(r.status, 200);
}

}  // namespace
}  // namespace tollgate::testing
