// Token-bucket rate limiting: the limit stage of the pipeline.
//
// A request names every bucket that applies to it (upstream-wide, rule, caller), each with the
// cost to take. The limiter takes `cost` from all of them or from none (a rejected request
// takes nothing from any bucket), atomically with respect to every other request and, with the
// Redis backend, every other replica. Shadow buckets are evaluated and take tokens when they
// can, but never reject: they only report `would_limit`.
//
// An upstream cooldown (set after the upstream answered 429) rejects every request to that
// upstream until it expires, checked in the same atomic step.
//
// Implementations are thread-safe. `done` may run inline (memory backend); the Redis backend
// answers on the calling thread's loop::Loop (a later iteration, never inside Acquire), or on its
// own loop thread for callers that run no loop. `done` must not block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/model.h"

namespace tollgate::policies {

class RedisTopology;

struct BucketSpec {
  std::string key;   // unique bucket id without prefix: "bucket:<limit>:<caller>" or
                     // "bucket:<limit>:_shared"
  std::string name;  // the limit's name, for headers and audit
  config::Rate rate;
  uint64_t burst = 0;
  uint64_t cost = 1;
  bool shadow = false;
  // A calendar quota instead of a token bucket (issue 12): `rate` and `burst` are unused; the
  // quota counts `cost` per window (quota_window.h) up to `quota->amount`.
  std::optional<config::Quota> quota;
  // Issue 14: a request that lacks tokens but would have them within `wait_ms` is not refused:
  // its tokens are reserved now (the level goes below zero, never below what wait_ms covers)
  // and the decision says how long to wait. 0 refuses as before; quotas and shadow buckets
  // never wait. `max_waiting` is the gateway's per-caller cap (the limiter does not read it).
  uint32_t wait_ms = 0;
  uint32_t max_waiting = 0;
};

struct BucketLevel {
  std::string name;
  uint64_t burst = 0;
  // Tokens left after this request (before it, for a rejected one); for a request that waits,
  // as of the end of its wait, when its tokens are taken.
  double remaining = 0;
  double reset_seconds = 0;        // seconds until the bucket is full again (from then)
  double retry_after_seconds = 0;  // seconds until `cost` tokens are available (0 if they are)
  bool shadow = false;
  // Quotas: `burst` is the quota's amount, `remaining` what is left in the window, `reset_seconds`
  // the time to the window's end; `used` = burst - remaining; `warn` past the quota's warn_at.
  bool quota = false;
  uint64_t used = 0;
  bool warn = false;
};

struct LimitRequest {
  std::vector<BucketSpec> buckets;
  std::string cooldown_upstream;  // upstream whose 429 cooldown applies ("" = none)
};

struct LimitDecision {
  enum class Outcome { kAllowed, kLimited, kCooldown, kUnavailable };
  Outcome outcome = Outcome::kAllowed;
  std::vector<BucketLevel> levels;  // one per requested bucket, same order
  std::string limited_by;           // bucket name (kLimited) or upstream name (kCooldown)
  double retry_after_seconds = 0;   // kLimited / kCooldown
  bool would_limit = false;         // a shadow bucket lacked tokens
  bool fallback = false;            // decided by per-process buckets because Redis failed
  std::string error;                // kUnavailable: why (never a secret)
  // kAllowed: how long the request must wait before it is forwarded (its tokens are reserved
  // for then), and the bucket that made it wait longest. 0 / "" when it need not wait.
  int64_t wait_us = 0;
  std::string wait_bucket;
};

// Counters the metrics endpoint reads.
struct LimiterStats {
  std::atomic<uint64_t> redis_errors{0};  // failed Redis calls (timeouts, I/O, script errors)
  std::atomic<uint64_t> fallbacks{0};     // decisions made locally because Redis failed
  std::atomic<uint64_t> breaker_skips{
      0};  // decisions that skipped Redis while the breaker was open
  std::atomic<uint64_t> script_reloads{0};  // NOSCRIPT answered by reloading the script
  // Writes of queued commands to Redis: at most one per loop iteration and connection, however
  // many decisions that iteration asked for (decisions / writes is the pipelining factor).
  std::atomic<uint64_t> redis_writes{0};
  // How long the open circuit breaker skips Redis before its next probe; 0 while it is closed.
  std::atomic<int64_t> breaker_backoff_ms{0};
};

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  virtual void Acquire(LimitRequest request, std::function<void(LimitDecision)> done) = 0;
  // Current levels without taking anything (for /_tollgate/whoami); cost is ignored.
  virtual void Peek(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) = 0;
  // Rejects every Acquire naming `upstream` for `milliseconds` (all replicas, with Redis).
  virtual void StartCooldown(const std::string& upstream, int64_t milliseconds) = 0;
  // false while Redis is unreachable and on_error is `deny` (for /readyz).
  virtual bool Ready() const = 0;
  virtual std::string Describe() const = 0;  // "memory", "redis 127.0.0.1:6379/0"
  virtual const LimiterStats& stats() const = 0;
};

std::unique_ptr<RateLimiter> MakeMemoryLimiter();
// Never blocks the caller's thread on Redis. Falls back per config.on_error.
std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config);
// The same with `connections` loop threads (each with its own connection) for callers that run
// no loop; callers on a loop::Loop thread use that loop's connection.
std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config, int connections);
// The same, asking `topology` where each command goes (tests inject one; the others use
// RedisTopology::For(config)).
std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config,
                                              std::shared_ptr<RedisTopology> topology,
                                              int connections);

}  // namespace tollgate::policies
