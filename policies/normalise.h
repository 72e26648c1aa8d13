// Normalisation of the request target: the path is checked once, here, and then never re-encoded.
// What the policy sees is byte for byte what is forwarded upstream.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace tollgate::policies {

struct NormalisedTarget {
  bool ok = false;
  std::string path;   // normalised path, starts with '/', e.g. "/devin/v3beta1/enterprise/self"
  std::string query;  // the raw query string without '?', byte for byte ("" when none)
  std::string error;  // why it was rejected (safe to show a caller), when !ok
};

// `raw_target` is the origin-form request target exactly as received ("/a/b?x=1").
// Rejects: dot segments (raw, percent-encoded in any case or mix, or double-encoded such as
// %252e), encoded '/' or '\', raw '\', %00 and control characters (raw or encoded), invalid or
// truncated escapes, empty segments ("//"), ';' path parameters, absolute-form and
// authority-form targets, a fragment. Decodes percent-escapes of unreserved characters
// (ALPHA DIGIT - . _ ~) once; other escapes are kept as they are, upper-cased.
//
// Decisions beyond that list, all on the side of refusing:
// - Any %25 (an encoded '%') is refused. That covers every double encoding (%252e, %252f,
//   %255c, %2500) without having to reason about what an upstream's second decode would yield.
// - A trailing '/' ("/a/") counts as an empty segment and is refused (no Devin or Devo path
//   ends with one); the bare root "/" is accepted.
// - Raw characters outside RFC 3986 pchar (space, non-ASCII bytes, '"', '<', '>', '[', ']',
//   '^', '`', '{', '|', '}') must be percent-encoded by the client and are refused raw.
// - The query (after the first '?') is not decoded or re-encoded, but is refused when it holds
//   control characters, spaces, raw non-ASCII bytes or '#'.
// - Percent-encoded bytes must form valid UTF-8 (no overlong forms such as %C0%AE, no
//   surrogates, no stray continuation bytes), so no lenient decoder upstream finds a '.', '/'
//   or '\' we did not see.
// - Percent-encoded control characters (%00-%1F, %7F) are refused; other encoded bytes (%20,
//   %3B, UTF-8 such as %C3%A9) are kept.
// Dot segments are looked for after decoding, so "%2e%2E" is refused like "..".
NormalisedTarget NormaliseTarget(std::string_view raw_target);

}  // namespace tollgate::policies
