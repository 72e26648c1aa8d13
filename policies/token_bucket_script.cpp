#include "policies/token_bucket_script.h"

#include "policies/redis_loop_client.h"

namespace tollgate::policies {

const char kBucketStateVersion[] = "v2:";

// Lua numbers are doubles: every quantity stays an integer below 2^53 (see token_bucket.h), so
// the arithmetic is exact. ceil_div corrects the rounded quotient so it is exact too.
//
// Cost inside redis-server (issue 9). A redis.call costs several times the command it runs
// (argv objects, ACL and stats in call(), its reply re-parsed into Lua), and tonumber or
// string.format of a 16-digit number goes through glibc's multi-precision strtod / printf_fp:
// these were most of the old script's ~40 us for three buckets (HMGET, HSET and PEXPIRE per
// bucket, numbers as decimal text). So a call is one TIME, one MGET of every key (the cooldown
// key's PTTL only when it exists) and one SET ... PX per bucket taken from; numbers cross as
// little-endian int64 through `struct` (a bucket's parameters in one ARGV, its state in one
// 16-byte value), never as decimal text.
const char kTokenBucketScript[] = R"lua(
local floor, unpack_struct, pack_struct = math.floor, struct.unpack, struct.pack

local function ceil_div(a, b)
  local q = floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end

-- Calendar windows of a quota, as policies/quota_window.cpp computes them: period 1 day,
-- 2 week (from Monday), 3 month (from the 1st), shifted by `offset` seconds.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

local function quota_window(now_us, period, offset)
  local now_s = floor(now_us / 1000000)
  while now_s * 1000000 > now_us do now_s = now_s - 1 end
  local day = floor((now_s - offset) / 86400)
  local first, nxt = day, day + 1
  if period == 2 then
    first = day - (day + 3) % 7
    nxt = first + 7
  elseif period == 3 then
    local z = day + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    local y = yoe + era * 400 + (m <= 2 and 1 or 0)
    first = days_from_civil(y, m, 1)
    if m == 12 then nxt = days_from_civil(y + 1, 1, 1) else nxt = days_from_civil(y, m + 1, 1) end
  end
  return (first * 86400 + offset) * 1000000, (nxt * 86400 + offset) * 1000000
end

local take = ARGV[1] == '1'
local ncd = ARGV[2] == '1' and 1 or 0
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
else
  now = tonumber(ARGV[3])
end

local stored = redis.call('MGET', unpack(KEYS))
local cooldown_ms = 0
if ncd == 1 and stored[1] then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then cooldown_ms = pttl end
end
if cooldown_ms > 0 then take = false end

-- out[6 + 3i - 2 .. 6 + 3i]: level, stamp (replaced by the reset time), retry of bucket i.
local n = #KEYS - ncd
local out = {0, 0, -1, 0, cooldown_ms, 0}
local enough, limiting, retry_us = true, 0, 0
-- Buckets short of `cost` now that have it within their wait: the tokens are reserved ahead
-- (the level goes below zero), so waiting requests are served in order, on every replica.
local waits, waiting, wait_us = {}, 0, 0
-- A quota (flags >= 2) keeps (used, window start) and counts only within its window.
local wstart, wend = {}, {}
for i = 1, n do
  local refill, cap, cost, flags, wait = unpack_struct('<i8i8i8Bi8', ARGV[3 + i])
  local shadow = flags % 2
  local level, ts = cap, now
  local state = stored[ncd + i]
  if flags >= 2 then
    wstart[i], wend[i] = quota_window(now, floor(flags / 2), refill)
    level = cap
    if state then
      if #state ~= 16 then return redis.error_reply('unreadable quota ' .. KEYS[ncd + i]) end
      local used, start = unpack_struct('<i8i8', state)
      if start == wstart[i] then level = cap - used end
      if level < 0 then level = 0 end
    end
    state = nil
  end
  if state then
    -- Never read what another writer left as a full bucket: an error falls back per on_error.
    if #state ~= 16 then return redis.error_reply('unreadable bucket ' .. KEYS[ncd + i]) end
    level, ts = unpack_struct('<i8i8', state)
    if level > cap then level = cap end
    if now > ts then
      local deficit = cap - level
      if deficit > 0 then
        local elapsed = now - ts
        if elapsed >= ceil_div(deficit, refill) then
          level = cap
        else
          level = level + elapsed * refill
        end
      end
      ts = now
    end
  end
  local retry = 0
  if level < cost then
    if wend[i] then
      retry = wend[i] - now
    else
      retry = ceil_div((cost < cap and cost or cap) - level, refill)
    end
    if shadow == 1 then
      out[2] = 1
    elseif take and cost <= cap and retry <= wait then
      waits[i] = true
      if waiting == 0 or retry > wait_us then
        waiting, wait_us = i, retry
      end
    else
      enough = false
      if limiting == 0 or retry > retry_us then
        limiting, retry_us = i, retry
      end
    end
  end
  local o = 4 + i * 3
  out[o], out[o + 1], out[o + 2] = level, ts, retry
end

if cooldown_ms > 0 then out[1] = 2 elseif not enough then out[1] = 1 end
out[3], out[4] = limiting - 1, retry_us
if enough and waiting > 0 then out[3], out[6] = waiting - 1, wait_us end
for i = 1, n do
  local o = 4 + i * 3
  local refill, cap, cost = unpack_struct('<i8i8i8', ARGV[3 + i])
  local level = out[o]
  if wend[i] then
    if level >= cost and enough and take then
      level = level - cost
      redis.call('SET', KEYS[ncd + i], pack_struct('<i8i8', cap - level, wstart[i]),
                 'PXAT', floor(wend[i] / 1000))
    end
    out[o], out[o + 1] = level, wend[i] - now
  elseif enough and take then
    if level >= cost or waits[i] then level = level - cost end
    local reset = ceil_div(cap - level, refill)
    local ttl = ceil_div(reset, 1000)
    local state = pack_struct('<i8i8', level, out[o + 1])
    redis.call('SET', KEYS[ncd + i], state, 'PX', ttl > 0 and ttl or 1)
    out[o], out[o + 1] = level, reset
  else
    out[o + 1] = ceil_div(cap - level, refill)
  end
end
return out
)lua";

