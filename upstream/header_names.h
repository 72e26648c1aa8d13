// The kinds of header names the gateway treats specially, by name alone: hop-by-hop fields,
// credential fields, and the names no request to an upstream may ever carry from a caller.
// upstream/headers.cpp filters by them; config/model_builder.cpp checks an upstream's
// `forward_headers` against them. Header-only, so that config/ can use it without linking
// upstream/. Pure functions; thread-safe.
#pragma once

#include <array>
#include <string_view>

namespace tollgate::upstream {

constexpr char LowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Case-insensitive ASCII comparison of header names.
inline bool HeaderNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

inline bool HasPrefixIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && HeaderNameEquals(s.substr(0, prefix.size()), prefix);
}

template <size_t N>
bool IsOneOf(std::string_view name, const std::array<std::string_view, N>& names) {
  for (std::string_view n : names) {
    if (HeaderNameEquals(name, n)) return true;
  }
  return false;
}

// RFC 9110 5.1: a field name is a token (letters, digits and !#$%&'*+-.^_`|~).
inline bool IsHeaderToken(std::string_view name) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && kExtra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

// RFC 9110 7.6.1 connection-specific fields, plus the Proxy-* family (Proxy-Connection is a
// de-facto hop-by-hop field; Proxy-Authorization/-Authenticate belong to the proxy hop).
inline constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade"};

inline bool IsHopByHop(std::string_view name) {
  return IsOneOf(name, kHopByHop) || HasPrefixIgnoreCase(name, "proxy-");
}

// Devo's token header and its HMAC signing headers: a caller must never be able to supply
// (or learn) the gateway's own credentials through them.
inline bool IsUpstreamCredentialHeader(std::string_view name) {
  return HeaderNameEquals(name, "standalonetoken") || HasPrefixIgnoreCase(name, "x-logtrust-");
}

// Why a caller's header named `name` may never reach an upstream, whatever the config says
// (`auth_header`: the upstream's own credential header, "" if none); "" when it may. Checked on
// every forwarded header and on every `forward_headers` entry, so the two cannot disagree.
inline std::string_view NeverForwardedReason(std::string_view name, std::string_view auth_header) {
  // Fields the gateway's HTTP client writes itself (libcurl frames the body and names the host).
  static constexpr std::array<std::string_view, 4> kTransport = {"host", "content-length", "expect",
                                                                 "x-request-id"};
  static constexpr std::array<std::string_view, 3> kCredential = {"authorization", "cookie",
                                                                  "proxy-authorization"};
  // What the request is and who sent it: method and path overrides reach what the policy never
  // saw; forwarding claims are the gateway's own to make (`client_ip_headers`).
  static constexpr std::array<std::string_view, 22> kOverride = {"forwarded",
                                                                 "x-real-ip",
                                                                 "true-client-ip",
                                                                 "x-client-ip",
                                                                 "client-ip",
                                                                 "cf-connecting-ip",
                                                                 "via",
                                                                 "x-http-method-override",
                                                                 "x-method-override",
                                                                 "x-http-method",
                                                                 "x-method",
                                                                 "x-override-method",
                                                                 "x-original-method",
                                                                 "x-original-http-method",
                                                                 "x-original-url",
                                                                 "x-original-uri",
                                                                 "x-original-path",
                                                                 "x-rewrite-url",
                                                                 "x-override-url",
                                                                 "x-envoy-original-path",
                                                                 "x-host",
                                                                 "x-original-host"};
  if (!IsHeaderToken(name)) return "is not an HTTP header name (an RFC 9110 token)";
  if (name.find('_') != std::string_view::npos) {
    return "holds '_', which CGI-style frameworks read as '-' (any such name is dropped)";
  }
  if (IsHopByHop(name)) return "is hop-by-hop: it describes the caller's connection only";
  if (IsOneOf(name, kTransport)) return "is set by the gateway itself";
  if (IsOneOf(name, kCredential) || IsUpstreamCredentialHeader(name) ||
      (!auth_header.empty() && HeaderNameEquals(name, auth_header))) {
    return "carries credentials";
  }
  if (HasPrefixIgnoreCase(name, "x-forwarded-") || IsOneOf(name, kOverride)) {
    return "lets a caller change what the upstream takes the request or its sender to be (use "
           "client_ip_headers for the client address)";
  }
  // Answers are scanned for leaked secrets (and redacted), which a compressed body defeats.
  if (HeaderNameEquals(name, "accept-encoding")) {
    return "would make answers compressed, which the gateway cannot scan for secrets";
  }
  // Apache honours this pre-standard spelling of Range; it is never needed.
  if (HeaderNameEquals(name, "request-range")) return "is an obsolete spelling of Range";
  return "";
}

}  // namespace tollgate::upstream
