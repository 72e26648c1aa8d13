// The shape of a run-time caller key: `tg_<id>_<secret>`.
//
// The id is 12 characters of [a-z0-9] (62 bits: random, so ids of keys created on different
// replicas never need coordinating, and a typo'd id is refused without a Redis lookup); it is
// public (listings, audit records, metrics-free). The secret is 32 bytes from RAND_bytes,
// base64url without padding (43 characters). Redis stores only SHA-256 of the whole key.
//
// Config keys (`tollgate keygen`: "tg_" and 43 alphanumerics) never parse as run-time keys: the
// length differs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tollgate::keys {

inline constexpr std::string_view kKeyPrefix = "tg_";
inline constexpr size_t kIdLength = 12;
inline constexpr size_t kSecretLength = 43;
inline constexpr size_t kKeyLength = 3 + kIdLength + 1 + kSecretLength;

// True when `id` is 12 characters of [a-z0-9].
bool IsValidKeyId(std::string_view id);

// True when `key` has the exact run-time shape (prefix, valid id, '_', 43 base64url
// characters); then *id is the id (a view into `key`).
bool ParseRunTimeKey(std::string_view key, std::string_view* id);

struct NewKey {
  std::string id;
  std::string key;     // shown to the admin once, never stored
  std::string sha256;  // lower-case hex of SHA-256(key): what Redis keeps
};
// A fresh key; `id` is empty when the system random generator failed.
NewKey GenerateKey();

}  // namespace tollgate::keys
