// The front-end HTTP/1.1 server: Pistache's TCP listener and reactor, a transport of our own per
// reactor thread, and tollgate's codec (http_codec.h) on top. Plain TCP only: Pistache 0.0.5's
// TLS handshake blocks its single accept thread, so TLS is terminated in front of tollgate.
//
// Threads. Every reactor thread embeds one event loop (loop/loop.h) and owns the connections
// the listener hands it, from accept to close: it reads them, parses them, runs the handler and
// writes the answers. The handler's work for a request (limiter, upstream transfer, timers) is
// registered on the same loop, so an Exchange is touched by one thread only and nothing on the
// path locks. Respond() alone may also be called from another thread (it is then posted to the
// connection's loop); the streaming calls must be made on the loop's thread.
//
// Requests on one connection are answered in order: the next pipelined request is dispatched
// once the previous answer has been written out (whole, or to its last streamed byte). While a
// request is being answered the connection is not read beyond a bounded buffer, so a client
// that keeps sending is pushed back by TCP instead of filling memory. A connection whose request
// could not be parsed is answered with the handler's error response and then closed.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http_codec.h"
#include "loop/loop.h"

namespace tollgate::gateway {

class Connection;

class Exchange {
 public:
  Exchange(std::shared_ptr<Connection> connection, HttpRequest request, std::string client_ip,
           int parse_error_status, std::string parse_error);
  // An exchange without a connection, for driving a handler in-process (tests): the response
  // (a streamed one collected whole) goes to `sink` instead of a socket, once.
  using ResponseSink = std::function<void(HttpResponse)>;
  Exchange(HttpRequest request, std::string client_ip, ResponseSink sink,
           int parse_error_status = 0, std::string parse_error = "");
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  const HttpRequest& request() const { return request_; }
  // The request body, to be moved into the upstream request (no copy).
  std::string TakeBody() { return std::move(request_.body); }
  // A collected body replaced by the one to forward (a rule's body rules rewrote it).
  void ReplaceBody(std::string body) { request_.body = std::move(body); }
  const std::string& client_ip() const { return client_ip_; }
  // Non-zero when the request could not be parsed (400, 408, 413, 431, 501, 505): the handler must
  // answer with this status; request() holds whatever was parsed (may be empty).
  int parse_error_status() const { return parse_error_status_; }
  const std::string& parse_error() const { return parse_error_; }
  // A request body still arriving. A request whose whole body was not there when its head
  // was complete is dispatched at once, its body following (streamed to the upstream, with
  // backpressure: the connection reads no further than kBodyHighWater ahead of ReadBody). The
  // rest of this block is for such requests, on the loop's thread. An answer given before the
  // body ended closes the connection after it (the rest of the body is never read).
  static constexpr size_t kBodyHighWater = 256 * 1024;
  bool body_pending() const { return body_pending_ && !body_done_; }
  // Copies up to `max` body bytes that arrived; *done once the whole body was read, *failed if
  // it cannot be (bad framing, over max_body_bytes: body_error_status() says which).
  size_t ReadBody(char* buffer, size_t max, bool* done, bool* failed);
  // Runs when more body arrived, the body ended, or it failed.
  //
  // The body is not read from the connection until the handler first asks for it (ReadBody,
  // SetBodyCallback or CollectBody): a request refused on its head (unauthenticated, forbidden,
  // limited) is answered and its connection closed without the body being taken in, and a
  // caller that sent `Expect: 100-continue` gets "100 Continue" only then.
  void SetBodyCallback(std::function<void()> on_body);
  // Collects the rest of the body into request() (a handler that needs it whole), then runs
  // `done` (check body_error_status()).
  void CollectBody(std::function<void()> done);
  int body_error_status() const { return body_error_status_; }
  const std::string& body_error() const { return body_error_; }
  uint64_t body_bytes_received() const { return body_received_; }

  // The loop that owns this exchange's connection (null for a connection-less exchange).
  loop::Loop* loop() const;

  // Sends a whole response (only the first Respond or StartStream counts). HEAD requests get
  // no body on the wire. Any thread.
  void Respond(HttpResponse response);
  bool responded() const { return responded_.load(); }

  // Streaming, on the loop's thread. StartStream sends the status and headers: with
  // `content_length` the body is sent as is, without it chunked (or until close to an HTTP/1.0
  // caller). Write returns false once the connection holds more than kHighWater unsent bytes:
  // the producer then waits for `on_drain`. EndStream completes the answer; AbortStream cuts it
  // short (the connection is closed, so the caller sees a truncated body, never a complete one).
  static constexpr size_t kHighWater = 256 * 1024;
  void StartStream(int status, const HeaderList& headers, std::optional<uint64_t> content_length);
  bool Write(std::string_view data);
  void EndStream();
  void AbortStream();
  // `on_drain`: the buffered output fell below the high-water mark after Write returned false.
  // `on_close`: the caller went away (closed, reset, or a write failed) before the answer ended.
  // Both run on the loop's thread; neither runs after EndStream/AbortStream.
  void SetStreamCallbacks(std::function<void()> on_drain, std::function<void()> on_close);
  // Bytes of body written to the caller so far (streamed or whole).
  uint64_t body_bytes_sent() const { return body_bytes_; }
  bool caller_gone() const;

 private:
  friend class Connection;
  std::shared_ptr<Connection> connection_;
  ResponseSink sink_;  // set when there is no connection
  HttpRequest request_;
  std::string client_ip_;
  int parse_error_status_;
  std::string parse_error_;
  std::atomic<bool> responded_{false};
  bool streaming_ = false;
  bool ended_ = false;
  uint64_t body_bytes_ = 0;
  HttpResponse collected_;  // connection-less streaming
  std::function<void()> on_drain_;
  std::function<void()> on_close_;
  // A body still arriving (fed by the connection).
  bool body_pending_ = false;
  bool body_done_ = false;
  int body_error_status_ = 0;
  std::string body_error_;
  std::string body_buf_;  // arrived, not yet read, from body_off_
  size_t body_off_ = 0;
  uint64_t body_received_ = 0;
  std::function<void()> on_body_;
  std::function<void()> on_collected_;
  bool body_wanted_ = false;      // the handler asked for the body: the connection reads it
  bool expect_continue_ = false;  // the caller waits for "100 Continue" before sending it
  void WantBody();
  void BodyArrived();                // connection -> exchange: bytes, end or failure
  void FinishStream(bool complete);  // EndStream / AbortStream
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
  // Open connections past this are closed as they arrive (counted in connections_refused()).
  size_t max_connections = 10000;
};

class HttpServer {
 public:
  // Binds and starts serving on background threads; null and *error set on failure.
  static std::unique_ptr<HttpServer> Start(const HttpServerOptions& options, RequestHandler handler,
                                           std::string* error);
  ~HttpServer();
  // Stops accepting, closes connections and joins the reactor threads; then destroys every
  // loop's per-loop state (Loop::ClearLocals), so components attached to the loops may be
  // destroyed after this returns. Callers drain their own in-flight work first.
  void Shutdown();
  int port() const;
  // Runs `fn` on every reactor loop (posted; returns at once).
  void ForEachLoop(const std::function<void(loop::Loop&)>& fn);
  // Connections accepted so far (tests use it to check keep-alive), open now, and refused
  // over max_connections.
  uint64_t connections_accepted() const;
  int64_t connections_open() const;
  uint64_t connections_refused() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate::gateway
