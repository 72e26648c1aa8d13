// The pure half of the admin API's run-time key endpoints (gateway/admin_api.cpp): request
// bodies and the list query parsed into values, and the JSON answers written. No I/O; every
// function is thread-safe.
//
// Error messages name the member or parameter at fault, and echo a value only when it is a
// plain name (never something shaped like a key: an admin may paste one by mistake, and these
// messages reach the audit record).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keys/key_format.h"
#include "keys/key_record.h"

namespace tollgate::gateway {

// The longest ttl_seconds or grace_seconds accepted whatever keys.max_ttl_seconds says
// (10 years): times stay far from any overflow.
inline constexpr int64_t kMaxKeySeconds = 315360000;
// The longest note (bytes of UTF-8).
inline constexpr size_t kMaxKeyNoteBytes = 200;

// POST /keys {"caller", "ttl_seconds", "note"}.
struct CreateKeyRequest {
  std::string caller;
  std::optional<int64_t> ttl_seconds;
  std::string note;  // "" = none
};

// POST /keys/{id}/rotate {"grace_seconds", "ttl_seconds"} (an empty body is {}).
struct RotateKeyRequest {
  int64_t grace_seconds = 0;
  std::optional<int64_t> ttl_seconds;  // none: the old key's lifetime, when it had one
};

// Each returns "" when the input is good, else the 400 message. `max_ttl_seconds` is
// keys.max_ttl_seconds (0 = only kMaxKeySeconds bounds ttl_seconds).
std::string ParseCreateKeyBody(std::string_view body, int max_ttl_seconds, CreateKeyRequest* out);
std::string ParseRotateKeyBody(std::string_view body, int max_ttl_seconds, RotateKeyRequest* out);
// GET /keys's query string (without '?'): nothing, or `caller=NAME` (percent-encoded).
std::string ParseListKeysQuery(std::string_view query, std::string* caller);

// `text` quoted when it may be shown in a message (a plain name, not shaped like a key), else
// a placeholder that says why it is not.
std::string EchoName(std::string_view text);

// The record of the key a rotation of `old` makes (id and hash from `key`) at `now`, by
// `admin`: for the same caller, with the same note; expiring `ttl_seconds` from now, else after
// the old key's lifetime (expires_at - created_at, at most max_ttl_seconds when that is > 0),
// else never.
keys::KeyRecord RotationReplacement(const keys::KeyRecord& old, const keys::NewKey& key,
                                    keys::TimePoint now, std::optional<int64_t> ttl_seconds,
                                    int max_ttl_seconds, const std::string& admin);

// RFC 3339 UTC with milliseconds: "2026-12-01T18:00:00.000Z".
std::string FormatKeyTime(keys::TimePoint time);

// 201 of POST /keys: {"id", "key", "caller", "created_at", "expires_at"}.
std::string CreatedKeyJson(const keys::KeyRecord& record, std::string_view key);
// 201 of a rotation: the new key's fields, "replaces" and "replaced_expires_at" (the old key's
// expires_at after the rotation).
std::string RotatedKeyJson(const keys::KeyRecord& record, std::string_view key,
                           const keys::KeyRecord& replaced);
// 200 of GET /keys: {"items": [...]} with each record's state at `now`; never a key or hash.
std::string KeyListJson(const std::vector<keys::KeyRecord>& records, keys::TimePoint now);

}  // namespace tollgate::gateway
