#include "keys/key_store.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <tuple>
#include <utility>

namespace tollgate::keys {
namespace {

using policies::RedisScript;

// Every script answers the same way: nil = no such id, 0 = refused (kConflict), otherwise the
// record (HGETALL's flat array) or 1. Times come in as ARGV from the gateway's clock, never from
// Redis TIME: the gateway decides expiry with its own clock everywhere else too.

// KEYS: the record, the set of every id, the caller's set. ARGV: id, events channel, then the
// record's fields and values. An id once used is never used again (the set remembers it).
const RedisScript& CreateScript() {
  static const RedisScript script(R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
)lua");
  return script;
}

// KEYS: the record. ARGV: id, events channel, now (unix ms). The first revocation's time stays:
// revoking again changes nothing but is still announced (a replica that missed the first event
// drops the id now).
const RedisScript& RevokeScript() {
  static const RedisScript script(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if not redis.call('HGET', KEYS[1], 'revoked_at') then
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[3])
end
redis.call('PUBLISH', ARGV[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
)lua");
  return script;
}

// KEYS: the old record, the new record, the set of every id, the caller's set. ARGV: old id,
// new id, events channel, now, grace end (unix ms), the caller, then the new record's fields.
// Times stay the decimal strings the gateway wrote (Lua's tostring of a large number would
// write 1.7e+12): the earlier of the two is chosen, never computed.
const RedisScript& RotateScript() {
  static const RedisScript script(R"lua(
local old = KEYS[1]
if redis.call('EXISTS', old) == 0 then return false end
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', old, 'caller', 'revoked_at', 'expires_at', 'replaced_by')
if state[1] ~= ARGV[6] then return 0 end
if state[2] then return 0 end
if state[3] and tonumber(state[3]) <= now then return 0 end
if state[4] and state[4] ~= '' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
local expires = ARGV[5]
if state[3] and tonumber(state[3]) < tonumber(ARGV[5]) then expires = state[3] end
redis.call('HSET', old, 'replaced_by', ARGV[2], 'expires_at', expires)
redis.call('PUBLISH', ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return redis.call('HGETALL', old)
)lua");
  return script;
}

// KEYS: the set to list (every id, or a caller's), the last-use hash. ARGV: the records' key
// prefix. Answers id, fields, last use (nil when never used) for each record, flat.
const RedisScript& ListScript() {
  static const RedisScript script(R"lua(
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields > 0 then
    out[#out + 1] = id
    out[#out + 1] = fields
    out[#out + 1] = redis.call('HGET', KEYS[2], id)
  end
end
return out
)lua");
  return script;
}

std::string UnixMs(TimePoint t) { return std::to_string(ToUnixMs(t)); }

// The record's hash fields and values after a script's leading ARGV.
void AppendFields(const KeyRecord& record, std::vector<std::string>* args) {
  std::vector<std::string> fields = ToHashFields(record);
  args->insert(args->end(), std::make_move_iterator(fields.begin()),
               std::make_move_iterator(fields.end()));
}

bool IsText(const redisReply& reply) {
  return (reply.type == REDIS_REPLY_STRING || reply.type == REDIS_REPLY_STATUS) &&
         reply.str != nullptr;
}

// A script's answer that carries one record: nil, 0, or the record's HGETALL.
void AnswerRecord(const redisReply* reply, const std::string& id,
                  const std::function<void(StoreStatus, std::optional<KeyRecord>)>& done) {
  if (reply == nullptr) return done(StoreStatus::kUnavailable, std::nullopt);
  if (reply->type == REDIS_REPLY_NIL) return done(StoreStatus::kNotFound, std::nullopt);
  if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
    return done(StoreStatus::kConflict, std::nullopt);
  }
  KeyRecord record;
  record.id = id;
  if (!FromHashReply(*reply, &record)) return done(StoreStatus::kUnavailable, std::nullopt);
  done(StoreStatus::kOk, std::move(record));
}

}  // namespace

KeyNames::KeyNames(std::string key_prefix) : prefix(std::move(key_prefix)) {}

std::string KeyNames::Record(std::string_view id) const {
  return prefix + "{keys}:key:" + std::string(id);
}
std::string KeyNames::Ids() const { return prefix + "{keys}:ids"; }
std::string KeyNames::Caller(std::string_view caller) const {
  return prefix + "{keys}:caller:" + std::string(caller);
}
std::string KeyNames::LastUsed() const { return prefix + "{keys}:last_used"; }
std::string KeyNames::Events() const { return prefix + "{keys}:events"; }

KeyStore::KeyStore(policies::RedisLoopClient* client)
    : client_(client), names_(client->config().key_prefix) {}

void KeyStore::Create(const KeyRecord& record, std::function<void(StoreStatus)> done) {
  std::vector<std::string> args = {record.id, names_.Events()};
  AppendFields(record, &args);
  client_->Eval(CreateScript(),
                {names_.Record(record.id), names_.Ids(), names_.Caller(record.caller)},
                std::move(args), [done = std::move(done)](const redisReply* reply) {
                  if (reply == nullptr || reply->type != REDIS_REPLY_INTEGER) {
                    return done(StoreStatus::kUnavailable);
                  }
                  done(reply->integer == 1 ? StoreStatus::kOk : StoreStatus::kConflict);
                });
}

void KeyStore::Get(const std::string& id,
                   std::function<void(StoreStatus, std::optional<KeyRecord>)> done) {
  // One command is atomic by itself: no script needed.
  const std::string record = names_.Record(id);
  client_->Command(
      record, {"HGETALL", record}, [id, done = std::move(done)](const redisReply* reply) {
        if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
          return done(StoreStatus::kNotFound, std::nullopt);
        }
        AnswerRecord(reply, id, done);
      });
}

void KeyStore::List(const std::string& caller,
                    std::function<void(StoreStatus, std::vector<KeyRecord>)> done) {
  const std::string set = caller.empty() ? names_.Ids() : names_.Caller(caller);
  client_->Eval(
      ListScript(), {set, names_.LastUsed()}, {names_.Record("")},
      [caller, done = std::move(done)](const redisReply* reply) {
        std::vector<KeyRecord> records;
        if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements % 3 != 0) {
          return done(StoreStatus::kUnavailable, std::move(records));
        }
        records.reserve(reply->elements / 3);
        for (size_t i = 0; i < reply->elements; i += 3) {
          const redisReply& id = *reply->element[i];
          const redisReply& last_used = *reply->element[i + 2];
          KeyRecord record;
          if (!IsText(id)) return done(StoreStatus::kUnavailable, {});
          record.id.assign(id.str, id.len);
          if (!FromHashReply(*reply->element[i + 1], &record)) {
            return done(StoreStatus::kUnavailable, {});
          }
          if (IsText(last_used)) {
            // The stamps are the gateway's own decimal ms; one that does not parse is dropped.
            char* end = nullptr;
            const long long ms = std::strtoll(last_used.str, &end, 10);
            if (end == last_used.str + last_used.len && last_used.len > 0) {
              record.last_used_at = FromUnixMs(ms);
            }
          }
          // The caller's set and the records are written together; this only guards listing.
          if (!caller.empty() && record.caller != caller) continue;
          records.push_back(std::move(record));
        }
        std::sort(records.begin(), records.end(), [](const KeyRecord& a, const KeyRecord& b) {
          return std::tie(a.created_at, a.id) < std::tie(b.created_at, b.id);
        });
        done(StoreStatus::kOk, std::move(records));
      });
}

void KeyStore::Revoke(const std::string& id, TimePoint now,
                      std::function<void(StoreStatus, std::optional<KeyRecord>)> done) {
  client_->Eval(
      RevokeScript(), {names_.Record(id)}, {id, names_.Events(), UnixMs(now)},
      [id, done = std::move(done)](const redisReply* reply) { AnswerRecord(reply, id, done); });
}

void KeyStore::Rotate(const std::string& id, const KeyRecord& replacement, TimePoint grace_end,
                      TimePoint now,
                      std::function<void(StoreStatus, std::optional<KeyRecord>)> done) {
  std::vector<std::string> args = {id,          replacement.id,    names_.Events(),
                                   UnixMs(now), UnixMs(grace_end), replacement.caller};
  AppendFields(replacement, &args);
  client_->Eval(RotateScript(),
                {names_.Record(id), names_.Record(replacement.id), names_.Ids(),
                 names_.Caller(replacement.caller)},
                std::move(args), [id, done = std::move(done)](const redisReply* reply) {
                  AnswerRecord(reply, id, done);
                });
}

}  // namespace tollgate::keys
