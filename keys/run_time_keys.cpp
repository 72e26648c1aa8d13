#include "keys/run_time_keys.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

namespace tollgate::keys {
namespace {

using SteadyClock = std::chrono::steady_clock;

KeyCacheOptions CacheOptions(const config::KeysConfig& keys) {
  KeyCacheOptions o;
  o.cache_ttl = std::chrono::seconds(keys.cache_ttl_seconds);
  o.negative_ttl = std::chrono::seconds(keys.negative_ttl_seconds);
  o.lookups_per_second = keys.lookups_per_second;
  o.lookup_burst = keys.lookup_burst;
  return o;
}

config::RedisConfig AdminRedis(config::RedisConfig redis) {
  redis.timeout_ms = std::max(redis.timeout_ms, RunTimeKeys::kAdminTimeoutMs);
  return redis;
}

KeyAuth Refused(KeyAuth::Outcome outcome, std::string message) {
  KeyAuth out;
  out.outcome = outcome;
  out.message = std::move(message);
  return out;
}

// The verdict on a key whose record is known. The hash is compared first (in constant time):
// whoever does not hold the secret learns nothing about the key behind the id, not even
// whether it was revoked.
KeyAuth Judge(KeyRecord record, const std::string& digest, TimePoint now) {
  if (record.sha256.size() != digest.size() ||
      CRYPTO_memcmp(record.sha256.data(), digest.data(), digest.size()) != 0) {
    KeyAuth out = Refused(KeyAuth::Outcome::kUnknown, "unknown key");
    out.id_known = true;
    return out;
  }
  KeyAuth out;
  const KeyState state = StateAt(record, now);
  out.record = std::move(record);
  switch (state) {
    case KeyState::kRevoked:
      out.outcome = KeyAuth::Outcome::kRevoked;
      out.message = "key revoked";
      break;
    case KeyState::kExpired:
      out.outcome = KeyAuth::Outcome::kExpired;
      out.message = "key expired";
      break;
    case KeyState::kActive:
    case KeyState::kGrace:
      out.outcome = KeyAuth::Outcome::kOk;
      break;
  }
  return out;
}

}  // namespace

RunTimeKeys::RunTimeKeys(const config::RedisConfig& redis, const config::KeysConfig& keys)
    : config_(keys),
      client_(redis),
      store_(&client_),
      admin_client_(AdminRedis(redis)),
      admin_store_(&admin_client_),
      cache_(CacheOptions(keys)),
      events_(redis, &cache_) {}

RunTimeKeys::~RunTimeKeys() { events_.Stop(); }

void RunTimeKeys::Authenticate(std::string_view raw_digest, std::string_view id,
                               std::function<void(KeyAuth)> done) {
  const SteadyClock::time_point now = SteadyClock::now();
  // Records hold the hex form.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string digest;
  digest.reserve(raw_digest.size() * 2);
  for (const char c : raw_digest) {
    const auto b = static_cast<unsigned char>(c);
    digest.push_back(kHex[b >> 4]);
    digest.push_back(kHex[b & 15]);
  }
  KeyRecord cached;
  SteadyTime fetched;
  switch (cache_.Find(id, now, &cached, &fetched)) {
    case KeyCache::Found::kFresh: {
      stats_.cache_hits.fetch_add(1, std::memory_order_relaxed);
      KeyAuth auth = Judge(std::move(cached), digest, std::chrono::system_clock::now());
      if (auth.outcome == KeyAuth::Outcome::kOk) cache_.Touch(id, std::chrono::system_clock::now());
      done(std::move(auth));
      return;
    }
    case KeyCache::Found::kNegative:
      stats_.cache_negative_hits.fetch_add(1, std::memory_order_relaxed);
      done(Refused(KeyAuth::Outcome::kUnknown, "unknown key"));
      return;
    case KeyCache::Found::kMiss:
      stats_.cache_misses.fetch_add(1, std::memory_order_relaxed);
      // Only ids this replica knows nothing of are budgeted: a flood of made-up keys costs
      // Redis at most the budget, while keys already seen are verified again freely.
      if (!cache_.TakeLookup(now)) {
        stats_.lookups_throttled.fetch_add(1, std::memory_order_relaxed);
        done(Refused(KeyAuth::Outcome::kBusy,
                     "too many lookups of unknown keys right now; retry shortly"));
        return;
      }
      Lookup(std::string(id), std::move(digest), std::nullopt, std::move(done));
      return;
    case KeyCache::Found::kStale:
      stats_.cache_misses.fetch_add(1, std::memory_order_relaxed);
      Lookup(std::string(id), std::move(digest), std::make_pair(std::move(cached), fetched),
             std::move(done));
      return;
  }
}

void RunTimeKeys::Lookup(std::string id, std::string digest,
                         std::optional<std::pair<KeyRecord, SteadyTime>> stale,
                         std::function<void(KeyAuth)> done) {
  store_.Get(id, [this, id, digest = std::move(digest), stale = std::move(stale),
                  done = std::move(done)](StoreStatus status, std::optional<KeyRecord> record) {
    const SteadyClock::time_point now = SteadyClock::now();
    const TimePoint wall = std::chrono::system_clock::now();
    switch (status) {
      case StoreStatus::kOk: {
        stats_.lookups_found.fetch_add(1, std::memory_order_relaxed);
        // An event about this id that came while the lookup was out may describe a change
        // Redis made after it answered: the cache then trusts the answer for 1 s only.
        cache_.Put(*record, now);
        KeyAuth auth = Judge(*record, digest, wall);
        if (auth.outcome == KeyAuth::Outcome::kOk) cache_.Touch(id, wall);
        done(std::move(auth));
        return;
      }
      case StoreStatus::kNotFound:
        stats_.lookups_not_found.fetch_add(1, std::memory_order_relaxed);
        cache_.PutMissing(id, now);
        done(Refused(KeyAuth::Outcome::kUnknown, "unknown key"));
        return;
      case StoreStatus::kConflict:
      case StoreStatus::kUnavailable:
        break;
    }
    stats_.lookups_failed.fetch_add(1, std::memory_order_relaxed);
    if (stale && cache_.UsableWithoutRedis(stale->second, now)) {
      // Redis is down: what this replica verified within cache_ttl_seconds still holds.
      stats_.stale_used.fetch_add(1, std::memory_order_relaxed);
      KeyAuth auth = Judge(std::move(stale->first), digest, wall);
      if (auth.outcome == KeyAuth::Outcome::kOk) cache_.Touch(id, wall);
      done(std::move(auth));
      return;
    }
    done(Refused(KeyAuth::Outcome::kUnavailable,
                 "the key cannot be verified now (its store is unavailable); retry shortly"));
  });
}

void RunTimeKeys::Changed(std::string_view id) {
  cache_.Invalidate(id);
  events_.CountSoon();
}

}  // namespace tollgate::keys