namespace {

constexpr size_t kHeaderFields = 6;
// refill, capacity, cost, flags, wait: '<i8i8i8Bi8'
constexpr size_t kBucketParamsBytes = 33;
constexpr size_t kBucketStateBytes = 16;  // level, stamp: '<i8i8'

// Little-endian two's complement, as Lua's struct '<i8' reads and writes it.
void AppendInt64(std::string& out, int64_t value) {
  const auto bits = static_cast<uint64_t>(value);
  for (int shift = 0; shift < 64; shift += 8) out.push_back(static_cast<char>(bits >> shift));
}

int64_t ReadInt64(const char* bytes) {
  uint64_t bits = 0;
  for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<unsigned char>(bytes[i]);
  return static_cast<int64_t>(bits);
}
constexpr size_t kFieldsPerBucket = 3;

}  // namespace

const std::string& TokenBucketScriptSha1() {
  static const RedisScript script(kTokenBucketScript);
  return script.sha1;
}

TokenBucketCall MakeTokenBucketCall(const std::vector<BucketSpec>& buckets,
                                    const std::string& cooldown_upstream,
                                    const std::string& key_prefix, bool take, int64_t now_us) {
  LimitRequest request;
  request.buckets = buckets;
  request.cooldown_upstream = cooldown_upstream;
  return MakeTokenBucketCall(request, key_prefix, take, now_us);
}

