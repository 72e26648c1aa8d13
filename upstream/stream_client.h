// The upstream HTTP client of one event loop: a libcurl multi handle driven by
// curl_multi_socket_action, its sockets and its timer registered in that loop's epoll
// (loop/loop.h). Every call and every callback happens on the loop's thread; nothing here locks
// or blocks. One StreamClient per loop (Loop::Local), so a request's upstream transfer runs on
// the thread that owns the caller's connection.
//
// Responses stream: the sink gets the status and headers as soon as they arrive, then the body
// as it arrives. A sink that cannot take more (its caller reads slowly) returns false from
// OnData, which pauses the transfer (libcurl stops reading the socket, so TCP pushes back on the
// upstream) until Resume(). At most one libcurl buffer (CURL_MAX_WRITE_SIZE) is held per paused
// transfer.
//
// Time limits, per request: `timeout_ms` bounds connect + send + the wait for the response
// headers; `read_idle_timeout_ms` bounds the silence between body bytes (a paused transfer is
// not idle: the wait is the caller's); `max_duration_ms` (0 = none) bounds the whole transfer.
//
// Connections are reused (keep-alive; HTTP/2 via ALPN where offered), TLS peers verified,
// proxies taken from the environment once, at construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "loop/loop.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {

// Why a transfer ended.
enum class StreamEndReason {
  kComplete,         // the whole response arrived
  kUpstreamClosed,   // the upstream closed or reset the connection mid-body
  kReadIdleTimeout,  // no body byte for read_idle_timeout_ms
  kMaxDuration,      // max_duration_ms passed
  kTimeout,          // no response headers within timeout_ms
  kConnect,          // could not connect (DNS, TCP, TLS)
  kAborted,          // Abort() (the caller went away)
  kShutdown,         // the client was destroyed with the transfer in flight
  kOther,            // anything else libcurl reported
};
const char* StreamEndReasonName(StreamEndReason reason);

struct StreamEnd {
  StreamEndReason reason = StreamEndReason::kComplete;
  std::string error_message;  // libcurl's text for failures; never request headers or secrets
  bool headers_seen = false;  // OnHeaders ran
  uint64_t body_bytes = 0;    // body bytes handed to OnData
  double total_ms = 0;        // from Start to the end
  double ttfb_ms = 0;         // from Start to the response headers (0 if none)
};

// Receives one transfer's events, on the loop's thread. Each method may call Abort or Resume on
// the client for this transfer; after OnEnd the transfer is gone (its id is stale).
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // The final response's status and headers (not those of 1xx), before any body byte.
  virtual void OnHeaders(int status, HeaderList headers) = 0;
  // Body bytes (already consumed by the time this returns). Return false to pause the transfer
  // after this chunk: no more OnData until Resume().
  virtual bool OnData(const char* data, size_t len) = 0;
  // Exactly once per started transfer, last.
  virtual void OnEnd(const StreamEnd& end) = 0;
};

class StreamClient {
 public:
  using TransferId = uint64_t;  // 0 is never a transfer

  StreamClient(loop::Loop* loop, UpstreamClientOptions options, UpstreamClientStats* stats);
  // Ends every transfer still in flight with kShutdown (OnEnd runs), on the loop's thread.
  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Starts a transfer. `request.body` is moved into the transfer (never copied). The sink must
  // stay valid until its OnEnd. A transfer that cannot start ends at once (OnEnd, inline).
  TransferId Start(UpstreamRequest request, StreamSink* sink);
  // Unpauses a transfer paused by OnData returning false. Stale ids do nothing.
  void Resume(TransferId id);
  // The transfer's BodySource has more (or its end, or failed) after a Read that found nothing.
  void ResumeSend(TransferId id);
  // Ends the transfer now: the upstream connection is closed (never reused mid-answer) and
  // OnEnd(kAborted) runs before this returns. Stale ids do nothing.
  void Abort(TransferId id);

  size_t active() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate::upstream
