#include "policies/normalise.h"

#include <cstdint>

namespace tollgate::policies {
namespace {

NormalisedTarget Reject(const char* reason) {
  NormalisedTarget result;
  result.error = reason;
  return result;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 3986 pchar without ';' (path parameters are refused) and without '%' (handled apart).
bool IsAllowedRawPathChar(unsigned char c) {
  if (IsUnreserved(c)) return true;
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case '=':
    case ':':
    case '@':
    case '/':
      return true;
    default:
      return false;
  }
}

// Why a target that does not start with '/' is refused, in the terms of RFC 9112 section 3.2.
const char* NonOriginFormReason(std::string_view target) {
  if (target == "*") return "asterisk-form request target not allowed";
  if (target.find("://") != std::string_view::npos)
    return "absolute-form request target not allowed";
  size_t colon = target.find(':');
  if (colon != std::string_view::npos && target.find('/') > colon) {
    return "authority-form request target not allowed";
  }
  return "request target must start with '/'";
}

// Validates the bytes that escapes decode to as UTF-8, refusing overlong forms and surrogates:
// an upstream that decodes %C0%AE as '.' would otherwise see a dot segment we never saw.
class Utf8Validator {
 public:
  // `escaped`: the byte came from a percent escape (raw bytes are ASCII by then).
  bool Feed(unsigned char byte, bool escaped) {
    if (need_ > 0) {
      if (!escaped || byte < lower_ || byte > upper_) return false;
      --need_;
      lower_ = 0x80;
      upper_ = 0xBF;
      return true;
    }
    if (byte < 0x80) return true;
    if (byte >= 0xC2 && byte <= 0xDF) {
      need_ = 1;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      need_ = 2;
      if (byte == 0xE0) lower_ = 0xA0;  // overlong
      if (byte == 0xED) upper_ = 0x9F;  // UTF-16 surrogates
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      need_ = 3;
      if (byte == 0xF0) lower_ = 0x90;  // overlong
      if (byte == 0xF4) upper_ = 0x8F;  // beyond U+10FFFF
    } else {
      return false;  // a stray continuation byte, an overlong lead (C0, C1) or F5-FF
    }
    return true;
  }
  bool complete() const { return need_ == 0; }

 private:
  int need_ = 0;
  unsigned char lower_ = 0x80;
  unsigned char upper_ = 0xBF;
};

const char* CheckQuery(std::string_view query) {
  for (char ch : query) {
    auto c = static_cast<unsigned char>(ch);
    if (IsControl(c)) return "control character in query";
    if (c == ' ') return "space in query (must be percent-encoded)";
    if (c >= 0x80) return "non-ASCII byte in query (must be percent-encoded)";
  }
  return nullptr;
}

// Runs on the decoded path: "%2e" has become '.', so encoded dot segments are caught here too.
// '/' cannot have been produced by decoding (%2F is refused), so these are the client's segments.
const char* CheckSegments(std::string_view path) {
  if (path == "/") return nullptr;
  size_t start = 1;
  while (true) {
    size_t end = path.find('/', start);
    std::string_view segment =
        path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (segment.empty()) {
      return end == std::string_view::npos ? "trailing '/' not allowed" : "empty path segment";
    }
    if (segment == "." || segment == "..") return "dot segment in path";
    if (end == std::string_view::npos) return nullptr;
    start = end + 1;
  }
}

}  // namespace

NormalisedTarget NormaliseTarget(std::string_view raw_target) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (raw_target.empty()) return Reject("empty request target");
  if (raw_target.find('#') != std::string_view::npos) return Reject("fragment not allowed");
  if (raw_target[0] != '/') return Reject(NonOriginFormReason(raw_target));

  size_t question = raw_target.find('?');
  std::string_view raw_path = raw_target.substr(0, question);
  std::string_view query =
      question == std::string_view::npos ? std::string_view() : raw_target.substr(question + 1);
  if (const char* reason = CheckQuery(query)) return Reject(reason);

  NormalisedTarget result;
  Utf8Validator utf8;
  std::string& out = result.path;
  out.reserve(raw_path.size());
  for (size_t i = 0; i < raw_path.size(); ++i) {
    auto c = static_cast<unsigned char>(raw_path[i]);
    if (c == '%') {
      if (i + 2 >= raw_path.size()) return Reject("truncated percent escape in path");
      int high = HexValue(raw_path[i + 1]);
      int low = HexValue(raw_path[i + 2]);
      if (high < 0 || low < 0) return Reject("invalid percent escape in path");
      auto decoded = static_cast<unsigned char>(high * 16 + low);
      if (decoded == '/') return Reject("encoded '/' in path");
      if (decoded == '\\') return Reject("encoded '\\' in path");
      if (decoded == 0) return Reject("encoded NUL in path");
      if (IsControl(decoded)) return Reject("encoded control character in path");
      // Refusing every %25 is simpler than reasoning about what a second decoding upstream
      // (%252e -> %2e -> '.') could turn into; no Devin or Devo path needs a literal '%'.
      if (decoded == '%') return Reject("encoded '%' in path (double encoding)");
      if (!utf8.Feed(decoded, true)) return Reject("percent-encoded bytes are not valid UTF-8");
      if (IsUnreserved(decoded)) {
        out.push_back(static_cast<char>(decoded));
      } else {
        out.push_back('%');
        out.push_back(kHex[decoded >> 4]);
        out.push_back(kHex[decoded & 0xf]);
      }
      i += 2;
      continue;
    }
    if (c == 0) return Reject("NUL in path");
    if (IsControl(c)) return Reject("control character in path");
    if (c >= 0x80) return Reject("non-ASCII byte in path (must be percent-encoded)");
    if (c == ' ') return Reject("space in path (must be percent-encoded)");
    if (c == '\\') return Reject("'\\' in path");
    if (c == ';') return Reject("';' path parameters not allowed");
    if (!IsAllowedRawPathChar(c)) {
      return Reject("invalid character in path (must be percent-encoded)");
    }
    if (!utf8.Feed(c, false)) return Reject("percent-encoded bytes are not valid UTF-8");
    out.push_back(static_cast<char>(c));
  }
  if (!utf8.complete()) return Reject("percent-encoded bytes are not valid UTF-8");
  if (const char* reason = CheckSegments(out)) return Reject(reason);
  result.query = std::string(query);
  result.ok = true;
  return result;
}

}  // namespace tollgate::policies
