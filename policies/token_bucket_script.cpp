#include "policies/token_bucket_script.h"

#include <openssl/evp.h>

#include <cstdio>

namespace tollgate::policies {

// Lua numbers are doubles: every quantity stays an integer below 2^53 (see token_bucket.h), so
// the arithmetic is exact. Numbers go to Redis through '%.0f' because the default conversion may
// pick an exponent form. ceil_div corrects the rounded quotient so it is exact too.
const char kTokenBucketScript[] = R"lua(
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while q > 0 and (q - 1) * b >= a do q = q - 1 end
  return q
end
local function int(x) return string.format('%.0f', x) end

local take = ARGV[1] == '1'
local ncd = tonumber(ARGV[2])
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local cooldown_ms = 0
if ncd == 1 then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then cooldown_ms = pttl end
end
if cooldown_ms > 0 then take = false end

local n = #KEYS - ncd
local refill, cap, cost, levels, stamps, retry = {}, {}, {}, {}, {}, {}
local enough, would_limit, limiting, retry_us = true, 0, 0, 0
for i = 1, n do
  local a = 4 + (i - 1) * 4
  refill[i] = tonumber(ARGV[a])
  cap[i] = tonumber(ARGV[a + 1])
  cost[i] = tonumber(ARGV[a + 2])
  local shadow = ARGV[a + 3] == '1'
  local level, ts = cap[i], now
  local stored = redis.call('HMGET', KEYS[ncd + i], 'l', 't')
  if stored[1] and stored[2] then
    level = math.min(tonumber(stored[1]), cap[i])
    ts = tonumber(stored[2])
    if now > ts then
      local deficit = cap[i] - level
      if deficit > 0 then
        local elapsed = now - ts
        if elapsed >= ceil_div(deficit, refill[i]) then
          level = cap[i]
        else
          level = level + elapsed * refill[i]
        end
      end
      ts = now
    end
  end
  levels[i], stamps[i], retry[i] = level, ts, 0
  if level < cost[i] then
    retry[i] = ceil_div(math.min(cost[i], cap[i]) - level, refill[i])
    if shadow then
      would_limit = 1
    else
      enough = false
      if limiting == 0 or retry[i] > retry_us then
        limiting, retry_us = i, retry[i]
      end
    end
  end
end

local status = 0
if cooldown_ms > 0 then status = 2 elseif not enough then status = 1 end
local out = {status, would_limit, limiting - 1, retry_us, cooldown_ms}
for i = 1, n do
  if enough and take then
    if levels[i] >= cost[i] then levels[i] = levels[i] - cost[i] end
    local reset = ceil_div(cap[i] - levels[i], refill[i])
    redis.call('HSET', KEYS[ncd + i], 'l', int(levels[i]), 't', int(stamps[i]))
    redis.call('PEXPIRE', KEYS[ncd + i], int(math.max(1, ceil_div(reset, 1000))))
  end
  out[#out + 1] = levels[i]
  out[#out + 1] = ceil_div(cap[i] - levels[i], refill[i])
  out[#out + 1] = retry[i]
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
