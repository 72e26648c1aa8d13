#include "policies/rate_limiter_memory.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace tollgate::policies {
namespace {

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MemoryLimiter::MemoryLimiter() : MemoryLimiter(SteadyMicros, WallMicros) {}

MemoryLimiter::MemoryLimiter(MicrosClock clock) : clock_(clock), wall_clock_(std::move(clock)) {}

MemoryLimiter::MemoryLimiter(MicrosClock clock, MicrosClock wall_clock)
    : clock_(std::move(clock)), wall_clock_(std::move(wall_clock)) {}

void MemoryLimiter::Acquire(LimitRequest request, std::function<void(LimitDecision)> done) {
  done(Decide(request, true));
}

void MemoryLimiter::Peek(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) {
  LimitRequest request;
  request.buckets = std::move(buckets);
  done(Decide(request, false));
}

void MemoryLimiter::StartCooldown(const std::string& upstream, int64_t milliseconds,
                                  const std::string&) {
  if (milliseconds <= 0) return;
  const int64_t until = clock_() + milliseconds * 1000;
  std::lock_guard<std::mutex> lock(cooldown_mu_);
  int64_t& current = cooldown_until_us_[upstream];
  current = std::max(current, until);
}

int64_t MemoryLimiter::CooldownMillis(const std::string& upstream, int64_t now_us) {
  if (upstream.empty()) return 0;
  std::lock_guard<std::mutex> lock(cooldown_mu_);
  auto it = cooldown_until_us_.find(upstream);
  if (it == cooldown_until_us_.end()) return 0;
  if (it->second <= now_us) {
    cooldown_until_us_.erase(it);
    return 0;
  }
  return CeilDiv(it->second - now_us, 1000);
}

LimitDecision MemoryLimiter::Decide(const LimitRequest& request, bool take) {
  const int64_t now = clock_();
  const int64_t wall = wall_clock_();
  const int64_t cooldown_ms = CooldownMillis(request.cooldown_upstream, now);

  const size_t n = request.buckets.size();
  std::vector<BucketMath> math(n);
  std::vector<size_t> shard_of(n);
  for (size_t i = 0; i < n; ++i) {
    math[i] = MathFor(request.buckets[i]);
    shard_of[i] = std::hash<std::string>{}(request.buckets[i].key) % kShards;
  }
  // Locking every involved shard in index order makes the request atomic without deadlock.
  std::vector<size_t> order = shard_of;
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(order.size());
  for (size_t s : order) locks.emplace_back(shards_[s].mu);

  std::vector<BucketState> states(n);
  for (size_t i = 0; i < n; ++i) {
    auto& buckets = shards_[shard_of[i]].buckets;
    auto it = buckets.find(request.buckets[i].key);
    if (it != buckets.end()) states[i] = it->second.state;
  }
  Evaluation evaluation = EvaluateBuckets(math, states, now, take && cooldown_ms == 0, wall);
  if (take && cooldown_ms == 0 && evaluation.status == Evaluation::Status::kAllowed) {
    for (size_t i = 0; i < n; ++i) {
      Entry& entry = shards_[shard_of[i]].buckets[request.buckets[i].key];
      entry.state = states[i];
      // A quota's ts_us is its window's (wall-clock) start: it is forgotten when the window ends.
      const int64_t from = math[i].quota_period >= 0 ? now : states[i].ts_us;
      entry.full_at_us = from + evaluation.buckets[i].reset_us;
    }
  }
  locks.clear();

  if (cooldown_ms > 0) {
    evaluation.status = Evaluation::Status::kCooldown;
    evaluation.cooldown_ms = cooldown_ms;
  }
  SweepIfDue(now);
  return ToDecision(request.buckets, evaluation, request.cooldown_upstream);
}

void MemoryLimiter::SweepIfDue(int64_t now_us) {
  {
    std::unique_lock<std::mutex> lock(sweep_mu_, std::try_to_lock);
    if (!lock.owns_lock() || now_us < next_sweep_us_) return;
    next_sweep_us_ = now_us + kSweepIntervalUs;
  }
  // A full bucket is indistinguishable from one never used, so forgetting it changes nothing.
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
      it = it->second.full_at_us <= now_us ? shard.buckets.erase(it) : std::next(it);
    }
  }
}

size_t MemoryLimiter::bucket_count() const {
  size_t count = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    count += shard.buckets.size();
  }
  return count;
}

std::unique_ptr<RateLimiter> MakeMemoryLimiter() { return std::make_unique<MemoryLimiter>(); }

}  // namespace tollgate::policies
