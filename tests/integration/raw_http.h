// Raw HTTP/1.1 over a loopback socket, for requests a well-behaved client library would not
// send as written (dot segments, backslashes, fragments, absolute-form targets, pipelining).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace tollgate::testing {

inline int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until `until` was seen, the peer closed, or nothing arrived for `timeout_ms`.
inline std::string ReadUntil(int fd, const std::string& until, int timeout_ms) {
  std::string out;
  char buf[4096];
  while (until.empty() || out.find(until) == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sends `raw` on a new connection with "Connection: close" semantics expected of the caller
// and returns everything answered until the peer closes (or 5 s of silence).
inline std::string RawExchange(int port, const std::string& raw) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return "";
  size_t sent = 0;
  while (sent < raw.size()) {
    ssize_t n = write(fd, raw.data() + sent, raw.size() - sent);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string out = ReadUntil(fd, "", 5000);
  close(fd);
  return out;
}

// The status code of the first response in `response`, or 0.
// Sends all of `data` (blocking); false if the peer is gone.
inline bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

inline int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

}  // namespace tollgate::testing
