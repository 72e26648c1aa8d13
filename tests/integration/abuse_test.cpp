// Hostile clients against the real gateway: a very long pipeline behind a slow call (once a
// stack overflow: each local reply dispatched the next request one level deeper), a flood of
// bytes while a request is answered (once buffered without bound), and a lower-case method.
#include <sys/socket.h>

#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

class AbuseTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig());
  }

  void ExpectStillServing() {
    ASSERT_TRUE(gateway_->running()) << gateway_->log();
    EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  }
};

bool WriteAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

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
  EXPECT_TRUE(WriteAll(fd, raw));
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
  // The fake holds the call until the flood is written, however long that takes here (the
  // gateway's 10 s upstream timeout is the only bound, far above a 64 MiB loopback write).
  FakeBehaviour held;
  held.prefix = "/v3beta1/enterprise/self";
  held.hold = true;
  held.times = 1;
  fake_.SetBehaviour(held);
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string req =
      "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\n\r\n";
  ASSERT_TRUE(WriteAll(fd, req));
  ASSERT_EQ(fake_.WaitForRequests(1).size(), 1u);
  long before = RssKiB(gateway_->pid());
  // 64 MiB of junk while the call is in flight: read and dropped beyond the cap.
  std::string junk(1 << 20, 'j');
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(WriteAll(fd, junk)) << i;
  long after = RssKiB(gateway_->pid());
  EXPECT_EQ(fake_.Stats().in_flight, 1);  // the flood landed while the call was in flight
  ASSERT_EQ(fake_.Release(), 1);
  // The call in flight is still answered, and then the connection is closed.
  std::string answer = ReadUntil(fd, "", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer.substr(0, 200);
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  EXPECT_LT(after - before, 16 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
  ExpectStillServing();
}

TEST_F(AbuseTest, LowerCaseMethodsAreRefused) {
  std::string req =
      "delete /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
      kDataKey + "\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(StatusOf(RawExchange(gateway_->listen_port(), req)), 400);
  EXPECT_TRUE(fake_.Requests().empty());
}

}  // namespace
}  // namespace tollgate::testing
