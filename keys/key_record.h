// One run-time key's record, as Redis keeps it (hash `<prefix>{keys}:key:<id>`), and its state.
//
// Times are whole milliseconds since the Unix epoch in Redis; RFC 3339 in JSON.
// State at a time `now`, first match wins:
//   revoked  revoked_at <= now
//   expired  expires_at <= now
//   grace    replaced_by is set (the key was rotated) and expires_at > now
//   active   otherwise
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::keys {

using TimePoint = std::chrono::system_clock::time_point;

struct KeyRecord {
  std::string id;
  std::string caller;
  std::string sha256;  // lower-case hex; never leaves the gateway (no listing, log or audit)
  TimePoint created_at{};
  std::optional<TimePoint> expires_at;
  std::optional<TimePoint> revoked_at;
  std::optional<TimePoint> last_used_at;  // from `<prefix>{keys}:last_used`, for listings
  std::string note;
  std::string created_by;   // the admin token's name
  std::string replaced_by;  // the id of the key a rotation made; "" = not rotated
};

enum class KeyState { kActive, kExpired, kRevoked, kGrace };

KeyState StateAt(const KeyRecord& record, TimePoint now);
std::string_view StateName(KeyState state);  // "active", "expired", "revoked", "grace"

// The hash's fields and values, for HSET (every set field; unset optionals are left out).
std::vector<std::string> ToHashFields(const KeyRecord& record);
// From an HGETALL reply (a flat array field, value, ...; REDIS_REPLY_MAP too). False when the
// reply is empty (no such key) or lacks `caller`/`sha256`/`created_at` or a time does not parse.
// `id` is not a field: the caller sets it.
bool FromHashReply(const redisReply& reply, KeyRecord* record);

int64_t ToUnixMs(TimePoint t);
TimePoint FromUnixMs(int64_t ms);

}  // namespace tollgate::keys
