// The rate-limit response fields: draft-ietf-httpapi-ratelimit-headers-10 (`RateLimit-Policy`,
// `RateLimit`) and the older `RateLimit-Limit` / `-Remaining` / `-Reset` most clients read,
// for the tightest bucket. Fields the upstream sent are kept or made more restrictive, never
// more permissive. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <vector>

#include "gateway/http_codec.h"
#include "policies/rate_limiter.h"

namespace tollgate::gateway {

// Index of the enforcing (non-shadow) bucket with the fewest tokens left; ties go to the
// smaller burst. nullopt when no enforcing bucket applies.
std::optional<size_t> TightestBucket(const std::vector<policies::BucketSpec>& specs,
                                     const std::vector<policies::BucketLevel>& levels);

// Adds (or tightens) the fields in *headers, which may already hold the upstream's.
void AddRateLimitHeaders(const std::vector<policies::BucketSpec>& specs,
                         const std::vector<policies::BucketLevel>& levels, HeaderList* headers);

}  // namespace tollgate::gateway
