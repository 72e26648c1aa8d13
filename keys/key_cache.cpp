#include "keys/key_cache.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>

namespace tollgate::keys {
namespace {

constexpr size_t kShards = 16;

// An answer put within this long after an event named its id (or "*") may have been read from
// Redis before that change: the event found no entry to drop, so the answer would otherwise be
// trusted for the whole cache_ttl. Such an answer is trusted only for unverified_ttl (a negative
// one not at all). Longer than any lookup takes (each has the Redis timeout as its deadline).
constexpr std::chrono::seconds kRaceWindow{5};

struct Entry {
  bool negative = false;
  KeyRecord record;  // positive entries only; without note and created_by
  SteadyTime fetched{};
  // The subscription epoch the entry was put in when the subscription had been live since
  // before the fetch (and no event raced the lookup); 0 otherwise. Trusted for cache_ttl only
  // while the epoch is still the same.
  uint64_t covered_epoch = 0;
};

KeyRecord Slim(const KeyRecord& record) {
  KeyRecord slim;
  slim.id = record.id;
  slim.caller = record.caller;
  slim.sha256 = record.sha256;
  slim.created_at = record.created_at;
  slim.expires_at = record.expires_at;
  slim.revoked_at = record.revoked_at;
  slim.last_used_at = record.last_used_at;
  slim.replaced_by = record.replaced_by;
  return slim;
}

int64_t Ticks(SteadyTime t) { return t.time_since_epoch().count(); }
SteadyTime FromTicks(int64_t ticks) { return SteadyTime(SteadyTime::duration(ticks)); }

}  // namespace

struct KeyCache::Shard {
  std::mutex mu;
  std::unordered_map<std::string, Entry> entries;
  std::unordered_map<std::string, SteadyTime> invalidated;  // id -> when an event named it
  std::unordered_map<std::string, TimePoint> touched;       // id -> newest use, not handed out
  std::unordered_map<std::string, SteadyTime> handed;       // id -> when last handed out
};

struct KeyCache::State {
  explicit State(KeyCacheOptions o)
      : options(o), capacity(std::max(1.0, o.lookup_burst)), tokens(capacity) {}

  Shard& ShardOf(std::string_view id) {
    return shards[std::hash<std::string_view>{}(id) % kShards];
  }

  // Invalidate and InvalidateAll take no time: they stamp the latest time any call brought
  // (every call that precedes a lookup brings one), on the same clock as the callers'.
  void SawTime(SteadyTime now) {
    const int64_t ticks = Ticks(now);
    int64_t seen = latest.load(std::memory_order_relaxed);
    while (ticks > seen && !latest.compare_exchange_weak(seen, ticks, std::memory_order_relaxed)) {
    }
  }
  // False before any call brought a time: then no lookup has started that an event could race.
  bool Latest(SteadyTime* t) const {
    const int64_t ticks = latest.load(std::memory_order_relaxed);
    *t = FromTicks(ticks);
    return ticks != kNever;
  }

  // True when an event named `id` (or all) so recently before `now` that a lookup answered now
  // may have been read before the change. Called with the shard's mutex held.
  bool Raced(Shard& shard, const std::string& id, SteadyTime now) const {
    const auto recent = [&](SteadyTime when) { return now - when < kRaceWindow; };
    if (invalidated_all_once.load() && recent(FromTicks(invalidated_all.load()))) return true;
    const auto it = shard.invalidated.find(id);
    return it != shard.invalidated.end() && recent(it->second);
  }

  // Stores a lookup's answer fetched at `now`. The check for an event that named the id while
  // the lookup was out is made under the same lock as the insertion: an event is then either
  // seen here or comes after, and erases what was stored.
  void Insert(std::string id, Entry entry, SteadyTime now) {
    Shard& shard = ShardOf(id);
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      if (Raced(shard, id, now)) {
        // A "no such id" may predate the id's creation: not kept. A record may predate a
        // revocation: trusted for unverified_ttl only.
        if (entry.negative) return;
        entry.covered_epoch = 0;
      }
      const auto [it, inserted] = shard.entries.insert_or_assign(std::move(id), std::move(entry));
      (void)it;
      if (inserted) count.fetch_add(1);
    }
    if (count.load() > options.max_entries) DropOldestHalf();
  }

