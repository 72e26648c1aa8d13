// Syntax checks for the config's string-valued fields that JSON Schema cannot express: rates,
// RFC 3339 times, path templates, listen addresses, base URLs, Redis URLs, key hashes, and JSON
// pointer building. Internal to config/ (the loader and DescribeConfig use them); pure functions,
// thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace tollgate::config::syntax {

// "2027-01-01T00:00:00Z", "2027-01-01T02:00:00.5+02:00". nullopt when malformed or out of range.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text);
// UTC, whole seconds: "2027-01-01T00:00:00Z".
std::string FormatRfc3339(std::chrono::system_clock::time_point time);

// "20/s", "50/day": the inverse of ParseRate.
std::string FormatRate(const Rate& rate);

// A light syntactic check of a route template (policies/ compiles it for real). Returns the
// reason it is malformed, or "" when it is well formed; fills *params with its `{name}`s.
std::string CheckPathTemplate(std::string_view text, std::vector<std::string>* params);

// "host:port" or "[v6]:port", port 1-65535.
bool IsHostPort(std::string_view text);

// http(s)://host[:port][/path] without user info, query or fragment. Returns the URL without
// trailing '/', or nullopt with *error set.
std::optional<std::string> NormaliseBaseUrl(std::string_view text, std::string* error);

struct RedisAddress {
  std::string host;
  int port = 6379;
  int db = 0;
};
// redis://host[:port][/db]. A user or password in the URL is an error: secrets come from
// password_env / password_file, and a URL is printed in messages.
std::optional<RedisAddress> ParseRedisUrl(std::string_view text, std::string* error);

// Exactly 64 hex digits, either case.
bool IsSha256Hex(std::string_view text);

// Letters, digits, '.', '_', '-', starting with a letter or digit: safe in a URL path segment,
// a Redis key and a log line.
bool IsValidName(std::string_view name);

// `base` + "/" + `token` with RFC 6901 escaping (~ -> ~0, / -> ~1).
std::string JoinPointer(const std::string& base, std::string_view token);

// Calls `each` with every name=value pair of a URL query string ('&'-separated; empty pairs
// skipped; a pair without '=' has an empty value), both still percent-encoded. Stops at, and
// returns, the first non-empty string `each` returns (an error); "" when every pair was fine.
std::string ForEachQueryParam(
    std::string_view query,
    const std::function<std::string(std::string_view name, std::string_view value)>& each);
std::string JoinPointer(const std::string& base, size_t index);

}  // namespace tollgate::config::syntax
