// The run-time keys in Redis: every write is one Lua script, so a create, a revocation or a
// rotation is atomic and publishes the id it changed on `<prefix>{keys}:events` in the same step
// (every replica's cache drops that id; see key_events.h).
//
// Layout (the `{keys}` hash tag keeps every key of the feature on one Cluster slot, so the
// scripts stay legal there):
//   <prefix>{keys}:key:<id>        hash: KeyRecord's fields (key_record.h)
//   <prefix>{keys}:ids             set of every id
//   <prefix>{keys}:caller:<caller> set of the caller's ids
//   <prefix>{keys}:last_used       hash: id -> unix ms of the last use (batched, see key_cache.h)
//   <prefix>{keys}:events          pub/sub channel: an id whose record changed; "*" = all
//
// Records are never deleted by the gateway: a revoked or expired key still lists (its state
// says so) and its id is never reused.
//
// Thread-safety: every method is called on a loop thread and answers on that loop, later (never
// inline), through the RedisLoopClient it was given.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "keys/key_record.h"
#include "policies/redis_loop_client.h"

namespace tollgate::keys {

enum class StoreStatus {
  kOk,
  kNotFound,     // no such id
  kConflict,     // create: the id exists; rotate: the key is revoked, expired or already rotated
  kUnavailable,  // Redis failed or answered an error
};

// Names of the Redis keys and channel, from redis.key_prefix.
struct KeyNames {
  explicit KeyNames(std::string prefix);
  std::string Record(std::string_view id) const;
  std::string Ids() const;
  std::string Caller(std::string_view caller) const;
  std::string LastUsed() const;
  std::string Events() const;
  std::string prefix;
};

class KeyStore {
 public:
  // `client` outlives the store.
  explicit KeyStore(policies::RedisLoopClient* client);

  // Stores a new record (id, caller, sha256, created_at, optional expires_at, note, created_by).
  void Create(const KeyRecord& record, std::function<void(StoreStatus)> done);
  // The record of `id` (without last_used_at): kOk with it, kNotFound, kUnavailable.
  void Get(const std::string& id, std::function<void(StoreStatus, std::optional<KeyRecord>)> done);
  // Every record (of `caller`, or all when empty) with last_used_at, ordered by created_at.
  void List(const std::string& caller,
            std::function<void(StoreStatus, std::vector<KeyRecord>)> done);
  // Sets revoked_at = now unless already revoked (then kept: revoking twice is not an error).
  // kOk with the record after, kNotFound.
  void Revoke(const std::string& id, TimePoint now,
              std::function<void(StoreStatus, std::optional<KeyRecord>)> done);
  // Stores `replacement` (a new key for the same caller) and sets the old key's replaced_by and
  // expires_at = min(its expires_at, grace_end). kConflict when the old key is revoked, expired
  // or already rotated; kNotFound. `replacement.caller` must be the old key's caller (the
  // script checks it and answers kConflict otherwise).
  void Rotate(const std::string& id, const KeyRecord& replacement, TimePoint grace_end,
              TimePoint now, std::function<void(StoreStatus, std::optional<KeyRecord>)> done);

  const KeyNames& names() const { return names_; }

 private:
  policies::RedisLoopClient* const client_;
  const KeyNames names_;
};

}  // namespace tollgate::keys
