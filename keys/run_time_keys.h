// Run-time caller keys, put together: the store (Redis), this replica's cache, the background
// events thread, and the authentication of a `tg_<id>_<secret>` key on the request's loop.
//
// Authenticate never waits: a fresh cache entry answers at once (inline); otherwise the loop's
// own Redis connection looks the id up and `done` runs on that loop when Redis answers (or
// fails). A key is accepted only when SHA-256 of the whole key equals the stored hash (compared
// in constant time), it is not revoked, and not expired; the caller it names must exist in the
// running config (the pipeline checks that against its snapshot).
//
// Thread-safety: Authenticate and the admin operations are called on loop threads; stats() and
// counts() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/model.h"
#include "keys/key_cache.h"
#include "keys/key_events.h"
#include "keys/key_record.h"
#include "keys/key_store.h"
#include "policies/redis_loop_client.h"

namespace tollgate::keys {

struct KeyAuth {
  enum class Outcome {
    kOk,
    kUnknown,  // no such id, or the secret does not match
    kRevoked,
    kExpired,      // past expires_at (including a rotated key past its grace)
    kUnavailable,  // not in the cache (or too old there) and Redis did not answer: 503
    kBusy,         // not in the cache and the lookup budget is spent: 503
  };
  Outcome outcome = Outcome::kUnknown;
  KeyRecord record;     // kOk, kRevoked, kExpired: id, caller, expires_at (no secret)
  std::string message;  // for the error envelope; never echoes the key
  // kUnknown for a real key's id with a wrong secret (usage counts refusals per real key only).
  bool id_known = false;
};

// Counters for /metrics (tollgate_key_lookups_total{result}, tollgate_key_cache_total{result}).
struct KeyStats {
  std::atomic<uint64_t> lookups_found{0};
  std::atomic<uint64_t> lookups_not_found{0};
  std::atomic<uint64_t> lookups_failed{0};     // Redis down or an error reply
  std::atomic<uint64_t> lookups_throttled{0};  // budget spent: no lookup made
  std::atomic<uint64_t> cache_hits{0};
  std::atomic<uint64_t> cache_negative_hits{0};
  std::atomic<uint64_t> cache_misses{0};  // includes stale entries looked up again
  std::atomic<uint64_t> stale_used{0};    // a lookup failed and the cached entry was used
};

class RunTimeKeys {
 public:
  RunTimeKeys(const config::RedisConfig& redis, const config::KeysConfig& keys);
  ~RunTimeKeys();
  RunTimeKeys(const RunTimeKeys&) = delete;
  RunTimeKeys& operator=(const RunTimeKeys&) = delete;

  // A key of the run-time shape with id `id` (ParseRunTimeKey), given by `digest`: the SHA-256
  // (32 raw bytes) of the whole key. On a loop thread; `done` runs on that loop, inline when
  // the cache answers.
  void Authenticate(std::string_view digest, std::string_view id,
                    std::function<void(KeyAuth)> done);

  // The admin operations (gateway/admin_api.cpp) go through this store (its own connections,
  // whose deadline is at least kAdminTimeoutMs: a listing reads every record in one script);
  // after a change, tell the cache (this replica drops the id at once, before the event comes
  // back) and the gauge.
  KeyStore& store() { return admin_store_; }
  static constexpr int kAdminTimeoutMs = 2000;
  void Changed(std::string_view id);

  const KeyStats& stats() const { return stats_; }
  KeyStateCounts counts() const { return events_.counts(); }
  bool subscribed() const { return events_.subscribed(); }
  const config::KeysConfig& config() const { return config_; }

 private:
  // Asks Redis for `id`; `stale` is the cached entry to fall back on when Redis fails.
  void Lookup(std::string id, std::string digest,
              std::optional<std::pair<KeyRecord, SteadyTime>> stale,
              std::function<void(KeyAuth)> done);

  const config::KeysConfig config_;
  policies::RedisLoopClient client_;  // lookups on the request path: redis.timeout_ms
  KeyStore store_;
  policies::RedisLoopClient admin_client_;
  KeyStore admin_store_;
  KeyCache cache_;
  KeyEvents events_;
  KeyStats stats_;
};

}  // namespace tollgate::keys