  // Drops the older half of all entries (by fetch time). Shards are locked one at a time; an
  // entry put again meanwhile (a newer fetch time) is kept.
  void DropOldestHalf() {
    std::unique_lock<std::mutex> evicting(evict_mu, std::try_to_lock);
    if (!evicting.owns_lock()) return;  // another thread is at it
    if (count.load() <= options.max_entries) return;
    std::vector<std::pair<SteadyTime, std::pair<size_t, std::string>>> all;
    all.reserve(count.load());
    for (size_t i = 0; i < kShards; ++i) {
      std::lock_guard<std::mutex> lock(shards[i].mu);
      for (const auto& [id, entry] : shards[i].entries) all.push_back({entry.fetched, {i, id}});
    }
    if (all.empty()) return;  // dropped meanwhile (InvalidateAll)
    const size_t drop = all.size() - all.size() / 2;
    std::nth_element(all.begin(), all.begin() + (drop - 1), all.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = 0; k < drop; ++k) {
      Shard& shard = shards[all[k].second.first];
      std::lock_guard<std::mutex> lock(shard.mu);
      const auto it = shard.entries.find(all[k].second.second);
      if (it == shard.entries.end() || it->second.fetched != all[k].first) continue;
      shard.entries.erase(it);
      count.fetch_sub(1);
    }
  }

  const KeyCacheOptions options;
  std::array<Shard, kShards> shards;
  std::atomic<size_t> count{0};
  std::mutex evict_mu;

  static constexpr int64_t kNever = std::numeric_limits<int64_t>::min();
  std::atomic<int64_t> latest{kNever};
  std::atomic<bool> invalidated_all_once{false};
  std::atomic<int64_t> invalidated_all{0};

  // The subscription: `epoch` changes whenever it goes down or comes up (odd = live, so a
  // subscription that came up again is never mistaken for the one an entry was put under).
  std::mutex subscription_mu;
  std::atomic<uint64_t> epoch{0};
  SteadyTime live_since{};  // guarded by subscription_mu

  std::mutex budget_mu;
  const double capacity;  // at least one lookup, whatever the burst
  double tokens;          // guarded by budget_mu
  bool budget_started = false;
  SteadyTime refilled{};
};

KeyCache::KeyCache(KeyCacheOptions options) : state_(std::make_shared<State>(options)) {}

KeyCache::Found KeyCache::Find(std::string_view id, SteadyTime now, KeyRecord* record,
                               SteadyTime* fetched) const {
  State& state = *state_;
  Shard& shard = state.ShardOf(id);
  Found found = Found::kMiss;
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    const auto it = shard.entries.find(std::string(id));
    if (it != shard.entries.end()) {
      const Entry& entry = it->second;
      const auto age = now - entry.fetched;
      if (entry.negative) {
        if (age < state.options.negative_ttl) {
          found = Found::kNegative;
        } else {
          shard.entries.erase(it);
          state.count.fetch_sub(1);
        }
      } else {
        const bool covered = entry.covered_epoch != 0 && entry.covered_epoch == state.epoch.load();
        const bool fresh =
            covered ? age < state.options.cache_ttl : age < state.options.unverified_ttl;
        found = fresh ? Found::kFresh : Found::kStale;
        if (record != nullptr) *record = entry.record;
        if (fetched != nullptr) *fetched = entry.fetched;
      }
    }
  }
  // A lookup follows: Invalidate needs a recent time to stamp (a hit costs nothing shared).
  if (found != Found::kFresh) state.SawTime(now);
  return found;
}

bool KeyCache::UsableWithoutRedis(SteadyTime fetched, SteadyTime now) const {
  return now - fetched < state_->options.cache_ttl;
}

void KeyCache::Put(const KeyRecord& record, SteadyTime now) {
  State& state = *state_;
  state.SawTime(now);
  Entry entry;
  entry.record = Slim(record);
  entry.fetched = now;
  {
    std::lock_guard<std::mutex> lock(state.subscription_mu);
    const uint64_t epoch = state.epoch.load();
    if (epoch % 2 == 1 && state.live_since < now) entry.covered_epoch = epoch;
  }
  state.Insert(record.id, std::move(entry), now);
}

