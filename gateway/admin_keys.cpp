#include "gateway/admin_keys.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "config/syntax.h"

namespace tollgate::gateway {
namespace {

using rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string Member(std::string_view name) { return "\"" + std::string(name) + "\""; }

// The members of a JSON object body, each known one at most once. "" or the message.
std::string ParseObject(std::string_view body, bool empty_is_object,
                        const std::set<std::string_view>& known, rapidjson::Document* doc) {
  if (body.empty() && empty_is_object) {
    doc->SetObject();
    return "";
  }
  doc->Parse<rapidjson::kParseValidateEncodingFlag>(body.data(), body.size());
  if (doc->HasParseError() || !doc->IsObject()) {
    return "the body must be a JSON object (Content-Type: application/json)";
  }
  std::set<std::string_view> seen;
  for (const auto& m : doc->GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    if (known.count(name) == 0) return "unknown member " + EchoName(name);
    if (!seen.insert(name).second) return "member " + Member(name) + " is given twice";
  }
  return "";
}

// An optional integer member within [min, max]; "" or the message.
std::string IntegerMember(const Value& object, const char* name, int64_t min, int64_t max,
                          const char* why_max, std::optional<int64_t>* out) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return "";
  const std::string range = " from " + std::to_string(min) + " to " + std::to_string(max);
  if (!it->value.IsInt64()) return Member(name) + " must be an integer" + range;
  const int64_t v = it->value.GetInt64();
  if (v < min) return Member(name) + " must be at least " + std::to_string(min);
  if (v > max) return Member(name) + " must be at most " + std::to_string(max) + why_max;
  *out = v;
  return "";
}

std::string TtlMember(const Value& object, int max_ttl_seconds, std::optional<int64_t>* out) {
  const bool bounded = max_ttl_seconds > 0 && max_ttl_seconds < kMaxKeySeconds;
  return IntegerMember(object, "ttl_seconds", 1, bounded ? max_ttl_seconds : kMaxKeySeconds,
                       bounded ? " (keys.max_ttl_seconds)" : "", out);
}

void TimeOrNull(Writer& w, const std::optional<keys::TimePoint>& time) {
  if (time) {
    w.String(FormatKeyTime(*time).c_str());
  } else {
    w.Null();
  }
}

void StringOrNull(Writer& w, const std::string& text) {
  if (text.empty()) {
    w.Null();
  } else {
    w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  }
}

void String(Writer& w, std::string_view text) {
  w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

// The fields a new key's 201 answers share.
void NewKeyFields(Writer& w, const keys::KeyRecord& record, std::string_view key) {
  w.Key("id");
  String(w, record.id);
  w.Key("key");
  String(w, key);
  w.Key("caller");
  String(w, record.caller);
  w.Key("created_at");
  w.String(FormatKeyTime(record.created_at).c_str());
  w.Key("expires_at");
  TimeOrNull(w, record.expires_at);
}

}  // namespace

std::string EchoName(std::string_view text) {
  // Admin tokens start "tga_", caller keys (config and run-time) "tg_".
  if (text.size() > 64 || !config::syntax::IsValidName(text) || StartsWith(text, "tg_") ||
      StartsWith(text, "tga_")) {
    return "(not shown: not a plain name)";
  }
  return "'" + std::string(text) + "'";
}

std::string ParseCreateKeyBody(std::string_view body, int max_ttl_seconds, CreateKeyRequest* out) {
  rapidjson::Document doc;
  std::string error = ParseObject(body, false, {"caller", "ttl_seconds", "note"}, &doc);
  if (!error.empty()) return error;
  auto caller = doc.FindMember("caller");
  if (caller == doc.MemberEnd()) return "member \"caller\" is required";
  if (!caller->value.IsString()) return "\"caller\" must be a string (a caller in the config)";
  out->caller.assign(caller->value.GetString(), caller->value.GetStringLength());
  if (out->caller.empty()) return "\"caller\" must not be empty";
  error = TtlMember(doc, max_ttl_seconds, &out->ttl_seconds);
  if (!error.empty()) return error;
  // With a bound, no key outlives it: one asked for without a ttl gets the longest allowed.
  if (!out->ttl_seconds && max_ttl_seconds > 0) out->ttl_seconds = max_ttl_seconds;
  if (auto note = doc.FindMember("note"); note != doc.MemberEnd()) {
    if (!note->value.IsString()) return "\"note\" must be a string";
    out->note.assign(note->value.GetString(), note->value.GetStringLength());
    if (out->note.size() > kMaxKeyNoteBytes) {
      return "\"note\" must be at most " + std::to_string(kMaxKeyNoteBytes) + " bytes";
    }
    // Listings print it in terminals: no escape sequences, no line breaks.
    for (unsigned char c : out->note) {
      if (c < 0x20 || c == 0x7f) return "\"note\" must not hold control characters";
    }
  }
  return "";
}

std::string ParseRotateKeyBody(std::string_view body, int max_ttl_seconds, RotateKeyRequest* out) {
  rapidjson::Document doc;
  std::string error = ParseObject(body, true, {"grace_seconds", "ttl_seconds"}, &doc);
  if (!error.empty()) return error;
  std::optional<int64_t> grace;
  error = IntegerMember(doc, "grace_seconds", 0, kMaxKeySeconds, "", &grace);
  if (!error.empty()) return error;
  out->grace_seconds = grace.value_or(0);
  return TtlMember(doc, max_ttl_seconds, &out->ttl_seconds);
}

std::string ParseListKeysQuery(std::string_view query, std::string* caller) {
  bool seen = false;
  return config::syntax::ForEachQueryParam(
      query, [&](std::string_view name, std::string_view value) -> std::string {
        if (name != "caller") return "unknown query parameter " + EchoName(name) + " (only caller)";
        if (seen) return "query parameter \"caller\" is given twice";
        seen = true;
        // Caller names need no percent-encoding (letters, digits, '.', '_', '-'), so anything else
        // cannot name one.
        if (!config::syntax::IsValidName(value)) {
          return "query parameter \"caller\" must be a caller name (letters, digits, '.', '_', "
                 "'-')";
        }
        caller->assign(value);
        return "";
      });
}

keys::KeyRecord RotationReplacement(const keys::KeyRecord& old, const keys::NewKey& key,
                                    keys::TimePoint now, std::optional<int64_t> ttl_seconds,
                                    int max_ttl_seconds, const std::string& admin) {
  keys::KeyRecord replacement;
  replacement.id = key.id;
  replacement.caller = old.caller;
  replacement.sha256 = key.sha256;
  replacement.created_at = now;
  replacement.note = old.note;
  replacement.created_by = admin;
  if (ttl_seconds) {
    replacement.expires_at = now + std::chrono::seconds(*ttl_seconds);
  } else if (old.expires_at) {
    // A key issued for 30 days is replaced by one for 30 days, within today's bound.
    keys::TimePoint::duration lifetime = *old.expires_at - old.created_at;
    if (max_ttl_seconds > 0) {
      lifetime =
          std::min<keys::TimePoint::duration>(lifetime, std::chrono::seconds(max_ttl_seconds));
    }
    replacement.expires_at = now + lifetime;
  } else if (max_ttl_seconds > 0) {
    // A key that never expired is replaced, under today's bound, by one that does.
    replacement.expires_at = now + std::chrono::seconds(max_ttl_seconds);
  }
  return replacement;
}

std::string FormatKeyTime(keys::TimePoint time) {
  const int64_t ms = keys::ToUnixMs(time);
  int64_t part = ms % 1000;
  if (part < 0) part += 1000;
  std::string text = config::syntax::FormatRfc3339(keys::FromUnixMs(ms - part));  // "...:ssZ"
  char fraction[8];
  std::snprintf(fraction, sizeof fraction, ".%03d", static_cast<int>(part));
  text.insert(text.size() - 1, fraction);
  return text;
}

std::string CreatedKeyJson(const keys::KeyRecord& record, std::string_view key) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  NewKeyFields(w, record, key);
  w.EndObject();
  return buf.GetString();
}

