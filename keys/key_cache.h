// What a replica remembers of the run-time keys: the records it looked up (positive entries),
// the ids Redis did not know (negative entries), the lookup budget, and the last-use stamps
// waiting to be written.
//
// Freshness: an entry may be trusted without asking Redis again
//   - for `cache_ttl` after it was fetched, when the invalidation subscription (key_events.h)
//     was live from before the fetch until now (every change since would have reached us);
//   - otherwise for `unverified_ttl` (1 s: the promise that a revocation is in force everywhere
//     within a second holds even while the subscription is down).
// An entry that is not fresh is looked up again; when that lookup fails (Redis down), the
// entry is still used while younger than `cache_ttl`, and refused after.
// Negative entries live `negative_ttl`, or until an event names their id (a key created on
// another replica works here at once).
//
// The lookup budget bounds how many lookups of ids this replica has no entry for it makes
// (a token bucket: `lookups_per_second`, burst `lookup_burst`): a flood of random keys costs
// Redis at most that, whatever its size.
//
// Thread-safety: every method may be called from any thread (sharded mutexes; no call waits on
// anything but a short critical section).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "keys/key_record.h"

namespace tollgate::keys {

using SteadyTime = std::chrono::steady_clock::time_point;

struct KeyCacheOptions {
  std::chrono::seconds cache_ttl{300};
  std::chrono::milliseconds unverified_ttl{1000};
  std::chrono::seconds negative_ttl{10};
  double lookups_per_second = 100;
  double lookup_burst = 200;
  std::chrono::seconds last_used_interval{60};  // at most one write per key per interval
  size_t max_entries = 100000;                  // past it, the oldest half is dropped
};

class KeyCache {
 public:
  explicit KeyCache(KeyCacheOptions options);

  enum class Found {
    kFresh,     // *record may be trusted now
    kStale,     // *record and *fetched set: look it up again; usable if that fails and
                // UsableWithoutRedis(*fetched, now)
    kNegative,  // Redis said there is no such id, recently
    kMiss,      // nothing known
  };
  Found Find(std::string_view id, SteadyTime now, KeyRecord* record, SteadyTime* fetched) const;
  bool UsableWithoutRedis(SteadyTime fetched, SteadyTime now) const;

  // A lookup's answer, fetched at `now` (a record, or Redis saying no such id).
  void Put(const KeyRecord& record, SteadyTime now);
  void PutMissing(std::string_view id, SteadyTime now);
  // An event named `id` (or "*": every entry).
  void Invalidate(std::string_view id);
  void InvalidateAll();
  // The subscription came back: events published meanwhile are lost. Negative entries go (a
  // key created meanwhile works at once); records stay but are trusted no longer than
  // unverified_ttl since their fetch, so each is looked up again at its next use. They stay
  // known ids: those lookups are outside the lookup budget, and a flood of made-up keys during
  // a reconnection cannot lock out the keys this replica was serving.
  void Unverify();

  // The subscription came up (its SUBSCRIBE was confirmed) at `now`, or went down.
  void SetSubscribed(bool live, SteadyTime now);

  // Takes one lookup from the budget; false when it is spent.
  bool TakeLookup(SteadyTime now);

  // Records a use of `id` at `when`; TakeLastUsed hands each id at most once per
  // last_used_interval (the newest time), for one batched write.
  void Touch(std::string_view id, TimePoint when);
  std::vector<std::pair<std::string, TimePoint>> TakeLastUsed(SteadyTime now);

  size_t size() const;

 private:
  // Defined in key_cache.cpp: 16 shards (by hash of the id) of {mutex, entries, recent
  // invalidations, pending and handed-out touches}; the subscription epoch (bumped whenever the
  // subscription goes down or comes up; odd = live) and when it last came up; the budget bucket
  // under its own mutex.
  struct Shard;
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tollgate::keys
