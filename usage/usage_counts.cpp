#include "usage/usage_counts.h"

#include <ctime>
#include <functional>
#include <thread>

#include "policies/quota_window.h"

namespace tollgate::usage {

const std::array<std::string_view, kCounterCount> kCounterNames = {
    "requests", "allowed",   "forbidden",  "rate_limited", "unauthenticated", "errors",
    "bytes_in", "bytes_out", "status_2xx", "status_3xx",   "status_4xx",      "status_5xx"};

namespace {

constexpr std::string_view kCostPrefix = "cost:";
constexpr std::string_view kKeyPrefix = "ukey:";

std::string_view OrDash(std::string_view s) { return s.empty() ? std::string_view("-") : s; }

}  // namespace

int64_t DayOf(std::chrono::system_clock::time_point t) {
  const int64_t s = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  return s >= 0 ? s / 86400 : (s - 86399) / 86400;
}

std::string FormatDay(int64_t day) {
  const time_t t = static_cast<time_t>(day * 86400);
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[32];
  snprintf(buf, sizeof buf, "%04d-%02d-%02d", parts.tm_year + 1900, parts.tm_mon + 1,
           parts.tm_mday);
  return buf;
}

std::optional<int64_t> ParseDay(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  auto number = [&](size_t pos, size_t len) -> std::optional<int64_t> {
    int64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  auto y = number(0, 4), m = number(5, 2), d = number(8, 2);
  if (!y || !m || !d || *y < 1970 || *m < 1 || *m > 12 || *d < 1 || *d > 31) return std::nullopt;
  const int64_t day = policies::DaysFromCivil(*y, *m, *d);
  if (FormatDay(day) != text) return std::nullopt;  // 2026-02-30 and the like
  return day;
}

void UsageCounts::Add(const UsageCounts& other) {
  for (size_t i = 0; i < kCounterCount; ++i) n[i] += other.n[i];
  for (const auto& [name, v] : other.cost) cost[name] += v;
  for (const auto& [id, v] : other.unauthenticated_keys) unauthenticated_keys[id] += v;
}

void Merge(UsageTable* into, const UsageTable& from) {
  for (const auto& [key, counts] : from) (*into)[key].Add(counts);
}

void Count(const UsageEvent& e, UsageCounts* c) {
  c->n[kRequests] += 1;
  const std::string_view d = e.decision;
  const Counter decision = d == "allowed"           ? kAllowed
                           : d == "forbidden"       ? kForbidden
                           : d == "rate_limited"    ? kRateLimited
                           : d == "unauthenticated" ? kUnauthenticated
                                                    : kErrors;
  c->n[decision] += 1;
  c->n[kBytesIn] += static_cast<int64_t>(e.bytes_in);
  c->n[kBytesOut] += static_cast<int64_t>(e.bytes_out);
  if (e.status >= 200 && e.status < 600) c->n[kStatus2xx + (e.status / 100 - 2)] += 1;
  for (const auto& [name, cost] : e.costs) {
    auto it = c->cost.find(name);
    if (it == c->cost.end()) it = c->cost.emplace(std::string(name), 0).first;
    it->second += static_cast<int64_t>(cost);
  }
  if (!e.unauthenticated_key.empty()) {
    auto it = c->unauthenticated_keys.find(e.unauthenticated_key);
    if (it == c->unauthenticated_keys.end()) {
      it = c->unauthenticated_keys.emplace(std::string(e.unauthenticated_key), 0).first;
    }
    it->second += 1;
  }
}

void UsageRecorder::Record(const UsageEvent& e) {
  // One shard per thread, mostly: the loops rarely meet on a lock.
  thread_local const size_t shard = std::hash<std::thread::id>()(std::this_thread::get_id());
  UsageKey key(DayOf(e.when), std::string(OrDash(e.caller)), std::string(OrDash(e.upstream)));
  Shard& s = shards_[shard % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  Count(e, &s.table[key]);
}

UsageTable UsageRecorder::Take() {
  UsageTable out;
  for (Shard& s : shards_) {
    UsageTable taken;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      taken.swap(s.table);
    }
    if (out.empty()) {
      out.swap(taken);
    } else {
      Merge(&out, taken);
    }
  }
  return out;
}

std::vector<UsageField> EncodeTable(const UsageTable& table) {
  std::vector<UsageField> out;
  for (const auto& [key, counts] : table) {
    const auto& [day, caller, upstream] = key;
    const std::string prefix = caller + "|" + upstream + "|";
    for (size_t i = 0; i < kCounterCount; ++i) {
      if (counts.n[i] != 0)
        out.push_back({day, prefix + std::string(kCounterNames[i]), counts.n[i]});
    }
    for (const auto& [name, n] : counts.cost) {
      out.push_back({day, prefix + std::string(kCostPrefix) + name, n});
    }
    for (const auto& [id, n] : counts.unauthenticated_keys) {
      out.push_back({day, prefix + std::string(kKeyPrefix) + id, n});
    }
  }
  return out;
}

bool DecodeField(int64_t day, std::string_view field, int64_t n, UsageTable* table) {
  const size_t a = field.find('|');
  if (a == std::string_view::npos) return false;
  const size_t b = field.find('|', a + 1);
  if (b == std::string_view::npos) return false;
  const std::string_view counter = field.substr(b + 1);
  UsageKey key(day, std::string(field.substr(0, a)), std::string(field.substr(a + 1, b - a - 1)));
  if (counter.substr(0, kCostPrefix.size()) == kCostPrefix) {
    (*table)[key].cost[std::string(counter.substr(kCostPrefix.size()))] += n;
    return true;
  }
  if (counter.substr(0, kKeyPrefix.size()) == kKeyPrefix) {
    (*table)[key].unauthenticated_keys[std::string(counter.substr(kKeyPrefix.size()))] += n;
    return true;
  }
  for (size_t i = 0; i < kCounterCount; ++i) {
    if (counter == kCounterNames[i]) {
      (*table)[key].n[i] += n;
      return true;
    }
  }
  return false;
}

}  // namespace tollgate::usage
