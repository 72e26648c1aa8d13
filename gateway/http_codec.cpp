#include "gateway/http_codec.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace tollgate::gateway {
namespace {

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

// A control character other than HTAB (or DEL): never valid in a field, an extension or a
// trailer line.
bool HasControl(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    if (EqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool IsForwardedMethod(std::string_view method) {
  static constexpr std::string_view kMethods[] = {"GET",   "HEAD",   "POST",   "PUT",
                                                  "PATCH", "DELETE", "OPTIONS"};
  for (std::string_view m : kMethods) {
    if (m == method) return true;
  }
  return false;
}

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

RequestParser::Status RequestParser::Fail(int status, std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return Status::kError;
}

bool RequestParser::TakeContinue() {
  bool c = continue_pending_;
  continue_pending_ = false;
  return c;
}

void RequestParser::Append(std::string_view data) {
  // Consumed bytes are dropped in bulk, not after every request, so a long pipeline costs
  // linear time rather than a memmove of the whole rest per request.
  if (start_ > 0 && (start_ == buffer_.size() || start_ >= 65536)) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(data.data(), data.size());
}

RequestParser::Status RequestParser::ParseHead() {
  // Tolerate stray CRLFs between pipelined requests (RFC 9112 2.2).
  while (start_ + 1 < buffer_.size() && buffer_[start_] == '\r' && buffer_[start_ + 1] == '\n') {
    start_ += 2;
    scan_from_ = 0;
  }
  std::string_view unread = Unread();
  size_t from = scan_from_ > 3 ? scan_from_ - 3 : 0;
  size_t end = unread.find("\r\n\r\n", from);
  if (end == std::string::npos) {
    if (unread.size() > max_header_bytes_) {
      return Fail(431, "request headers exceed " + std::to_string(max_header_bytes_) + " bytes");
    }
    scan_from_ = unread.size();
    return Status::kIncomplete;
  }
  head_len_ = end + 4;
  if (head_len_ > max_header_bytes_) {
    return Fail(431, "request headers exceed " + std::to_string(max_header_bytes_) + " bytes");
  }
  std::string_view head = unread.substr(0, end);
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);

  // request-line = method SP request-target SP HTTP-version
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      sp2 == sp1 + 1 || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  for (char c : method) {
    if (!IsTokenChar(c)) return Fail(400, "malformed request method");
  }
  // Only the methods an API gateway forwards. Methods are case-sensitive (RFC 9110 9.1): "get"
  // or "DELETE_" would slip past a rule written for GET or DELETE yet may be honoured by an
  // upstream that folds case or trims; TRACE echoes the request (the injected secret with it),
  // CONNECT opens a tunnel. Anything else is 501, before any rule is consulted.
  if (!IsForwardedMethod(method)) return Fail(501, "request method not implemented");
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    head_.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    head_.version_minor = 0;
  } else {
    return Fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (char c : target) {
    // A control byte (a bare CR or LF, NUL, TAB, DEL) has no place in a request target: the
    // normaliser would refuse it too, but it would first be written into the audit record.
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f) return Fail(400, "control character in request target");
  }
  head_.method.assign(method);
  head_.target.assign(target);
  head_.headers.clear();
  head_.body.clear();
  head_.header_bytes = head_len_;

  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  bool have_length = false;
  chunked_ = false;
  content_length_ = 0;
  const std::string* connection = nullptr;
  bool expect_continue = false;
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view h = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    if (h.front() == ' ' || h.front() == '\t') return Fail(400, "obsolete header line folding");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return Fail(400, "malformed header line");
    std::string_view name = h.substr(0, colon);
    for (char c : name) {
      if (!IsTokenChar(c)) return Fail(400, "malformed header name");
    }
    std::string_view value = Trim(h.substr(colon + 1));
    for (char c : value) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f)
        return Fail(400, "control character in header value");
    }
    head_.headers.emplace_back(std::string(name), std::string(value));
    if (EqualsIgnoreCase(name, "content-length")) {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size() || value.empty()) {
        return Fail(400, "invalid Content-Length");
      }
      // Differing duplicate lengths are the classic request-smuggling vector.
      if (have_length && n != content_length_) return Fail(400, "conflicting Content-Length");
      have_length = true;
      content_length_ = n;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      if (!EqualsIgnoreCase(value, "chunked")) return Fail(501, "unsupported Transfer-Encoding");
      chunked_ = true;
    } else if (EqualsIgnoreCase(name, "expect")) {
      if (!EqualsIgnoreCase(value, "100-continue")) return Fail(417, "unsupported Expect");
      expect_continue = true;
    }
  }
  if (chunked_ && have_length) return Fail(400, "both Content-Length and Transfer-Encoding");
  if (chunked_ && head_.version_minor == 0) {
    return Fail(400, "Transfer-Encoding in an HTTP/1.0 request");  // RFC 9112 6.1
  }
  if (have_length && content_length_ > max_body_bytes_) {
    return Fail(413, "request body exceeds " + std::to_string(max_body_bytes_) + " bytes");
  }
  connection = head_.Header("connection");
  if (head_.version_minor == 1) {
    head_.keep_alive = !(connection && HasToken(*connection, "close"));
  } else {
    head_.keep_alive = connection && HasToken(*connection, "keep-alive");
  }
  bool has_body = chunked_ || content_length_ > 0;
  head_.has_body = has_body;
  continue_pending_ = expect_continue && has_body && head_.version_minor == 1;
  head_done_ = true;
  chunk_state_ = ChunkState::kSize;
  chunk_pos_ = 0;
  chunk_left_ = 0;
  trailer_bytes_ = 0;
  body_seen_ = 0;
  return Status::kComplete;
}

