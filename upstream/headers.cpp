#include "upstream/headers.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

namespace tollgate::upstream {
namespace {

// Every caller field the gateway forwards without being told to. Accept-Encoding is not one:
// answers are scanned for leaked upstream secrets (and redacted on some routes), and a
// compressed body cannot be scanned, so the upstream is never invited to compress.
constexpr std::array<std::string_view, 18> kRequestAllowed = {
    // content negotiation
    "accept", "accept-language", "accept-charset",
    // the request body (Content-Length and Transfer-Encoding are libcurl's)
    "content-type", "content-encoding", "content-language",
    // conditional requests and caching; Range and If-Range are kRangeFields
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "cache-control",
    "pragma",
    // who is calling and how to retry or trace it
    "user-agent", "idempotency-key", "traceparent", "tracestate",
    // byte ranges: only where the answer is not redacted (below)
    "range", "if-range"};
// (Devo's query API takes the answer's format from Accept and the query's from Content-Type;
// Devin's v3 API needs nothing more. An upstream that does adds it in forward_headers.)

// A byte range of a redacted answer could carry a secret the redactor cannot recognise (it
// parses whole JSON documents only): on those routes the upstream is asked for the whole body.
// (Request-Range, Apache's old spelling, is never forwarded: NeverForwardedReason.)
constexpr std::array<std::string_view, 2> kRangeFields = {"range", "if-range"};

// Fields the gateway consumes itself: dropped without being counted as dropped.
constexpr std::array<std::string_view, 5> kConsumed = {"host", "content-length", "expect",
                                                       "authorization", "x-request-id"};

// Set-Cookie (the upstream's cookies are the gateway's service user's) goes as a secret header.
constexpr std::array<std::string_view, 2> kResponseDropped = {"content-length", "x-request-id"};

// Collects the tokens of every Connection header: the fields the sender declared hop-by-hop.
std::vector<std::string_view> ConnectionTokens(const HeaderList& headers) {
  std::vector<std::string_view> tokens;
  for (const auto& [name, value] : headers) {
    if (!HeaderNameEquals(name, "connection")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view token = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
        token.remove_prefix(1);
      }
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) {
        token.remove_suffix(1);
      }
      if (!token.empty()) tokens.push_back(token);
    }
  }
  return tokens;
}

// Orders header names the way HeaderNameEquals compares them: two names are equivalent under
// this order exactly when HeaderNameEquals says they are equal.
bool HeaderNameLess(std::string_view a, std::string_view b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return static_cast<unsigned char>(LowerAscii(x)) < static_cast<unsigned char>(LowerAscii(y));
  });
}

// The fields a message's Connection headers name. The sender chooses up to max_header_bytes of
// fields and tokens, so comparing every field with every token would be quadratic (milliseconds
// of a loop's time for a 16 KiB head); the names are kept sorted instead, and filtering a head
// costs O((fields + tokens) log tokens). Holds views into the headers it was built from.
class ConnectionNamedFields {
 public:
  explicit ConnectionNamedFields(const HeaderList& headers) : names_(ConnectionTokens(headers)) {
    std::sort(names_.begin(), names_.end(), HeaderNameLess);
  }

  bool Contains(std::string_view name) const {
    return std::binary_search(names_.begin(), names_.end(), name, HeaderNameLess);
  }

 private:
  std::vector<std::string_view> names_;
};

struct UrlParts {
  std::string_view scheme;
  std::string_view host;
  std::string_view port;  // the effective port: explicit, or the scheme's default
  std::string_view rest;  // path, query and fragment
};

// Splits "host[:port]" + rest (what follows "//"); the port defaults to the scheme's. Userinfo is
// refused (RewriteLocation has stripped it already; an '@' here is not a host).
bool SplitAuthority(std::string_view scheme, std::string_view after, UrlParts* out) {
  out->scheme = scheme;
  size_t end = after.find_first_of("/?#");
  std::string_view authority = after.substr(0, end);
  out->rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  size_t colon = authority.rfind(':');
  size_t bracket = authority.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    out->host = authority.substr(0, colon);
    out->port = authority.substr(colon + 1);
  } else {
    out->host = authority;
    out->port = std::string_view();
  }
  if (out->port.empty()) {
    if (HeaderNameEquals(out->scheme, "https")) {
      out->port = "443";
    } else if (HeaderNameEquals(out->scheme, "http")) {
      out->port = "80";
    } else {
      return false;
    }
  }
  return true;
}

