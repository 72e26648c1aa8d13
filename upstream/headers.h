// The one place that knows which headers are hop-by-hop, which carry secrets and which may
// cross the gateway in each direction. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "config/model.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {

// Case-insensitive ASCII comparison of header names.
bool HeaderNameEquals(std::string_view a, std::string_view b);

// Headers whose values are secrets or key material: Authorization, Proxy-Authorization,
// standAloneToken, x-logtrust-*, Cookie, Set-Cookie, and the header an upstream's auth uses.
// Their values never appear in logs, audit records or error messages.
bool IsSecretHeader(std::string_view name);
// As above, and also the header a kHeader upstream auth is configured to use.
bool IsSecretHeader(std::string_view name, const config::UpstreamAuth& auth);

// Request headers from the caller that may be forwarded: drops hop-by-hop headers (Connection
// and every header it names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*),
// Host, Content-Length (libcurl sets it), Expect, Authorization, Cookie, X-HTTP-Method-Override,
// X-Method-Override, X-HTTP-Method, X-Forwarded-*, Forwarded, X-Real-IP, X-Request-Id (the
// gateway sets its own), X-Original-URL, X-Rewrite-URL, X-Override-URL (path overrides some
// backends route by), and any header named like the upstream's secret header
// (standAloneToken, x-logtrust-*). Costs O((headers + Connection tokens) log tokens), whatever
// the caller packs into its head; the response filter likewise.
HeaderList FilterRequestHeaders(const HeaderList& from_caller);

// Response headers from the upstream that may be passed to the caller: drops hop-by-hop
// headers (and those the upstream's Connection names), Set-Cookie, Content-Length (recomputed),
// X-Request-Id (the gateway sends its own; read the upstream's before filtering if wanted);
// Content-Encoding is kept (body untouched); rewrites Location under `base_url` to
// `/{upstream_name}` + the rest.
HeaderList FilterResponseHeaders(const HeaderList& from_upstream, const std::string& base_url,
                                 const std::string& upstream_name);

// Rewrites a Location value that points under base_url (same scheme, host, port, and under its
// path prefix at a segment boundary) to `/{upstream_name}` + the rest, query and fragment kept.
// Accepted forms: absolute ("https://h/api/x"), network-path ("//h/api/x", base's scheme) and
// path-absolute ("/api/x", on the base's origin). The base path itself ("/api", "/api/",
// "/api?q") maps to "/{upstream_name}" without a trailing '/'. Anything else (another origin,
// userinfo, a path outside the prefix, a relative-path reference) is returned unchanged.
std::string RewriteLocation(std::string_view location, const std::string& base_url,
                            const std::string& upstream_name);

}  // namespace tollgate::upstream
