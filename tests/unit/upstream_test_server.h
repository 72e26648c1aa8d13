// A tiny HTTP/1.1 server for the upstream client's unit tests: raw sockets, one thread per
// connection, on a kernel-chosen loopback port. It records every request it parsed and answers
// with whatever bytes the test's handler returns; it can also hold a request unanswered (to
// provoke timeouts and shutdowns), gate answers until the test releases them, or hand the
// connection to the test's own writer (streamed answers: paced chunks, endless streams, a
// writer that sees the client stop reading or close).
// It also keeps every byte each connection sent (raw()), so a test can check exactly what reached
// the upstream, smuggled bytes included. Integration tests use it as "an upstream of the test's
// own" in front of which the real gateway runs.
// Thread-safe; the destructor stops and joins everything it started. Header-only: the tests
// include it directly (the unit-test glob takes *_test.cpp files only).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tollgate::upstream::testing {

struct ReceivedRequest {
  int connection = 0;  // 0 for the first accepted connection, 1 for the next, ...
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The values of every header named `name` (case-insensitive), in order.
  std::vector<std::string> Values(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : headers) {
      if (Lower(n) == Lower(name)) out.push_back(v);
    }
    return out;
  }
  static std::string Lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool Has(const std::string& name) const { return !Values(name).empty(); }
};

// The connection of one streamed answer, for the test's writer (on the server's thread).
class StreamConn {
 public:
  explicit StreamConn(int fd) : fd_(fd) {}

  // Sends all of `bytes`, blocking while the peer does not read. False once the peer is gone.
  bool Write(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Sends from `bytes` at `*offset` on without blocking; true when the peer stopped taking
  // bytes (no room for `stall`: the client holds the stream), false when everything went out
  // or the peer is gone. `*offset` says how far it got.
  bool WriteUntilStalled(const std::string& bytes, size_t* offset,
                         std::chrono::milliseconds stall) {
    while (*offset < bytes.size()) {
      ssize_t n =
          send(fd_, bytes.data() + *offset, bytes.size() - *offset, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        *offset += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLOUT, 0};
        if (poll(&p, 1, static_cast<int>(stall.count())) == 0) return true;
        continue;
      }
      return false;
    }
    return false;
  }

  // True once the peer closed (or reset) the connection; false after `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char chunk[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN | POLLRDHUP, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      ssize_t n = recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    }
    return false;
  }

  int fd() const { return fd_; }

 private:
  int fd_;
};

struct Reply {
  Reply(std::string raw_bytes = "", bool hold_it = false, bool gated_it = false)  // NOLINT
      : raw(std::move(raw_bytes)), hold(hold_it), gated(gated_it) {}

  std::string raw;     // written back verbatim
  bool hold = false;   // never answer; keep the connection until the peer or the server closes
  bool gated = false;  // answer only once Release() was called
  // Writes the answer itself (after `raw`); the server then reads the next request, if any.
  std::function<void(StreamConn&)> stream;
};

// "HTTP/1.1 <status> X\r\nContent-Length: <n>\r\n<extra_headers>\r\n<body>".
inline std::string HttpResponse(int status, const std::string& body,
                                const std::string& extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" +
         body;
}

class TestServer {
 public:
  using Handler = std::function<Reply(const ReceivedRequest&)>;