// Splits an absolute http(s) URL.
bool SplitUrl(std::string_view url, UrlParts* out) {
  size_t sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  return SplitAuthority(url.substr(0, sep), url.substr(sep + 3), out);
}

bool SameOrigin(const UrlParts& a, const UrlParts& b) {
  // Scheme and host are case-insensitive; the port is compared as written (digits).
  return HeaderNameEquals(a.scheme, b.scheme) && HeaderNameEquals(a.host, b.host) &&
         a.port == b.port;
}

// The path, query and fragment `location` points to on the base's origin; false when it
// points elsewhere or is a relative-path reference (resolving those needs the request path).
bool RestOnBaseOrigin(std::string_view location, const UrlParts& base, std::string_view* rest) {
  UrlParts loc;
  if (location.substr(0, 2) == "//") {
    // Network-path reference: the base's scheme applies.
    if (!SplitAuthority(base.scheme, location.substr(2), &loc) || !SameOrigin(loc, base)) {
      return false;
    }
    *rest = loc.rest;
    return true;
  }
  if (!location.empty() && location.front() == '/') {
    *rest = location;
    return true;
  }
  if (!SplitUrl(location, &loc) || !SameOrigin(loc, base)) return false;
  *rest = loc.rest;
  return true;
}

// `location` without the user info of its authority ("https://user:pw@h/x" -> "https://h/x",
// "//user@h/x" -> "//h/x"); anything without an authority is returned as it is.
std::string WithoutUserInfo(std::string_view location) {
  size_t authority = std::string_view::npos;
  if (location.substr(0, 2) == "//") {
    authority = 2;
  } else if (size_t sep = location.find("://"); sep != std::string_view::npos && sep > 0) {
    // RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
    const std::string_view scheme = location.substr(0, sep);
    const bool is_scheme =
        std::isalpha(static_cast<unsigned char>(scheme.front())) &&
        std::all_of(scheme.begin(), scheme.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
        });
    if (is_scheme) authority = sep + 3;
  }
  if (authority == std::string_view::npos) return std::string(location);
  const size_t end = location.find_first_of("/?#", authority);
  const size_t at = location.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < authority) return std::string(location);
  std::string out(location.substr(0, authority));
  out.append(location.substr(at + 1));
  return out;
}

}  // namespace

bool IsSecretHeader(std::string_view name) {
  static constexpr std::array<std::string_view, 4> kSecret = {
      "authorization", "proxy-authorization", "cookie", "set-cookie"};
  return IsOneOf(name, kSecret) || IsUpstreamCredentialHeader(name);
}

bool IsSecretHeader(std::string_view name, const config::UpstreamAuth& auth) {
  if (IsSecretHeader(name)) return true;
  return auth.type == config::AuthType::kHeader && !auth.header.empty() &&
         HeaderNameEquals(name, auth.header);
}