RequestParser::Status RequestParser::ParseChunked() {
  std::string_view data = Unread().substr(head_len_);
  for (;;) {
    switch (chunk_state_) {
      case ChunkState::kSize: {
        size_t eol = data.find("\r\n", chunk_pos_);
        if (eol == std::string_view::npos) {
          if (data.size() - chunk_pos_ > kMaxChunkLine)
            return Fail(400, "chunk size line too long");
          return Status::kIncomplete;
        }
        if (eol - chunk_pos_ > kMaxChunkLine) return Fail(400, "chunk size line too long");
        std::string_view line = data.substr(chunk_pos_, eol - chunk_pos_);
        // Extensions are ignored, but not trusted: a bare CR or LF in one is how a front end and
        // a back end come to disagree on where a chunk ends.
        if (HasControl(line)) return Fail(400, "control character in a chunk size line");
        std::string_view hex = Trim(line.substr(0, line.find(';')));  // extensions are ignored
        uint64_t size = 0;
        auto [p, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
        if (hex.empty() || ec != std::errc() || p != hex.data() + hex.size()) {
          return Fail(400, "malformed chunked body");
        }
        chunk_pos_ = eol + 2;
        if (size == 0) {
          chunk_state_ = ChunkState::kTrailers;
          break;
        }
        if (size > max_body_bytes_ || body_seen_ + size > max_body_bytes_) {
          return Fail(413, "request body exceeds " + std::to_string(max_body_bytes_) + " bytes");
        }
        body_seen_ += size;
        chunk_left_ = size;
        chunk_state_ = ChunkState::kData;
        break;
      }
      case ChunkState::kData: {
        size_t available = data.size() - chunk_pos_;
        if (available == 0) return Status::kIncomplete;
        size_t take = static_cast<size_t>(std::min<uint64_t>(chunk_left_, available));
        head_.body.append(data.data() + chunk_pos_, take);
        chunk_pos_ += take;
        chunk_left_ -= take;
        if (chunk_left_ > 0) return Status::kIncomplete;
        chunk_state_ = ChunkState::kDataEnd;
        break;
      }
      case ChunkState::kDataEnd:
        if (data.size() - chunk_pos_ < 2) return Status::kIncomplete;
        if (data.substr(chunk_pos_, 2) != "\r\n") return Fail(400, "malformed chunked body");
        chunk_pos_ += 2;
        chunk_state_ = ChunkState::kSize;
        break;
      case ChunkState::kTrailers: {
        // Trailer fields are read and dropped; an empty line ends them.
        size_t eol = data.find("\r\n", chunk_pos_);
        if (eol == std::string_view::npos) {
          if (trailer_bytes_ + (data.size() - chunk_pos_) > kMaxTrailerBytes) {
            return Fail(431,
                        "request trailers exceed " + std::to_string(kMaxTrailerBytes) + " bytes");
          }
          return Status::kIncomplete;
        }
        bool empty = eol == chunk_pos_;
        std::string_view field = data.substr(chunk_pos_, eol - chunk_pos_);
        if (!empty && (HasControl(field) || field.find(':') == std::string_view::npos ||
                       field.front() == ':' || field.front() == ' ' || field.front() == '\t')) {
          return Fail(400, "malformed trailer field");
        }
        trailer_bytes_ += eol - chunk_pos_ + 2;
        if (trailer_bytes_ > kMaxTrailerBytes) {
          return Fail(431,
                      "request trailers exceed " + std::to_string(kMaxTrailerBytes) + " bytes");
        }
        chunk_pos_ = eol + 2;
        if (empty) return Status::kComplete;
        break;
      }
    }
  }
}

RequestParser::Status RequestParser::Next(HttpRequest* request) {
  if (error_status_ != 0) return Status::kError;
  if (!head_done_) {
    Status s = ParseHead();
    // On an error, hand back what was parsed (method, target, headers) so that the answer and
    // its audit record can name the request.
    if (s == Status::kError) *request = head_;
    if (s != Status::kComplete) return s;
  }
  size_t consumed = 0;
  if (chunked_) {
    Status s = ParseChunked();
    if (s == Status::kError) *request = head_;
    if (s != Status::kComplete) return s;
    consumed = head_len_ + chunk_pos_;
  } else {
    if (buffered() < head_len_ + content_length_) return Status::kIncomplete;
    head_.body.assign(buffer_, start_ + head_len_, content_length_);
    consumed = head_len_ + content_length_;
  }
  continue_pending_ = false;
  *request = std::move(head_);
  head_ = HttpRequest();
  start_ += consumed;
  scan_from_ = 0;
  head_done_ = false;
  return Status::kComplete;
}

HttpRequest RequestParser::TakeHead() {
  // The head's bytes are consumed now: from here on the buffer holds body bytes only.
  streaming_body_ = true;
  start_ += head_len_;
  head_len_ = 0;
  body_left_ = chunked_ ? 0 : content_length_;
  HttpRequest out = std::move(head_);
  head_ = HttpRequest();
  // Next() may already have decoded part of a chunked body: it is the body's start, for
  // ReadBody to hand out first (chunk_pos_ stays relative to the new start_).
  head_.body = std::move(out.body);
  out.body.clear();
  return out;
}

RequestParser::Status RequestParser::ReadBody(std::string* out, size_t max) {
  if (error_status_ != 0) return Status::kError;
  if (!streaming_body_) return Status::kError;
  Status status;
  if (chunked_) {
    // ParseChunked decodes into head_.body from chunk_pos_; what it decoded is handed out and
    // its bytes consumed, so the buffer never holds more than one read's worth.
    status = ParseChunked();
    if (status == Status::kError) return status;
    out->append(head_.body);
    head_.body.clear();
    start_ += chunk_pos_;
    chunk_pos_ = 0;
  } else {
    size_t take = static_cast<size_t>(
        std::min<uint64_t>({body_left_, static_cast<uint64_t>(buffered()), max}));
    out->append(buffer_, start_, take);
    start_ += take;
    body_left_ -= take;
    status = body_left_ == 0 ? Status::kComplete : Status::kIncomplete;
  }
  if (status == Status::kComplete) {
    streaming_body_ = false;
    continue_pending_ = false;
    scan_from_ = 0;
    head_done_ = false;
  }
  return status;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

namespace {

void AppendHead(std::string* out, int status, const HeaderList& headers, BodyFraming framing,
                uint64_t length, bool keep_alive) {
  out->append("HTTP/1.1 ");
  out->append(std::to_string(status));
  out->push_back(' ');
  out->append(ReasonPhrase(status));
  out->append("\r\n");
  for (const auto& [k, v] : headers) {
    out->append(k);
    out->append(": ");
    out->append(v);
    out->append("\r\n");
  }
  if (framing == BodyFraming::kLength) {
    out->append("Content-Length: ");
    out->append(std::to_string(length));
    out->append("\r\n");
  } else if (framing == BodyFraming::kChunked) {
    out->append("Transfer-Encoding: chunked\r\n");
  }
  out->append(keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
}

}  // namespace

std::string SerializeHead(int status, const HeaderList& headers, BodyFraming framing,
                          uint64_t length, bool keep_alive) {
  std::string out;
  size_t estimate = 96;
  for (const auto& [k, v] : headers) estimate += k.size() + v.size() + 4;
  out.reserve(estimate);
  AppendHead(&out, status, headers, framing, length, keep_alive);
  return out;
}

std::string SerializeResponse(const HttpResponse& response, bool keep_alive, bool head_only) {
  bool no_body = response.status < 200 || response.status == 204 || response.status == 304;
  std::string out;
  size_t estimate = 96 + (head_only ? 0 : response.body.size());
  for (const auto& [k, v] : response.headers) estimate += k.size() + v.size() + 4;
  out.reserve(estimate);
  AppendHead(&out, response.status, response.headers,
             no_body || (head_only && response.head_length_withheld) ? BodyFraming::kNone
                                                                     : BodyFraming::kLength,
             head_only && response.head_content_length ? *response.head_content_length
                                                       : response.body.size(),
             keep_alive);
  if (!head_only && !no_body) out.append(response.body);
  return out;
}

}  // namespace tollgate::gateway
