// The front-end HTTP/1.1 server: Pistache's TCP listener, reactor and transport, with
// tollgate's own codec (http_codec.h) on top. Plain TCP only: Pistache 0.0.5's TLS handshake
// blocks its single accept thread, so TLS is terminated in front of tollgate (README).
//
// Each complete request becomes an Exchange handed to the RequestHandler on a reactor thread.
// The handler may answer at once or later from any thread (Exchange::Respond is thread-safe and
// takes effect once). Requests on one connection are answered in order: the next pipelined
// request is dispatched only after the previous one was answered. A connection whose request
// could not be parsed (bad syntax, headers or body over the limits) is answered with the
// handler's error response and then closed.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gateway/http_codec.h"

namespace tollgate::gateway {

class Connection;

class Exchange {
 public:
  Exchange(std::shared_ptr<Connection> connection, HttpRequest request, std::string client_ip,
           int parse_error_status, std::string parse_error);
  // An exchange without a connection, for driving a handler in-process (tests): Respond hands
  // the response to `sink` instead of writing it to a socket (once, like a connection's).
  using ResponseSink = std::function<void(HttpResponse)>;
  Exchange(HttpRequest request, std::string client_ip, ResponseSink sink,
           int parse_error_status = 0, std::string parse_error = "");
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  const HttpRequest& request() const { return request_; }
  const std::string& client_ip() const { return client_ip_; }
  // Non-zero when the request could not be parsed (400, 408, 413, 431, 501, 505): the handler must
  // answer with this status; request() holds whatever was parsed (may be empty).
  int parse_error_status() const { return parse_error_status_; }
  const std::string& parse_error() const { return parse_error_; }

  // Sends the response (only the first call counts). HEAD requests get no body on the wire.
  void Respond(HttpResponse response);
  bool responded() const { return responded_.load(); }

 private:
  std::shared_ptr<Connection> connection_;
  ResponseSink sink_;  // set when there is no connection
  HttpRequest request_;
  std::string client_ip_;
  int parse_error_status_;
  std::string parse_error_;
  std::atomic<bool> responded_{false};
};

using RequestHandler = std::function<void(std::shared_ptr<Exchange>)>;

struct HttpServerOptions {
  std::string listen;  // "host:port"; port 0 picks a free one
  int threads = 2;
  size_t max_header_bytes = 16384;
  size_t max_body_bytes = 1048576;
  // A request started but not wholly received within this long is answered 408 and its
  // connection closed; a keep-alive connection idle this long is closed. A request being
  // answered is never timed out here (the upstream timeouts bound it).
  int request_timeout_ms = 30000;
  int idle_timeout_ms = 120000;
  // Pending-connection queue; Pistache's default (128) drops SYNs in a burst, which costs
  // clients a 1 s retransmit. The kernel caps it at net.core.somaxconn.
  int backlog = 4096;
};

class HttpServer {
 public:
  // Binds and starts serving on background threads; null and *error set on failure.
  static std::unique_ptr<HttpServer> Start(const HttpServerOptions& options, RequestHandler handler,
                                           std::string* error);
  ~HttpServer();
  // Stops accepting and closes connections. Callers drain their own in-flight work first.
  void Shutdown();
  int port() const;
  // Connections accepted so far (tests use it to check keep-alive).
  uint64_t connections_accepted() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate::gateway
