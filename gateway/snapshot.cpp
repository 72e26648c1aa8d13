#include "gateway/snapshot.h"

#include <openssl/crypto.h>

#include <cctype>
#include <set>

#include "config/slot_tags.h"
#include "keys/key_format.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

bool HexToRaw(const std::string& hex, std::string* raw) {
  if (hex.size() % 2 != 0) return false;
  raw->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

// How an upstream may spell a secret value back: as is, JSON-escaped with "\/" (PHP's default),
// or percent-encoded (in a URL or a form body), with either case of hex digits. Each is scanned
// for; the scanner keeps duplicates once.
void AddSpellings(const std::string& secret, std::vector<std::string>* out) {
  if (secret.empty()) return;
  static constexpr char kUpper[] = "0123456789ABCDEF";
  static constexpr char kLower[] = "0123456789abcdef";
  std::string json, upper, lower;
  for (char c : secret) {
    const auto u = static_cast<unsigned char>(c);
    json += c == '/' ? std::string("\\/") : std::string(1, c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      upper += c;
      lower += c;
    } else {
      upper += {'%', kUpper[u >> 4], kUpper[u & 0xF]};
      lower += {'%', kLower[u >> 4], kLower[u & 0xF]};
    }
  }
  out->push_back(secret);
  out->push_back(std::move(json));
  out->push_back(std::move(upper));
  out->push_back(std::move(lower));
}

}  // namespace

policies::BucketSpec MakeBucket(const config::Limit& limit, const std::string& caller,
                                uint64_t cost) {
  policies::BucketSpec b;
  b.name = limit.name;
  b.key = (limit.quota ? "quota:" : "bucket:") + limit.name + ":" +
          (limit.scope == config::LimitScope::kCaller ? caller : std::string("_shared"));
  b.rate = limit.rate;
  b.burst = limit.burst > 0 ? limit.burst : limit.rate.tokens;
  b.cost = cost;
  b.shadow = limit.shadow;
  b.quota = limit.quota;
  b.wait_ms = limit.wait_ms;
  b.max_waiting = limit.max_waiting;
  return b;
}

std::shared_ptr<const Snapshot> Snapshot::Build(std::shared_ptr<const config::Config> config,
                                                std::string* error) {
  auto s = std::shared_ptr<Snapshot>(new Snapshot());
  s->config_ = std::move(config);
  s->policy_ = policies::Policy::Compile(*s->config_, error);
  if (!s->policy_) return nullptr;
  for (const auto& [name, caller] : s->config_->callers) {
    for (const auto& hex : caller.key_sha256) {
      std::string raw;
      if (!HexToRaw(hex, &raw) || raw.size() != 32) {
        if (error) *error = "/callers/" + name + "/key_sha256: not a SHA-256 hex digest";
        return nullptr;
      }
      s->callers_by_key_[raw] = &caller;
    }
  }
  std::vector<std::string> secrets;
  for (const auto& [name, up] : s->config_->upstreams) {
    AddSpellings(up.auth.secret, &secrets);
    AddSpellings(up.auth.key, &secrets);
  }
  s->secrets_ = std::make_unique<const upstream::SecretScanner>(std::move(secrets));
  if (s->config_->redis && s->config_->redis->cluster) {
    config::SlotTags tags = config::ComputeSlotTags(*s->config_);
    s->upstream_tags_.insert(tags.of_upstream.begin(), tags.of_upstream.end());
    s->limit_tags_.insert(tags.of_limit.begin(), tags.of_limit.end());
  }
  return s;
}

