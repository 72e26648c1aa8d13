// One immutable, compiled view of a loaded config: the config itself, the compiled policy,
// the key-hash index, the buckets each request would be charged and the scanner of every
// upstream's secret values (no answer may carry one, whichever upstream it comes from).
// Built once per (re)load and shared as std::shared_ptr<const Snapshot>; a request keeps the
// snapshot it started with, so a reload never changes a request in flight. Thread-safe (const).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/model.h"
#include "policies/policy.h"
#include "policies/rate_limiter.h"
#include "upstream/secret_scan.h"

namespace tollgate::gateway {

struct AuthResult {
  enum class Outcome { kOk, kMissing, kUnknown, kDisabled, kExpired };
  Outcome outcome = Outcome::kMissing;
  const config::Caller* caller = nullptr;  // set for kOk, kDisabled, kExpired
  std::string message;                     // for the 401 envelope; never echoes the key
  // The key's id for the audit record: a config key's first 8 hex characters of its SHA-256
  // (set for kOk), a run-time key's id (set whenever it has the run-time shape).
  std::string key_id;
  // When the key stops working: a config key's caller `expires` (a run-time key's is its own).
  std::optional<std::chrono::system_clock::time_point> key_expires;
  // kUnknown with a key of the run-time shape (tg_<id>_<secret>): no config key has its hash,
  // so it is for the run-time keys to decide. Views into the Authorization header.
  std::string_view run_time_key;
  // With run_time_key: the SHA-256 (32 raw bytes) of the whole key, already computed for the
  // config-key lookup, so the run-time check does not hash the key again.
  std::string key_digest;
};

class Snapshot {
 public:
  static std::shared_ptr<const Snapshot> Build(std::shared_ptr<const config::Config> config,
                                               std::string* error);

  const config::Config& config() const { return *config_; }
  const policies::Policy& policy() const { return *policy_; }

  // `authorization` is the Authorization header value (nullptr when absent).
  AuthResult Authenticate(const std::string* authorization,
                          std::chrono::system_clock::time_point now) const;
  // The checks a caller passes after its key was recognised (it exists in this config, is not
  // disabled, has not expired): for a run-time key, whose caller is named by its record.
  AuthResult AuthenticateCaller(std::string_view caller,
                                std::chrono::system_clock::time_point now) const;

  // Every bucket a request is charged `cost` tokens from: the upstream's limits, the rule's, the
  // caller's. `cost`: the rule's, or the one read from the body (policies/body_rules.h).
  std::vector<policies::BucketSpec> BucketsFor(const config::Upstream& upstream,
                                               const config::Rule* rule,
                                               const config::Caller& caller, uint64_t cost) const;
  // Every bucket that could apply to the caller (for /_tollgate/whoami), cost 0. `upstreams`,
  // when given, gets each bucket's upstream (a rule's or an upstream's; "" for the caller's own).
  std::vector<policies::BucketSpec> BucketsOfCaller(
      const config::Caller& caller, std::vector<std::string>* upstreams = nullptr) const;

  // Redis Cluster (config/slot_tags.h): the hash tag of the upstream's cooldown key and of the
  // buckets its requests are charged; "" outside a cluster.
  const std::string& SlotTagOf(const std::string& upstream) const;

  const config::Upstream* FindUpstream(std::string_view name) const;
  const config::Caller* FindCaller(std::string_view name) const;

  // Every upstream's secret values (tokens, header secrets, HMAC keys and secrets).
  const upstream::SecretScanner& secrets() const { return *secrets_; }

 private:
  static AuthResult CheckCaller(AuthResult r, std::chrono::system_clock::time_point now);

  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<const policies::Policy> policy_;
  std::unordered_map<std::string, const config::Caller*> callers_by_key_;  // raw 32-byte digest
  std::unique_ptr<const upstream::SecretScanner> secrets_;
  // Filled only with redis.cluster: then every bucket and cooldown key carries its group's tag.
  std::unordered_map<std::string, std::string> upstream_tags_;
  std::unordered_map<std::string, std::string> limit_tags_;

  void TagBucket(policies::BucketSpec* bucket) const;
};

policies::BucketSpec MakeBucket(const config::Limit& limit, const std::string& caller,
                                uint64_t cost);

}  // namespace tollgate::gateway
