// The rate-limit response fields: draft-ietf-httpapi-ratelimit-headers-10 (`RateLimit-Policy`,
// `RateLimit`) and the older `RateLimit-Limit` / `-Remaining` / `-Reset` most clients read,
// for the tightest bucket. Fields the upstream sent are kept or made more restrictive, never
// more permissive. Also the reading of an upstream's own Retry-After. Pure functions;
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gateway/http_codec.h"
#include "policies/rate_limiter.h"

namespace tollgate::gateway {

// Index of the enforcing (non-shadow) bucket with the fewest tokens left; ties go to the
// smaller burst. nullopt when no enforcing bucket applies.
std::optional<size_t> TightestBucket(const std::vector<policies::BucketSpec>& specs,
                                     const std::vector<policies::BucketLevel>& levels);

// Sent on answers while a quota is past its warn_at (issue 12).
inline constexpr char kQuotaWarningHeader[] = "Tollgate-Quota-Warning";

// A quota's nominal window for `w=` in RateLimit-Policy (a month is 30 days).
int64_t QuotaWindowSeconds(config::QuotaPeriod period);

// Adds (or tightens) the fields in *headers, which may already hold the upstream's.
void AddRateLimitHeaders(const std::vector<policies::BucketSpec>& specs,
                         const std::vector<policies::BucketLevel>& levels, HeaderList* headers);

// The longest cooldown an upstream's Retry-After can impose: a hostile or broken upstream must
// not pause every caller on every replica for a year.
constexpr int64_t kMaxUpstreamCooldownSeconds = 3600;

// An upstream's Retry-After (`value`, nullptr when absent) as whole seconds from `now`, within
// 1..kMaxUpstreamCooldownSeconds. Accepts delta-seconds (digits only; too many digits mean the
// cap) and the IMF-fixdate form of an HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT"; a date not
// after `now` gives 1). Anything else, and an empty value, gives 1 (DESIGN.md: a 429 without a
// usable Retry-After still cools the upstream for 1 s).
int64_t ParseRetryAfterSeconds(const std::string* value, std::chrono::system_clock::time_point now);

}  // namespace tollgate::gateway
