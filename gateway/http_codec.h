// HTTP/1.1 message codec for the front-end: request parsing and response serialisation.
//
// tollgate runs on Pistache's TCP server (listener, reactor, transport, TLS) but parses requests
// itself, because a gateway must see what Pistache 0.0.5's HTTP layer loses: the raw request
// target (query order and repeated keys), every header as sent (duplicates included), separate
// header and body limits, `Expect: 100-continue` before the body arrives, and pipelined requests.
//
// RequestParser is per connection and not thread-safe; the serialisers are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::gateway {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;
  std::string target;  // raw request target, byte for byte
  int version_minor = 1;
  HeaderList headers;  // in order, as received (names as sent)
  std::string body;    // de-chunked
  size_t header_bytes = 0;
  bool keep_alive = true;
  // The head announced a body: Transfer-Encoding: chunked, or a Content-Length above 0.
  bool has_body = false;
  // First value of a header (case-insensitive name), or nullptr.
  const std::string* Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  HeaderList headers;  // Content-Length and Connection are added by SerializeResponse
  std::string body;
  // For a HEAD request: the length a GET would have had (the upstream's Content-Length).
  std::optional<uint64_t> head_content_length;
  // For a HEAD request: no Content-Length at all (RFC 9110 9.3.2 lets a HEAD answer omit it),
  // where the only length known would tell the caller something it must not learn.
  bool head_length_withheld = false;
};

// GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS: the methods the front-end accepts (any other
// is answered 501).
bool IsForwardedMethod(std::string_view method);

class RequestParser {
 public:
  RequestParser(size_t max_header_bytes, size_t max_body_bytes)
      : max_header_bytes_(max_header_bytes), max_body_bytes_(max_body_bytes) {}

  enum class Status {
    kIncomplete,  // need more bytes
    kComplete,    // *request holds a whole request; its bytes were consumed
    kError,       // error_status()/error_message() say why; the connection must close
  };

  // Appends `data` to the connection's buffer.
  void Append(std::string_view data);
  // Parses the next request from the buffer. Work is incremental: bytes already examined
  // (a partial head, the decoded part of a chunked body) are not examined again.
  Status Next(HttpRequest* request);
  // True once, when a request's head announced `Expect: 100-continue` and its body has not
  // arrived yet: the caller sends "100 Continue" so the client need not wait.
  bool TakeContinue();

  // Streaming a request body. After Next() returned kIncomplete with body_pending() true (the
  // head is complete, its body still arriving), TakeHead() hands the head over without its
  // body, and ReadBody() then yields the decoded body as it arrives, up to `max` bytes per
  // call: kComplete once the body ended (the parser then goes on with the next request),
  // kIncomplete while more is to come, kError on bad framing or a body over max_body_bytes.
  bool body_pending() const { return head_done_ && !streaming_body_ && error_status_ == 0; }
  HttpRequest TakeHead();
  Status ReadBody(std::string* out, size_t max);
  bool streaming_body() const { return streaming_body_; }

  // What is known of a request still being received (for a 408): its head if complete.
  HttpRequest Partial() const { return head_done_ ? head_ : HttpRequest(); }

  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }
  // Bytes received and not yet consumed by a complete request.
  size_t buffered() const { return buffer_.size() - start_; }

  // Limits of the chunked framing (beyond the body limit itself).
  static constexpr size_t kMaxChunkLine = 1024;      // size + extensions
  static constexpr size_t kMaxTrailerBytes = 16384;  // the whole trailer section

 private:
  Status Fail(int status, std::string message);
  Status ParseHead();
  Status ParseChunked();  // advances chunk_pos_; kComplete once the last chunk and trailers end

  std::string_view Unread() const { return std::string_view(buffer_).substr(start_); }

  size_t max_header_bytes_;
  size_t max_body_bytes_;
  std::string buffer_;
  size_t start_ = 0;      // first byte of the request being parsed; earlier bytes are consumed
  size_t scan_from_ = 0;  // (relative to start_) where to resume looking for the end of the head
  bool head_done_ = false;
  size_t head_len_ = 0;
  HttpRequest head_;
  bool chunked_ = false;
  uint64_t content_length_ = 0;
  // Chunked decoding state, relative to the end of the head.
  enum class ChunkState { kSize, kData, kDataEnd, kTrailers } chunk_state_ = ChunkState::kSize;
  size_t chunk_pos_ = 0;
  uint64_t chunk_left_ = 0;
  size_t trailer_bytes_ = 0;
  bool continue_pending_ = false;
  bool streaming_body_ = false;  // TakeHead() was called; ReadBody() drains the body
  uint64_t body_left_ = 0;       // Content-Length body still to read when streaming
  uint64_t body_seen_ = 0;       // chunked: data bytes announced so far (the body limit)
  int error_status_ = 0;
  std::string error_message_;
};

// How a response's body is delimited on the wire.
enum class BodyFraming {
  kNone,        // 1xx/204/304: no body, no length
  kLength,      // Content-Length: length
  kChunked,     // Transfer-Encoding: chunked (HTTP/1.1 callers)
  kUntilClose,  // neither: the body ends when the connection closes (HTTP/1.0 callers)
};
// Status line, headers, the framing header, Connection, and the blank line.
std::string SerializeHead(int status, const HeaderList& headers, BodyFraming framing,
                          uint64_t length, bool keep_alive);

// Status line, headers, Content-Length (omitted for 1xx/204/304), Connection, then the body
// unless `head_only` (a HEAD request: Content-Length still says the length of the GET body).
std::string SerializeResponse(const HttpResponse& response, bool keep_alive, bool head_only);

std::string_view ReasonPhrase(int status);

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace tollgate::gateway
