#include "policies/token_bucket_script.h"

#include <openssl/evp.h>

#include <cstdio>

namespace tollgate::policies {

// Lua numbers are doubles: every quantity stays an integer below 2^53 (see token_bucket.h), so
// the arithmetic is exact. Numbers go to Redis through '%.0f' because the default conversion may
// pick an exponent form. ceil_div corrects the rounded quotient so it is exact too.
//
// Cost inside redis-server: per bucket one HMGET and, when taking, one HSET of both fields and
// one PEXPIRE; one TIME and one PTTL per call. The script builds a single table (the reply, which
// also holds the first pass's levels and stamps) and reads each ARGV number once per pass: table
// churn and conversions cost more than the commands themselves (INFO commandstats).
const char kTokenBucketScript[] = R"lua(
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end

local take = ARGV[1] == '1'
local ncd = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

local cooldown_ms = 0
if ncd == 1 then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then cooldown_ms = pttl end
end
if cooldown_ms > 0 then take = false end

-- out[5 + 3i - 2 .. 5 + 3i]: level, stamp (replaced by the reset time), retry of bucket i.
local n = #KEYS - ncd
local out = {0, 0, -1, 0, cooldown_ms}
local enough, limiting, retry_us = true, 0, 0
for i = 1, n do
  local a = i * 4
  local refill, cap, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local shadow = ARGV[a + 3] == '1'
  local level, ts = cap, now
  local stored = redis.call('HMGET', KEYS[ncd + i], 'l', 't')
  if stored[1] and stored[2] then
    level, ts = tonumber(stored[1]), tonumber(stored[2])
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
    retry = ceil_div((cost < cap and cost or cap) - level, refill)
    if shadow then
      out[2] = 1
    else
      enough = false
      if limiting == 0 or retry > retry_us then
        limiting, retry_us = i, retry
      end
    end
  end
  local o = 3 + i * 3
  out[o], out[o + 1], out[o + 2] = level, ts, retry
end

if cooldown_ms > 0 then out[1] = 2 elseif not enough then out[1] = 1 end
out[3], out[4] = limiting - 1, retry_us
for i = 1, n do
  local a, o = i * 4, 3 + i * 3
  local refill, cap = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local level = out[o]
  if enough and take then
    local cost = tonumber(ARGV[a + 2])
    if level >= cost then level = level - cost end
    local key = KEYS[ncd + i]
    redis.call('HSET', key, 'l', string.format('%.0f', level), 't', string.format('%.0f', out[o + 1]))
    local reset = ceil_div(cap - level, refill)
    redis.call('PEXPIRE', key, string.format('%.0f', math.max(1, ceil_div(reset, 1000))))
    out[o], out[o + 1] = level, reset
  else
    out[o + 1] = ceil_div(cap - level, refill)
  end
end
return out
)lua";

namespace {

std::string ComputeSha1(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

constexpr size_t kHeaderFields = 5;
constexpr size_t kFieldsPerBucket = 3;

}  // namespace

const std::string& TokenBucketScriptSha1() {
  static const std::string sha = ComputeSha1(kTokenBucketScript);
  return sha;
}

TokenBucketCall MakeTokenBucketCall(const std::vector<BucketSpec>& buckets,
                                    const std::string& cooldown_upstream,
                                    const std::string& key_prefix, bool take, int64_t now_us) {
  TokenBucketCall call;
  const bool cooldown = !cooldown_upstream.empty();
  if (cooldown) call.keys.push_back(key_prefix + "cooldown:" + cooldown_upstream);
  call.args = {take ? "1" : "0", cooldown ? "1" : "0", now_us < 0 ? "" : std::to_string(now_us)};
  for (const BucketSpec& spec : buckets) {
    const BucketMath math = MathFor(spec);
    call.keys.push_back(key_prefix + spec.key);
    call.args.push_back(std::to_string(math.refill));
    call.args.push_back(std::to_string(math.capacity));
    call.args.push_back(std::to_string(math.cost));
    call.args.push_back(math.shadow ? "1" : "0");
  }
  return call;
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
  evaluation->buckets.assign(bucket_count, BucketResult{});
  for (size_t b = 0; b < bucket_count; ++b) {
    const size_t base = kHeaderFields + kFieldsPerBucket * b;
    evaluation->buckets[b] = BucketResult{at(base), at(base + 1), at(base + 2)};
  }
  return true;
}

}  // namespace tollgate::policies