HeaderList FilterRequestHeaders(const HeaderList& from_caller, const config::Upstream& upstream,
                                std::string_view client_ip, bool redacted_route,
                                RequestHeaderDrops* drops) {
  RequestHeaderDrops unused;
  RequestHeaderDrops& dropped = drops != nullptr ? *drops : unused;
  const std::string_view auth_header =
      upstream.auth.type == config::AuthType::kHeader ? upstream.auth.header : std::string_view();
  const std::vector<std::string>& configured = upstream.forward_headers;  // lower case, sorted
  const ConnectionNamedFields named(from_caller);
  HeaderList out;
  out.reserve(from_caller.size() + 2);
  for (const auto& header : from_caller) {
    const std::string& name = header.first;
    if (IsHopByHop(name) || IsOneOf(name, kConsumed) || named.Contains(name)) continue;
    if (name.find('_') != std::string::npos) {
      ++dropped.underscore;
      continue;
    }
    if (redacted_route && IsOneOf(name, kRangeFields)) {
      ++dropped.range;
      continue;
    }
    const bool listed =
        IsOneOf(name, kRequestAllowed) ||
        std::binary_search(configured.begin(), configured.end(), name, HeaderNameLess);
    if (!listed || !NeverForwardedReason(name, auth_header).empty()) {
      ++dropped.not_allowed;
      continue;
    }
    out.push_back(header);
  }
  // The peer address as the gateway saw it, only if it reads as one (it becomes a header value).
  if (client_ip.size() > 2 && client_ip.front() == '[' && client_ip.back() == ']') {
    client_ip = client_ip.substr(1, client_ip.size() - 2);
  }
  const bool ip_ok =
      !client_ip.empty() &&
      client_ip.find_first_not_of("0123456789abcdefABCDEF.:") == std::string_view::npos;
  if (ip_ok && upstream.send_x_forwarded_for) out.emplace_back("X-Forwarded-For", client_ip);
  if (ip_ok && upstream.send_forwarded) {
    // RFC 7239: an IPv6 node is a quoted, bracketed string.
    const bool v6 = client_ip.find(':') != std::string_view::npos;
    out.emplace_back("Forwarded", v6 ? "for=\"[" + std::string(client_ip) + "]\""
                                     : "for=" + std::string(client_ip));
  }
  return out;
}

HeaderList FilterResponseHeaders(const HeaderList& from_upstream,
                                 const config::Upstream& upstream) {
  const ConnectionNamedFields named(from_upstream);
  HeaderList out;
  out.reserve(from_upstream.size());
  for (const auto& header : from_upstream) {
    const std::string& name = header.first;
    if (IsHopByHop(name) || IsOneOf(name, kResponseDropped) ||
        IsSecretHeader(name, upstream.auth) || named.Contains(name)) {
      continue;
    }
    if (HeaderNameEquals(name, "location")) {
      out.emplace_back(name, RewriteLocation(header.second, upstream.base_url, upstream.name));
    } else {
      out.push_back(header);
    }
  }
  return out;
}

std::string RefusedResponseHead(const HeaderList& from_upstream) {
  // RFC 9110 5.5: a field value is VCHAR, SP, HTAB and obs-text; CR, LF and NUL are invalid.
  const auto is_control = [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return (b < 0x20 && b != '\t') || b == 0x7f;
  };
  for (const auto& [name, value] : from_upstream) {
    const bool bad_name = std::any_of(name.begin(), name.end(), is_control);
    if (bad_name || std::any_of(value.begin(), value.end(), is_control)) {
      // Names the field only when its name is a token: a bad name could be any bytes.
      const std::string which = IsHeaderToken(name) ? " " + name : "";
      return "the upstream's response header" + which + " holds a control character (" +
             (bad_name ? "in its name" : "a bare CR or another byte below 0x20 in its value") +
             "): refused rather than passed on";
    }
  }
  return "";
}

std::string RewriteLocation(std::string_view location_in, const std::string& base_url,
                            const std::string& upstream_name) {
  const std::string stripped = WithoutUserInfo(location_in);
  const std::string_view location = stripped;
  UrlParts base;
  std::string_view rest;
  if (!SplitUrl(base_url, &base) || !RestOnBaseOrigin(location, base, &rest)) {
    return stripped;
  }
  std::string_view prefix = base.rest;
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  // The path is case-sensitive.
  if (rest.substr(0, prefix.size()) != prefix) return std::string(location);
  std::string_view tail = rest.substr(prefix.size());
  // "/api" must not capture "/apikeys": the prefix has to end at a segment boundary.
  if (!tail.empty() && tail.front() != '/' && tail.front() != '?' && tail.front() != '#') {
    return std::string(location);
  }
  // The base path itself maps to "/{name}": the gateway refuses "/{name}/" (an empty segment).
  if (tail.size() >= 1 && tail.front() == '/' &&
      (tail.size() == 1 || tail[1] == '?' || tail[1] == '#')) {
    tail.remove_prefix(1);
  }
  std::string out;
  out.reserve(upstream_name.size() + tail.size() + 1);
  out.append("/").append(upstream_name).append(tail);
  return out;
}

}  // namespace tollgate::upstream