AuthResult Snapshot::Authenticate(const std::string* authorization,
                                  std::chrono::system_clock::time_point now) const {
  AuthResult r;
  if (authorization == nullptr) {
    r.message = "missing credentials: send Authorization: Bearer <key>";
    return r;
  }
  std::string_view v(*authorization);
  constexpr std::string_view kBearer = "bearer ";
  bool is_bearer = v.size() > kBearer.size();
  for (size_t i = 0; is_bearer && i < kBearer.size(); ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    is_bearer = c == kBearer[i];
  }
  if (!is_bearer) {
    r.message = "the Authorization header must be: Bearer <key>";
    return r;
  }
  std::string_view key = v.substr(kBearer.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  std::string digest = upstream::Sha256Raw(key);
  auto it = callers_by_key_.find(digest);
  // Lookup is by the key's SHA-256, never the key: its timing can only depend on digest bytes
  // an attacker cannot steer, and the final check is constant-time (CRYPTO_memcmp).
  if (it == callers_by_key_.end() ||
      CRYPTO_memcmp(it->first.data(), digest.data(), digest.size()) != 0) {
    r.outcome = AuthResult::Outcome::kUnknown;
    r.message = "unknown key";
    std::string_view id;
    if (keys::ParseRunTimeKey(key, &id)) {
      r.run_time_key = key;
      r.key_id = std::string(id);
      r.key_digest = std::move(digest);
    }
    return r;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < 4; ++i) {
    const auto b = static_cast<unsigned char>(digest[i]);
    r.key_id.push_back(kHex[b >> 4]);
    r.key_id.push_back(kHex[b & 15]);
  }
  r.caller = it->second;
  return CheckCaller(std::move(r), now);
}

AuthResult Snapshot::AuthenticateCaller(std::string_view caller,
                                        std::chrono::system_clock::time_point now) const {
  AuthResult r;
  r.caller = FindCaller(caller);
  if (r.caller == nullptr) {
    // The key names a caller this config no longer has: the key is as good as unknown.
    r.outcome = AuthResult::Outcome::kUnknown;
    r.message = "unknown key";
    return r;
  }
  return CheckCaller(std::move(r), now);
}

AuthResult Snapshot::CheckCaller(AuthResult r, std::chrono::system_clock::time_point now) {
  if (r.caller->disabled) {
    r.outcome = AuthResult::Outcome::kDisabled;
    r.message = "caller is disabled";
    return r;
  }
  if (r.caller->expires && *r.caller->expires <= now) {
    r.outcome = AuthResult::Outcome::kExpired;
    r.message = "caller key has expired";
    return r;
  }
  r.key_expires = r.caller->expires;
  r.outcome = AuthResult::Outcome::kOk;
  return r;
}

std::vector<policies::BucketSpec> Snapshot::BucketsFor(const config::Upstream& upstream,
                                                       const config::Rule* rule,
                                                       const config::Caller& caller,
                                                       uint64_t cost) const {
  std::vector<policies::BucketSpec> out;
  out.reserve(upstream.limits.size() + (rule ? rule->limits.size() : 0) + caller.limits.size());
  // A cost read from the body (ACUs) is a budget's measure: it is charged to quotas, while token
  // buckets (request rates) count the request once. An integer cost is charged to both.
  const uint64_t bucket_cost = rule != nullptr && !rule->cost_pointer.empty() ? 1 : cost;
  auto make = [&](const config::Limit& l) {
    policies::BucketSpec bucket = MakeBucket(l, caller.name, l.quota ? cost : bucket_cost);
    TagBucket(&bucket);
    return bucket;
  };
  for (const auto& l : upstream.limits) out.push_back(make(l));
  if (rule) {
    for (const auto& l : rule->limits) out.push_back(make(l));
  }
  for (const auto& l : caller.limits) out.push_back(make(l));
  return out;
}

std::vector<policies::BucketSpec> Snapshot::BucketsOfCaller(
    const config::Caller& caller, std::vector<std::string>* upstream_of) const {
  std::vector<policies::BucketSpec> out;
  std::set<std::string> seen;
  auto add = [&](const config::Limit& l, const std::string& upstream) {
    auto b = MakeBucket(l, caller.name, 0);
    if (!seen.insert(b.key).second) return;
    TagBucket(&b);
    out.push_back(std::move(b));
    if (upstream_of != nullptr) upstream_of->push_back(upstream);
  };
  for (const auto& l : caller.limits) add(l, "");
  std::set<std::string> upstreams;
  for (const auto& role_name : caller.roles) {
    auto it = config_->roles.find(role_name);
    if (it == config_->roles.end()) continue;
    for (const auto& rule : it->second.rules) {
      upstreams.insert(rule.upstream);
      for (const auto& l : rule.limits) add(l, rule.upstream);
    }
  }
  for (const auto& u : upstreams) {
    if (const auto* up = FindUpstream(u)) {
      for (const auto& l : up->limits) add(l, u);
    }
  }
  return out;
}

void Snapshot::TagBucket(policies::BucketSpec* bucket) const {
  if (limit_tags_.empty()) return;
  auto tag = limit_tags_.find(bucket->name);
  if (tag != limit_tags_.end()) bucket->slot_tag = tag->second;
}

const std::string& Snapshot::SlotTagOf(const std::string& upstream) const {
  static const std::string kNone;
  auto tag = upstream_tags_.find(upstream);
  return tag == upstream_tags_.end() ? kNone : tag->second;
}

const config::Upstream* Snapshot::FindUpstream(std::string_view name) const {
  auto it = config_->upstreams.find(std::string(name));
  return it == config_->upstreams.end() ? nullptr : &it->second;
}

const config::Caller* Snapshot::FindCaller(std::string_view name) const {
  auto it = config_->callers.find(std::string(name));
  return it == config_->callers.end() ? nullptr : &it->second;
}

}  // namespace tollgate::gateway