TokenBucketCall MakeTokenBucketCall(const LimitRequest& request, const std::string& key_prefix,
                                    bool take, int64_t now_us) {
  const std::vector<BucketSpec>& buckets = request.buckets;
  const std::string& cooldown_upstream = request.cooldown_upstream;
  TokenBucketCall call;
  const bool cooldown = !cooldown_upstream.empty();
  call.keys.reserve(buckets.size() + 1);
  call.args.reserve(buckets.size() + 3);
  if (cooldown) call.keys.push_back(CooldownKey(key_prefix, cooldown_upstream, request.slot_tag));
  call.args = {take ? "1" : "0", cooldown ? "1" : "0", now_us < 0 ? "" : std::to_string(now_us)};
  for (const BucketSpec& spec : buckets) {
    const BucketMath math = MathFor(spec);
    call.keys.push_back(BucketStateKey(key_prefix, spec));
    std::string params;
    params.reserve(kBucketParamsBytes);
    // A quota: the reset offset in the refill field, its period in the flags (bit 0 shadow).
    const bool quota = math.quota_period >= 0;
    AppendInt64(params, quota ? math.reset_offset_s : math.refill);
    AppendInt64(params, math.capacity);
    AppendInt64(params, math.cost);
    params.push_back(
        static_cast<char>((math.shadow ? 1 : 0) + (quota ? 2 * (math.quota_period + 1) : 0)));
    AppendInt64(params, math.wait_us);
    call.args.push_back(std::move(params));
  }
  return call;
}

std::string BucketStateKey(const std::string& key_prefix, const std::string& bucket_key) {
  return key_prefix + kBucketStateVersion + bucket_key;
}

namespace {
std::string Tagged(const std::string& key_prefix, const std::string& slot_tag) {
  return slot_tag.empty() ? key_prefix : key_prefix + "{" + slot_tag + "}:";
}
}  // namespace

std::string BucketStateKey(const std::string& key_prefix, const BucketSpec& spec) {
  return BucketStateKey(Tagged(key_prefix, spec.slot_tag), spec.key);
}

std::string CooldownKey(const std::string& key_prefix, const std::string& upstream,
                        const std::string& slot_tag) {
  return Tagged(key_prefix, slot_tag) + "cooldown:" + upstream;
}

bool DecodeBucketState(const std::string& value, BucketState* state) {
  if (value.size() != kBucketStateBytes) return false;
  state->exists = true;
  state->level = ReadInt64(value.data());
  state->ts_us = ReadInt64(value.data() + 8);
  return true;
}

std::vector<std::string> EvalShaArgv(const TokenBucketCall& call) {
  std::vector<std::string> argv = {"EVALSHA", TokenBucketScriptSha1(),
                                   std::to_string(call.keys.size())};
  argv.insert(argv.end(), call.keys.begin(), call.keys.end());
  argv.insert(argv.end(), call.args.begin(), call.args.end());
  return argv;
}

bool ParseTokenBucketReply(const redisReply& reply, size_t bucket_count, Evaluation* evaluation) {
  if (reply.type != REDIS_REPLY_ARRAY ||
      reply.elements != kHeaderFields + kFieldsPerBucket * bucket_count) {
    return false;
  }
  for (size_t i = 0; i < reply.elements; ++i) {
    if (reply.element[i]->type != REDIS_REPLY_INTEGER) return false;
  }
  auto at = [&](size_t i) { return static_cast<int64_t>(reply.element[i]->integer); };
  const int64_t status = at(0);
  if (status < 0 || status > 2) return false;
  evaluation->status = static_cast<Evaluation::Status>(status);
  evaluation->would_limit = at(1) != 0;
  evaluation->limiting = static_cast<int>(at(2));
  evaluation->retry_us = at(3);
  evaluation->cooldown_ms = at(4);
  evaluation->wait_us = at(5);
  evaluation->buckets.assign(bucket_count, BucketResult{});
  for (size_t b = 0; b < bucket_count; ++b) {
    const size_t base = kHeaderFields + kFieldsPerBucket * b;
    evaluation->buckets[b] = BucketResult{at(base), at(base + 1), at(base + 2)};
  }
  return true;
}

}  // namespace tollgate::policies
