#include "upstream/headers.h"

#include <algorithm>
#include <array>
#include <vector>

namespace tollgate::upstream {
namespace {

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool HasPrefixIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && HeaderNameEquals(s.substr(0, prefix.size()), prefix);
}

bool IsOneOf(std::string_view name, const std::string_view* names, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (HeaderNameEquals(name, names[i])) return true;
  }
  return false;
}

// RFC 9110 7.6.1 connection-specific fields, plus the Proxy-* family (Proxy-Connection is a
// de-facto hop-by-hop field; Proxy-Authorization/-Authenticate belong to the proxy hop).
constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade"};

bool IsHopByHop(std::string_view name) {
  return IsOneOf(name, kHopByHop.data(), kHopByHop.size()) || HasPrefixIgnoreCase(name, "proxy-");
}

// Devo's token header and its HMAC signing headers: a caller must never be able to supply
// (or learn) the gateway's own credentials through them.
bool IsUpstreamCredentialHeader(std::string_view name) {
  return HeaderNameEquals(name, "standalonetoken") || HasPrefixIgnoreCase(name, "x-logtrust-");
}

// Fields a caller could use to change what the upstream thinks the request is (method
// overrides), who sent it (forwarding fields the upstream may trust), or that libcurl owns.
//
// X-Original-URL, X-Rewrite-URL and X-Override-URL: backends (Symfony, Laravel, IIS URL
// Rewrite) route by them, which would reach a path the policy never saw.
constexpr std::array<std::string_view, 15> kRequestDropped = {"host",
                                                              "content-length",
                                                              "expect",
                                                              "authorization",
                                                              "cookie",
                                                              "x-http-method-override",
                                                              "x-method-override",
                                                              "x-http-method",
                                                              "forwarded",
                                                              "x-real-ip",
                                                              "x-request-id",
                                                              "proxy-authorization",
                                                              "x-original-url",
                                                              "x-rewrite-url",
                                                              "x-override-url"};

constexpr std::array<std::string_view, 3> kResponseDropped = {"set-cookie", "content-length",
                                                              "x-request-id"};

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
// refused: a Location carrying credentials is never rewritten to a gateway path.
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

}  // namespace

bool HeaderNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

bool IsSecretHeader(std::string_view name) {
  static constexpr std::array<std::string_view, 4> kSecret = {
      "authorization", "proxy-authorization", "cookie", "set-cookie"};
  return IsOneOf(name, kSecret.data(), kSecret.size()) || IsUpstreamCredentialHeader(name);
}

bool IsSecretHeader(std::string_view name, const config::UpstreamAuth& auth) {
  if (IsSecretHeader(name)) return true;
  return auth.type == config::AuthType::kHeader && !auth.header.empty() &&
         HeaderNameEquals(name, auth.header);
}

HeaderList FilterRequestHeaders(const HeaderList& from_caller) {
  const ConnectionNamedFields named(from_caller);
  HeaderList out;
  out.reserve(from_caller.size());
  for (const auto& header : from_caller) {
    const std::string& name = header.first;
    if (IsHopByHop(name) || IsOneOf(name, kRequestDropped.data(), kRequestDropped.size()) ||
        HasPrefixIgnoreCase(name, "x-forwarded-") || IsUpstreamCredentialHeader(name) ||
        named.Contains(name)) {
      continue;
    }
    out.push_back(header);
  }
  return out;
}

HeaderList FilterResponseHeaders(const HeaderList& from_upstream, const std::string& base_url,
                                 const std::string& upstream_name) {
  const ConnectionNamedFields named(from_upstream);
  HeaderList out;
  out.reserve(from_upstream.size());
  for (const auto& header : from_upstream) {
    const std::string& name = header.first;
    if (IsHopByHop(name) || IsOneOf(name, kResponseDropped.data(), kResponseDropped.size()) ||
        named.Contains(name)) {
      continue;
    }
    if (HeaderNameEquals(name, "location")) {
      out.emplace_back(name, RewriteLocation(header.second, base_url, upstream_name));
    } else {
      out.push_back(header);
    }
  }
  return out;
}

std::string RewriteLocation(std::string_view location, const std::string& base_url,
                            const std::string& upstream_name) {
  UrlParts base;
  std::string_view rest;
  if (!SplitUrl(base_url, &base) || !RestOnBaseOrigin(location, base, &rest)) {
    return std::string(location);
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
