// Request bodies stream to bearer/header upstreams as they arrive (issue 9): the upstream gets
// the head and the first part of a body while the caller is still sending the rest, the gateway
// holds no more than a bounded part of it, and a body that breaks off mid-way is never passed on
// as whole. The upstream here is a raw socket server in the test, so what it received is seen
// byte by byte.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;

// Accepts one connection and reads one request, recording as it goes: the head, how many body
// bytes (de-chunked) came so far, and whether the body ended as framed. Answers 200 with the
// body's length once it is complete.
class RecordingUpstream {
 public:
  RecordingUpstream() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 16);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingUpstream() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool head_seen() const { return head_seen_; }
  size_t body_bytes() const { return body_bytes_; }
  bool complete() const { return complete_; }
  bool closed() const { return closed_; }
  std::string head() const {
    std::lock_guard<std::mutex> lock(mu_);
    return head_;
  }
  bool WaitFor(const std::function<bool()>& done, milliseconds timeout = milliseconds(10000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return true;
  }

 private:
  void Serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    while (!stop_ && poll(&p, 1, 100) == 0) {
    }
    if (stop_) return;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    std::string buf;
    char chunk[65536];
    auto more = [&]() {
      pollfd q{fd, POLLIN, 0};
      while (poll(&q, 1, 100) == 0) {
        if (stop_) return false;
      }
      ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buf.append(chunk, static_cast<size_t>(n));
      return true;
    };
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!more()) return Closed(fd);
    }
    std::string head = buf.substr(0, end + 4);
    buf.erase(0, end + 4);
    {
      std::lock_guard<std::mutex> lock(mu_);
      head_ = head;
    }
    head_seen_ = true;
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
    size_t cl_at = lower.find("content-length: ");
    size_t length = cl_at == std::string::npos ? 0 : std::stoull(lower.substr(cl_at + 16));
    if (!chunked) {
      for (;;) {
        size_t take = std::min(buf.size(), length - body_bytes_);
        body_bytes_ += take;
        buf.erase(0, take);
        if (body_bytes_ == length) break;
        if (!more()) return Closed(fd);
      }
    } else {
      for (;;) {
        size_t eol;
        while ((eol = buf.find("\r\n")) == std::string::npos) {
          if (!more()) return Closed(fd);
        }
        size_t size = std::stoull(buf.substr(0, eol), nullptr, 16);
        buf.erase(0, eol + 2);
        if (size == 0) {
          while (buf.find("\r\n") == std::string::npos) {
            if (!more()) return Closed(fd);
          }
          break;
        }
        while (buf.size() < size + 2) {
          body_bytes_ += 0;
          if (!more()) return Closed(fd);
        }
        body_bytes_ += size;
        buf.erase(0, size + 2);
      }
    }
    complete_ = true;
    std::string body = "{\"received\":" + std::to_string(body_bytes_.load()) + "}";
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body);
    // Held open (the gateway may keep it for reuse) until the test ends.
    char drain[4096];
    for (;;) {
      pollfd q{fd, POLLIN, 0};
      int ready = poll(&q, 1, 100);
      if (stop_) break;
      if (ready > 0 && recv(fd, drain, sizeof drain, 0) <= 0) break;
    }
    close(fd);
  }
  void Closed(int fd) {
    closed_ = true;
    close(fd);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> head_seen_{false};
  std::atomic<size_t> body_bytes_{0};
  std::atomic<bool> complete_{false};
  std::atomic<bool> closed_{false};
  mutable std::mutex mu_;
  std::string head_;
};

class UploadTest : public GatewayTest {
 protected:
  void Start(const RecordingUpstream& upstream, const std::string& max_body_bytes) {
    std::string config = StandardConfig();
    const std::string standard = R"("max_body_bytes": 65536,)";
    config.replace(config.find(standard), standard.size(),
                   R"("max_body_bytes": )" + max_body_bytes + ",");
    GatewayOptions options = StandardOptions(fake_, config);
    options.upstream = upstream.url();
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }
  static std::string Head(const std::string& framing) {
    return "POST /devin/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kDataKey +
           "\r\nContent-Type: application/octet-stream\r\n" + framing + "\r\n";
  }
};

