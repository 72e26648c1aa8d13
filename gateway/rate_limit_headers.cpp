#include "gateway/rate_limit_headers.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

namespace tollgate::gateway {
namespace {

// The fields we add or tighten, in the order they are added.
enum Field { kPolicy, kCurrent, kLimit, kRemaining, kReset, kFieldCount };
constexpr std::string_view kFieldNames[kFieldCount] = {
    "RateLimit-Policy", "RateLimit", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"};

// Where each field first occurs in *headers (npos when absent), in one pass over the list.
// Positions, not iterators: the list grows afterwards.
std::array<size_t, kFieldCount> FindFields(const HeaderList& headers) {
  std::array<size_t, kFieldCount> at;
  at.fill(std::string_view::npos);
  for (size_t i = 0; i < headers.size(); ++i) {
    const std::string& name = headers[i].first;
    // Every field name starts with "RateLimit": most headers are passed over here.
    if (name.size() < kFieldNames[kCurrent].size() ||
        !EqualsIgnoreCase(std::string_view(name).substr(0, kFieldNames[kCurrent].size()),
                          kFieldNames[kCurrent])) {
      continue;
    }
    for (size_t f = 0; f < kFieldCount; ++f) {
      if (at[f] == std::string_view::npos && EqualsIgnoreCase(name, kFieldNames[f])) {
        at[f] = i;
        break;
      }
    }
  }
  return at;
}

template <typename Integer>
void AppendDecimal(Integer value, std::string* out) {
  char text[24];
  const auto result = std::to_chars(text, text + sizeof(text), value);
  out->append(text, static_cast<size_t>(result.ptr - text));
}

std::string Decimal(int64_t value) {
  std::string out;
  AppendDecimal(value, &out);  // at most 20 characters: no allocation
  return out;
}

// Sets a numeric field to our value unless the upstream's is already more restrictive
// (`lower_is_stricter`: remaining and limit; otherwise reset, where later is stricter).
void Tighten(HeaderList* headers, size_t at, Field field, int64_t ours, bool lower_is_stricter) {
  if (at == std::string_view::npos) {
    headers->emplace_back(std::string(kFieldNames[field]), Decimal(ours));
    return;
  }
  std::string& theirs_text = (*headers)[at].second;
  char* end = nullptr;
  long long theirs = std::strtoll(theirs_text.c_str(), &end, 10);
  if (end == theirs_text.c_str()) {
    theirs_text = Decimal(ours);
    return;
  }
  bool ours_stricter = lower_is_stricter ? ours < theirs : ours > theirs;
  if (ours_stricter) theirs_text = Decimal(ours);
}

// `"name";<a>=<x>;<b>=<y>`: one member of a structured-field list.
template <typename X, typename Y>
std::string Member(const std::string& name, std::string_view a, X x, std::string_view b, Y y) {
  std::string out;
  out.reserve(name.size() + 52);
  out.push_back('"');
  for (char c : name) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  out.append(a);
  AppendDecimal(x, &out);
  out.append(b);
  AppendDecimal(y, &out);
  return out;
}

// Our member first; the upstream's own list (`theirs`, when it sent one) stays after it.
void Prepend(HeaderList* headers, size_t at, Field field, std::string ours) {
  if (at == std::string_view::npos) {
    headers->emplace_back(std::string(kFieldNames[field]), std::move(ours));
    return;
  }
  std::string& theirs = (*headers)[at].second;
  ours.append(", ").append(theirs);
  theirs = std::move(ours);
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

int64_t QuotaWindowSeconds(config::QuotaPeriod period) {
  switch (period) {
    case config::QuotaPeriod::kDay:
      return 86400;
    case config::QuotaPeriod::kWeek:
      return 7 * 86400;
    case config::QuotaPeriod::kMonth:
      break;
  }
  return 30 * 86400;
}

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
  // Quotas past their warn_at: `"<name>";used=<n>;limit=<m>`, one list member each.
  std::string warning;
  for (const auto& level : levels) {
    if (!level.warn) continue;
    if (!warning.empty()) warning += ", ";
    warning += Member(level.name, ";used=", static_cast<int64_t>(level.used),
                      ";limit=", static_cast<int64_t>(level.burst));
  }
  if (!warning.empty()) headers->emplace_back(kQuotaWarningHeader, std::move(warning));
  auto tight = TightestBucket(specs, levels);
  if (!tight) return;
  const auto& spec = specs[*tight];
  const auto& level = levels[*tight];
  int64_t remaining = static_cast<int64_t>(std::floor(std::max(0.0, level.remaining)));
  int64_t reset = static_cast<int64_t>(std::ceil(std::max(0.0, level.reset_seconds)));
  // The window is the time an empty bucket takes to refill completely; a quota's is its
  // calendar period (a month counted as 30 days: `t` says when this one really ends).
  int64_t window = static_cast<int64_t>(
      std::ceil(static_cast<double>(spec.burst) * static_cast<double>(spec.rate.period_seconds) /
                static_cast<double>(spec.rate.tokens ? spec.rate.tokens : 1)));
  if (spec.quota) window = QuotaWindowSeconds(spec.quota->period);
  // Structured fields are lists: the upstream's own policies stay, ours come first.
  const std::array<size_t, kFieldCount> at = FindFields(*headers);
  headers->reserve(headers->size() + kFieldCount);
  Prepend(headers, at[kPolicy], kPolicy, Member(spec.name, ";q=", spec.burst, ";w=", window));
  Prepend(headers, at[kCurrent], kCurrent, Member(spec.name, ";r=", remaining, ";t=", reset));
  Tighten(headers, at[kLimit], kLimit, static_cast<int64_t>(spec.burst), true);
  Tighten(headers, at[kRemaining], kRemaining, remaining, true);
  Tighten(headers, at[kReset], kReset, reset, false);
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