void KeyCache::PutMissing(std::string_view id, SteadyTime now) {
  State& state = *state_;
  state.SawTime(now);
  Entry entry;
  entry.negative = true;
  entry.fetched = now;
  state.Insert(std::string(id), std::move(entry), now);
}

void KeyCache::Invalidate(std::string_view id) {
  State& state = *state_;
  Shard& shard = state.ShardOf(id);
  SteadyTime stamp;
  const bool stamped = state.Latest(&stamp);
  std::lock_guard<std::mutex> lock(shard.mu);
  std::string key(id);
  if (shard.entries.erase(key) > 0) state.count.fetch_sub(1);
  if (!stamped) return;
  // Old stamps cannot race anything any more; dropping them keeps the map small.
  if (shard.invalidated.size() >= 64) {
    for (auto it = shard.invalidated.begin(); it != shard.invalidated.end();) {
      it = stamp - it->second >= kRaceWindow ? shard.invalidated.erase(it) : std::next(it);
    }
  }
  shard.invalidated[std::move(key)] = stamp;
}

void KeyCache::InvalidateAll() {
  State& state = *state_;
  SteadyTime stamp;
  if (state.Latest(&stamp)) {
    state.invalidated_all.store(Ticks(stamp));
    state.invalidated_all_once.store(true);
  }
  for (Shard& shard : state.shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    state.count.fetch_sub(shard.entries.size());
    shard.entries.clear();
  }
}

void KeyCache::Unverify() {
  State& state = *state_;
  SteadyTime stamp;
  if (state.Latest(&stamp)) {
    state.invalidated_all.store(Ticks(stamp));
    state.invalidated_all_once.store(true);
  }
  for (Shard& shard : state.shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto it = shard.entries.begin(); it != shard.entries.end();) {
      if (it->second.negative) {
        it = shard.entries.erase(it);
        state.count.fetch_sub(1);
      } else {
        it->second.covered_epoch = 0;
        ++it;
      }
    }
  }
}

void KeyCache::SetSubscribed(bool live, SteadyTime now) {
  State& state = *state_;
  state.SawTime(now);
  std::lock_guard<std::mutex> lock(state.subscription_mu);
  const uint64_t epoch = state.epoch.load();
  const bool was_live = epoch % 2 == 1;
  if (!live && !was_live) return;
  if (live) state.live_since = now;
  // Up again while up (a resubscription we did not see go down) moves on by two: still live,
  // but no longer the subscription earlier entries were covered by.
  state.epoch.store(epoch + (live == was_live ? 2 : 1));
}

bool KeyCache::TakeLookup(SteadyTime now) {
  State& state = *state_;
  state.SawTime(now);
  std::lock_guard<std::mutex> lock(state.budget_mu);
  if (!state.budget_started) {
    state.budget_started = true;
    state.refilled = now;
  } else if (now > state.refilled) {
    const double elapsed = std::chrono::duration<double>(now - state.refilled).count();
    state.tokens =
        std::min(state.capacity, state.tokens + elapsed * state.options.lookups_per_second);
    state.refilled = now;
  }
  if (state.tokens < 1) return false;
  state.tokens -= 1;
  return true;
}

void KeyCache::Touch(std::string_view id, TimePoint when) {
  Shard& shard = state_->ShardOf(id);
  std::lock_guard<std::mutex> lock(shard.mu);
  const auto [it, inserted] = shard.touched.try_emplace(std::string(id), when);
  if (!inserted && it->second < when) it->second = when;
}

std::vector<std::pair<std::string, TimePoint>> KeyCache::TakeLastUsed(SteadyTime now) {
  State& state = *state_;
  state.SawTime(now);
  const auto interval = state.options.last_used_interval;
  std::vector<std::pair<std::string, TimePoint>> out;
  for (Shard& shard : state.shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto it = shard.handed.begin(); it != shard.handed.end();) {
      it = now - it->second >= interval ? shard.handed.erase(it) : std::next(it);
    }
    for (auto it = shard.touched.begin(); it != shard.touched.end();) {
      if (shard.handed.count(it->first) > 0) {  // handed out within the interval: wait
        ++it;
        continue;
      }
      shard.handed.emplace(it->first, now);
      out.emplace_back(it->first, it->second);
      it = shard.touched.erase(it);
    }
  }
  return out;
}

size_t KeyCache::size() const { return state_->count.load(); }

}  // namespace tollgate::keys