std::string RotatedKeyJson(const keys::KeyRecord& record, std::string_view key,
                           const keys::KeyRecord& replaced) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  NewKeyFields(w, record, key);
  w.Key("replaces");
  String(w, replaced.id);
  w.Key("replaced_expires_at");
  TimeOrNull(w, replaced.expires_at);
  w.EndObject();
  return buf.GetString();
}

std::string KeyListJson(const std::vector<keys::KeyRecord>& records, keys::TimePoint now) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("items");
  w.StartArray();
  for (const keys::KeyRecord& r : records) {
    // Field by field: the record also holds the hash, which never leaves the gateway.
    w.StartObject();
    w.Key("id");
    String(w, r.id);
    w.Key("caller");
    String(w, r.caller);
    w.Key("created_at");
    w.String(FormatKeyTime(r.created_at).c_str());
    w.Key("expires_at");
    TimeOrNull(w, r.expires_at);
    w.Key("revoked_at");
    TimeOrNull(w, r.revoked_at);
    w.Key("last_used_at");
    TimeOrNull(w, r.last_used_at);
    w.Key("note");
    StringOrNull(w, r.note);
    w.Key("created_by");
    StringOrNull(w, r.created_by);
    w.Key("state");
    String(w, keys::StateName(keys::StateAt(r, now)));
    w.Key("replaced_by");
    StringOrNull(w, r.replaced_by);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return buf.GetString();
}

}  // namespace tollgate::gateway
