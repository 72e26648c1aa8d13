// The Redis side of token_bucket.h: one Lua script that decides a whole request atomically.
//
// The script is compiled into the binary (no runtime file) and mirrors EvaluateBuckets step for
// step, with the time from Redis `TIME` so every replica shares one clock. It also checks the
// upstream's cooldown key in the same step. A bucket's state is one 16-byte string (level units
// and its stamp in µs, little-endian int64: DecodeBucketState) under BucketStateKey, which
// expires once the bucket would be full again, so idle buckets cost Redis no memory. Until 0.2.0
// the state was a hash {l, t} under `<prefix><bucket key>`: the version in the key name keeps
// replicas of both formats from ever reading each other's state during a rolling upgrade.
//
// Pure functions and constants: safe from any thread.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <vector>

#include "policies/rate_limiter.h"
#include "policies/token_bucket.h"

namespace tollgate::policies {

extern const char kTokenBucketScript[];

// Goes between the key prefix and a bucket's key in Redis: the state format's version.
extern const char kBucketStateVersion[];

// "<prefix>v2:<bucket key>": where the script keeps the bucket `bucket_key` (BucketSpec::key).
std::string BucketStateKey(const std::string& key_prefix, const std::string& bucket_key);

// Reads a bucket's stored value as the script writes it; false for any other value.
bool DecodeBucketState(const std::string& value, BucketState* state);

// Lowercase hex SHA-1 of kTokenBucketScript, as EVALSHA and SCRIPT LOAD name it.
const std::string& TokenBucketScriptSha1();

// KEYS and ARGV of one script call. ARGV: take "1"/"0", cooldown "1"/"0", the clock ("" for
// Redis TIME), then per bucket its refill, capacity, cost, a flags byte and its wait in µs as
// '<i8i8i8Bi8'. A state may hold a level below zero: tokens reserved by waiting requests.
struct TokenBucketCall {
  std::vector<std::string> keys;
  std::vector<std::string> args;
};

// `key_prefix` goes before every key; `cooldown_upstream` "" checks no cooldown. `now_us` < 0
// takes the time from Redis (tests pass a fixed clock to replay the bucket-math table).
TokenBucketCall MakeTokenBucketCall(const std::vector<BucketSpec>& buckets,
                                    const std::string& cooldown_upstream,
                                    const std::string& key_prefix, bool take, int64_t now_us = -1);

// The same for a request: its buckets, its cooldown upstream and (in a cluster) the cooldown
// key's hash tag.
TokenBucketCall MakeTokenBucketCall(const LimitRequest& request, const std::string& key_prefix,
                                    bool take, int64_t now_us = -1);

// Where the script keeps a bucket's state and an upstream's cooldown. `slot_tag` non-empty (a
// Redis Cluster): "<prefix>{<tag>}:..." so that a request's keys share one hash slot.
std::string BucketStateKey(const std::string& key_prefix, const BucketSpec& spec);
std::string CooldownKey(const std::string& key_prefix, const std::string& upstream,
                        const std::string& slot_tag);

// The argv of `EVALSHA <sha> <numkeys> keys... args...`.
std::vector<std::string> EvalShaArgv(const TokenBucketCall& call);

// Reads the script's reply; false if it is not the expected shape.
bool ParseTokenBucketReply(const redisReply& reply, size_t bucket_count, Evaluation* evaluation);

}  // namespace tollgate::policies
