#include "gateway/rate_limit_headers.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <string>

namespace tollgate::gateway {
namespace {

HeaderList::iterator Find(HeaderList* headers, std::string_view name) {
  for (auto it = headers->begin(); it != headers->end(); ++it) {
    if (EqualsIgnoreCase(it->first, name)) return it;
  }
  return headers->end();
}

// Sets a numeric field to our value unless the upstream's is already more restrictive
// (`lower_is_stricter`: remaining and limit; otherwise reset, where later is stricter).
void Tighten(HeaderList* headers, std::string_view name, int64_t ours, bool lower_is_stricter) {
  auto it = Find(headers, name);
  if (it == headers->end()) {
    headers->emplace_back(std::string(name), std::to_string(ours));
    return;
  }
  char* end = nullptr;
  long long theirs = std::strtoll(it->second.c_str(), &end, 10);
  if (end == it->second.c_str()) {
    it->second = std::to_string(ours);
    return;
  }
  bool ours_stricter = lower_is_stricter ? ours < theirs : ours > theirs;
  if (ours_stricter) it->second = std::to_string(ours);
}

std::string Quote(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// RFC 9110 5.6.7: a recipient accepts all three HTTP-date forms, the preferred IMF-fixdate and
// the obsolete RFC 850 and asctime ones. The whole value must match.
bool ParseHttpDate(const std::string& text, std::tm* tm) {
  static constexpr const char* kForms[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                           "%a %b %e %H:%M:%S %Y"};
  for (const char* form : kForms) {
    *tm = std::tm{};
    const char* end = strptime(text.c_str(), form, tm);
    if (end != nullptr && *end == '\0') return true;
  }
  return false;
}

}  // namespace

std::optional<size_t> TightestBucket(const std::vector<policies::BucketSpec>& specs,
                                     const std::vector<policies::BucketLevel>& levels) {
  std::optional<size_t> best;
  for (size_t i = 0; i < specs.size() && i < levels.size(); ++i) {
    if (specs[i].shadow) continue;
    if (!best || levels[i].remaining < levels[*best].remaining ||
        (levels[i].remaining == levels[*best].remaining && specs[i].burst < specs[*best].burst)) {
      best = i;
    }
  }
  return best;
}

void AddRateLimitHeaders(const std::vector<policies::BucketSpec>& specs,
                         const std::vector<policies::BucketLevel>& levels, HeaderList* headers) {
  auto tight = TightestBucket(specs, levels);
  if (!tight) return;
  const auto& spec = specs[*tight];
  const auto& level = levels[*tight];
  int64_t remaining = static_cast<int64_t>(std::floor(std::max(0.0, level.remaining)));
  int64_t reset = static_cast<int64_t>(std::ceil(std::max(0.0, level.reset_seconds)));
  // The window is the time an empty bucket takes to refill completely.
  int64_t window = static_cast<int64_t>(
      std::ceil(static_cast<double>(spec.burst) * static_cast<double>(spec.rate.period_seconds) /
                static_cast<double>(spec.rate.tokens ? spec.rate.tokens : 1)));
  std::string policy =
      Quote(spec.name) + ";q=" + std::to_string(spec.burst) + ";w=" + std::to_string(window);
  std::string current =
      Quote(spec.name) + ";r=" + std::to_string(remaining) + ";t=" + std::to_string(reset);
  // Structured fields are lists: the upstream's own policies stay, ours come first.
  auto p = Find(headers, "RateLimit-Policy");
  if (p == headers->end()) {
    headers->emplace_back("RateLimit-Policy", policy);
  } else {
    p->second = policy + ", " + p->second;
  }
  auto c = Find(headers, "RateLimit");
  if (c == headers->end()) {
    headers->emplace_back("RateLimit", current);
  } else {
    c->second = current + ", " + c->second;
  }
  Tighten(headers, "RateLimit-Limit", static_cast<int64_t>(spec.burst), true);
  Tighten(headers, "RateLimit-Remaining", remaining, true);
  Tighten(headers, "RateLimit-Reset", reset, false);
}

int64_t ParseRetryAfterSeconds(const std::string* value,
                               std::chrono::system_clock::time_point now) {
  if (value == nullptr || value->empty()) return 1;
  int64_t seconds = 1;
  std::tm tm{};
  if (std::all_of(value->begin(), value->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    errno = 0;
    long long n = std::strtoll(value->c_str(), nullptr, 10);
    seconds = errno == ERANGE ? kMaxUpstreamCooldownSeconds : n;
  } else if (ParseHttpDate(*value, &tm)) {
    time_t when = timegm(&tm);
    time_t at = std::chrono::system_clock::to_time_t(now);
    seconds = when > at ? static_cast<int64_t>(when - at) : 1;
  }
  return std::clamp<int64_t>(seconds, 1, kMaxUpstreamCooldownSeconds);
}

}  // namespace tollgate::gateway
