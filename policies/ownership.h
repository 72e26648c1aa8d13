// Session ownership (issue 12): `owner:<upstream>:<value> -> caller`, recorded when a rule with
// `record_owner` gets a 2xx answer, looked up when a rule's `where` binds a parameter to "owner".
//
// With a `redis` section the records live in Redis (shared by every replica) under
// `<redis.key_prefix>owner:<upstream>:<value>` with a TTL of ownership_ttl_days (renewed by a
// new record, not by reads). Each command names one key, so no hash tag is used: the records
// spread over a cluster's slots. Upstream names hold no ':', so the key is unambiguous. Without
// Redis: an in-process map with the same TTL (one replica's view).
//
// Threads: Record/Lookup are called on a loop thread; `done` runs on that loop (the Redis store:
// always later, never inline; the in-process store: inline). Failure is an answer, never a wait
// (redis.timeout_ms bounds every command).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config/model.h"
#include "policies/redis_loop_client.h"

namespace tollgate::policies {

class OwnershipStore {
 public:
  // `ok` false: the store could not be reached (never read as "not owned").
  using Recorded = std::function<void(bool ok)>;
  // `owner`: the caller recorded as owning the value, nullopt when none is.
  using Found = std::function<void(bool ok, std::optional<std::string> owner)>;

  virtual ~OwnershipStore() = default;
  virtual void Record(const std::string& upstream, const std::string& value,
                      const std::string& caller, Recorded done) = 0;
  virtual void Lookup(const std::string& upstream, const std::string& value, Found done) = 0;
};

class MemoryOwnershipStore : public OwnershipStore {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  explicit MemoryOwnershipStore(int ttl_days, Clock clock = nullptr);
  void Record(const std::string& upstream, const std::string& value, const std::string& caller,
              Recorded done) override;
  void Lookup(const std::string& upstream, const std::string& value, Found done) override;

 private:
  struct Entry {
    std::string caller;
    std::chrono::steady_clock::time_point expires;
  };
  std::chrono::seconds ttl_;
  Clock clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // "<upstream>:<value>"
  size_t records_since_sweep_ = 0;
};

class RedisOwnershipStore : public OwnershipStore {
 public:
  RedisOwnershipStore(const config::RedisConfig& redis, int ttl_days);
  void Record(const std::string& upstream, const std::string& value, const std::string& caller,
              Recorded done) override;
  void Lookup(const std::string& upstream, const std::string& value, Found done) override;
  // The key a value's record has (for tests).
  std::string Key(const std::string& upstream, const std::string& value) const;

 private:
  std::string prefix_;
  int64_t ttl_seconds_;
  RedisLoopClient client_;
};

// The value a `record_owner` pointer names in a JSON answer, as text: a string as is, an integer
// in decimal. Nullopt when the body is not JSON, the pointer names nothing, or names anything
// else (an object, an array, a fraction, a bool, null, an empty string).
std::optional<std::string> OwnedValueAt(std::string_view body, const std::string& pointer);

// The query string forwarded on a rule with `query`: every parameter of `raw` whose (decoded)
// name is forced is dropped, wherever it occurs; then each forced parameter is appended,
// "{caller}" in its value replaced by `caller`, both percent-encoded (all but RFC 3986's
// unreserved characters). The rest of `raw` is kept byte for byte.
std::string ForceQuery(std::string_view raw, const std::map<std::string, std::string>& forced,
                       std::string_view caller);

// A Redis store with a `redis` section, else the in-process one.
std::unique_ptr<OwnershipStore> MakeOwnershipStore(const config::Config& config);

}  // namespace tollgate::policies