  explicit TestServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;  // the kernel picks a free port: no race with other test binaries
    socklen_t len = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 512) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    accept_thread_.join();
    // No new connection threads after the accept loop ended, so threads_ is stable now.
    for (std::thread& t : threads_) t.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string Url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(port_) + target;
  }
  int accepted() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }
  std::vector<ReceivedRequest> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  // Every byte connection `connection` (0 = the first accepted) sent, as received.
  std::string raw(int connection) {
    std::lock_guard<std::mutex> lock(mu_);
    return connection >= 0 && static_cast<size_t>(connection) < raw_.size() ? raw_[connection]
                                                                            : std::string();
  }
  // Every byte every connection sent, in connection order.
  std::string raw_all() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& r : raw_) out += r;
    return out;
  }
  // True once at least `count` requests were received; false after `timeout`.
  bool WaitForRequests(size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return received_.size() >= count; });
  }
  // From now on, each request is answered as soon as its head arrived (the handler sees an empty
  // body); its body is read after the answer was written, as an upstream that answers early
  // would. received() then holds the request with its body.
  void AnswerBeforeBody() {
    std::lock_guard<std::mutex> lock(mu_);
    answer_before_body_ = true;
  }
  // Answers every gated request, now and from now on.
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  void AcceptLoop() {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        close(fd);
        return;
      }
      int connection = accepted_++;
      raw_.emplace_back();
      fds_.push_back(fd);
      threads_.emplace_back([this, fd, connection] { Serve(fd, connection); });
    }
  }

  void Serve(int fd, int connection) {
    std::string buffer;
    ReceivedRequest request;
    for (;;) {
      bool early;
      {
        std::lock_guard<std::mutex> lock(mu_);
        early = answer_before_body_;
      }
      Framing framing;
      if (!ReadHead(fd, connection, &buffer, &request, &framing)) return;
      request.connection = connection;
      if (early) {
        Reply reply = handler_(request);
        if (!StreamConn(fd).Write(reply.raw)) return;
        bool whole = ReadBody(fd, connection, &buffer, &request, framing);
        {
          std::lock_guard<std::mutex> lock(mu_);
          received_.push_back(request);
        }
        cv_.notify_all();
        if (!whole) return;
        continue;
      }
      if (!ReadBody(fd, connection, &buffer, &request, framing)) return;
      Reply reply = handler_(request);
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(request);
      }
      cv_.notify_all();
      if (reply.hold) {
        HoldUntilClosed(fd, connection);
        return;
      }
      if (reply.gated) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return released_ || stopping_; });
      }
      StreamConn conn(fd);
      if (!conn.Write(reply.raw)) return;
      if (reply.stream) reply.stream(conn);
    }
  }

  struct Framing {
    size_t content_length = 0;
    bool chunked = false;
  };

  // Reads one request head.
  bool ReadHead(int fd, int connection, std::string* buffer, ReceivedRequest* out,
                Framing* framing) {
    size_t end;
    while ((end = buffer->find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore(fd, connection, buffer)) return false;
    }
    std::string head = buffer->substr(0, end + 2);
    buffer->erase(0, end + 4);
    *out = ReceivedRequest();
    size_t line_end = head.find("\r\n");
    std::string line = head.substr(0, line_end);
    size_t sp1 = line.find(' ');
    size_t sp2 = line.rfind(' ');
    out->method = line.substr(0, sp1);
    out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t& content_length = framing->content_length;
    bool& chunked = framing->chunked;
    content_length = 0;
    chunked = false;
    for (size_t pos = line_end + 2; pos < head.size();) {
      size_t next = head.find("\r\n", pos);
      std::string field = head.substr(pos, next - pos);
      pos = next + 2;
      size_t colon = field.find(':');
      std::string name = field.substr(0, colon);
      size_t start = field.find_first_not_of(" \t", colon + 1);
      std::string value = start == std::string::npos ? "" : field.substr(start);
      if (ReceivedRequest::Lower(name) == "content-length") {
        content_length = std::strtoul(value.c_str(), nullptr, 10);
      }
      if (ReceivedRequest::Lower(name) == "transfer-encoding" &&
          ReceivedRequest::Lower(value) == "chunked") {
        chunked = true;
      }
      out->headers.emplace_back(name, value);
    }
    return true;
  }

  // Reads the body the head announced: a Content-Length body, or a chunked one (decoded into
  // `body`). A partial body read before the peer closed is kept.
  bool ReadBody(int fd, int connection, std::string* buffer, ReceivedRequest* out,
                const Framing& framing) {
    const size_t content_length = framing.content_length;
    if (framing.chunked) {
      while (true) {
        size_t line;
        while ((line = buffer->find("\r\n")) == std::string::npos) {
          if (!ReadMore(fd, connection, buffer)) return false;
        }
        size_t size = std::strtoul(buffer->substr(0, line).c_str(), nullptr, 16);
        while (buffer->size() < line + 2 + size + 2) {
          if (!ReadMore(fd, connection, buffer)) return false;
        }
        out->body += buffer->substr(line + 2, size);
        buffer->erase(0, line + 2 + size + 2);  // no trailers: libcurl sends none
        if (size == 0) return true;
      }
    }
    while (buffer->size() < content_length) {
      if (!ReadMore(fd, connection, buffer)) {
        out->body = *buffer;
        return false;
      }
    }
    out->body = buffer->substr(0, content_length);
    buffer->erase(0, content_length);
    return true;
  }

  bool ReadMore(int fd, int connection, std::string* buffer) {
    char chunk[16384];
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
    std::lock_guard<std::mutex> lock(mu_);
    raw_[connection].append(chunk, static_cast<size_t>(n));
    return true;
  }

  void HoldUntilClosed(int fd, int connection) {
    char chunk[4096];
    ssize_t n;
    while ((n = recv(fd, chunk, sizeof(chunk), 0)) > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      raw_[connection].append(chunk, static_cast<size_t>(n));
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread accept_thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool released_ = false;
  bool answer_before_body_ = false;
  int accepted_ = 0;
  std::vector<ReceivedRequest> received_;
  std::vector<std::string> raw_;  // by connection
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

}  // namespace tollgate::upstream::testing
