// Usage counters (issue 13): what each caller did on each upstream, per UTC day, counted on the
// request path and flushed in batches (usage_service.h).
//
// A request is counted once, when it ends (Pipeline::Done): its decision, the class of the
// status it was answered, its bytes and, when the limiter let it through, what it took from each
// bucket and quota, by limit name. An unauthenticated request has no caller ("-"); the id of the
// key it carried is counted only when the gateway knows that key (revoked, expired, wrong
// secret), never an id a made-up key carried: the number of distinct fields stays bounded by
// the config and the key store, not by what strangers send.
//
// UsageRecorder aggregates in memory. Record() takes a short lock on one of a few shards (picked
// by thread, so each loop thread mostly has its own) and does no I/O; Take() moves everything
// recorded so far out. Thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace tollgate::usage {

// Days since 1970-01-01 (UTC).
int64_t DayOf(std::chrono::system_clock::time_point t);
std::string FormatDay(int64_t day);  // "2026-12-01"
// A valid "YYYY-MM-DD" (a real calendar date), or nullopt.
std::optional<int64_t> ParseDay(std::string_view text);

// The fixed counters of a row, in the order of the CSV columns.
enum Counter : size_t {
  kRequests,
  kAllowed,
  kForbidden,
  kRateLimited,
  kUnauthenticated,
  kErrors,
  kBytesIn,
  kBytesOut,
  kStatus2xx,
  kStatus3xx,
  kStatus4xx,
  kStatus5xx,
  kCounterCount
};
// Their names, as stored and as CSV columns ("status_2xx"...).
extern const std::array<std::string_view, kCounterCount> kCounterNames;

struct UsageCounts {
  std::array<int64_t, kCounterCount> n{};
  std::map<std::string, int64_t, std::less<>> cost;                  // by limit name
  std::map<std::string, int64_t, std::less<>> unauthenticated_keys;  // by key id

  void Add(const UsageCounts& other);
  bool operator==(const UsageCounts& o) const {
    return n == o.n && cost == o.cost && unauthenticated_keys == o.unauthenticated_keys;
  }
};

// day, caller ("-": unauthenticated), upstream ("-": none, e.g. an unknown first segment).
using UsageKey = std::tuple<int64_t, std::string, std::string>;
using UsageTable = std::map<UsageKey, UsageCounts>;
void Merge(UsageTable* into, const UsageTable& from);

struct UsageEvent {
  std::chrono::system_clock::time_point when;
  std::string_view caller;  // "" = unauthenticated
  std::string_view upstream;
  std::string_view decision;  // allowed|forbidden|rate_limited|unauthenticated|anything else
  int status = 0;             // the status answered (499: the caller left)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::vector<std::pair<std::string_view, uint64_t>> costs;  // limit name, cost taken
  std::string_view unauthenticated_key;  // a known key's id ("" = none or not known)
};

// Adds one request to `counts`.
void Count(const UsageEvent& e, UsageCounts* counts);

class UsageRecorder {
 public:
  void Record(const UsageEvent& e);
  UsageTable Take();

 private:
  static constexpr size_t kShards = 16;
  struct alignas(64) Shard {
    std::mutex mu;
    UsageTable table;
  };
  std::array<Shard, kShards> shards_;
};

// How a table is stored: one hash per day, fields "<caller>|<upstream>|<counter>" where the
// counter is a kCounterNames name, "cost:<limit>" or "ukey:<key id>". Caller and upstream names
// hold no '|' (config names are letters, digits, '.', '_', '-'); a limit name may, and is last.
struct UsageField {
  int64_t day = 0;
  std::string field;
  int64_t n = 0;
};
std::vector<UsageField> EncodeTable(const UsageTable& table);
// Adds a stored field of `day` to `table`; false (nothing added) for a field it cannot read.
bool DecodeField(int64_t day, std::string_view field, int64_t n, UsageTable* table);

}  // namespace tollgate::usage
