// Plain HTTP request/response values for the fake upstream, and small helpers shared by its API
// models (query parsing, JSON error bodies, random ids).
//
// The API models (fake_devin, fake_devo, fake_control) work on these values only, so they never
// see Pistache; fake_server.cpp converts to and from the wire.
//
// Thread-safety: plain values; the free functions are thread-safe.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tollgate::fake {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct FakeRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // raw request target up to '?', byte for byte
  std::string query;   // raw text after '?', byte for byte ("" when absent)
  HeaderList headers;  // every header line as received: order and duplicates kept
  std::string body;

  // The first header named `name` (case-insensitive), or nullptr.
  const std::string* Header(const std::string& name) const;
};

struct FakeResponse {
  int status = 200;
  HeaderList headers;
  std::string body;
};

// Splits a raw query string into decoded (name, value) pairs, keeping order and repeats.
std::vector<std::pair<std::string, std::string>> ParseQuery(const std::string& raw);

// The first value of `name` in a raw query string, or `fallback`.
std::string QueryValue(const std::string& raw, const std::string& name,
                       const std::string& fallback = "");

// Splits "/a/b/c" into {"a","b","c"}; an empty segment ("//") is kept as "".
std::vector<std::string> SplitPath(const std::string& path);

// `bytes` random bytes as lower-case hex (OpenSSL RAND_bytes).
std::string RandomHex(size_t bytes);

// A JSON string literal (quotes included) with the JSON escapes applied.
std::string JsonQuote(const std::string& text);

// Devin-style error: application/problem+json {"type","title","status","detail"}.
FakeResponse ProblemResponse(int status, const std::string& detail);

// Devo-style error: {"error":{"code":..,"message":..}}.
FakeResponse DevoErrorResponse(int status, const std::string& message);

// The standard reason phrase of an HTTP status ("Too Many Requests"), or "Error".
const char* ReasonPhrase(int status);

}  // namespace tollgate::fake
