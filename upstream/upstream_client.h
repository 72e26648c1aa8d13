// The upstream HTTP client for callers off the event loops: a buffered Send() on top of
// StreamClient (stream_client.h). It runs `threads` loop threads, each with its own
// StreamClient; Send() posts the request to one of them (round-robin), the whole response is
// collected there (up to max_response_bytes) and `done` runs on that loop thread, where it must
// not block. Connections are reused (keep-alive, HTTP/2 via ALPN where offered), TLS peers are
// verified, proxies come from the environment (read once per loop).
// Thread-safe. The destructor fails every transfer still in flight (error kShutdown) and joins;
// a Send() racing with or following the start of the destructor gets kShutdown on the calling
// thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tollgate::upstream {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// A request body that arrives while the transfer runs (streamed from the caller). Read on the
// transfer's loop thread.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // Copies up to `max` bytes into `buffer` and returns how many. 0 with *done false means
  // "nothing yet": the upload pauses until StreamClient::ResumeSend. *failed: the body could not
  // be received whole (the transfer is aborted).
  virtual size_t Read(char* buffer, size_t max, bool* done, bool* failed) = 0;
};

struct UpstreamRequest {
  std::string method;  // "GET", "POST", ...
  std::string url;     // full URL: base_url + path + ("?" + query)
  HeaderList headers;  // sent exactly as given (already filtered, secret injected)
  std::string body;
  // StreamClient only: when set, the body comes from here as it arrives (and `body` is unused),
  // sent with Content-Length `body_length`, or chunked when it is -1.
  std::shared_ptr<BodySource> body_source;
  int64_t body_length = -1;
  int timeout_ms = 30000;  // to the response headers (the whole transfer for Send())
  int connect_timeout_ms = 3000;
  int read_idle_timeout_ms = 60000;  // longest silence between body bytes (StreamClient)
  int max_duration_ms = 0;           // whole transfer, 0 = unbounded (StreamClient)
};

struct UpstreamResponse {
  enum class Error { kNone, kTimeout, kConnect, kShutdown, kTooLarge, kOther };
  Error error = Error::kNone;
  std::string error_message;  // libcurl's text; never contains request headers
  int status = 0;
  HeaderList headers;  // the final response's headers, in order (not those of 1xx/redirects)
  std::string body;
  double total_ms = 0;
};

struct UpstreamClientOptions {
  int threads = 1;                // event-loop threads; transfers are spread round-robin
  long max_connections = 256;     // CURLMOPT_MAXCONNECTS per thread
  long max_host_connections = 0;  // 0 = unlimited
  std::string ca_file;            // "" = system default (tests may point this at a test CA)
  // A response body larger than this aborts the transfer (kTooLarge): an upstream cannot make
  // the gateway buffer without bound.
  uint64_t max_response_bytes = uint64_t{64} << 20;
};

// `completed` counts transfers that got an HTTP response (any status); errors are counted by
// kind; transfers failed by shutdown are in none of them.
struct UpstreamClientStats {
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> connect_errors{0};
  std::atomic<uint64_t> other_errors{0};
};

class UpstreamClient {
 public:
  explicit UpstreamClient(UpstreamClientOptions options = {});
  ~UpstreamClient();
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  void Send(UpstreamRequest request, std::function<void(UpstreamResponse)> done);
  size_t in_flight() const;
  const UpstreamClientStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate::upstream
