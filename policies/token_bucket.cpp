#include "policies/token_bucket.h"

#include <algorithm>

#include "policies/quota_window.h"

namespace tollgate::policies {
namespace {

constexpr int64_t kMicrosPerSecond = 1000000;

// Saturates instead of overflowing: the config loader rejects limits this large, so saturation
// only guards against a caller that skipped it.
int64_t SaturatingProduct(uint64_t a, uint64_t b) {
  const uint64_t max = static_cast<uint64_t>(kMaxExactUnits);
  if (a != 0 && b > max / a) return kMaxExactUnits;
  return static_cast<int64_t>(std::min(a * b, max));
}

}  // namespace

BucketMath MathFor(const BucketSpec& spec) {
  BucketMath math;
  math.unit = SaturatingProduct(std::max<uint64_t>(spec.rate.period_seconds, 1), kMicrosPerSecond);
  // A rate of zero tokens would never refill and divide by zero below; one unit per
  // microsecond is the slowest refill the representation has.
  math.refill = std::max<int64_t>(SaturatingProduct(spec.rate.tokens, 1), 1);
  const uint64_t burst = spec.burst != 0 ? spec.burst : spec.rate.tokens;
  math.capacity = SaturatingProduct(burst, static_cast<uint64_t>(math.unit));
  math.cost = SaturatingProduct(spec.cost, static_cast<uint64_t>(math.unit));
  math.shadow = spec.shadow;
  if (spec.quota) {  // whole units that never refill
    math.unit = 1;
    math.refill = 1;
    math.capacity = SaturatingProduct(spec.quota->amount, 1);
    math.cost = SaturatingProduct(spec.cost, 1);
    math.quota_period = static_cast<int>(spec.quota->period);
    math.reset_offset_s = int64_t{spec.quota->reset_hour_utc} * 3600;
  }
  // A quota's next token comes at its window's end and a shadow bucket never refuses: neither
  // waits. The floor -wait_us * refill stays within exact units (the loader refuses more).
  if (!spec.quota && !spec.shadow && spec.wait_ms > 0) {
    math.wait_us =
        std::min<int64_t>(int64_t{spec.wait_ms} * 1000,
                          std::max<int64_t>(kMaxExactUnits - math.capacity, 0) / math.refill);
  }
  return math;
}

int64_t CeilDiv(int64_t a, int64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

int64_t RefilledLevel(const BucketMath& math, const BucketState& state, int64_t now_us) {
  if (!state.exists) return math.capacity;
  // A lowered burst (config reload) clamps what was stored under the old one.
  const int64_t level = std::min(state.level, math.capacity);
  if (now_us <= state.ts_us) return level;
  const int64_t deficit = math.capacity - level;
  if (deficit == 0) return level;
  // Comparing the elapsed time with the time to full, rather than multiplying first, keeps
  // elapsed * refill below the deficit and so below 2^53: no overflow after a long idle spell.
  const int64_t elapsed = now_us - state.ts_us;
  if (elapsed >= CeilDiv(deficit, math.refill)) return math.capacity;
  return level + elapsed * math.refill;
}

namespace {

// What a quota has left in the window holding `wall_us` (stored in *window); a state of an
// earlier window counts as nothing used.
int64_t QuotaLevel(const BucketMath& math, const BucketState& state, int64_t wall_us,
                   QuotaWindow* window) {
  *window = QuotaWindowAt(static_cast<config::QuotaPeriod>(math.quota_period),
                          static_cast<int>(math.reset_offset_s / 3600), wall_us / kMicrosPerSecond);
  const bool current = state.exists && state.ts_us == window->start_s * kMicrosPerSecond;
  return std::max<int64_t>(math.capacity - (current ? state.level : 0), 0);
}

}  // namespace

Evaluation EvaluateBuckets(const std::vector<BucketMath>& math, std::vector<BucketState>& states,
                           int64_t now_us, bool take, int64_t wall_us) {
  if (wall_us < 0) wall_us = now_us;
  Evaluation evaluation;
  evaluation.buckets.resize(math.size());
  std::vector<int64_t> levels(math.size());
  std::vector<QuotaWindow> windows(math.size());
  bool enough = true;
  // Buckets that lack `cost` now but have it within their wait_us: their tokens are reserved.
  std::vector<char> waits(math.size(), 0);
  int waiting = -1;
  int64_t wait_us = 0;
  for (size_t i = 0; i < math.size(); ++i) {
    const BucketMath& m = math[i];
    levels[i] = m.quota_period >= 0 ? QuotaLevel(m, states[i], wall_us, &windows[i])
                                    : RefilledLevel(m, states[i], now_us);
    if (levels[i] >= m.cost) continue;
    // A cost above the burst can never be met; the time to full is the honest best answer.
    // A quota gives nothing back before its window ends, however little is missing.
    const int64_t needed = std::min(m.cost, m.capacity) - levels[i];
    const int64_t retry = m.quota_period >= 0 ? windows[i].end_s * kMicrosPerSecond - wall_us
                                              : CeilDiv(needed, m.refill);
    evaluation.buckets[i].retry_us = retry;
    if (m.shadow) {
      evaluation.would_limit = true;
    } else if (take && m.cost <= m.capacity && retry <= m.wait_us) {
      waits[i] = 1;
      if (waiting < 0 || retry > wait_us) {
        waiting = static_cast<int>(i);
        wait_us = retry;
      }
    } else {
      enough = false;
      if (evaluation.limiting < 0 || retry > evaluation.retry_us) {
        evaluation.limiting = static_cast<int>(i);
        evaluation.retry_us = retry;
      }
    }
  }
  evaluation.status = enough ? Evaluation::Status::kAllowed : Evaluation::Status::kLimited;
  if (enough && waiting >= 0) {
    evaluation.limiting = waiting;
    evaluation.wait_us = wait_us;
  }
  for (size_t i = 0; i < math.size(); ++i) {
    if (math[i].quota_period >= 0) {
      if (enough && take && levels[i] >= math[i].cost) {
        levels[i] -= math[i].cost;
        states[i] =
            BucketState{true, math[i].capacity - levels[i], windows[i].start_s * kMicrosPerSecond};
      }
      evaluation.buckets[i].level = levels[i];
      evaluation.buckets[i].reset_us = windows[i].end_s * kMicrosPerSecond - wall_us;
      continue;
    }
    if (enough && take) {
      if (levels[i] >= math[i].cost || waits[i]) levels[i] -= math[i].cost;
      const int64_t ts = states[i].exists ? std::max(states[i].ts_us, now_us) : now_us;
      states[i] = BucketState{true, levels[i], ts};
    }
    evaluation.buckets[i].level = levels[i];
    evaluation.buckets[i].reset_us = CeilDiv(math[i].capacity - levels[i], math[i].refill);
  }
  return evaluation;
}

LimitDecision ToDecision(const std::vector<BucketSpec>& specs, const Evaluation& evaluation,
                         const std::string& cooldown_upstream) {
  LimitDecision decision;
  decision.levels.reserve(specs.size());
  for (size_t i = 0; i < specs.size() && i < evaluation.buckets.size(); ++i) {
    const BucketSpec& spec = specs[i];
    const BucketResult& result = evaluation.buckets[i];
    const BucketMath math = MathFor(spec);
    BucketLevel level;
    level.name = spec.name;
    level.burst = spec.burst != 0 ? spec.burst : spec.rate.tokens;
    level.remaining = static_cast<double>(result.level) / static_cast<double>(math.unit);
    level.reset_seconds = static_cast<double>(result.reset_us) / kMicrosPerSecond;
    level.retry_after_seconds = static_cast<double>(result.retry_us) / kMicrosPerSecond;
    level.shadow = spec.shadow;
    if (evaluation.status == Evaluation::Status::kAllowed && evaluation.wait_us > 0 &&
        !spec.quota) {
      // A waiting request is answered after its wait: the fields say what they will be then.
      const int64_t then = std::min(math.capacity, result.level + evaluation.wait_us * math.refill);
      level.remaining = static_cast<double>(then) / static_cast<double>(math.unit);
      level.reset_seconds =
          static_cast<double>(std::max<int64_t>(result.reset_us - evaluation.wait_us, 0)) /
          kMicrosPerSecond;
    }
    if (spec.quota) {
      level.quota = true;
      level.burst = spec.quota->amount;
      level.used = spec.quota->amount -
                   std::min<uint64_t>(static_cast<uint64_t>(result.level), spec.quota->amount);
      level.warn =
          spec.quota->warn_at && static_cast<double>(level.used) >=
                                     *spec.quota->warn_at * static_cast<double>(spec.quota->amount);
    }
    decision.levels.push_back(std::move(level));
  }
  decision.would_limit = evaluation.would_limit;
  switch (evaluation.status) {
    case Evaluation::Status::kAllowed:
      decision.outcome = LimitDecision::Outcome::kAllowed;
      if (evaluation.wait_us > 0 && evaluation.limiting >= 0 &&
          static_cast<size_t>(evaluation.limiting) < specs.size()) {
        decision.wait_us = evaluation.wait_us;
        decision.wait_bucket = specs[evaluation.limiting].name;
      }
      break;
    case Evaluation::Status::kLimited:
      decision.outcome = LimitDecision::Outcome::kLimited;
      if (evaluation.limiting >= 0 && static_cast<size_t>(evaluation.limiting) < specs.size()) {
        decision.limited_by = specs[evaluation.limiting].name;
      }
      decision.retry_after_seconds = static_cast<double>(evaluation.retry_us) / kMicrosPerSecond;
      break;
    case Evaluation::Status::kCooldown:
      decision.outcome = LimitDecision::Outcome::kCooldown;
      decision.limited_by = cooldown_upstream;
      decision.retry_after_seconds = static_cast<double>(evaluation.cooldown_ms) / 1000.0;
      break;
  }
  return decision;
}

}  // namespace tollgate::policies
