// Stand-ins for a Redis node that a real redis-server cannot play on cue: a node that answers
// every command with the same canned reply, after a delay (a MOVED that arrives late, a CLUSTER
// SLOTS naming hosts by name or "?"), and a node that accepts connections and never answers (a
// stalled primary). Loopback, free ports; threads stopped by the destructors.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tollgate::testing {

// A listening loopback socket on a free port (0 when that failed).
inline int ListenLoopback(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, 64) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    if (fd >= 0) close(fd);
    *port = 0;
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// Accepts (the kernel's backlog does) and never reads nor answers.
class SilentRedis {
 public:
  SilentRedis() : fd_(ListenLoopback(&port_)) {}
  ~SilentRedis() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int port_ = 0;
  int fd_;
};

// Answers each chunk it reads (one command: the clients here send one at a time) with `reply`
// (raw RESP), `delay` after reading it; after `answers` chunks (-1: no limit) it stalls.
class CannedRedis {
 public:
  CannedRedis(std::string reply, std::chrono::milliseconds delay = std::chrono::milliseconds(0),
              int answers = -1)
      : reply_(std::move(reply)), delay_(delay), answers_(answers), fd_(ListenLoopback(&port_)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~CannedRedis() {
    stop_ = true;
    thread_.join();
    for (int fd : clients_) {
      if (fd >= 0) close(fd);
    }
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  void Run() {
    while (!stop_) {
      std::vector<pollfd> fds = {{fd_, POLLIN, 0}};
      for (int fd : clients_) fds.push_back({fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), 20) <= 0) continue;
      if ((fds[0].revents & POLLIN) != 0) clients_.push_back(accept(fd_, nullptr, nullptr));
      for (size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
        char buffer[65536];
        if (read(fds[i].fd, buffer, sizeof buffer) <= 0) {
          close(fds[i].fd);
          clients_[i - 1] = -1;  // poll ignores it from now on
          continue;
        }
        if (answers_ == 0) continue;
        if (answers_ > 0) --answers_;
        std::this_thread::sleep_for(delay_);
        (void)!write(fds[i].fd, reply_.data(), reply_.size());
      }
    }
  }

  const std::string reply_;
  const std::chrono::milliseconds delay_;
  int answers_;
  int port_ = 0;
  int fd_;
  std::atomic<bool> stop_{false};
  std::vector<int> clients_;
  std::thread thread_;
};

}  // namespace tollgate::testing
