// The one place that knows which headers are hop-by-hop, which carry secrets and which may
// cross the gateway in each direction. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/model.h"
#include "upstream/header_names.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {

// Headers whose values are secrets or key material: Authorization, Proxy-Authorization,
// standAloneToken, x-logtrust-*, Cookie, Set-Cookie, and the header an upstream's auth uses.
// Their values never appear in logs, audit records or error messages.
bool IsSecretHeader(std::string_view name);
// As above, and also the header a kHeader upstream auth is configured to use.
bool IsSecretHeader(std::string_view name, const config::UpstreamAuth& auth);

// Caller headers FilterRequestHeaders did not forward, by reason (the bounded `reason` label of
// tollgate_request_headers_dropped_total). Fields the gateway consumes as a matter of course
// (hop-by-hop ones and those the caller's Connection names, Host, Content-Length, Expect,
// Authorization, X-Request-Id) are not counted: every request has some.
struct RequestHeaderDrops {
  uint64_t not_allowed = 0;  // not on the allowlist nor in the upstream's forward_headers
  uint64_t underscore = 0;   // a name holding '_' (CGI-style frameworks read it as '-')
  uint64_t range = 0;        // Range / If-Range on a route whose answers are redacted
};

// Request headers from the caller that may be forwarded, by allowlist: content negotiation
// (Accept, Accept-Language, Accept-Charset; never Accept-Encoding), the body's Content-Type,
// Content-Encoding and Content-Language, conditional requests (If-Match, If-None-Match,
// If-Modified-Since, If-Unmodified-Since; Range and If-Range only when `redacted_route` is
// false), Cache-Control, Pragma, User-Agent, Idempotency-Key, traceparent and tracestate, plus
// the upstream's `forward_headers`. A name with '_', a name NeverForwardedReason refuses, and
// a field the caller's Connection header names are dropped whatever the lists say. Then, if the
// upstream asks for them (`client_ip_headers`), the gateway's own X-Forwarded-For / Forwarded
// with `client_ip` (the peer address it accepted the connection from; nothing when empty).
// Order, values and duplicates of kept fields are unchanged. `drops` (may be null) is added to.
// Costs O(fields log fields + tokens log tokens) whatever the caller packs into its head (the
// names a Connection header lists are looked up in sorted order, and forward_headers is
// sorted); the response filter likewise.
HeaderList FilterRequestHeaders(const HeaderList& from_caller, const config::Upstream& upstream,
                                std::string_view client_ip, bool redacted_route,
                                RequestHeaderDrops* drops);

// Response headers from the upstream that may be passed to the caller: drops hop-by-hop
// headers (and those the upstream's Connection names), every header carrying credentials
// (IsSecretHeader with the upstream's auth: Authorization, Proxy-Authorization, Cookie,
// Set-Cookie, standAloneToken, x-logtrust-*, the configured auth header), Content-Length
// (recomputed), X-Request-Id (the gateway sends its own; read the upstream's before filtering
// if wanted). WWW-Authenticate is kept: it is a challenge (scheme, realm, error), never a
// credential, and a 401 without it breaks clients. Content-Encoding is kept (body untouched);
// Location goes through RewriteLocation.
HeaderList FilterResponseHeaders(const HeaderList& from_upstream, const config::Upstream& upstream);

// Why an upstream response head must be refused rather than passed on, or "" when it may pass:
// a field name or value holding a control character other than HTAB (a bare CR, LF, NUL, DEL).
// Clients and proxies disagree on where such a field ends (some split at a bare CR), so passing
// one on lets whoever controls the upstream's headers forge headers or a second response. The
// reason names the field, never its value (it may hold a secret).
std::string RefusedResponseHead(const HeaderList& from_upstream);

// Rewrites a Location value that points under base_url (same scheme, host, port, and under its
// path prefix at a segment boundary) to `/{upstream_name}` + the rest, query and fragment kept.
// User info ("https://user:pass@host/...") is first stripped from every absolute or
// network-path Location, rewritten or not: it is a credential and never reaches a caller.
// Accepted forms: absolute ("https://h/api/x"), network-path ("//h/api/x", base's scheme) and
// path-absolute ("/api/x", on the base's origin). The base path itself ("/api", "/api/",
// "/api?q") maps to "/{upstream_name}" without a trailing '/'. Anything else (another origin,
// a path outside the prefix, a relative-path reference) is returned unchanged but for the
// user info.
std::string RewriteLocation(std::string_view location, const std::string& base_url,
                            const std::string& upstream_name);

}  // namespace tollgate::upstream