// The upstream has the head and the first megabyte while the caller still holds the rest: the
// body was not collected first. Then the rest passes and the upstream gets it all, with the
// caller's Content-Length and the real secret in place of the caller's key.
TEST_F(UploadTest, ABodyStreamsToTheUpstreamWhileTheCallerIsStillSending) {
  RecordingUpstream upstream;
  Start(upstream, "67108864");
  const size_t total = size_t{8} << 20;
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Head("Content-Length: " + std::to_string(total) + "\r\n")));
  ASSERT_TRUE(SendAll(fd, std::string(size_t{1} << 20, 'a')));
  ASSERT_TRUE(upstream.WaitFor([&] { return upstream.body_bytes() >= (size_t{1} << 20); }))
      << "the upstream saw " << upstream.body_bytes() << " bytes while the caller waits\n"
      << gateway_->log();
  EXPECT_FALSE(upstream.complete());
  std::string head = upstream.head();
  EXPECT_NE(head.find("Content-Length: " + std::to_string(total)), std::string::npos) << head;
  EXPECT_NE(head.find("Bearer fake-devin-token"), std::string::npos) << head;
  EXPECT_EQ(head.find(kDataKey), std::string::npos) << head;
  ASSERT_TRUE(SendAll(fd, std::string(total - (size_t{1} << 20), 'b')));
  std::string answer = ReadUntil(fd, "}", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer.substr(0, 300);
  EXPECT_NE(answer.find("{\"received\":" + std::to_string(total) + "}"), std::string::npos)
      << answer.substr(0, 300);
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].Int("/bytes_in"), static_cast<int64_t>(total));
}

// A chunked body (no length) is passed on chunked, whole.
TEST_F(UploadTest, AChunkedBodyStreamsChunked) {
  RecordingUpstream upstream;
  Start(upstream, "67108864");
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Head("Transfer-Encoding: chunked\r\n")));
  std::string piece(300000, 'c');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(SendAll(fd, size_line + piece + "\r\n"));
  ASSERT_TRUE(upstream.WaitFor([&] { return upstream.body_bytes() >= 600000; }))
      << upstream.body_bytes();
  EXPECT_FALSE(upstream.complete());
  EXPECT_NE(upstream.head().find("Transfer-Encoding: chunked"), std::string::npos)
      << upstream.head();
  ASSERT_TRUE(SendAll(fd, "0\r\n\r\n"));
  std::string answer = ReadUntil(fd, "}", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer.substr(0, 300);
  EXPECT_NE(answer.find("{\"received\":1200000}"), std::string::npos) << answer.substr(0, 300);
}

// A chunked body that grows past max_body_bytes mid-way: the caller gets 413 and the upstream
// never gets a complete request (its connection is dropped mid-body).
TEST_F(UploadTest, ABodyOverTheLimitMidStreamIsRefusedAndNeverCompletesUpstream) {
  RecordingUpstream upstream;
  Start(upstream, "1048576");
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Head("Transfer-Encoding: chunked\r\n")));
  std::string piece(400000, 'd');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
  ASSERT_TRUE(SendAll(fd, size_line + piece + "\r\n"));
  ASSERT_TRUE(upstream.WaitFor([&] { return upstream.head_seen(); })) << gateway_->log();
  // Two more pieces: 1.2 MB announced in all, over the 1 MiB limit.
  SendAll(fd, size_line + piece + "\r\n" + size_line + piece + "\r\n");
  std::string answer = ReadUntil(fd, "}", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 413) << answer.substr(0, 300);
  ASSERT_TRUE(upstream.WaitFor([&] { return upstream.closed(); }))
      << "the upstream connection was not dropped";
  EXPECT_FALSE(upstream.complete());
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u) << ReadFile(gateway_->audit_path());
  EXPECT_EQ(lines[0].Int("/status"), 413) << gateway_->log();
  EXPECT_EQ(lines[0].String("/decision"), "bad_request");
}

}  // namespace
}  // namespace tollgate::testing

namespace tollgate::testing {
namespace {

// An answer given before the caller finished sending its body (here: a wrong key) reaches the
// caller whole: the gateway shuts its sending side and drops what still arrives instead of
// resetting the connection, which could destroy the answer before the caller reads it.
TEST_F(UploadTest, AnEarlyAnswerToAnUploadReachesTheCallerWhole) {
  RecordingUpstream upstream;
  Start(upstream, "67108864");
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  std::string head =
      "POST /devin/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-key\r\n"
      "Content-Length: 33554432\r\n\r\n";
  ASSERT_TRUE(SendAll(fd, head));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::string piece(65536, 'e');
    for (int i = 0; i < 512 && !stop; ++i) {
      if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) <= 0) break;
    }
  });
  std::string answer = ReadUntil(fd, "}}", 10000);
  stop = true;
  writer.join();
  // The gateway still takes (and drops) what the caller sends after the answer, for a while:
  // a reset here is what could have destroyed the answer on its way.
  std::string piece(65536, 'f');
  size_t sent_after = 0;
  for (int i = 0; i < 16; ++i) {
    ssize_t n = ::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent_after += static_cast<size_t>(n);
  }
  EXPECT_EQ(sent_after, size_t{16} * 65536) << "the connection was reset after the answer";
  close(fd);
  EXPECT_EQ(StatusOf(answer), 401) << answer.substr(0, 300);
  EXPECT_NE(answer.find("\"reason\":\"unauthenticated\""), std::string::npos)
      << answer.substr(0, 400);
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer.substr(0, 400);
  EXPECT_FALSE(upstream.head_seen());
}

}  // namespace
}  // namespace tollgate::testing
