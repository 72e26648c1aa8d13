// The in-process limiter: token buckets in this process's memory (one gateway instance, or the
// fallback of the Redis limiter when Redis fails).
//
// Thread-safe. Buckets live in mutex-guarded shards; a request locks the shards of all its
// buckets in index order, so it is atomic against every other request and cannot deadlock.
// `done` runs inline on the caller's thread. Buckets that would be full again are evicted, so
// memory is bounded by the buckets touched within one refill time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "policies/rate_limiter.h"
#include "policies/token_bucket.h"

namespace tollgate::policies {

class MemoryLimiter : public RateLimiter {
 public:
  using MicrosClock = std::function<int64_t()>;  // monotonic microseconds

  MemoryLimiter();  // the steady clock; quotas read the system (UTC) clock
  // `clock` serves buckets and, as Unix microseconds, quota windows (tests inject one).
  explicit MemoryLimiter(MicrosClock clock);
  MemoryLimiter(MicrosClock clock, MicrosClock wall_clock);

  void Acquire(LimitRequest request, std::function<void(LimitDecision)> done) override;
  void Peek(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) override;
  using RateLimiter::StartCooldown;
  // In memory there is no slot: the tag is not used.
  void StartCooldown(const std::string& upstream, int64_t milliseconds,
                     const std::string& slot_tag) override;
  bool Ready() const override { return true; }
  std::string Describe() const override { return "memory"; }
  const LimiterStats& stats() const override { return stats_; }

  // The synchronous decision Acquire (take) and Peek (!take) report.
  LimitDecision Decide(const LimitRequest& request, bool take);

  size_t bucket_count() const;  // buckets held right now (for tests and metrics)

 private:
  struct Entry {
    BucketState state;
    int64_t full_at_us = 0;  // when the bucket is full again and can be forgotten
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Entry> buckets;
  };
  static constexpr size_t kShards = 16;
  static constexpr int64_t kSweepIntervalUs = 1000000;

  int64_t CooldownMillis(const std::string& upstream, int64_t now_us);
  void SweepIfDue(int64_t now_us);

  MicrosClock clock_;
  MicrosClock wall_clock_;
  std::array<Shard, kShards> shards_;
  std::mutex cooldown_mu_;
  std::unordered_map<std::string, int64_t> cooldown_until_us_;
  std::mutex sweep_mu_;
  int64_t next_sweep_us_ = 0;
  LimiterStats stats_;
};

}  // namespace tollgate::policies
