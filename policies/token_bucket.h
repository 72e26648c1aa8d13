// Exact token-bucket arithmetic shared by every limiter backend.
//
// A limit of N tokens per P seconds keeps its level in "token-microseconds": one token is
// P * 1e6 units and every elapsed microsecond adds N units. Every quantity is then an integer
// below 2^53, so the same steps are exact in C++ int64 and in the doubles of Redis's Lua, and a
// bucket never drifts however long it runs. The Redis script (token_bucket_script.h) mirrors
// EvaluateBuckets step for step; the unit tests run one table of cases against both.
//
// Pure functions on values: safe from any thread.
#pragma once

#include <cstdint>
#include <vector>

#include "policies/rate_limiter.h"

namespace tollgate::policies {

// Quantities beyond this would lose exactness in Lua; MathFor saturates to it.
constexpr int64_t kMaxExactUnits = int64_t{1} << 53;

// One bucket's parameters in units.
struct BucketMath {
  int64_t unit = 1;      // units per token: period_seconds * 1e6
  int64_t refill = 1;    // units added per microsecond: rate.tokens
  int64_t capacity = 0;  // burst * unit (burst 0 means rate.tokens)
  int64_t cost = 0;      // cost * unit
  bool shadow = false;
  // A calendar quota (unit 1, capacity = amount): 0 day, 1 week, 2 month; -1 for a bucket.
  int quota_period = -1;
  int64_t reset_offset_s = 0;  // reset_hour_utc * 3600
  // How long a request may wait for its tokens (µs; 0: never). A waiting request takes them at
  // once, so the level may fall to -wait_us * refill but never below.
  int64_t wait_us = 0;
};

BucketMath MathFor(const BucketSpec& spec);

// Stored state of one bucket. A bucket that does not exist yet starts full.
// A quota stores what its window used in `level` and the window's start in `ts_us` (Unix
// microseconds): a state of an earlier window counts as nothing used.
struct BucketState {
  bool exists = false;
  int64_t level = 0;  // units
  int64_t ts_us = 0;  // when `level` was measured
};

// The outcome for one bucket, in units and microseconds.
struct BucketResult {
  int64_t level = 0;     // after taking (allowed) or as found (rejected / peek)
  int64_t reset_us = 0;  // until full again
  int64_t retry_us = 0;  // until `cost` is available (0 if it is now)
};

struct Evaluation {
  enum class Status { kAllowed = 0, kLimited = 1, kCooldown = 2 };
  Status status = Status::kAllowed;
  bool would_limit = false;  // a shadow bucket lacked `cost`
  // kLimited: the bucket that set retry_us; kAllowed with a wait: the one that set wait_us.
  int limiting = -1;
  int64_t retry_us = 0;     // kLimited: max over the non-shadow buckets that refused
  int64_t wait_us = 0;      // kAllowed: max over the buckets whose tokens are reserved ahead
  int64_t cooldown_ms = 0;  // kCooldown: what is left of the upstream's cooldown
  std::vector<BucketResult> buckets;
};

// ceil(a / b) for a >= 0, b > 0.
int64_t CeilDiv(int64_t a, int64_t b);

// The level of a bucket refilled up to `now_us` (a clock going backwards refills nothing).
int64_t RefilledLevel(const BucketMath& math, const BucketState& state, int64_t now_us);

// Decides one request over `states` (one per bucket, same order as `math`). With `take` and when
// every non-shadow bucket holds `cost` or will within its wait_us, takes it from all (shadow
// ones when they can) and updates `states` to `now_us`; otherwise leaves `states` untouched.
// `take` false is a peek.
// Quotas find their calendar window from `wall_us` (Unix microseconds; -1: `now_us` is wall time).
Evaluation EvaluateBuckets(const std::vector<BucketMath>& math, std::vector<BucketState>& states,
                           int64_t now_us, bool take, int64_t wall_us = -1);

// The public decision for `specs` (cooldown carries the upstream's name in `limited_by`).
LimitDecision ToDecision(const std::vector<BucketSpec>& specs, const Evaluation& evaluation,
                         const std::string& cooldown_upstream);

}  // namespace tollgate::policies
