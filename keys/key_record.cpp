#include "keys/key_record.h"

#include <cstdint>

namespace tollgate::keys {
namespace {

// hiredis 1.x reports a RESP3 map as type 9 (REDIS_REPLY_MAP), its elements flat: field, value,
// ... The hiredis this builds against may predate RESP3, so the number is spelled out here.
constexpr int kReplyMap = 9;
#ifdef REDIS_REPLY_MAP
static_assert(REDIS_REPLY_MAP == kReplyMap, "hiredis numbers RESP3 maps differently");
#endif

constexpr std::string_view kCaller = "caller";
constexpr std::string_view kSha256 = "sha256";
constexpr std::string_view kCreatedAt = "created_at";
constexpr std::string_view kExpiresAt = "expires_at";
constexpr std::string_view kRevokedAt = "revoked_at";
constexpr std::string_view kNote = "note";
constexpr std::string_view kCreatedBy = "created_by";
constexpr std::string_view kReplacedBy = "replaced_by";

// The widest time a TimePoint holds (system_clock counts nanoseconds: about ±292 years).
constexpr int64_t kMaxUnixMs =
    std::chrono::duration_cast<std::chrono::milliseconds>(TimePoint::duration::max()).count();

// Decimal digits only, as the gateway writes them (an optional '-' for times before 1970).
bool ParseUnixMs(std::string_view text, int64_t* out) {
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > 18) return false;  // 18 digits cannot overflow int64
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > kMaxUnixMs) return false;
  *out = negative ? -value : value;
  return true;
}

bool ParseTime(std::string_view text, TimePoint* out) {
  int64_t ms = 0;
  if (!ParseUnixMs(text, &ms)) return false;
  *out = FromUnixMs(ms);
  return true;
}

std::string_view Text(const redisReply& reply) {
  if ((reply.type != REDIS_REPLY_STRING && reply.type != REDIS_REPLY_STATUS) ||
      reply.str == nullptr) {
    return {};
  }
  return std::string_view(reply.str, reply.len);
}

}  // namespace

KeyState StateAt(const KeyRecord& record, TimePoint now) {
  if (record.revoked_at && *record.revoked_at <= now) return KeyState::kRevoked;
  if (record.expires_at && *record.expires_at <= now) return KeyState::kExpired;
  if (!record.replaced_by.empty()) return KeyState::kGrace;
  return KeyState::kActive;
}

std::string_view StateName(KeyState state) {
  switch (state) {
    case KeyState::kActive:
      return "active";
    case KeyState::kExpired:
      return "expired";
    case KeyState::kRevoked:
      return "revoked";
    case KeyState::kGrace:
      return "grace";
  }
  return "active";
}

std::vector<std::string> ToHashFields(const KeyRecord& record) {
  std::vector<std::string> fields;
  fields.reserve(16);
  auto add = [&fields](std::string_view name, std::string value) {
    fields.emplace_back(name);
    fields.push_back(std::move(value));
  };
  add(kCaller, record.caller);
  add(kSha256, record.sha256);
  add(kCreatedAt, std::to_string(ToUnixMs(record.created_at)));
  if (record.expires_at) add(kExpiresAt, std::to_string(ToUnixMs(*record.expires_at)));
  if (record.revoked_at) add(kRevokedAt, std::to_string(ToUnixMs(*record.revoked_at)));
  if (!record.note.empty()) add(kNote, record.note);
  if (!record.created_by.empty()) add(kCreatedBy, record.created_by);
  if (!record.replaced_by.empty()) add(kReplacedBy, record.replaced_by);
  return fields;
}

bool FromHashReply(const redisReply& reply, KeyRecord* record) {
  if (reply.type != REDIS_REPLY_ARRAY && reply.type != kReplyMap) return false;
  if (reply.elements == 0 || reply.elements % 2 != 0) return false;
  KeyRecord out;
  out.id = record->id;
  bool caller = false, sha256 = false, created_at = false;
  for (size_t i = 0; i + 1 < reply.elements; i += 2) {
    if (reply.element[i] == nullptr || reply.element[i + 1] == nullptr) return false;
    const std::string_view name = Text(*reply.element[i]);
    const std::string_view value = Text(*reply.element[i + 1]);
    if (name == kCaller) {
      out.caller = std::string(value);
      caller = !value.empty();
    } else if (name == kSha256) {
      out.sha256 = std::string(value);
      sha256 = !value.empty();
    } else if (name == kCreatedAt) {
      if (!ParseTime(value, &out.created_at)) return false;
      created_at = true;
    } else if (name == kExpiresAt) {
      TimePoint t;
      if (!ParseTime(value, &t)) return false;
      out.expires_at = t;
    } else if (name == kRevokedAt) {
      TimePoint t;
      if (!ParseTime(value, &t)) return false;
      out.revoked_at = t;
    } else if (name == kNote) {
      out.note = std::string(value);
    } else if (name == kCreatedBy) {
      out.created_by = std::string(value);
    } else if (name == kReplacedBy) {
      out.replaced_by = std::string(value);
    }
    // Other fields are a newer gateway's: ignored, so a rolling upgrade can add some.
  }
  if (!caller || !sha256 || !created_at) return false;
  *record = std::move(out);
  return true;
}

int64_t ToUnixMs(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint FromUnixMs(int64_t ms) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

}  // namespace tollgate::keys
